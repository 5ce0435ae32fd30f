"""Admission by predicted wait, checked on a model of known capacity: the fake model (FakeBackend, 10 ms per
batch of one: about 100 items/s) offered 300 req/s open loop for 8 s by `inferopt load`, with --max-queue-ms
50 and without it. Not the issue's overload benchmark (the text artifact, its peak, 3x, recovery): a check
that the mechanism sheds what the server cannot finish in time, on a server whose capacity is known.

    python benchmarks/admission_check.py [--rate 300] [--duration 8] [--max-queue-ms 50]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

from inferopt.serve.config import ServeConfig
from inferopt.serve.testing import ServerThread, fake_model

DELAY_S = 0.01


def run(rate: float, duration: float, max_queue_ms: float | None) -> dict[str, object]:
    config = ServeConfig(access_log=False, cache="off", max_batch=1, max_queue_ms=max_queue_ms)
    with (
        ServerThread(fake_model(delay_s=DELAY_S, batch_size=1), config) as server,
        tempfile.TemporaryDirectory() as tmp,
    ):
        out = Path(tmp) / "load.json"
        command = [sys.executable, "-m", "inferopt", "load", server.url, "--rate", str(rate)]
        # `inferopt load` exits 1 when requests failed, as the 429s here do: its JSON says how.
        done = subprocess.run([*command, "--duration", str(duration), "--json", str(out)], capture_output=True)
        if not out.exists():
            raise SystemExit(f"inferopt load failed: {done.stderr.decode()[-2000:]}")
        return json.loads(out.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=300.0)
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--max-queue-ms", type=float, default=50.0)
    args = parser.parse_args()
    table = Table(
        title=f"fake model, ~{1 / DELAY_S:.0f} items/s, offered {args.rate:.0f} req/s for {args.duration:.0f} s"
    )
    for column in ("server", "answered 200", "429", "p50 ms (200s)", "p99 ms (200s)", "max ms (200s)"):
        table.add_column(column, justify="right")
    for limit in (args.max_queue_ms, None):
        result = run(args.rate, args.duration, limit)
        latency = result["latency_ms"]
        table.add_row(
            f"--max-queue-ms {limit:g}" if limit else "no --max-queue-ms (deadline 30 s)",
            str(result["ok"]),
            str(result["errors"].get("429", 0)),
            *(f"{latency[k]:.1f}" if latency.get(k) is not None else "n/a" for k in ("p50", "p99", "max")),
        )
    Console(width=150).print(table)


if __name__ == "__main__":
    main()
