"""Structured pruning of PyTorch modules: whole encoder layers, FFN channels, and hidden units of MLPs.

Only whole rows, columns and layers go: the dense kernels then run on smaller matrices, which is what makes a
CPU faster (unstructured sparsity leaves the shapes, and so the time, as they were). What to remove is chosen
by measurement on calibration batches, never by position alone:
- a layer's contribution: how far the model's outputs move from the unpruned model's when that layer is skipped
  (greedy: the least missed layer goes first, then the next is measured on the smaller model);
- a channel's or hidden unit's importance: its mean |activation| on real positions times the norm of the weights
  that read it, i.e. how much signal it hands on.

The structures recognised are the Hugging Face BERT family (a ModuleList of blocks, each with `intermediate.dense`
and `output.dense`), and MLPs as nn.Sequential chains of Linear layers or ModuleLists of Linear layers; anything
else is refused with the reason, so the recipe is skipped rather than producing a model with inconsistent shapes.
Embedding rows are in rows.py. This module imports torch: only the prune recipe's handler loads it.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch
from torch import nn

Batch = dict[str, np.ndarray]
N = TypeVar("N", bound=nn.modules.batchnorm._BatchNorm)
Distance = Callable[[list[torch.Tensor], list[torch.Tensor]], torch.Tensor]  # per-item distance, (items,)

# Modules that act on each hidden unit alone: a unit removed before them is removed after them too.
ELEMENTWISE = (nn.ReLU, nn.GELU, nn.SiLU, nn.Tanh, nn.Sigmoid, nn.LeakyReLU, nn.ELU, nn.Dropout, nn.Identity)


class CannotPrune(ValueError):
    """The module has no structure this pruning can shrink consistently; the message names the layer and why."""


@dataclass(frozen=True)
class Probe:
    """How to run a module on calibration batches: positional inputs in `input_names` order, and the name of the
    input that marks real positions (for [batch, sequence, ...] activations), if any."""

    input_names: tuple[str, ...]
    batches: tuple[Batch, ...]
    mask_input: str | None = None

    def args(self, batch: Batch) -> tuple[torch.Tensor, ...]:
        return tuple(torch.from_numpy(batch[name]) for name in self.input_names)

    def run(self, module: nn.Module) -> list[list[torch.Tensor]]:
        """Each batch's outputs, as a list of tensors."""
        with torch.inference_mode():
            return [as_list(module(*self.args(batch))) for batch in self.batches]

    def mask(self, batch: Batch) -> torch.Tensor | None:
        return torch.from_numpy(batch[self.mask_input]).bool() if self.mask_input in batch else None


def as_list(outputs: object) -> list[torch.Tensor]:
    if isinstance(outputs, torch.Tensor):
        return [outputs]
    if isinstance(outputs, tuple | list):
        return [o for o in outputs if isinstance(o, torch.Tensor)]
    raise CannotPrune(f"the model returns {type(outputs).__name__}, not tensors")


def mean_distance(module: nn.Module, probe: Probe, reference: list[list[torch.Tensor]], distance: Distance) -> float:
    outputs = probe.run(module)
    per_item = [distance(out, ref) for out, ref in zip(outputs, reference, strict=True)]
    return float(torch.cat(per_item).mean())


# -- transformer encoders ----------------------------------------------------------------------------------------


def encoder_blocks(module: nn.Module) -> tuple[nn.Module, str, nn.ModuleList]:
    """(the parent, the attribute name, the ModuleList) of the model's transformer blocks."""
    for parent in module.modules():
        for attr, child in parent.named_children():
            if isinstance(child, nn.ModuleList) and len(child) > 1 and all(_is_block(b) for b in child):
                return parent, attr, child
    raise CannotPrune(
        f"{type(module).__name__} has no list of transformer blocks with intermediate.dense and output.dense "
        "(the Hugging Face BERT layout) whose layers or FFN channels could be removed"
    )


def _is_block(block: nn.Module) -> bool:
    intermediate, output = getattr(block, "intermediate", None), getattr(block, "output", None)
    return isinstance(getattr(intermediate, "dense", None), nn.Linear) and isinstance(
        getattr(output, "dense", None), nn.Linear
    )


def layers_by_contribution(
    module: nn.Module, drop: int, probe: Probe, reference: list[list[torch.Tensor]], distance: Distance
) -> list[int]:
    """The `drop` block indices whose removal moves the outputs least, chosen greedily on the shrinking model."""
    parent, attr, blocks = encoder_blocks(module)
    if drop >= len(blocks):
        raise CannotPrune(f"cannot drop {drop} of {len(blocks)} encoder layers: at least one must stay")
    kept = list(range(len(blocks)))
    dropped: list[int] = []
    try:
        for _ in range(drop):
            costs = {}
            for index in kept:
                setattr(parent, attr, nn.ModuleList(blocks[i] for i in kept if i != index))
                costs[index] = mean_distance(module, probe, reference, distance)
            least = min(costs, key=lambda i: (costs[i], i))
            kept.remove(least)
            dropped.append(least)
    finally:
        setattr(parent, attr, blocks)
    return dropped


def drop_layers(module: nn.Module, dropped: Sequence[int]) -> int:
    """Remove the blocks `dropped` in place; returns how many remain."""
    parent, attr, blocks = encoder_blocks(module)
    gone = set(dropped)
    kept = nn.ModuleList([b for i, b in enumerate(blocks) if i not in gone])
    setattr(parent, attr, kept)
    config = getattr(module, "config", None) or _find_config(module)
    if config is not None and hasattr(config, "num_hidden_layers"):
        config.num_hidden_layers = len(kept)  # Hugging Face sizes head masks and caches by it
    return len(kept)


def _find_config(module: nn.Module) -> object | None:
    return next((m.config for m in module.modules() if hasattr(m, "config")), None)


def _linear(module: object, where: str) -> nn.Linear:
    if not isinstance(module, nn.Linear):
        raise CannotPrune(f"{where} is {type(module).__name__}, not the Linear layer this pruning slices")
    return module


def _ffn(block: nn.Module) -> tuple[nn.Module, nn.Module]:
    """A block's (intermediate, output) submodules, whose `dense` Linear layers the FFN channels live between."""
    intermediate, output = block.intermediate, block.output
    assert isinstance(intermediate, nn.Module) and isinstance(output, nn.Module)  # _is_block checked it
    return intermediate, output


def prune_ffn(module: nn.Module, share: float, probe: Probe, *, at_random: int | None = None) -> list[int]:
    """Remove `share` of each block's FFN channels, the least important first (or, given `at_random` as a seed,
    a random choice: the baseline importance is measured against); returns the widths left."""
    _, _, blocks = encoder_blocks(module)
    activity = _mean_activity(module, [_ffn(b)[0] for b in blocks], probe)
    widths = []
    for i, (block, act) in enumerate(zip(blocks, activity, strict=True)):
        intermediate, output = _ffn(block)
        first = _linear(intermediate.dense, f"layer {i} intermediate.dense")
        second = _linear(output.dense, f"layer {i} output.dense")
        keep = kept_indices(ranking(act * second.weight.detach().norm(dim=0), at_random), share)
        intermediate.dense = _rows(first, keep)
        output.dense = _columns(second, keep)
        widths.append(len(keep))
    return widths


# -- MLPs --------------------------------------------------------------------------------------------------------


Chain = nn.Sequential | nn.ModuleList  # a container of layers applied in turn


def linear_pairs(module: nn.Module) -> list[tuple[Chain, int, int]]:
    """(container, index of a Linear, index of the Linear that reads its outputs):
    - in an nn.Sequential, two Linear layers with only elementwise modules (or a BatchNorm1d) between them, so the
      first's outputs are exactly the second's inputs;
    - in an nn.ModuleList of Linear layers only (an MLP whose forward applies them in turn, like NeuMF's), each
      layer and the next where the widths chain. The forward is the model's own, so prune_hidden checks by
      running the pruned model that the list really is applied in turn."""
    pairs: list[tuple[Chain, int, int]] = []
    for container in module.modules():
        if isinstance(container, nn.Sequential):
            children = list(container)
            linears = [i for i, c in enumerate(children) if isinstance(c, nn.Linear)]
            for a, b in itertools.pairwise(linears):
                if all(isinstance(c, (*ELEMENTWISE, nn.BatchNorm1d)) for c in children[a + 1 : b]):
                    pairs.append((container, a, b))
        elif isinstance(container, nn.ModuleList) and all(isinstance(c, nn.Linear) for c in container):
            for a in range(len(container) - 1):
                if container[a].out_features == container[a + 1].in_features:
                    pairs.append((container, a, a + 1))
    if not pairs:
        names = [name for name, m in module.named_modules() if isinstance(m, nn.Linear)]
        where = f"its Linear layers ({', '.join(names[:4])}) are wired by its own forward" if names else "no Linear"
        raise CannotPrune(
            f"{type(module).__name__} has no nn.Sequential of Linear layers with only elementwise modules between "
            f"them and no nn.ModuleList of Linear layers whose widths chain ({where}), so hidden units cannot be "
            "removed with the shapes kept consistent"
        )
    return pairs


def prune_hidden(module: nn.Module, share: float, probe: Probe, *, at_random: int | None = None) -> list[int]:
    """Remove `share` of the hidden units between each Linear pair, the least important first (or at random,
    given a seed). A unit's activity is measured where the second layer reads it (its input)."""
    pairs = linear_pairs(module)
    activity = _mean_activity(module, [container[b] for container, _, b in pairs], probe, at_input=True)
    widths = []
    for (container, a, b), act in zip(pairs, activity, strict=True):
        first, second = _linear(container[a], f"layer {a}"), _linear(container[b], f"layer {b}")
        keep = kept_indices(ranking(act * second.weight.detach().norm(dim=0), at_random), share)
        container[a] = _rows(first, keep)
        for i in range(a + 1, b):
            norm = container[i]
            if isinstance(norm, nn.BatchNorm1d):
                container[i] = sliced_batchnorm(norm, keep)
        container[b] = _columns(second, keep)
        widths.append(len(keep))
    _check_runs(module, probe, [container for container, _, _ in pairs])
    return widths


def _check_runs(module: nn.Module, probe: Probe, containers: list[Chain]) -> None:
    """A ModuleList whose layers the forward does not apply in turn (parallel heads, say) no longer fits its
    inputs once pruned: that is found here, on one calibration batch, and refused."""
    try:
        with torch.inference_mode():
            module(*probe.args(probe.batches[0]))
    except RuntimeError as exc:
        names = {id(m): name for name, m in module.named_modules()}
        lists = sorted({names[id(c)] for c in containers if isinstance(c, nn.ModuleList)})
        raise CannotPrune(
            f"{type(module).__name__}: the Linear layers of {', '.join(lists) or 'its MLP'} are not applied one "
            f"after another by its forward (the pruned model fails: {str(exc).splitlines()[0]})"
        ) from None


# -- shared ------------------------------------------------------------------------------------------------------


def _mean_activity(
    module: nn.Module, taps: list[nn.Module], probe: Probe, *, at_input: bool = False
) -> list[torch.Tensor]:
    """Mean |output| (or |input|, `at_input`) per channel (last axis) of each tap module over the probe's
    batches, real positions only."""
    sums: list[torch.Tensor | None] = [None] * len(taps)
    counts = [0] * len(taps)
    current: list[torch.Tensor | None] = [None]  # the batch's mask, set before each batch runs

    def hook(i: int) -> Callable[..., None]:
        def record(_: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor | None = None) -> None:
            value = (inputs[0] if output is None else output).detach().abs()
            mask = current[0]
            if mask is not None and value.dim() == 3 and value.shape[:2] == mask.shape:
                value = value[mask]
            flat = value.reshape(-1, value.shape[-1])
            total = flat.sum(dim=0)
            sums[i] = total if sums[i] is None else sums[i] + total  # type: ignore[operator]
            counts[i] += flat.shape[0]

        return record

    handles = [
        tap.register_forward_pre_hook(hook(i)) if at_input else tap.register_forward_hook(hook(i))
        for i, tap in enumerate(taps)
    ]

    def set_mask(batch: Batch) -> None:
        current[0] = probe.mask(batch)

    run_hooked(module, probe, handles, set_mask)
    return channel_means(sums, counts)


def run_hooked(
    module: nn.Module, probe: Probe, handles: list[Any], before: Callable[[Batch], None] | None = None
) -> None:
    """Run `module` on every probe batch (`before` sees each batch first) so that the hooks behind `handles`
    record what they measure; the hooks are removed afterwards, whatever happens."""
    try:
        with torch.inference_mode():
            for batch in probe.batches:
                if before is not None:
                    before(batch)
                module(*probe.args(batch))
    finally:
        for handle in handles:
            handle.remove()


def channel_means(sums: list[torch.Tensor | None], counts: list[int]) -> list[torch.Tensor]:
    """Per-channel sums over `counts` values each -> means; a tap that never ran cannot be ranked."""
    means = []
    for total, count in zip(sums, counts, strict=True):
        if total is None:
            raise CannotPrune("a layer to prune never ran on the calibration data")
        means.append(total / max(count, 1))
    return means


def ranking(importance: torch.Tensor, at_random: int | None) -> torch.Tensor:
    if at_random is None:
        return importance
    return torch.rand(importance.shape, generator=torch.Generator().manual_seed(at_random))


def kept_indices(importance: torch.Tensor, share: float) -> torch.Tensor:
    """Indices (ascending) of the most important channels once `share` of them are removed; at least one stays."""
    keep = max(1, round(len(importance) * (1.0 - share)))
    return torch.sort(torch.topk(importance, keep).indices).values


def _rows(linear: nn.Linear, keep: torch.Tensor) -> nn.Linear:
    out = nn.Linear(linear.in_features, len(keep), bias=linear.bias is not None)
    with torch.no_grad():
        out.weight.copy_(linear.weight[keep])
        if linear.bias is not None:
            out.bias.copy_(linear.bias[keep])
    return out


def _columns(linear: nn.Linear, keep: torch.Tensor) -> nn.Linear:
    out = nn.Linear(len(keep), linear.out_features, bias=linear.bias is not None)
    with torch.no_grad():
        out.weight.copy_(linear.weight[:, keep])
        if linear.bias is not None:
            out.bias.copy_(linear.bias)
    return out


def sliced_batchnorm(norm: N, keep: torch.Tensor) -> N:
    """The norm of the kept channels only: its parameters and running statistics sliced, its settings kept."""
    out = copy.deepcopy(norm)
    out.num_features = len(keep)
    with torch.no_grad():
        for name in ("weight", "bias"):
            if getattr(norm, name, None) is not None:
                setattr(out, name, nn.Parameter(getattr(norm, name)[keep].clone()))
        for name in ("running_mean", "running_var"):
            if getattr(norm, name, None) is not None:
                setattr(out, name, getattr(norm, name)[keep].clone())
    return out
