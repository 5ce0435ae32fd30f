"""`inferopt.Embedder`: texts in, embeddings out, on the task-neutral engine (`inferopt.Predictor`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from inferopt.artifact import Artifact
from inferopt.batching import sorted_batches
from inferopt.engine import Predictor, in_order
from inferopt.errors import ArtifactError
from inferopt.runtime.base import Backend, RuntimeSettings
from inferopt.tasks.text_embedding import TextEmbeddingTask
from inferopt.tasks.text_embedding.model_dir import OUTPUT_NAME, ModelSpec
from inferopt.tasks.text_embedding.tokenizer import TextTokenizer


class Embedder(Predictor):
    def __init__(
        self,
        tokenizer: TextTokenizer | TextEmbeddingTask,
        backends: list[Backend],
        *,
        batch_size: int = 32,
        sort_by_length: bool = True,
    ) -> None:
        task = tokenizer if isinstance(tokenizer, TextEmbeddingTask) else tokenizing_task(tokenizer)
        super().__init__(task, backends, batch_size=batch_size, plan=sorted_batches if sort_by_length else in_order)
        self.tokenizer = task.tokenizer

    @classmethod
    def from_artifact(
        cls, path: str | Path | Artifact, settings: RuntimeSettings | None = None, *, verify: bool = True
    ) -> Embedder:
        predictor = Predictor.from_artifact(path, settings, verify=verify)
        predictor.close()  # its thread pool: the Embedder makes its own
        if not isinstance(predictor.task, TextEmbeddingTask):
            raise ArtifactError(
                f"This artifact is a {predictor.task.name} model, not a text encoder",
                "use inferopt.Predictor.from_artifact(...).predict(inputs)",
            )
        return cls(predictor.task, predictor.backends, batch_size=predictor.batch_size)

    def embed(self, texts: list[str]) -> np.ndarray:
        """Embeddings for `texts`, in their order: shape (len(texts), dim), float32, L2-normalised."""
        if not texts:
            raise ValueError("embed() needs at least one text")
        return self.outputs(texts)[OUTPUT_NAME]


def tokenizing_task(tokenizer: TextTokenizer) -> TextEmbeddingTask:
    """A text task that only tokenizes (for an Embedder over backends that are not from an artifact)."""
    spec = ModelSpec("bert", 0, 0, 0, 0, tokenizer.max_length, 0)
    return TextEmbeddingTask(tokenizer, spec)
