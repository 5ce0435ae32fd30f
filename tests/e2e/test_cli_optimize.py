"""The CLI as a user meets it: a real `inferopt optimize --quick` run, `inspect`, and every bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ENV = os.environ | {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "COLUMNS": "160"}


def inferopt(*args: str | Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "inferopt", *map(str, args)], capture_output=True, text=True, env=ENV, timeout=timeout
    )


@pytest.mark.slow
def test_quick_optimize_then_inspect_then_tamper(tmp_path: Path) -> None:
    out = tmp_path / "out"
    run = inferopt("optimize", "--quick", "--out", out)
    assert run.returncode == 0, run.stderr
    assert "chosen" in run.stdout and "Traceback" not in run.stderr
    artifact = out / "artifact"
    manifest = json.loads((artifact / "manifest.json").read_text())
    assert manifest["task"]["name"] == "text-embedding" and manifest["model_name"] == "all-MiniLM-L6-v2"
    assert manifest["schema_version"] == 2 and manifest["task"]["assets"] == ["tokenizer.json"]
    assert set(manifest["files"]) == {"model.onnx", "tokenizer.json", "drift_reference.json"}
    measures = manifest["accuracy"]["measures"]
    assert manifest["accuracy"]["budget"] == {"mean_cosine": 0.995, "min_cosine": 0.98}  # the default budget
    assert measures["mean_cosine"] >= 0.995 and measures["min_cosine"] >= 0.98
    assert set(manifest["accuracy"]["passes"]) == {"served", "mixed-64"}
    assert manifest["runtime"]["settings"]["batch_size"] in (1, 32)
    assert manifest["environment"]["cpu_model"]

    shown = inferopt("inspect", artifact)
    assert shown.returncode == 0 and "input_ids" in shown.stdout and "mean cosine" in shown.stdout
    assert " on cpu" in shown.stdout and manifest["runtime"]["placement"]["device"] == "cpu"  # where it was measured

    with (artifact / "tokenizer.json").open("a") as fh:
        fh.write(" ")
    refused = inferopt("inspect", artifact)
    assert refused.returncode == 2
    assert "tokenizer.json does not match its sha256" in refused.stderr and "Traceback" not in refused.stderr

    again = inferopt("optimize", "--quick", "--out", out)
    assert again.returncode == 2 and "already exists" in again.stderr and "--force" in again.stderr


@pytest.mark.slow
@pytest.mark.parametrize("presses", [1, 3], ids=["once", "impatiently"])
def test_ctrl_c_leaves_nothing_behind(tmp_path: Path, presses: int) -> None:
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "inferopt", "optimize", "--quick", "--out", str(out)],
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not any(p.name.startswith(".out.partial") for p in tmp_path.iterdir()):
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            pytest.fail(f"no staging folder appeared (exit code {proc.poll()}):\n{proc.communicate()[1][-3000:]}")
        time.sleep(0.2)
    time.sleep(3)  # well into the work
    for _ in range(presses):  # the later presses land in the cleanup and teardown, which must still finish
        proc.send_signal(signal.SIGINT)
        time.sleep(0.3)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr[-3000:]
    assert "interrupted" in stderr and "Traceback" not in stderr, stderr[-3000:]
    assert list(tmp_path.iterdir()) == []


def _model_dir_without_config(tmp_path: Path) -> Path:
    (tmp_path / "m").mkdir()
    return tmp_path / "m"


def _unsupported_model(tmp_path: Path) -> Path:
    (tmp_path / "gpt").mkdir()
    (tmp_path / "gpt" / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    return tmp_path / "gpt"


@pytest.mark.parametrize(
    ("make_args", "message"),
    [
        (lambda t: [t / "nope"], "does not exist"),
        (lambda t: [_model_dir_without_config(t)], "has no config.json"),
        (lambda t: [_unsupported_model(t)], "'gpt2'"),
        (lambda t: ["--data", t / "missing.txt"], "does not exist"),
        (lambda t: ["--data", (t / "e.txt", (t / "e.txt").write_text(""))[0]], "is empty"),
        (
            lambda t: [
                "--data",
                (t / "b.tsv", (t / "b.tsv").write_text("a\tb\tc\td\t1.0\ts\tt\n" * 2 + "a\tb\tc\td\tX\ts\tt\n"))[0],
            ],
            "line 3: score 'X' is not a number",
        ),
        (lambda t: ["--min-cosine", "1.5"], "is not a cosine"),
        (lambda t: ["--price-per-hour", "-1"], "is negative"),
    ],
    ids=[
        "no-model-dir",
        "not-hf-dir",
        "unsupported-model",
        "no-data",
        "empty-data",
        "malformed-csv",
        "bad-budget",
        "bad-price",
    ],
)
def test_bad_input_gets_one_line_and_no_output(tmp_path: Path, make_args: object, message: str) -> None:
    args = make_args(tmp_path)  # type: ignore[operator]
    run = inferopt("optimize", *args, "--out", tmp_path / "out", timeout=60)
    assert run.returncode == 2
    assert message in run.stderr and "Traceback" not in run.stderr
    assert len(run.stderr.strip().splitlines()) <= 2  # one message (wrapped at most once)
    assert not (tmp_path / "out").exists()


def test_force_never_deletes_a_foreign_directory(tmp_path: Path) -> None:
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    run = inferopt("optimize", "--quick", "--force", "--out", foreign, timeout=60)
    assert run.returncode == 2 and "not written by inferopt" in run.stderr
    assert (foreign / "notes.txt").read_text() == "keep me"
