"""The in-process inference engine: texts in, embeddings out, as fast as the machine allows.

Texts are tokenized once, ordered by length so each batch pads to almost nothing, cut into batches, and the
batches are spread over N runtime instances on N threads (onnxruntime releases the GIL). The layout and batch
size come from the artifact's benchmark; callers may override them.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import wait as futures_wait
from pathlib import Path

import numpy as np

from inferopt.artifact import Artifact, load_artifact
from inferopt.runtime.base import Backend, RuntimeSettings
from inferopt.tasks.text_embedding import OUTPUT_NAME, TextTokenizer, pad_batch


def batch_order(lengths: np.ndarray, batch_size: int, *, sort_by_length: bool) -> list[np.ndarray]:
    """Indices of each batch. Sorted by length, a batch of 32 sentences pads to its longest neighbour, not to
    the longest sentence that happened to arrive with it."""
    order = np.argsort(lengths, kind="stable") if sort_by_length else np.arange(lengths.size)
    return [order[i : i + batch_size] for i in range(0, order.size, batch_size)]


class Embedder:
    def __init__(
        self,
        tokenizer: TextTokenizer,
        backends: list[Backend],
        *,
        batch_size: int = 32,
        sort_by_length: bool = True,
    ) -> None:
        if not backends:
            raise ValueError("Embedder needs at least one backend")
        self.tokenizer = tokenizer
        self.backends = backends
        self.batch_size = batch_size
        self.sort_by_length = sort_by_length
        self._pool = ThreadPoolExecutor(len(backends), thread_name_prefix="inferopt-run") if len(backends) > 1 else None

    @classmethod
    def from_artifact(
        cls, path: str | Path | Artifact, settings: RuntimeSettings | None = None, *, verify: bool = True
    ) -> Embedder:
        from inferopt.runtime.onnx import OnnxBackend

        artifact = path if isinstance(path, Artifact) else load_artifact(Path(path), verify=verify)
        settings = settings or artifact.settings
        tokenizer = TextTokenizer(
            artifact.path / artifact.manifest["preprocessing"]["tokenizer_file"], artifact.max_length
        )
        backends: list[Backend] = [
            OnnxBackend(artifact.model_file, intra_op_threads=settings.intra_op_threads)
            for _ in range(settings.sessions)
        ]
        return cls(tokenizer, backends, batch_size=settings.batch_size)

    def embed(self, texts: list[str]) -> np.ndarray:
        """Embeddings for `texts`, in their order: shape (len(texts), dim), float32, L2-normalised."""
        if not texts:
            raise ValueError("embed() needs at least one text")
        ids = self.tokenizer.encode_ids(texts)
        lengths = np.fromiter((len(row) for row in ids), dtype=np.int64, count=len(ids))
        batches = batch_order(lengths, self.batch_size, sort_by_length=self.sort_by_length)
        results: list[np.ndarray | None] = [None] * len(batches)
        self._run_all(ids, batches, results)
        out = np.empty((len(texts), results[0].shape[1]), dtype=np.float32)  # type: ignore[union-attr]
        for index, result in zip(batches, results, strict=True):
            out[index] = result
        return out

    def _run_all(self, ids: list[list[int]], batches: list[np.ndarray], results: list[np.ndarray | None]) -> None:
        pending = iter(range(len(batches)))
        lock = threading.Lock()
        stop = threading.Event()

        def worker(backend: Backend) -> None:
            while not stop.is_set():
                with lock:
                    k = next(pending, None)
                if k is None:
                    return
                feeds = pad_batch([ids[i] for i in batches[k]], self.tokenizer.pad_id)
                results[k] = backend.run(feeds)[OUTPUT_NAME]

        if self._pool is None:
            worker(self.backends[0])
            return
        futures = [self._pool.submit(worker, b) for b in self.backends]
        try:
            for future in futures:
                # Wake up now and then: a Ctrl-C delivered to a runtime thread is only acted on when the main
                # thread runs Python code, and an untimed wait would not return until the whole job is done.
                while not future.done():
                    futures_wait([future], timeout=0.1)
                future.result()
        except BaseException:
            stop.set()  # workers finish the batch in hand and stop; then the error goes up
            futures_wait(futures)
            raise

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)

    def __enter__(self) -> Embedder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
