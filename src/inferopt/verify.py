"""The FP32 reference, the export checked against it, and each variant's accuracy in the batches it will
really run in.

Dynamic INT8 quantizes activations per batch, so what rides in a batch with an item (and the padding it
brings) moves that item's numbers. A variant is therefore checked twice on the eval data: in the batches a
busy server forms (the batcher's own policy: nearest in cost, at most 20% padding) and in batches of 64 in
arrival order padded to their longest, the worst case; its accuracy is the worse of the two, measure by measure.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from inferopt.accuracy.measures import row_cosine
from inferopt.accuracy.report import AccuracyReport
from inferopt.batching import BatchPolicy, arrival_batches, server_batches
from inferopt.engine import Predictor
from inferopt.runtime.base import Arrays, Backend
from inferopt.tasks.base import EvalSet, Item, Source, Task

REFERENCE_BATCH = 32
SERVED_POLICY = BatchPolicy(max_batch=32, max_padding=0.2)  # serve's padding limit; batches of the default 32
SERVED_WINDOW = 4 * SERVED_POLICY.max_batch  # items queued at once in a busy server
MIXED_BATCH = 64
PARITY_ITEMS = 512


@dataclass(frozen=True)
class Reference:
    task: Task
    source: Source
    eval_outputs: Arrays
    calibration_outputs: Arrays

    @classmethod
    def compute(
        cls, task: Task, source: Source, eval_items: list[Item], calibration_items: list[Item], cores: int
    ) -> Reference:
        """FP32 outputs of the eval and calibration items: PyTorch eager, or ONNX Runtime for an ONNX source."""
        with Predictor(task, [reference_backend(task, source, cores)], batch_size=REFERENCE_BATCH) as predictor:
            return cls(task, source, predictor.run_items(eval_items), predictor.run_items(calibration_items))

    def export(self, out_path: Path, eval_items: list[Item]) -> tuple[Path | None, dict[str, Any], str | None]:
        """(the FP32 ONNX model, what the export found, why it failed): a module that does not export is not
        fatal, the PyTorch variants are still measured. A graph that exports but computes something else is."""
        from inferopt.export import ExportError, check_parity, copy_onnx, export_onnx

        started = time.perf_counter()
        if self.source.onnx_path is not None:
            return copy_onnx(self.source.onnx_path, out_path), {"given": str(self.source.onnx_path)}, None
        try:
            export_onnx(self.source, self.task.io_schema(), out_path)
        except ExportError as exc:
            return None, {"error": exc.what}, exc.what
        items = eval_items[:PARITY_ITEMS]
        reference = {name: value[: len(items)] for name, value in self.eval_outputs.items()}
        mean, low = item_cosines(self.task, onnx_backend(out_path, 0), items, reference)
        return out_path, check_parity(out_path, mean, low, len(items), started).to_dict(), None


def reference_backend(task: Task, source: Source, cores: int) -> Backend:
    if source.module is not None:
        from inferopt.runtime.torch import TorchBackend

        schema = task.io_schema()
        return TorchBackend(source.module, schema.input_names, schema.output_names, intra_op_threads=cores)
    assert source.onnx_path is not None
    return onnx_backend(source.onnx_path, cores)


def onnx_backend(path: Path, threads: int) -> Backend:
    from inferopt.runtime.onnx import OnnxBackend

    return OnnxBackend(path, intra_op_threads=threads)


def item_cosines(task: Task, backend: Backend, items: list[Item], reference: Arrays) -> tuple[float, float]:
    """(mean, min) over items of each item's worst output cosine to `reference`."""
    with Predictor(task, [backend], batch_size=REFERENCE_BATCH) as predictor:
        outputs = predictor.run_items(items)
    cos = np.min([row_cosine(outputs[name], ref) for name, ref in reference.items()], axis=0)
    return float(cos.mean()), float(cos.min())


def batching_passes(items: list[Item]) -> dict[str, list[list[int]]]:
    return {
        "served": server_batches(items, SERVED_POLICY, SERVED_WINDOW),
        f"mixed-{MIXED_BATCH}": arrival_batches(items, MIXED_BATCH),
    }


def verify(task: Task, backend: Backend, data: EvalSet, items: list[Item], reference: Arrays) -> AccuracyReport:
    """The variant's accuracy: each of the task's measures at its worse over the two batching passes."""
    metrics = task.metrics()
    reports = {}
    with Predictor(task, [backend]) as predictor:
        for name, batches in batching_passes(items).items():
            reports[name] = metrics.evaluate(data, reference, predictor.run_items(items, batches))
    return AccuracyReport.worst_of(reports)
