"""Attention heads of transformer encoders in the Hugging Face BERT layout (`attention.self.query/key/value`,
`attention.output.dense`), removed by importance: a head's mean |context| where the output projection reads
it (real positions only), times the norm of that projection's weights for the head's channels. The query,
key and value projections lose the head's rows and the output projection its columns; the head size (and so
the attention's scaling) stays. The same share of heads goes in every layer, so the fused Attention op keeps
one head count. This module imports torch: only the prune recipe's handler loads it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from inferopt.recipes.structure import (
    CannotPrune,
    Probe,
    _columns,
    _mean_activity,
    _rows,
    encoder_blocks,
    kept_indices,
    ranking,
)


@dataclass(frozen=True)
class _Layer:
    attention: nn.Module  # has query, key, value (Linear) and the head counts
    output: nn.Module  # its `dense` is the output projection
    dense: nn.Linear
    head_size: int


def _layer(block: nn.Module, index: int) -> _Layer:
    attention = getattr(block, "attention", None)
    self_attention, output = getattr(attention, "self", None), getattr(attention, "output", None)
    projections = [getattr(self_attention, name, None) for name in ("query", "key", "value")]
    dense = getattr(output, "dense", None)
    size = getattr(self_attention, "attention_head_size", None)
    if (
        not all(isinstance(p, nn.Linear) for p in projections)
        or not isinstance(dense, nn.Linear)
        or not isinstance(size, int)
    ):
        raise CannotPrune(
            f"layer {index}: no attention.self.query/key/value with attention_head_size and attention.output.dense "
            "(the Hugging Face BERT layout), so its heads cannot be removed"
        )
    assert isinstance(self_attention, nn.Module) and isinstance(output, nn.Module)
    return _Layer(self_attention, output, dense, size)


def prune_heads(module: nn.Module, share: float, probe: Probe, *, at_random: int | None = None) -> list[int]:
    """Remove `share` of each layer's heads, the least important first (or at random, given a seed); returns
    the heads left per layer."""
    _, _, blocks = encoder_blocks(module)
    layers = [_layer(block, i) for i, block in enumerate(blocks)]
    activity = _mean_activity(module, [layer.dense for layer in layers], probe, at_input=True)
    kept_heads = []
    for layer, act in zip(layers, activity, strict=True):
        size = layer.head_size
        heads = layer.dense.in_features // size
        importance = (act * layer.dense.weight.detach().norm(dim=0)).reshape(heads, size).sum(dim=1)
        keep_heads = kept_indices(ranking(importance, at_random), share)
        keep = (keep_heads[:, None] * size + torch.arange(size)[None, :]).reshape(-1)
        for name in ("query", "key", "value"):
            setattr(layer.attention, name, _rows(getattr(layer.attention, name), keep))
        layer.output.dense = _columns(layer.dense, keep)
        # plain attributes that the module's forward and Hugging Face's helpers read
        setattr(layer.attention, "num_attention_heads", len(keep_heads))  # noqa: B010
        setattr(layer.attention, "all_head_size", len(keep))  # noqa: B010
        kept_heads.append(len(keep_heads))
    return kept_heads
