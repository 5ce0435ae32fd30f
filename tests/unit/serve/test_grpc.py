"""The Open Inference Protocol v2 over gRPC, in process: a real grpc.aio server on a loopback port and a Unix
socket beside the app, a real grpc.aio client. The same vectors as REST, the metadata calls, one cache and one
set of metrics for both, and each bad request's status code with a message naming its field."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import grpc
import numpy as np
import pytest

from inferopt.serve.grpc_client import GrpcClient
from inferopt.serve.testing import FAKE_ARTIFACT_ID, FAKE_NAME, fake_embedding, fake_model
from inferopt.serve.wire import oip_v2_grpc as wire
from inferopt.tasks.text_embedding import TextEmbeddingTask

pytestmark = pytest.mark.anyio
INFER_ROUTE = "/inference.GRPCInferenceService/ModelInfer"


def grpc_target(served) -> str:  # type: ignore[no-untyped-def]
    return f"127.0.0.1:{served.app.state.grpc.port}"


async def status_of(client: GrpcClient, name: str, request, **kwargs) -> grpc.aio.AioRpcError:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await client.call(name, request, **kwargs)
    return caught.value


async def test_infer_over_tcp_and_a_unix_socket_returns_the_models_vectors(
    serve, task: TextEmbeddingTask, tmp_path: Path
) -> None:
    sock = tmp_path / "grpc.sock"
    async with serve(fake_model(task=task), grpc_port=0, grpc_uds=sock) as served:
        for target in (grpc_target(served), f"unix:{sock}"):
            async with GrpcClient(target) as client:
                for raw in (True, False):  # raw_input_contents (tritonclient's way) and typed bytes_contents
                    outputs = await client.infer(FAKE_NAME, {"text": ["first text", "second"]}, raw=raw)
                    vectors = outputs["embeddings"]
                    assert vectors.shape == (2, 384) and vectors.dtype == np.float32
                    np.testing.assert_array_equal(vectors[0], fake_embedding(task, "first text"))
                    np.testing.assert_array_equal(vectors[1], fake_embedding(task, "second"))
        rest = await served.client.post(
            f"/v2/models/{FAKE_NAME}/infer",
            json={"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["first text"]}]},
        )
    np.testing.assert_array_equal(np.asarray(rest.json()["outputs"][0]["data"], np.float32), vectors[0])


async def test_the_response_names_the_model_version_and_request_id(serve, task: TextEmbeddingTask) -> None:
    async with serve(fake_model(task=task), grpc_port=0) as served, GrpcClient(grpc_target(served)) as client:
        request = wire.infer_request_message(FAKE_NAME, {"text": ["a"]}, request_id="req-7")
        call = client._calls["ModelInfer"](request, metadata=(("x-request-id", "caller-id-1"),))
        response = await call
        trailing = dict(await call.trailing_metadata())
    assert (response.model_name, response.model_version, response.id) == (FAKE_NAME, FAKE_ARTIFACT_ID, "req-7")
    assert [o.name for o in response.outputs] == ["embeddings"] and list(response.outputs[0].shape) == [1, 384]
    assert trailing["x-request-id"] == "caller-id-1" and trailing["traceparent"].startswith("00-")


async def test_health_and_metadata_calls(serve, task: TextEmbeddingTask) -> None:
    async with serve(fake_model(task=task), grpc_port=0) as served, GrpcClient(grpc_target(served)) as client:
        live = await client.call("ServerLive", wire.ServerLiveRequest())
        ready = await client.call("ServerReady", wire.ServerReadyRequest())
        model_ready = await client.call("ModelReady", wire.ModelReadyRequest(name=FAKE_NAME))
        server = await client.call("ServerMetadata", wire.ServerMetadataRequest())
        metadata = await client.call("ModelMetadata", wire.ModelMetadataRequest(name=FAKE_NAME))
        unknown = await status_of(client, "ModelReady", wire.ModelReadyRequest(name="nope"))
        old_version = await status_of(client, "ModelMetadata", wire.ModelMetadataRequest(name=FAKE_NAME, version="9"))
    assert live.live and ready.ready and model_ready.ready and server.name == "inferopt"
    assert metadata.name == FAKE_NAME and list(metadata.versions) == [FAKE_ARTIFACT_ID]
    assert [(t.name, t.datatype, list(t.shape)) for t in metadata.inputs] == [("text", "BYTES", [-1])]
    assert [(t.name, t.datatype) for t in metadata.outputs] == [("embeddings", "FP32")]
    assert unknown.code() == grpc.StatusCode.NOT_FOUND and "'nope'" in unknown.details()
    assert old_version.code() == grpc.StatusCode.NOT_FOUND and "version '9'" in old_version.details()


def bad(tensors: list[dict], raw: list[bytes] | None = None, **fields) -> object:  # type: ignore[no-untyped-def]
    request = wire.ModelInferRequest(model_name=fields.pop("model_name", FAKE_NAME), **fields)
    for spec in tensors:
        contents = spec.pop("contents", None)
        tensor = request.inputs.add(**spec)
        if contents is not None:
            for name, values in contents.items():
                getattr(tensor.contents, name).extend(values)
    request.raw_input_contents.extend(raw or [])
    return request


BAD_REQUESTS = [
    # (request, the status code, what the message must name)
    (bad([{"name": "text", "datatype": "BYTES", "shape": [1]}], model_name="other"), "NOT_FOUND", "'other'"),
    (bad([]), "INVALID_ARGUMENT", "inputs must be a non-empty list"),
    (bad([{"name": "text", "datatype": "STRING", "shape": [1]}], [b"\x01\x00\x00\x00a"]), "INVALID_ARGUMENT",
     "inputs[0].datatype 'STRING'"),
    (bad([{"name": "text", "datatype": "FP32", "shape": [1], "contents": {"fp32_contents": [1.0]}}]),
     "INVALID_ARGUMENT", "'text' must be BYTES"),
    (bad([{"name": "text", "datatype": "BYTES", "shape": [1, 1]}], [b"\x01\x00\x00\x00a"]), "INVALID_ARGUMENT",
     "BYTES inputs must be 1-D"),
    (bad([{"name": "words", "datatype": "BYTES", "shape": [1]}], [b"\x01\x00\x00\x00a"]), "INVALID_ARGUMENT",
     "one BYTES input named 'text', got words"),
    (bad([{"name": "text", "datatype": "BYTES", "shape": [2]}], [b"\x01\x00\x00\x00a"]), "INVALID_ARGUMENT",
     "has 1 values but shape [2]"),
    (bad([{"name": "text", "datatype": "BYTES", "shape": [1]}], [b"\x09\x00\x00\x00a"]), "INVALID_ARGUMENT",
     "runs past the end"),
    (bad([{"name": "text", "datatype": "BYTES", "shape": [1], "contents": {"int64_contents": [3]}}]),
     "INVALID_ARGUMENT", "carries int64_contents"),
    (bad([{"name": "text", "datatype": "BYTES", "shape": [1], "contents": {"bytes_contents": [b"\xff\xfe"]}}]),
     "INVALID_ARGUMENT", "text[0] is not valid UTF-8"),
    (bad([{"name": "text", "datatype": "BYTES", "shape": [1]}, {"name": "x", "datatype": "BYTES", "shape": [1]}],
         [b"\x01\x00\x00\x00a"]), "INVALID_ARGUMENT", "raw_input_contents has 1 entries for 2 inputs"),
    (bad([{"name": "text", "datatype": "BYTES", "shape": [1], "contents": {"bytes_contents": [b"a"]}}],
         parameters={"top_k": wire.message("InferParameter")(int64_param=3)}), "INVALID_ARGUMENT",
     "parameter 'top_k' has no effect"),
]  # fmt: skip


@pytest.mark.parametrize(("request_message", "code", "named"), BAD_REQUESTS)
async def test_a_bad_request_gets_the_protocols_code_naming_the_field(
    serve, task: TextEmbeddingTask, request_message: object, code: str, named: str
) -> None:
    async with serve(fake_model(task=task), grpc_port=0) as served, GrpcClient(grpc_target(served)) as client:
        error = await status_of(client, "ModelInfer", request_message)
        rejected = await served.metric('inferopt_request_duration_seconds_count{route="' + INFER_ROUTE)
    assert error.code() == getattr(grpc.StatusCode, code)
    assert named in error.details()
    assert rejected == 1  # counted like any request, under the call's route


async def test_too_many_rows_or_bytes_is_resource_exhausted(serve, task: TextEmbeddingTask) -> None:
    config = {"grpc_port": 0, "max_items": 4, "max_request_bytes": 4096}
    async with serve(fake_model(task=task), **config) as served, GrpcClient(grpc_target(served)) as client:
        rows = await status_of(client, "ModelInfer", wire.infer_request_message(FAKE_NAME, {"text": ["a"] * 5}))
        big = wire.infer_request_message(FAKE_NAME, {"text": ["word " * 2000]})
        size = await status_of(client, "ModelInfer", big)
        # Past gRPC's own limit (the body limit plus room for the message around it) grpc itself refuses.
        huge = await status_of(client, "ModelInfer", wire.infer_request_message(FAKE_NAME, {"text": ["x" * 200_000]}))
    assert rows.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "at most 4" in rows.details()
    assert size.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "--max-request-bytes" in size.details()
    assert huge.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


async def test_a_passed_deadline_is_deadline_exceeded(serve, task: TextEmbeddingTask) -> None:
    model = fake_model(task=task, delay_s=0.5)
    async with serve(model, grpc_port=0, timeout_ms=100) as served, GrpcClient(grpc_target(served)) as client:
        server_side = await status_of(client, "ModelInfer", wire.infer_request_message(FAKE_NAME, {"text": ["slow"]}))
        deadlines = await served.metric('inferopt_rejected_total{reason="deadline"}')
    async with serve(model, grpc_port=0) as served, GrpcClient(grpc_target(served)) as client:
        request = wire.infer_request_message(FAKE_NAME, {"text": ["slower"]})
        client_side = await status_of(client, "ModelInfer", request, timeout_s=0.1)
        await asyncio.sleep(0.05)  # the server's handler sees the cancellation a moment later
        recorded = await served.metric(
            'inferopt_request_duration_seconds_count{route="' + INFER_ROUTE + '",status="504"}'
        )
    assert server_side.code() == grpc.StatusCode.DEADLINE_EXCEEDED and "deadline passed" in server_side.details()
    assert deadlines == 1
    assert client_side.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert recorded == 1  # the metrics say so too, whichever side noticed first


async def test_overload_is_resource_exhausted_with_retry_after(serve, task: TextEmbeddingTask) -> None:
    model = fake_model(task=task, delay_s=0.2, batch_size=1)
    async with serve(model, grpc_port=0, max_queue=2, cache="off") as served, GrpcClient(grpc_target(served)) as client:
        calls = [
            client._calls["ModelInfer"](wire.infer_request_message(FAKE_NAME, {"text": [f"text {i}"]}))
            for i in range(8)
        ]
        outcomes = await asyncio.gather(*calls, return_exceptions=True)
        refused = [o for o in outcomes if isinstance(o, grpc.aio.AioRpcError)]
        trailing = [dict(await call.trailing_metadata()) for call in calls if await call.code() != grpc.StatusCode.OK]
        full = await served.metric('inferopt_rejected_total{reason="queue_full"}')
    assert refused and len(refused) < len(outcomes)  # some were taken, the rest refused at once
    assert all(e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "queue is full" in e.details() for e in refused)
    assert len(trailing) == len(refused) and all(t.get("retry-after", "").isdigit() for t in trailing)
    assert full == len(refused)


async def test_while_loading_the_server_is_live_but_not_ready(serve, task: TextEmbeddingTask) -> None:
    loaded = threading.Event()

    def slow_load():  # type: ignore[no-untyped-def]
        loaded.wait(10)
        return fake_model(task=task)

    async with serve(slow_load, wait_ready=False, grpc_port=0) as served, GrpcClient(grpc_target(served)) as client:
        live = await client.call("ServerLive", wire.ServerLiveRequest())
        ready = await client.call("ServerReady", wire.ServerReadyRequest())
        model_ready = await client.call("ModelReady", wire.ModelReadyRequest(name=FAKE_NAME))
        infer = await status_of(client, "ModelInfer", wire.infer_request_message(FAKE_NAME, {"text": ["early"]}))
        loaded.set()
    assert live.live and not ready.ready and not model_ready.ready
    assert infer.code() == grpc.StatusCode.UNAVAILABLE and "not ready" in infer.details()


async def test_grpc_and_rest_share_the_cache_and_the_metrics(serve, task: TextEmbeddingTask) -> None:
    async with serve(fake_model(task=task), grpc_port=0) as served, GrpcClient(grpc_target(served)) as client:
        await served.client.post("/v1/embeddings", json={"input": "shared"})
        hits = 'inferopt_cache_requests_total{result="hit",tier="memory"}'
        before = await served.metric(hits)
        await client.infer(FAKE_NAME, {"text": ["shared"]})
        after = await served.metric(hits)
        ok = await served.metric('inferopt_request_duration_seconds_count{route="' + INFER_ROUTE + '",status="200"}')
    assert after - before == 1
    assert ok == 1


async def test_a_taken_grpc_port_fails_the_server_with_one_line(serve, task: TextEmbeddingTask) -> None:
    async with serve(fake_model(task=task), grpc_port=0) as first:
        taken = first.app.state.grpc.port
        async with serve(fake_model(task=task), grpc_port=taken, wait_ready=False) as second:
            assert second.state.phase == "failed"
            assert f"127.0.0.1:{taken}" in second.state.detail


def test_the_checked_in_descriptor_set_is_the_proto_compiled(tmp_path: Path) -> None:
    """oip_v2.binpb is what `make proto` builds from oip_v2.proto: an edit to one without the other fails here."""
    protoc = pytest.importorskip("grpc_tools.protoc")
    from google.protobuf import descriptor_pb2

    source = Path(wire.__file__).parents[1] / "protocols"
    out = tmp_path / "fresh.binpb"
    assert protoc.main(["protoc", f"-I{source}", f"--descriptor_set_out={out}", str(source / "oip_v2.proto")]) == 0
    fresh = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())
    shipped = descriptor_pb2.FileDescriptorSet.FromString((source / wire.DESCRIPTOR_SET).read_bytes())
    assert fresh == shipped
    (file,) = shipped.file
    assert file.package == "inference" and [m.name for m in file.service[0].method] == list(wire.CALLS)
