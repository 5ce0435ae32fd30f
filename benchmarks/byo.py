"""Bring your own model: a small user module (benchmarks/byo_lstm.py, a two-layer LSTM classifier) as a team
runs it today, PyTorch eager, against inferopt's pick, in one run on one machine.

1. `inferopt optimize benchmarks.byo_lstm:build --example benchmarks.byo_lstm:example_inputs` (the default
   variants and budget), unless --artifact is given.
2. In-process, on 2,000 rows of mixed lengths: PyTorch eager one row per call and in batches of 32 (rows of
   one length: the module has no mask, so a user cannot pad), against `inferopt.Predictor` one row per call
   and batched at the artifact's benchmarked settings. Fidelity of the pick to eager on the same rows.
3. Over the Open Inference Protocol v2 (the same JSON for both): `inferopt serve` against the server a team
   writes around its module (benchmarks/plain_tensor_server.py: FastAPI + PyTorch eager, one forward pass
   per request), closed loop at concurrency 1 (latency) and 64 (throughput), one row per request.

    python benchmarks/byo.py [--artifact DIR] [--out build/bench/byo] [--duration 10] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
console = Console(width=None if sys.stdout.isatty() else 160)
MODEL, EXAMPLE = "benchmarks.byo_lstm:build", "benchmarks.byo_lstm:example_inputs"
ROWS = 2000


def build_artifact(out: Path) -> Path:
    from inferopt.config import OptimizeConfig
    from inferopt.optimize import run_optimize
    from inferopt.tasks.base import ModelOptions

    outcome = run_optimize(
        OptimizeConfig(model=MODEL, model_options=ModelOptions(example=EXAMPLE), out=out, force=True), console
    )
    assert outcome.artifact_dir is not None
    return outcome.artifact_dir


def timed_calls(call: Callable[[Any], object], batches: list[Any]) -> tuple[list[float], float]:
    """Seconds per call, and the whole pass's seconds."""
    latencies, started = [], time.perf_counter()
    for batch in batches:
        t0 = time.perf_counter()
        call(batch)
        latencies.append(time.perf_counter() - t0)
    return latencies, time.perf_counter() - started


def by_length(rows: list[np.ndarray], size: int) -> list[np.ndarray]:
    groups: dict[int, list[np.ndarray]] = {}
    for row in rows:
        groups.setdefault(len(row), []).append(row)
    return [np.stack(g[i : i + size]) for g in groups.values() for i in range(0, len(g), size)]


def in_process(artifact: Path, rows: list[np.ndarray], rounds: int) -> tuple[list[dict[str, Any]], dict[str, float]]:
    import torch
    from benchmarks.byo_lstm import build

    import inferopt

    torch.set_num_threads(os.cpu_count() or 1)
    module = build().eval()

    def eager(batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return module(torch.from_numpy(batch)).numpy()

    inputs = [{"tokens": r} for r in rows]
    predictor = inferopt.Predictor.from_artifact(artifact)
    single = inferopt.Predictor.from_artifact(artifact)  # the same model, one row per call
    results = []
    cases: list[tuple[str, Callable[[Any], object], list[Any]]] = [
        ("PyTorch eager, 1 row per call", eager, [r[None] for r in rows]),
        ("PyTorch eager, batches of 32 (one length each)", eager, by_length(rows, 32)),
        ("inferopt pick, 1 row per call", lambda i: single.outputs([i]), inputs),
        (f"inferopt pick, Predictor ({predictor.batch_size}/batch, {len(predictor.backends)} sessions)",
         lambda all_inputs: predictor.outputs(all_inputs), [inputs]),
    ]  # fmt: skip
    for name, call, batches in cases:
        passes = [timed_calls(call, batches) for _ in range(rounds)]
        latencies = passes[0][0] if len(batches) > 1 else []
        results.append({
            "row": name,
            "rows_per_second": statistics.median(ROWS / seconds for _, seconds in passes),
            "p50_ms": float(np.percentile(latencies, 50) * 1000) if latencies else None,
            "p99_ms": float(np.percentile(latencies, 99) * 1000) if len(latencies) >= 660 else None,
        })  # fmt: skip
        console.print(f"  {name}: {results[-1]['rows_per_second']:,.0f} rows/s")
    reference = np.concatenate([eager(r[None]) for r in rows])
    picked = predictor.outputs(inputs)["output"]
    cos = (reference * picked).sum(1) / (np.linalg.norm(reference, axis=1) * np.linalg.norm(picked, axis=1))
    fidelity = {
        "mean_cosine": float(cos.mean()),
        "min_cosine": float(cos.min()),
        "argmax_agreement": float(np.mean(reference.argmax(1) == picked.argmax(1))),
    }
    predictor.close()
    single.close()
    return results, fidelity


def start(command: list[str], url: str, what: str) -> subprocess.Popen[bytes]:
    import httpx

    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    process.kill()
    raise SystemExit(f"{what} did not come up")


def over_http(artifact: Path, rows: list[np.ndarray], duration: float) -> list[dict[str, Any]]:
    from inferopt.artifact import load_artifact
    from inferopt.bench.loadgen import LoadConfig, run_load
    from inferopt.datafiles import write_rows

    name = load_artifact(artifact).model_name
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        inputs = Path(tmp) / "rows.npz"
        write_rows(inputs, [{"tokens": r} for r in rows])
        servers = [
            ("inferopt serve", [sys.executable, "-m", "inferopt", "serve", str(artifact), "--port", "8011",
                                "--no-access-log", "--cache", "off"], "http://127.0.0.1:8011", "/v2/health/ready"),
            ("FastAPI + PyTorch eager", [sys.executable, "benchmarks/plain_tensor_server.py", "--port", "8012"],
             "http://127.0.0.1:8012", "/health"),
        ]  # fmt: skip
        for label, command, base, health in servers:
            process = start(command, base + health, label)
            try:
                for concurrency in (1, 64):
                    config = LoadConfig(f"{base}/v2/models/{name}/infer", rate=None, concurrency=concurrency,
                                        duration_s=duration + 2, warmup_s=2, inputs=inputs, timeout_s=60)  # fmt: skip
                    result = run_load(config)
                    lat = result.latency_ms
                    results.append({
                        "server": label, "concurrency": concurrency, "requests_per_second": result.achieved_rate,
                        "p50_ms": lat["p50"], "p99_ms": lat["p99"], "errors": sum(result.errors.values()),
                    })  # fmt: skip
                    console.print(
                        f"  {label} c={concurrency}: {result.achieved_rate:,.1f} req/s, p50 {lat['p50']:.2f} ms"
                    )
            finally:
                process.terminate()
                process.wait(30)
    return results


def print_tables(local: list[dict[str, Any]], fidelity: dict[str, float], http: list[dict[str, Any]]) -> None:
    def fmt(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.2f}"

    table = Table(title=f"in-process, {ROWS:,} rows of lengths 8-32", title_justify="left")
    for column in ("row", "rows/s", "x eager 1-row", "p50 ms", "p99 ms"):
        table.add_column(column, justify="left" if column == "row" else "right")
    base = local[0]["rows_per_second"]
    for r in local:
        table.add_row(
            r["row"],
            f"{r['rows_per_second']:,.0f}",
            f"{r['rows_per_second'] / base:.1f}x",
            fmt(r["p50_ms"]),
            fmt(r["p99_ms"]),
        )
    console.print(table)
    console.print(
        f"pick vs eager on these rows: mean cosine {fidelity['mean_cosine']:.5f}, min {fidelity['min_cosine']:.5f}, "
        f"argmax agreement {fidelity['argmax_agreement']:.4f}"
    )
    table = Table(title="over OIP v2 (closed loop, one row per request)", title_justify="left")
    for column in ("server", "concurrency", "req/s", "p50 ms", "p99 ms", "errors"):
        table.add_column(column, justify="left" if column == "server" else "right")
    for r in http:
        table.add_row(
            r["server"],
            str(r["concurrency"]),
            f"{r['requests_per_second']:,.1f}",
            fmt(r["p50_ms"]),
            fmt(r["p99_ms"]),
            str(r["errors"]),
        )
    console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--artifact", type=Path, help="an optimized artifact of byo_lstm (default: optimize first)")
    parser.add_argument("--out", type=Path, default=REPO / "build" / "bench" / "byo")
    parser.add_argument("--rounds", type=int, default=3, help="timed in-process passes per row (median)")
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds per HTTP run")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    from benchmarks.byo_lstm import rows as make_rows

    artifact = args.artifact or build_artifact(args.out)
    rows = make_rows(ROWS, seed=7)
    console.print("[bold]in-process[/]")
    local, fidelity = in_process(artifact, rows, args.rounds)
    console.print("[bold]over OIP v2[/]")
    http = over_http(artifact, rows, args.duration)
    print_tables(local, fidelity, http)
    if args.json:
        write_record(args.json, artifact, {"in_process": local, "fidelity": fidelity, "http": http})


def write_record(path: Path, artifact: Path, results: dict[str, Any]) -> None:
    """A benchmark's results as JSON, with the artifact's recipe and settings, the machine and the date."""
    from inferopt.hardware import environment

    manifest = json.loads((artifact / "manifest.json").read_text())
    record = results | {
        "recipe": manifest["recipe"]["name"],
        "settings": manifest["runtime"]["settings"],
        "environment": environment(),
        "date": time.strftime("%Y-%m-%d"),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2, default=str))


if __name__ == "__main__":
    main()
