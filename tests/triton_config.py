"""Triton's own ModelConfig protobuf, to parse the config.pbtxt files `inferopt export triton` writes.

tritonclient is installed without its dependencies (make setup): its pins (protobuf, ml-dtypes) conflict with
ours, and only its generated model_config_pb2 module is needed. That file is loaded on its own, since
`tritonclient.grpc`'s package import wants grpc and the rest of the client.
"""

from __future__ import annotations

import importlib.util
from functools import cache
from pathlib import Path
from typing import Any

import pytest


@cache
def model_config_pb2() -> Any:
    tritonclient = pytest.importorskip("tritonclient", reason="tritonclient (make setup) has Triton's model_config")
    path = Path(tritonclient.__file__).parent / "grpc" / "model_config_pb2.py"
    spec = importlib.util.spec_from_file_location("tritonclient_model_config_pb2", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def parse_config(text: str) -> Any:
    """A config.pbtxt as Triton reads it: inference.ModelConfig (google.protobuf.text_format raises on any error)."""
    from google.protobuf import text_format

    return text_format.Parse(text, model_config_pb2().ModelConfig())


def read_config(model_dir: Path) -> Any:
    return parse_config((model_dir / "config.pbtxt").read_text(encoding="utf-8"))


def datatype_name(config_datatype: int) -> str:
    """TYPE_FP32 -> "TYPE_FP32"."""
    return str(model_config_pb2().DataType.Name(config_datatype))
