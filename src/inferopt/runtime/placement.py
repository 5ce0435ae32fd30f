"""Where a model runs and how: the device, the execution providers in order, and the per-device settings
(the shape buckets batches are padded to, TensorRT's precision).

A variant is benchmarked with one placement, the manifest records it, and everything that opens the artifact
again (serve, Predictor, profile) builds its backends from it. Nothing picks "whatever onnxruntime offers":
a CPU-measured artifact on a GPU host runs on the CPU, and an artifact whose placement this machine cannot give
is refused with what is missing, unless the caller asks for the CPU and is warned that the benchmark no
longer applies.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from inferopt.errors import InferoptError, InputError, PlacementUnavailable
from inferopt.hashing import sha256_unchanged_file

__all__ = ["Placement", "PlacementUnavailable", "missing", "require", "resolve"]

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
TENSORRT = "TensorrtExecutionProvider"
DEVICES = ("cpu", "cuda")
GPU_PROVIDERS = (TENSORRT, CUDA)
DEFAULT_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)  # up to the benchmark's largest batch (BenchPlan)
DEFAULT_SEQUENCE_BUCKETS = (16, 32, 64, 128, 256, 512)
DEVICE_HELP = "cpu: run on the CPU whatever the artifact was benchmarked on (default: where it was benchmarked)"
GPU_EXTRA_HINT = "pip install 'inferopt[gpu]' (onnxruntime-gpu) on a machine with an NVIDIA GPU and its driver"


@dataclass(frozen=True)
class Placement:
    version: int = 1
    device: str = "cpu"  # cpu | cuda
    providers: tuple[str, ...] = (CPU,)  # in order of preference; the last is where unsupported nodes fall
    device_id: int = 0  # which GPU (cuda only)
    batch_buckets: tuple[int, ...] = ()  # the batch sizes a batch is padded up to (empty: any size runs as is)
    sequence_buckets: tuple[int, ...] = ()  # the same for the padded sequence axis of a text model
    tensorrt_precision: str = "fp32"  # fp32 | fp16 | int8 (TensorRT only)

    def __post_init__(self) -> None:
        for name in ("version", "device_id"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"placement {name} must be a whole number >= 0, not {value!r}")
        if self.device not in DEVICES:
            raise ValueError(f"placement device must be one of {', '.join(DEVICES)}, not {self.device!r}")
        if not self.providers:
            raise ValueError("a placement needs at least one execution provider")
        if self.device == "cpu" and set(self.providers) != {CPU}:
            raise ValueError(f"a CPU placement runs on {CPU} only, not {', '.join(self.providers)}")
        if self.device == "cuda" and self.providers[0] not in GPU_PROVIDERS:
            raise ValueError(f"a CUDA placement starts with {' or '.join(GPU_PROVIDERS)}, not {self.providers[0]}")
        if self.tensorrt_precision not in ("fp32", "fp16", "int8"):
            raise ValueError(f"TensorRT precision must be fp32, fp16 or int8, not {self.tensorrt_precision!r}")
        for name in ("batch_buckets", "sequence_buckets"):
            buckets = getattr(self, name)
            if list(buckets) != sorted(set(buckets)) or any(b < 1 for b in buckets):
                raise ValueError(f"{name} must be increasing positive sizes, got {list(buckets)}")

    @classmethod
    def cpu(cls) -> Placement:
        return cls()

    @classmethod
    def cuda(cls, device_id: int = 0) -> Placement:
        """The CUDA execution provider, with the CPU provider for the few nodes CUDA has no kernel for."""
        return cls(device="cuda", providers=(CUDA, CPU), device_id=device_id)

    @classmethod
    def tensorrt(cls, device_id: int = 0, *, precision: str = "fp16") -> Placement:
        """TensorRT, with CUDA and then the CPU for the subgraphs TensorRT does not take. Batches are padded to
        shape buckets: TensorRT builds an engine for the range of shapes it has seen, and rebuilds it for a
        shape outside that range, so the shapes are fixed up front and all built at warm-up."""
        return cls(
            device="cuda",
            providers=(TENSORRT, CUDA, CPU),
            device_id=device_id,
            batch_buckets=DEFAULT_BATCH_BUCKETS,
            sequence_buckets=DEFAULT_SEQUENCE_BUCKETS,
            tensorrt_precision=precision,
        )

    @property
    def on_gpu(self) -> bool:
        return self.device == "cuda"

    @property
    def uses_engine_cache(self) -> bool:
        return TENSORRT in self.providers

    @property
    def label(self) -> str:
        if not self.on_gpu:
            return "cpu"
        parts = [f"{'tensorrt' if self.providers[0] == TENSORRT else 'cuda'}:{self.device_id}"]
        if self.providers[0] == TENSORRT:
            parts.append(self.tensorrt_precision)
        return " ".join(parts)

    def session_providers(self, engine_cache_root: Path | None = None) -> list[tuple[str, dict[str, str]]]:
        """What onnxruntime.InferenceSession takes as `providers`: each provider with its options."""
        return [(name, self._provider_options(name, engine_cache_root)) for name in self.providers]

    def _provider_options(self, name: str, engine_cache_root: Path | None) -> dict[str, str]:
        if name == CUDA:
            options = {"device_id": str(self.device_id), "cudnn_conv_algo_search": "EXHAUSTIVE"}
            return options
        if name == TENSORRT:
            options = {"device_id": str(self.device_id)}
            if self.tensorrt_precision in ("fp16", "int8"):
                options["trt_fp16_enable"] = "1"  # int8 layers TensorRT cannot take fall back to fp16
            if self.tensorrt_precision == "int8":
                options["trt_int8_enable"] = "1"
            if engine_cache_root is not None:
                options |= {"trt_engine_cache_enable": "1", "trt_engine_cache_path": str(engine_cache_root)}
            return options
        return {}

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Placement:
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown placement fields {', '.join(unknown)} (from a newer inferopt?)")
        values: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        return cls(**values)


def engine_cache_dir(model_path: Path, placement: Placement) -> Path:
    """Where TensorRT keeps the engines it built for this model, so that a restart loads them instead of building
    them again (minutes for a large model). An engine holds the graph, the precision, the GPU it was built for
    and the TensorRT inside onnxruntime, so all of them key the folder: nothing stale is ever loaded.
    INFEROPT_ENGINE_CACHE moves the root (default: ~/.cache/inferopt/tensorrt)."""
    import onnxruntime as ort

    from inferopt.hardware import gpu_info, package_versions

    gpus = {g.index: f"{g.name} {g.compute_capability}" for g in gpu_info()}
    context = [sha256_unchanged_file(model_path), placement.tensorrt_precision, ort.__version__]
    context += [gpus.get(placement.device_id, ""), *package_versions(("tensorrt", "tensorrt-cu12")).values()]
    digest = hashlib.sha256("\0".join(context).encode())
    default_root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "inferopt" / "tensorrt"
    folder = Path(os.environ.get("INFEROPT_ENGINE_CACHE") or default_root) / digest.hexdigest()[:16]
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InferoptError(
            f"TensorRT's engine cache {folder} cannot be created ({exc.strerror})",
            "set INFEROPT_ENGINE_CACHE to a writable folder",
        ) from exc
    return folder


def missing(placement: Placement, providers: list[str], gpus: int) -> list[str]:
    """What this machine lacks to give `placement`: its onnxruntime build's providers and the GPUs it sees."""
    if not placement.on_gpu:
        return []
    lacking = [f"onnxruntime's {name}" for name in placement.providers if name != CPU and name not in providers]
    if gpus == 0:
        lacking.append("an NVIDIA GPU (nvidia-smi finds none)")
    elif placement.device_id >= gpus:
        lacking.append(f"GPU {placement.device_id} (this process sees {gpus}; CUDA_VISIBLE_DEVICES may narrow them)")
    return lacking


def visible_gpus(installed: int) -> int:
    """The GPUs this process may use: CUDA_VISIBLE_DEVICES narrows the installed ones (Ray gives each replica
    its own GPU that way, as device 0)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return installed
    ids = [part.strip() for part in visible.split(",") if part.strip()]
    return len(ids[: ids.index("-1")] if "-1" in ids else ids)  # CUDA stops at the first invalid id


def gpu_providers() -> tuple[str, ...]:
    """The GPU providers this machine can give, best first: none without an NVIDIA GPU and onnxruntime-gpu."""
    import onnxruntime as ort

    from inferopt.hardware import gpu_info

    have = list(ort.get_available_providers())
    gpus = visible_gpus(len(gpu_info()))
    return tuple(p for p in GPU_PROVIDERS if gpus and p in have and (p == CUDA or CUDA in have))


def require(placement: Placement, what: str = "the artifact") -> None:
    """Raise PlacementUnavailable, naming what is missing, unless this machine can give `placement`."""
    if not placement.on_gpu:
        return
    import onnxruntime as ort

    from inferopt.hardware import gpu_info

    lacking = missing(placement, list(ort.get_available_providers()), visible_gpus(len(gpu_info())))
    if lacking:
        raise PlacementUnavailable(
            f"{what} was benchmarked on {placement.label}, and this machine lacks {', '.join(lacking)}",
            f"{GPU_EXTRA_HINT}, or pass --device cpu to run it on the CPU (its benchmark then no longer applies)",
        )


def check_device(device: str | None) -> None:
    """`--device` takes cpu only; without it an artifact runs where its benchmark ran."""
    if device not in (None, "cpu"):
        raise InputError(
            f"--device {device!r} is not a choice", "leave it out to run where the benchmark ran, or pass --device cpu"
        )


def resolve(recorded: Placement, device: str | None = None, what: str = "the artifact") -> Placement:
    """The placement to open an artifact on: the one its benchmark ran, refused where this machine cannot give
    it; with `device="cpu"`, the CPU whatever was recorded, with a warning where that moves the model."""
    if device is None:
        require(recorded, what)
        return recorded
    check_device(device)
    if recorded.on_gpu:
        logging.getLogger(__name__).warning(
            "%s was benchmarked on %s and runs on the CPU (--device cpu): its measured speed no longer applies",
            what,
            recorded.label,
        )
    return Placement.cpu()
