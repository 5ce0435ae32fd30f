"""Look inside the FP32 graph on calibration texts: the tensors that quantization decisions are made from."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from inferopt.tasks.text_embedding import TextTokenizer, pad_batch

CALIBRATION_BATCH = 32


def captured_batches(
    model: Any, names: list[str], tokenizer: TextTokenizer, texts: list[str]
) -> Iterator[tuple[dict[str, np.ndarray], np.ndarray]]:
    """Run `model` (an onnx.ModelProto) over `texts` in length-sorted batches with the tensors `names`
    exposed as outputs; yield ({name: value}, attention mask) per batch."""
    import onnx
    import onnxruntime as ort

    from inferopt.engine import batch_order

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    existing = {o.name for o in probe.graph.output}
    probe.graph.output.extend(
        onnx.helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None) for n in names if n not in existing
    )
    session = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    ids = tokenizer.encode_ids(texts)
    lengths = np.array([len(row) for row in ids])
    for batch in batch_order(lengths, CALIBRATION_BATCH, sort_by_length=True):
        feeds = pad_batch([ids[i] for i in batch], tokenizer.pad_id)
        yield dict(zip(names, session.run(names, feeds), strict=True)), feeds["attention_mask"].astype(bool)


def channel_absmax(model: Any, names: list[str], tokenizer: TextTokenizer, texts: list[str]) -> dict[str, np.ndarray]:
    """Per-channel (last axis) max |value| of each named [batch, sequence, channels] tensor, over real tokens
    only: padding positions never reach a user and must not set a scale."""
    peaks: dict[str, np.ndarray] = {}
    for values, mask in captured_batches(model, names, tokenizer, texts):
        for name, value in values.items():
            tokens = value[mask] if value.ndim == 3 else value.reshape(-1, value.shape[-1])
            peak = np.abs(tokens).max(axis=0)
            peaks[name] = np.maximum(peaks[name], peak) if name in peaks else peak
    return peaks
