"""API keys: every inference, job, drift and metadata route of every protocol needs `Authorization: Bearer KEY`
(HTTP) or `authorization` metadata (gRPC); health stays open, /metrics too unless --metrics-auth; a refusal is a
401 with WWW-Authenticate saying why; the access log names the key by id, never the key."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import grpc
import httpx
import pytest

from inferopt.errors import InputError
from inferopt.serve.access_log import AccessLog
from inferopt.serve.app import create_app
from inferopt.serve.auth import ApiKeys, Unauthorized, check_key, key_id, read_keys_file
from inferopt.serve.config import ServeConfig
from inferopt.serve.grpc_client import GrpcClient
from inferopt.serve.testing import FAKE_NAME, fake_model
from inferopt.serve.wire import oip_v2_grpc as wire
from inferopt.tasks.text_embedding import TextEmbeddingTask

KEY, OTHER = "k-3f9a1c27d5e84b60a9f1", "k-other-0c1d2e3f4a5b6c7d"
BEARER = {"authorization": f"Bearer {KEY}"}
V2_BODY = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["hello"]}]}
KEYED = [  # (method, path, body): a route of each protocol and kind
    ("POST", "/v1/embeddings", {"input": "hello", "model": FAKE_NAME}),
    ("POST", f"/v1/models/{FAKE_NAME}:predict", {"instances": ["hello"]}),
    ("POST", f"/v2/models/{FAKE_NAME}/infer", V2_BODY),
    ("GET", f"/v2/models/{FAKE_NAME}", None),
    ("GET", "/v1/models", None),
    ("GET", "/v1/drift", None),
    ("POST", "/v1/jobs", {"model": FAKE_NAME, "instances": ["hello"]}),
    ("GET", "/v1/jobs/0123456789abcdef", None),
]
OPEN = ["/health/live", "/health/ready", "/v2/health/live", "/v2/health/ready", "/openapi.json"]

pytestmark = pytest.mark.anyio


def test_the_header_is_checked_for_what_is_wrong() -> None:
    keys = ApiKeys.of((KEY, OTHER))
    assert keys is not None and ApiKeys.of(()) is None
    assert keys.identify(f"Bearer {KEY}") == key_id(KEY) == hashlib.sha256(KEY.encode()).hexdigest()[:8]
    assert keys.identify(f"bearer {OTHER}") == key_id(OTHER)  # the scheme is case-insensitive (RFC 7235)
    cases = {
        None: None,
        "Basic dXNlcjpwYXNz": "invalid_request",
        "Bearer": "invalid_request",
        "Bearer ": "invalid_request",
        f"Bearer {KEY} {OTHER}": "invalid_request",
        f"Bearer {KEY}x": "invalid_token",
    }
    for header, error in cases.items():
        with pytest.raises(Unauthorized) as caught:
            keys.identify(header)
        assert caught.value.error == error, header
        challenge = caught.value.headers()["www-authenticate"]
        assert challenge.startswith('Bearer realm="inferopt"') and (error is None or f'error="{error}"' in challenge)


@pytest.mark.parametrize("bad", ["has space", "tab\there", " lead", "naïve", ""])
def test_a_key_a_header_cannot_carry_is_refused_without_showing_it(bad: str) -> None:
    with pytest.raises(InputError) as caught:
        ServeConfig(api_keys=(bad,))
    assert "--api-key" in str(caught.value) and (not bad.strip() or bad.strip() not in str(caught.value))
    assert KEY not in repr(ServeConfig(api_keys=(KEY,)))  # never in the config's repr


def test_the_keys_file_skips_comments_and_an_empty_one_is_refused(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.write_text(f"# team A\n{KEY}\n\n  {OTHER}  \n")
    assert read_keys_file(keys) == (KEY, OTHER)
    keys.write_text("# nothing yet\n\n")
    with pytest.raises(InputError, match="holds no key"):
        ServeConfig(api_keys_file=keys).keys()
    keys.write_text(f"{KEY}\nbad key\n")
    with pytest.raises(InputError, match=r"line 2: an API key \(id [0-9a-f]{8}\) has whitespace"):
        read_keys_file(keys)
    with pytest.raises(InputError, match="cannot be read"):
        read_keys_file(tmp_path / "missing")
    with pytest.raises(InputError, match="--metrics-auth needs API keys"):
        ServeConfig(metrics_auth=True)
    assert check_key(KEY, "--api-key") == KEY


async def test_every_keyed_route_answers_401_without_a_key_and_health_stays_open(
    serve, task: TextEmbeddingTask
) -> None:
    async with serve(fake_model(task=task), api_keys=(KEY,)) as served:
        client = served.client
        for method, path, body in KEYED:
            for headers, error in (({}, None), ({"authorization": f"Bearer {OTHER}"}, "invalid_token"),
                                   ({"authorization": "Token abc"}, "invalid_request")):  # fmt: skip
                response = await client.request(method, path, json=body, headers=headers)
                assert response.status_code == 401, (path, headers)
                challenge = response.headers["www-authenticate"]
                assert challenge.startswith('Bearer realm="inferopt"') and (error is None or error in challenge)
                message = response.json()["error"]
                assert "API key" in (message if isinstance(message, str) else message["message"]), path
            keyed = await client.request(method, path, json=body, headers=BEARER)
            assert keyed.status_code != 401, path
        embeddings = await client.post("/v1/embeddings", json={"input": "hi"}, headers={})
        assert embeddings.json()["error"]["type"] == "authentication_error"  # OpenAI's shape on its route
        for path in OPEN:
            assert (await client.get(path)).status_code == 200, path
        assert (await client.get("/metrics")).status_code == 200
        assert await served.metric('inferopt_rejected_total{reason="unauthorized"}') == 3 * len(KEYED) + 1
        ok = await client.post(f"/v1/models/{FAKE_NAME}:predict", json={"instances": ["a"]}, headers=BEARER)
        assert ok.status_code == 200 and len(ok.json()["predictions"][0]) == 384


async def test_metrics_can_be_keyed_too(serve, task: TextEmbeddingTask) -> None:
    async with serve(fake_model(task=task), api_keys=(KEY,), metrics_auth=True) as served:
        assert (await served.client.get("/metrics")).status_code == 401
        assert (await served.client.get("/metrics", headers=BEARER)).status_code == 200
        assert (await served.client.get("/health/ready")).status_code == 200


async def test_the_access_log_names_the_key_by_id_never_the_key(task: TextEmbeddingTask) -> None:
    import asyncio

    stream = io.BytesIO()
    config = ServeConfig(api_keys=(KEY, OTHER), grpc_port=0)
    app = create_app(config, fake_model(task=task), access_log=AccessLog(stream))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://inferopt.test") as client:
            while app.state.inferopt.phase == "loading":
                await asyncio.sleep(0.005)
            url = f"/v1/models/{FAKE_NAME}:predict"
            await client.post(url, json={"instances": ["a"]}, headers=BEARER)
            await client.post(url, json={"instances": ["a"]}, headers={"authorization": f"Bearer {OTHER}x"})
        async with GrpcClient(f"127.0.0.1:{app.state.grpc.port}") as grpc_client:
            metadata = (("authorization", f"Bearer {OTHER}"),)
            await grpc_client.infer(FAKE_NAME, {"text": ["a"]}, metadata=metadata)
    text = stream.getvalue().decode()
    lines = [json.loads(line) for line in text.splitlines()]
    assert [(line["method"], line["status"], line.get("key_id")) for line in lines] == [
        ("POST", 200, key_id(KEY)),
        ("POST", 401, None),
        ("gRPC", 200, key_id(OTHER)),
    ]
    assert KEY not in text and OTHER not in text


async def test_grpc_calls_need_the_key_in_metadata_but_health(serve, task: TextEmbeddingTask) -> None:
    async with (
        serve(fake_model(task=task), api_keys=(KEY,), grpc_port=0) as served,
        GrpcClient(f"127.0.0.1:{served.app.state.grpc.port}") as client,
    ):
        assert (await client.call("ServerLive", wire.ServerLiveRequest())).live
        assert (await client.call("ServerReady", wire.ServerReadyRequest())).ready
        for metadata in ((), (("authorization", f"Bearer {OTHER}"),), (("authorization", "Basic x"),)):
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await client.infer(FAKE_NAME, {"text": ["a"]}, metadata=metadata)
            assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert "API key" in caught.value.details() or "Authorization" in caught.value.details()
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await client.call("ModelMetadata", wire.ModelMetadataRequest(name=FAKE_NAME))
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
        outputs = await client.infer(FAKE_NAME, {"text": ["a"]}, metadata=(("authorization", f"Bearer {KEY}"),))
        assert outputs["embeddings"].shape == (1, 384)
