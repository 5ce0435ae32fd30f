"""The Task contract: what a kind of model means to every stage of the pipeline.

optimize asks a task for its source model, its io schema, its eval and calibration data and its measures;
serve asks it to turn one raw request input into arrays (an Item), to collate items into a batch and to turn
a batch's outputs back into JSON-able results. Nothing outside `tasks/` knows which task it is talking to.

A raw input is whatever one request instance is for the task: a string for text, a dict of input name ->
array (no batch axis) for plain tensors. Assets a task needs at serve time (a tokenizer, labels) travel in
the artifact as plain files, listed in the manifest's task section.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from inferopt.accuracy.report import AccuracyReport, Measure
from inferopt.errors import InputError
from inferopt.sources.features import EntityRef, FeatureRecord, FeatureSpec

Arrays = dict[str, np.ndarray]

DEFAULT_PATH = "default"  # the model path every input takes unless its task routes it to another

# The protocols a task may speak (serve/protocols/ has one module each).
OPENAI_EMBEDDINGS = "openai-embeddings"
KSERVE_V1 = "kserve-v1"
OIP_V2 = "oip-v2"


class InvalidInput(ValueError):
    """A request input the task cannot take; `field` names where it is (`instances[3].x`). Serve answers 422."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


@dataclass(frozen=True)
class TensorSpec:
    """One input or output tensor. Axis 0 is the batch; a str in `shape` names a dynamic axis."""

    name: str
    dtype: str  # numpy's name: "int64", "float32", ...
    shape: tuple[int | str, ...]

    def dynamic_axes(self) -> dict[int, str]:
        return {axis: size for axis, size in enumerate(self.shape) if isinstance(size, str)}

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TensorSpec:
        return cls(str(data["name"]), str(data["dtype"]), tuple(data["shape"]))


@dataclass(frozen=True)
class IOSchema:
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    @property
    def input_names(self) -> list[str]:
        return [t.name for t in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [t.name for t in self.outputs]

    def dynamic_axes(self) -> dict[str, dict[int, str]]:
        """What torch.onnx.export takes: tensor name -> {axis: name}."""
        return {t.name: axes for t in (*self.inputs, *self.outputs) if (axes := t.dynamic_axes())}

    def to_dict(self) -> dict[str, Any]:
        return {"inputs": [t.to_dict() for t in self.inputs], "outputs": [t.to_dict() for t in self.outputs]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> IOSchema:
        return cls(
            tuple(TensorSpec.from_dict(t) for t in data["inputs"]),
            tuple(TensorSpec.from_dict(t) for t in data["outputs"]),
        )


@dataclass(frozen=True, slots=True)
class Item:
    """One raw input, preprocessed: what the batcher queues.

    `cost` is the batcher's unit of work (tokens for text, 1 for a tensor row): batches are capped in
    rows x largest cost, and padding is rows x largest cost - sum of costs. Only items of one `group` share a
    batch (None: any may, because the task's collate pads them)."""

    data: Any
    cost: int = 1
    group: Hashable = None
    truncated: bool = False  # the input was cut to fit the model (text past its max length)
    options: Hashable = None  # what the request asked of its result (image: top_k), for postprocess
    path: str = DEFAULT_PATH  # the model path (variant) to run it on; serve falls back to the default path


@dataclass(frozen=True)
class ModelOptions:
    """How optimize's MODEL argument is to be read, from the flags that describe it. A task refuses the ones it
    does not take (`refuse_others`), so a flag is never silently ignored."""

    example: str | None = None  # module:function returning example inputs (a module by import path)
    dynamic_axes: tuple[str, ...] = ()  # "input:axis[:name]" beyond the batch axis
    preprocess: Path | None = None  # image: a JSON of size, resize, mean, std, interpolation, labels
    image_size: int | None = None  # image: the square crop the model takes
    resize: int | None = None  # image: the shorter side before cropping
    mean: tuple[float, ...] | None = None  # image: per-channel mean on 0-1 values
    std: tuple[float, ...] | None = None
    labels: Path | None = None  # image: class names, one per line in class-index order

    FLAGS: ClassVar[dict[str, str]] = {
        "example": "--example",
        "dynamic_axes": "--dynamic-axes",
        "preprocess": "--preprocess",
        "image_size": "--image-size",
        "resize": "--resize",
        "mean": "--mean",
        "std": "--std",
        "labels": "--labels",
    }

    def given(self) -> list[str]:
        return [name for name in self.FLAGS if getattr(self, name) not in (None, ())]

    def refuse_others(self, allowed: tuple[str, ...], what: str) -> None:
        extra = [self.FLAGS[name] for name in self.given() if name not in allowed]
        if extra:
            takes = ", ".join(self.FLAGS[name] for name in allowed) or "none of them"
            raise InputError(f"{', '.join(extra)}: not an option of {what}", f"it takes {takes}")


NO_OPTIONS = ModelOptions()


@dataclass(frozen=True)
class EvalSet:
    """The inputs a variant is checked on, with labels where the data has them (the task reads its own)."""

    name: str
    inputs: tuple[Any, ...]
    labels: Any = None
    summary: str = ""  # "3,000 texts, 1,500 scored pairs"

    def __len__(self) -> int:
        return len(self.inputs)


@dataclass(frozen=True)
class FusionProfile:
    """What graph recipes may assume about the architecture. kind: "bert" (ONNX Runtime's transformer fusions
    apply), "cnn" (convolutions: the session's own Conv fusions do the work) or "none"."""

    kind: str = "none"
    num_heads: int = 0
    hidden_size: int = 0
    expected_ops: dict[str, int] = field(default_factory=dict)  # op -> count a complete fusion leaves
    mask_input: str | None = None  # input marking real positions of [batch, sequence, ...] activations


@dataclass
class Source:
    """The FP32 reference model and what export needs. `module` is a torch.nn.Module, or None when the user
    gave a ready ONNX file (`onnx_path`), which is then the reference itself."""

    name: str
    location: str  # where it came from, for messages and the manifest (a folder, an import path, a file)
    module: Any = None
    onnx_path: Path | None = None
    example: Arrays = field(default_factory=dict)  # a small batch to trace the export with
    size_bytes: int = 0
    fusion: FusionProfile = field(default_factory=FusionProfile)


class Metrics(ABC):
    """A task's measures: which it reports (in display order), its default budget, and how to compute them."""

    measures: ClassVar[tuple[Measure, ...]]
    default_budget: ClassVar[dict[str, float]]
    primary: ClassVar[str] = "mean_cosine"  # the fidelity that decides between variants tied on speed

    def measure(self, name: str) -> Measure:
        return next(m for m in self.measures if m.name == name)

    @property
    def flags(self) -> dict[str, Measure]:
        return {m.flag: m for m in self.measures if m.flag}

    @abstractmethod
    def evaluate(self, data: EvalSet, reference: Arrays, candidate: Arrays) -> AccuracyReport:
        """Compare `candidate` outputs with the FP32 `reference` (both: output name -> (items, ...))."""


class Task(ABC):
    """One kind of model. Subclasses set `name`, `version` and `protocols`, and implement the abstract methods;
    the others have defaults that fit most tasks."""

    name: ClassVar[str]
    version: ClassVar[int] = 1
    protocols: ClassVar[tuple[str, ...]] = (KSERVE_V1, OIP_V2)
    max_request_bytes: ClassVar[int] = 4 * 1024 * 1024  # serve's body limit unless --max-request-bytes says
    # Preprocess on the event loop, not in serve's preprocessing thread: for a task whose preprocessing of a
    # request costs less than the thread hop (~0.25 ms measured under load for a risk record's ~20 us encoding).
    inline_preprocess: ClassVar[bool] = False
    bench_inputs: ClassVar[int] = 512  # most inputs in one throughput pass (a sweep point runs at least one)
    # How a distilled student is pulled towards the teacher's outputs (recipes/distill.py): "cosine"
    # (embeddings), "kl" (logits), "mse" (scores and anything else).
    distill_loss: ClassVar[str] = "mse"

    # -- optimize ------------------------------------------------------------------------------------------

    @classmethod
    def claims(cls, ref: str | None) -> bool:
        """Whether `ref` (optimize's MODEL argument, None when absent) looks like a model of this task."""
        return False

    @classmethod
    @abstractmethod
    def from_model(cls, ref: str | None, options: ModelOptions = NO_OPTIONS) -> Task:
        """The task for optimize's MODEL argument and its options; InputError (one line) when they do not fit."""

    @classmethod
    def sample_inputs(cls) -> list[Any]:
        """Raw inputs that ship with the task (text: the built-in corpus), for load tests without a file."""
        return []

    @property
    def model_name(self) -> str:
        """The name the model is reported and served under."""
        return self.name

    @abstractmethod
    def load_source(self) -> Source:
        """The FP32 model every variant is compared with (a fresh one per call: export may change a module)."""

    @abstractmethod
    def io_schema(self) -> IOSchema: ...

    @abstractmethod
    def eval_data(self, path: Path | None, limit: int | None = None) -> EvalSet:
        """The inputs (and labels) the variants are checked on, at most `limit` of them; a built-in default when
        `path` is None."""

    @abstractmethod
    def calibration_inputs(self) -> list[Any]:
        """Raw inputs recipes calibrate on; kept apart from the eval data where the task has other data, so the
        eval numbers stay an honest check."""

    def distillation_inputs(self) -> list[Any]:
        """Unlabeled raw inputs a pruned student is trained on towards the teacher: never the eval data, and as
        many as the task has (thousands). None by default: a task without them gets no student."""
        return []

    def distillation_targets(self, module: Any) -> Any:
        """The module whose outputs a student is trained to match (given the same inputs): the model itself,
        unless its outputs are chosen from something else that is what carries the signal (a top-k's scores)."""
        return module

    @abstractmethod
    def metrics(self) -> Metrics:
        """The fidelity measures and task metric, with the default budget."""

    # -- serve (and the in-process engine) ------------------------------------------------------------------

    @abstractmethod
    def preprocess(self, raws: Sequence[Any]) -> list[Item]:
        """Raw inputs -> items, one each, in order (a list, so a tokenizer can do its batch in one call)."""

    @abstractmethod
    def collate(self, items: Sequence[Item]) -> Arrays:
        """Items -> one batch of model inputs (padding where the task needs it)."""

    def split(self, outputs: Arrays, items: Sequence[Item]) -> list[Arrays]:
        """A batch's outputs -> each item's (rows along axis 0, copied: a cached row must not keep its whole
        batch alive)."""
        return [{name: value[i].copy() for name, value in outputs.items()} for i in range(len(items))]

    def drift_signals(self, items: Sequence[Item], outputs: Arrays) -> dict[str, np.ndarray]:
        """What drift is watched on, for some items and their outputs (a row per item): named values, (n,) or
        columns (n, d) of which the reference keeps the most varied (drift/reference.py). By default every
        output, a column per value."""
        return {f"output.{name}": per_row(value, len(items)) for name, value in outputs.items()}

    @abstractmethod
    def postprocess(self, outputs: Arrays, item: Item) -> Any:
        """One item's outputs -> its JSON-able result (what KServe v1's `predictions` holds); `item.options` holds
        what its request asked of the result."""

    @abstractmethod
    def canonical(self, raw: Any) -> bytes | tuple[bytes | memoryview, ...]:
        """The input as bytes in a form where equal bytes mean equal results: the cache key's content, whole or in
        parts whose concatenation is that form (so a large input is hashed where it lies, not copied first).
        Cheap, because a cache hit must not pay for preprocessing."""

    def cache_key(self, prefix: str, raw: Any) -> str:
        canonical = self.canonical(raw)
        digest = hashlib.blake2b(digest_size=16)
        for part in (canonical,) if isinstance(canonical, bytes) else canonical:
            digest.update(part)
        return prefix + digest.hexdigest()

    @abstractmethod
    def instance(self, value: Any, field: str) -> Any:
        """One KServe v1 JSON instance -> a raw input; InvalidInput naming `field` when it does not fit."""

    def to_instance(self, raw: Any) -> Any:
        """A raw input as a client sends it (the inverse of `instance`), for `load` and `profile` to send."""
        return raw

    def upload(self, data: bytes, field: str) -> Any:
        """One uploaded file (a part of a multipart/form-data :predict request) -> a raw input. Only tasks whose
        inputs are files (images) take uploads."""
        raise InvalidInput(f"this model ({self.name}) takes no file uploads; send JSON instances", field)

    def parameters(self, raws: list[Any], given: dict[str, Any], field: str) -> list[Any]:
        """The raw inputs with a request's `parameters` (KServe v1 / OIP v2 request level, or the query string)
        applied. A task that takes none refuses any, naming it: a misspelt option must not be ignored."""
        if given:
            name = next(iter(given))
            raise InvalidInput(f"this model takes no parameter {name!r}", f"{field}.{name}")
        return raws

    @abstractmethod
    def from_tensors(self, tensors: dict[str, Any]) -> list[Any]:
        """Open Inference Protocol v2 inputs (name -> array with the batch on axis 0, or a list of str for BYTES)
        -> one raw input per row; InvalidInput naming the tensor when a name, dtype or shape does not fit."""

    def v2_inputs(self) -> list[dict[str, Any]]:
        """The input tensors as OIP v2 metadata describes them (name, datatype, shape with -1 for dynamic)."""
        return [_v2_metadata(t) for t in self.io_schema().inputs]

    def v2_outputs(self) -> list[dict[str, Any]]:
        return [_v2_metadata(t) for t in self.io_schema().outputs]

    # -- stored features (tasks whose inputs may name an entity instead of carrying its features) ----------

    def stored_features(self) -> FeatureSpec | None:
        """The feature groups serve reads for inputs that name an entity (None: inputs carry everything)."""
        return None

    def entity(self, raw: Any) -> EntityRef | None:
        """The entity whose stored features `raw` needs before it can be preprocessed (None: none)."""
        return None

    def with_features(self, raw: Any, record: FeatureRecord) -> Any:
        """`raw` with its entity's stored features filled in (only called for inputs `entity` names one for)."""
        raise NotImplementedError(f"{self.name} reads no stored features")

    def model_paths(self) -> dict[str, str]:
        """Model paths beyond the default one that this task routes inputs to (name -> the variant optimize puts
        on it, e.g. {"complex": "onnx-fp32"}); preprocess sets each Item's path."""
        return {}

    @property
    def max_cost(self) -> int:
        """The largest cost one item can have (text: its max length): a batch's cost budget never goes below."""
        return 1

    @abstractmethod
    def warmup_batches(self, max_batch: int, max_cost: int) -> list[Arrays]:
        """Batches of the shapes serving will see (small and largest), run before the server says ready."""

    # -- the artifact ----------------------------------------------------------------------------------------

    @abstractmethod
    def config(self) -> dict[str, Any]:
        """What the task needs at serve time besides its assets (JSON): the manifest's task.config."""

    @abstractmethod
    def assets(self, work: Path) -> dict[str, Path]:
        """Files the artifact must carry (name in the artifact -> where it is now); `work` is a scratch folder
        for the files the task has to write first."""

    @classmethod
    @abstractmethod
    def from_artifact(cls, config: dict[str, Any], directory: Path) -> Task:
        """The task as serve needs it, from the manifest's task.config and the asset files in `directory`."""


V2_DATATYPES = {
    "bool": "BOOL",
    "uint8": "UINT8",
    "uint16": "UINT16",
    "uint32": "UINT32",
    "uint64": "UINT64",
    "int8": "INT8",
    "int16": "INT16",
    "int32": "INT32",
    "int64": "INT64",
    "float16": "FP16",
    "float32": "FP32",
    "float64": "FP64",
    "str": "BYTES",
}


def v2_texts(values: Any, field: str) -> list[str]:
    """A BYTES tensor's elements as text: JSON carries them as str, gRPC as bytes (which must be UTF-8)."""
    if not isinstance(values, list):
        raise InvalidInput(f"input {field!r} must be BYTES (UTF-8 strings)", field)
    texts = []
    for i, value in enumerate(values):
        if isinstance(value, bytes):
            try:
                value = value.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise InvalidInput(
                    f"{field}[{i}] is not valid UTF-8 ({exc.reason} at byte {exc.start})", field
                ) from None
        if not isinstance(value, str):
            raise InvalidInput(f"input {field!r} must be BYTES (UTF-8 strings)", field)
        texts.append(value)
    return texts


def per_row(value: np.ndarray, rows: int) -> np.ndarray:
    """A batch output as one value per row (n,) or as columns (n, d)."""
    flat = np.asarray(value).reshape(rows, -1)
    return flat[:, 0] if flat.shape[1] == 1 else flat


def _v2_metadata(spec: TensorSpec) -> dict[str, Any]:
    return {
        "name": spec.name,
        "datatype": V2_DATATYPES.get(spec.dtype, spec.dtype.upper()),
        "shape": [-1 if isinstance(size, str) else size for size in spec.shape],
    }
