"""The recommender served over a real socket: top k for a user and ranked candidates on KServe v1 and OIP v2,
catalogue ids in and out, each bad input a 422 naming its field without disturbing the good requests beside it,
and responses cached per user and k, in memory with a TTL and in Redis."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import redis
from tests.grpc_calls import grpc_error, grpc_infer

from inferopt.artifact import load_artifact
from inferopt.engine import Predictor
from inferopt.serve.cache import CacheKeys
from inferopt.serve.config import ServeConfig
from inferopt.serve.model import ServingModel
from inferopt.serve.testing import ServerThread, wait_until
from inferopt.serve.wire.oip_v2 import decode_outputs, encode_infer_request

pytestmark = pytest.mark.slow
REDIS_URL = "redis://127.0.0.1:6379/12"  # a DB of its own, flushed by the test
NAME = "neumf-movielens-100k"
PREDICT = f"/v1/models/{NAME}:predict"


def serve(artifact: Path, **config: Any) -> ServerThread:
    model = ServingModel.from_artifact(load_artifact(artifact))
    return ServerThread(model, ServeConfig(**({"access_log": False} | config)), ready_timeout_s=60)


def metric(client: httpx.Client, prefix: str) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(prefix):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.fixture(scope="module")
def history(recsys_model: Path) -> dict[int, set[int]]:
    """User id -> the item ids they saw in training."""
    ids = json.loads((recsys_model / "catalogue.json").read_text())
    seen = json.loads((recsys_model / "history.json").read_text())
    return {ids["users"][u]: {ids["items"][i] for i in rows} for u, rows in enumerate(seen)}


@pytest.fixture(scope="module")
def server(recsys_artifact: Path) -> Iterator[ServerThread]:
    with serve(recsys_artifact, grpc_port=0) as running:
        yield running


def test_top_k_for_a_user_is_the_in_process_answer_in_catalogue_ids(
    server: ServerThread, recsys_artifact: Path, history: dict[int, set[int]]
) -> None:
    body = {"instances": [{"user_id": 42, "k": 10}, {"user_id": 943, "k": 3}]}
    response = httpx.post(server.url + PREDICT, json=body)
    assert response.status_code == 200
    first, second = response.json()["predictions"]
    assert len(first["items"]) == 10 and len(second["items"]) == 3
    assert not set(first["items"]) & history[42]  # already-seen items are excluded by default
    assert first["scores"] == sorted(first["scores"], reverse=True)
    assert all(1 <= i <= 1682 for i in first["items"])  # MovieLens item ids, not rows
    # The same two queries in one batch, as the server ran them: a dynamic-INT8 pick quantizes activations per
    # batch, so a query alone could order near-tied items differently.
    with Predictor.from_artifact(recsys_artifact) as predictor:
        local = predictor.predict(body["instances"])
    assert [p["items"] for p in local] == [first["items"], second["items"]]


def test_candidates_come_back_ranked_and_seen_items_only_when_asked(
    server: ServerThread, history: dict[int, set[int]]
) -> None:
    seen = sorted(history[7])[:2]
    candidates = [*seen, 1, 1500, 1682]
    candidates = list(dict.fromkeys(candidates))
    kept = httpx.post(server.url + PREDICT, json={"instances": [{"user_id": 7, "candidates": candidates}]})
    assert kept.status_code == 200
    assert sorted(kept.json()["predictions"][0]["items"]) == sorted(candidates)
    dropped = httpx.post(
        server.url + PREDICT, json={"instances": [{"user_id": 7, "candidates": candidates, "exclude_seen": True}]}
    )
    assert set(dropped.json()["predictions"][0]["items"]) == set(candidates) - history[7]


def test_similar_items_for_a_product_page_never_include_the_item(server: ServerThread) -> None:
    response = httpx.post(server.url + PREDICT, json={"instances": [{"item_id": 50, "k": 5}]})
    assert response.status_code == 200
    similar = response.json()["predictions"][0]
    assert len(similar["items"]) == 5 and 50 not in similar["items"]
    assert similar["scores"] == sorted(similar["scores"], reverse=True) and similar["scores"][0] <= 1.0
    v2 = httpx.post(server.url + f"/v2/models/{NAME}/infer", content=encode_infer_request({"item_id": np.array([50])}))
    assert decode_outputs(v2.content)["items"].tolist()[0][:5] == similar["items"]


def test_oip_v2_answers_what_kserve_v1_does(server: ServerThread) -> None:
    body = encode_infer_request({"user_id": np.array([42, 5]), "k": np.array([4, 4])})
    response = httpx.post(server.url + f"/v2/models/{NAME}/infer", content=body)
    assert response.status_code == 200
    outputs = decode_outputs(response.content)
    v1 = httpx.post(server.url + PREDICT, json={"instances": [{"user_id": 42, "k": 4}, {"user_id": 5, "k": 4}]})
    assert outputs["items"].tolist() == [p["items"] for p in v1.json()["predictions"]]
    assert outputs["items"].shape == (2, 4) and outputs["scores"].dtype.name == "float32"
    bad = httpx.post(
        server.url + f"/v2/models/{NAME}/infer",
        content=encode_infer_request({"user_id": np.array([0])}),
    )
    assert bad.status_code == 422 and "unknown user 0" in bad.json()["error"]
    drift = httpx.get(server.url + "/v1/drift").json()  # the top pick's score, against the held-out users'
    assert set(drift["signals"]) <= {"output.top_score"} and drift["reference"]["items"] > 100


def test_grpc_answers_what_rest_does(server: ServerThread) -> None:
    tensors = {"user_id": np.array([42, 5]), "k": np.array([4, 4])}
    rest = decode_outputs(
        httpx.post(server.url + f"/v2/models/{NAME}/infer", content=encode_infer_request(tensors)).content
    )
    for raw in (True, False):
        over_grpc = grpc_infer(server.grpc_target, NAME, tensors, raw=raw)
        assert over_grpc["items"].tolist() == rest["items"].tolist()
        np.testing.assert_array_equal(over_grpc["scores"], rest["scores"])
    similar = grpc_infer(server.grpc_target, NAME, {"item_id": np.array([50])})
    assert 50 not in similar["items"].tolist()[0]
    code, message = grpc_error(server.grpc_target, NAME, {"user_id": np.array([0])})
    assert code == "INVALID_ARGUMENT" and "unknown user 0" in message


BAD = [
    ({"instances": [{"user_id": 424242}]}, "instances[0].user_id", "unknown user"),
    ({"instances": [{"user_id": 1.5}]}, "instances[0].user_id", "integer id"),
    ({"instances": [{"user_id": 1, "k": 0}]}, "instances[0].k", "at least 1"),
    ({"instances": [{"user_id": 1, "k": 5000}]}, "instances[0].k", "has not seen"),
    ({"instances": [{"user_id": 1, "candidates": [3, 3]}]}, "instances[0].candidates", "listed twice"),
    ({"instances": [{"user_id": 1, "candidates": [3, 77777]}]}, "instances[0].candidates", "unknown item ids"),
    ({"instances": []}, "instances", "empty list"),
    ({"instances": [{"user_id": 1}], "parameters": {"k": -1}}, "parameters.k", "at least 1"),
]


def test_each_bad_input_is_a_422_naming_its_field_and_the_good_requests_beside_it_are_answered(
    server: ServerThread,
) -> None:
    good = {"instances": [{"user_id": 11, "k": 5}]}
    with httpx.Client(base_url=server.url) as client, ThreadPoolExecutor(8) as pool:
        expected = client.post(PREDICT, json=good).json()
        futures = [pool.submit(client.post, PREDICT, json=body) for body, _, _ in BAD]
        goods = [pool.submit(client.post, PREDICT, json=good) for _ in range(8)]
        for future, (_, field, words) in zip(futures, BAD, strict=True):
            response = future.result()
            assert response.status_code == 422, field
            assert response.json()["error"].startswith(field), field
            assert words in response.json()["error"]
        assert all(g.result().status_code == 200 and g.result().json() == expected for g in goods)


def test_responses_are_cached_per_user_and_k_and_expire_after_the_ttl(recsys_artifact: Path) -> None:
    with serve(recsys_artifact, cache_ttl=1) as running, httpx.Client(base_url=running.url) as client:
        first = client.post(PREDICT, json={"instances": [{"user_id": 3, "k": 5}]})
        again = client.post(PREDICT, json={"instances": [{"user_id": 3, "k": 5}]})
        other_k = client.post(PREDICT, json={"instances": [{"user_id": 3, "k": 6}]})
        assert again.json() == first.json()
        assert again.headers["x-inference-time"] == "0.000000"  # the hit never reached the model
        assert other_k.headers["x-inference-time"] != "0.000000"  # another k is another entry
        assert other_k.json()["predictions"][0]["items"][:5] == first.json()["predictions"][0]["items"]
        assert metric(client, 'inferopt_cache_requests_total{result="hit",tier="memory"}') == 1
        time.sleep(1.1)
        expired = client.post(PREDICT, json={"instances": [{"user_id": 3, "k": 5}]})
        assert expired.headers["x-inference-time"] != "0.000000"
        assert expired.json() == first.json()
        assert metric(client, 'inferopt_cache_requests_total{result="miss",tier="memory"}') == 3


@pytest.mark.redis
def test_redis_shares_recommendations_across_replicas_with_a_ttl(recsys_artifact: Path) -> None:
    shared = redis.Redis.from_url(REDIS_URL)
    shared.flushdb()
    try:
        config = {"cache": REDIS_URL, "cache_ttl": 60}
        body = {"instances": [{"user_id": 21, "k": 10}]}
        with serve(recsys_artifact, **config) as first, httpx.Client(base_url=first.url) as client:
            computed = client.post(PREDICT, json=body)
            keys = CacheKeys(
                first.state.require_ready().model.artifact_id, first.state.require_ready().model.task.cache_key
            )
            key = keys(first.state.require_ready().model.task.instance({"user_id": 21, "k": 10}, "x"))
            wait_until(lambda: shared.exists(key) == 1, timeout_s=5, what="write-behind to Redis")
        assert 0 < shared.ttl(key) <= 60
        with serve(recsys_artifact, **config) as second, httpx.Client(base_url=second.url) as client:
            from_redis = client.post(PREDICT, json=body)
            assert metric(client, 'inferopt_cache_requests_total{result="hit",tier="redis"}') == 1
        assert from_redis.headers["x-inference-time"] == "0.000000"
        assert from_redis.json() == computed.json()
    finally:
        shared.flushdb()
        shared.close()


def test_generated_input_on_every_route_never_gets_a_5xx(server: ServerThread) -> None:
    from tests.fuzz import everything

    seen = everything(server, examples=30)
    assert seen["POST /v1/models/{name}:predict"][422] > 0 and seen["oip_v2"][422] > 0
    assert seen["grpc"]["INVALID_ARGUMENT"] > 0
