"""torch -> ONNX: dynamic batch and sequence axes, onnx.checker, and a parity check against PyTorch.

The exported graph includes mean pooling and L2 normalisation, so it returns final embeddings.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from inferopt.errors import InferoptError
from inferopt.tasks.text_embedding import INPUT_NAMES, OUTPUT_NAME, TextTokenizer, pad_batch

OPSET = 17
PARITY_MIN_MEAN_COSINE = 0.9999


class ExportError(InferoptError):
    """The exported graph does not compute what the PyTorch model computes."""


@dataclass(frozen=True)
class ExportResult:
    path: Path
    parity_mean_cosine: float
    parity_min_cosine: float
    parity_texts: int
    seconds: float


def export_onnx(
    model_dir: Path, tokenizer: TextTokenizer, reference: np.ndarray, parity_texts: list[str], out_path: Path
) -> ExportResult:
    """Export a fresh copy of the source model and check it against `reference` (FP32 torch embeddings of
    `parity_texts`). A fresh copy, because tracing leaves a Hugging Face module changed: the same module
    gave 0.93 cosine to its own pre-export outputs in our tests."""
    import onnx
    import torch

    from inferopt.tasks.text_embedding import load_source_model

    started = time.perf_counter()
    module = load_source_model(model_dir)
    example = pad_batch(tokenizer.encode_ids(["an example input", "a second, longer example input sentence"]))
    args = tuple(torch.from_numpy(example[name]) for name in INPUT_NAMES)
    axes = {name: {0: "batch", 1: "sequence"} for name in INPUT_NAMES} | {OUTPUT_NAME: {0: "batch"}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's own warnings about Python control flow; parity decides
        torch.onnx.export(
            module,
            args,
            str(out_path),
            input_names=list(INPUT_NAMES),
            output_names=[OUTPUT_NAME],
            dynamic_axes=axes,
            opset_version=OPSET,
            dynamo=False,
        )
    onnx.checker.check_model(str(out_path))
    mean_cos, min_cos = _parity(out_path, tokenizer, reference, parity_texts)
    if mean_cos < PARITY_MIN_MEAN_COSINE:
        raise ExportError(
            f"The ONNX export disagrees with PyTorch: mean cosine {mean_cos:.6f} < {PARITY_MIN_MEAN_COSINE}",
            "this model's architecture is not exported faithfully; please report it with the model",
        )
    return ExportResult(out_path, mean_cos, min_cos, len(parity_texts), time.perf_counter() - started)


def _parity(path: Path, tokenizer: TextTokenizer, reference: np.ndarray, texts: list[str]) -> tuple[float, float]:
    from inferopt.accuracy import row_cosine
    from inferopt.engine import Embedder
    from inferopt.runtime.onnx import OnnxBackend

    with Embedder(tokenizer, [OnnxBackend(path, intra_op_threads=0)], batch_size=32) as embedder:
        cos = row_cosine(embedder.embed(texts), reference)
    return float(cos.mean()), float(cos.min())
