"""`inferopt export triton ARTIFACT OUT`: an artifact as a Triton Inference Server model repository.

OUT/<name>/config.pbtxt and OUT/<name>/1/model.onnx serve the artifact's default model path; each other path
(the manifest's runtime.paths) is a model of its own, OUT/<name>_<path>/. The numbers come from the manifest:
the batch size, sessions and intra-op threads the benchmark chose, and serve's default --max-wait-ms as the
queue delay. Triton runs the graph only, so OUT/<name>/README.md says what a client must send and how inferopt's
own task code makes it from a raw input, beside the task's assets in OUT/<name>/assets/.

OUT may be an existing repository: with --force our models are added to it, replacing only model folders this
command wrote there before (OUT/.inferopt-triton.json lists them and their files), never anything else: a
folder of the same name that it did not write, or one with a file added since, is refused. Everything is built
in a staging folder beside OUT and renamed into place, so a failure leaves nothing half-written.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inferopt import __version__
from inferopt.artifact import Artifact, load_artifact
from inferopt.atomic import cleanup_survives_ctrl_c
from inferopt.deploy.triton_model import TritonModel
from inferopt.errors import ArtifactError, InputError
from inferopt.runtime.base import RuntimeSettings
from inferopt.runtime.placement import TENSORRT
from inferopt.serve.config import ServeConfig  # a plain dataclass module: no web framework comes with it
from inferopt.tasks.base import DEFAULT_PATH, V2_DATATYPES, IOSchema, TensorSpec

PLATFORM = "onnxruntime_onnx"
VERSION = "1"  # the one version directory written: OUT/<name>/1/model.onnx
MODEL_FILE = "model.onnx"
CONFIG_FILE = "config.pbtxt"
MARKER = ".inferopt-triton.json"  # not atomic.MARKER: that one lets optimize --force replace the whole folder
ASSETS = "assets"
TASK_FILE = "task.json"
README = "README.md"
DEFAULT_MAX_WAIT_MS = ServeConfig.max_wait_ms
EXECUTION_MODES = {"sequential": "0", "parallel": "1"}  # the onnxruntime backend's execution_mode values
COMMENT_WIDTH = 110
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


@dataclass(frozen=True)
class TritonOptions:
    """What `inferopt export triton` may change; None takes the artifact's own figure."""

    name: str | None = None  # the Triton model name (default: triton_name of the artifact's model name)
    max_batch_size: int | None = None  # the most rows one request or batch may carry (default: benchmarked)
    max_wait_ms: float | None = None  # the dynamic batcher's queue delay (default: serve's --max-wait-ms default)

    def __post_init__(self) -> None:
        if self.max_batch_size is not None and self.max_batch_size < 1:
            raise InputError(f"--max-batch-size {self.max_batch_size} is below 1", "pass a batch size of 1 or more")
        if self.max_wait_ms is not None and self.max_wait_ms < 0:
            raise InputError(f"--max-wait-ms {self.max_wait_ms} is negative", "pass 0 or more milliseconds")
        if self.name is not None and triton_name(self.name) != self.name:
            raise InputError(
                f"--name {self.name!r} is not a safe Triton model name",
                f"use letters, digits, '_' and '-' only, e.g. {triton_name(self.name)!r}",
            )

    @property
    def max_queue_delay_us(self) -> int:
        return round((DEFAULT_MAX_WAIT_MS if self.max_wait_ms is None else self.max_wait_ms) * 1000)


def triton_name(model_name: str) -> str:
    """The name a model gets in the repository: Triton names a model by its folder and clients put the name in
    URLs (/v2/models/<name>/infer). The last part of the name (after any '/'), every run of characters other
    than ASCII letters, digits, '_' and '-' made one '_', no '_' or '-' at either end; 'model' if none is left."""
    last = model_name.rstrip("/").rsplit("/", 1)[-1]
    return _UNSAFE.sub("_", last).strip("_-") or "model"


def export_triton(
    artifact_dir: Path, out: Path, options: TritonOptions | None = None, *, force: bool = False
) -> list[TritonModel]:
    """Write the artifact's models into the Triton model repository `out`; returns them, the default path first."""
    from inferopt.deploy.triton_readme import client_readme

    options = options or TritonOptions()
    artifact = load_artifact(artifact_dir)
    out = Path(out).absolute()
    if out.resolve().is_relative_to(artifact.path.resolve()):
        raise InputError(f"{out} is inside the artifact {artifact.path}", "choose an OUT outside the artifact")
    models = plan_models(artifact, options)
    entries = [model.name for model in models]
    check_out(out, entries, force=force)
    with cleanup_survives_ctrl_c(), _staging(out) as staging:
        for model in models:
            _write_model(staging / model.name, model, model_config(model, artifact))
        home = staging / models[0].name
        _copy_assets(artifact, home / ASSETS)
        (home / README).write_text(client_readme(artifact, models, out / models[0].name), encoding="utf-8")
        publish(staging, out, entries)
    return models


def plan_models(artifact: Artifact, options: TritonOptions) -> list[TritonModel]:
    """The default model path, then each other path as `<name>_<path>`, each with its own benchmarked settings."""
    name = options.name or triton_name(artifact.model_name)
    batching = batches_on_axis_0(artifact.io)
    recipe = artifact.manifest.get("recipe") or {}
    paths: dict[str, tuple[Path, RuntimeSettings, str]] = {
        DEFAULT_PATH: (artifact.model_file, artifact.settings, str(recipe.get("name", "model"))),
        **artifact.paths,
    }
    placements = {DEFAULT_PATH: artifact.placement, **artifact.path_placements}
    models = []
    for path, (graph, settings, variant) in paths.items():
        most = (options.max_batch_size or settings.batch_size) if batching else 0
        models.append(
            TritonModel(
                name=name if path == DEFAULT_PATH else f"{name}_{triton_name(path)}",
                path=path,
                variant=variant,
                graph=graph,
                max_batch_size=most,
                preferred_batch_size=min(settings.batch_size, most),
                max_queue_delay_us=options.max_queue_delay_us,
                instances=settings.sessions,
                intra_op_threads=settings.intra_op_threads,
                placement=placements[path],
            )
        )
    return models


def batches_on_axis_0(io: IOSchema) -> bool:
    """Whether Triton may batch the model: every input and output has a dynamic axis 0 (the io schema's batch)."""
    return all(t.shape and isinstance(t.shape[0], str) for t in (*io.inputs, *io.outputs))


def triton_datatype(dtype: str) -> str:
    """The model config's TYPE_* of a numpy dtype name (Triton's TYPE_STRING is the protocol's BYTES)."""
    v2 = V2_DATATYPES.get(dtype)
    if v2 is None:
        raise ArtifactError(f"The io schema's dtype {dtype!r} has no Triton datatype", "re-run inferopt optimize")
    return "TYPE_STRING" if v2 == "BYTES" else f"TYPE_{v2}"


def model_config(model: TritonModel, artifact: Artifact) -> str:
    """config.pbtxt (protobuf text format of Triton's ModelConfig) for one model of the repository."""
    io = artifact.io
    batching = model.max_batch_size > 0
    sections: list[tuple[str, dict[str, Any]]] = [
        (
            f"Written by inferopt {__version__} (`inferopt export triton`) from artifact {artifact.artifact_id}: "
            f"{artifact.model_name}, model path {model.path!r}, variant {model.variant}. Export again with "
            "--force to regenerate it; edits here are then replaced.",
            {"name": model.name, "platform": PLATFORM},
        ),
        (
            "The batch size the artifact's benchmark chose (manifest runtime.settings), unless --max-batch-size said"
            if batching
            else "Not every tensor has a dynamic axis 0, so Triton sends each request to the graph as it is",
            {"max_batch_size": model.max_batch_size},
        ),
        (
            "",
            {"input": [_tensor(t, batching) for t in io.inputs], "output": [_tensor(t, batching) for t in io.outputs]},
        ),
        *_scheduling(model, artifact.manifest["runtime"]),
    ]
    lines: list[str] = []
    for comment, fields in sections:
        lines += [f"# {line}" for line in textwrap.wrap(comment, COMMENT_WIDTH)]
        lines += _render(fields, 0)
    return "\n".join(lines) + "\n"


def _scheduling(model: TritonModel, runtime: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The dynamic batcher, the instances and their session options, as the benchmark ran them."""
    sections: list[tuple[str, dict[str, Any]]] = []
    if model.max_batch_size > 0:
        batcher = {
            "preferred_batch_size": [model.preferred_batch_size],
            "max_queue_delay_microseconds": model.max_queue_delay_us,
        }
        sections.append(
            (
                "A batch of the benchmarked size runs at once; a smaller one waits at most "
                f"{model.max_queue_delay_us / 1000:g} ms for more (--max-wait-ms, by default inferopt serve's)",
                {"dynamic_batching": batcher},
            )
        )
    session = runtime.get("session_options", {})
    parameters = {"intra_op_thread_count": str(model.intra_op_threads)}
    if "inter_op_threads" in session:
        parameters["inter_op_thread_count"] = str(int(session["inter_op_threads"]))
    if session.get("execution_mode") in EXECUTION_MODES:
        parameters["execution_mode"] = EXECUTION_MODES[session["execution_mode"]]
    return [
        *sections,
        *_instances(model),
        (
            "ONNX Runtime session options as the benchmark ran them (the onnxruntime backend's parameters)",
            {"parameters": [{"key": k, "value": {"string_value": v}} for k, v in parameters.items()]},
        ),
    ]


def _instances(model: TritonModel) -> list[tuple[str, dict[str, Any]]]:
    """Where the instances run: as the benchmark placed the model (CPU, a GPU, TensorRT on a GPU)."""
    placement = model.placement
    providers = ", ".join(placement.providers)
    if not placement.on_gpu:
        return [
            (
                f"The artifact was benchmarked on CPU ({providers}): "
                f"{model.instances} session(s) of {model.intra_op_threads} intra-op thread(s) each",
                {"instance_group": [{"count": model.instances, "kind": _Enum("KIND_CPU")}]},
            )
        ]
    group = {"count": model.instances, "kind": _Enum("KIND_GPU"), "gpus": [placement.device_id]}
    sections: list[tuple[str, dict[str, Any]]] = [
        (f"The artifact was benchmarked on {placement.label} ({providers})", {"instance_group": [group]})
    ]
    if placement.providers[0] == TENSORRT:
        accelerator = {
            "name": "tensorrt",
            "parameters": [{"key": "precision_mode", "value": placement.tensorrt_precision.upper()}],
        }
        sections.append(
            (
                "TensorRT inside the onnxruntime backend, at the precision the benchmark allowed it",
                {"optimization": {"execution_accelerators": {"gpu_execution_accelerator": [accelerator]}}},
            )
        )
    return sections


def _tensor(spec: TensorSpec, batching: bool) -> dict[str, Any]:
    """dims: the io schema's shape without the batch axis (Triton adds it), dynamic axes as -1. A tensor that is
    only the batch (or a scalar) is [1] to the client and reshaped to [] for the graph: dims may not be empty."""
    dims = [-1 if isinstance(size, str) else int(size) for size in (spec.shape[1:] if batching else spec.shape)]
    entry: dict[str, Any] = {"name": spec.name, "data_type": _Enum(triton_datatype(spec.dtype)), "dims": dims or [1]}
    if not dims:
        entry["reshape"] = {"shape": []}
    return entry


class _Enum(str):
    """A protobuf enum value: written bare, not quoted."""


def _render(fields: dict[str, Any], depth: int) -> list[str]:
    pad = "  " * depth
    lines: list[str] = []
    for key, value in fields.items():
        if isinstance(value, dict):
            lines += [f"{pad}{key} {{", *_render(value, depth + 1), f"{pad}}}"]
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            lines.append(f"{pad}{key} [")
            for i, message in enumerate(value):
                comma = "," if i < len(value) - 1 else ""
                lines += [f"{pad}  {{", *_render(message, depth + 2), f"{pad}  }}{comma}"]
            lines.append(f"{pad}]")
        elif isinstance(value, list):
            lines.append(f"{pad}{key}: [ {', '.join(_scalar(v) for v in value)} ]" if value else f"{pad}{key}: [ ]")
        else:
            lines.append(f"{pad}{key}: {_scalar(value)}")
    return lines


def _scalar(value: Any) -> str:
    if isinstance(value, _Enum):
        return str(value)
    if isinstance(value, str):
        return _quote(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(int(value))


def _quote(text: str) -> str:
    """A text-format string: printable ASCII as is, quotes and backslashes escaped, other bytes of the UTF-8 in
    octal (which every protobuf text parser reads)."""
    chars = []
    for byte in text.encode("utf-8"):
        char = chr(byte)
        chars.append("\\" + char if char in '"\\' else char if 0x20 <= byte < 0x7F else f"\\{byte:03o}")
    return '"' + "".join(chars) + '"'


def _write_model(directory: Path, model: TritonModel, config: str) -> None:
    (directory / VERSION).mkdir(parents=True)
    shutil.copyfile(model.graph, directory / VERSION / MODEL_FILE)
    (directory / CONFIG_FILE).write_text(config, encoding="utf-8")


def _copy_assets(artifact: Artifact, directory: Path) -> None:
    """The task's files (tokenizer, labels, encoders, ...) and its manifest section, from which inferopt's task
    code rebuilds the preprocessing on the client (tasks.registry.for_artifact)."""
    directory.mkdir(parents=True)
    section = artifact.manifest["task"]
    for name in section.get("assets", []):
        target = directory / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(artifact.path / name, target)
    (directory / TASK_FILE).write_text(json.dumps(section, indent=2) + "\n", encoding="utf-8")


# -- the repository folder: ours to replace only where we wrote it ---------------------------------------------


def check_out(out: Path, entries: list[str], *, force: bool) -> None:
    """Fail before any work if `out` cannot take these model folders: each must be absent, or a folder this
    command wrote there that holds nothing else (a file someone added to it would go with it)."""
    if out.exists() and not out.is_dir():
        raise InputError(f"{out} exists and is a file", "choose another OUT folder")
    if not out.exists() or not any(out.iterdir()):
        return
    if not force:
        raise InputError(
            f"Output directory {out} already exists",
            "pass --force to add the models to it (replacing only models inferopt exported there), or another OUT",
        )
    owned = _owned(out)
    for entry in entries:
        if not os.path.lexists(out / entry):
            continue
        if entry not in owned or (out / entry).is_symlink() or not (out / entry).is_dir():
            raise InputError(
                f"{out / entry} exists and was not written by inferopt export triton, so --force will not replace it",
                "remove or rename it, export under another --name, or choose another OUT",
            )
        added = sorted(_files(out / entry) - owned[entry])
        if added:
            raise InputError(
                f"{out / entry / added[0]} was not written by inferopt export triton, so --force will not delete it",
                "move it out of the model folder, or export under another --name",
            )


def publish(staging: Path, out: Path, entries: list[str]) -> None:
    """Move the staged model folders into `out`, each replacing the one we wrote before (a rename each; on a
    failure the old ones are put back)."""
    written = {entry: _files(staging / entry) for entry in entries}
    if not out.exists():
        _write_marker(staging, written)
        staging.rename(out)
        return
    check_out(out, entries, force=True)  # again: something may have appeared there while we built
    retired = staging.parent / f"{staging.name}.old"
    retired.mkdir()
    moved_old: list[str] = []
    moved_new: list[str] = []
    try:
        for entry in entries:
            if os.path.lexists(out / entry):
                (out / entry).rename(retired / entry)
                moved_old.append(entry)
            (staging / entry).rename(out / entry)
            moved_new.append(entry)
        _write_marker(out, {**_owned(out), **written})
    except BaseException:
        for entry in moved_new:
            (out / entry).rename(staging / entry)
        for entry in moved_old:
            (retired / entry).rename(out / entry)
        shutil.rmtree(retired, ignore_errors=True)
        raise
    shutil.rmtree(retired, ignore_errors=True)


def _files(folder: Path) -> set[str]:
    return {path.relative_to(folder).as_posix() for path in folder.rglob("*") if not path.is_dir()}


def _owned(out: Path) -> dict[str, set[str]]:
    """The model folders our marker says we wrote, each with its files; none if it is missing or unreadable."""
    try:
        listed = json.loads((out / MARKER).read_text(encoding="utf-8")).get("models", {})
    except (OSError, ValueError, AttributeError):
        return {}
    if not isinstance(listed, dict):
        return {}
    return {str(entry): {str(f) for f in files} for entry, files in listed.items() if isinstance(files, list)}


def _write_marker(directory: Path, models: dict[str, set[str]]) -> None:
    body = {
        "written_by": "inferopt export triton",
        "inferopt_version": __version__,
        "models": {entry: sorted(files) for entry, files in sorted(models.items())},
    }
    partial = directory / f"{MARKER}.partial"
    partial.write_text(json.dumps(body, indent=2) + "\n", encoding="utf-8")
    os.replace(partial, directory / MARKER)


@contextmanager
def _staging(out: Path) -> Iterator[Path]:
    """An empty folder beside `out` (same file system, so the final moves are renames), gone afterwards."""
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.parent / f".{out.name}.triton-partial-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)
