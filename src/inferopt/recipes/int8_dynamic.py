"""INT8 dynamic quantization: weights quantized ahead of time, activations per batch at run time.

Presets are named constructors. `study_default()` is the recipe of the published study on this model
(per-tensor, ORT's default op types, plain graph): the reference point. `for_cpu(cpu)` chooses the weight
encoding from the detected CPU: with VNNI/AMX-INT8, u8 activations x s8 weights run at full range; without
it the AVX2/AVX-512 u8s8 path (vpmaddubsw) can saturate its int16 sums, so weights use 7 bits
(reduce_range), as ONNX Runtime advises.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

from inferopt.hardware import CpuInfo
from inferopt.recipes.base import BuildContext, Variant, onnx_variant, quiet_root_logger, register
from inferopt.recipes.graph import fused_model


@dataclass(frozen=True)
class DynamicInt8Config:
    kind: ClassVar[str] = "int8-dynamic"
    version: int = 1
    name: str = "int8-dynamic"
    graph: str = "fused"  # "fused" (transformer fusions first) or "plain" (the export as is)
    per_channel: bool = True
    op_types: tuple[str, ...] = ()  # empty: ONNX Runtime's default set for dynamic quantization
    weight_type: str = "s8"  # "s8" or "u8"
    reduce_range: bool = False
    exclude_nodes: tuple[str, ...] = ()
    smooth_alpha: float | None = None  # SmoothQuant migration strength (see smoothing.py); None: off

    def __post_init__(self) -> None:
        if self.graph not in ("fused", "plain"):
            raise ValueError(f"graph must be 'fused' or 'plain', not {self.graph!r}")
        if self.weight_type not in ("s8", "u8"):
            raise ValueError(f"weight_type must be 's8' or 'u8', not {self.weight_type!r}")

    @classmethod
    def study_default(cls) -> DynamicInt8Config:
        return cls(name="int8-study-default", graph="plain", per_channel=False)

    @classmethod
    def for_cpu(cls, cpu: CpuInfo, **overrides: Any) -> DynamicInt8Config:
        preset = cls(name="int8-per-channel", per_channel=True, weight_type="s8", reduce_range=not cpu.has_int8_dot)
        return replace(preset, **overrides)

    @classmethod
    def smoothquant(cls, cpu: CpuInfo, alpha: float) -> DynamicInt8Config:
        """Per-channel INT8 on the SmoothQuant-smoothed fused graph (see smoothing.py)."""
        return cls.for_cpu(cpu, name=f"int8-smooth-{alpha:g}", smooth_alpha=alpha)

    @classmethod
    def matmul_only(cls, cpu: CpuInfo) -> DynamicInt8Config:
        return cls.for_cpu(cpu, name="int8-matmul-only", graph="plain", op_types=("MatMul",))


SMOOTHED_OPS = ("MatMul", "Attention")
SMOOTHING_TEXTS = 256  # calibration items the activation peaks are taken over


def base_graph(context: BuildContext, config: DynamicInt8Config) -> Path:
    """The FP32 graph this config quantizes: plain or fused, smoothed when asked."""
    graph = fused_model(context) if config.graph == "fused" else context.fp32_onnx
    alpha = config.smooth_alpha
    if alpha is None:
        return graph
    key = f"smoothed-{config.graph}-{alpha}"
    smoothed: Path = context.cached(key, lambda: _smoothed(context, graph, alpha, key))
    return smoothed


def _smoothed(context: BuildContext, graph: Path, alpha: float, key: str) -> Path:
    import onnx

    from inferopt.recipes.calibration import channel_absmax
    from inferopt.recipes.smoothing import smooth_graph, weight_matmul_inputs

    model = onnx.load(str(graph))
    absmax = context.cached(
        f"absmax-{graph.name}",
        lambda: channel_absmax(
            model,
            weight_matmul_inputs(model, SMOOTHED_OPS),
            context.calibration.first(SMOOTHING_TEXTS),
            context.fusion.mask_input,
        ),
    )
    out = context.work_dir / f"{key}.onnx"
    onnx.save(smooth_graph(model, absmax, alpha, SMOOTHED_OPS), str(out))
    return out


def quantize_dynamic_model(context: BuildContext, config: DynamicInt8Config, out: Path) -> Path:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    graph = base_graph(context, config)
    with quiet_root_logger():
        quantize_dynamic(
            graph,
            out,
            per_channel=config.per_channel,
            reduce_range=config.reduce_range,
            weight_type=QuantType.QInt8 if config.weight_type == "s8" else QuantType.QUInt8,
            op_types_to_quantize=list(config.op_types) or None,
            nodes_to_exclude=list(config.exclude_nodes) or None,
            # Fused contrib ops (Attention, SkipLayerNormalization) defeat ONNX shape inference; their float
            # outputs need stating so the quantizer can type the MatMuls that follow them.
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
    return out


@register(DynamicInt8Config)
def build_dynamic_int8(context: BuildContext, config: DynamicInt8Config) -> Variant:
    path = quantize_dynamic_model(context, config, context.work_dir / f"{config.name}.onnx")
    return onnx_variant(config.name, config, path, {"excluded_nodes": list(config.exclude_nodes)})
