"""Embedding rows for ids rarely or never looked up, merged into one fallback row per table.

Which ids are rare is measured, not guessed: the lookups each nn.Embedding gets while the model runs on the
probe's batches (the distillation data, which for a recommender is drawn like traffic: users in proportion to
their training interactions). The `share` least looked-up rows of a table go; their ids are sent to a fallback
row that starts as the mean of the rows it replaces (then distillation tunes it). A table that the forward never
looks up is left whole: its rows are read some other way (NeuMF scores the whole item catalogue from its item
tables' weights), so none of them is rare.

The pruned table keeps the model's inputs as they were (ids, not new rows): a lookup goes through a map from id
to row. The ONNX file then holds the smaller table and the map (one int64 per id). This makes models smaller;
it does not make a lookup faster. This module imports torch: only the prune recipe's handler loads it.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from inferopt.recipes.structure import CannotPrune, Probe, run_hooked


class RemappedEmbedding(nn.Module):
    """An embedding whose ids map to the rows of a smaller table; several ids may share a row."""

    def __init__(self, table: torch.Tensor, rows: torch.Tensor) -> None:
        super().__init__()
        self.num_embeddings, self.embedding_dim = len(rows), table.shape[1]
        self.table = nn.Parameter(table)
        self.register_buffer("rows", rows)

    @property
    def weight(self) -> torch.Tensor:
        """(ids, dim): what a reader of the whole table sees, every id's vector, as nn.Embedding.weight."""
        return self.table[self.rows]  # type: ignore[index]

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return nn.functional.embedding(self.rows[ids], self.table)  # type: ignore[index]


def prune_rows(module: nn.Module, share: float, probe: Probe) -> dict[str, list[int]]:
    """Merge `share` of each looked-up table's rows, the least looked up first, into one fallback row; returns
    {table: [rows left, ids]}."""
    tables = {name: m for name, m in module.named_modules() if isinstance(m, nn.Embedding)}
    if not tables:
        raise CannotPrune(f"{type(module).__name__} has no nn.Embedding, so no embedding rows can be removed")
    counts = _lookups(module, tables, probe)
    looked_up = {name: c for name, c in counts.items() if c is not None}
    if not looked_up:
        raise CannotPrune(
            f"{type(module).__name__}: no embedding table is looked up by id on the distillation data "
            f"({', '.join(tables)} are read whole), so none has rare rows to remove"
        )
    widths = {}
    for name, count in looked_up.items():
        table = tables[name]
        if table.max_norm is not None or table.padding_idx is not None:
            raise CannotPrune(f"{name}: an nn.Embedding with max_norm or padding_idx is not pruned by rows")
        remapped = _merged(table, count, share)
        _replace(module, name, remapped)
        widths[name] = [remapped.table.shape[0], table.num_embeddings]
    return widths


def _merged(table: nn.Embedding, count: torch.Tensor, share: float) -> RemappedEmbedding:
    dropped = max(1, round(table.num_embeddings * share))
    if dropped >= table.num_embeddings:
        raise CannotPrune(f"dropping {share:g} of {table.num_embeddings} rows would leave none but the fallback")
    order = torch.argsort(count, stable=True)  # the rarest first; ties by id, so the choice is deterministic
    rare, kept = order[:dropped], torch.sort(order[dropped:]).values
    weight = table.weight.detach()
    rows = torch.full((table.num_embeddings,), len(kept), dtype=torch.int64)  # the fallback row is the last
    rows[kept] = torch.arange(len(kept))
    fallback = weight[rare].mean(dim=0, keepdim=True)
    return RemappedEmbedding(torch.cat([weight[kept], fallback]).clone(), rows)


def _lookups(module: nn.Module, tables: dict[str, nn.Embedding], probe: Probe) -> dict[str, torch.Tensor | None]:
    """Per table, how often each id was looked up over the probe's batches (None: never looked up)."""
    counts: dict[str, torch.Tensor | None] = dict.fromkeys(tables)

    def hook(name: str) -> Callable[..., None]:
        def record(table: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
            ids = torch.bincount(inputs[0].reshape(-1), minlength=table.num_embeddings)  # type: ignore[arg-type]
            before = counts[name]
            counts[name] = ids if before is None else before + ids

        return record

    handles = [table.register_forward_pre_hook(hook(name)) for name, table in tables.items()]
    run_hooked(module, probe, handles)
    return counts


def _replace(module: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, attribute = name.rpartition(".")
    setattr(module.get_submodule(parent_name) if parent_name else module, attribute, new)
