"""Shape buckets: every batch is padded up to the next bucket size, so the runtime sees a handful of shapes.

A GPU runtime pays for each new shape: TensorRT builds an engine (profile) for it, a CUDA graph is captured
for one shape only. With buckets the shapes are known up front, so warm-up builds them all before traffic.

The batch axis is padded by repeating the last row (a real input, valid for any model), and the results of
the padding rows are dropped. An axis named `sequence` is a padded token axis (the text task's): it is padded
with 0, which its attention mask, padded with 0 too, masks out. Other axes are left as they are.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from inferopt.runtime.base import Arrays, Backend

SEQUENCE_AXIS = "sequence"
Shape = Sequence[int | str | None]


def bucket(size: int, buckets: Sequence[int]) -> int:
    """The smallest bucket that holds `size`; past the largest one, `size` itself (run as it is)."""
    return next((b for b in buckets if b >= size), size)


def _sequence_axes(shapes: dict[str, Shape]) -> dict[str, int]:
    return {name: list(shape).index(SEQUENCE_AXIS) for name, shape in shapes.items() if SEQUENCE_AXIS in shape}


class BucketedBackend:
    def __init__(
        self,
        inner: Backend,
        input_shapes: dict[str, Shape],
        batch_buckets: Sequence[int],
        sequence_buckets: Sequence[int] = (),
        output_shapes: dict[str, Shape] | None = None,
    ) -> None:
        self.inner = inner
        self.batch_buckets = tuple(batch_buckets)
        self.sequence_buckets = tuple(sequence_buckets)
        # tensor name -> the index of its sequence axis, for the inputs (and outputs) that have one
        self.sequence_axes = _sequence_axes(input_shapes)
        self.output_sequence_axes = _sequence_axes(output_shapes or {})

    def run(self, inputs: Arrays) -> Arrays:
        """The inner backend's outputs for `inputs` padded to their buckets, cut back to `inputs`' own rows and,
        on an output's sequence axis, to their own length."""
        rows = len(next(iter(inputs.values())))
        lengths = [inputs[name].shape[axis] for name, axis in self.sequence_axes.items() if name in inputs]
        outputs = {name: value[:rows] for name, value in self.inner.run(self.pad(inputs)).items()}
        for name, axis in self.output_sequence_axes.items():
            if name in outputs and lengths:
                outputs[name] = np.take(outputs[name], np.arange(max(lengths)), axis=axis)
        return outputs

    def pad(self, inputs: Arrays, rows: int | None = None, length: int | None = None) -> Arrays:
        """`inputs` padded to their buckets (rows to a batch bucket, token axes to a sequence bucket), or to at
        least `rows` and `length` where given."""
        have = len(next(iter(inputs.values())))
        target_rows = max(bucket(have, self.batch_buckets), rows or 0)
        lengths = [inputs[name].shape[axis] for name, axis in self.sequence_axes.items() if name in inputs]
        target_length = max(bucket(max(lengths), self.sequence_buckets), length or 0) if lengths else 0
        padded = {}
        for name, value in inputs.items():
            axis = self.sequence_axes.get(name)
            if axis is not None and target_length > value.shape[axis]:
                widths = [(0, 0)] * value.ndim
                widths[axis] = (0, target_length - value.shape[axis])
                value = np.pad(value, widths)
            if target_rows > have:
                value = np.concatenate([value, np.repeat(value[-1:], target_rows - have, axis=0)])
            padded[name] = value
        return padded

    def warmup(self, example: Arrays) -> None:
        """The example at its bucket, then at the largest buckets: TensorRT then builds one engine whose profile
        spans the shapes traffic brings, instead of a larger one each time a larger batch arrives."""
        self.inner.warmup(self.pad(example))
        largest_rows = max(self.batch_buckets, default=None)
        largest_length = max(self.sequence_buckets, default=None)
        self.inner.run(self.pad(example, largest_rows, largest_length))

    def info(self) -> dict[str, object]:
        return {
            **self.inner.info(),
            "batch_buckets": list(self.batch_buckets),
            "sequence_buckets": list(self.sequence_buckets),
        }
