"""The in-process inference engine: raw inputs in, outputs out, as fast as the machine allows, for any task.

Inputs are preprocessed once by the task, planned into batches (by default in order of cost, so each batch
pads to almost nothing), collated, and the batches are spread over N runtime instances on N threads
(onnxruntime releases the GIL). The layout and batch size come from the artifact's benchmark; callers may
override them. `Predictor` is the task-neutral Python API; `Embedder` is one for models of a single output (a
text encoder's embeddings): inputs in, one vector each.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import wait as futures_wait
from pathlib import Path
from typing import Any

import numpy as np

from inferopt.artifact import Artifact, load_artifact
from inferopt.batching import sorted_batches
from inferopt.errors import ArtifactError
from inferopt.runtime.base import Arrays, Backend, RuntimeSettings
from inferopt.tasks.base import Item, Task

BatchPlan = Callable[[Sequence[Item], int], list[list[int]]]  # (items, batch size) -> index lists


def stack_outputs(per_item: Sequence[Arrays]) -> Arrays:
    """Item outputs -> one array per output, items on axis 0. Items whose outputs differ in shape (a second
    dynamic axis) are zero-padded to the largest: padding both sides alike leaves every fidelity measure as it
    was."""
    stacked = {}
    for name in per_item[0]:
        values = [np.asarray(item[name]) for item in per_item]
        shapes = {v.shape for v in values}
        if len(shapes) == 1:
            stacked[name] = np.stack(values)
            continue
        target = tuple(max(sizes) for sizes in zip(*shapes, strict=True))
        out = np.zeros((len(values), *target), dtype=values[0].dtype)
        for i, v in enumerate(values):
            region: tuple[int | slice, ...] = (i, *(slice(0, n) for n in v.shape))
            out[region] = v
        stacked[name] = out
    return stacked


def _rows_in_place(count: int, batches: list[list[int]], results: list[Arrays]) -> Arrays | None:
    """The batches' outputs as one array per output, each row where its item belongs; None when an output's
    shape beyond the batch differs between batches (a dynamic axis: then items are padded one by one)."""
    assembled = {}
    for name, first in results[0].items():
        if any(r[name].shape[1:] != first.shape[1:] for r in results):
            return None
        out = np.empty((count, *first.shape[1:]), dtype=first.dtype)
        for indices, outputs in zip(batches, results, strict=True):
            out[indices] = outputs[name]
        assembled[name] = out
    return assembled


class Predictor:
    def __init__(
        self,
        task: Task,
        backends: list[Backend],
        *,
        batch_size: int = 32,
        plan: BatchPlan = sorted_batches,
    ) -> None:
        if not backends:
            raise ValueError("a Predictor needs at least one backend")
        self.task = task
        self.backends = backends
        self.batch_size = batch_size
        self.plan = plan
        self._pool = ThreadPoolExecutor(len(backends), thread_name_prefix="inferopt-run") if len(backends) > 1 else None

    @classmethod
    def from_artifact(
        cls,
        path: str | Path | Artifact,
        settings: RuntimeSettings | None = None,
        *,
        verify: bool = True,
        device: str | None = None,
    ) -> Predictor:
        """The artifact's default path, where its benchmark ran it (refused where this machine cannot), or on
        the CPU with `device="cpu"`."""
        from inferopt.runtime.onnx import open_backend
        from inferopt.tasks.registry import for_artifact

        artifact = path if isinstance(path, Artifact) else load_artifact(Path(path), verify=verify)
        settings = settings or artifact.settings
        placement = artifact.resolve_placements(device).default
        backends: list[Backend] = [
            open_backend(artifact.model_file, placement, settings.intra_op_threads) for _ in range(settings.sessions)
        ]
        return cls(for_artifact(artifact.manifest, artifact.path), backends, batch_size=settings.batch_size)

    def outputs(self, inputs: Sequence[Any]) -> Arrays:
        """The model's outputs for `inputs` (raw inputs of the task), in their order: output name -> array with
        one row per input."""
        if not inputs:
            raise ValueError("the Predictor needs at least one input")
        return self.run_items(self.task.preprocess(list(inputs)))

    def predict(self, inputs: Sequence[Any]) -> list[Any]:
        """One JSON-able result per input, as the server's KServe v1 route answers."""
        items = self.task.preprocess(list(inputs))
        outputs = self.item_outputs(items)
        return [self.task.postprocess(out, item) for out, item in zip(outputs, items, strict=True)]

    def run_items(self, items: Sequence[Item], batches: list[list[int]] | None = None) -> Arrays:
        """Outputs of preprocessed `items`, in their order; `batches` (index lists) overrides the plan."""
        batches = self.plan(items, self.batch_size) if batches is None else batches
        results = self._run_all(items, batches)
        if type(self.task).split is Task.split:  # rows are items: write each batch's rows straight into place
            assembled = _rows_in_place(len(items), batches, results)
            if assembled is not None:
                return assembled
        return stack_outputs(self._per_item(items, batches, results))

    def item_outputs(self, items: Sequence[Item], batches: list[list[int]] | None = None) -> list[Arrays]:
        batches = self.plan(items, self.batch_size) if batches is None else batches
        return self._per_item(items, batches, self._run_all(items, batches))

    def _per_item(self, items: Sequence[Item], batches: list[list[int]], results: list[Arrays]) -> list[Arrays]:
        per_item: list[Arrays | None] = [None] * len(items)
        for indices, outputs in zip(batches, results, strict=True):
            split = self.task.split(outputs, [items[i] for i in indices])
            for i, out in zip(indices, split, strict=True):
                per_item[i] = out
        return per_item  # type: ignore[return-value]

    def _run_all(self, items: Sequence[Item], batches: list[list[int]]) -> list[Arrays]:
        """Each batch's model outputs, batches spread over the backends' threads."""
        results: list[Arrays] = [{} for _ in batches]
        pending = iter(range(len(batches)))
        lock = threading.Lock()
        stop = threading.Event()
        task = self.task

        def worker(backend: Backend) -> None:
            while not stop.is_set():
                with lock:
                    k = next(pending, None)
                if k is None:
                    return
                results[k] = backend.run(task.collate([items[i] for i in batches[k]]))

        if self._pool is None:
            worker(self.backends[0])
            return results
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
        return results

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)

    def __enter__(self) -> Predictor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Embedder(Predictor):
    """`inferopt.Embedder.from_artifact(path).embed(texts)`: one vector per input, for a model with one output."""

    @classmethod
    def from_artifact(
        cls,
        path: str | Path | Artifact,
        settings: RuntimeSettings | None = None,
        *,
        verify: bool = True,
        device: str | None = None,
    ) -> Embedder:
        predictor = Predictor.from_artifact(path, settings, verify=verify, device=device)
        predictor.close()  # its thread pool only: the Embedder makes its own over the same backends
        outputs = predictor.task.io_schema().output_names
        if len(outputs) != 1:
            raise ArtifactError(
                f"This {predictor.task.name} model has {len(outputs)} outputs ({', '.join(outputs)}), not one vector",
                "use inferopt.Predictor.from_artifact(...).outputs(inputs)",
            )
        return cls(predictor.task, predictor.backends, batch_size=predictor.batch_size)

    def embed(self, inputs: Sequence[Any]) -> np.ndarray:
        """The vectors of `inputs` (texts, for a text encoder), in their order: shape (len(inputs), dim)."""
        if not inputs:
            raise ValueError("embed() needs at least one text")
        (output,) = self.task.io_schema().output_names
        return self.outputs(inputs)[output]
