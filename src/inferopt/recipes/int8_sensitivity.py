"""Sensitivity-guided INT8: smooth, quantize everything, then keep the nodes that hurt most in FP32 until the
accuracy target is met on the calibration data.

0. Choose the SmoothQuant strength (none or one of `smooth_alphas`) whose quantized model has the best
   worst-case cosine on the calibration data (smoothing.py). If that already meets the target, done.
1. Otherwise measure each quantizable node's own error: capture its FP32 inputs on the calibration data and compare
   its output with the output ONNX Runtime's integer kernels would give (u8 per-tensor activations quantized
   per batch, s8 symmetric weights per channel), as noise-to-signal energy.
2. Rank the nodes by that error; quantize with the worst k kept in FP32 for k = 0, 1, 2, 4, ... until the
   real quantized model meets the target end to end, then bisect for the smallest such k.
Calibration data is the task's own (the built-in corpus for text), not the eval data, so the eval numbers stay
an honest check. Every probe is held to the target both in cost-sorted batches and in mixed batches of 64
padded to their longest, since dynamic INT8 quantizes activations per batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from inferopt.recipes.base import BuildContext, Variant, onnx_variant, register
from inferopt.recipes.calibration import Calibration
from inferopt.recipes.int8_dynamic import DynamicInt8Config, base_graph, quantize_dynamic_model

QUANTIZABLE = ("MatMul", "Attention")


@dataclass(frozen=True)
class SensitivityInt8Config:
    kind: ClassVar[str] = "int8-sensitivity"
    version: int = 2
    name: str = "int8-sensitivity"
    graph: str = "fused"
    per_channel: bool = True
    reduce_range: bool = False
    target_mean_cosine: float = 0.995
    target_min_cosine: float = 0.98
    max_excluded_fraction: float = 0.5
    calibration_items: int = 256
    smooth_alphas: tuple[float, ...] = (0.5, 0.6, 0.7, 0.8)  # tried besides no smoothing; empty: never smooth

    def base(self, alpha: float | None, exclude: tuple[str, ...] = ()) -> DynamicInt8Config:
        return DynamicInt8Config(
            name=self.name,
            graph=self.graph,
            per_channel=self.per_channel,
            reduce_range=self.reduce_range,
            exclude_nodes=exclude,
            smooth_alpha=alpha,
        )


@dataclass(frozen=True)
class QuantizableNode:
    name: str
    activation: str
    weight: str  # initializer name, or a second activation for activation x activation MatMuls
    weight_is_constant: bool


def quantizable_nodes(model: Any) -> list[QuantizableNode]:
    initializers = {init.name for init in model.graph.initializer}
    return [
        QuantizableNode(n.name, n.input[0], n.input[1], n.input[1] in initializers)
        for n in model.graph.node
        if n.op_type in QUANTIZABLE
    ]


def quantize_activation(x: np.ndarray) -> np.ndarray:
    """What DynamicQuantizeLinear does to a tensor: u8, asymmetric, one scale per tensor (range includes 0)."""
    low, high = min(float(x.min()), 0.0), max(float(x.max()), 0.0)
    scale = (high - low) / 255.0 or 1.0
    zero_point = np.clip(np.round(-low / scale), 0, 255)
    return (np.clip(np.round(x / scale) + zero_point, 0, 255) - zero_point) * scale


def quantize_weight(w: np.ndarray, *, per_channel: bool, reduce_range: bool) -> np.ndarray:
    """Symmetric s8 weights, one scale per output column (per channel) or per tensor."""
    limit = 63.0 if reduce_range else 127.0
    peak = np.abs(w).max(axis=0, keepdims=True) if per_channel else np.abs(w).max()
    scale = np.where(peak == 0, 1.0, peak / limit)
    return np.clip(np.round(w / scale), -limit, limit) * scale


def node_errors(context: BuildContext, base: DynamicInt8Config, calibration: Calibration) -> dict[str, float]:
    """Noise-to-signal energy of each quantizable node's output under INT8, on the calibration data."""
    import onnx
    from onnx import numpy_helper

    from inferopt.recipes.calibration import captured_batches

    model = onnx.load(str(base_graph(context, base)))
    nodes = quantizable_nodes(model)
    weights = {i.name: numpy_helper.to_array(i).astype(np.float64) for i in model.graph.initializer}
    quantized_weights = {
        n.weight: quantize_weight(weights[n.weight], per_channel=base.per_channel, reduce_range=base.reduce_range)
        for n in nodes
        if n.weight_is_constant
    }
    wanted = sorted({n.activation for n in nodes} | {n.weight for n in nodes if not n.weight_is_constant})
    noise = dict.fromkeys((n.name for n in nodes), 0.0)
    signal = dict.fromkeys((n.name for n in nodes), 0.0)
    for batch, _mask in captured_batches(model, wanted, calibration, context.fusion.mask_input):
        for node in nodes:
            a = batch[node.activation].astype(np.float64)
            w = weights[node.weight] if node.weight_is_constant else batch[node.weight].astype(np.float64)
            wq = quantized_weights[node.weight] if node.weight_is_constant else quantize_activation(w)
            exact = a @ w
            noise[node.name] += float(np.sum((quantize_activation(a) @ wq - exact) ** 2))
            signal[node.name] += float(np.sum(exact**2))
    return {name: noise[name] / max(signal[name], 1e-30) for name in noise}


@dataclass
class _Search:
    """End-to-end probes of real quantized models on the calibration data."""

    context: BuildContext
    config: SensitivityInt8Config
    calibration: Calibration
    log: list[dict[str, Any]]

    def probe(self, alpha: float | None, exclude: tuple[str, ...] = ()) -> tuple[Path, float, float]:
        tag = f"a{alpha}-k{len(exclude)}"
        path = quantize_dynamic_model(
            self.context, self.config.base(alpha, exclude), self.context.work_dir / f"{self.config.name}-{tag}.onnx"
        )
        mean, low = self.calibration.item_cosines(path)
        self.log.append({"smooth_alpha": alpha, "excluded": len(exclude), "mean_cosine": mean, "min_cosine": low})
        return path, mean, low

    def meets(self, mean: float, low: float) -> bool:
        return mean >= self.config.target_mean_cosine and low >= self.config.target_min_cosine


def _best_alpha(search: _Search) -> tuple[float | None, Path, bool]:
    """Try no smoothing and each alpha; keep the one with the best worst case (then best mean)."""
    results = {alpha: search.probe(alpha) for alpha in (None, *search.config.smooth_alphas)}
    alpha = max(results, key=lambda a: (results[a][2], results[a][1]))
    path, mean, low = results[alpha]
    return alpha, path, search.meets(mean, low)


def _fewest_exclusions(
    search: _Search, alpha: float | None, ranked: list[str], limit: int, unexcluded: Path
) -> tuple[int, Path, bool]:
    """Grow k (1, 2, 4, ...) until the target is met, then bisect for the smallest such k."""
    low_k, k, passing = 0, 0, {0: unexcluded}
    ok = False
    while not ok and k < limit:
        low_k, k = k, min(max(1, 2 * k), limit)
        path, mean, low = search.probe(alpha, tuple(ranked[:k]))
        ok = search.meets(mean, low)
        passing[k] = path
    while ok and k - low_k > 1:
        mid = (low_k + k) // 2
        path, mean, low = search.probe(alpha, tuple(ranked[:mid]))
        if search.meets(mean, low):
            k, passing[mid] = mid, path
        else:
            low_k = mid
    return k, passing[k], ok


@register(SensitivityInt8Config)
def build_sensitivity_int8(context: BuildContext, config: SensitivityInt8Config) -> Variant:
    calibration = context.calibration.first(config.calibration_items)
    search = _Search(context, config, calibration, [])
    alpha, path, ok = _best_alpha(search)
    notes: dict[str, Any] = {"smooth_alpha": alpha, "excluded_nodes": []}
    if not ok:
        errors = node_errors(context, config.base(alpha), calibration)
        ranked = sorted(errors, key=errors.__getitem__, reverse=True)
        limit = int(len(ranked) * config.max_excluded_fraction)
        k, path, ok = _fewest_exclusions(search, alpha, ranked, limit, path)
        notes |= {"excluded_nodes": ranked[:k], "node_errors_top": [[n, errors[n]] for n in ranked[:10]]}
    notes |= {"target_met_on_calibration": ok, "search": search.log}
    return onnx_variant(config.name, config, path, notes)
