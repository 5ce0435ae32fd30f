"""What this machine can do, detected at run time: CPU model and ISA flags, cores, NVIDIA GPUs, package versions.

Recipes pick their presets from these flags (never assumed), and every result carries them.
"""

from __future__ import annotations

import functools
import importlib.metadata
import os
import platform
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

# Flags that change which kernels are fast; the rest of /proc/cpuinfo is noise in a report.
_RELEVANT_FLAGS = (
    "avx2",
    "fma",
    "avx512f",
    "avx512bw",
    "avx512vl",
    "avx512_vnni",
    "avx_vnni",
    "avx512_bf16",
    "amx_bf16",
    "amx_int8",
    "amx_tile",
    "avx512_fp16",
)


@dataclass(frozen=True)
class CpuInfo:
    model: str
    flags: frozenset[str] = field(default_factory=frozenset)
    logical_cores: int = 1
    physical_cores: int = 1

    @property
    def has_int8_dot(self) -> bool:
        """VNNI (or AMX-INT8): u8 x s8 dot products without the int16 saturation of plain AVX2/AVX-512."""
        return bool(self.flags & {"avx512_vnni", "avx_vnni", "amx_int8"})

    @property
    def has_bf16(self) -> bool:
        return bool(self.flags & {"avx512_bf16", "amx_bf16"})

    def relevant_flags(self) -> list[str]:
        return sorted(f for f in _RELEVANT_FLAGS if f in self.flags)


def _parse_cpuinfo(text: str) -> tuple[str, frozenset[str]]:
    model, flags = "", frozenset[str]()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and not model:
            model = value.strip()
        elif key == "flags" and not flags:
            flags = frozenset(value.split())
    return model, flags


@functools.cache
def cpu_info() -> CpuInfo:
    import psutil

    model, flags = "", frozenset[str]()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        model, flags = _parse_cpuinfo(cpuinfo.read_text(errors="replace"))
    logical = os.cpu_count() or 1
    physical = psutil.cpu_count(logical=False) or logical
    return CpuInfo(model or platform.processor() or "unknown", flags, logical, physical)


@dataclass(frozen=True)
class GpuInfo:
    index: int
    name: str
    memory_mib: int
    compute_capability: str  # "9.0" for an H100/H200; "" where the driver is too old to say
    driver: str


GPU_PACKAGES = ("onnxruntime-gpu", "tensorrt", "tensorrt-cu12", "nvidia-cudnn-cu12", "nvidia-cuda-runtime-cu12")
# nvidia-smi's query fields; compute_cap needs driver 510 or later, so an older driver is asked without it.
_GPU_FIELDS = ("index", "name", "memory.total", "compute_cap", "driver_version")


def _parse_gpus(text: str, fields: tuple[str, ...]) -> list[GpuInfo]:
    gpus = []
    for line in text.strip().splitlines():
        row = dict(zip(fields, (cell.strip() for cell in line.split(",")), strict=False))
        if not row.get("index", "").isdigit():
            continue  # not a device row (a warning nvidia-smi printed)
        memory = row.get("memory.total", "")
        gpus.append(
            GpuInfo(
                index=int(row["index"]),
                name=row.get("name", "unknown"),
                memory_mib=int(float(memory)) if memory.replace(".", "", 1).isdigit() else 0,
                compute_capability=row.get("compute_cap", ""),
                driver=row.get("driver_version", ""),
            )
        )
    return gpus


def _nvidia_smi(*args: str) -> str | None:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        run = subprocess.run([exe, *args], capture_output=True, text=True, timeout=15, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return run.stdout if run.returncode == 0 else None


@functools.cache
def gpu_info() -> tuple[GpuInfo, ...]:
    """The NVIDIA GPUs this machine has, as the driver reports them; none where there is no driver."""
    for fields in (_GPU_FIELDS, tuple(f for f in _GPU_FIELDS if f != "compute_cap")):
        out = _nvidia_smi(f"--query-gpu={','.join(fields)}", "--format=csv,noheader,nounits")
        if out is not None:
            return tuple(_parse_gpus(out, fields))
    return ()


def _cuda_driver_version(text: str) -> str | None:
    """The newest CUDA version the driver supports, from nvidia-smi's banner ("CUDA Version: 12.4")."""
    _, found, rest = text.partition("CUDA Version:")
    return rest.split()[0] if found and rest.split() else None


def gpu_environment() -> dict[str, object]:
    """The GPU part of the environment record: devices, the driver's CUDA, and the CUDA-side packages."""
    gpus = gpu_info()
    if not gpus:
        return {"gpus": []}
    banner = _nvidia_smi() or ""
    torch = sys.modules.get("torch")  # only where already imported: detection must not load torch
    packages = {name: version for name, version in package_versions(GPU_PACKAGES).items() if version != "not installed"}
    return {
        "gpus": [asdict(g) for g in gpus],
        "cuda_driver": _cuda_driver_version(banner),
        "torch_cuda": getattr(getattr(torch, "version", None), "cuda", None),
        "gpu_packages": packages,
    }


def usable_cores() -> int:
    """Cores this process may run on (cgroup/affinity aware where the OS says)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def package_versions(
    names: tuple[str, ...] = ("inferopt", "numpy", "torch", "onnx", "onnxruntime", "tokenizers", "transformers"),
) -> dict[str, str]:
    versions = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def environment() -> dict[str, object]:
    """The record attached to every result: where and with what it was measured."""
    cpu = cpu_info()
    return {
        "cpu_model": cpu.model,
        "cpu_flags": cpu.relevant_flags(),
        "logical_cores": cpu.logical_cores,
        "usable_cores": usable_cores(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": package_versions(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        **gpu_environment(),
    }
