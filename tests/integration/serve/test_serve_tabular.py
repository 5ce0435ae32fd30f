"""The risk scorer served over a real socket with its features in the real PostgreSQL (a schema of the test's own,
loaded by the loader users run, dropped after): a request names an application and gets the score the model
gives its stored record, with each feature group's age and source; unknown ids are 404s, tenants never see each
other's rows, injection-shaped ids and tenants change nothing, large loans take the complex path, a store that
goes down is served stale and then 503 naming it, and comes back; jobs score lists of entities."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import numpy as np
import onnxruntime as ort
import pytest
from tests.grpc_calls import grpc_error, grpc_infer
from tests.pg_proxy import ThreadedProxy

from inferopt.artifact import load_artifact
from inferopt.serve.config import ServeConfig
from inferopt.serve.model import ServingModel
from inferopt.serve.testing import ServerThread, wait_until
from inferopt.tasks.tabular import load_features
from inferopt.tasks.tabular.encoders import Encoders
from inferopt.tasks.tabular.german_credit import Dataset

pytestmark = pytest.mark.slow
DSN = "postgresql://postgres@127.0.0.1:5432/test"
NAME = "risk-mlp-german-credit"
PREDICT = f"/v1/models/{NAME}:predict"
GROUPS = {"application", "accounts", "history", "profile"}
ACME = 50  # tenant "acme" holds 50 applications: its application i is the data set's row i + 1 (not row i)


def serve(artifact: Path, **config: Any) -> ServerThread:
    model = ServingModel.from_artifact(load_artifact(artifact))
    return ServerThread(model, ServeConfig(**({"access_log": False} | config)), ready_timeout_s=60)


def predict(client: httpx.Client, *instances: dict[str, Any]) -> httpx.Response:
    return client.post(PREDICT, json={"instances": list(instances)})


def metric(client: httpx.Client, prefix: str) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(prefix):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def _drop(schema: str) -> None:
    connection = await asyncpg.connect(DSN)
    try:
        await connection.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    finally:
        await connection.close()


async def _count(schema: str) -> int:
    connection = await asyncpg.connect(DSN, server_settings={"search_path": schema})
    try:
        return int(await connection.fetchval("SELECT count(*) FROM applications"))
    finally:
        await connection.close()


@pytest.fixture(scope="module")
def schema(german_credit: Dataset) -> Iterator[str]:
    """The loader run twice for tenant default (idempotent: still 1,000 applications), once for acme."""
    name = f"inferopt_test_risk_{uuid.uuid4().hex[:10]}"
    shifted = Dataset(german_credit.path, german_credit.records[1:], german_credit.bad[1:])
    try:
        for tenant, data in (("default", german_credit), ("default", german_credit), ("acme", shifted)):
            asyncio.run(load_features.load(DSN, name, tenant, data, limit=ACME if tenant == "acme" else None))
        assert asyncio.run(_count(name)) == 1000 + ACME
        yield name
    finally:
        asyncio.run(_drop(name))


@pytest.fixture(scope="module")
def server(risk_artifact: Path, schema: str) -> Iterator[ServerThread]:
    with serve(risk_artifact, features=DSN, features_schema=schema, grpc_port=0) as running:
        yield running


@pytest.fixture(scope="module")
def reference(risk_artifact: Path, german_credit: Dataset) -> np.ndarray:
    """Every applicant's score from the artifact's default graph, run directly on the encoded CSV records."""
    encoders = Encoders.from_dict(json.loads((risk_artifact / "encoders.json").read_text()))
    features = encoders.encode(german_credit.records, ["row"] * len(german_credit))
    session = ort.InferenceSession(str(risk_artifact / "model.onnx"), providers=["CPUExecutionProvider"])
    return session.run(None, {"features": features})[0]


def test_an_application_id_is_scored_on_its_stored_features(
    server: ServerThread, reference: np.ndarray, german_credit: Dataset
) -> None:
    small = [i for i, r in enumerate(german_credit.records) if r["credit_amount"] < 10_000][:5]
    with httpx.Client(base_url=server.url) as client:
        response = predict(client, *({"entity_id": i + 1, "tenant": "default"} for i in small))
        assert response.status_code == 200, response.text
        predictions = response.json()["predictions"]
        direct = predict(client, *({"features": german_credit.records[i]} for i in small)).json()["predictions"]
    for row, got, same in zip(small, predictions, direct, strict=True):
        assert got["score"] == pytest.approx(float(reference[row]), abs=1e-6)
        assert got["decision"] == ("decline" if got["score"] >= 1 / 6 else "approve")
        assert got["model_path"] == "default"
        assert set(got["debug"]["features"]) == GROUPS
        assert {k: v for k, v in got.items() if k != "debug"} == same  # the stored record is the CSV's record
        assert "debug" not in same


def test_each_group_says_how_old_it_is_and_where_it_came_from(server: ServerThread) -> None:
    with httpx.Client(base_url=server.url) as client:
        first = predict(client, {"entity_id": 321}).json()["predictions"][0]["debug"]["features"]
        time.sleep(0.05)
        response = predict(client, {"entity_id": 321})
        again = response.json()["predictions"][0]["debug"]["features"]
        assert "features;dur=" in response.headers["server-timing"]
        assert metric(client, 'inferopt_feature_requests_total{group="profile",source="memory"}') >= 1
    assert {g["source"] for g in first.values()} == {"postgres"}
    assert {g["source"] for g in again.values()} == {"memory"}
    assert all(again[g]["age_s"] >= first[g]["age_s"] + 0.04 for g in GROUPS)


def test_unknown_ids_are_404s_and_tenants_never_see_each_others_rows(
    server: ServerThread, reference: np.ndarray
) -> None:
    with httpx.Client(base_url=server.url) as client:
        missing = predict(client, {"entity_id": 1001})
        assert missing.status_code == 404 and "application 1001 does not exist for tenant 'default'" in missing.text
        acme = predict(client, {"entity_id": 1, "tenant": "acme"}).json()["predictions"][0]["score"]
        assert acme == pytest.approx(float(reference[1]), abs=1e-6)  # acme's application 1 is row 2
        assert abs(acme - float(reference[0])) > 1e-3
        beyond = predict(client, {"entity_id": ACME + 1, "tenant": "acme"})  # default has it; acme does not
        assert beyond.status_code == 404 and "tenant 'acme'" in beyond.text
        assert predict(client, {"entity_id": ACME + 1}).status_code == 200


@pytest.mark.parametrize(
    ("instance", "status"),
    [
        ({"entity_id": "1 OR 1=1"}, 422),
        ({"entity_id": "1; DROP TABLE applications; --"}, 422),
        ({"entity_id": -1}, 422),
        ({"entity_id": 1, "tenant": "default' OR '1'='1"}, 404),
        ({"entity_id": 1, "tenant": "x'; DROP TABLE applicants; --"}, 404),
    ],
)
def test_injection_attempts_are_refused_or_find_nothing_and_change_nothing(
    server: ServerThread, schema: str, instance: dict[str, Any], status: int
) -> None:
    with httpx.Client(base_url=server.url) as client:
        response = predict(client, instance)
        assert response.status_code == status, response.text
        assert predict(client, {"entity_id": 1}).status_code == 200
    assert asyncio.run(_count(schema)) == 1000 + ACME


def test_large_loans_and_flagged_requests_take_the_complex_path(server: ServerThread, german_credit: Dataset) -> None:
    large = next(i + 1 for i, r in enumerate(german_credit.records) if r["credit_amount"] >= 10_000)
    complex_batches = 'inferopt_batch_size_count{lane="high",model_path="complex"}'
    with httpx.Client(base_url=server.url) as client:
        before = metric(client, complex_batches)
        routed = predict(client, {"entity_id": large}).json()["predictions"][0]
        flagged = predict(client, {"entity_id": 2, "complex": True}).json()["predictions"][0]
        plain = predict(client, {"entity_id": 2}).json()["predictions"][0]
        assert metric(client, complex_batches) >= before + 2
    assert (routed["model_path"], flagged["model_path"], plain["model_path"]) == ("complex", "complex", "default")
    assert flagged["score"] == pytest.approx(plain["score"], abs=0.02)  # FP32 against the chosen variant


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"credit_amount": -5.0}, "credit_amount"),
        ({"purpose": "yacht"}, "purpose"),
        ({"age": "old"}, "age"),
        ({"shoe_size": 42}, "shoe_size"),
    ],
)
def test_a_bad_direct_record_is_a_422_naming_the_feature(
    server: ServerThread, german_credit: Dataset, change: dict[str, Any], field: str
) -> None:
    record = {**german_credit.records[0], **change}
    with httpx.Client(base_url=server.url) as client:
        response = predict(client, {"features": record})
        assert response.status_code == 422 and field in response.text
        absent = {k: v for k, v in german_credit.records[0].items() if k != "savings"}
        lacking = predict(client, {"features": absent})
        assert lacking.status_code == 422 and "savings" in lacking.text
        imputed = predict(client, {"features": {**german_credit.records[0], "savings": None}})
        assert imputed.status_code == 200  # null is a missing value: imputed, as in training


def test_a_server_without_a_feature_store_scores_records_and_names_the_store_for_ids(
    risk_artifact: Path, german_credit: Dataset
) -> None:
    with serve(risk_artifact) as running, httpx.Client(base_url=running.url) as client:
        response = predict(client, {"entity_id": 1})
        assert response.status_code == 503 and "postgres" in response.text
        assert predict(client, {"features": german_credit.records[0]}).status_code == 200


def test_drift_finds_the_loans_that_grew_and_not_the_ones_that_did_not(
    risk_artifact: Path, german_credit: Dataset
) -> None:
    records = german_credit.records[:300]
    grown = [{**record, "credit_amount": record["credit_amount"] * 4} for record in records]
    figures = {}
    for name, sent in (("same", records), ("grown", grown)):
        running = serve(risk_artifact, cache="off", drift_window=300, drift_min_items=300)
        with running, httpx.Client(base_url=running.url) as client:
            for start in range(0, 300, 50):
                assert predict(client, *({"features": r} for r in sent[start : start + 50])).status_code == 200
            figures[name] = client.get("/v1/drift").json()
    assert figures["same"]["ready"] and figures["same"]["reference"]["items"] == 1000  # optimize's eval data
    same, grown_ = figures["same"]["signals"], figures["grown"]["signals"]
    assert same["input.credit_amount"]["psi"] < 0.15 and same["input.credit_amount"]["ks"] < 0.1
    assert grown_["input.credit_amount"]["psi"] > 1.0 and grown_["input.credit_amount"]["ks"] > 0.4
    assert grown_["input.purpose"]["psi"] == same["input.purpose"]["psi"]  # what did not change reads the same
    assert grown_["output.score"]["live_mean"] > same["output.score"]["live_mean"]  # bigger loans, more risk


def test_a_store_that_goes_down_is_served_stale_then_503_then_recovered(risk_artifact: Path, schema: str) -> None:
    proxy = ThreadedProxy().start()
    ttls = tuple(f"{group}=1" for group in GROUPS)
    config = {"features_schema": schema, "feature_ttl": ttls, "feature_max_stale_s": 2.0, "cache": "off"}
    try:
        with (
            serve(risk_artifact, features=f"postgresql://postgres@127.0.0.1:{proxy.port}/test", **config) as running,
            httpx.Client(base_url=running.url) as client,
        ):
            assert predict(client, {"entity_id": 7}).status_code == 200
            proxy.stop()
            time.sleep(1.2)  # past every TTL, inside the staleness allowance
            stale = predict(client, {"entity_id": 7})
            assert stale.status_code == 200, stale.text
            sources = {g["source"] for g in stale.json()["predictions"][0]["debug"]["features"].values()}
            assert sources == {"stale"}
            time.sleep(2.0)  # past TTL + max staleness
            down = predict(client, {"entity_id": 7})
            assert down.status_code == 503 and "postgres" in down.json()["error"]
            assert down.headers["retry-after"] == "1"
            never_read = predict(client, {"entity_id": 8})
            assert never_read.status_code == 503
            proxy.start()  # the same port

            def recovered() -> bool:
                response = predict(client, {"entity_id": 7})
                if response.status_code != 200:
                    return False
                return {g["source"] for g in response.json()["predictions"][0]["debug"]["features"].values()} == {
                    "postgres"
                }

            wait_until(recovered, timeout_s=10)
            assert metric(client, "inferopt_feature_store_up") == 1.0
    finally:
        proxy.close()


@pytest.mark.redis
def test_a_job_scores_a_list_of_entities_as_predict_does(risk_artifact: Path, schema: str) -> None:
    import redis

    url = "redis://127.0.0.1:6379/11"
    redis.Redis.from_url(url).flushdb()
    instances = [{"entity_id": i} for i in range(1, 201)]
    try:
        with (
            serve(risk_artifact, features=DSN, features_schema=schema, jobs=url) as running,
            httpx.Client(base_url=running.url) as client,
        ):
            submitted = client.post("/v1/jobs", json={"model": NAME, "instances": instances})
            assert submitted.status_code == 202, submitted.text
            location = submitted.headers["location"]

            def finished() -> bool:
                return client.get(location).json()["status"] in ("succeeded", "failed")

            wait_until(finished, timeout_s=30)
            job = client.get(location).json()
            assert job["status"] == "succeeded", job
            direct = predict(client, *instances).json()["predictions"]
            strip = [{k: v for k, v in p.items() if k != "debug"} for p in direct]
            assert [{k: v for k, v in p.items() if k != "debug"} for p in job["result"]["predictions"]] == strip
    finally:
        redis.Redis.from_url(url).flushdb()


def test_every_session_of_every_path_is_warm_before_ready(risk_artifact: Path) -> None:
    from inferopt.serve.model import batch_policy, warm_up

    model = ServingModel.from_artifact(load_artifact(risk_artifact), sessions=1, min_warm=2)
    assert len(model.backends) == 2 and len(model.paths["complex"]) == 2
    assert model.path_variants == {"complex": "onnx-fp32"}
    calls: list[tuple[str, int]] = []
    for path, backends in model.all_paths.items():
        for backend in backends:
            original = backend.run

            def recorded(feeds: dict[str, np.ndarray], original: Any = original, path: str = path) -> Any:
                calls.append((path, len(feeds["features"])))
                return original(feeds)

            backend.run = recorded  # type: ignore[method-assign]
            backend.warmup = lambda feeds, run=recorded: run(feeds)  # type: ignore[method-assign]
    policy = batch_policy(ServeConfig(max_batch=32), model)
    warm_up(model, policy)
    assert sorted(calls) == sorted([(p, n) for p in ("default", "complex") for _ in range(2) for n in (1, 32)])


def test_open_inference_protocol_v2_scores_entity_ids_of_a_tenant(server: ServerThread) -> None:
    from inferopt.serve.wire.oip_v2 import decode_outputs, encode_infer_request

    with httpx.Client(base_url=server.url) as client:
        ids = np.array([1, 2, 3], np.int64)
        body = encode_infer_request({"entity_id": ids, "tenant": ["acme"] * 3})
        response = client.post(f"/v2/models/{NAME}/infer", content=body)
        assert response.status_code == 200, response.text
        scores = decode_outputs(response.content)["score"]
        kserve = predict(client, *({"entity_id": int(i), "tenant": "acme"} for i in ids)).json()["predictions"]
        assert scores.shape == (3,)
        assert np.allclose(scores, [p["score"] for p in kserve], atol=1e-6)
        bad = client.post(
            f"/v2/models/{NAME}/infer", content=encode_infer_request({"entity_id": ids.astype(np.float32)})
        )
        assert bad.status_code == 422 and "entity_id must be an INT64" in bad.text
        missing = client.post(
            f"/v2/models/{NAME}/infer",
            content=encode_infer_request({"entity_id": np.array([999], np.int64), "tenant": ["acme"]}),
        )
        assert missing.status_code == 404


def test_grpc_scores_entity_ids_as_rest_does(server: ServerThread) -> None:
    from inferopt.serve.wire.oip_v2 import decode_outputs, encode_infer_request

    tensors = {"entity_id": np.array([1, 2, 3], np.int64), "tenant": ["acme"] * 3}
    rest = httpx.post(server.url + f"/v2/models/{NAME}/infer", content=encode_infer_request(tensors))
    scores = grpc_infer(server.grpc_target, NAME, tensors)["score"]
    np.testing.assert_array_equal(scores, decode_outputs(rest.content)["score"])
    code, message = grpc_error(server.grpc_target, NAME, {"entity_id": np.array([999], np.int64), "tenant": ["acme"]})
    assert code == "NOT_FOUND" and "999" in message
    code, message = grpc_error(server.grpc_target, NAME, {"entity_id": np.array([1.0], np.float32)})
    assert code == "INVALID_ARGUMENT" and "entity_id must be an INT64" in message


def test_generated_input_on_every_route_never_gets_a_5xx(server: ServerThread) -> None:
    from tests.fuzz import everything

    seen = everything(server, examples=30)
    assert seen["POST /v1/models/{name}:predict"][422] > 0 and seen["oip_v2"][422] > 0
    assert seen["grpc"]["INVALID_ARGUMENT"] > 0
