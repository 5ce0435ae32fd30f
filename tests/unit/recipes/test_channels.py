"""CNN channel pruning: EfficientNet-Lite0's inverted-residual blocks keep consistent shapes and export, a
Sequential CNN pruned by importance stays closer to itself than pruned at random, and what cannot be sliced
is refused with the reason."""

from __future__ import annotations

import copy

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from inferopt.recipes.channels import prune_channels  # noqa: E402
from inferopt.recipes.distill import squared_error  # noqa: E402
from inferopt.recipes.structure import CannotPrune, Probe, mean_distance  # noqa: E402


def image_probe(size: int, channels: int = 3, batches: int = 2, seed: int = 0) -> Probe:
    rng = np.random.default_rng(seed)
    return Probe(
        ("image",),
        tuple({"image": rng.normal(size=(4, channels, size, size)).astype(np.float32)} for _ in range(batches)),
    )


def test_efficientnet_lite_blocks_are_thinned_consistently_and_export(tmp_path) -> None:
    import onnxruntime as ort

    efficientnet = pytest.importorskip("efficientnet_lite_pytorch")
    torch.manual_seed(0)
    model = efficientnet.EfficientNet.from_name("efficientnet-lite0").eval()
    probe = image_probe(64)
    before = sum(p.numel() for p in model.parameters())
    widths = prune_channels(model, 0.25, probe)
    blocks = [m for m in model.modules() if hasattr(m, "_project_conv")]
    expanded = [b for b in blocks if hasattr(b, "_expand_conv")]
    assert len(widths) == len(expanded) == 15  # the first block has no expansion: its channels are the input's
    for block, width in zip(expanded, widths, strict=True):
        assert block._expand_conv.out_channels == block._bn0.num_features == width
        assert block._depthwise_conv.groups == block._depthwise_conv.out_channels == width
        assert block._project_conv.in_channels == block._bn1.num_features == width
    assert sum(p.numel() for p in model.parameters()) < before
    batch = probe.batches[0]
    expected = model(torch.from_numpy(batch["image"])).detach().numpy()
    path = tmp_path / "student.onnx"
    torch.onnx.export(model, (torch.from_numpy(batch["image"]),), str(path), input_names=["image"], dynamo=False)
    got = ort.InferenceSession(str(path)).run(None, dict(batch))[0]
    np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-4)


class SmallCnn(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.Conv2d(32, 16, 3, padding=1), nn.ReLU()
        )
        self.head = nn.Linear(16, 4)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(image).mean(dim=(2, 3)))


def test_channels_pruned_by_importance_beat_random_choices() -> None:
    torch.manual_seed(0)
    model = SmallCnn().eval()
    with torch.no_grad():  # channels of unequal strength, as trained filters are
        model.features[0].weight.mul_(torch.exp(torch.randn(32, 1, 1, 1)))
    probe = image_probe(12, batches=3)
    reference = probe.run(model)

    def distance_after(at_random: int | None) -> float:
        pruned = copy.deepcopy(model)
        assert prune_channels(pruned, 0.5, probe, at_random=at_random) == [16]
        assert pruned.features[1].num_features == pruned.features[3].in_channels == 16
        return mean_distance(pruned, probe, reference, squared_error)

    by_importance = distance_after(None)
    at_random = [distance_after(seed) for seed in range(10)]
    assert sum(by_importance < r for r in at_random) >= 9, (by_importance, at_random)


def test_squeeze_excitation_and_plain_models_are_refused_with_the_reason() -> None:
    class WithSe(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            for name in ("_expand_conv", "_depthwise_conv", "_project_conv"):
                setattr(self, name, nn.Conv2d(4, 4, 1))
            self._bn0, self._bn1, self.has_se = nn.BatchNorm2d(4), nn.BatchNorm2d(4), True

    with pytest.raises(CannotPrune, match="squeeze-and-excitation"):
        prune_channels(nn.Sequential(WithSe()), 0.5, image_probe(4, channels=4))
    with pytest.raises(CannotPrune, match="Linear has no inverted-residual blocks"):
        prune_channels(nn.Linear(3, 2), 0.5, image_probe(4))
