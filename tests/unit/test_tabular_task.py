"""The tabular task on its own: encoders fitted and refusing bad records by field, AUC and KS as the textbook
computes them, request validation (injection-shaped ids included), and the routing rule between model paths."""

from __future__ import annotations

import numpy as np
import pytest

from inferopt.sources.features import EntityRef, FeatureRecord, GroupRead
from inferopt.tasks.base import InvalidInput
from inferopt.tasks.tabular import COMPLEX_PATH, Application, Rule, TabularTask, scoring, tables
from inferopt.tasks.tabular.encoders import Encoders
from inferopt.tasks.tabular.german_credit import FEATURES, NO_CHECKING

RANGES = {"amount": (1.0, 100.0), "age": (18.0, 120.0), "job": None}
RECORDS = [
    {"amount": 10.0, "age": 30.0, "job": "a"},
    {"amount": 20.0, "age": 40.0, "job": "b"},
    {"amount": 60.0, "age": 50.0, "job": "b"},
]


def test_encoders_standardize_one_hot_and_impute_and_round_trip_through_json() -> None:
    encoders = Encoders.fit(RECORDS, RANGES)
    again = Encoders.from_dict(encoders.to_dict())
    assert encoders.width == again.width == 4  # two numbers, two categories
    rows = again.encode([*RECORDS, {"amount": None, "age": 40.0, "job": None}], ["r"] * 4)
    assert np.allclose(rows[:3, 0].mean(), 0.0, atol=1e-6) and np.isclose(rows[:3, 0].std(), 1.0, atol=1e-5)
    assert rows[:3, 2:].tolist() == [[1, 0], [0, 1], [0, 1]]
    assert rows[3, 0] == rows[1, 0]  # a missing amount is the training median (20)
    assert rows[3, 2:].tolist() == [0, 1]  # a missing job is the most frequent ("b")


@pytest.mark.parametrize(
    ("record", "field", "words"),
    [
        ({"amount": 10.0, "age": 30.0}, "x.job", "lacks the features ['job']"),
        ({"amount": 10.0, "age": 30.0, "job": "a", "iq": 1}, "x.iq", "unknown features ['iq']"),
        ({"amount": 1000.0, "age": 30.0, "job": "a"}, "x.amount", "outside its valid range 1 .. 100"),
        ({"amount": float("nan"), "age": 30.0, "job": "a"}, "x.amount", "outside its valid range"),
        ({"amount": "10", "age": 30.0, "job": "a"}, "x.amount", "must be a number"),
        ({"amount": True, "age": 30.0, "job": "a"}, "x.amount", "must be a number"),
        ({"amount": 10.0, "age": 30.0, "job": "c"}, "x.job", "not a category the model knows ('a', 'b')"),
    ],
)
def test_a_bad_record_is_refused_naming_its_field(record: dict, field: str, words: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        Encoders.fit(RECORDS, RANGES).encode([record], ["x"])
    assert caught.value.field == field and words in caught.value.message


def test_auc_and_ks_match_the_textbook_definitions() -> None:
    from scipy.stats import ks_2samp
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    bad = rng.random(500) < 0.3
    scores = np.round(rng.random(500) * 0.5 + bad * 0.3, 2)  # rounded: ties, which count half
    assert scoring.auc(scores, bad) == pytest.approx(roc_auc_score(bad, scores), abs=1e-12)
    assert scoring.ks(scores, bad) == pytest.approx(ks_2samp(scores[bad], scores[~bad]).statistic, abs=1e-12)
    assert scoring.auc(np.array([0.1, 0.9]), np.array([0, 1])) == 1.0


@pytest.fixture(scope="module")
def task(german_credit: object) -> TabularTask:
    records = german_credit.records  # type: ignore[attr-defined]
    encoders = Encoders.fit(records, {f.name: (f.low, f.high) if f.numeric else None for f in FEATURES})
    return TabularTask(
        encoders, tables.feature_spec(), threshold=1 / 6, rule=Rule("credit_amount", 10_000), label="t", location=""
    )


@pytest.mark.parametrize(
    ("instance", "field", "words"),
    [
        ({"entity_id": "17 OR 1=1"}, "i.entity_id", "must be a whole number from 1"),
        ({"entity_id": "1; DROP TABLE applicants; --"}, "i.entity_id", "must be a whole number"),
        ({"entity_id": 0}, "i.entity_id", "from 1"),
        ({"entity_id": True}, "i.entity_id", "whole number"),
        ({"entity_id": 2**63}, "i.entity_id", "whole number"),
        ({"entity_id": 1, "tenant": ""}, "i.tenant", "printable name of 1 to 64"),
        ({"entity_id": 1, "tenant": "x" * 65}, "i.tenant", "printable name"),
        ({"entity_id": 1, "tenant": "a\nb"}, "i.tenant", "printable name"),
        ({"entity_id": 1, "tenant": 7}, "i.tenant", "printable name"),
        ({"entity_id": 1, "complex": "yes"}, "i.complex", "true or false"),
        ({"entity_id": 1, "features": {}}, "i", "holds both entity_id and features"),
        ({}, "i", "needs entity_id or features"),
        ({"entity_id": 1, "user": 2}, "i", "unknown fields ['user']"),
        ({"features": {"age": 30}}, "i.features.duration_months", "lacks the features"),
        ({"features": [1, 2]}, "i.features", "must be an object"),
        ([17], "i", "must be an object"),
    ],
)
def test_request_instances_are_checked_before_any_query(
    task: TabularTask, instance: object, field: str, words: str
) -> None:
    with pytest.raises(InvalidInput) as caught:
        task.instance(instance, "i")
    assert caught.value.field == field and words in caught.value.message


def test_an_id_request_waits_for_its_features_and_a_record_routes_by_the_rule(
    task: TabularTask, german_credit: object
) -> None:
    app = task.instance({"entity_id": 17}, "i")
    assert task.entity(app) == EntityRef("default", 17)
    with pytest.raises(InvalidInput, match="features were not read"):
        task.preprocess([app])
    record = dict(german_credit.records[16])  # type: ignore[attr-defined]
    read = FeatureRecord(EntityRef("default", 17), record, {"profile": GroupRead({}, 1.0, "postgres")})
    filled = task.with_features(app, read)
    assert task.entity(filled) is None and filled.values == record
    small, large = dict(record, credit_amount=2_000.0), dict(record, credit_amount=12_000.0)
    paths = [item.path for item in task.preprocess([Application(small), Application(large)])]
    assert paths == ["default", COMPLEX_PATH]
    flagged = task.instance({"features": small, "complex": True}, "i")
    assert task.preprocess([flagged])[0].path == COMPLEX_PATH
    # The path is part of what is cached: the same record on another path is another entry.
    assert task.canonical(flagged) != task.canonical(Application(small))
    assert task.canonical(Application(small)) == task.canonical(Application(dict(reversed(small.items()))))
    # Two tenants' equal records are two entries: a hit must not tell one tenant what another sent.
    acme = task.with_features(task.instance({"entity_id": 17, "tenant": "acme"}, "i"), read)
    assert task.canonical(filled) != task.canonical(acme) and task.canonical(filled) != task.canonical(
        Application(record)
    )


def test_the_accounts_pivot_turns_missing_rows_into_the_data_sets_none_values(german_credit: object) -> None:
    data = german_credit  # type: ignore[assignment]
    rows = tables.rows(data, "default")  # type: ignore[arg-type]
    accounts = {(r[1], r[2]) for r in rows["accounts"]}
    no_checking = [i + 1 for i, r in enumerate(data.records) if r["checking_account"] == NO_CHECKING]  # type: ignore[attr-defined]
    assert no_checking and all((i, "checking") not in accounts for i in no_checking)
    assert len(rows["applications"]) == len(rows["applicants"]) == 1000
    spec = tables.feature_spec()
    assert set(spec.columns) == {f.name for f in FEATURES}
    assert all("$1" in g.sql and "$2" in g.sql for g in spec.groups)
