"""The Backend contract every runtime meets, and the settings that say how many of them run at once."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Protocol

import numpy as np

Arrays = dict[str, np.ndarray]


class Backend(Protocol):
    """One model instance. `run` may be called from one thread at a time per instance."""

    def run(self, inputs: Arrays) -> Arrays: ...

    def warmup(self, example: Arrays) -> None: ...

    def info(self) -> dict[str, object]: ...


@dataclass(frozen=True)
class RuntimeSettings:
    """How to lay an artifact out on the machine: `sessions` instances of `intra_op_threads` threads each,
    fed batches of at most `batch_size` items. The benchmark chooses them; the manifest carries them."""

    sessions: int = 1
    intra_op_threads: int = 1
    batch_size: int = 32

    def __post_init__(self) -> None:
        for name in ("sessions", "intra_op_threads", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"RuntimeSettings.{name} must be >= 1, got {getattr(self, name)}")

    def to_dict(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> RuntimeSettings:
        return cls(**{k: int(data[k]) for k in ("sessions", "intra_op_threads", "batch_size")})  # type: ignore[call-overload]

    @property
    def label(self) -> str:
        return f"{self.sessions}x{self.intra_op_threads}t b{self.batch_size}"
