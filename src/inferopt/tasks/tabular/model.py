"""The risk scorer: an MLP over the encoded features, ending in the probability of the bad outcome.

torch is imported here only, and this module only when a model is built or trained (never by serve).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn


@dataclass(frozen=True)
class Architecture:
    inputs: int  # encoded width: one column per number and per category
    hidden: tuple[int, ...] = (64, 32)
    dropout: float = 0.2

    def to_dict(self) -> dict[str, Any]:
        return {"inputs": self.inputs, "hidden": list(self.hidden), "dropout": self.dropout}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Architecture:
        return cls(int(data["inputs"]), tuple(int(h) for h in data["hidden"]), float(data["dropout"]))


class RiskMLP(nn.Module):
    def __init__(self, arch: Architecture) -> None:
        super().__init__()
        self.arch = arch
        layers: list[nn.Module] = []
        width = arch.inputs
        for size in arch.hidden:
            layers += [nn.Linear(width, size), nn.ReLU(), nn.Dropout(arch.dropout)]
            width = size
        layers.append(nn.Linear(width, 1))
        self.layers = nn.Sequential(*layers)

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        return self.layers(features).squeeze(-1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """[batch, inputs] -> [batch]: the probability of the bad outcome."""
        return torch.sigmoid(self.logits(features))
