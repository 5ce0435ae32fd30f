"""The folder the risk trainer writes and optimize reads (never pickle: JSON and an .npz of plain arrays):

    scorer.json     format, architecture, threshold, routing rule, training settings, split, measured AUC / KS
    weights.npz     the state dict, one array per tensor
    encoders.json   the fitted encoders (encoders.py): categories, scaling, missing-value imputation
    features.json   the feature groups in PostgreSQL: SQL, columns, TTLs (sources/features.py)

encoders.json and features.json also travel in the artifact: serving encodes records and reads stored features
with them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inferopt.atomic import staged_directory
from inferopt.errors import InferoptError, InputError
from inferopt.sources.features import FeatureSpec
from inferopt.tasks import model_folder
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
    return model_folder.trained_with(path, MANIFEST, FORMAT, (WEIGHTS, ENCODERS, FEATURES), settings)


def write(out: Path, model: Any, encoders: Encoders, spec: FeatureSpec, meta: dict[str, Any], *, force: bool) -> Path:
    with staged_directory(out, force=force or (out.exists() and is_model_dir(out))) as staging:
        model_folder.write_json(staging / MANIFEST, {"format": FORMAT, "version": 1, **meta})
        model_folder.save_weights(staging / WEIGHTS, model)
        model_folder.write_json(staging / ENCODERS, encoders.to_dict())
        model_folder.write_json(staging / FEATURES, spec.to_dict())
    return out


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
        from inferopt.tasks.tabular.model import Architecture, RiskMLP

        model = RiskMLP(Architecture.from_dict(self.meta["architecture"]))
        return model_folder.load_weights(model, self.path / WEIGHTS, TRAIN_HINT)


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


def read_json(path: Path, error: type[InferoptError] = InputError) -> Any:
    return model_folder.read_json(path, TRAIN_HINT, error)
