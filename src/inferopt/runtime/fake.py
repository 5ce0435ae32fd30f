"""A deterministic stand-in with the shapes of a real embedding model, for tests that are not about numbers.

Each row's embedding depends only on that row's unpadded token ids, so batching, ordering and caching can be
checked exactly: the same text gives the same vector whatever batch it rides in.
"""

from __future__ import annotations

import hashlib
import time

import numpy as np

from inferopt.runtime.base import Arrays


class FakeBackend:
    def __init__(self, dim: int = 384, *, delay_s: float = 0.0, fail_on_token: int | None = None) -> None:
        self.dim = dim
        self.delay_s = delay_s
        self.fail_on_token = fail_on_token
        self.calls: list[int] = []  # batch sizes seen, in order: lets tests prove that requests were batched

    def run(self, inputs: Arrays) -> Arrays:
        ids, mask = inputs["input_ids"], inputs["attention_mask"]
        self.calls.append(int(ids.shape[0]))
        if self.delay_s:
            time.sleep(self.delay_s)
        rows = []
        for row_ids, row_mask in zip(ids, mask, strict=True):
            tokens = row_ids[row_mask.astype(bool)]
            if self.fail_on_token is not None and self.fail_on_token in tokens:
                raise RuntimeError(f"fake backend told to fail on token {self.fail_on_token}")
            rows.append(self._vector(tokens))
        return {"embeddings": np.stack(rows) if rows else np.zeros((0, self.dim), np.float32)}

    def _vector(self, tokens: np.ndarray) -> np.ndarray:
        seed = int.from_bytes(hashlib.sha256(tokens.astype(np.int64).tobytes()).digest()[:8], "little")
        vec = np.random.default_rng(seed).standard_normal(self.dim).astype(np.float32)
        return vec / np.linalg.norm(vec)

    def warmup(self, example: Arrays) -> None:
        self.run(example)

    def info(self) -> dict[str, object]:
        return {"runtime": "fake", "dim": self.dim}
