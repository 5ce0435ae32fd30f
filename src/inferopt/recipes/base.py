"""The recipe contract: configs that round-trip through JSON, handlers registered per config type, and the
BuildContext that holds what every recipe shares (the task, the source model, the FP32 export, calibration
data). A recipe never names a task: it asks the context for calibration batches and the fusion profile."""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol, TypeVar

from inferopt.hardware import CpuInfo
from inferopt.recipes.calibration import Calibration
from inferopt.runtime.base import Backend
from inferopt.runtime.placement import Placement
from inferopt.tasks.base import FusionProfile, Source, Task

FAMILY_MODULES = (
    "torch_eager",
    "half",
    "graph",
    "int8_dynamic",
    "int8_sensitivity",
    "int8_static",
    "embedding_int8",
    "fp16_storage",
    "gpu",
    "prune",
)


class RecipeConfig(Protocol):
    """A frozen dataclass with `kind` (ClassVar), `version` and `name` fields."""

    kind: ClassVar[str]
    version: int
    name: str


@dataclass
class Variant:
    """A built candidate: how to instantiate it, and what building it found out."""

    name: str
    config: Any  # a RecipeConfig
    runtime: str  # "onnxruntime" | "torch"
    make_backend: Callable[[int], Backend]  # intra-op threads -> a fresh backend
    model_path: Path | None = None  # the file an artifact would ship (ONNX variants only)
    size_bytes: int = 0
    notes: dict[str, Any] = field(default_factory=dict)
    build_seconds: float = 0.0
    placement: Placement = field(default_factory=Placement.cpu)  # where it is benchmarked, so where it is served

    @property
    def servable(self) -> bool:
        return self.runtime == "onnxruntime" and self.model_path is not None

    @property
    def multi_session(self) -> bool:
        """Whether N independent single-thread instances make sense (torch shares one global thread pool)."""
        return self.runtime == "onnxruntime" and not self.placement.on_gpu


@dataclass
class BuildContext:
    """Shared inputs of every recipe. Expensive intermediates (the fused graph) are built once, on demand."""

    task: Task
    source: Source
    work_dir: Path
    cpu: CpuInfo
    fp32_onnx: Path  # the verified export (or the user's own ONNX file)
    calibration: Calibration
    on_progress: Callable[[float, str], None] | None = None  # long builds (distillation): share done, status
    _cache: dict[str, Any] = field(default_factory=dict)

    @property
    def fusion(self) -> FusionProfile:
        return self.source.fusion

    def cached(self, key: str, make: Callable[[], Any]) -> Any:
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]


C = TypeVar("C")
Handler = Callable[[BuildContext, Any], Variant]
_HANDLERS: dict[type, Handler] = {}
_CONFIG_TYPES: dict[str, type] = {}


def register(
    config_type: type[C],
) -> Callable[[Callable[[BuildContext, C], Variant]], Callable[[BuildContext, C], Variant]]:
    def decorate(handler: Callable[[BuildContext, C], Variant]) -> Callable[[BuildContext, C], Variant]:
        _HANDLERS[config_type] = handler
        _CONFIG_TYPES[config_type.kind] = config_type  # type: ignore[attr-defined]
        return handler

    return decorate


def _load_families() -> None:
    for module in FAMILY_MODULES:
        importlib.import_module(f"inferopt.recipes.{module}")


def build(context: BuildContext, config: Any) -> Variant:
    """The one verb: build any recipe from its config."""
    _load_families()
    handler = _HANDLERS.get(type(config))
    if handler is None:
        raise TypeError(f"no recipe handler registered for {type(config).__name__}")
    started = time.perf_counter()
    variant = handler(context, config)
    variant.build_seconds = time.perf_counter() - started
    return variant


def config_to_dict(config: Any) -> dict[str, Any]:
    """A recipe config as JSON; a field holding another recipe's config (a student's `then`) nests as its own."""
    data = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
    return {"kind": type(config).kind, **{k: _json_value(v) for k, v in data.items()}}


def _json_value(value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    if dataclasses.is_dataclass(value) and hasattr(type(value), "kind"):
        return config_to_dict(value)
    return value


def config_from_dict(data: dict[str, Any]) -> Any:
    _load_families()
    kind = data.get("kind")
    if kind not in _CONFIG_TYPES:
        raise ValueError(f"unknown recipe kind {kind!r}")
    config_type = _CONFIG_TYPES[kind]
    fields = {f.name: f for f in dataclasses.fields(config_type)}
    values = {k: _config_value(v) for k, v in data.items() if k in fields}
    return config_type(**values)


def _config_value(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(value)
    if isinstance(value, dict) and "kind" in value:
        return config_from_dict(value)
    return value


def file_size(path: Path) -> int:
    return path.stat().st_size


def onnx_variant(
    name: str, config: Any, path: Path, notes: dict[str, Any] | None = None, *, placement: Placement | None = None
) -> Variant:
    """A variant served by ONNX Runtime from the model file at `path`, on `placement` (default: the CPU)."""
    from inferopt.runtime.onnx import open_backend

    placement = placement or Placement.cpu()
    return Variant(
        name=name,
        config=config,
        runtime="onnxruntime",
        make_backend=lambda threads: open_backend(path, placement, threads),
        model_path=path,
        size_bytes=file_size(path),
        notes=notes or {},
        placement=placement,
    )


@contextlib.contextmanager
def quiet_root_logger() -> Iterator[None]:
    """ONNX Runtime's quantizers log advice at WARNING on the root logger: silenced while they run, and the
    level put back after, so that the process's own warnings (a user's, serve's) are not silenced with them."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)
