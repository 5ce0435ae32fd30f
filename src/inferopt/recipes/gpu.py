"""GPU recipes, offered only where this machine has an NVIDIA GPU and onnxruntime-gpu (`inferopt[gpu]`):

- `onnx-fp32-cuda` / `onnx-fp16-cuda`: the graph on the CUDA execution provider, as exported or converted to
  float16. The conversion keeps the model's inputs and outputs float32 (clients and the accuracy check see the
  same tensors as on CPU) and keeps in float32 the ops whose sums lose most in float16 (FP32_OPS).
- `tensorrt-fp16`: the float32 graph handed to TensorRT with FP16 kernels allowed; TensorRT picks per layer.

On CUDA, BERT-family encoders get ONNX Runtime's GPU fusions first (SkipLayerNormalization included: unlike
the CPU kernel, the CUDA one is the fast path); TensorRT gets the plain export and fuses it itself. Each
variant carries its placement, which the benchmark runs it on and the manifest records, so serve runs it where
it was measured.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from inferopt.recipes.base import BuildContext, Variant, onnx_variant, register
from inferopt.recipes.graph import fused_model
from inferopt.runtime.placement import Placement

# Ops kept in float32 inside a float16 graph: the ones that sum over a whole row. LayerNormalization and Softmax;
# ReduceMean / Pow / Sqrt are what a LayerNorm exported without the fused op is made of; ReduceSum / ReduceL2 are
# mean pooling and the final normalization. ONNX Runtime's fused normalizations (SkipLayerNormalization,
# EmbedLayerNormalization) and Attention take float16 tensors and accumulate in float32 inside the kernel, so
# they are converted: keeping SkipLayerNormalization in float32 made a graph onnxruntime refuses to load
# (its inputs bound to both float16 and float).
FP32_OPS = ("LayerNormalization", "Softmax", "ReduceMean", "ReduceSum", "ReduceL2", "Pow", "Sqrt")
PROVIDERS = ("cuda", "tensorrt")


@dataclass(frozen=True)
class GpuConfig:
    kind: ClassVar[str] = "gpu"
    version: int = 1
    name: str = "onnx-fp16-cuda"
    provider: str = "cuda"  # cuda | tensorrt
    precision: str = "fp16"  # cuda: the graph's float type; tensorrt: the precision its kernels may use
    fp32_ops: tuple[str, ...] = FP32_OPS  # cuda fp16 only
    device_id: int = 0

    def __post_init__(self) -> None:
        if self.provider not in PROVIDERS:
            raise ValueError(f"GPU recipe provider must be one of {', '.join(PROVIDERS)}, not {self.provider!r}")
        if self.precision not in ("fp32", "fp16"):
            raise ValueError(f"GPU recipe precision must be fp32 or fp16, not {self.precision!r}")

    @property
    def placement(self) -> Placement:
        if self.provider == "tensorrt":
            return Placement.tensorrt(self.device_id, precision=self.precision)
        return Placement.cuda(self.device_id)


def to_float16(source: Path, out: Path, fp32_ops: tuple[str, ...] = FP32_OPS) -> Path:
    """`source` converted to float16, with float32 inputs and outputs and `fp32_ops` left in float32."""
    import onnx
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

    model = onnx.load(str(source))
    converted = convert_float_to_float16(
        model, keep_io_types=True, op_block_list=sorted({*DEFAULT_OP_BLOCK_LIST, *fp32_ops})
    )
    onnx.save(converted, str(out))
    return out


@register(GpuConfig)
def build_gpu(context: BuildContext, config: GpuConfig) -> Variant:
    # TensorRT's parser takes standard ONNX ops only: onnxruntime's fused ones (Attention, SkipLayerNormalization)
    # would stay on CUDA and leave TensorRT fragments. It gets the export and fuses it itself.
    fused = context.fusion.kind == "bert" and config.provider == "cuda"
    graph = fused_model(context, for_gpu=True) if fused else context.fp32_onnx
    notes: dict[str, Any] = {"placement": config.placement.label}
    if config.provider == "cuda" and config.precision == "fp16":
        graph = to_float16(graph, context.work_dir / f"{config.name}.onnx", config.fp32_ops)
        notes["fp32_ops"] = list(config.fp32_ops)
    return onnx_variant(config.name, config, graph, notes, placement=config.placement)
