"""Structured pruning on tiny models: shapes stay consistent and export, importance beats chance, layers are
chosen by what they contribute, and models it cannot shrink are refused with the reason."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
from tests.tiny_models import SCHEMA, tiny_bert, token_probe  # noqa: E402
from torch import nn  # noqa: E402

from inferopt.export import export_onnx  # noqa: E402
from inferopt.recipes.distill import cosine_distance, squared_error  # noqa: E402
from inferopt.recipes.structure import (  # noqa: E402
    CannotPrune,
    Probe,
    drop_layers,
    encoder_blocks,
    layers_by_contribution,
    linear_pairs,
    mean_distance,
    prune_ffn,
    prune_hidden,
)
from inferopt.tasks.base import Source  # noqa: E402


def test_pruned_encoder_has_consistent_shapes_and_exports(tmp_path):
    import onnxruntime as ort

    model, probe = tiny_bert(), token_probe()
    assert drop_layers(model, [1, 2]) == 2
    assert prune_ffn(model, 0.5, probe) == [32, 32]
    blocks = encoder_blocks(model)[2]
    assert all(b.intermediate.dense.out_features == b.output.dense.in_features == 32 for b in blocks)
    assert model.encoder.config.num_hidden_layers == 2
    batch = probe.batches[0]
    expected = model(*probe.args(batch)).detach().numpy()
    path = export_onnx(Source("tiny", "test", module=model, example=dict(batch)), SCHEMA, tmp_path / "student.onnx")
    got = ort.InferenceSession(str(path)).run(None, dict(batch))[0]
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert got.shape == (8, 32)


def test_layers_are_chosen_by_contribution_not_position():
    model, probe = tiny_bert(layers=4), token_probe()
    # Layer 1 made a no-op: zero residual branches, and unit LayerNorms on inputs the previous LayerNorm
    # already normalised. The last layer (what position-based dropping takes) still does work.
    layer = encoder_blocks(model)[2][1]
    with torch.no_grad():
        for dense in (layer.attention.output.dense, layer.output.dense):
            dense.weight.zero_()
            dense.bias.zero_()
    reference = probe.run(model)
    assert layers_by_contribution(model, 1, probe, reference, cosine_distance) == [1]
    assert len(encoder_blocks(model)[2]) == 4  # measuring leaves the model whole


def test_dropping_every_layer_is_refused():
    model, probe = tiny_bert(layers=2), token_probe()
    with pytest.raises(CannotPrune, match="at least one must stay"):
        layers_by_contribution(model, 2, probe, probe.run(model), cosine_distance)


class Mlp(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(8, 64), nn.ReLU(), nn.BatchNorm1d(64), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x).squeeze(-1)


class ListMlp(nn.Module):
    """NeuMF's layout: a ModuleList of Linear layers the forward applies in turn (the first one by hand)."""

    def __init__(self) -> None:
        super().__init__()
        self.mlp = nn.ModuleList([nn.Linear(8, 64), nn.Linear(64, 32), nn.Linear(32, 1)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        first = self.mlp[0]
        h = torch.relu(x @ first.weight.T + first.bias)
        for layer in self.mlp[1:-1]:
            h = torch.relu(layer(h))
        return self.mlp[-1](h).squeeze(-1)


def trained_mlp(layout: type[nn.Module] = Mlp) -> tuple[nn.Module, Probe]:
    torch.manual_seed(0)
    x = torch.randn(512, 8)
    y = torch.sin(x[:, 0] * 2) + x[:, 1] * x[:, 2] - x[:, 3].abs()
    model = layout()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(300):
        loss = ((model(x) - y) ** 2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    probe = Probe(("x",), tuple({"x": x[i : i + 128].numpy()} for i in range(0, 512, 128)))
    return model, probe


@pytest.mark.parametrize("layout", [Mlp, ListMlp])
def test_hidden_units_pruned_by_importance_beat_random_choices(layout: type[nn.Module]) -> None:
    import copy

    model, probe = trained_mlp(layout)
    reference = probe.run(model)

    def distance_after(at_random: int | None) -> float:
        pruned = copy.deepcopy(model)
        assert prune_hidden(pruned, 0.75, probe, at_random=at_random) == [16, 8]
        return mean_distance(pruned, probe, reference, squared_error)

    by_importance = distance_after(None)
    at_random = [distance_after(seed) for seed in range(10)]
    assert sum(by_importance < r for r in at_random) >= 9, (by_importance, at_random)
    assert by_importance < 0.85 * float(np.median(at_random))


def test_pruned_mlp_keeps_batchnorm_consistent():
    model, probe = trained_mlp()
    prune_hidden(model, 0.5, probe)
    norm = model.layers[2]
    assert norm.num_features == norm.running_mean.shape[0] == model.layers[0].out_features == 32
    assert model(torch.randn(3, 8)).shape == (3,)


def test_a_model_wired_by_its_own_forward_is_refused_naming_its_layers():
    class Wired(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.up, self.down = nn.Linear(4, 8), nn.Linear(8, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.down(self.up(x))

    with pytest.raises(CannotPrune, match=r"Wired has no nn\.Sequential.*\(its Linear layers \(up, down\) are wired"):
        linear_pairs(Wired())
    with pytest.raises(CannotPrune, match="no list of transformer blocks"):
        encoder_blocks(Wired())


def test_a_module_list_not_applied_in_turn_is_refused_once_pruning_shows_it():
    class Heads(nn.Module):
        """Two heads on the same input: the widths chain (4 -> 4 -> 4), the layers do not."""

        def __init__(self) -> None:
            super().__init__()
            self.heads = nn.ModuleList([nn.Linear(4, 4), nn.Linear(4, 4)])

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.heads[0](x) + self.heads[1](x)

    probe = Probe(("x",), ({"x": np.random.default_rng(0).normal(size=(16, 4)).astype(np.float32)},))
    with pytest.raises(CannotPrune, match="the Linear layers of heads are not applied one after another"):
        prune_hidden(Heads(), 0.5, probe)


@pytest.mark.parametrize("options", [{"affine": False}, {"track_running_stats": False}])
def test_a_batchnorm_keeps_its_settings_when_sliced(options: dict) -> None:
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8, **options), nn.ReLU(), nn.Linear(8, 2)).eval()
    probe = Probe(("x",), ({"x": np.random.default_rng(0).normal(size=(16, 4)).astype(np.float32)},))
    assert prune_hidden(model, 0.5, probe) == [4]
    norm = model[1]
    assert norm.num_features == 4 and norm.affine == options.get("affine", True)
    assert norm.track_running_stats == options.get("track_running_stats", True)
    assert (norm.running_mean is None) == (not norm.track_running_stats)
    assert model(torch.randn(3, 4)).shape == (3, 2)


def test_heads_pruned_by_importance_keep_shapes_export_and_beat_random_choices(tmp_path) -> None:
    import copy

    import onnxruntime as ort

    from inferopt.recipes.heads import prune_heads

    model, probe = tiny_bert(), token_probe()
    # Head 1 of every layer made silent (its output-projection columns zeroed): importance must drop it first.
    for block in encoder_blocks(model)[2]:
        with torch.no_grad():
            block.attention.output.dense.weight[:, 16:] = 0.0
    silent_reference = probe.run(model)
    pruned = copy.deepcopy(model)
    assert prune_heads(pruned, 0.5, probe) == [1, 1, 1, 1]
    assert mean_distance(pruned, probe, silent_reference, cosine_distance) < 1e-6  # the silent head went
    attention = encoder_blocks(pruned)[2][0].attention
    assert attention.self.query.out_features == attention.output.dense.in_features == 16
    assert attention.self.num_attention_heads == 1 and attention.self.all_head_size == 16
    batch = probe.batches[0]
    path = export_onnx(Source("tiny", "test", module=pruned, example=dict(batch)), SCHEMA, tmp_path / "heads.onnx")
    got = ort.InferenceSession(str(path)).run(None, dict(batch))[0]
    np.testing.assert_allclose(got, pruned(*probe.args(batch)).detach().numpy(), atol=1e-5)
    at_random = []
    for seed in range(10):
        chance = copy.deepcopy(model)
        prune_heads(chance, 0.5, probe, at_random=seed)
        at_random.append(mean_distance(chance, probe, silent_reference, cosine_distance))
    # A seed picks the same head in every layer: half the seeds keep the silent head and lose a live one.
    assert min(at_random) > -1e-6 and sum(d > 1e-5 for d in at_random) >= 3, at_random
