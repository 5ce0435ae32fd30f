"""What the trainers in the repository share: deterministic one-thread training, and the clean-up of weights
that would make their FP32 baselines unfairly slow."""

from __future__ import annotations

from typing import Any

NEGLIGIBLE = 1e-10


def zero_negligible(model: Any) -> int:
    """Zero the weights below 1e-10 in magnitude: those of dead ReLU units, which Adam's weight decay drives
    towards 0 (below 1e-30 in our runs) without ever reaching it. They change no score (a score is O(1); their
    share is under float32's resolution of it), but their products are subnormal floats, which x86 computes
    ~100x slower: left in, they made FP32 inference 2-3x slower than the same weights rounded to FP16, which
    would make every comparison against this model's PyTorch baseline unfair. Returns how many were zeroed."""
    import torch

    zeroed = 0
    with torch.no_grad():
        for parameter in model.parameters():
            tiny = (parameter != 0) & (parameter.abs() < NEGLIGIBLE)
            zeroed += int(tiny.sum())
            parameter[tiny] = 0.0
    return zeroed


class one_thread:
    """Training on one thread: the same sums in the same order on every machine, so a seed is a result."""

    def __init__(self, torch: Any) -> None:
        self.torch = torch

    def __enter__(self) -> None:
        self.threads = self.torch.get_num_threads()
        self.torch.set_num_threads(1)

    def __exit__(self, *exc: object) -> None:
        self.torch.set_num_threads(self.threads)
