import numpy as np
import pytest

from inferopt.accuracy import AccuracyReport, Fidelity, evaluate, fidelity, row_cosine, spearman_x100
from inferopt.bench.harness import BenchResult, SweepPoint
from inferopt.config import Budget
from inferopt.evaldata import EvalData, ScoredPair
from inferopt.select import Candidate, select


def _unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_fidelity_of_known_perturbation() -> None:
    rng = np.random.default_rng(0)
    ref = _unit(rng.standard_normal((50, 16)))
    assert fidelity(ref, ref).mean_cosine == pytest.approx(1.0)
    rotated = ref.copy()
    rotated[0] = -ref[0]  # one item flipped: cosine -1
    fid = fidelity(ref, rotated)
    assert fid.min_cosine == pytest.approx(-1.0)
    assert fid.mean_cosine == pytest.approx((49 - 1) / 50)
    assert row_cosine(ref * 3.0, ref) == pytest.approx(np.ones(50))


def test_spearman_on_pairs() -> None:
    emb = _unit(np.array([[1.0, 0.0], [1.0, 0.1], [0.0, 1.0], [1.0, 1.0]]))
    pairs = (ScoredPair(0, 1, 5.0), ScoredPair(0, 3, 3.0), ScoredPair(0, 2, 0.0))
    data = EvalData("t", ("a", "b", "c", "d"), pairs)
    assert spearman_x100(data, emb) == pytest.approx(100.0)
    assert spearman_x100(EvalData("t", ("a",)), emb) is None
    report = evaluate(data, emb, emb[[0, 1, 3, 2]])  # c and d swapped: ranking reversed in part
    assert report.metric_drop is not None and report.metric_drop > 0


def _bench(throughput: float, p99: float | None, p95: float = 1.0) -> BenchResult:
    point = SweepPoint(1, 2, 32, throughput, 100, 1.0)
    return BenchResult({"p50": 1.0, "p95": p95, "p99": p99}, [], [point], 1, 1.0, 1.0, 0.05)


def _candidate(name: str, mean: float, throughput: float, p99: float | None = 2.0, servable: bool = True) -> Candidate:
    fid = Fidelity(mean_cosine=mean, p1_cosine=mean, min_cosine=mean, sqnr_db=30.0, max_abs_error=0.1, n=20)
    return Candidate(name, AccuracyReport(fid, None, None, None), _bench(throughput, p99), servable)


def test_select_fastest_within_budget_and_explain_misses() -> None:
    candidates = [
        _candidate("torch", 1.0, 100.0, servable=False),
        _candidate("fp32", 1.0, 400.0),
        _candidate("int8-bad", 0.96, 1200.0),
        _candidate("int8-good", 0.995, 1000.0),
    ]
    selection = select(candidates, Budget(0.99))
    assert selection.chosen == "int8-good"
    assert list(selection.failures) == ["int8-bad"]
    assert "mean cosine 0.9600 < 0.99 (short by 0.0300)" in selection.failures["int8-bad"][0]


def test_tie_goes_to_lower_tail_latency() -> None:
    a = _candidate("a", 0.999, 1000.0, p99=9.0)
    b = _candidate("b", 0.999, 990.0, p99=3.0)
    assert select([a, b], Budget(0.99)).chosen == "b"
    c = _candidate("c", 0.999, 900.0, p99=1.0)  # 10% slower is not a tie
    assert select([a, c], Budget(0.99)).chosen == "a"


def test_no_variant_meets_budget() -> None:
    selection = select([_candidate("x", 0.98, 10.0), _candidate("y", 0.97, 20.0)], Budget(0.99, 0.985))
    assert selection.chosen is None and set(selection.failures) == {"x", "y"}
    assert any("min cosine" in m for m in selection.failures["x"])
