"""The Triton config of `inferopt export triton`, from manifests made here: every config parses with Triton's own
ModelConfig protobuf and carries the manifest's numbers; odd io schemas (no batch axis, one value per row,
BYTES, names that need escaping) are written the way Triton wants them. Real artifacts: tests/integration."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from tests.triton_config import datatype_name, model_config_pb2, parse_config

from inferopt.artifact import Artifact
from inferopt.deploy.triton import (
    TritonOptions,
    batches_on_axis_0,
    model_config,
    plan_models,
    triton_datatype,
    triton_name,
)
from inferopt.errors import ArtifactError, InputError
from inferopt.runtime.placement import Placement
from inferopt.tasks.base import IOSchema, TensorSpec

TWO_INPUTS = IOSchema(
    (TensorSpec("features", "float32", ("batch", 16)), TensorSpec("ids", "int64", ("batch", "words"))),
    (TensorSpec("logits", "float32", ("batch", 4)), TensorSpec("score", "float32", ("batch",))),
)


def artifact_of(
    io: IOSchema = TWO_INPUTS,
    *,
    settings: dict[str, int] | None = None,
    paths: dict[str, Any] | None = None,
    model_name: str = "acme/Risk Model v2",
    placement: Placement | None = None,
) -> Artifact:
    manifest = {
        "schema_version": 2,
        "task": {"name": "tensor", "version": 1, "config": {}, "assets": []},
        "model_name": model_name,
        "recipe": {"name": "int8-dynamic"},
        "runtime": {
            "model_file": "model.onnx",
            "providers": ["CPUExecutionProvider"],
            "session_options": {"execution_mode": "sequential", "inter_op_threads": 1},
            "settings": settings or {"sessions": 3, "intra_op_threads": 2, "batch_size": 16},
            "paths": paths or {},
        },
        "io": io.to_dict(),
        "files": {"model.onnx": "0" * 64},
    }
    if placement is not None:
        manifest["runtime"] |= {"placement": placement.to_dict(), "providers": list(placement.providers)}
    return Artifact(Path("/artifact"), manifest)


def config_of(artifact: Artifact, options: TritonOptions | None = None, index: int = 0) -> Any:
    model = plan_models(artifact, options or TritonOptions())[index]
    return parse_config(model_config(model, artifact))


def test_the_config_parses_with_tritons_proto_and_carries_the_benchmarked_settings() -> None:
    config = config_of(artifact_of())
    assert (config.name, config.platform, config.max_batch_size) == ("Risk_Model_v2", "onnxruntime_onnx", 16)
    inputs = [(t.name, datatype_name(t.data_type), list(t.dims)) for t in config.input]
    assert inputs == [("features", "TYPE_FP32", [16]), ("ids", "TYPE_INT64", [-1])]
    logits, score = config.output
    assert (logits.name, list(logits.dims), logits.HasField("reshape")) == ("logits", [4], False)
    # One value per row: [rows, 1] to the client (dims may not be empty), [rows] to the graph.
    assert (score.name, list(score.dims), score.HasField("reshape"), list(score.reshape.shape)) == (
        "score",
        [1],
        True,
        [],
    )
    assert list(config.dynamic_batching.preferred_batch_size) == [16]
    assert config.dynamic_batching.max_queue_delay_microseconds == 5000  # serve's --max-wait-ms default, 5 ms
    (group,) = config.instance_group
    assert (group.count, model_config_pb2().ModelInstanceGroup.Kind.Name(group.kind)) == (3, "KIND_CPU")
    parameters = {key: value.string_value for key, value in config.parameters.items()}
    assert parameters == {"intra_op_thread_count": "2", "inter_op_thread_count": "1", "execution_mode": "0"}


@pytest.mark.parametrize(
    ("placement", "accelerator"),
    [(Placement.cuda(1), None), (Placement.tensorrt(1, precision="fp16"), "FP16")],
    ids=["cuda", "tensorrt"],
)
def test_a_gpu_measured_artifact_gets_gpu_instances_where_it_was_measured(
    placement: Placement, accelerator: str | None
) -> None:
    config = config_of(artifact_of(placement=placement))
    (group,) = config.instance_group
    kind = model_config_pb2().ModelInstanceGroup.Kind.Name(group.kind)
    assert (group.count, kind, list(group.gpus)) == (3, "KIND_GPU", [1])
    accelerators = config.optimization.execution_accelerators.gpu_execution_accelerator
    if accelerator is None:
        assert len(accelerators) == 0
    else:
        (trt,) = accelerators
        assert (trt.name, dict(trt.parameters)) == ("tensorrt", {"precision_mode": accelerator})


def test_options_override_the_batch_size_and_delay_and_the_preferred_size_stays_the_benchmarked_one() -> None:
    config = config_of(artifact_of(), TritonOptions(name="risk", max_batch_size=64, max_wait_ms=0.5))
    assert (config.name, config.max_batch_size) == ("risk", 64)
    assert list(config.dynamic_batching.preferred_batch_size) == [16]
    assert config.dynamic_batching.max_queue_delay_microseconds == 500
    smaller = config_of(artifact_of(), TritonOptions(max_batch_size=4))
    assert (smaller.max_batch_size, list(smaller.dynamic_batching.preferred_batch_size)) == (4, [4])


def test_each_model_path_is_a_model_of_its_own_with_its_own_settings() -> None:
    paths = {
        "complex": {
            "model_file": "paths/complex.onnx",
            "variant": "onnx-fp32",
            "settings": {"sessions": 1, "intra_op_threads": 1, "batch_size": 8},
        }
    }
    artifact = artifact_of(paths=paths)
    models = plan_models(artifact, TritonOptions())
    assert [(m.name, m.path, m.variant, m.graph) for m in models] == [
        ("Risk_Model_v2", "default", "int8-dynamic", Path("/artifact/model.onnx")),
        ("Risk_Model_v2_complex", "complex", "onnx-fp32", Path("/artifact/paths/complex.onnx")),
    ]
    config = config_of(artifact, index=1)
    assert (config.name, config.max_batch_size, config.instance_group[0].count) == ("Risk_Model_v2_complex", 8, 1)
    assert config.parameters["intra_op_thread_count"].string_value == "1"


def test_a_model_without_a_dynamic_batch_axis_is_not_batched_and_keeps_its_full_shape() -> None:
    io = IOSchema((TensorSpec("image", "float32", (1, 3, 8, 8)),), (TensorSpec("label", "int64", ()),))
    assert not batches_on_axis_0(io)
    config = config_of(artifact_of(io))
    assert config.max_batch_size == 0 and not config.HasField("dynamic_batching")
    assert list(config.input[0].dims) == [1, 3, 8, 8]
    assert (list(config.output[0].dims), config.output[0].HasField("reshape")) == ([1], True)


@pytest.mark.parametrize(
    ("dtype", "expected"),
    [("bool", "TYPE_BOOL"), ("float16", "TYPE_FP16"), ("uint8", "TYPE_UINT8"), ("str", "TYPE_STRING")],
)
def test_datatypes_follow_the_schema(dtype: str, expected: str) -> None:
    assert triton_datatype(dtype) == expected
    io = IOSchema((TensorSpec("x", dtype, ("batch", 2)),), (TensorSpec("y", "float32", ("batch",)),))
    assert datatype_name(config_of(artifact_of(io)).input[0].data_type) == expected


def test_a_dtype_triton_has_no_type_for_is_an_artifact_error() -> None:
    with pytest.raises(ArtifactError, match="'complex64' has no Triton datatype"):
        triton_datatype("complex64")


def test_tensor_names_that_need_escaping_survive_the_text_format() -> None:
    names = ('say "hi"', "back\\slash", "naïve/ünits:0")
    io = IOSchema(
        tuple(TensorSpec(n, "float32", ("batch", 1)) for n in names), (TensorSpec("y", "float32", ("batch",)),)
    )
    assert [t.name for t in config_of(artifact_of(io)).input] == list(names)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("sentence-transformers/all-MiniLM-L6-v2", "all-MiniLM-L6-v2"),
        ("my model (v2.1)", "my_model_v2_1"),
        ("__x__", "x"),
        ("ünïcode", "n_code"),
        ("日本語", "model"),
        ("models/", "models"),
    ],
)
def test_triton_names_keep_letters_digits_underscores_and_dashes(name: str, expected: str) -> None:
    assert triton_name(name) == expected


def test_an_unsafe_name_or_number_is_refused_with_the_fix() -> None:
    with pytest.raises(InputError, match=r"--name 'a/b' is not a safe Triton model name.*'b'"):
        TritonOptions(name="a/b")
    with pytest.raises(InputError, match="--max-batch-size 0 is below 1"):
        TritonOptions(max_batch_size=0)
    with pytest.raises(InputError, match=r"--max-wait-ms -1\.0 is negative"):
        TritonOptions(max_wait_ms=-1.0)


def test_the_exporter_imports_no_runtime_model_library_or_web_framework() -> None:
    code = (
        "import sys, inferopt.deploy.triton, inferopt.deploy.triton_readme;"
        "heavy = ('torch', 'onnxruntime', 'onnx', 'fastapi', 'starlette', 'uvicorn', 'grpc', 'tokenizers');"
        "print(','.join(m for m in heavy if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_an_image_models_readme_says_the_client_preprocesses_with_the_tasks_numbers(tmp_path: Path) -> None:
    from inferopt.deploy.triton_readme import client_readme

    (tmp_path / "labels.txt").write_text("cat\ndog\nbird\n")
    io = IOSchema(
        (TensorSpec("image", "float32", ("batch", 3, 32, 32)),), (TensorSpec("logits", "float32", ("batch", 3)),)
    )
    preprocessing = {"size": 32, "resize": 36, "mean": [0.5] * 3, "std": [0.25] * 3, "interpolation": "bicubic"}
    artifact = artifact_of(io, model_name="pets")
    artifact.manifest["task"] = {
        "name": "image-classification",
        "version": 1,
        "config": {"preprocessing": preprocessing, "num_classes": 3, "label": "pets"},
        "assets": ["labels.txt"],
    }
    artifact = Artifact(tmp_path, artifact.manifest)
    readme = client_readme(artifact, plan_models(artifact, TritonOptions()), Path("/models/pets"))
    assert "inferopt serve takes `image` (BYTES [-1])" in readme and "**the client does that step**" in readme
    assert '"resize": 36' in readme and '"interpolation": "bicubic"' in readme and "`assets/labels.txt`" in readme
    assert "| `image` | FP32 | [rows, 3, 32, 32] |" in readme and "| `logits` | FP32 | [rows, 3] |" in readme
    assert "## A worked request" not in readme  # 3,072 pixels per image would bury the README
    assert 'ASSETS = Path("/models/pets/assets")' in readme and 'MODELS = {"default": "pets"}' in readme
