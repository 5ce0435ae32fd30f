"""Graph recipes: the plain FP32 export, and, for models whose fusion profile is "bert", ONNX Runtime's
transformer fusions (one Attention op per layer, BiasGelu, EmbedLayerNormalization; Add + LayerNormalization
stay unfused) which the INT8 recipes build on. Other profiles get the session's own fusions at load time
(Conv + BatchNorm + activation for "cnn"), which every ONNX variant has anyway."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from inferopt.recipes.base import BuildContext, Variant, onnx_variant, register

FUSED_OPS = ("Attention", "LayerNormalization", "SkipLayerNormalization", "BiasGelu", "EmbedLayerNormalization")


@dataclass(frozen=True)
class GraphConfig:
    kind: ClassVar[str] = "graph"
    version: int = 1
    name: str = "onnx-fp32"
    transformer_fusions: bool = False


def op_counts(model_path: Path) -> Counter[str]:
    import onnx

    return Counter(node.op_type for node in onnx.load(str(model_path), load_external_data=False).graph.node)


def fused_model(context: BuildContext, *, for_gpu: bool = False) -> Path:
    """The FP32 graph with transformer fusions, built once per run for each target. For the CPU without
    SkipLayerNormalization (its CPU kernel is the slower one: runtime/onnx.py); for a GPU with it, and with the
    fusions ONNX Runtime makes for its CUDA kernels."""
    key = "gpu-fused-onnx" if for_gpu else "fused-onnx"
    fused: Path = context.cached(key, lambda: _fuse(context, for_gpu))
    return fused


def _fuse(context: BuildContext, for_gpu: bool) -> Path:
    from onnxruntime.transformers import optimizer

    profile = context.fusion
    if profile.kind != "bert":
        raise ValueError(
            f"transformer fusions need a BERT-family encoder; this model's fusion profile is {profile.kind!r}"
        )
    from onnxruntime.transformers.fusion_options import FusionOptions

    out = context.work_dir / ("gpu-fused.onnx" if for_gpu else "fused.onnx")
    logging.getLogger("onnxruntime.transformers").setLevel(logging.ERROR)
    options = FusionOptions("bert")
    if not for_gpu:
        options.enable_skip_layer_norm = options.enable_bias_skip_layer_norm = False
    try:
        model = optimizer.optimize_model(
            str(context.fp32_onnx),
            model_type="bert",
            num_heads=profile.num_heads,
            hidden_size=profile.hidden_size,
            optimization_options=options,
            use_gpu=for_gpu,
        )
    except AssertionError as exc:  # its own checks of the graph's shapes; the message is often empty
        where = f" ({exc})" if str(exc) else ""
        raise ValueError(
            f"ONNX Runtime's transformer fusion could not take this graph: an assertion in onnxruntime.transformers "
            f"failed{where} (a student with attention heads removed is one such graph)"
        ) from None
    model.save_model_to_file(str(out))
    return out


@register(GraphConfig)
def build_graph(context: BuildContext, config: GraphConfig) -> Variant:
    path = fused_model(context) if config.transformer_fusions else context.fp32_onnx
    notes: dict[str, object] = {}
    if config.transformer_fusions:
        counts = op_counts(path)
        expected = context.fusion.expected_ops
        notes["fused_ops"] = {op: counts.get(op, 0) for op in FUSED_OPS}
        notes["fusion_complete"] = all(counts.get(op, 0) == n for op, n in expected.items())
    return onnx_variant(config.name, config, path, notes)
