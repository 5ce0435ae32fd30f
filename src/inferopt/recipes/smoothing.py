"""SmoothQuant for dynamic INT8 (Xiao et al., 2022): move activation outliers into the weights.

Transformer activations have a few channels with outsized values; one per-tensor activation scale must
cover them, so every other channel loses precision. For each weight MatMul y = x W we insert an explicit
x' = x / s (one Mul, cheap next to the MatMul) and fold s into W's rows: W' = diag(s) W. The FP32 graph
computes the same thing; the INT8 graph quantizes a flatter x'. s_j = max|x_j|^a / max|W_j|^(1-a).
The Mul is explicit (not folded into the LayerNorm) because in a post-LN encoder the normalized tensor also
feeds the residual path, which must stay unscaled.
"""

from __future__ import annotations

from typing import Any

import numpy as np

SCALE_RANGE = (1e-2, 1e2)  # keeps a near-dead channel from producing an extreme factor


def smoothing_scales(activation_absmax: np.ndarray, weight: np.ndarray, alpha: float) -> np.ndarray:
    weight_absmax = np.abs(weight).max(axis=1)
    scales = np.maximum(activation_absmax, 1e-5) ** alpha / np.maximum(weight_absmax, 1e-5) ** (1.0 - alpha)
    return np.clip(scales, *SCALE_RANGE).astype(np.float32)


def smooth_graph(model: Any, absmax: dict[str, np.ndarray], alpha: float, op_types: tuple[str, ...]) -> Any:
    """A copy of `model` with every weight MatMul/Attention of `op_types` smoothed (see module doc)."""
    import onnx
    from onnx import helper, numpy_helper

    smoothed = onnx.ModelProto()
    smoothed.CopyFrom(model)
    initializers = {init.name: init for init in smoothed.graph.initializer}
    nodes = []
    for node in smoothed.graph.node:
        weight_init = initializers.get(node.input[1]) if len(node.input) > 1 else None
        if node.op_type in op_types and weight_init is not None and node.input[0] in absmax:
            weight = numpy_helper.to_array(weight_init)
            scales = smoothing_scales(absmax[node.input[0]], weight, alpha)
            weight_init.CopyFrom(
                numpy_helper.from_array((weight * scales[:, None]).astype(np.float32), weight_init.name)
            )
            inverse, smoothed_input = f"{node.name}/smooth_inv_scale", f"{node.name}/smoothed_input"
            smoothed.graph.initializer.append(numpy_helper.from_array(1.0 / scales, inverse))
            nodes.append(
                helper.make_node("Mul", [node.input[0], inverse], [smoothed_input], name=f"{node.name}/smooth")
            )
            node.input[0] = smoothed_input
        nodes.append(node)
    del smoothed.graph.node[:]
    smoothed.graph.node.extend(nodes)
    return smoothed


def weight_matmul_inputs(model: Any, op_types: tuple[str, ...]) -> list[str]:
    """Activation inputs of the nodes smoothing applies to (those with a constant weight)."""
    initializers = {init.name for init in model.graph.initializer}
    return sorted(
        {
            n.input[0]
            for n in model.graph.node
            if n.op_type in op_types and len(n.input) > 1 and n.input[1] in initializers
        }
    )
