"""The student recipe's config: bad shares refused with the reason, JSON round trips with the nested recipe,
and the default set offers students only where they can be built and trained."""

from __future__ import annotations

import json

import pytest

from inferopt.accuracy.budget import Budget
from inferopt.config import OptimizeConfig
from inferopt.errors import InputError
from inferopt.hardware import CpuInfo
from inferopt.recipes.base import config_from_dict, config_to_dict
from inferopt.recipes.graph import GraphConfig
from inferopt.recipes.int8_dynamic import DynamicInt8Config
from inferopt.recipes.presets import default_recipes
from inferopt.recipes.prune import PruneConfig

CPU = CpuInfo(model="test", flags=frozenset({"avx2"}))


@pytest.mark.parametrize("share", [0.0 - 0.1, 1.0, 1.5])
@pytest.mark.parametrize(
    "field", ["drop_layers", "drop_heads", "drop_ffn", "drop_hidden", "drop_channels", "drop_rows"]
)
def test_a_share_outside_zero_one_is_refused(field: str, share: float) -> None:
    with pytest.raises(ValueError, match=rf"{field} {share:g} is outside \(0, 1\)"):
        PruneConfig(**{field: share})


def test_a_student_with_nothing_pruned_or_a_student_inside_is_refused() -> None:
    with pytest.raises(ValueError, match="a student needs something pruned"):
        PruneConfig()
    with pytest.raises(ValueError, match="cannot be another student"):
        PruneConfig(drop_layers=0.5, then=PruneConfig(drop_layers=0.5))
    for minutes in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match=f"distill_minutes {minutes:g} is not a number of minutes"):
            PruneConfig(drop_layers=0.5, distill_minutes=minutes)
    with pytest.raises(ValueError, match="max_steps 0 is not a positive number"):
        PruneConfig(drop_layers=0.5, max_steps=0)


def test_config_round_trips_through_json_with_its_then_recipe() -> None:
    config = PruneConfig(name="s", drop_layers=1 / 3, seed=7, then=DynamicInt8Config(exclude_nodes=("a", "b")))
    data = json.loads(json.dumps(config_to_dict(config)))
    assert data["then"]["kind"] == "int8-dynamic" and data["then"]["exclude_nodes"] == ["a", "b"]
    assert config_from_dict(data) == config
    assert config_from_dict(config_to_dict(PruneConfig(drop_ffn=0.5))).then is None


def test_students_share_one_build_when_only_then_differs() -> None:
    a = PruneConfig(drop_layers=0.25, then=GraphConfig())
    b = PruneConfig(name="other", drop_layers=0.25, then=DynamicInt8Config())
    assert a.student_key() == b.student_key() != PruneConfig(drop_layers=0.25, seed=1).student_key()
    assert PruneConfig(drop_layers=0.25, distill_minutes=2).student_key() == a.student_key()  # 2 == 2.0


def _kinds(recipes: list) -> list[str]:
    return [r.name for r in recipes if isinstance(r, PruneConfig)]


def test_full_transformer_runs_get_a_student_in_two_forms_and_quick_ones_none() -> None:
    full = default_recipes(CPU, "bert", Budget(), quick=False, torch=True, distill_minutes=2.0, seed=3)
    students = [r for r in full if isinstance(r, PruneConfig)]
    assert [s.name for s in students] == ["student-layers-fused", "student-layers-int8"]
    assert {s.student_key() for s in students} == {students[0].student_key()}
    assert students[0].distill_minutes == 2.0 and students[0].seed == 3
    assert isinstance(students[1].then, DynamicInt8Config)
    assert _kinds(default_recipes(CPU, "bert", Budget(), quick=True, torch=True, distill_minutes=2.0)) == []
    assert _kinds(default_recipes(CPU, "bert", Budget(), quick=False, torch=False, distill_minutes=2.0)) == []
    assert _kinds(default_recipes(CPU, "bert", Budget(), quick=False, torch=True, distill_minutes=0)) == []
    cnn = default_recipes(CPU, "cnn", Budget(), quick=False, torch=True, distill_minutes=2.0)
    assert _kinds(cnn) == ["student-channels", "student-channels-int8"]
    recommender = default_recipes(CPU, "embedding", Budget(), quick=False, torch=True, distill_minutes=2.0)
    assert _kinds(recommender) == ["student-hidden", "student-hidden-int8"]
    mlp = default_recipes(CPU, "none", Budget(), quick=False, torch=True, distill_minutes=2.0)
    assert _kinds(mlp) == ["student-hidden", "student-hidden-int8"]


@pytest.mark.parametrize("minutes", [-1.0, 2000.0])
def test_distill_minutes_out_of_range_is_a_one_line_error(minutes: float) -> None:
    with pytest.raises(InputError, match="--distill-minutes"):
        OptimizeConfig(distill_minutes=minutes)
