"""Half precision. On CPU: BF16 through PyTorch autocast, offered only where the CPU has native BF16
(AVX512-BF16 or AMX-BF16); elsewhere it would be emulated and slower than FP32. FP16 is a GPU recipe and is
not offered on CPU."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from inferopt.hardware import CpuInfo
from inferopt.recipes.base import BuildContext, Variant, register
from inferopt.recipes.torch_eager import torch_variant


@dataclass(frozen=True)
class HalfPrecisionConfig:
    kind: ClassVar[str] = "half-autocast"
    version: int = 1
    name: str = "torch-bf16"
    dtype: str = "bfloat16"

    @staticmethod
    def available(cpu: CpuInfo) -> bool:
        return cpu.has_bf16


@register(HalfPrecisionConfig)
def build_half(context: BuildContext, config: HalfPrecisionConfig) -> Variant:
    if config.dtype != "bfloat16":
        raise ValueError(f"CPU half precision supports bfloat16 only, not {config.dtype}")
    variant = torch_variant(context, config, autocast_dtype=config.dtype)
    variant.notes["cpu_bf16"] = context.cpu.has_bf16
    return variant
