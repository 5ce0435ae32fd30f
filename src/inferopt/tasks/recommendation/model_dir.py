"""The folder the trainer writes and optimize reads (never pickle: JSON and an .npz of plain arrays):

    recommender.json   format, architecture, training settings, measured HR@10 / NDCG@10, seconds
    weights.npz        the state dict, one array per tensor
    catalogue.json     the catalogue's own ids in row order: {"users": [...], "items": [...]}
    history.json       per user row, the item rows seen in training (what "exclude seen" removes)
    heldout.json       per user row, the held-out item row and its 99 sampled negatives (the eval data)

catalogue.json and history.json also travel in the artifact: serving maps ids to rows and excludes seen items.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inferopt.atomic import staged_directory
from inferopt.errors import InputError
from inferopt.tasks import model_folder

MANIFEST = "recommender.json"
WEIGHTS = "weights.npz"
CATALOGUE = "catalogue.json"
HISTORY = "history.json"
HELDOUT = "heldout.json"
FORMAT = "inferopt-recommender"
TRAIN_HINT = "train one with: python -m inferopt.tasks.recommendation.train --out DIR"


def is_model_dir(path: Path) -> bool:
    return (path / MANIFEST).is_file()


def trained_with(path: Path, settings: dict[str, Any]) -> bool:
    """Whether `path` holds a complete model trained with exactly `settings`."""
    return model_folder.trained_with(path, MANIFEST, FORMAT, (WEIGHTS, CATALOGUE, HISTORY, HELDOUT), settings)


def write(
    out: Path,
    model: Any,
    split: Any,
    settings: dict[str, Any],
    metrics: dict[str, Any],
    seconds: float,
    *,
    force: bool,
) -> Path:
    data = split.data
    with staged_directory(out, force=force or (out.exists() and is_model_dir(out))) as staging:
        meta = {
            "format": FORMAT,
            "version": 1,
            "model": "NeuMF",
            "architecture": model.arch.to_dict(),
            "training": settings,
            "data": {
                "name": "MovieLens 100K (recbole 1.2.1, dataset_example/ml-100k)",
                "interactions": len(data),
                "users": data.num_users,
                "items": data.num_items,
                "split": "leave-last-out by timestamp; 99 sampled negatives per held-out item",
            },
            "metrics": metrics,
            "train_seconds": round(seconds, 2),
        }
        _write(staging / MANIFEST, meta)
        model_folder.save_weights(staging / WEIGHTS, model)
        _write(staging / CATALOGUE, {"users": list(data.user_ids), "items": list(data.item_ids)})
        _write(staging / HISTORY, split.history())
        _write(staging / HELDOUT, {"test": split.test_items.tolist(), "negatives": split.negatives.tolist()})
    return out


def _write(path: Path, value: Any) -> None:
    model_folder.write_json(path, value, compact=True)


@dataclass(frozen=True)
class ModelDir:
    path: Path
    meta: dict[str, Any]
    user_ids: tuple[int, ...]
    item_ids: tuple[int, ...]
    history: tuple[tuple[int, ...], ...]
    test_items: tuple[int, ...]
    negatives: tuple[tuple[int, ...], ...]

    def module(self) -> Any:
        """The trained NeuMF in eval mode."""
        from inferopt.tasks.recommendation.model import Architecture, NeuMF

        model = NeuMF(Architecture.from_dict(self.meta["architecture"]))
        return model_folder.load_weights(model, self.path / WEIGHTS, TRAIN_HINT)


def read(path: Path) -> ModelDir:
    """The model folder at `path`; InputError naming the file for anything missing or malformed."""
    meta = _read_json(path / MANIFEST)
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise InputError(f"{path / MANIFEST} is not an inferopt recommender folder", TRAIN_HINT)
    catalogue = _read_json(path / CATALOGUE)
    history = _read_json(path / HISTORY)
    heldout = _read_json(path / HELDOUT)
    if not (path / WEIGHTS).is_file():
        raise InputError(f"{path} holds no {WEIGHTS}", TRAIN_HINT)
    try:
        users, items = tuple(int(u) for u in catalogue["users"]), tuple(int(i) for i in catalogue["items"])
        seen = tuple(tuple(int(i) for i in row) for row in history)
        tests = tuple(int(i) for i in heldout["test"])
        negatives = tuple(tuple(int(i) for i in row) for row in heldout["negatives"])
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"{path}: a malformed catalogue, history or held-out file ({exc})", TRAIN_HINT) from None
    arch = meta.get("architecture", {})
    if (len(users), len(items)) != (arch.get("num_users"), arch.get("num_items")) or len(seen) != len(users):
        raise InputError(f"{path}: the catalogue does not match the model's tables", TRAIN_HINT)
    return ModelDir(path, meta, users, items, seen, tests, negatives)


def _read_json(path: Path) -> Any:
    return model_folder.read_json(path, TRAIN_HINT)
