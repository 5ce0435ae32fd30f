"""`inferopt export triton` on artifacts built by optimize (a bring-your-own two-headed model, a tiny BERT): the
configs parse with Triton's own ModelConfig protobuf and carry the manifest's numbers, model.onnx loads with the
names and types the config says, and the README's client, run against a stand-in for Triton that checks every
request against config.pbtxt, gets the same results as inferopt's own Predictor. OUT is never half-written and
--force never touches what the export did not write."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from rich.console import Console
from tests.tiny_model import build_tiny_bert
from tests.triton_config import datatype_name, model_config_pb2, read_config

import inferopt
from inferopt.artifact import MANIFEST, load_artifact, write_artifact
from inferopt.config import OptimizeConfig
from inferopt.deploy import triton_readme
from inferopt.deploy.triton import MARKER, TritonOptions, export_triton
from inferopt.errors import ArtifactError, InputError
from inferopt.optimize import run_optimize
from inferopt.recipes.graph import GraphConfig
from inferopt.tasks.base import ModelOptions

ORT_TYPES = {"TYPE_FP32": "tensor(float)", "TYPE_INT64": "tensor(int64)", "TYPE_INT32": "tensor(int32)"}
NUMPY_TYPES = {"FP32": np.float32, "INT64": np.int64, "INT32": np.int32}


def optimized(out: Path, model: str, options: ModelOptions, data: Path | None = None) -> Path:
    config = OptimizeConfig(
        model=model, model_options=options, data=data, out=out, quick=True, recipes=(GraphConfig(),)
    )
    outcome = run_optimize(config, Console(quiet=True))
    assert outcome.artifact_dir is not None
    return outcome.artifact_dir


@pytest.fixture(scope="module")
def tensor_artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    model_config_pb2()  # skips the module at once when tritonclient is missing
    options = ModelOptions(example="tests.byo_models:two_headed_examples")
    return optimized(tmp_path_factory.mktemp("triton-byo") / "out", "tests.byo_models:two_headed", options)


@pytest.fixture(scope="module")
def text_artifact(tmp_path_factory: pytest.TempPathFactory, minilm_tokenizer_file: Path) -> Path:
    model_config_pb2()
    tiny = build_tiny_bert(tmp_path_factory.mktemp("triton-tiny"), minilm_tokenizer_file)
    texts = tmp_path_factory.mktemp("triton-data") / "texts.txt"
    texts.write_text("\n".join(f"sentence {i} about " + "things " * (i % 9) for i in range(40)), encoding="utf-8")
    return optimized(tmp_path_factory.mktemp("triton-text") / "out", str(tiny), ModelOptions(), texts)


# -- a stand-in for Triton: the part of tritonclient.http the README's client uses -----------------------------


class FakeInput:
    def __init__(self, name: str, shape: list[int], datatype: str) -> None:
        self.name, self.shape, self.datatype = name, shape, datatype

    def set_data_from_numpy(self, array: np.ndarray) -> None:
        assert list(array.shape) == self.shape and array.dtype == NUMPY_TYPES[self.datatype], (self.name, array.dtype)
        self.array = array


class FakeReply:
    def __init__(self, outputs: dict[str, np.ndarray]) -> None:
        self.outputs = outputs

    def as_numpy(self, name: str) -> np.ndarray:
        return self.outputs[name]


class FakeTriton:
    """Answers from ONNX Runtime on the exported graphs, after checking each request against the model's
    config.pbtxt as Triton does: every input named, its datatype, its dims beyond the batch axis, at most
    max_batch_size rows; `reshape` applied on the way in and out."""

    def __init__(self, repository: Path) -> None:
        self.repository = repository
        self.models: list[str] = []

    def module(self) -> ModuleType:
        http = ModuleType("tritonclient.http")
        http.InferInput = FakeInput  # type: ignore[attr-defined]
        http.InferenceServerClient = lambda url: self  # type: ignore[attr-defined]
        return http

    def infer(self, model_name: str, inputs: list[FakeInput]) -> FakeReply:
        import onnxruntime as ort

        self.models.append(model_name)
        config = read_config(self.repository / model_name)
        given = {t.name: t for t in inputs}
        assert set(given) == {spec.name for spec in config.input}
        feed = {}
        for spec in config.input:
            tensor = given[spec.name]
            assert f"TYPE_{tensor.datatype}" == datatype_name(spec.data_type)
            rows, *dims = tensor.array.shape
            assert 1 <= rows <= config.max_batch_size and fits(dims, list(spec.dims)), (spec.name, tensor.shape)
            reshape = [rows, *spec.reshape.shape] if spec.HasField("reshape") else tensor.array.shape
            feed[spec.name] = tensor.array.reshape(reshape)
        graph = str(self.repository / model_name / "1" / "model.onnx")
        session = ort.InferenceSession(graph, providers=["CPUExecutionProvider"])
        values = dict(zip([o.name for o in session.get_outputs()], session.run(None, feed), strict=True))
        outputs = {}
        for spec in config.output:
            value = values[spec.name]
            value = value.reshape(value.shape[0], *spec.dims) if spec.HasField("reshape") else value
            assert fits(list(value.shape[1:]), list(spec.dims)), (spec.name, value.shape)
            outputs[spec.name] = value
        return FakeReply(outputs)


def fits(shape: list[int], dims: list[int]) -> bool:
    return len(shape) == len(dims) and all(d in (-1, s) for s, d in zip(shape, dims, strict=True))


def readme_client(model_dir: Path, triton: FakeTriton, monkeypatch: pytest.MonkeyPatch) -> Callable[[list], list]:
    """The README's Python client, as written, with `tritonclient.http` answered by `triton`."""
    code = (model_dir / "README.md").read_text(encoding="utf-8").split("```python\n", 1)[1].split("```", 1)[0]
    package, http = ModuleType("tritonclient"), triton.module()
    package.http = http  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "tritonclient", package)
    monkeypatch.setitem(sys.modules, "tritonclient.http", http)
    namespace: dict[str, Any] = {}
    exec(compile(code, str(model_dir / "README.md"), "exec"), namespace)
    return namespace["predict"]  # type: ignore[no-any-return]


def rows(n: int) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(3)
    features = rng.standard_normal((n, 16)).astype(np.float32)
    ids = rng.integers(0, 50, (n, 3)).astype(np.int64)
    return [{"features": features[i], "ids": ids[i]} for i in range(n)]


# -- the tests -------------------------------------------------------------------------------------------------


def test_a_tensor_artifact_becomes_a_model_triton_parses_with_the_benchmarked_numbers(
    tensor_artifact: Path, tmp_path: Path
) -> None:
    artifact = load_artifact(tensor_artifact)
    settings = artifact.manifest["runtime"]["settings"]
    (model,) = export_triton(tensor_artifact, tmp_path / "repo")
    home = tmp_path / "repo" / "twoheaded"
    assert model.name == "twoheaded" and (home / "1" / "model.onnx").read_bytes() == artifact.model_file.read_bytes()
    config = read_config(home)
    assert (config.name, config.platform, config.max_batch_size) == (
        "twoheaded",
        "onnxruntime_onnx",
        settings["batch_size"],
    )
    inputs = [(t.name, datatype_name(t.data_type), list(t.dims)) for t in config.input]
    assert inputs == [("features", "TYPE_FP32", [16]), ("ids", "TYPE_INT64", [3])]
    outputs = [(t.name, datatype_name(t.data_type), list(t.dims), t.HasField("reshape")) for t in config.output]
    assert outputs == [("output_0", "TYPE_FP32", [4], False), ("output_1", "TYPE_FP32", [1], True)]
    assert list(config.dynamic_batching.preferred_batch_size) == [settings["batch_size"]]
    assert config.dynamic_batching.max_queue_delay_microseconds == 5000
    assert [(g.count, model_config_pb2().ModelInstanceGroup.Kind.Name(g.kind)) for g in config.instance_group] == [
        (settings["sessions"], "KIND_CPU")
    ]
    assert config.parameters["intra_op_thread_count"].string_value == str(settings["intra_op_threads"])
    assert (home / "assets" / "examples.npz").read_bytes() == (tensor_artifact / "examples.npz").read_bytes()
    assert json.loads((home / "assets" / "task.json").read_text()) == artifact.manifest["task"]
    marker = json.loads((tmp_path / "repo" / MARKER).read_text())["models"]
    assert (
        list(marker) == ["twoheaded"] and "1/model.onnx" in marker["twoheaded"] and "README.md" in marker["twoheaded"]
    )


def test_the_graph_loads_with_the_names_and_types_the_config_says(tensor_artifact: Path, tmp_path: Path) -> None:
    import onnxruntime as ort

    export_triton(tensor_artifact, tmp_path / "repo")
    config = read_config(tmp_path / "repo" / "twoheaded")
    session = ort.InferenceSession(str(tmp_path / "repo" / "twoheaded" / "1" / "model.onnx"))
    for specs, tensors in ((config.input, session.get_inputs()), (config.output, session.get_outputs())):
        assert [t.name for t in tensors] == [s.name for s in specs]
        assert [t.type for t in tensors] == [ORT_TYPES[datatype_name(s.data_type)] for s in specs]
        # The graph's rank: the batch axis and the dims, or the batch axis alone where the config reshapes.
        assert [len(t.shape) for t in tensors] == [1 if s.HasField("reshape") else 1 + len(s.dims) for s in specs]


def test_the_readme_client_gets_the_predictors_results_through_triton(
    tensor_artifact: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    export_triton(tensor_artifact, tmp_path / "repo")
    home = tmp_path / "repo" / "twoheaded"
    readme = (home / "README.md").read_text()
    assert "inferopt serve's Open Inference Protocol v2 route takes these same tensors" in readme
    assert f"-v {tmp_path / 'repo'}:/models" in readme and "--model-repository=/models" in readme
    assert "| `output_1` | FP32 | [rows, 1] |" in readme
    triton = FakeTriton(tmp_path / "repo")
    raws = rows(5)
    got = readme_client(home, triton, monkeypatch)([{k: v.tolist() for k, v in raw.items()} for raw in raws])
    with inferopt.Predictor.from_artifact(tensor_artifact) as predictor:
        expected = predictor.predict(raws)
    assert triton.models == ["twoheaded"] * 5 and len(got) == 5
    for mine, theirs in zip(got, expected, strict=True):
        assert mine.keys() == theirs.keys()
        for name in mine:
            np.testing.assert_allclose(mine[name], theirs[name], rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_a_text_artifact_tells_the_client_to_tokenize_and_its_client_embeds_as_inferopt_does(
    text_artifact: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    export_triton(text_artifact, tmp_path / "repo", TritonOptions(name="tiny"))
    home = tmp_path / "repo" / "tiny"
    config = read_config(home)
    assert [(t.name, datatype_name(t.data_type), list(t.dims)) for t in config.input] == [
        (name, "TYPE_INT64", [-1]) for name in ("input_ids", "attention_mask", "token_type_ids")
    ]
    assert (home / "assets" / "tokenizer.json").read_bytes() == (text_artifact / "tokenizer.json").read_bytes()
    readme = (home / "README.md").read_text()
    assert "inferopt serve takes `text` (BYTES [-1])" in readme and "**the client does that step**" in readme
    assert '"max_length": 64' in readme and "`assets/tokenizer.json`" in readme
    triton = FakeTriton(tmp_path / "repo")
    texts = ["a short one", "a somewhat longer sentence about many different things"]
    got = np.stack(readme_client(home, triton, monkeypatch)(texts))
    with inferopt.Embedder.from_artifact(text_artifact) as embedder:
        np.testing.assert_allclose(got, embedder.embed(texts), atol=1e-5)
        # The worked request is the tokenization of the text it names: Triton's answer is that text's embedding.
        text = json.loads(re.search(r"The task turns the text (\".*?\") into", readme).group(1))  # type: ignore[union-attr]
        body = json.loads(readme.split("-d @- <<'EOF'\n", 1)[1].split("\nEOF", 1)[0])
        inputs = []
        for tensor in body["inputs"]:
            fake = FakeInput(tensor["name"], tensor["shape"], tensor["datatype"])
            fake.set_data_from_numpy(np.array(tensor["data"], dtype=np.int64).reshape(tensor["shape"]))
            inputs.append(fake)
        embedding = triton.infer("tiny", inputs).as_numpy("embeddings")
        np.testing.assert_allclose(embedding, embedder.embed([text]), atol=1e-5)


@pytest.mark.slow
def test_the_risk_scorers_complex_path_is_a_model_and_the_readme_client_routes_to_it(
    risk_artifact: Path, german_credit: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import onnxruntime as ort

    artifact = load_artifact(risk_artifact)
    default, complex_ = export_triton(risk_artifact, tmp_path / "repo")
    assert complex_.name == f"{default.name}_complex" and complex_.path == "complex"
    for model, settings in (
        (default, artifact.manifest["runtime"]["settings"]),
        (complex_, artifact.manifest["runtime"]["paths"]["complex"]["settings"]),
    ):
        config = read_config(tmp_path / "repo" / model.name)
        assert (config.max_batch_size, config.instance_group[0].count) == (settings["batch_size"], settings["sessions"])
        (score,) = config.output
        assert (score.name, list(score.dims), score.HasField("reshape")) == ("score", [1], True)
    readme = (tmp_path / "repo" / default.name / "README.md").read_text()
    assert "may name an entity whose features inferopt serve reads from a database first" in readme
    assert (
        "`assets/encoders.json`" in readme and (tmp_path / "repo" / default.name / "assets" / "features.json").exists()
    )

    instances = [{"features": r} for r in german_credit.records[:4]]
    instances.append({"features": german_credit.records[0], "complex": True})
    triton = FakeTriton(tmp_path / "repo")
    got = readme_client(tmp_path / "repo" / default.name, triton, monkeypatch)(instances)
    task = load_task(artifact)
    items = task.preprocess([task.instance(v, "instance") for v in instances])
    assert triton.models == [default.name if i.path == "default" else complex_.name for i in items]
    assert triton.models[-1] == complex_.name
    for item, result in zip(items, got, strict=True):
        graph = risk_artifact / ("model.onnx" if item.path == "default" else "paths/complex.onnx")
        session = ort.InferenceSession(str(graph), providers=["CPUExecutionProvider"])
        outputs = dict(zip(["score"], session.run(["score"], task.collate([item])), strict=True))
        assert result == task.postprocess(task.split(outputs, [item])[0], item)


def load_task(artifact: Any) -> Any:
    from inferopt.tasks.registry import for_artifact

    return for_artifact(artifact.manifest, artifact.path)


def with_a_complex_path(artifact_dir: Path, out: Path) -> Path:
    """The artifact again with a second model path (as the risk scorer's `complex`), its own settings."""
    manifest = json.loads((artifact_dir / MANIFEST).read_text())
    files = {name: artifact_dir / name for name in manifest.pop("files")}
    files["paths/complex.onnx"] = artifact_dir / "model.onnx"
    settings = {"sessions": 1, "intra_op_threads": 2, "batch_size": 8}
    manifest["runtime"]["paths"] = {
        "complex": {"model_file": "paths/complex.onnx", "variant": "onnx-fp32", "settings": settings}
    }
    del manifest["schema_version"]
    write_artifact(out, manifest, files)
    return out


def test_each_model_path_is_exported_as_a_model_of_its_own(tensor_artifact: Path, tmp_path: Path) -> None:
    artifact = with_a_complex_path(tensor_artifact, tmp_path / "two-paths")
    models = export_triton(artifact, tmp_path / "repo")
    assert [(m.name, m.path) for m in models] == [("twoheaded", "default"), ("twoheaded_complex", "complex")]
    config = read_config(tmp_path / "repo" / "twoheaded_complex")
    assert (config.name, config.max_batch_size, config.instance_group[0].count) == ("twoheaded_complex", 8, 1)
    assert config.parameters["intra_op_thread_count"].string_value == "2"
    assert (tmp_path / "repo" / "twoheaded_complex" / "1" / "model.onnx").exists()
    readme = (tmp_path / "repo" / "twoheaded" / "README.md").read_text()
    assert 'MODELS = {"default": "twoheaded", "complex": "twoheaded_complex"}' in readme
    assert list(json.loads((tmp_path / "repo" / MARKER).read_text())["models"]) == ["twoheaded", "twoheaded_complex"]


def test_an_existing_out_needs_force_and_force_never_touches_what_the_export_did_not_write(
    tensor_artifact: Path, tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    (repo / "other_model" / "1").mkdir(parents=True)
    (repo / "other_model" / "config.pbtxt").write_text('platform: "onnxruntime_onnx"\n')
    (repo / "notes.txt").write_text("mine\n")
    before = sorted(str(p.relative_to(repo)) for p in repo.rglob("*"))
    with pytest.raises(InputError, match=r"already exists\. pass --force"):
        export_triton(tensor_artifact, repo)
    assert sorted(str(p.relative_to(repo)) for p in repo.rglob("*")) == before

    export_triton(tensor_artifact, repo, force=True)
    export_triton(tensor_artifact, repo, TritonOptions(max_batch_size=4), force=True)  # replaces its own model
    assert read_config(repo / "twoheaded").max_batch_size == 4
    assert (repo / "notes.txt").read_text() == "mine\n"
    assert (repo / "other_model" / "config.pbtxt").read_text() == 'platform: "onnxruntime_onnx"\n'
    assert list(json.loads((repo / MARKER).read_text())["models"]) == ["twoheaded"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no staging folder left

    (repo / "twoheaded" / "configs").mkdir()  # someone's own file inside our model folder
    (repo / "twoheaded" / "configs" / "h100.pbtxt").write_text("max_batch_size: 8\n")
    with pytest.raises(InputError, match=r"configs/h100\.pbtxt was not written by inferopt export triton"):
        export_triton(tensor_artifact, repo, force=True)
    assert (repo / "twoheaded" / "configs" / "h100.pbtxt").read_text() == "max_batch_size: 8\n"
    assert read_config(repo / "twoheaded").max_batch_size == 4

    foreign = tmp_path / "theirs"
    (foreign / "twoheaded").mkdir(parents=True)
    (foreign / "twoheaded" / "keep.txt").write_text("theirs\n")
    with pytest.raises(InputError, match="twoheaded exists and was not written by inferopt export triton"):
        export_triton(tensor_artifact, foreign, force=True)
    assert [p.name for p in (foreign / "twoheaded").iterdir()] == ["keep.txt"]


def test_a_failed_export_leaves_the_previous_one_and_nothing_half_written(
    tensor_artifact: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = tmp_path / "repo"
    export_triton(tensor_artifact, repo)
    config = (repo / "twoheaded" / "config.pbtxt").read_text()

    def broken(*args: object) -> str:
        raise RuntimeError("disk full")

    monkeypatch.setattr(triton_readme, "client_readme", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        export_triton(tensor_artifact, repo, TritonOptions(max_batch_size=4), force=True)
    with pytest.raises(RuntimeError, match="disk full"):
        export_triton(tensor_artifact, tmp_path / "fresh")
    assert (repo / "twoheaded" / "config.pbtxt").read_text() == config
    assert sorted(p.name for p in tmp_path.iterdir()) == ["repo"]


def test_what_is_not_an_artifact_or_lies_inside_it_is_refused_with_a_clear_message(
    tensor_artifact: Path, tmp_path: Path
) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ArtifactError, match=r"has no manifest\.json, so it is not an inferopt artifact"):
        export_triton(tmp_path / "empty", tmp_path / "repo")
    with pytest.raises(InputError, match="is inside the artifact"):
        export_triton(tensor_artifact, tensor_artifact / "triton")
    assert not (tmp_path / "repo").exists() and not (tensor_artifact / "triton").exists()


def test_the_cli_exports_and_refuses_with_one_line(tensor_artifact: Path, tmp_path: Path) -> None:
    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "inferopt", "export", "triton", *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=120)

    done = cli(str(tensor_artifact), str(tmp_path / "repo"), "--name", "byo", "--max-wait-ms", "2")
    assert done.returncode == 0, done.stderr
    assert "Triton models byo written to" in done.stdout and "README.md" in done.stdout
    assert read_config(tmp_path / "repo" / "byo").dynamic_batching.max_queue_delay_microseconds == 2000
    again = cli(str(tensor_artifact), str(tmp_path / "repo"))
    assert again.returncode == 2 and "already exists" in again.stderr and "pass --force" in again.stderr
    (tmp_path / "empty").mkdir()
    refused = cli(str(tmp_path / "empty"), str(tmp_path / "other"))
    assert refused.returncode == 2 and "is not an inferopt artifact" in refused.stderr
    assert "Traceback" not in again.stderr + refused.stderr and len(refused.stderr.strip().splitlines()) == 1
