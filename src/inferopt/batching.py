"""How items are grouped into batches: the policy the server's batcher follows, as pure functions that the
in-process engine and optimize's accuracy passes use too, so a variant is checked in the batches it will run.

A batch is built around its oldest item (so no item starves) from the queued items closest to it in cost,
of the same group only, capped at `max_batch` rows, `max_tokens` padded cost (rows x largest cost), and
`max_padding`: the share of its padded cost that may be padding. Padding is compute spent on nothing: for
MiniLM on STS-B sentences, batches of 16 in arrival order cost twice the CPU per item of length-sorted ones.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

import numpy as np


class Batchable(Protocol):
    @property
    def cost(self) -> int: ...

    @property
    def group(self) -> Hashable: ...


B = TypeVar("B", bound=Batchable)


@dataclass(frozen=True)
class BatchPolicy:
    max_batch: int = 32
    max_wait_s: float = 0.005
    max_tokens: int = 16384  # padded cost per batch (tokens, for text)
    max_queue: int = 4096
    max_padding: float = 0.2  # most share of a batch's padded cost that may be padding (1.0: no limit)

    def __post_init__(self) -> None:
        bad_padding = not 0.0 <= self.max_padding <= 1.0
        if min(self.max_batch, self.max_tokens, self.max_queue) < 1 or self.max_wait_s < 0 or bad_padding:
            raise ValueError(f"invalid batch policy {self}")


def pick_batch(queue: Sequence[B], policy: BatchPolicy) -> list[B]:
    """The batch to run next from `queue` (oldest first, not empty), by the rules in the module doc."""
    anchor = queue[0]
    # sorted() is stable: the anchor comes first, and among items as close in cost the older goes first.
    ranked = sorted((item for item in queue if item.group == anchor.group), key=lambda i: abs(i.cost - anchor.cost))
    batch: list[B] = []
    width = real = 0
    for item in ranked:
        grown, rows, cost = max(width, item.cost), len(batch) + 1, real + item.cost
        padded = rows * grown
        if batch and (padded > policy.max_tokens or padded - cost > policy.max_padding * padded):
            continue  # a closer fit further down the ranking may still join
        batch.append(item)
        width, real = grown, cost
        if len(batch) == policy.max_batch:
            break
    return batch


def server_batches(items: Sequence[B], policy: BatchPolicy, window: int) -> list[list[int]]:
    """Indices of the batches a busy server forms from `items` arriving in order, with `window` of them queued
    at a time: what optimize's accuracy pass "as served" runs."""

    @dataclass(frozen=True)
    class Queued:
        index: int
        cost: int
        group: Hashable

    waiting = [Queued(i, item.cost, item.group) for i, item in enumerate(items)]
    queue: list[Queued] = []
    batches: list[list[int]] = []
    while waiting or queue:
        take = max(0, window - len(queue))
        queue, waiting = queue + waiting[:take], waiting[take:]
        batch = pick_batch(queue, policy)
        chosen = {q.index for q in batch}
        queue = [q for q in queue if q.index not in chosen]
        batches.append([q.index for q in batch])
    return batches


def sorted_batches(items: Sequence[Batchable], size: int) -> list[list[int]]:
    """Batches of `size` in order of cost, one group at a time: a batch pads to its nearest neighbours."""
    order: dict[Hashable, list[int]] = {}
    for i in np.argsort(np.fromiter((it.cost for it in items), np.int64, len(items)), kind="stable").tolist():
        order.setdefault(items[i].group, []).append(i)
    return [rows[k : k + size] for rows in order.values() for k in range(0, len(rows), size)]


def arrival_batches(items: Sequence[Batchable], size: int) -> list[list[int]]:
    """Batches of `size` in arrival order, padded to their longest (items of one group only stay together)."""
    order: dict[Hashable, list[int]] = {}
    for i, item in enumerate(items):
        order.setdefault(item.group, []).append(i)
    return [rows[k : k + size] for rows in order.values() for k in range(0, len(rows), size)]
