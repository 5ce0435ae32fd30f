"""Tabular risk scoring, the seed's before/after table in one run: the pilot (FastAPI -> a JOIN in Postgres per
request -> PyTorch eager -> JSON) and the levers that moved it, in order, each a server measured open loop at the
same rate over the same replay, one server at a time, on one machine.

    1. pilot                  benchmarks/risk_servers.py --stage pilot: sync endpoint, psycopg 3 connection per
                              request, one query joining the four tables, PyTorch FP32 eager, no cache
    2. + feature cache, async --stage cache: async endpoint, inferopt's FeatureCache (TTL per group, single-
                              flight) over PostgresFeatures (asyncpg, groups in parallel), PyTorch FP32 eager on
                              one worker thread
    3. + ONNX INT8 CPU        --stage onnx: as 2 with the artifact's model.onnx in one onnxruntime session
    4. + micro-batching, warm `inferopt serve ARTIFACT --features ... --max-wait-ms 10 --max-batch 32 --cache off`
       pool                   (the response cache off: the rows compare the levers named, nothing more)

Setup: train (reuses build/risk/model), `inferopt optimize` into OUT/optimized unless --artifact, load the German
credit data into the schema --schema (default inferopt_risk_bench; idempotent), write OUT/replay.jsonl: a seeded
Zipf replay (s = --zipf, default 1.1) over the 1,000 application ids (ranks shuffled, so the hot ids are spread
over the data), sent in file order (`inferopt load --in-order`), the same sequence for every stage.

Per stage: `inferopt load` open loop (Poisson arrivals) at --rate (default 200 req/s) for --warmup + --duration
seconds (default 5 + 60: 12,000 measured requests at 200 req/s; a p99 needs >= ~660); latency counts from the
intended send time. The feature/model split comes from the server itself, summed over the same requests the
load run sent (risk_servers.py's /stats, inferopt's stage histograms on /metrics), and is cross-checked by
--split-requests (default 200) sequential requests after the run, read from each answer's Server-Timing.
The feature cache hit rate is inferopt's /metrics (memory + redis over all group reads, warm-up included).
Fidelity: the manifest's AUC of the pick and its drop from FP32.

    python benchmarks/risk.py [--rate 200] [--duration 60] [--artifact DIR] [--out build/bench/risk] [--json OUT]
    python benchmarks/risk.py --smoke          # 5 s per stage at 50 req/s: checks the wiring, measures nothing
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import re
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "src"))
from benchmarks.serve import Server  # noqa: E402

console = Console(width=None if sys.stdout.isatty() else 160)
MODEL_NAME = "risk-mlp-german-credit"
PREDICT = "/v1/models/{}:predict"
TENANT = "default"
TARGET_P95_RATIO, TARGET_HIT_RATE, TARGET_AUC_DROP = 0.40, 0.70, 0.004
STAGES = (
    ("pilot", "1. pilot: FastAPI sync + Postgres JOIN + PyTorch eager"),
    ("cache", "2. + feature cache (TTL/group) + async I/O"),
    ("onnx", "3. + ONNX INT8 on CPU"),
    ("inferopt", "4. + micro-batching + warm pool (inferopt serve)"),
)


# -- setup ------------------------------------------------------------------------------------------------------


def build(args: argparse.Namespace) -> tuple[Path, Path]:
    """(the trained model folder, the artifact): both reused where they exist."""
    if args.artifact is not None:
        source = Path(json.loads((args.artifact / "manifest.json").read_text())["source"])
        return (source if source.is_absolute() else REPO / source), args.artifact
    from inferopt.config import OptimizeConfig
    from inferopt.optimize import run_optimize
    from inferopt.tasks.tabular.train import TrainSettings, run

    model = run(None, REPO / "build" / "risk" / "model", TrainSettings(), force=False, echo=console.print)
    artifact = args.out / "optimized" / "artifact"
    if (artifact / "manifest.json").is_file() and not args.reoptimize:
        console.print(f"reusing {artifact} (--reoptimize to build it again)")
        return model, artifact
    config = OptimizeConfig(model=str(model), out=args.out / "optimized", force=True, variant=args.variant or None)
    outcome = run_optimize(config, console)
    assert outcome.artifact_dir is not None
    return model, outcome.artifact_dir


def load_features(dsn: str, schema: str) -> int:
    from inferopt.tasks.tabular import german_credit
    from inferopt.tasks.tabular.load_features import load

    return asyncio.run(load(dsn, schema, TENANT, german_credit.read()))


def write_replay(path: Path, count: int, skew: float, seed: int, entities: int) -> np.ndarray:
    """`count` application ids drawn Zipf(skew) over `entities` ranks, ranks shuffled over the ids (seeded)."""
    rng = np.random.default_rng(seed)
    weights = np.arange(1, entities + 1, dtype=np.float64) ** -skew
    ids = rng.permutation(entities)[rng.choice(entities, size=count, p=weights / weights.sum())] + 1
    path.write_text("".join(json.dumps({"entity_id": int(i), "tenant": TENANT}) + "\n" for i in ids))
    return ids


def expected_hit_rate(ids: np.ndarray, rate: float, ttls: dict[str, float]) -> float:
    """The feature cache's hit rate on the first rate * seconds of the replay if requests were evenly spaced:
    a group read hits when that group's copy of the entity is younger than its TTL (no capacity limit)."""
    hits = reads = 0
    times = np.arange(len(ids)) / rate
    for ttl in ttls.values():
        fetched: dict[int, float] = {}
        for entity, at in zip(ids.tolist(), times.tolist(), strict=True):
            reads += 1
            if entity in fetched and at - fetched[entity] < ttl:
                hits += 1
            else:
                fetched[entity] = at
    return hits / reads


# -- the servers' own numbers ------------------------------------------------------------------------------------


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read().decode()


def metric_values(text: str, name: str) -> dict[str, float]:
    """{labels: value} of one metric family's samples in Prometheus text."""
    out = {}
    for match in re.finditer(r"^" + re.escape(name) + r"(\{.*\})? ([0-9.eE+-]+|NaN)$", text, re.MULTILINE):
        out[match.group(1) or ""] = float(match.group(2))
    return out


def server_numbers(server: Server, stage: str) -> dict[str, Any]:
    """Seconds summed over the requests served so far, per stage of the handler, and the feature reads by source."""
    if stage != "inferopt":
        stats = json.loads(get(server.url + "/stats"))
        return {"totals_s": stats["totals_s"], "feature_sources": stats["feature_sources"]}
    text = get(server.url + "/metrics")
    totals: dict[str, float] = {}
    for labels, value in metric_values(text, "inferopt_stage_duration_seconds_sum").items():
        totals[re.search(r'stage="([^"]+)"', labels).group(1)] = value  # type: ignore[union-attr]
    for labels, value in metric_values(text, "inferopt_request_duration_seconds_sum").items():
        if "predict" in labels and 'status="200"' in labels:
            totals["total"] = totals.get("total", 0.0) + value
    for labels, value in metric_values(text, "inferopt_request_duration_seconds_count").items():
        if "predict" in labels and 'status="200"' in labels:
            totals["requests"] = totals.get("requests", 0.0) + value
    sources: dict[str, float] = {}
    for labels, value in metric_values(text, "inferopt_feature_requests_total").items():
        source = re.search(r'source="([^"]+)"', labels).group(1)  # type: ignore[union-attr]
        sources[source] = sources.get(source, 0.0) + value
    return {"totals_s": totals, "feature_sources": sources}


def split_of(totals: dict[str, float]) -> dict[str, float | None]:
    """Mean ms per request in features, model (queue + inference: the batcher's wait counts as model time) and
    all the handler's time, and the shares of that total."""
    n = totals.get("requests", 0.0)
    if not n or not totals.get("total"):
        return {"features_ms": None, "model_ms": None, "total_ms": None, "features_share": None, "model_share": None}
    features = totals.get("features", 0.0)
    model = totals.get("inference", 0.0) + totals.get("queue", 0.0)
    return {
        "requests": n,
        "features_ms": 1000 * features / n,
        "model_ms": 1000 * model / n,
        "preprocess_ms": 1000 * totals.get("preprocess", 0.0) / n,
        "queue_ms": 1000 * totals.get("queue", 0.0) / n,
        "total_ms": 1000 * totals["total"] / n,
        "features_share": features / totals["total"],
        "model_share": model / totals["total"],
    }


def hit_rate(sources: dict[str, float]) -> float | None:
    reads = sum(v for k, v in sources.items())
    return (sources.get("memory", 0.0) + sources.get("redis", 0.0)) / reads if reads else None


def sequential_split(url: str, ids: np.ndarray, count: int, gap_s: float = 0.005) -> dict[str, Any]:
    """`count` requests one after another (gap_s apart), the split read from each answer's Server-Timing."""
    import httpx

    sums: dict[str, float] = {}
    ok = 0
    with httpx.Client(timeout=30) as client:
        for entity in ids[:count].tolist():
            response = client.post(url, json={"instances": [{"entity_id": int(entity), "tenant": TENANT}]})
            if response.status_code == 200:
                ok += 1
                for part in response.headers.get("server-timing", "").split(","):
                    name, _, dur = part.strip().partition(";dur=")
                    if dur:
                        sums[name] = sums.get(name, 0.0) + float(dur) / 1000
            time.sleep(gap_s)
    return {"requests": ok, **split_of(sums | {"requests": ok})}


# -- one stage ---------------------------------------------------------------------------------------------------


def command(stage: str, port: int, model: Path, artifact: Path, args: argparse.Namespace) -> tuple[list[str], str]:
    if stage == "inferopt":
        serve = [sys.executable, "-m", "inferopt", "serve", str(artifact), "--port", str(port), "--no-access-log",
                 "--features", args.dsn, "--features-schema", args.schema, "--cache", "off",
                 "--max-wait-ms", "10", "--max-batch", "32"]  # fmt: skip
        return serve, "/health/ready"
    plain = [sys.executable, str(REPO / "benchmarks" / "risk_servers.py"), "--stage", stage, "--port", str(port),
             "--model", str(model), "--artifact", str(artifact), "--dsn", args.dsn, "--schema", args.schema,
             "--pilot-db", args.pilot_db]  # fmt: skip
    return plain, "/health"


def measure(stage: str, port: int, model: Path, artifact: Path, ids: np.ndarray, args: argparse.Namespace) -> dict:
    from inferopt.bench.loadgen import LoadConfig, run_load

    logs = args.out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    cmd, ready = command(stage, port, model, artifact, args)
    with Server(f"risk-{stage}", cmd, port, ready, logs) as server:
        url = server.url + PREDICT.format(MODEL_NAME)
        config = LoadConfig(url, rate=args.rate, duration_s=args.warmup + args.duration, warmup_s=args.warmup,
                            inputs=args.replay, in_order=True, workers=args.workers, seed=args.seed)  # fmt: skip
        result = run_load(config)
        served = server_numbers(server, stage)
        split = sequential_split(url, ids, args.split_requests) if args.split_requests else {}
    lat = result.latency_ms
    row = {
        "stage": stage,
        "command": cmd,
        "offered_rate": args.rate,
        "achieved_rate": result.achieved_rate,
        "measured": result.measured,
        "ok": result.ok,
        "errors": result.error_count,
        "errors_by_kind": result.errors,
        "latency_ms": lat,
        "service_ms": result.service_ms,
        "late_fraction": result.late_fraction,
        "valid": result.valid,
        "server": served,
        "split_under_load": split_of(served["totals_s"]),
        "split_sequential": split,
        "feature_hit_rate": hit_rate(served["feature_sources"]),
    }
    s = row["split_under_load"]
    invalid = "" if result.valid else f"  INVALID ({result.late_fraction:.1%} sent > 1 ms late)"
    console.print(f"  {stage:9s} {result.achieved_rate:7.1f} req/s  p50 {fmt(lat.get('p50'))}  "
                  f"p95 {fmt(lat.get('p95'))}  p99 {fmt(lat.get('p99'))} ms  errors {result.error_count}  "
                  f"features {pct(s['features_share'])}  model {pct(s['model_share'])}{invalid}")  # fmt: skip
    return row


# -- report ------------------------------------------------------------------------------------------------------


def fmt(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


def pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0%}"


def fidelity(artifact: Path) -> dict[str, Any]:
    """AUC (points x 100 in the manifest) of the pick and its drop from FP32 on the 300 held-out applicants."""
    manifest = json.loads((artifact / "manifest.json").read_text())
    accuracy = manifest["accuracy"]
    drop = float(accuracy["measures"]["metric_drop"]) / 100
    pick = float(accuracy["metric"]) / 100
    return {"recipe": manifest["recipe"]["name"], "auc_pick": pick, "auc_fp32": pick + drop, "auc_drop": drop,
            "decision_agreement": accuracy["measures"].get("decision_agreement"), "n": accuracy.get("n"),
            "budget_points": accuracy.get("budget", {}).get("metric_drop")}  # fmt: skip


def plot(rows: list[dict[str, Any]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [dict(STAGES)[r["stage"]].split(": ")[0].replace(" + ", "\n+ ") for r in rows]
    x = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(9, 4.5))
    for offset, key in ((-0.27, "p50"), (0.0, "p95"), (0.27, "p99")):
        values = [r["latency_ms"].get(key) or 0.0 for r in rows]
        bars = ax.bar(x + offset, values, 0.26, label=key)
        ax.bar_label(bars, labels=[f"{v:.0f}" if v >= 10 else f"{v:.1f}" for v in values], fontsize=7)
    ax.set_xticks(x, labels, fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("latency from intended send time (ms, log)")
    ax.set_title(title, fontsize=9)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def report(results: dict[str, Any], args: argparse.Namespace) -> None:
    rows = results["stages"]
    kind = "SMOKE RUN (wiring check, not a measurement)" if args.smoke else "measured"
    title = (f"risk scoring, Zipf s={args.zipf} replay of {results['replay']['entities']} applications, open loop "
             f"{args.rate:g} req/s, {args.duration:g} s per stage - {kind}")  # fmt: skip
    table = Table(title=title)
    for column in ("stage", "req/s", "p50 ms", "p95 ms", "p99 ms", "errors", "features", "model", "feature hits"):
        table.add_column(column, justify="left" if column == "stage" else "right")
    for r in rows:
        s = r["split_under_load"]
        table.add_row(dict(STAGES)[r["stage"]], fmt(r["achieved_rate"]), fmt(r["latency_ms"].get("p50")),
                      fmt(r["latency_ms"].get("p95")), fmt(r["latency_ms"].get("p99")),
                      f"{r['errors']}" + ("" if r["valid"] else " INVALID"),
                      f"{pct(s['features_share'])} ({fmt(s['features_ms'], 2)} ms)",
                      f"{pct(s['model_share'])} ({fmt(s['model_ms'], 2)} ms)", pct(r["feature_hit_rate"]))  # fmt: skip
    console.print(table)
    console.print("features / model: share of the server's own handler time (mean ms per request), summed over the "
                  "requests of the load run (warm-up included); model = forward pass, plus the batcher's queue wait "
                  "for inferopt. Latencies are client-side from the intended send time.")  # fmt: skip
    if args.split_requests:
        seq = ", ".join(f"{r['stage']} {pct(r['split_sequential'].get('features_share'))} / "
                        f"{pct(r['split_sequential'].get('model_share'))}" for r in rows)  # fmt: skip
        console.print(
            f"cross-check, {args.split_requests} sequential requests' Server-Timing (features / model): {seq}"
        )
    f = results["fidelity"]
    console.print(f"model: the artifact's pick is {f['recipe']} (model.onnx); AUC {f['auc_pick']:.4f} vs FP32 "
                  f"{f['auc_fp32']:.4f} on {f['n']} held-out applicants (drop {f['auc_drop']:+.5f}), decision "
                  f"agreement {f['decision_agreement']}")  # fmt: skip
    console.print(f"replay: {results['replay']['requests']:,} requests in file order, {results['replay']['distinct']} "
                  f"distinct ids in the first {results['replay']['sent']:,} sent; a TTL simulation of that prefix "
                  f"expects a feature hit rate of {results['replay']['expected_hit_rate']:.1%}")  # fmt: skip
    console.print(
        f"machine: {results['cores']} cores shared by the server and the load generator "
        f"({args.workers} sender process{'es' if args.workers > 1 else ''}), and Postgres on the same host"
    )
    console.print("targets:")
    for name, target in results["targets"].items():
        verdict = "n/a" if target["met"] is None else ("met" if target["met"] else "MISSED")
        console.print(f"  {name}: {target['value']} (target {target['target']}) -> {verdict}")


def targets(results: dict[str, Any]) -> dict[str, Any]:
    by_stage = {r["stage"]: r for r in results["stages"]}
    out: dict[str, Any] = {}
    pilot, last = by_stage.get("pilot"), by_stage.get("inferopt")
    if pilot and last and pilot["latency_ms"].get("p95") and last["latency_ms"].get("p95") is not None:
        ratio = last["latency_ms"]["p95"] / pilot["latency_ms"]["p95"]
        out["p95 inferopt / pilot"] = {"value": f"{ratio:.1%}", "target": f"<= {TARGET_P95_RATIO:.0%}",
                                       "ratio": ratio, "met": ratio <= TARGET_P95_RATIO}  # fmt: skip
    rate = last["feature_hit_rate"] if last else None
    out["feature cache hit rate (inferopt /metrics)"] = {
        "value": pct(rate), "target": f">= {TARGET_HIT_RATE:.0%}", "rate": rate,
        "met": None if rate is None else rate >= TARGET_HIT_RATE,
    }  # fmt: skip
    drop = results["fidelity"]["auc_drop"]
    out["AUC drop INT8 vs FP32"] = {"value": f"{drop:+.5f}", "target": f"<= {TARGET_AUC_DROP}", "drop": drop,
                                    "met": drop <= TARGET_AUC_DROP}  # fmt: skip
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=200.0, help="open-loop req/s offered to every stage")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds measured per stage")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds sent, not measured, before each")
    parser.add_argument("--artifact", type=Path, default=None, help="an optimized risk artifact (else built)")
    parser.add_argument("--variant", default="int8-static-qdq", help="the default path's variant ('' for the pick)")
    parser.add_argument("--reoptimize", action="store_true", help="optimize again even if OUT holds an artifact")
    parser.add_argument("--out", type=Path, default=REPO / "build" / "bench" / "risk")
    parser.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--schema", default="inferopt_risk_bench")
    parser.add_argument("--zipf", type=float, default=1.1, help="skew of the replay over the application ids")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=1, help="load generator processes")
    parser.add_argument("--pilot-db", choices=("connect", "thread"), default="thread",
                        help="the pilot's Postgres: one connection per pool thread, or one per request")  # fmt: skip
    parser.add_argument("--split-requests", type=int, default=200, help="sequential Server-Timing cross-check")
    parser.add_argument("--stages", nargs="+", choices=[s for s, _ in STAGES], default=[s for s, _ in STAGES])
    parser.add_argument("--port", type=int, default=8041, help="stage i listens on port + i")
    parser.add_argument("--smoke", action="store_true", help="5 s per stage (1 s warm-up) at 50 req/s, 20 split")
    parser.add_argument("--json", type=Path, default=None, help="write every number here")
    args = parser.parse_args()
    if args.smoke:
        args.duration, args.warmup, args.rate, args.split_requests = 5.0, 1.0, 50.0, 20
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    import os

    from inferopt.hardware import environment
    from inferopt.tasks.tabular import model_dir

    model, artifact = build(args)
    console.print(f"model {model}; artifact {artifact}")
    count = load_features(args.dsn, args.schema)
    console.print(f"loaded {count:,} applications into {args.schema} (idempotent)")
    sent = math.ceil(args.rate * (args.warmup + args.duration))
    args.replay = args.out / "replay.jsonl"
    ids = write_replay(args.replay, max(sent * 2, 1000), args.zipf, args.seed, count)
    ttls = {g.name: g.ttl_s for g in model_dir.read(model).features.groups}
    top = np.bincount(ids[:sent], minlength=count + 1)
    replay = {"path": str(args.replay), "requests": len(ids), "sent": sent, "entities": count, "zipf": args.zipf,
              "distinct": len(set(ids[:sent].tolist())), "seed": args.seed,
              "top20_share": float(np.sort(top)[-20:].sum() / sent), "ttls_s": ttls,
              "expected_hit_rate": expected_hit_rate(ids[:sent], args.rate, ttls)}  # fmt: skip
    console.print(f"replay: {len(ids):,} ids, Zipf s={args.zipf}; the 20 hottest take {replay['top20_share']:.0%} of "
                  f"the first {sent:,}; stages {', '.join(args.stages)} one at a time")  # fmt: skip
    rows = []
    for number, (stage, _) in enumerate(STAGES, start=1):
        if stage in args.stages:
            rows.append(measure(stage, args.port + number, model, artifact, ids, args))
    results: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "command": " ".join(sys.argv),
        "smoke": args.smoke,
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "environment": environment(),
        "cores": os.cpu_count(),
        "artifact": str(artifact),
        "replay": replay,
        "fidelity": fidelity(artifact),
        "stages": rows,
    }
    results["targets"] = targets(results)
    results["seconds"] = round(time.perf_counter() - started)
    plot(rows, args.out / "latency.png", f"risk scoring at {args.rate:g} req/s open loop" +
         (" (SMOKE RUN, not a measurement)" if args.smoke else ""))  # fmt: skip
    report(results, args)
    console.print(f"plot: {args.out / 'latency.png'}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2, default=str) + "\n")
        console.print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
