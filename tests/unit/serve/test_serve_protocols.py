"""KServe v1 and the Open Inference Protocol v2 for a text model, in process (ASGI): the same vectors as
/v1/embeddings, the protocols' metadata and health routes, model names and aliases, and each bad body's
4xx naming its field."""

from __future__ import annotations

import numpy as np
import pytest

from inferopt.serve.testing import FAKE_ARTIFACT_ID, FAKE_NAME, fake_embedding, fake_model
from inferopt.tasks.text_embedding import TextEmbeddingTask

pytestmark = pytest.mark.anyio
INFER = f"/v2/models/{FAKE_NAME}/infer"
PREDICT = f"/v1/models/{FAKE_NAME}:predict"


def texts_tensor(texts: list[str], name: str = "text") -> dict:
    return {"inputs": [{"name": name, "datatype": "BYTES", "shape": [len(texts)], "data": texts}]}


async def test_oip_v2_infer_returns_the_models_vectors_as_one_tensor(serve, task: TextEmbeddingTask) -> None:
    async with serve(fake_model(task=task)) as served:
        response = await served.client.post(INFER, json={"id": "r-1", **texts_tensor(["first text", "second"])})
    assert response.status_code == 200
    body = response.json()
    assert body["id"] == "r-1" and body["model_name"] == FAKE_NAME and body["model_version"] == FAKE_ARTIFACT_ID
    (output,) = body["outputs"]
    assert (output["name"], output["datatype"], output["shape"]) == ("embeddings", "FP32", [2, 384])
    vectors = np.asarray(output["data"], np.float32).reshape(2, 384)
    np.testing.assert_array_equal(vectors[0], fake_embedding(task, "first text"))
    np.testing.assert_array_equal(vectors[1], fake_embedding(task, "second"))
    assert "server-timing" in response.headers


async def test_kserve_v1_predict_returns_one_prediction_per_instance(serve, task: TextEmbeddingTask) -> None:
    async with serve(fake_model(task=task)) as served:
        response = await served.client.post(PREDICT, json={"instances": ["alpha", {"text": "beta"}]})
        status = await served.client.get(f"/v1/models/{FAKE_NAME}")
    assert response.status_code == 200
    alpha, beta = (np.asarray(p, np.float32) for p in response.json()["predictions"])
    np.testing.assert_array_equal(alpha, fake_embedding(task, "alpha"))
    np.testing.assert_array_equal(beta, fake_embedding(task, "beta"))
    assert status.json() == {"name": FAKE_NAME, "ready": True}


async def test_every_protocol_shares_one_cache(serve, task: TextEmbeddingTask) -> None:
    async with serve(fake_model(task=task)) as served:
        await served.client.post("/v1/embeddings", json={"input": "shared"})
        hits_before = await served.metric('inferopt_cache_requests_total{result="hit",tier="memory"}')
        await served.client.post(PREDICT, json={"instances": ["shared"]})
        await served.client.post(INFER, json=texts_tensor(["shared"]))
        hits_after = await served.metric('inferopt_cache_requests_total{result="hit",tier="memory"}')
    assert hits_after - hits_before == 2


async def test_metadata_health_and_readiness(serve, task: TextEmbeddingTask) -> None:
    async with serve(fake_model(task=task)) as served:
        metadata = (await served.client.get(f"/v2/models/{FAKE_NAME}")).json()
        live = await served.client.get("/v2/health/live")
        ready = await served.client.get("/v2/health/ready")
        model_ready = await served.client.get(f"/v2/models/{FAKE_NAME}/ready")
        server = (await served.client.get("/v2")).json()
    assert metadata["inputs"] == [{"name": "text", "datatype": "BYTES", "shape": [-1]}]
    assert metadata["outputs"] == [{"name": "embeddings", "datatype": "FP32", "shape": [-1, 384]}]
    assert metadata["versions"] == [FAKE_ARTIFACT_ID] and metadata["name"] == FAKE_NAME
    assert live.status_code == ready.status_code == model_ready.status_code == 200
    assert ready.json() == {"ready": True} and server["name"] == "inferopt"


async def test_v2_readiness_is_503_while_loading(serve, task: TextEmbeddingTask) -> None:
    import threading

    release = threading.Event()

    def slow() -> object:
        release.wait(10)
        return fake_model(task=task)

    async with serve(slow, wait_ready=False) as served:
        live = await served.client.get("/v2/health/live")
        ready = await served.client.get("/v2/health/ready")
        release.set()
    assert live.status_code == 200 and ready.status_code == 503 and ready.json() == {"ready": False}


async def test_unknown_model_names_are_404_and_aliases_answer(serve, task: TextEmbeddingTask) -> None:
    model = fake_model(task=task, aliases=("text-embedding-3-small",))
    async with serve(model) as served:
        unknown = await served.client.post("/v2/models/gpt-4/infer", json=texts_tensor(["x"]))
        unknown_v1 = await served.client.post("/v1/models/gpt-4:predict", json={"instances": ["x"]})
        unknown_meta = await served.client.get("/v2/models/gpt-4")
        by_alias = await served.client.post("/v2/models/text-embedding-3-small/infer", json=texts_tensor(["x"]))
        by_id = await served.client.post(f"/v1/models/{FAKE_ARTIFACT_ID}:predict", json={"instances": ["x"]})
        listed = (await served.client.get("/v1/models")).json()
    assert unknown.status_code == unknown_v1.status_code == unknown_meta.status_code == 404
    assert unknown.json() == {"error": "model 'gpt-4' is not served here; this server serves 'text-embedding-3-small'"}
    assert by_alias.status_code == 200 and by_alias.json()["model_name"] == "text-embedding-3-small"
    assert by_id.status_code == 200
    assert [card["id"] for card in listed["data"]] == [FAKE_NAME, "text-embedding-3-small"]


async def test_openai_embeddings_answer_any_model_name_and_echo_it(serve, task: TextEmbeddingTask) -> None:
    async with serve(fake_model(task=task)) as served:
        named = await served.client.post("/v1/embeddings", json={"input": "x", "model": "text-embedding-3-small"})
        unnamed = await served.client.post("/v1/embeddings", json={"input": "x"})
    assert named.status_code == unnamed.status_code == 200
    assert named.json()["model"] == "text-embedding-3-small" and unnamed.json()["model"] == FAKE_NAME


BAD_V2 = [
    ("not json", b"{", 400, "not valid JSON", None),
    ("no inputs", b"{}", 422, "must be a non-empty list", "inputs"),
    ("input not an object", b'{"inputs": [3]}', 422, "must be an object", "inputs[0]"),
    (
        "numbers for text",
        b'{"inputs": [{"name": "text", "datatype": "FP32", "shape": [1], "data": [1.0]}]}',
        422,
        "must be BYTES",
        "text",
    ),
    (
        "wrong name",
        b'{"inputs": [{"name": "txt", "datatype": "BYTES", "shape": [1], "data": ["a"]}]}',
        422,
        "named 'text', got txt",
        "txt",
    ),
    (
        "count vs shape",
        b'{"inputs": [{"name": "text", "datatype": "BYTES", "shape": [2], "data": ["a"]}]}',
        422,
        "has 1 values but shape [2] holds 2",
        "inputs[0].data",
    ),
    (
        "bad datatype",
        b'{"inputs": [{"name": "text", "datatype": "STRING", "shape": [1], "data": ["a"]}]}',
        422,
        "datatype 'STRING' is not one of",
        "inputs[0].datatype",
    ),
    (
        "bad shape",
        b'{"inputs": [{"name": "text", "datatype": "BYTES", "shape": [-1], "data": ["a"]}]}',
        422,
        "shape must be a list of 1 to 16 sizes",
        "inputs[0].shape",
    ),
    (
        "empty text",
        b'{"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": [" "]}]}',
        422,
        "empty",
        "text[0]",
    ),
    (
        "twice",
        b'{"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["a"]},'
        b'{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["b"]}]}',
        422,
        "given twice",
        "inputs[1].name",
    ),
    (
        "unknown output",
        b'{"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["a"]}],'
        b' "outputs": [{"name": "logits"}]}',
        422,
        "output 'logits' is not an output",
        "logits",
    ),
]


@pytest.mark.parametrize(("name", "body", "status", "words", "field"), BAD_V2, ids=[c[0] for c in BAD_V2])
async def test_bad_v2_bodies_get_a_4xx_naming_the_field(
    serve, task: TextEmbeddingTask, name: str, body: bytes, status: int, words: str, field: str | None
) -> None:
    async with serve(fake_model(task=task)) as served:
        response = await served.client.post(INFER, content=body, headers={"content-type": "application/json"})
    assert response.status_code == status
    message = response.json()["error"]
    assert words in message, message
    if field is not None:
        assert field.split(".")[0] in message  # the message says where


BAD_V2_NUMERIC = [
    ("nested deeper than any model", b"[" * 995 + b"1.0" + b"]" * 995, [1], "not a rectangular nested list"),
    ("ragged nesting", b"[[1.0], [2.0, 3.0]]", [1, 3], "not a rectangular nested list"),
    ("nested against the shape", b"[[1.0, 2.0], [3.0, 4.0]]", [4, 1], "does not match shape [4, 1]"),
    ("more dimensions than allowed", b"[1.0]", [1] * 17, "list of 1 to 16 sizes"),
]


@pytest.mark.parametrize(("case", "data", "shape", "words"), BAD_V2_NUMERIC, ids=[c[0] for c in BAD_V2_NUMERIC])
async def test_numeric_tensors_that_cannot_be_read_are_422_not_500(
    serve, task: TextEmbeddingTask, case: str, data: bytes, shape: list[int], words: str
) -> None:
    body = b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": %s, "data": %s}]}' % (
        str(shape).encode(),
        data,
    )
    async with serve(fake_model(task=task)) as served:
        response = await served.client.post(INFER, content=body, headers={"content-type": "application/json"})
    assert response.status_code == 422 and words in response.json()["error"], response.text


BAD_V1 = [
    ("no instances", {"inputs": ["a"]}, 422, "columnar 'inputs' form is not supported"),
    ("empty instances", {"instances": []}, 422, "instances is an empty list"),
    ("not a list", {"instances": "a"}, 422, "instances must be a list"),
    ("wrong task's instance", {"instances": ["ok", {"features": [1.0, 2.0]}]}, 422, "instances[1] must be a string"),
    ("empty text", {"instances": ["ok", ""]}, 422, "instances[1] is empty"),
    ("too many", {"instances": ["a"] * 5}, 413, "at most 4"),
]


@pytest.mark.parametrize(("name", "body", "status", "words"), BAD_V1, ids=[c[0] for c in BAD_V1])
async def test_bad_v1_bodies_get_a_4xx_naming_the_field(
    serve, task: TextEmbeddingTask, name: str, body: dict, status: int, words: str
) -> None:
    async with serve(fake_model(task=task), max_items=4) as served:
        response = await served.client.post(PREDICT, json=body)
    assert response.status_code == status
    assert words in response.json()["error"], response.json()


async def test_binary_tensor_extension_is_refused_clearly(serve, task: TextEmbeddingTask) -> None:
    async with serve(fake_model(task=task)) as served:
        response = await served.client.post(
            INFER, content=b"{}", headers={"inference-header-content-length": "2", "content-type": "application/json"}
        )
    assert response.status_code == 400 and "binary tensor data extension is not supported" in response.json()["error"]


async def test_inference_routes_are_labelled_by_their_template(serve, task: TextEmbeddingTask) -> None:
    async with serve(fake_model(task=task)) as served:
        await served.client.post(INFER, json=texts_tensor(["x"]))
        await served.client.post(PREDICT, json={"instances": ["x"]})
        nested = await served.client.post("/v2/models/a/b/infer", json=texts_tensor(["x"]))
        text = (await served.client.get("/metrics")).text
    assert 'route="/v2/models/{name}/infer",status="200"' in text  # a template: one series per route, not per name
    assert 'route="/v1/models/{name}:predict",status="200"' in text
    assert nested.status_code == 404  # a name has no slash: such a path is no inference route
