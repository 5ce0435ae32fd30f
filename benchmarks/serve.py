"""inferopt serve vs a plain per-request server, over loopback, in one run on one machine.

    python benchmarks/serve.py ARTIFACT [--duration 15] [--concurrency 1 16 64] [--json OUT] [--quick]
                                        [--slo-p99-ms 50] [--skip-peak]

1. Single-sentence requests (STS-B dev sentences) at each concurrency, against
   - inferopt serve ARTIFACT --cache off (so it is model against model), and
   - benchmarks/plain_server.py (FastAPI + sentence-transformers, one forward pass per request).
2. A Zipf stream (s = 1.1 over 10,000 distinct inputs) at the highest concurrency, inferopt with the
   in-process cache on vs off.
3. The artifact's in-process throughput: measured here with inferopt's Embedder, and as recorded by
   optimize's harness in the manifest.
Then the issue's targets, as ratios of numbers from this run.

4. The peak rate with p99 <= --slo-p99-ms (default 50) of each server, from `inferopt load --find-peak`
   (open loop: latency from the intended send time, so stalls are counted), with the cache off.

Load comes from `inferopt load` (inferopt.bench.loadgen): closed loop at the fixed concurrencies of 1-2
(labelled as such: N connections, each sending when its answer arrives), open loop for 4. Sentences are
read from ../shared relative to the repository and never copied into it.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
STSB_DEV = REPO.parent / "shared" / "data" / "stsbenchmark" / "sts-dev.csv"
ZIPF_S, ZIPF_DISTINCT = 1.1, 10_000
MIN_P99_SAMPLES = 660  # DESIGN.md: fewer samples than this and a p99 is not worth printing


@dataclass(frozen=True)
class LoadRun:
    server: str
    workload: str
    concurrency: int
    requests: int
    seconds: float
    p50_ms: float
    p95_ms: float | None
    p99_ms: float | None
    errors: int
    non_2xx: int

    @property
    def throughput(self) -> float:
        return self.requests / self.seconds


def sentences(path: Path) -> list[str]:
    if not path.exists():
        sys.exit(f"error: {path} not found; the benchmark reads STS-B dev from ../shared (see --data)")
    seen: dict[str, None] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        for text in line.split("\t")[5:7]:
            if text.strip():
                seen.setdefault(text.strip(), None)
    return list(seen)


def measure(url: str, label: tuple[str, str, int], args: argparse.Namespace, zipf: float | None = None) -> LoadRun:
    """Closed loop at the label's concurrency: `args.warmup` s discarded, then `args.duration` s measured."""
    from inferopt.bench.loadgen import LoadConfig, run_load

    config = LoadConfig(url, rate=None, concurrency=label[2], duration_s=args.warmup + args.duration,
                        warmup_s=args.warmup, inputs=args.data, zipf=zipf,
                        distinct=ZIPF_DISTINCT if zipf else None, timeout_s=60.0)  # fmt: skip
    result = run_load(config)
    lat = result.latency_ms
    run = LoadRun(
        server=label[0],
        workload=label[1],
        concurrency=label[2],
        requests=round(result.achieved_rate * result.window_s),
        seconds=result.window_s,
        p50_ms=lat["p50"] or 0.0,
        p95_ms=lat["p95"],
        p99_ms=lat["p99"],
        errors=sum(n for kind, n in result.errors.items() if not kind.isdigit()),
        non_2xx=sum(n for kind, n in result.errors.items() if kind.isdigit()),
    )
    print(
        f"  {run.server:10s} {run.workload:8s} c={run.concurrency:<3d} {run.throughput:8.1f} req/s  "
        f"p50 {run.p50_ms:7.1f} ms  p99 {fmt(run.p99_ms)} ms  errors {run.errors + run.non_2xx}",
        flush=True,
    )
    return run


def peak(url: str, name: str, start_rate: float, args: argparse.Namespace) -> dict[str, object]:
    """Open-loop find-peak: the highest rate whose p99 stays within the SLO, and the curve of tried rates."""
    from inferopt.bench.loadgen import LoadConfig
    from inferopt.bench.peak import PeakSearch, PeakStep, find_peak

    base = LoadConfig(url, duration_s=args.warmup + args.duration, warmup_s=args.warmup, inputs=args.data)

    def show(step: PeakStep) -> None:
        p99 = step.result.latency_ms.get("p99")
        verdict = "pass" if step.passed else step.reason
        print(f"  {name:10s} open loop {step.rate:8.1f} req/s  p99 {fmt(p99)} ms  {verdict}", flush=True)

    found = find_peak(base, PeakSearch(args.slo_p99_ms, start_rate=start_rate), on_step=show)
    print(f"  {name}: peak {fmt(found.peak_rate)} req/s with p99 <= {args.slo_p99_ms:g} ms "
          f"{'(' + found.limited_by + ')' if found.limited_by else ''}", flush=True)  # fmt: skip
    return found.to_dict()


class Server:
    """A server in its own process group, its log in the work dir; stopped with SIGTERM (graceful)."""

    def __init__(self, name: str, command: list[str], port: int, ready_path: str, logs: Path) -> None:
        self.name, self.command, self.port, self.ready_path = name, command, port, ready_path
        self.url = f"http://127.0.0.1:{port}"
        self.log = logs / f"{name}-{port}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Server:
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(self.command, cwd=REPO, stdout=log, stderr=log, start_new_session=True)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                sys.exit(f"error: {self.name} exited; see {self.log}:\n{self.log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(self.url + self.ready_path, timeout=1) as response:
                    if response.status == 200:
                        return self
            except OSError:
                time.sleep(0.25)
        sys.exit(f"error: {self.name} not ready after 300 s; see {self.log}")

    def __exit__(self, *exc: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()


def inferopt_server(artifact: Path, port: int, cache: str, logs: Path, args: argparse.Namespace) -> Server:
    command = [sys.executable, "-m", "inferopt", "serve", str(artifact), "--port", str(port), "--cache", cache]
    if not args.access_log:
        command.append("--no-access-log")
    command += [part for extra in args.serve_arg for part in extra.split()]
    return Server(f"inferopt-cache-{cache}", command, port, "/health/ready", logs)


def plain_server(port: int, logs: Path, access_log: bool) -> Server:
    command = [sys.executable, str(REPO / "benchmarks" / "plain_server.py"), "--port", str(port)]
    if not access_log:
        command.append("--no-access-log")
    return Server("plain", command, port, "/health", logs)


def in_process_throughput(artifact: Path, texts: list[str], rounds: int = 3) -> float:
    """Texts per second through inferopt's Embedder (the artifact's benchmarked layout), best of `rounds`."""
    from inferopt import Embedder

    with Embedder.from_artifact(artifact) as embedder:
        embedder.embed(texts[:256])
        timings = []
        for _ in range(rounds):
            started = time.perf_counter()
            embedder.embed(texts)
            timings.append(time.perf_counter() - started)
    return len(texts) / min(timings)


def fmt(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def sweep(args: argparse.Namespace, logs: Path) -> list[LoadRun]:
    """Single sentences at each concurrency: inferopt (cache off) and the plain server."""
    runs = []
    servers = [("inferopt", lambda: inferopt_server(args.artifact, args.port, "off", logs, args))]
    if not args.skip_plain:
        servers.append(("plain", lambda: plain_server(args.port + 1, logs, args.access_log)))
    for name, start in servers:
        with start() as server:
            for concurrency in args.concurrency:
                runs.append(measure(server.url, (name, "single", concurrency), args))
    return runs


def zipf_runs(args: argparse.Namespace, logs: Path) -> list[LoadRun]:
    concurrency = max(args.concurrency)
    runs = []
    for cache in ("off", "memory"):
        with inferopt_server(args.artifact, args.port, cache, logs, args) as server:
            runs.append(measure(server.url, (f"inferopt-{cache}", "zipf", concurrency), args, zipf=ZIPF_S))
    return runs


def peaks(args: argparse.Namespace, logs: Path) -> dict[str, dict[str, object]]:
    """Open-loop find-peak against inferopt (cache off) and the plain server, one server at a time."""
    found = {}
    with inferopt_server(args.artifact, args.port, "off", logs, args) as server:
        found["inferopt"] = peak(server.url, "inferopt", 100.0, args)
    if not args.skip_plain:
        with plain_server(args.port + 1, logs, args.access_log) as server:
            found["plain"] = peak(server.url, "plain", 20.0, args)
    return found


def report(
    runs: list[LoadRun], in_process: float, harness: float | None, args: argparse.Namespace
) -> dict[str, object]:
    print("\n| server | workload | concurrency | requests | throughput (req/s) | p50 ms | p95 ms | p99 ms | errors |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in runs:
        print(
            f"| {r.server} | {r.workload} | {r.concurrency} | {r.requests} | {r.throughput:.1f} | {r.p50_ms:.1f} "
            f"| {fmt(r.p95_ms)} | {fmt(r.p99_ms)} | {r.errors + r.non_2xx} |"
        )
    top = max(args.concurrency)
    pick = {(r.server, r.workload, r.concurrency): r for r in runs}
    ours, plain = pick.get(("inferopt", "single", top)), pick.get(("plain", "single", top))
    cached, uncached = pick.get(("inferopt-memory", "zipf", top)), pick.get(("inferopt-off", "zipf", top))
    targets: dict[str, object] = {"in_process_items_per_second": in_process, "harness_items_per_second": harness}
    print(f"\nin-process (Embedder, this run): {in_process:.1f} texts/s; optimize's harness (manifest): {fmt(harness)}")
    if ours and plain:
        targets["throughput_ratio_vs_plain"] = ours.throughput / plain.throughput
        targets["p99_below_plain_p50"] = ours.p99_ms is not None and ours.p99_ms < plain.p50_ms
        print(
            f"c={top}: inferopt / plain throughput = {ours.throughput / plain.throughput:.1f}x (target >= 10x); "
            f"inferopt p99 {fmt(ours.p99_ms)} ms vs plain p50 {plain.p50_ms:.1f} ms (target: below)"
        )
    if ours:
        reference = harness or in_process
        targets["http_vs_in_process"] = ours.throughput / reference
        print(
            f"inferopt HTTP / in-process = {ours.throughput / reference:.0%} (target >= 60%; reference: "
            f"{'harness' if harness else 'this run'})"
        )
    if cached and uncached:
        targets["cache_lift"] = cached.throughput / uncached.throughput
        print(
            f"Zipf s={ZIPF_S} over {ZIPF_DISTINCT:,}: cache on / off = {cached.throughput / uncached.throughput:.1f}x "
            "(target >= 3x)"
        )
    print("load: inferopt load, closed loop (N connections; stalls hide from closed-loop tails, see the peaks)")
    return targets


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="inferopt serve vs a plain FastAPI + sentence-transformers server")
    parser.add_argument("artifact", type=Path, help="artifact folder (e.g. build/demo/artifact from make demo)")
    parser.add_argument("--data", type=Path, default=STSB_DEV, help="STS-B format file with the sentences")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--duration", type=float, default=15.0, help="seconds measured per point")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of discarded load before each point")
    parser.add_argument("--port", type=int, default=18400, help="inferopt's port; the plain server takes port+1")
    parser.add_argument(
        "--access-log",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="servers log each request, as in production (both, or neither)",
    )
    parser.add_argument(
        "--serve-arg",
        action="append",
        default=[],
        help="extra flags for inferopt serve, e.g. --serve-arg='--max-batch 32'",
    )
    parser.add_argument("--skip-plain", action="store_true", help="only inferopt (no sentence-transformers)")
    parser.add_argument("--skip-zipf", action="store_true")
    parser.add_argument("--skip-peak", action="store_true", help="no open-loop find-peak")
    parser.add_argument("--slo-p99-ms", type=float, default=50.0, help="the p99 SLO of the find-peak runs")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 3 s points, 1 s warm-up")
    parser.add_argument("--json", type=Path, default=REPO / "build" / "bench" / "serve.json")
    args = parser.parse_args()
    if args.quick:
        args.duration, args.warmup = 3.0, 1.0
    if not (args.artifact / "manifest.json").exists():
        sys.exit(f"error: {args.artifact} is not an artifact (no manifest.json); run `make demo` or inferopt optimize")
    return args


def main() -> None:
    args = parse_args()
    from inferopt.artifact import load_artifact
    from inferopt.hardware import environment

    manifest = load_artifact(args.artifact).manifest
    harness = manifest.get("benchmark", {}).get("best", {}).get("items_per_second")
    texts = sentences(args.data)
    print(
        f"{len(texts)} distinct sentences from {args.data}; artifact {args.artifact} "
        f"({manifest.get('recipe', {}).get('name', '?')})",
        flush=True,
    )
    in_process = in_process_throughput(args.artifact, texts)
    with tempfile.TemporaryDirectory(prefix="inferopt-bench-") as work:
        workdir = Path(work)
        runs = sweep(args, workdir)
        if not args.skip_zipf:
            runs += zipf_runs(args, workdir)
        found = {} if args.skip_peak else peaks(args, workdir)
    targets = report(runs, in_process, harness, args)
    for name, curve in found.items():
        targets[f"peak_{name}_req_s"] = curve["peak_rate"]
    result = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "command": " ".join(sys.argv),
        "environment": environment(),
        "settings": manifest.get("runtime", {}),
        "runs": [asdict(r) | {"throughput": r.throughput} for r in runs],
        "peaks": found,
        "targets": targets,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
