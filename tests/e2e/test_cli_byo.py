"""Bring your own model from the CLI: a PyTorch module by import path with its example inputs, a ready .onnx
file, an operator that does not export, and every bad input a user can give (one line, nothing written)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
ENV = os.environ | {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "COLUMNS": "160"}
STRICT = ("--min-cosine", "0.99999", "--min-item-cosine", "0.9999")


def inferopt(*args: str | Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "inferopt", *map(str, args)],
        capture_output=True,
        text=True,
        env=ENV,
        cwd=REPO,  # the test modules import as tests.byo_models, as a user's own package would from its root
        timeout=timeout,
    )


def manifest_of(out: Path) -> dict:
    return json.loads((out / "artifact" / "manifest.json").read_text())


def test_a_module_with_two_inputs_and_two_outputs(tmp_path: Path) -> None:
    out = tmp_path / "out"
    run = inferopt(
        "optimize", "tests.byo_models:two_headed", "--example", "tests.byo_models:two_headed_examples",
        "--quick", "--out", out, *STRICT,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    manifest = manifest_of(out)
    assert manifest["task"]["name"] == "tensor" and manifest["task"]["assets"] == ["examples.npz"]
    io = manifest["io"]
    assert [(t["name"], t["dtype"], t["shape"]) for t in io["inputs"]] == [
        ("features", "float32", ["batch", 16]),
        ("ids", "int64", ["batch", 3]),
    ]
    assert [(t["name"], t["shape"]) for t in io["outputs"]] == [("output_0", ["batch", 4]), ("output_1", ["batch"])]
    accuracy = manifest["accuracy"]
    assert set(accuracy["per_output"]) == {"output_0", "output_1"}
    assert accuracy["per_output"]["output_0"]["argmax_agreement"] == 1.0  # class scores: argmax is measured
    assert accuracy["per_output"]["output_1"]["argmax_agreement"] is None  # one score per item: no classes
    # INT8 cannot hold 0.9999 on every item of the logits; the FP32 graph can, so it is the pick.
    report = json.loads((out / "report.json").read_text())
    assert report["selection"]["chosen"] == "onnx-fp32" == manifest["recipe"]["name"]
    assert "int8-dynamic" in report["selection"]["failures"]
    assert [v["name"] for v in report["variants"]] == ["torch-fp32", "onnx-fp32", "int8-dynamic"]


def test_a_second_dynamic_axis_shown_by_the_examples(tmp_path: Path) -> None:
    out = tmp_path / "out"
    run = inferopt(
        "optimize", "tests.byo_models:lstm_classifier", "--example", "tests.byo_models:lstm_examples",
        "--quick", "--out", out,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    (tokens,) = manifest_of(out)["io"]["inputs"]
    assert tokens["shape"] == ["batch", "tokens_axis1"]  # the examples came in three lengths
    assert manifest_of(out)["accuracy"]["measures"]["min_cosine"] >= 0.98


def test_dynamic_axes_can_be_named_on_the_command_line(tmp_path: Path) -> None:
    out = tmp_path / "out"
    run = inferopt(
        "optimize", "tests.byo_models:lstm_classifier", "--example", "tests.byo_models:lstm_examples",
        "--dynamic-axes", "tokens:1:sequence", "--quick", "--out", out,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert manifest_of(out)["io"]["inputs"][0]["shape"] == ["batch", "sequence"]


def exported_lstm(tmp_path: Path) -> Path:
    """The LSTM classifier exported by hand, as a user with their own ONNX file would have it."""
    import warnings

    import torch
    from tests.byo_models import lstm_classifier

    model_path = tmp_path / "lstm.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's warnings (the suite turns warnings into errors)
        torch.onnx.export(
            lstm_classifier(),
            (torch.randint(0, 50, (2, 5)),),
            str(model_path),
            input_names=["tokens"],
            output_names=["logits"],
            dynamic_axes={"tokens": {0: "batch", 1: "sequence"}, "logits": {0: "batch"}},
            opset_version=17,
            dynamo=False,
        )
    return model_path


def test_a_ready_onnx_file_is_its_own_reference(tmp_path: Path) -> None:
    model_path = exported_lstm(tmp_path)
    data = tmp_path / "data.npz"
    np.savez(data, tokens=np.random.default_rng(0).integers(0, 50, (48, 7)))
    out = tmp_path / "out"
    run = inferopt("optimize", model_path, "--data", data, "--quick", "--out", out)
    assert run.returncode == 0, run.stderr
    report = json.loads((out / "report.json").read_text())
    names = [v["name"] for v in report["variants"]]
    assert names == ["onnx-fp32", "int8-dynamic"]  # no PyTorch module, so no PyTorch variants
    onnx_fp32 = next(v for v in report["variants"] if v["name"] == "onnx-fp32")
    assert onnx_fp32["accuracy"]["measures"]["min_cosine"] == pytest.approx(1.0, abs=1e-6)  # itself, exactly
    assert report["export"] == {"given": str(model_path)}
    assert manifest_of(out)["io"]["inputs"][0]["shape"] == ["batch", "sequence"]


def test_an_operator_that_does_not_export_is_named_and_pytorch_is_still_measured(tmp_path: Path) -> None:
    out = tmp_path / "out"
    run = inferopt(
        "optimize", "tests.byo_models:inverse_gaussian", "--example", "tests.byo_models:eight_features",
        "--quick", "--out", out,
    )  # fmt: skip
    assert run.returncode == 2
    error = run.stderr.strip()
    assert "aten::erfinv" in error and "tests.byo_models:inverse_gaussian" in error and "Traceback" not in error
    assert len(error.splitlines()) <= 3  # one message (wrapped), not the exporter's graph dump
    assert "graph(" not in run.stdout  # the exporter's own print of the traced graph is kept out
    report = json.loads((out / "report.json").read_text())
    assert [v["name"] for v in report["variants"]] == ["torch-fp32"] and report["variants"][0]["bench"] is not None
    assert not (out / "artifact").exists()


def _onnx_garbage(tmp: Path) -> Path:
    (tmp / "model.onnx").write_bytes(b"not a protobuf at all")
    return tmp / "model.onnx"


def _float_tokens(tmp: Path) -> Path:
    np.savez(tmp / "floats.npz", tokens=np.random.default_rng(0).random((8, 5)))
    return tmp / "floats.npz"


@pytest.mark.parametrize(
    ("make_args", "message"),
    [
        (lambda t: ["tests.byo_models:not_a_module", "--example", "tests.byo_models:eight_features"],
         "returned str, not a torch.nn.Module"),
        (lambda t: ["tests.byo_models:missing", "--example", "tests.byo_models:eight_features"],
         "has no attribute 'missing'"),
        (lambda t: ["nowhere.models:build", "--example", "tests.byo_models:eight_features"],
         "cannot import nowhere.models"),
        (lambda t: ["tests.byo_models:two_headed"], "pass --example"),
        (lambda t: ["tests.byo_models:two_headed", "--example", "tests.byo_models:unbatched_examples"],
         "needs a batch axis"),
        (lambda t: ["tests.byo_models:two_headed", "--example", "tests.byo_models:mismatched_examples"],
         "different batch sizes on axis 0 (features: 4, ids: 5)"),
        (lambda t: ["tests.byo_models:two_headed", "--example", "tests.byo_models:eight_features"],
         "missing 1 required positional argument"),
        (lambda t: ["tests.byo_models:lstm_classifier", "--example", "tests.byo_models:lstm_examples",
                    "--dynamic-axes", "tokens:3"], "is not an axis of tokens"),
        (lambda t: [_onnx_garbage(t)], "is not an ONNX model"),
        (lambda t: [t / "absent.onnx"], "does not exist"),
        (lambda t: [t / "model.onnx", "--dynamic-axes", "x:1"], "--dynamic-axes is for a PyTorch module"),
        (lambda t: ["tests.byo_models:two_headed", "--example", "tests.byo_models:two_headed_examples",
                    "--min-argmax-agreement", "1.5"], "is out of range"),
        (lambda t: ["--min-argmax-agreement", "0.99"], "--min-argmax-agreement is not a measure of this task"),
    ],
    ids=[
        "not-a-module", "no-such-function", "no-such-module", "no-example", "no-batch-axis", "batch-mismatch",
        "wrong-forward-args", "bad-dynamic-axis", "not-onnx", "no-onnx-file", "no-onnx-with-axes",
        "bad-budget-value", "measure-of-another-task",
    ],
)  # fmt: skip
def test_bad_input_is_one_line_and_nothing_is_written(tmp_path: Path, make_args: object, message: str) -> None:
    out = tmp_path / "out"
    run = inferopt("optimize", *make_args(tmp_path), "--quick", "--out", out, timeout=120)  # type: ignore[operator]
    assert run.returncode == 2, run.stderr
    assert message in run.stderr and "Traceback" not in run.stderr, run.stderr
    assert len(run.stderr.strip().splitlines()) <= 3
    assert not out.exists()


def test_tensor_data_of_the_wrong_dtype_is_refused(tmp_path: Path) -> None:
    model = exported_lstm(tmp_path)
    run = inferopt("optimize", model, "--data", _float_tokens(tmp_path), "--quick", "--out", tmp_path / "out")
    assert run.returncode == 2 and "tokens is float64, the model takes int64" in run.stderr
    assert not (tmp_path / "out").exists()
