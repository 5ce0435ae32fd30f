"""Soak: `inferopt serve` under half its peak rate for 30 minutes, its memory, descriptors, threads and p99
watched every 30 s.

    python benchmarks/soak.py [ARTIFACT] [--minutes 30] [--window-s 30] [--settle-min 5] [--peak-rate R]
        [--zipf 1.1] [--side-rate 4] [--json OUT] [--chart OUT.html]

1. Peak: the highest open-loop rate with p99 <= --slo-p99-ms (50) against `inferopt serve ARTIFACT --cache off`
   (peak.py's search; --peak-rate skips it). Without the cache, so repeated texts do not flatter it.
2. Soak: a fresh server with its in-process cache (`--cache memory`), offered ONE open-loop schedule at half
   that peak for --minutes, in --window-s windows (Poisson arrivals, latency from the intended send time):
   single texts drawn Zipf-like (--zipf) from STS-B dev, so some hit the cache and some miss. Beside it, at
   --side-rate per second, list requests (8 texts) and bad ones (malformed JSON, empty text, numbers, a bad
   encoding_format, non-UTF-8), whose statuses are counted. Every window: the server process's RSS, open file
   descriptors and threads (/proc), and the window's p99.
3. The targets (issue 16), on the samples after --settle-min cut in thirds, the last against the first: RSS
   growth <= 5% and no growth in descriptors or threads (each third's highest: open connections and pool
   threads come and go with the load, a leak only grows), the p99 flat within 20% (each third's median window
   p99), no 5xx and no request without an answer. The chart (--chart) plots the four over time.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
import benchmarks.overload as overload  # noqa: E402
import benchmarks.serve as serve_benchmark  # noqa: E402

from inferopt.bench.charts import write_chart  # noqa: E402
from inferopt.bench.loadgen import LoadConfig, Phase, run_phases  # noqa: E402
from inferopt.bench.soak import Sampler, SideTraffic, SoakTargets, judge, soak_chart  # noqa: E402

console = Console()


def server(artifact: Path, port: int, cache: str, logs: Path) -> serve_benchmark.Server:
    command = [sys.executable, "-m", "inferopt", "serve", str(artifact), "--port", str(port), "--cache", cache,
               "--no-access-log"]  # fmt: skip
    return serve_benchmark.Server(f"soak-cache-{cache}", command, port, "/health/ready", logs)


def find_peak(args: argparse.Namespace, logs: Path) -> float:
    if args.peak_rate:
        return float(args.peak_rate)
    with server(args.artifact, args.port, "off", logs) as running:
        search = SimpleNamespace(probe_s=args.probe_s, data=args.data, slo_p99_ms=args.slo_p99_ms,
                                 start_rate=args.start_rate, tolerance=0.05)  # fmt: skip
        peak = overload.search_peak(running.url, search, console).peak_rate  # type: ignore[arg-type]
    if peak is None:
        sys.exit("error: no rate met the SLO; is the server up and the machine idle?")
    return float(peak)


def soak(args: argparse.Namespace, rate: float, logs: Path) -> dict[str, Any]:
    texts = serve_benchmark.sentences(args.data)
    windows = max(1, round(args.minutes * 60 / args.window_s))
    phases = [Phase(rate, args.window_s, name=f"window {i + 1}") for i in range(windows)]
    config = LoadConfig(f"http://127.0.0.1:{args.port + 1}", inputs=args.data, zipf=args.zipf, seed=args.seed,
                        timeout_s=30.0)  # fmt: skip
    with server(args.artifact, args.port + 1, "memory", logs) as running:
        assert running.process is not None
        sampler = Sampler(running.process.pid, args.window_s)
        side = SideTraffic("127.0.0.1", args.port + 1, texts, args.side_rate)
        started = time.monotonic()
        sampler.start()
        side.start()
        try:
            run = run_phases(config, phases)
        finally:
            side.stop()
            samples = sampler.stop()
    seconds = time.monotonic() - started
    p99s = [(run.offsets_s[i] + args.window_s, r.latency_ms.get("p99")) for i, r in enumerate(run.phases)]
    targets = SoakTargets(settle_s=args.settle_min * 60)
    verdict = judge(samples, p99s, targets)
    errors: dict[str, int] = {}
    for r in run.phases:
        for kind, count in r.errors.items():
            errors[kind] = errors.get(kind, 0) + count
    side_5xx = sum(n for counts in side.statuses.values() for status, n in counts.items() if status >= 500)
    verdict.checks["no 5xx, nothing lost"] = not errors and side_5xx == 0 and side.failures == 0
    verdict.checks["generator kept its schedule"] = all(r.valid for r in run.phases)
    return {
        "rate": rate,
        "seconds": seconds,
        "windows": [
            {
                "end_s": t,
                "p99_ms": p,
                "p50_ms": r.latency_ms.get("p50"),
                "sent": r.measured,
                "ok": r.ok,
                "late": r.late_fraction,
            }
            for (t, p), r in zip(p99s, run.phases, strict=True)
        ],
        "samples": [vars(s) for s in samples],
        "errors": errors,
        "side": {kind: dict(counts) for kind, counts in side.statuses.items()} | {"no_answer": side.failures},
        "targets": vars(targets),
        "verdict": verdict.to_dict(),
        "_chart": (samples, p99s),
    }


def report(result: dict[str, Any], peak: float) -> None:
    verdict = result["verdict"]
    table = Table("check", "measured", "target", "result", title=f"soak at {result['rate']:.1f} req/s "
                  f"(half the {peak:.1f} req/s peak), {result['seconds'] / 60:.1f} min")  # fmt: skip
    p99 = verdict["p99_change"]
    rows = [
        ("RSS growth, last third vs first", f"{verdict['rss_growth']:+.1%}", "<= +5%", verdict["checks"]["rss"]),
        ("open descriptors added", f"{verdict['fd_growth']:+d}", "<= 0", verdict["checks"]["fds"]),
        ("threads added", f"{verdict['thread_growth']:+d}", "<= 0", verdict["checks"]["threads"]),
        ("p99, last third vs first", "n/a" if p99 is None else f"{p99:+.1%}", "within 20%", verdict["checks"]["p99"]),
        (
            "errors (timed load)",
            json.dumps(result["errors"]) or "{}",
            "none",
            verdict["checks"]["no 5xx, nothing lost"],
        ),
        ("side traffic", json.dumps(result["side"]), "no 5xx", verdict["checks"]["no 5xx, nothing lost"]),
    ]
    for name, measured, target, ok in rows:
        table.add_row(name, measured, target, "[green]met" if ok else "[red]missed")
    console.print(table)
    first, last = result["samples"][0], result["samples"][-1]
    console.print(f"RSS {first['rss_mb']:.1f} -> {last['rss_mb']:.1f} MB, fds {first['fds']} -> {last['fds']}, "
                  f"threads {first['threads']} -> {last['threads']}")  # fmt: skip


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("artifact", type=Path, nargs="?", default=REPO / "build" / "demo" / "artifact")
    parser.add_argument("--data", type=Path, default=overload.STSB_DEV, help="sentences sent (default: STS-B dev)")
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--window-s", type=float, default=30.0, help="seconds per window (a sample and a p99)")
    parser.add_argument("--settle-min", type=float, default=5.0, help="growth is measured from this minute on")
    parser.add_argument("--peak-rate", type=float, help="skip the search and use this peak (req/s)")
    parser.add_argument("--slo-p99-ms", type=float, default=50.0)
    parser.add_argument("--start-rate", type=float, default=100.0)
    parser.add_argument("--probe-s", type=float, default=6.0)
    parser.add_argument("--zipf", type=float, default=1.1, help="skew of the texts sent (cache hits and misses)")
    parser.add_argument("--side-rate", type=float, default=4.0, help="list + bad requests per second beside")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--port", type=int, default=18700)
    parser.add_argument("--json", type=Path, default=REPO / "build" / "bench" / "soak.json")
    parser.add_argument("--chart", type=Path, default=REPO / "build" / "bench" / "soak.html")
    args = parser.parse_args()
    if not (args.artifact / "manifest.json").exists():
        sys.exit(f"error: {args.artifact} is not an artifact (no manifest.json); run `make demo`")
    if not args.data.exists():
        sys.exit(f"error: {args.data} not found (--data)")
    return args


def main() -> None:
    args = parse_args()
    logs = args.json.parent / "soak-logs"
    logs.mkdir(parents=True, exist_ok=True)
    peak = find_peak(args, logs)
    console.print(f"peak {peak:.1f} req/s with p99 <= {args.slo_p99_ms:g} ms; soaking at {peak / 2:.1f}")
    result = soak(args, peak / 2, logs)
    samples, p99s = result.pop("_chart")
    result["peak_rate"] = peak
    report(result, peak)
    args.json.write_text(json.dumps(result, indent=2))
    title = f"inferopt serve, {result['rate']:.0f} req/s for {result['seconds'] / 60:.0f} min"
    table = [
        w | {"rss_mb": s.rss_mb, "fds": s.fds, "threads": s.threads}
        for w, s in zip(result["windows"], samples[1:], strict=False)
    ]
    write_chart(soak_chart(samples, p99s, title), args.chart, title, table)
    console.print(f"json: {args.json}  chart: {args.chart}")
    sys.exit(0 if result["verdict"]["passed"] else 1)


if __name__ == "__main__":
    main()
