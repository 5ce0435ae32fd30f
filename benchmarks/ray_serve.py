"""Ray Serve vs `inferopt serve`: the same text artifact, one replica each, the same flags, in one run on one machine.

    python benchmarks/ray_serve.py ARTIFACT [--concurrency 64] [--duration 15] [--warmup 3] [--json OUT] [--quick]
                                            [--serve-arg ARG ...] [--no-access-log] [--sides ...]

Each side is started as a user would, with the same --cache and any --serve-arg:
- inferopt-serve: `inferopt serve ARTIFACT`;
- ray-serve:      `inferopt deploy ray ARTIFACT`: a local Ray cluster on loopback, Ray's default HTTP proxy (a
                  Python actor) in front of one replica that runs inferopt's own server;
- ray-serve-ht:   the same with --high-throughput: Ray Serve's high-throughput mode (HAProxy ingress straight to
                  the replica's HTTP server, gRPC data plane).
Load comes from `inferopt load`, closed loop (N connections, each sending when its answer arrives), STS-B dev
sentences (../shared), one per request:

1. model:  --cache off, concurrency --concurrency (64): what the model path gives through each.
2. hit:    --cache memory, one distinct input (every request after the first a cache hit), at concurrency 1 and
           --concurrency: the per-request cost of the HTTP path alone, where Ray's proxy hop shows undiluted.

Where the difference goes: during each concurrency --concurrency run the CPU time of every process of each side
is sampled inside the measured window (psutil): `inferopt serve`'s one process against Ray's proxy (the proxy
actor, HAProxy and its manager), the replica, Ray's own services (GCS, raylet, Serve controller) and the rest (the
driver streaming replica logs, agents), as CPU milliseconds per request. On a 2-core machine every millisecond
the proxy spends is taken from the replica's runtime sessions.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil

from inferopt.bench.load_result import LoadResult
from inferopt.bench.loadgen import LoadConfig, run_load

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
import benchmarks.serve as serve_benchmark  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # inherited by the servers
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SIDES = ("inferopt-serve", "ray-serve", "ray-serve-ht")  # -ht: deploy ray --high-throughput
GROUPS = ("proxy", "replica", "ray-services", "other")  # Ray's processes, by role


@dataclass
class Run:
    side: str
    workload: str
    concurrency: int
    throughput: float
    p50_ms: float
    p99_ms: float | None
    requests: int
    errors: int
    cpu_ms_per_request: dict[str, float] = field(default_factory=dict)  # by process group


def role(process: psutil.Process) -> str:
    """A process of the Ray side, by what it does (Ray titles its workers `ray::ActorName`)."""
    try:
        command = " ".join(process.cmdline())
    except psutil.Error:
        return "other"
    if "ray::ProxyActor" in command or "ray::HAProxyManager" in command or "haproxy" in process.name():
        return "proxy"
    if "ray::ServeReplica" in command:
        return "replica"
    if any(name in command for name in ("gcs_server", "raylet", "ray::ServeController")):
        return "ray-services"
    return "other"


class CpuSampler:
    """CPU seconds of a server's processes between two moments inside the measured window of a load run."""

    def __init__(self, root_pid: int, side: str) -> None:
        self.root, self.side = psutil.Process(root_pid), side
        self.samples: list[tuple[float, dict[int, tuple[str, float]]]] = []

    def snapshot(self) -> None:
        processes = [self.root, *self.root.children(recursive=True)]
        taken: dict[int, tuple[str, float]] = {}
        for process in processes:
            try:
                times = process.cpu_times()
            except psutil.Error:
                continue
            group = "server" if self.side == "inferopt-serve" else role(process)
            taken[process.pid] = (group, times.user + times.system)
        self.samples.append((time.monotonic(), taken))

    def during(self, config: LoadConfig, begin_s: float, end_s: float) -> tuple[LoadResult, dict[str, float]]:
        """One load run, sampled `begin_s` and `end_s` after it is called: the CPU cores used, by group."""
        timers = [threading.Timer(t, self.snapshot) for t in (begin_s, end_s)]
        for timer in timers:
            timer.start()
        try:
            result = run_load(config)
        finally:
            for timer in timers:
                timer.cancel()
        if len(self.samples) < 2:
            return result, {}
        (t0, first), (t1, last) = self.samples[-2], self.samples[-1]
        cores: dict[str, float] = {}
        for pid, (group, cpu) in last.items():
            cores[group] = cores.get(group, 0.0) + (cpu - first.get(pid, (group, cpu))[1]) / (t1 - t0)
        return result, cores


def measure(
    server: serve_benchmark.Server, side: str, workload: str, concurrency: int, args: argparse.Namespace
) -> Run:
    config = LoadConfig(server.url + "/v1/embeddings", rate=None, concurrency=concurrency,
                        duration_s=args.warmup + args.duration, warmup_s=args.warmup, inputs=args.data,
                        distinct=1 if workload == "hit" else None, timeout_s=60.0)  # fmt: skip
    assert server.process is not None
    sampler = CpuSampler(server.process.pid, side)
    # The senders start about a second after the call: [warm-up + 1, duration - 0.25] lies inside the window.
    result, cores = sampler.during(config, args.warmup + 1.0, args.warmup + args.duration - 0.25)
    lat, throughput = result.latency_ms, result.achieved_rate
    run = Run(
        side=side,
        workload=workload,
        concurrency=concurrency,
        throughput=throughput,
        p50_ms=lat["p50"] or 0.0,
        p99_ms=lat["p99"],
        requests=round(throughput * result.window_s),
        errors=sum(result.errors.values()),
        cpu_ms_per_request={group: 1000 * used / throughput for group, used in cores.items()} if throughput else {},
    )
    cpu = ", ".join(f"{group} {ms:.2f}" for group, ms in sorted(run.cpu_ms_per_request.items()))
    print(f"  {side:14s} {workload:5s} c={concurrency:<3d} {throughput:8.1f} req/s  p50 {run.p50_ms:7.2f} ms  "
          f"p99 {serve_benchmark.fmt(run.p99_ms, 2)} ms  errors {run.errors}  CPU ms/req: {cpu or 'n/a'}",
          flush=True)  # fmt: skip
    return run


def server(side: str, cache: str, port: int, logs: Path, args: argparse.Namespace) -> serve_benchmark.Server:
    verb = {
        "inferopt-serve": ["serve"],
        "ray-serve": ["deploy", "ray"],
        "ray-serve-ht": ["deploy", "ray", "--high-throughput"],
    }
    command = [sys.executable, "-m", "inferopt", *verb[side], str(args.artifact), "--port", str(port), "--cache", cache]
    if not args.access_log:
        command.append("--no-access-log")
    command += [part for extra in args.serve_arg for part in extra.split()]
    return RayAwareServer(f"{side}-cache-{cache}", command, port, "/health/ready", logs)


class RayAwareServer(serve_benchmark.Server):
    """Server, plus: whatever the server started (Ray's processes) is gone when the block ends."""

    def __exit__(self, *exc: object) -> None:
        children = psutil.Process(self.process.pid).children(recursive=True) if self.process else []
        super().__exit__(*exc)
        _, alive = psutil.wait_procs(children, timeout=15)
        for process in alive:
            process.kill()


def run_all(args: argparse.Namespace, logs: Path) -> list[Run]:
    runs = []
    top = args.concurrency
    sides = [side for side in SIDES if side in args.sides]
    for cache, workloads in (("off", [("model", top)]), ("memory", [("hit", 1), ("hit", top)])):
        for index, side in enumerate(sides):
            with server(side, cache, args.port + index, logs, args) as running:
                runs += [measure(running, side, workload, c, args) for workload, c in workloads]
    return runs


def report(runs: list[Run], args: argparse.Namespace) -> dict[str, object]:
    fmt = serve_benchmark.fmt
    print("\n| side | workload | concurrency | requests | throughput (req/s) | p50 ms | p99 ms | errors |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for r in runs:
        print(f"| {r.side} | {r.workload} | {r.concurrency} | {r.requests} | {r.throughput:.1f} | {r.p50_ms:.2f} "
              f"| {fmt(r.p99_ms, 2)} | {r.errors} |")  # fmt: skip
    pick = {(r.side, r.workload, r.concurrency): r for r in runs}
    summary: dict[str, object] = {}
    print()
    for ray_side in SIDES[1:]:
        for workload, c in (("model", args.concurrency), ("hit", args.concurrency), ("hit", 1)):
            ours, theirs = pick.get(("inferopt-serve", workload, c)), pick.get((ray_side, workload, c))
            if ours and theirs and ours.throughput:
                ratio = theirs.throughput / ours.throughput
                summary[f"{ray_side}_{workload}_c{c}_throughput_ratio"] = ratio
                added = theirs.p50_ms - ours.p50_ms
                summary[f"{ray_side}_{workload}_c{c}_p50_added_ms"] = added
                print(f"{workload} c={c}: {ray_side} / inferopt-serve throughput = {ratio:.2f}x; p50 "
                      f"{theirs.p50_ms:.2f} vs {ours.p50_ms:.2f} ms ({added:+.2f} ms)")  # fmt: skip
    print(f"\nCPU ms per request at c={args.concurrency}, by process (sampled inside the measured window):")
    print("| side | workload | total | " + " | ".join(GROUPS) + " | more than inferopt serve |")
    print("|---|---|---:|" + "---:|" * (len(GROUPS) + 1))
    for workload in ("model", "hit"):
        ours = pick.get(("inferopt-serve", workload, args.concurrency))
        mine = sum(ours.cpu_ms_per_request.values()) if ours and ours.cpu_ms_per_request else None
        if mine is not None:
            print(f"| inferopt-serve | {workload} | {mine:.2f} |" + " |" * len(GROUPS) + " |")
        for ray_side in SIDES[1:]:
            theirs = pick.get((ray_side, workload, args.concurrency))
            if not (theirs and theirs.cpu_ms_per_request):
                continue
            groups = theirs.cpu_ms_per_request
            total = sum(groups.values())
            summary[f"{ray_side}_{workload}_cpu_ms_per_request"] = {**groups, "total": total, "inferopt-serve": mine}
            cells = " | ".join(f"{groups.get(g, 0.0):.2f}" for g in GROUPS)
            extra = "n/a" if mine is None else f"{total - mine:+.2f}"
            print(f"| {ray_side} | {workload} | {total:.2f} | {cells} | {extra} |")
    print("load: inferopt load, closed loop. One replica (1 CPU reserved) behind Ray's proxy (ray-serve) or HAProxy")
    print("(ray-serve-ht: --high-throughput), against one inferopt serve; the same flags and artifact settings.")
    return summary


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Ray Serve (inferopt deploy ray) vs inferopt serve, one replica each")
    parser.add_argument("artifact", type=Path, help="a text artifact (e.g. build/demo/artifact from make demo)")
    parser.add_argument("--data", type=Path, default=serve_benchmark.STSB_DEV, help="STS-B file with the sentences")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--duration", type=float, default=15.0, help="seconds measured per point")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of discarded load before each point")
    parser.add_argument("--port", type=int, default=18500, help="inferopt serve's port; Ray's proxies the next ones")
    parser.add_argument("--access-log", action=argparse.BooleanOptionalAction, default=True,
                        help="both sides log each request (inferopt's JSON lines), or neither")  # fmt: skip
    parser.add_argument("--serve-arg", action="append", default=[],
                        help="extra flags for both sides (serve, each replica), e.g. '--max-batch 32'")  # fmt: skip
    parser.add_argument("--sides", nargs="+", choices=SIDES, default=list(SIDES), help="which servers to measure")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 3 s points, 1 s warm-up")
    parser.add_argument("--json", type=Path, default=REPO / "build" / "bench" / "ray_serve.json")
    args = parser.parse_args()
    if args.quick:
        args.duration, args.warmup = 3.0, 1.0
    if not (args.artifact / "manifest.json").exists():
        sys.exit(f"error: {args.artifact} is not an artifact (no manifest.json); run `make demo` or inferopt optimize")
    if not args.data.exists():
        print(f"{args.data} not found: the load generator's built-in corpus instead", flush=True)
        args.data = None
    return args


def main() -> None:
    import tempfile

    from inferopt.artifact import load_artifact
    from inferopt.hardware import environment

    args = parse_args()
    manifest = load_artifact(args.artifact).manifest
    print(f"artifact {args.artifact} ({manifest.get('recipe', {}).get('name', '?')}), c={args.concurrency}, "
          f"{args.duration:g} s per point after {args.warmup:g} s of warm-up", flush=True)  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="inferopt-ray-bench-") as work:
        runs = run_all(args, Path(work))
    summary = report(runs, args)
    result = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "command": " ".join(sys.argv),
        "environment": environment(),
        "settings": manifest.get("runtime", {}).get("settings", {}),
        "runs": [asdict(r) for r in runs],
        "summary": summary,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
