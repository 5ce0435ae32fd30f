"""Recommendations, NeuMF on MovieLens 100K: the seed's plain server against inferopt's pick with its cache, in one
run on one machine, driven by `inferopt load` replaying requests that follow the data's own popularity.

1. Train the model (or reuse build/recsys/model) and `inferopt optimize` it (default variants and budget), unless
   --artifact is given.
2. The replay: 200,000 "top 10 for this user" requests, each user drawn in proportion to their ratings in the
   data (its own popularity: users ask as often as they rated), seeded.
3. Hit rate against cache capacity (entries), by simulating the LRU over the replay (exact for LRU), and the
   smallest capacity whose hit rate reaches 90% (plotted in OUT/hit_rate.png); the server's cache is then sized
   to that many entries.
4. Open-loop peak rates with p99 <= 35 ms (find-peak) for: the plain server (benchmarks/plain_recsys_server.py:
   FastAPI + PyTorch eager, one forward per request, no batching, no cache), `inferopt serve` with the cache off,
   and with the cache at that capacity; the plain server's peak with p99 <= 450 ms, and inferopt's p99 at that
   same offered rate.
5. Cost per million predictions at --price-per-hour for each peak; the pick's fidelity to FP32 (top-10 overlap,
   HR@10) from its manifest.

    python benchmarks/recsys.py [--artifact DIR] [--out build/bench/recsys] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
import urllib.request
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from benchmarks.byo import write_record  # noqa: E402
from benchmarks.serve import Server  # noqa: E402

console = Console(width=None if sys.stdout.isatty() else 160)
K = 10
TARGET_HIT_RATE = 0.9


def build_artifact(out: Path) -> Path:
    from inferopt.config import OptimizeConfig
    from inferopt.optimize import run_optimize
    from inferopt.tasks.recommendation.train import TrainSettings, run

    model = run(None, REPO / "build" / "recsys" / "model", TrainSettings(), force=False, echo=console.print)
    outcome = run_optimize(OptimizeConfig(model=str(model), out=out, force=True), console)
    assert outcome.artifact_dir is not None
    return outcome.artifact_dir


def write_replay(path: Path, count: int, seed: int = 0) -> list[int]:
    """`count` requests whose users are drawn, independently, in proportion to their interaction counts (the
    data's own popularity); returns the user id of each. (Replaying the rating log itself in time order would
    flatter any cache: MovieLens users rate dozens of films in one sitting, and 2 entries already hit 90%.)"""
    from inferopt.tasks.recommendation import movielens

    data = movielens.read()
    counts = np.bincount(data.users, minlength=data.num_users).astype(np.float64)
    rows = np.random.default_rng(seed).choice(data.num_users, size=count, p=counts / counts.sum())
    users = [data.user_ids[u] for u in rows.tolist()]
    path.write_text("".join(json.dumps({"user_id": u, "k": K}) + "\n" for u in users))
    return users


def lru_hit_rate(sequence: list[int], capacity: int) -> float:
    cache: OrderedDict[int, None] = OrderedDict()
    hits = 0
    for key in sequence:
        if key in cache:
            hits += 1
            cache.move_to_end(key)
            continue
        cache[key] = None
        if len(cache) > capacity:
            cache.popitem(last=False)
    return hits / len(sequence)


def capacity_for(sequence: list[int], target: float) -> int:
    """The smallest LRU capacity reaching `target` (LRU's hit rate never falls as capacity grows)."""
    lo, hi = 1, len(set(sequence))
    while lo < hi:
        mid = (lo + hi) // 2
        if lru_hit_rate(sequence, mid) >= target:
            hi = mid
        else:
            lo = mid + 1
    return lo


def plot_hit_rate(sequence: list[int], capacity: int, path: Path) -> None:
    """Hit rate against capacity (the LRU simulation), with the target and the capacity that reaches it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = list(range(25, len(set(sequence)) + 25, 25))
    rates = [lru_hit_rate(sequence, c) for c in sizes]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(sizes, rates, marker=".", label="LRU hit rate on the replay")
    ax.axhline(TARGET_HIT_RATE, color="grey", linestyle="--", label=f"{TARGET_HIT_RATE:.0%}")
    ax.axvline(capacity, color="tab:green", linestyle=":", label=f"{capacity} entries")
    ax.set_xlabel("cache capacity (entries: one user's top 10 each)")
    ax.set_ylabel("hit rate")
    ax.set_ylim(0, 1.02)
    ax.legend(loc="lower right")
    ax.set_title("Popularity replay of MovieLens 100K: cache hit rate by capacity")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def entry_bytes(artifact: Path, users: list[int]) -> int:
    """The largest in-process cache entry among a sample of users' top-10 responses."""
    from inferopt.engine import Predictor
    from inferopt.serve.cache import CachedResult

    sample = sorted(set(users))[:200]
    with Predictor.from_artifact(artifact) as predictor:
        items = predictor.task.preprocess([{"user_id": u, "k": K} for u in sample])
        outputs = predictor.item_outputs(items)
    return max(
        CachedResult.make(o, i.cost, False, lambda out, i=i: predictor.task.postprocess(out, i)).nbytes
        for o, i in zip(outputs, items, strict=True)
    )


def cache_counts(url: str) -> dict[str, float]:
    with urllib.request.urlopen(url + "/metrics", timeout=5) as response:
        text = response.read().decode()
    counts = {"hit": 0.0, "miss": 0.0}
    for result in counts:
        pattern = r'inferopt_cache_requests_total\{result="' + result + r'",tier="memory"\} ([0-9.e+]+)'
        match = re.search(pattern, text)
        counts[result] = float(match.group(1)) if match else 0.0
    return counts


def find(url: str, name: str, slo_ms: float, start: float, args: argparse.Namespace) -> dict[str, Any]:
    from inferopt.bench.loadgen import LoadConfig
    from inferopt.bench.peak import PeakSearch, PeakStep, find_peak

    base = LoadConfig(url, duration_s=args.warmup + args.duration, warmup_s=args.warmup, inputs=args.replay,
                      in_order=True, workers=args.workers)  # fmt: skip

    def show(step: PeakStep) -> None:
        p99 = step.result.latency_ms.get("p99")
        console.print(f"  {name:22s} {step.rate:8.1f} req/s  p99 {p99 if p99 is None else round(p99, 1)} ms  "
                      f"{'pass' if step.passed else step.reason}")  # fmt: skip

    found = find_peak(base, PeakSearch(slo_ms, start_rate=start), on_step=show)
    step = found.peak_step
    console.print(f"  {name}: peak {found.peak_rate} req/s with p99 <= {slo_ms:g} ms {found.limited_by or ''}")
    return {
        "slo_p99_ms": slo_ms,
        "peak_rate": found.peak_rate,
        "p99_ms_at_peak": step.result.latency_ms.get("p99") if step else None,
        "limited_by": found.limited_by,
        "steps": [s.to_dict() for s in found.steps],
    }


def at_rate(url: str, rate: float, args: argparse.Namespace) -> dict[str, Any]:
    from inferopt.bench.loadgen import LoadConfig, run_load
    from inferopt.bench.peak import step_config

    config = step_config(LoadConfig(url, duration_s=args.warmup + args.duration, warmup_s=args.warmup,
                                    inputs=args.replay, in_order=True, workers=args.workers), rate)  # fmt: skip
    result = run_load(config)
    return {"rate": rate, "latency_ms": result.latency_ms, "valid": result.valid, "errors": result.error_fraction}


def servers(args: argparse.Namespace, artifact: Path, model: Path, cache_mb: float) -> dict[str, Any]:
    logs = args.out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    serve = [sys.executable, "-m", "inferopt", "serve", str(artifact), "--no-access-log"]
    plain = [sys.executable, str(REPO / "benchmarks" / "plain_recsys_server.py"), str(model)]
    path = "/v1/models/{}:predict"
    from inferopt.artifact import load_artifact

    name = load_artifact(artifact).model_name
    results: dict[str, Any] = {}
    with Server("plain", [*plain, "--port", "8031"], 8031, "/health", logs) as server:
        url = server.url + path.format(name)
        results["plain_35"] = find(url, "plain (35 ms)", 35.0, 25.0, args)
        results["plain_450"] = find(
            url, "plain (450 ms)", 450.0, max(25.0, results["plain_35"]["peak_rate"] or 25), args
        )
    off = [*serve, "--port", "8032", "--cache", "off"]
    with Server("inferopt-cache-off", off, 8032, "/health/ready", logs) as server:
        url = server.url + path.format(name)
        results["inferopt_off_35"] = find(url, "inferopt, no cache", 35.0, 400.0, args)
    cached = [*serve, "--port", "8033", "--cache-memory-mb", f"{cache_mb:.4f}"]
    with Server("inferopt-cache", cached, 8033, "/health/ready", logs) as server:
        url = server.url + path.format(name)
        results["inferopt_cached_35"] = find(url, "inferopt, cache", 35.0, 400.0, args)
        counts = cache_counts(server.url)
        results["served_hit_rate"] = counts["hit"] / max(1.0, counts["hit"] + counts["miss"])
        plain_rate = results["plain_450"]["peak_rate"]
        if plain_rate:
            results["inferopt_at_plain_450_rate"] = at_rate(url, plain_rate, args)
    return results


def fidelity(artifact: Path) -> dict[str, Any]:
    manifest = json.loads((artifact / "manifest.json").read_text())
    accuracy = manifest["accuracy"]
    return {
        "recipe": manifest["recipe"]["name"],
        "top10_overlap": accuracy["measures"]["top10_overlap"],
        "rank_correlation": accuracy["measures"]["rank_correlation"],
        "hr10_drop_points": accuracy["measures"]["metric_drop"],
        "hr10_pick": accuracy["metric"],
    }


def report(results: dict[str, Any], args: argparse.Namespace) -> None:
    from inferopt.bench.cost import cost_per_million

    table = Table(title=f"top-{K} recommendations, replayed MovieLens log, open loop (find-peak)")
    for column in ("server", "peak req/s, p99 <= 35 ms", "x plain", "$ / 1M predictions"):
        table.add_column(column, justify="right" if column != "server" else "left")
    plain = results["plain_35"]["peak_rate"] or 0.0
    for key, label in (("plain_35", "plain FastAPI + PyTorch eager"), ("inferopt_off_35", "inferopt, cache off"),
                       ("inferopt_cached_35", f"inferopt, cache {results['capacity_90']} entries")):  # fmt: skip
        rate = results[key]["peak_rate"] or 0.0
        cost = cost_per_million(rate, args.price_per_hour)
        table.add_row(label, f"{rate:,.0f}", f"{rate / plain:.1f}x" if plain else "-", f"{cost:.4f}" if cost else "-")
    console.print(table)
    same = results.get("inferopt_at_plain_450_rate")
    if same:
        plain_p99 = results["plain_450"]["p99_ms_at_peak"]
        console.print(f"at the plain server's p99 <= 450 ms peak ({same['rate']:.0f} req/s): plain p99 "
                      f"{plain_p99:.1f} ms, inferopt p99 {same['latency_ms'].get('p99'):.2f} ms")  # fmt: skip
    console.print(f"cache: {results['capacity_90']} entries reach {TARGET_HIT_RATE:.0%} on the replay "
                  f"(LRU simulation); the served run's hit rate {results['served_hit_rate']:.3f}")  # fmt: skip
    console.print(f"fidelity of {results['fidelity']['recipe']}: {results['fidelity']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifact", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=REPO / "build" / "bench" / "recsys")
    parser.add_argument("--duration", type=float, default=12.0, help="seconds measured per load step")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--workers", type=int, default=1, help="load generator processes")
    parser.add_argument("--price-per-hour", type=float, default=0.05, help="$ per machine-hour")
    parser.add_argument("--requests", type=int, default=200_000, help="length of the replayed request sequence")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    artifact = args.artifact or build_artifact(args.out / "optimized")
    model = Path(json.loads((artifact / "manifest.json").read_text())["source"])
    args.replay = args.out / "replay.jsonl"
    users = write_replay(args.replay, args.requests)
    capacities = [25, 50, 100, 200, 300, 400, 500, 600, 700, 800, len(set(users))]
    curve = {c: round(lru_hit_rate(users, c), 4) for c in capacities}
    capacity = capacity_for(users, TARGET_HIT_RATE)
    size = entry_bytes(artifact, users)
    plot_hit_rate(users, capacity, args.out / "hit_rate.png")
    console.print(f"replay: {len(users):,} requests, {len(set(users))} users; LRU hit rate by capacity {curve}")
    console.print(f"{capacity} entries reach {TARGET_HIT_RATE:.0%}; an entry is at most {size} bytes")
    results: dict[str, Any] = {"requests": len(users), "hit_rate_by_capacity": curve, "capacity_90": capacity,
                               "entry_bytes": size, "fidelity": fidelity(artifact)}  # fmt: skip
    results |= servers(args, artifact, model, capacity * size / 2**20)
    results["price_per_hour"] = args.price_per_hour
    results["seconds"] = round(time.perf_counter() - started)
    report(results, args)
    if args.json:
        write_record(args.json, artifact, results)


if __name__ == "__main__":
    main()
