"""Channel pruning of CNNs, structured so the shapes stay consistent without touching what residuals tie:

- inverted-residual blocks in the EfficientNet layout (`_expand_conv` 1x1 -> `_bn0` -> `_depthwise_conv` ->
  `_bn1` -> `_project_conv` 1x1): the expanded channels, which live only inside the block. The block's input
  and output channels are shared with its residual and its neighbours, so they stay;
- a Conv2d feeding the next Conv2d of an nn.Sequential through only a BatchNorm2d and elementwise modules:
  the first's output channels.

A channel's importance is the mean |value| of the consumer's input in that channel (over batch and space)
times the norm of the consumer's weights that read it, measured on calibration batches. Blocks with
squeeze-and-excitation are refused (its two convolutions would need slicing too, which is not built). This
module imports torch: only the prune recipe's handler loads it.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from inferopt.recipes.structure import (
    ELEMENTWISE,
    CannotPrune,
    Probe,
    channel_means,
    kept_indices,
    ranking,
    run_hooked,
    sliced_batchnorm,
)

MBCONV = ("_expand_conv", "_bn0", "_depthwise_conv", "_bn1", "_project_conv")


@dataclass
class _Unit:
    """Channels between a producer and the conv that reads them: `consumer` (whose input is measured) and
    `apply`, which keeps the given channels everywhere they appear."""

    name: str
    consumer: nn.Conv2d
    apply: Callable[[torch.Tensor], None]


def prune_channels(module: nn.Module, share: float, probe: Probe, *, at_random: int | None = None) -> list[int]:
    """Remove `share` of the prunable channels of each unit, the least important first (or at random, given a
    seed); returns the widths left, unit by unit."""
    units = _mbconv_units(module) + _sequential_units(module)
    if not units:
        raise CannotPrune(
            f"{type(module).__name__} has no inverted-residual blocks (EfficientNet layout) and no Conv2d feeding "
            "another in an nn.Sequential, so no channels can be removed with the shapes kept consistent"
        )
    activity = _input_activity(module, [u.consumer for u in units], probe)
    widths = []
    for unit, act in zip(units, activity, strict=True):
        weight_norm = unit.consumer.weight.detach().transpose(0, 1).flatten(1).norm(dim=1)
        keep = kept_indices(ranking(act * weight_norm, at_random), share)
        unit.apply(keep)
        widths.append(len(keep))
    return widths


def _mbconv_units(module: nn.Module) -> list[_Unit]:
    units = []
    for name, block in module.named_modules():
        if not all(isinstance(getattr(block, attr, None), nn.Module) for attr in MBCONV):
            continue
        if getattr(block, "has_se", False):
            raise CannotPrune(f"block {name} has squeeze-and-excitation, whose channel slicing is not built")
        units.append(_Unit(name, _conv(block._project_conv, name), _mbconv_apply(block, name)))
    return units


def _mbconv_apply(block: nn.Module, name: str) -> Callable[[torch.Tensor], None]:
    def apply(keep: torch.Tensor) -> None:
        block._expand_conv = _sliced(_conv(block._expand_conv, name), out_keep=keep)
        block._bn0 = sliced_batchnorm(_norm(block._bn0, name), keep)
        block._depthwise_conv = _sliced(_conv(block._depthwise_conv, name), out_keep=keep, depthwise=True)
        block._bn1 = sliced_batchnorm(_norm(block._bn1, name), keep)
        block._project_conv = _sliced(_conv(block._project_conv, name), in_keep=keep)

    return apply


def _norm(module: object, where: str) -> nn.BatchNorm2d:
    if not isinstance(module, nn.BatchNorm2d):
        raise CannotPrune(f"{where} holds {type(module).__name__} where a BatchNorm2d was expected")
    return module


def _sequential_units(module: nn.Module) -> list[_Unit]:
    units = []
    for name, seq in module.named_modules():
        if not isinstance(seq, nn.Sequential):
            continue
        children = list(seq)
        convs = [i for i, c in enumerate(children) if isinstance(c, nn.Conv2d) and c.groups == 1]
        for a, b in itertools.pairwise(convs):
            between = children[a + 1 : b]
            if all(isinstance(c, (*ELEMENTWISE, nn.BatchNorm2d, nn.MaxPool2d, nn.AvgPool2d)) for c in between):
                units.append(_Unit(f"{name}.{a}", _conv(children[b], f"{name}.{b}"), _sequential_apply(seq, a, b)))
    return units


def _sequential_apply(seq: nn.Sequential, a: int, b: int) -> Callable[[torch.Tensor], None]:
    def apply(keep: torch.Tensor) -> None:
        seq[a] = _sliced(_conv(seq[a], f"layer {a}"), out_keep=keep)
        for i in range(a + 1, b):
            norm = seq[i]
            if isinstance(norm, nn.BatchNorm2d):
                seq[i] = sliced_batchnorm(norm, keep)
        seq[b] = _sliced(_conv(seq[b], f"layer {b}"), in_keep=keep)

    return apply


def _conv(module: object, where: str) -> nn.Conv2d:
    if not isinstance(module, nn.Conv2d):
        raise CannotPrune(f"{where} holds {type(module).__name__}, not the Conv2d this pruning slices")
    return module


def _sliced(
    conv: nn.Conv2d,
    *,
    out_keep: torch.Tensor | None = None,
    in_keep: torch.Tensor | None = None,
    depthwise: bool = False,
) -> nn.Conv2d:
    """A copy of `conv` (its class and padding kept) with only the kept output and/or input channels."""
    out = copy.deepcopy(conv)
    weight = conv.weight.detach()
    if out_keep is not None:
        weight = weight[out_keep]
        out.out_channels = len(out_keep)
        if conv.bias is not None:
            out.bias = nn.Parameter(conv.bias.detach()[out_keep].clone())
        if depthwise:  # one filter per channel: its input channels are its output channels
            out.in_channels = out.groups = len(out_keep)
    if in_keep is not None:
        weight = weight[:, in_keep]
        out.in_channels = len(in_keep)
    out.weight = nn.Parameter(weight.clone())
    return out


def _input_activity(module: nn.Module, consumers: list[nn.Conv2d], probe: Probe) -> list[torch.Tensor]:
    """Mean |input| per channel (axis 1) of each consumer over the probe's batches."""
    sums: list[torch.Tensor | None] = [None] * len(consumers)
    counts = [0] * len(consumers)

    def hook(i: int) -> Callable[..., None]:
        def record(_: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
            value = inputs[0].detach().abs()
            total = value.transpose(0, 1).flatten(1).sum(dim=1)
            sums[i] = total if sums[i] is None else sums[i] + total  # type: ignore[operator]
            counts[i] += value.numel() // value.shape[1]

        return record

    handles = [c.register_forward_pre_hook(hook(i)) for i, c in enumerate(consumers)]
    run_hooked(module, probe, handles)
    return channel_means(sums, counts)
