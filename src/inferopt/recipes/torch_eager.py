"""PyTorch eager FP32: the original model as teams run it today, and the baseline every ratio is taken to."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from inferopt.recipes.base import BuildContext, Variant, register


@dataclass(frozen=True)
class TorchEagerConfig:
    kind: ClassVar[str] = "torch-eager"
    version: int = 1
    name: str = "torch-fp32"


@register(TorchEagerConfig)
def build_torch_eager(context: BuildContext, config: TorchEagerConfig) -> Variant:
    return torch_variant(context, config, autocast_dtype=None)


def torch_variant(context: BuildContext, config: object, *, autocast_dtype: str | None) -> Variant:
    from inferopt.runtime.torch import TorchBackend

    module = context.source.module
    if module is None:
        raise ValueError("there is no PyTorch module to run: the model was given as an ONNX file")
    schema = context.task.io_schema()
    return Variant(
        name=config.name,  # type: ignore[attr-defined]
        config=config,
        runtime="torch",
        make_backend=lambda threads: TorchBackend(
            module, schema.input_names, schema.output_names, intra_op_threads=threads, autocast_dtype=autocast_dtype
        ),
        size_bytes=context.source.size_bytes,
    )
