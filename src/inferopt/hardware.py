"""What this machine can do, detected at run time: CPU model and ISA flags, cores, package versions.

Recipes pick their presets from these flags (never assumed), and every result carries them.
"""

from __future__ import annotations

import functools
import importlib.metadata
import os
import platform
from dataclasses import dataclass, field
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
    }
