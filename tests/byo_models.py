"""Small PyTorch modules of our own, the kind a user brings: given to `inferopt optimize` by import path
(`tests.byo_models:two_headed --example tests.byo_models:two_headed_examples`). Weights are seeded, so
every build() gives the same module."""

from __future__ import annotations

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
