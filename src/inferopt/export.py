"""torch -> ONNX for any task: the io schema's names and dynamic axes, onnx.checker, and a parity check against
PyTorch through the task's own preprocessing (the exported graph must compute what the module computes).

A user's ready ONNX file skips the export: it is checked, and it is itself the FP32 reference.
"""

from __future__ import annotations

import copy
import os
import re
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inferopt.errors import InferoptError, InputError
from inferopt.tasks.base import IOSchema, Source

OPSET = 17
PARITY_MIN_MEAN_COSINE = 0.9999


class ExportError(InferoptError):
    """The module does not export, or the exported graph does not compute what the PyTorch module computes."""


@dataclass(frozen=True)
class ExportResult:
    path: Path
    seconds: float
    parity_mean_cosine: float = 1.0
    parity_min_cosine: float = 1.0
    parity_items: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "opset": OPSET,
            "parity_mean_cosine": self.parity_mean_cosine,
            "parity_min_cosine": self.parity_min_cosine,
            "parity_items": self.parity_items,
        }


def export_onnx(source: Source, schema: IOSchema, out_path: Path) -> Path:
    """Export a copy of `source.module` (tracing may change a module: a Hugging Face one gave 0.93 cosine to its
    own pre-export outputs in our tests) with the schema's names and dynamic axes, and check the graph."""
    import onnx
    import torch

    module = copy.deepcopy(source.module).eval()
    args = tuple(torch.from_numpy(source.example[name]) for name in schema.input_names)
    with warnings.catch_warnings(), native_stdout_silenced():
        warnings.simplefilter("ignore")  # the tracer's own warnings about Python control flow; parity decides
        try:
            torch.onnx.export(
                module,
                args,
                str(out_path),
                input_names=schema.input_names,
                output_names=schema.output_names,
                dynamic_axes=schema.dynamic_axes(),
                opset_version=OPSET,
                dynamo=False,
            )
        except Exception as exc:  # the exporter raises many kinds; all mean "this module does not export"
            raise ExportError(export_failure(exc, source.location), _EXPORT_HINT) from exc
    onnx.checker.check_model(str(out_path))
    return out_path


@contextmanager
def native_stdout_silenced() -> Iterator[None]:
    """Swallow what C++ code prints on file descriptor 1 meanwhile: on an unsupported operator the TorchScript
    exporter prints the whole traced graph there before it raises, which would bury the one-line error."""
    sys.stdout.flush()
    saved = os.dup(1)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 1)
        try:
            yield
        finally:
            sys.stdout.flush()
            os.dup2(saved, 1)
            os.close(saved)


_EXPORT_HINT = "rewrite that op, or export the model to ONNX yourself and pass the .onnx file"
_UNSUPPORTED_OP = re.compile(r"operator '?([\w:.]+)'? to ONNX|aten::[\w.]+|prim::[\w.]+")


def export_failure(exc: BaseException, location: str) -> str:
    """One line naming the operator that does not export (when the exporter says which) and the module."""
    text = " ".join(str(exc).split())
    match = _UNSUPPORTED_OP.search(text)
    if match:
        op = match.group(1) or match.group(0)
        return f"ONNX export of {location} failed: operator {op} is not supported by the exporter at opset {OPSET}"
    return f"ONNX export of {location} failed: {type(exc).__name__}: {text[:300]}"


def copy_onnx(path: Path, out_path: Path) -> Path:
    """A user's ONNX file, checked (one-line error for a file that is not ONNX), copied into the work folder."""
    import onnx

    try:
        onnx.checker.check_model(str(path))
    except Exception as exc:
        raise InputError(
            f"{path} is not a valid ONNX model ({type(exc).__name__}: {' '.join(str(exc).split())[:200]})",
            "pass a model saved by torch.onnx.export or onnx.save",
        ) from exc
    shutil.copyfile(path, out_path)
    return out_path


def check_parity(path: Path, mean_cosine: float, min_cosine: float, items: int, started: float) -> ExportResult:
    """The export's result, or ExportError when it disagrees with PyTorch."""
    if mean_cosine < PARITY_MIN_MEAN_COSINE:
        raise ExportError(
            f"The ONNX export disagrees with PyTorch: mean cosine {mean_cosine:.6f} < {PARITY_MIN_MEAN_COSINE}",
            "this model's architecture is not exported faithfully; please report it with the model",
        )
    return ExportResult(path, time.perf_counter() - started, mean_cosine, min_cosine, items)
