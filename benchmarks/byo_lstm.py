"""The user module of the bring-your-own benchmark: a two-layer LSTM text classifier over token ids, the kind
of small custom model a team trains itself. Seeded, so every build() gives the same weights.

    inferopt optimize benchmarks.byo_lstm:build --example benchmarks.byo_lstm:example_inputs
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

VOCAB, EMBED, HIDDEN, CLASSES = 5000, 128, 256, 8
LENGTHS = (8, 16, 24, 32)  # requests come in a few lengths: rows batch with rows of their length


class LstmClassifier(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, EMBED)
        self.lstm = nn.LSTM(EMBED, HIDDEN, num_layers=2, batch_first=True)
        self.head = nn.Sequential(nn.Linear(HIDDEN, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, CLASSES))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        output, _ = self.lstm(self.embed(tokens))
        return self.head(output[:, -1])


def build() -> nn.Module:
    torch.manual_seed(0)
    return LstmClassifier()


def rows(count: int, seed: int) -> list[np.ndarray]:
    """`count` token rows of the benchmark's lengths, in a fixed shuffled order."""
    rng = np.random.default_rng(seed)
    return [rng.integers(1, VOCAB, LENGTHS[i % len(LENGTHS)]).astype(np.int64) for i in rng.permutation(count)]


def example_inputs() -> list[dict[str, torch.Tensor]]:
    """128 rows of each length: the calibration and eval data of the run (the sequence axis is dynamic)."""
    generator = torch.Generator().manual_seed(1)
    return [{"tokens": torch.randint(1, VOCAB, (128, n), generator=generator)} for n in LENGTHS]
