"""The folder the risk trainer writes and optimize reads (never pickle: JSON and an .npz of plain arrays):

    scorer.json     format, architecture, threshold, routing rule, training settings, split, measured AUC / KS
    weights.npz     the state dict, one array per tensor
    encoders.json   the fitted encoders (encoders.py): categories, scaling, missing-value imputation
    features.json   the feature groups in PostgreSQL: SQL, columns, TTLs (sources/features.py)

encoders.json and features.json also travel in the artifact: serving encodes records and reads stored features
with them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from inferopt.atomic import staged_directory
from inferopt.errors import InputError
from inferopt.sources.features import FeatureSpec
from inferopt.tasks.tabular.encoders import Encoders

MANIFEST = "scorer.json"
WEIGHTS = "weights.npz"
ENCODERS = "encoders.json"
FEATURES = "features.json"
FORMAT = "inferopt-risk-scorer"
TRAIN_HINT = "train one with: python -m inferopt.tasks.tabular.train --out DIR"


def is_model_dir(path: Path) -> bool:
    return (path / MANIFEST).is_file()


def trained_with(path: Path, settings: dict[str, Any]) -> bool:
    try:
        meta = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    complete = all((path / name).is_file() for name in (WEIGHTS, ENCODERS, FEATURES))
    return complete and meta.get("format") == FORMAT and meta.get("training") == settings


def write(out: Path, model: Any, encoders: Encoders, spec: FeatureSpec, meta: dict[str, Any], *, force: bool) -> Path:
    with staged_directory(out, force=force or (out.exists() and is_model_dir(out))) as staging:
        _write_json(staging / MANIFEST, {"format": FORMAT, "version": 1, **meta})
        np.savez(staging / WEIGHTS, **{n: v.detach().numpy() for n, v in model.state_dict().items()})
        _write_json(staging / ENCODERS, encoders.to_dict())
        _write_json(staging / FEATURES, spec.to_dict())
    return out


def _write_json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, indent=1) + "\n", encoding="utf-8")


@dataclass(frozen=True)
class ModelDir:
    path: Path
    meta: dict[str, Any]
    encoders: Encoders
    features: FeatureSpec

    @property
    def test_rows(self) -> tuple[int, ...]:
        """Row indices (entity id - 1) of the held-out split."""
        return tuple(int(i) for i in self.meta["split"]["test_rows"])

    def module(self) -> Any:
        import torch

        from inferopt.tasks.tabular.model import Architecture, RiskMLP

        model = RiskMLP(Architecture.from_dict(self.meta["architecture"]))
        with np.load(self.path / WEIGHTS, allow_pickle=False) as weights:
            state = {name: torch.from_numpy(weights[name]) for name in weights.files}
        try:
            model.load_state_dict(state)
        except RuntimeError as exc:
            raise InputError(f"{self.path / WEIGHTS} does not fit its architecture ({exc})", TRAIN_HINT) from None
        return model.eval()


def read(path: Path) -> ModelDir:
    meta = read_json(path / MANIFEST)
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise InputError(f"{path / MANIFEST} is not an inferopt risk scorer folder", TRAIN_HINT)
    if not (path / WEIGHTS).is_file():
        raise InputError(f"{path} holds no {WEIGHTS}", TRAIN_HINT)
    try:
        encoders = Encoders.from_dict(read_json(path / ENCODERS))
        features = FeatureSpec.from_dict(read_json(path / FEATURES))
        if encoders.width != int(meta["architecture"]["inputs"]):
            raise ValueError(
                f"the encoders give {encoders.width} columns, the model takes {meta['architecture']['inputs']}"
            )
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"{path}: malformed encoders, features or scorer.json ({exc})", TRAIN_HINT) from None
    return ModelDir(path, meta, encoders, features)


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: no such file", TRAIN_HINT) from None
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: not readable JSON ({exc})", TRAIN_HINT) from None
