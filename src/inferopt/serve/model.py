"""What the server serves: a tokenizer, N runtime sessions and the names clients may call them by.

Built from an artifact by `ServingModel.from_artifact`, or directly (tests: FakeBackend and the real
tokenizer, no artifact). Warm-up runs every session on the batch shapes it will see before the server says
it is ready, so the first real requests do not pay for allocations and kernel selection.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from inferopt.artifact import Artifact
from inferopt.runtime.base import Backend, RuntimeSettings
from inferopt.serve.batcher import BatchPolicy
from inferopt.serve.config import ServeConfig
from inferopt.tasks.text_embedding import OUTPUT_NAME, TextTokenizer, pad_batch

WARMUP_SHORT_TOKENS = 16


@dataclass
class ServingModel:
    name: str
    artifact_id: str
    tokenizer: TextTokenizer
    backends: list[Backend]
    settings: RuntimeSettings = field(default_factory=RuntimeSettings)
    info: dict[str, object] = field(default_factory=dict)

    @property
    def max_length(self) -> int:
        return self.tokenizer.max_length

    @property
    def tokenizer_file(self) -> Path:
        return Path(self.tokenizer.path)

    @classmethod
    def from_artifact(cls, artifact: Artifact, *, sessions: int | None = None) -> ServingModel:
        """Open `sessions` onnxruntime sessions (default: as many as the artifact's benchmark chose)."""
        from inferopt.runtime.onnx import OnnxBackend

        settings = artifact.settings
        count = sessions or settings.sessions
        tokenizer_file = artifact.path / artifact.manifest["preprocessing"]["tokenizer_file"]
        backends: list[Backend] = [
            OnnxBackend(artifact.model_file, intra_op_threads=settings.intra_op_threads) for _ in range(count)
        ]
        return cls(
            name=artifact.model_name,
            artifact_id=artifact.artifact_id,
            tokenizer=TextTokenizer(tokenizer_file, artifact.max_length),
            backends=backends,
            settings=RuntimeSettings(count, settings.intra_op_threads, settings.batch_size),
            info={"recipe": artifact.manifest.get("recipe"), **backends[0].info()},
        )

    def answers_to(self, name: str) -> bool:
        """Clients may name the model by its name, its artifact id, or the name's last path part."""
        return name in (self.name, self.artifact_id, self.name.rsplit("/", 1)[-1])


def batch_policy(config: ServeConfig, model: ServingModel) -> BatchPolicy:
    return BatchPolicy(
        max_batch=config.max_batch or model.settings.batch_size,
        max_wait_s=config.max_wait_ms / 1000.0,
        # A single longest input must always fit, whatever the flag says.
        max_tokens=max(config.max_batch_tokens, model.max_length),
        max_queue=config.max_queue,
        max_padding=config.max_padding,
    )


def warmup_shapes(policy: BatchPolicy, max_length: int) -> list[tuple[int, int]]:
    """(rows, tokens) of the batches to expect: one short input, a full batch of short ones, and the
    largest padded batch the token budget allows."""
    short = min(WARMUP_SHORT_TOKENS, max_length)
    longest_rows = max(1, min(policy.max_batch, policy.max_tokens // max_length))
    return sorted({(1, short), (policy.max_batch, short), (longest_rows, max_length)})


def warm_up(model: ServingModel, policy: BatchPolicy) -> int:
    """Run every backend on every warm-up shape, the backends in parallel. Returns the embedding dimension."""
    pad_id = model.tokenizer.pad_id
    feeds = [
        pad_batch([[pad_id + 1] * tokens] * rows, pad_id) for rows, tokens in warmup_shapes(policy, model.max_length)
    ]

    def warm(backend: Backend) -> int:
        # The first shape through run(), not warmup(): its output tells the embedding width.
        dim = int(np.asarray(backend.run(feeds[0])[OUTPUT_NAME]).shape[-1])
        for feed in feeds[1:]:
            backend.warmup(feed)
        return dim

    with ThreadPoolExecutor(len(model.backends), thread_name_prefix="inferopt-warmup") as pool:
        dims = list(pool.map(warm, model.backends))
    return dims[0]
