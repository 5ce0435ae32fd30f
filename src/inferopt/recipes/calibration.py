"""Calibration data for recipes: the task's calibration inputs, preprocessed, with their FP32 outputs; and
ways to look inside the FP32 graph on them, or to check a quantized graph against FP32 on them."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from inferopt.batching import arrival_batches, sorted_batches
from inferopt.runtime.base import Arrays
from inferopt.tasks.base import Item, Task

CALIBRATION_BATCH = 32
MIXED_BATCH = 64  # the worst case the accuracy check also holds variants to: arrival order, padded to the longest


@dataclass(frozen=True)
class Calibration:
    task: Task
    items: list[Item]
    reference: Arrays  # FP32 outputs of `items`, one row each

    def __len__(self) -> int:
        return len(self.items)

    def first(self, n: int) -> Calibration:
        return Calibration(self.task, self.items[:n], {k: v[:n] for k, v in self.reference.items()})

    def batches(self, size: int = CALIBRATION_BATCH) -> list[Arrays]:
        """Collated batches in order of cost (each pads to almost nothing)."""
        return [self.task.collate([self.items[i] for i in rows]) for rows in sorted_batches(self.items, size)]

    def item_cosines(self, model_path: Path) -> tuple[float, float]:
        """(mean, min) cosine to FP32 per item of the ONNX model at `model_path`, each the worst of two
        batchings: cost-sorted batches, and batches of 64 in arrival order padded to their longest (dynamic INT8
        quantizes activations per batch, so padding moves the numbers). Per item, the worst output counts."""
        from inferopt.accuracy.measures import row_cosine
        from inferopt.engine import Predictor
        from inferopt.runtime.onnx import OnnxBackend

        worst_mean, worst_min = 1.0, 1.0
        with Predictor(self.task, [OnnxBackend(model_path, intra_op_threads=0)]) as predictor:
            for batches in (sorted_batches(self.items, CALIBRATION_BATCH), arrival_batches(self.items, MIXED_BATCH)):
                outputs = predictor.run_items(self.items, batches)
                cos = np.min([row_cosine(outputs[name], ref) for name, ref in self.reference.items()], axis=0)
                worst_mean, worst_min = min(worst_mean, float(cos.mean())), min(worst_min, float(cos.min()))
        return worst_mean, worst_min


def captured_batches(
    model: Any, names: list[str], calibration: Calibration, mask_input: str | None
) -> Iterator[tuple[dict[str, np.ndarray], np.ndarray | None]]:
    """Run `model` (an onnx.ModelProto) over the calibration batches with the tensors `names` exposed as outputs;
    yield ({name: value}, mask of real positions or None) per batch."""
    import onnx
    import onnxruntime as ort

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    existing = {o.name for o in probe.graph.output}
    probe.graph.output.extend(
        onnx.helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None) for n in names if n not in existing
    )
    session = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    feed_names = [i.name for i in session.get_inputs()]
    for feeds in calibration.batches():
        mask = feeds[mask_input].astype(bool) if mask_input else None
        values = session.run(names, {name: feeds[name] for name in feed_names})
        yield dict(zip(names, values, strict=True)), mask


def channel_absmax(
    model: Any, names: list[str], calibration: Calibration, mask_input: str | None
) -> dict[str, np.ndarray]:
    """Per-channel (last axis) max |value| of each named tensor. For [batch, sequence, channels] tensors of a
    model with a mask, over real positions only: padding never reaches a user and must not set a scale."""
    peaks: dict[str, np.ndarray] = {}
    for values, mask in captured_batches(model, names, calibration, mask_input):
        for name, value in values.items():
            use_mask = mask is not None and value.ndim == 3 and value.shape[:2] == mask.shape
            tokens = value[mask] if use_mask else value.reshape(-1, value.shape[-1])
            peak = np.abs(tokens).max(axis=0)
            peaks[name] = np.maximum(peaks[name], peak) if name in peaks else peak
    return peaks
