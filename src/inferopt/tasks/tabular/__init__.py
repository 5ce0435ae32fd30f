"""Tabular risk scoring: an MLP trained on the German credit data (train.py) that scores the probability of the
bad outcome, with a decision at the threshold, for an application named by id (its features are read from
PostgreSQL, see tables.py) or sent whole.

A raw input is an Application: the features (a full record, or none yet when it names an entity), the entity
and tenant, and the request's own complexity flag. Requests look like

    {"entity_id": 17, "tenant": "default"}            features from the feature store (tenant: "default")
    {"features": {"duration_months": 6, ...}}          every feature, null for one the client does not have
    ... and either may add "complex": true             the second model path (FP32), whatever the rule says

and each prediction is {"score": P(bad), "decision": "approve" | "decline", "model_path": "default" | "complex"}.
Without the flag the task's rule routes (applications of 10,000 DM or more take the complex path). The fitted
encoders and the feature groups' SQL travel in the artifact (encoders.json, features.json).

Bad input is a 422 that names the field: an entity id that is not a positive whole number (a SQL-looking one
included: ids are only ever query parameters), a tenant that is not a short printable name, a record with
absent or unknown features, a number out of range, a category the model never saw.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from inferopt.errors import ArtifactError, InputError
from inferopt.sources.features import EntityRef, FeatureRecord, FeatureSpec
from inferopt.tasks.base import (
    DEFAULT_PATH,
    KSERVE_V1,
    NO_OPTIONS,
    OIP_V2,
    Arrays,
    EvalSet,
    InvalidInput,
    IOSchema,
    Item,
    Metrics,
    ModelOptions,
    Source,
    Task,
    TensorSpec,
    v2_texts,
)
from inferopt.tasks.tabular import model_dir
from inferopt.tasks.tabular.encoders import Encoders

COMPLEX_PATH = "complex"
COMPLEX_VARIANT = "onnx-fp32"  # what the complex path runs: the full-precision graph
DEFAULT_TENANT = "default"
FIELDS = ("entity_id", "tenant", "features", "complex")
MAX_TENANT = 64
MAX_ID = 2**63 - 1  # a Postgres bigint
HELD_OUT = 1
DISTILLATION_RECORDS = 5000


@dataclass(frozen=True, slots=True)
class Application:
    values: dict[str, Any] | None  # the features; None until an entity's are fetched
    entity: EntityRef | None = None
    complex: bool | None = None  # the request's own flag (None: the rule decides)
    field: str = "input"


@dataclass(frozen=True)
class Rule:
    """Which applications take the complex path: a feature at or above a value."""

    feature: str
    at_least: float

    def applies(self, values: dict[str, Any]) -> bool:
        value = values.get(self.feature)
        return isinstance(value, int | float) and value >= self.at_least


class TabularTask(Task):
    name = "tabular"
    version = 1
    protocols = (KSERVE_V1, OIP_V2)
    inline_preprocess = True  # encoding a record is ~20 us: less than the preprocessing thread's hop

    def __init__(
        self,
        encoders: Encoders,
        features: FeatureSpec,
        *,
        threshold: float,
        rule: Rule,
        label: str,
        location: str,
        folder: model_dir.ModelDir | None = None,
    ) -> None:
        self.encoders = encoders
        self.features = features
        self.threshold = threshold
        self.rule = rule
        self.label = label
        self.location = location
        self.folder = folder  # the trained model folder (optimize only)

    # -- where it comes from -------------------------------------------------------------------------------

    @classmethod
    def claims(cls, ref: str | None) -> bool:
        return ref is not None and model_dir.is_model_dir(Path(ref))

    @classmethod
    def from_model(cls, ref: str | None, options: ModelOptions = NO_OPTIONS) -> Task:
        options.refuse_others((), "a risk scorer (its folder says everything)")
        if ref is None:
            raise InputError("The tabular task needs MODEL: a folder written by its trainer", model_dir.TRAIN_HINT)
        folder = model_dir.read(Path(ref))
        meta = folder.meta
        return cls(
            folder.encoders,
            folder.features,
            threshold=float(meta["threshold"]),
            rule=Rule(str(meta["complex_rule"]["feature"]), float(meta["complex_rule"]["at_least"])),
            label="risk-mlp-german-credit",
            location=ref,
            folder=folder,
        )

    @property
    def model_name(self) -> str:
        return self.label

    def _folder(self) -> model_dir.ModelDir:
        if self.folder is None:
            raise InputError("This risk scorer was loaded from an artifact; optimize needs its model folder", "")
        return self.folder

    # -- optimize ------------------------------------------------------------------------------------------

    def load_source(self) -> Source:
        module = self._folder().module()
        size = sum(p.numel() * p.element_size() for p in module.parameters())
        example = {"features": np.zeros((2, self.encoders.width), np.float32)}
        return Source(self.model_name, self.location, module, None, example, size)

    def io_schema(self) -> IOSchema:
        return IOSchema(
            (TensorSpec("features", "float32", ("batch", self.encoders.width)),),
            (TensorSpec("score", "float32", ("batch",)),),
        )

    def eval_data(self, path: Path | None, limit: int | None = None) -> EvalSet:
        """Every applicant of the data set (fidelity), labelled with the outcome and whether it was held out of
        training (the AUC is measured on those only)."""
        if path is not None:
            raise InputError(
                "--data is not taken by the tabular task: it evaluates on the German credit data its trainer split",
                "drop --data",
            )
        from inferopt.tasks.tabular import german_credit

        data = german_credit.read()
        held = set(self._folder().test_rows)
        rows = range(len(data) if limit is None else min(limit, len(data)))
        inputs = tuple(Application(data.records[i], field=f"applicant {i + 1}") for i in rows)
        labels = np.array([(data.bad[i], int(i in held)) for i in rows], np.int64)
        summary = f"{len(inputs):,} applicants, {int(labels[:, 1].sum())} held out of training for the AUC"
        return EvalSet("German credit", inputs, labels, summary)

    def calibration_inputs(self) -> list[Any]:
        """The training split's applicants (the held-out ones stay an honest check)."""
        from inferopt.tasks.tabular import german_credit

        data = german_credit.read()
        held = set(self._folder().test_rows)
        return [Application(r, field=f"applicant {i + 1}") for i, r in enumerate(data.records) if i not in held]

    def distillation_inputs(self) -> list[Any]:
        """Applications sampled column by column from the training split: every value a real one, the
        combinations new, so they are not the eval applicants (a fixed seed; DISTILLATION_RECORDS of them)."""
        import numpy as np

        train = [a.values for a in self.calibration_inputs() if a.values is not None]
        rng = np.random.default_rng(0)
        picks = rng.integers(len(train), size=(DISTILLATION_RECORDS, len(train[0])))
        names = list(train[0])
        return [
            Application(
                {name: train[row][name] for name, row in zip(names, rows, strict=True)}, field=f"sampled {i + 1}"
            )
            for i, rows in enumerate(picks)
        ]

    def metrics(self) -> Metrics:
        from inferopt.tasks.tabular.metrics import RiskMetrics

        return RiskMetrics(self.threshold)

    def model_paths(self) -> dict[str, str]:
        return {COMPLEX_PATH: COMPLEX_VARIANT}

    # -- stored features -----------------------------------------------------------------------------------

    def stored_features(self) -> FeatureSpec:
        return self.features

    def entity(self, raw: Any) -> EntityRef | None:
        return raw.entity if isinstance(raw, Application) and raw.values is None else None

    def with_features(self, raw: Any, record: FeatureRecord) -> Any:
        return replace(raw, values=record.values)

    # -- serve ---------------------------------------------------------------------------------------------

    def preprocess(self, raws: Sequence[Any]) -> list[Item]:
        apps = [self._application(raw) for raw in raws]
        rows = self.encoders.encode([a.values for a in apps], [_features_field(a) for a in apps])  # type: ignore[misc]
        return [Item(row, path=self._path(app)) for row, app in zip(rows, apps, strict=True)]

    def _application(self, raw: Any) -> Application:
        app = raw if isinstance(raw, Application) else self.instance(raw, "input")
        if app.values is None:
            raise InvalidInput(f"{app.field} names an entity whose features were not read", app.field)
        return app

    def _path(self, app: Application) -> str:
        wanted = app.complex if app.complex is not None else self.rule.applies(app.values or {})
        return COMPLEX_PATH if wanted else DEFAULT_PATH

    def collate(self, items: Sequence[Item]) -> Arrays:
        return {"features": np.stack([item.data for item in items])}

    def drift_signals(self, items: Sequence[Item], outputs: Arrays) -> dict[str, np.ndarray]:
        """Every input feature (numbers standardized, categories by index) and the score."""
        features = self.encoders.decode_columns(np.stack([item.data for item in items]))
        signals = {f"input.{name}": values.astype(np.float64) for name, values in features.items()}
        signals["output.score"] = outputs["score"].reshape(len(items)).astype(np.float64)
        return signals

    def postprocess(self, outputs: Arrays, item: Item) -> Any:
        score = float(outputs["score"])
        decision = "decline" if score >= self.threshold else "approve"
        return {"score": round(score, 6), "decision": decision, "model_path": item.path}

    def canonical(self, raw: Any) -> bytes:
        """The tenant, the features as sorted JSON and the path flag: equal bytes, equal results. The tenant is
        there although equal features give equal scores: a cache hit must not tell one tenant that another sent
        the same record. An input that still names an entity has no features yet; serve fills them first."""
        app = self._application(raw)
        tenant = app.entity.tenant.encode() if app.entity is not None else b""
        values = orjson.dumps(app.values, option=orjson.OPT_SORT_KEYS)
        return b"%d:%s|%s|%d" % (len(tenant), tenant, values, self._path(app) == COMPLEX_PATH)

    def instance(self, value: Any, field: str) -> Any:
        if not isinstance(value, dict):
            raise InvalidInput(f'{field} must be an object such as {{"entity_id": 17, "tenant": "default"}}', field)
        unknown = sorted(set(value) - set(FIELDS))
        if unknown:
            raise InvalidInput(f"{field} has unknown fields {unknown}; an application takes {list(FIELDS)}", field)
        if ("entity_id" in value) == ("features" in value):
            which = (
                "holds both entity_id and features; give one" if "features" in value else "needs entity_id or features"
            )
            raise InvalidInput(f"{field} {which}", field)
        flag = value.get("complex")
        if flag is not None and not isinstance(flag, bool):
            raise InvalidInput(f"{field}.complex must be true or false, got {flag!r}", f"{field}.complex")
        if "features" in value:
            if "tenant" in value:
                raise InvalidInput(
                    f"{field}.tenant is for entity_id requests; features carry their own data", f"{field}.tenant"
                )
            record = value["features"]
            if not isinstance(record, dict):
                raise InvalidInput(f"{field}.features must be an object of feature -> value", f"{field}.features")
            self.encoders.check_names(record, f"{field}.features")
            return Application(dict(record), None, flag, field)
        ref = EntityRef(
            _tenant(value.get("tenant", DEFAULT_TENANT), f"{field}.tenant"),
            _entity_id(value["entity_id"], f"{field}.entity_id"),
        )
        return Application(None, ref, flag, field)

    def to_instance(self, raw: Any) -> Any:
        app = raw if isinstance(raw, Application) else self.instance(raw, "input")
        instance: dict[str, Any] = (
            {"features": app.values}
            if app.entity is None
            else {"entity_id": app.entity.entity_id, "tenant": app.entity.tenant}
        )
        if app.complex is not None:
            instance["complex"] = app.complex
        return instance

    def from_tensors(self, tensors: dict[str, Any]) -> list[Any]:
        """entity_id INT64 [n], and optionally tenant BYTES [n] (default: every row's tenant is "default")."""
        unknown = sorted(set(tensors) - {"entity_id", "tenant"})
        if unknown or "entity_id" not in tensors:
            raise InvalidInput(
                f"this model takes entity_id INT64 [n] and optionally tenant BYTES; got {sorted(tensors)}", "inputs"
            )
        ids = np.asarray(tensors["entity_id"])
        if isinstance(tensors["entity_id"], list) or ids.dtype.kind not in "iu" or ids.ndim != 1:
            raise InvalidInput("entity_id must be an INT64 tensor of rank 1", "entity_id")
        tenants = tensors.get("tenant", [DEFAULT_TENANT] * len(ids))
        if not isinstance(tenants, list) or len(tenants) != len(ids):
            raise InvalidInput(f"tenant must be BYTES [{len(ids)}], one per entity_id", "tenant")
        tenants = v2_texts(tenants, "tenant")
        return [
            self.instance({"entity_id": int(i), "tenant": t}, f"row {row}")
            for row, (i, t) in enumerate(zip(ids.tolist(), tenants, strict=True))
        ]

    def v2_inputs(self) -> list[dict[str, Any]]:
        return [
            {"name": "entity_id", "datatype": "INT64", "shape": [-1]},
            {"name": "tenant", "datatype": "BYTES", "shape": [-1]},
        ]

    def warmup_batches(self, max_batch: int, max_cost: int) -> list[Arrays]:
        """One application and a full batch, on every path."""
        row = np.zeros(self.encoders.width, np.float32)
        return [self.collate([Item(row)] * rows) for rows in sorted({1, max_batch})]

    # -- the artifact ----------------------------------------------------------------------------------------

    def config(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "source": self.location,
            "threshold": self.threshold,
            "complex_rule": {"feature": self.rule.feature, "at_least": self.rule.at_least},
            "inputs": self.encoders.width,
        }

    def assets(self, work: Path) -> dict[str, Path]:
        folder = self._folder().path
        names = (model_dir.ENCODERS, model_dir.FEATURES)
        for name in names:
            shutil.copyfile(folder / name, work / name)
        return {name: work / name for name in names}

    @classmethod
    def from_artifact(cls, config: dict[str, Any], directory: Path) -> Task:
        encoders = Encoders.from_dict(model_dir.read_json(directory / model_dir.ENCODERS, ArtifactError))
        features = FeatureSpec.from_dict(model_dir.read_json(directory / model_dir.FEATURES, ArtifactError))
        rule = config.get("complex_rule", {})
        return cls(
            encoders,
            features,
            threshold=float(config["threshold"]),
            rule=Rule(str(rule.get("feature", "")), float(rule.get("at_least", float("inf")))),
            label=str(config.get("label", "risk-scorer")),
            location=str(config.get("source", "")),
        )


def _features_field(app: Application) -> str:
    return f"{app.field}.features" if app.entity is None else f"{app.field} (stored features)"


def _tenant(value: Any, field: str) -> str:
    if not isinstance(value, str) or not value or len(value) > MAX_TENANT or not value.isprintable():
        raise InvalidInput(f"{field} must be a printable name of 1 to {MAX_TENANT} characters, got {value!r}", field)
    return value


def _entity_id(value: Any, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_ID:
        raise InvalidInput(f"{field} must be a whole number from 1, got {value!r}", field)
    return value
