"""FP16 storage: the float weights kept as float16 in the model file, cast back to float32 where they are used.

Where the runtime has FP16 kernels (CUDA; some ARM CPUs) a graph converts whole; x86 CPUs have almost none, so
on them the Cast of a constant is folded when the session loads: the file is half the size and the numbers are
FP16-rounded weights computed in FP32, at FP32's speed. What it buys is measured, not assumed, like any recipe.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from inferopt.recipes.base import BuildContext, Variant, onnx_variant, register


@dataclass(frozen=True)
class FP16StorageConfig:
    kind: ClassVar[str] = "fp16-storage"
    version: int = 1
    name: str = "fp16-storage"
    min_elements: int = 1024  # smaller tensors (biases) stay float32: nothing to save


def store_half(model: Any, min_elements: int) -> tuple[Any, int]:
    """The model with its large float32 initializers as float16 behind a Cast; how many were converted."""
    from onnx import helper, numpy_helper

    converted, casts = 0, []
    for init in list(model.graph.initializer):
        if init.data_type != 1 or int(np.prod(init.dims)) < min_elements:
            continue
        half = numpy_helper.to_array(init).astype(np.float16)
        model.graph.initializer.remove(init)
        model.graph.initializer.append(numpy_helper.from_array(half, f"{init.name}_fp16"))
        casts.append(helper.make_node("Cast", [f"{init.name}_fp16"], [init.name], name=f"{init.name}_to_fp32", to=1))
        converted += 1
    nodes = list(model.graph.node)
    del model.graph.node[:]
    model.graph.node.extend(casts + nodes)
    return model, converted


@register(FP16StorageConfig)
def build_fp16_storage(context: BuildContext, config: FP16StorageConfig) -> Variant:
    import onnx

    model, converted = store_half(onnx.load(str(context.fp32_onnx)), config.min_elements)
    if not converted:
        raise ValueError(f"no float32 initializer has {config.min_elements} elements or more")
    onnx.checker.check_model(model)
    out = context.work_dir / f"{config.name}.onnx"
    onnx.save(model, str(out))
    return onnx_variant(config.name, config, out, {"fp16_initializers": converted})
