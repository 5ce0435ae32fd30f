"""OUT/<name>/README.md: what a client of the exported Triton models sends, and how inferopt's task code makes it.

Triton runs the graph only. inferopt serve also runs the task around it (tokenizing a text, decoding and
normalizing an image, encoding a record, turning ids into rows); a Triton client does those steps itself. The
README is written from the contract alone (no task is named here): the graph's tensors from the io schema,
whether the task's own inputs differ from them (its OIP v2 inputs against the graph's), its settings and files,
a Python client that runs the task's preprocess / collate / split / postprocess around Triton, a worked request
where the task ships a small sample, and what inferopt serve does that these models do not.
"""

from __future__ import annotations

import json
from pathlib import Path

from inferopt.artifact import Artifact
from inferopt.deploy.triton_model import TritonModel
from inferopt.tasks.base import V2_DATATYPES, IOSchema, Task, TensorSpec

EXAMPLE_MAX_VALUES = 512  # a worked request larger than this (an image's pixels) would bury the README
EXAMPLE_CANDIDATES = 32  # the task's sample inputs looked at for the shortest one


def client_readme(artifact: Artifact, models: list[TritonModel], home: Path) -> str:
    """The README of the default model's folder `home` (its final place), covering every model exported."""
    from inferopt.tasks.registry import for_artifact

    task = for_artifact(artifact.manifest, artifact.path)
    io = artifact.io
    parts = [
        _summary(artifact, models),
        _start(models[0].name, home.parent, artifact),
        _tensors(io, models[0]),
        _preprocessing(task, artifact, io),
        _client(io, models, home),
        _example(task, io, models),
        _limits(artifact, io, models),
    ]
    return "\n".join(part for part in parts if part)


def _summary(artifact: Artifact, models: list[TritonModel]) -> str:
    rows = "\n".join(
        f"| `{m.name}` | {m.path} | {m.variant} | {m.max_batch_size} | "
        f"{m.preferred_batch_size if m.max_batch_size else '-'} | "
        f"{f'{m.max_queue_delay_us / 1000:g} ms' if m.max_batch_size else '-'} | {m.instances} | {m.intra_op_threads} |"
        for m in models
    )
    return f"""# `{models[0].name}`: an inferopt artifact as Triton models

Written by `inferopt export triton` from `{artifact.path}` (model `{artifact.model_name}`, task `{artifact.task}`,
artifact id `{artifact.artifact_id}`). Each model path of the artifact is one Triton model; the numbers are the
artifact's benchmarked settings (manifest `runtime.settings`, per path), the queue delay inferopt serve's
default `--max-wait-ms`.

| Triton model | model path | variant | max_batch_size | preferred batch | queue delay | CPU instances | threads |
|---|---|---|---|---|---|---|---|
{rows}
"""


def _start(name: str, repository: Path, artifact: Artifact) -> str:
    ort = artifact.manifest.get("environment", {}).get("packages", {}).get("onnxruntime", "unknown")
    gpus = "--gpus all " if artifact.placement.on_gpu else ""
    return f"""## Start Triton

```bash
docker run --rm {gpus}-p 8000:8000 -p 8001:8001 -p 8002:8002 -v {repository}:/models \\
  nvcr.io/nvidia/tritonserver:<yy.mm>-py3 tritonserver --model-repository=/models
curl -f localhost:8000/v2/models/{name}/ready   # 200 once the model is loaded
```

Choose a Triton release whose onnxruntime backend is not older than the ONNX Runtime the artifact was
benchmarked with ({ort}). {_where(artifact)} HTTP is on 8000, gRPC on 8001, Prometheus metrics on 8002.
"""


def _where(artifact: Artifact) -> str:
    if not artifact.placement.on_gpu:
        return "The instances are KIND_CPU, so no GPU is needed."
    return (
        f"The instances are KIND_GPU ({artifact.placement.label}, as benchmarked), so the container needs the "
        "GPU (`--gpus all`)."
    )


def _tensors(io: IOSchema, model: TritonModel) -> str:
    batching = model.max_batch_size > 0

    def rows(specs: tuple[TensorSpec, ...]) -> str:
        return "\n".join(
            f"| `{t.name}` | {V2_DATATYPES.get(t.dtype, t.dtype)} | {request_shape(t, batching)} |" for t in specs
        )

    text = """## What the models take and return

Every model here takes the same tensors (the artifact's io schema). """
    if batching:
        text += (
            f"A request carries rows on axis 0, at most `max_batch_size` ({model.max_batch_size}) of them: "
            "split larger ones. Triton's dynamic batcher joins requests into batches.\n"
        )
    else:
        text += "Not every tensor has a dynamic axis 0, so Triton does not batch: send the shapes below.\n"
    text += f"""
| input | datatype | request shape |
|---|---|---|
{rows(io.inputs)}

| output | datatype | response shape |
|---|---|---|
{rows(io.outputs)}
"""
    if batching and any(len(t.shape) == 1 for t in (*io.inputs, *io.outputs)):
        text += "\nA tensor of one value per row travels as `[rows, 1]` (Triton's dims may not be empty); the "
        text += "config's `reshape` gives the graph its `[rows]`.\n"
    dynamic = [
        f"`{t.name}` axis {axis} (`{size}`)"
        for t in io.inputs
        for axis, size in enumerate(t.shape)
        if axis > 0 and isinstance(size, str)
    ]
    if dynamic and batching:
        text += (
            "\nTriton joins requests only when their shapes agree beyond the batch axis, and these inputs have "
            f"dynamic axes: {', '.join(dynamic)}. Requests of different sizes run in separate batches; pad them "
            "to one size on the client if larger batches are worth the padding.\n"
        )
    return text


def request_shape(spec: TensorSpec, batching: bool) -> str:
    """The shape a request carries: `rows` for the batch axis, -1 for a dynamic one, [1] for no dims at all."""
    dims = [str(-1 if isinstance(s, str) else int(s)) for s in (spec.shape[1:] if batching else spec.shape)]
    return "[" + ", ".join((["rows"] if batching else []) + (dims or ["1"])) + "]"


def _preprocessing(task: Task, artifact: Artifact, io: IOSchema) -> str:
    section = artifact.manifest["task"]
    assets = section.get("assets", [])
    takes = task.v2_inputs()
    graph_inputs = Task.v2_inputs(task)  # the contract's default: the graph's own inputs
    text = "## Preprocessing and postprocessing\n\n"
    if takes == graph_inputs:
        text += (
            "inferopt serve's Open Inference Protocol v2 route takes these same tensors: send the graph's inputs "
            "as they are.\n"
        )
    else:
        wire = ", ".join(f"`{t['name']}` ({t['datatype']} {t['shape']})" for t in takes)
        text += (
            f"inferopt serve takes {wire} over Open Inference Protocol v2, and its task `{artifact.task}` turns each "
            "input into the tensors above. Triton runs only the graph, so **the client does that step**, with the "
            "task's settings below and its files in `assets/` (copied from the artifact). The Python client below "
            "runs inferopt's own code for it; a client in another language reproduces it from the settings and "
            "files, and can check itself against the worked request, where there is one.\n"
        )
    if task.stored_features() is not None:
        text += (
            "\nThis task's inputs may name an entity whose features inferopt serve reads from a database first. "
            "Triton has no such step: read the features on the client and pass complete records to the task.\n"
        )
    text += (
        "\nThe task's `postprocess` turns each row of the outputs into the result inferopt serve answers with "
        "(KServe v1 `predictions`); the client below calls it.\n"
    )
    settings = json.dumps(section.get("config", {}), indent=2)
    text += f"\nThe task's settings (manifest `task.config`):\n\n```json\n{settings}\n```\n"
    files = ", ".join(f"`assets/{name}`" for name in assets) or "none besides `assets/task.json`"
    text += f"\nIts files: {files}; `assets/task.json` is the manifest's task section.\n"
    return text


def _client(io: IOSchema, models: list[TritonModel], home: Path) -> str:
    batching = models[0].max_batch_size > 0
    routes = {m.path: m.name for m in models}
    datatypes = {t.name: V2_DATATYPES.get(t.dtype, t.dtype) for t in io.inputs}
    per_row = sorted(t.name for t in (*io.inputs, *io.outputs) if batching and len(t.shape) == 1)
    per_row_literal = "{" + ", ".join(json.dumps(name) for name in per_row) + "}" if per_row else "set()"
    return f'''## A Python client with inferopt's own task code

`pip install inferopt tritonclient[http]` on the client. One request per input keeps it short; send them
concurrently (`client.async_infer`) so that Triton can batch them.

```python
import json
from pathlib import Path

import tritonclient.http as triton

from inferopt.tasks.registry import for_artifact

ASSETS = Path({json.dumps(str(home / "assets"))})  # this model's assets/ folder: change it if you move the repository
MODELS = {json.dumps(routes)}  # the task's model path -> Triton model
DATATYPES = {json.dumps(datatypes)}
OUTPUTS = {json.dumps([t.name for t in io.outputs])}
ONE_PER_ROW = {per_row_literal}  # [rows] in the graph, [rows, 1] on the wire

task = for_artifact({{"task": json.loads((ASSETS / "task.json").read_text())}}, ASSETS)
client = triton.InferenceServerClient("localhost:8000")


def predict(instances):
    """KServe v1 instances, as inferopt serve's :predict takes them -> its predictions, one each."""
    raws = [task.instance(value, f"instances[{{i}}]") for i, value in enumerate(instances)]
    results = []
    for item in task.preprocess(raws):
        inputs = []
        for name, array in task.collate([item]).items():
            array = array.reshape(-1, 1) if name in ONE_PER_ROW else array
            tensor = triton.InferInput(name, list(array.shape), DATATYPES[name])
            tensor.set_data_from_numpy(array)
            inputs.append(tensor)
        reply = client.infer(MODELS[item.path], inputs)
        outputs = {{name: reply.as_numpy(name) for name in OUTPUTS}}
        outputs = {{name: v.reshape(-1) if name in ONE_PER_ROW else v for name, v in outputs.items()}}
        results.append(task.postprocess(task.split(outputs, [item])[0], item))
    return results
```
'''


def _example(task: Task, io: IOSchema, models: list[TritonModel]) -> str:
    """One of the task's own sample inputs as the HTTP request Triton takes, when it is small (a short text)."""
    samples = [raw for raw in task.sample_inputs()[:EXAMPLE_CANDIDATES] if task.entity(raw) is None]
    if not samples:
        return ""
    candidates = task.preprocess(samples)
    pick = min(range(len(candidates)), key=lambda i: candidates[i].cost)  # the shortest (fewest tokens)
    sample, items = samples[pick], [candidates[pick]]
    arrays = task.collate(items)
    if sum(int(a.size) for a in arrays.values()) > EXAMPLE_MAX_VALUES:
        return ""
    batching = models[0].max_batch_size > 0
    specs = {t.name: t for t in io.inputs}
    body = {
        "inputs": [
            {
                "name": name,
                "datatype": V2_DATATYPES.get(specs[name].dtype, specs[name].dtype),
                "shape": list(a.reshape(-1, 1).shape if batching and a.ndim == 1 else a.shape),
                "data": a.reshape(-1).tolist(),
            }
            for name, a in arrays.items()
        ]
    }
    model = next(m.name for m in models if m.path == items[0].path)
    shown = f"the text {json.dumps(sample)}" if isinstance(sample, str) else "one of the task's sample inputs"
    return f"""## A worked request

The task turns {shown} into this request:

```bash
curl -s localhost:8000/v2/models/{model}/infer -H 'Content-Type: application/json' -d @- <<'EOF'
{json.dumps(body)}
EOF
```
"""


def _limits(artifact: Artifact, io: IOSchema, models: list[TritonModel]) -> str:
    runtime = artifact.manifest["runtime"]
    disabled = runtime.get("session_options", {}).get("disabled_optimizers", [])
    environment = artifact.manifest.get("environment", {})
    lines = [
        "## What these models do not do that inferopt serve does",
        "",
        "- The task's steps around the graph (above), its caches, admission by predicted wait (429 with "
        "`Retry-After`), the priority lanes, drift gauges, and the OpenAI / KServe v1 routes.",
    ]
    if any(isinstance(s, str) for t in io.inputs for s in t.shape[1:]):
        lines.append(
            "- inferopt serve also caps a batch's padded size (rows x longest input, `--max-batch-tokens`); "
            "Triton caps rows only."
        )
    if disabled:
        lines.append(
            f"- ONNX Runtime optimizers the benchmark disabled ({', '.join(disabled)}) cannot be disabled through "
            "the onnxruntime backend's parameters: its sessions may fuse them, so speed can differ from the "
            "benchmark and outputs in the last digits."
        )
    if len(models) > 1:
        lines.append(
            f"- Each model path was benchmarked alone; loaded together their instances add up "
            f"({sum(m.instances for m in models)} in all). inferopt serve opens `--min-warm` sessions (default 1) on "
            "a path other than the default; lower `count` on those models if they serve few requests."
        )
    lines.append(
        f"- The settings were measured on {environment.get('cpu_model', 'the optimize machine')} with "
        f"{environment.get('usable_cores', '?')} usable cores; on another machine measure again (Triton's "
        "perf_analyzer) before trusting the instance count and batch size."
    )
    return "\n".join(lines) + "\n"
