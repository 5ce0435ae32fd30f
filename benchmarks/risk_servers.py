"""The first three rows of benchmarks/risk.py: the risk scorer's pilot and the first two levers applied to it,
each a FastAPI app under uvicorn (1 worker), one process, chosen by --stage:

    pilot   the pilot as a team builds it: a sync `def` endpoint (FastAPI runs it in its thread pool) that
            reads through one psycopg 3 connection per pool thread (--pilot-db thread, the default: a pooled
            app; or a connection per request, --pilot-db connect), runs ONE query joining the four tables
            for the application, encodes the row and runs the trained module in PyTorch FP32 eager, one
            forward per request, no cache.
    cache   + the feature cache and async I/O: an `async def` endpoint reading features through inferopt's
            FeatureCache over PostgresFeatures (asyncpg pool, the four groups fetched in parallel, each kept
            for its TTL from features.json, single-flight); the model is still PyTorch FP32 eager, run off the
            event loop on one worker thread, one forward per request.
    onnx    + the ONNX INT8 CPU path: as `cache`, but the model is the artifact's model.onnx (optimize's pick)
            in one onnxruntime session, one run per request, no batching.

Same request and response JSON as `inferopt serve` (`{"instances": [{"entity_id": 17, "tenant": "default"}]}`
-> `{"predictions": [{"score", "decision", "model_path"}]}`), so one load script drives all of them. Every
answer carries `Server-Timing: features;dur=, preprocess;dur=, inference;dur=, total;dur=` (ms, measured in the
handler), and GET /stats returns the sums of those over every request served (and, for cache/onnx, how many
group reads each source answered), so the split under load comes from the same requests.

    python benchmarks/risk_servers.py --stage pilot --model build/risk/model --port 8041 \
        --dsn postgresql://postgres@127.0.0.1:5432/test --schema inferopt_risk_bench
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import numpy as np
import uvicorn
from fastapi import FastAPI, HTTPException, Response

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from inferopt.tasks.tabular import model_dir
from inferopt.tasks.tabular.german_credit import FEATURES, NO_CHECKING, NO_SAVINGS

STAGES = ("pilot", "cache", "onnx")
NAMES = {group: [f.name for f in FEATURES if f.group == group] for group in ("application", "history", "profile")}
# The pilot's one query: the application, its applicant's profile and credit history, and the two account rows
# pivoted by LEFT JOINs (no row = the data set's "no checking account" / "no savings").
PILOT_SQL = (
    "SELECT "
    + ", ".join(
        [f"a.{n}" for n in NAMES["application"]]
        + [
            f"coalesce(chk.status, '{NO_CHECKING}') AS checking_account",
            f"coalesce(sav.status, '{NO_SAVINGS}') AS savings",
        ]
        + [f"h.{n}" for n in NAMES["history"]]
        + [f"p.{n}" for n in NAMES["profile"]]
    )
    + " FROM applications a"
    " JOIN applicants p ON p.tenant = a.tenant AND p.applicant_id = a.applicant_id"
    " JOIN credit_history h ON h.tenant = a.tenant AND h.applicant_id = a.applicant_id"
    " LEFT JOIN accounts chk ON chk.tenant = a.tenant AND chk.applicant_id = a.applicant_id AND chk.kind = 'checking'"
    " LEFT JOIN accounts sav ON sav.tenant = a.tenant AND sav.applicant_id = a.applicant_id AND sav.kind = 'savings'"
    " WHERE a.tenant = %s AND a.application_id = %s"
)
PILOT_COLUMNS = [*NAMES["application"], "checking_account", "savings", *NAMES["history"], *NAMES["profile"]]

state: dict[str, Any] = {}
totals: Counter[str] = Counter()  # seconds per stage, summed over requests; "requests" counts them
sources: Counter[str] = Counter()  # feature group reads by source (cache / onnx)
lock = threading.Lock()  # the pilot's handlers run on many threads


def record_timings(timings: dict[str, float], response: Response) -> None:
    response.headers["server-timing"] = ", ".join(f"{k};dur={v * 1000:.3f}" for k, v in timings.items())
    with lock:
        totals["requests"] += 1
        for key, value in timings.items():
            totals[key] += value


def prediction(score: float) -> dict[str, Any]:
    decision = "decline" if score >= state["threshold"] else "approve"
    return {"score": round(score, 6), "decision": decision, "model_path": "default"}


def entity(body: dict[str, Any]) -> tuple[str, int]:
    instances = body.get("instances")
    if not isinstance(instances, list) or len(instances) != 1 or not isinstance(instances[0], dict):
        raise HTTPException(422, "send one instance: {'instances': [{'entity_id': 17, 'tenant': 'default'}]}")
    instance = instances[0]
    entity_id = instance.get("entity_id")
    if isinstance(entity_id, bool) or not isinstance(entity_id, int) or entity_id < 1:
        raise HTTPException(422, "entity_id must be a whole number from 1")
    return str(instance.get("tenant", "default")), entity_id


# -- the model: PyTorch FP32 eager, or one onnxruntime session -------------------------------------------------


def score_torch(values: dict[str, Any]) -> tuple[float, float, float]:
    import torch

    started = time.perf_counter()
    x = state["encoders"].encode([values], ["instances[0] (stored features)"])
    encoded = time.perf_counter()
    with torch.inference_mode():
        score = float(state["module"](torch.from_numpy(x))[0])
    return score, encoded - started, time.perf_counter() - encoded


def score_onnx(values: dict[str, Any]) -> tuple[float, float, float]:
    started = time.perf_counter()
    x = state["encoders"].encode([values], ["instances[0] (stored features)"])
    encoded = time.perf_counter()
    (score,) = state["session"].run([state["output"]], {state["input"]: x})
    return float(np.asarray(score).reshape(-1)[0]), encoded - started, time.perf_counter() - encoded


# -- the pilot: sync endpoint, one JOIN per request, no cache ---------------------------------------------------

pilot = FastAPI()
local = threading.local()


def pilot_connection() -> Any:
    import psycopg

    options = f"-c search_path={state['schema']}"
    if state["pilot_db"] == "connect":
        return psycopg.connect(state["dsn"], options=options, autocommit=True)
    connection = getattr(local, "connection", None)
    if connection is None or connection.closed:
        connection = local.connection = psycopg.connect(state["dsn"], options=options, autocommit=True)
    return connection


@pilot.post("/v1/models/{name}:predict")
def pilot_predict(name: str, body: dict[str, Any], response: Response) -> dict[str, Any]:
    started = time.perf_counter()
    tenant, entity_id = entity(body)
    connection = pilot_connection()
    try:
        row = connection.execute(PILOT_SQL, (tenant, entity_id)).fetchone()
    finally:
        if state["pilot_db"] == "connect":
            connection.close()
    if row is None:
        raise HTTPException(404, f"application {entity_id} does not exist for tenant {tenant!r}")
    values = {c: float(v) if isinstance(v, int) else v for c, v in zip(PILOT_COLUMNS, row, strict=True)}
    fetched = time.perf_counter()
    score, preprocess, inference = score_torch(values)
    timings = {"features": fetched - started, "preprocess": preprocess, "inference": inference}
    record_timings(timings | {"total": time.perf_counter() - started}, response)
    return {"predictions": [prediction(score)]}


# -- cache / onnx: async endpoint, FeatureCache over PostgresFeatures, the model on one thread ------------------


@asynccontextmanager
async def lifespan(app: FastAPI) -> Any:
    from inferopt.serve.feature_cache import FeatureCache
    from inferopt.sources.postgres import PostgresFeatures

    spec = state["features"]
    store = PostgresFeatures(state["dsn"], spec, schema=state["schema"])
    await store.open()
    state["cache"] = FeatureCache(store, spec, namespace=f"risk-bench:{state['schema']}")
    state["executor"] = ThreadPoolExecutor(1, thread_name_prefix="model")
    yield
    await state["cache"].close()
    state["executor"].shutdown()


cached = FastAPI(lifespan=lifespan)


@cached.post("/v1/models/{name}:predict")
async def cached_predict(name: str, body: dict[str, Any], response: Response) -> dict[str, Any]:
    from inferopt.sources.features import EntityNotFound, EntityRef, FeaturesUnavailable

    started = time.perf_counter()
    tenant, entity_id = entity(body)
    try:
        record = await state["cache"].read(EntityRef(tenant, entity_id))
    except EntityNotFound as exc:
        raise HTTPException(404, exc.message) from None
    except FeaturesUnavailable as exc:
        raise HTTPException(503, exc.message) from None
    for read in record.groups.values():
        sources[read.source] += 1
    fetched = time.perf_counter()
    loop = asyncio.get_running_loop()
    score, preprocess, inference = await loop.run_in_executor(state["executor"], state["score"], record.values)
    timings = {"features": fetched - started, "preprocess": preprocess, "inference": inference}
    record_timings(timings | {"total": time.perf_counter() - started}, response)
    return {"predictions": [prediction(score)]}


def add_common(app: FastAPI) -> None:
    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/stats")
    def stats() -> dict[str, Any]:
        with lock:
            return {"stage": state["stage"], "totals_s": dict(totals), "feature_sources": dict(sources)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stage", choices=STAGES, required=True)
    parser.add_argument("--model", type=Path, required=True, help="the trained model folder (build/risk/model)")
    parser.add_argument("--artifact", type=Path, default=None, help="the optimized artifact (for --stage onnx)")
    parser.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--schema", default="inferopt_risk_bench")
    parser.add_argument("--pilot-db", choices=("connect", "thread"), default="connect",
                        help="pilot: a new connection per request, or one kept per pool thread")  # fmt: skip
    parser.add_argument("--port", type=int, default=8041)
    args = parser.parse_args()
    folder = model_dir.read(args.model)
    state.update(stage=args.stage, dsn=args.dsn, schema=args.schema, pilot_db=args.pilot_db,
                 threshold=float(folder.meta["threshold"]), features=folder.features)  # fmt: skip
    if args.stage == "onnx":
        import onnxruntime as ort

        if args.artifact is None:
            parser.error("--stage onnx needs --artifact")
        encoders_json = model_dir.read_json(args.artifact / model_dir.ENCODERS)
        from inferopt.tasks.tabular.encoders import Encoders

        state["encoders"] = Encoders.from_dict(encoders_json)
        session = ort.InferenceSession(str(args.artifact / "model.onnx"), providers=["CPUExecutionProvider"])
        state.update(session=session, input=session.get_inputs()[0].name, output=session.get_outputs()[0].name)
        state["score"] = score_onnx
    else:
        state["encoders"] = folder.encoders
        state["module"] = folder.module()
        state["score"] = score_torch
    app = pilot if args.stage == "pilot" else cached
    add_common(app)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
