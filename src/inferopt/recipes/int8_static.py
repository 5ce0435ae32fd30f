"""INT8 static quantization (QDQ): activation ranges fixed ahead of time from calibration data, so no
per-batch range computation at run time. Built on the plain graph: the QDQ form of fused contrib ops is not
supported by ONNX Runtime's quantizer."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

from inferopt.recipes.base import BuildContext, Variant, onnx_variant, quiet_root_logger, register


@dataclass(frozen=True)
class StaticInt8Config:
    kind: ClassVar[str] = "int8-static"
    version: int = 3
    name: str = "int8-static-qdq"
    per_channel: bool = True
    op_types: tuple[str, ...] = ("MatMul",)  # empty: ONNX Runtime's default set (Conv, MatMul, Gemm, ...)
    calibration_method: str = "minmax"  # "minmax" | "entropy" | "percentile"
    calibration_items: int = 128
    calibration_batch: int = 8
    # 7-bit weights: x86 without VNNI multiplies u8 x s8 pairs into int16 sums that can saturate at full range
    reduce_range: bool = False


class _Batches:
    """ONNX Runtime's CalibrationDataReader protocol over collated calibration batches."""

    def __init__(self, batches: list[dict[str, Any]]) -> None:
        self._iter: Iterator[dict[str, Any]] = iter(batches)

    def get_next(self) -> dict[str, Any] | None:
        return next(self._iter, None)


@register(StaticInt8Config)
def build_static_int8(context: BuildContext, config: StaticInt8Config) -> Variant:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    methods = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }
    if config.calibration_method not in methods:
        raise ValueError(f"calibration_method must be one of {sorted(methods)}")
    calibration = context.calibration.first(config.calibration_items)
    batches = calibration.batches(config.calibration_batch)
    out = context.work_dir / f"{config.name}.onnx"
    with quiet_root_logger(), contextlib.redirect_stdout(io.StringIO()):  # the calibrators print their progress
        quantize_static(
            context.fp32_onnx,
            out,
            _Batches(batches),
            quant_format=QuantFormat.QDQ,
            per_channel=config.per_channel,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            op_types_to_quantize=list(config.op_types) or None,
            calibrate_method=methods[config.calibration_method],
            reduce_range=config.reduce_range,
        )
    return onnx_variant(config.name, config, out, {"calibration_items": len(calibration)})
