"""The catalogue's own ids and the model's rows, both ways, and what each user has seen in training.

Every id in a request is checked here: an integer (not a bool, not a float, not a string of digits: ids are
ints in MovieLens and a "42" would mean a client that mixes types), known to the model, and candidate lists
without duplicates. Each mistake is an InvalidInput naming the field and the id.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from inferopt.errors import ArtifactError
from inferopt.tasks.base import InvalidInput

MAX_CANDIDATES_SHOWN = 3


class Catalogue:
    def __init__(self, user_ids: Sequence[int], item_ids: Sequence[int], history: Sequence[Sequence[int]]) -> None:
        self.user_ids = tuple(user_ids)
        self.item_ids = tuple(item_ids)
        self.item_id_array = np.array(self.item_ids, np.int64)
        self._user_row = {u: n for n, u in enumerate(self.user_ids)}
        self._item_row = {i: n for n, i in enumerate(self.item_ids)}
        self._seen = [np.array(rows, np.int64) for rows in history]  # what collate pads into `exclude`
        self._seen_sets = [frozenset(rows) for rows in history]  # what counting a query's candidates checks
        self.nothing = np.zeros(0, np.int64)

    @classmethod
    def read(cls, catalogue: Path, history: Path) -> Catalogue:
        try:
            ids = json.loads(catalogue.read_text(encoding="utf-8"))
            seen = json.loads(history.read_text(encoding="utf-8"))
            return cls([int(u) for u in ids["users"]], [int(i) for i in ids["items"]], seen)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ArtifactError(
                f"{catalogue.parent}: unreadable catalogue or history ({exc})", "optimize again"
            ) from None

    @property
    def num_users(self) -> int:
        return len(self.user_ids)

    @property
    def num_items(self) -> int:
        return len(self.item_ids)

    def seen(self, user: int) -> np.ndarray:
        return self._seen[user]

    @property
    def longest_seen(self) -> int:
        return max((len(rows) for rows in self._seen), default=0)

    def user_row(self, value: Any, field: str) -> int:
        user_id = _integer(value, field)
        row = self._user_row.get(user_id)
        if row is None:
            raise InvalidInput(
                f"{field}: unknown user {user_id}; the model knows {self.num_users:,} users "
                f"(ids {min(self.user_ids)}..{max(self.user_ids)})",
                field,
            )
        return row

    def item_row(self, value: Any, field: str) -> int:
        item_id = _integer(value, field)
        row = self._item_row.get(item_id)
        if row is None:
            raise InvalidInput(f"{field}: unknown item {item_id}; the catalogue has {self.num_items:,} items", field)
        return row

    def candidate_rows(self, value: Any, field: str) -> tuple[int, ...]:
        if not isinstance(value, list) or not value:
            raise InvalidInput(f"{field} must be a non-empty list of item ids", field)
        if len(value) > self.num_items:
            raise InvalidInput(f"{field} has {len(value):,} ids; the catalogue has {self.num_items:,} items", field)
        ids = [_integer(v, f"{field}[{n}]") for n, v in enumerate(value)]
        unknown = [i for i in ids if i not in self._item_row]
        if unknown:
            shown = ", ".join(map(str, unknown[:MAX_CANDIDATES_SHOWN])) + (", ..." if len(unknown) > 3 else "")
            raise InvalidInput(f"{field}: unknown item ids {shown} ({len(unknown)} of {len(ids)})", field)
        if len(set(ids)) != len(ids):
            first = next(i for n, i in enumerate(ids) if i in ids[:n])
            raise InvalidInput(f"{field}: item {first} is listed twice; list each candidate once", field)
        return tuple(self._item_row[i] for i in ids)

    def available(self, user: int, candidates: tuple[int, ...], exclude_seen: bool) -> int:
        """How many items the query can return."""
        pool = len(candidates) if candidates else self.num_items
        if not exclude_seen:
            return pool
        seen = self._seen_sets[user]
        if candidates:
            return sum(1 for c in candidates if c not in seen)
        return pool - len(seen)

    def available_like(self, anchor: int, candidates: tuple[int, ...]) -> int:
        """How many items a "similar to `anchor`" query can return: never the anchor itself."""
        if candidates:
            return sum(1 for c in candidates if c != anchor)
        return self.num_items - 1

    def describe_available(self, query: Any) -> str:
        if query.item is not None:
            count = self.available_like(query.item, query.candidates)
            item = self.item_ids[query.item]
            what = ("candidate" if count == 1 else "candidates") if query.candidates else "other items"
            return f"the {count:,} {what} besides item {item}"
        count = self.available(query.user, query.candidates, query.exclude_seen)
        user = self.user_ids[query.user]
        if query.candidates:
            unseen = f" that user {user} has not seen" if query.exclude_seen else ""
            return f"the {count:,} candidate{'s' if count != 1 else ''}{unseen}"
        if query.exclude_seen:
            return f"the {count:,} items user {user} has not seen (of {self.num_items:,})"
        return f"the {count:,} items in the catalogue"


def _integer(value: Any, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(f"{field} must be an integer id, got {value!r}", field)
    return value
