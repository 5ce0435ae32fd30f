"""PyTorch eager FP32: the original model as teams run it today, and the baseline every ratio is taken to."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from inferopt.recipes.base import BuildContext, Variant, register
from inferopt.tasks.text_embedding import OUTPUT_NAME, WEIGHT_FILES


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
    from inferopt.tasks.text_embedding import load_source_model

    module = context.cached("torch-module", lambda: load_source_model(context.model_dir))
    weights = next((context.model_dir / w for w in WEIGHT_FILES if (context.model_dir / w).exists()), None)
    return Variant(
        name=config.name,  # type: ignore[attr-defined]
        config=config,
        runtime="torch",
        make_backend=lambda threads: TorchBackend(
            module, [OUTPUT_NAME], intra_op_threads=threads, autocast_dtype=autocast_dtype
        ),
        size_bytes=weights.stat().st_size if weights else 0,
    )
