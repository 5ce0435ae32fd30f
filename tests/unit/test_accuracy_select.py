import numpy as np
import pytest

from inferopt.accuracy import AccuracyReport, Budget, fidelity, row_cosine
from inferopt.bench.harness import BenchResult, SweepPoint
from inferopt.errors import InputError
from inferopt.select import Candidate, select
from inferopt.tasks.base import EvalSet
from inferopt.tasks.tensor.metrics import TensorMetrics
from inferopt.tasks.text_embedding.evaldata import ScoredPair
from inferopt.tasks.text_embedding.metrics import TextEmbeddingMetrics, spearman_x100


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
    data = EvalSet("t", ("a", "b", "c", "d"), pairs)
    assert spearman_x100(pairs, emb) == pytest.approx(100.0)
    assert spearman_x100((), emb) is None
    swapped = emb[[0, 1, 3, 2]]  # c and d swapped: ranking reversed in part
    report = TextEmbeddingMetrics().evaluate(data, {"embeddings": emb}, {"embeddings": swapped})
    assert report.metric_drop is not None and report.metric_drop > 0 and report.metric_name == "spearman_x100"


def test_tensor_measures_are_per_output_and_the_worst_counts() -> None:
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((100, 5)).astype(np.float32)
    score = rng.standard_normal((100, 3)).astype(np.float32)
    noisy = logits.copy()
    noisy[:10] = -noisy[:10]  # ten items flipped: their argmax changes, their cosine is -1
    report = TensorMetrics().evaluate(
        EvalSet("t", ()), {"logits": logits, "score": score}, {"logits": noisy, "score": score}
    )
    assert report.per_output["score"]["min_cosine"] == pytest.approx(1.0)
    assert report.per_output["logits"]["min_cosine"] == pytest.approx(-1.0)
    assert report.get("min_cosine") == pytest.approx(-1.0)  # the model is as good as its worst output
    assert report.get("argmax_agreement") == pytest.approx(0.9)
    assert report.metric is None and report.n == 100


def test_budget_flags_must_name_measures_of_the_task() -> None:
    budget = Budget.of(argmax_agreement=0.99).for_task(TensorMetrics())
    assert budget.to_dict() == {"mean_cosine": 0.995, "min_cosine": 0.98, "argmax_agreement": 0.99}
    with pytest.raises(InputError, match="--min-argmax-agreement is not a measure of this task"):
        Budget.of(argmax_agreement=0.99).for_task(TextEmbeddingMetrics())
    with pytest.raises(InputError, match=r"--min-cosine 1\.5 is not a cosine"):
        Budget.of(mean_cosine=1.5)
    assert Budget.of(mean_cosine=0.9).for_task(TextEmbeddingMetrics()).to_dict()["mean_cosine"] == 0.9


def _bench(throughput: float, p99: float | None, p95: float = 1.0, rounds: list[float] | None = None) -> BenchResult:
    point = SweepPoint(1, 2, 32, throughput, 100, 1.0)
    return BenchResult({"p50": 1.0, "p95": p95, "p99": p99}, [], [point], 1, 1.0, 1.0, 0.05, rounds=rounds or [])


def _candidate(
    name: str,
    mean: float,
    throughput: float,
    p99: float | None = 2.0,
    servable: bool = True,
    rounds: list[float] | None = None,
) -> Candidate:
    measures = {"mean_cosine": mean, "p1_cosine": mean, "min_cosine": mean, "sqnr_db": 30.0, "max_abs_error": 0.1}
    return Candidate(name, AccuracyReport(measures, n=20), _bench(throughput, p99, rounds=rounds), servable)


def test_select_fastest_within_budget_and_explain_misses() -> None:
    candidates = [
        _candidate("torch", 1.0, 100.0, servable=False),
        _candidate("fp32", 1.0, 400.0),
        _candidate("int8-bad", 0.96, 1200.0),
        _candidate("int8-good", 0.995, 1000.0),
    ]
    selection = select(candidates, Budget.of(mean_cosine=0.99))
    assert selection.chosen == "int8-good"
    assert list(selection.failures) == ["int8-bad"]
    assert "mean cosine 0.9600 < 0.99 (short by 0.0300)" in selection.failures["int8-bad"][0]


def test_a_tie_on_speed_goes_to_the_higher_fidelity_then_the_lower_tail_latency() -> None:
    budget = Budget.of(mean_cosine=0.99)
    a = _candidate("a", 0.999, 1000.0, p99=9.0)
    b = _candidate("b", 0.999, 990.0, p99=3.0)
    assert select([a, b], budget).chosen == "b"  # same fidelity: the tail decides
    better = _candidate("better", 0.9995, 985.0, p99=9.0)
    selection = select([a, b, better], budget)
    assert selection.chosen == "better" and set(selection.tied) == {"a", "b", "better"}
    c = _candidate("c", 0.9999, 900.0, p99=1.0)  # 10% slower is not a tie, however faithful
    assert select([a, c], budget).chosen == "a"


def test_the_noise_of_the_interleaved_rounds_widens_the_tie() -> None:
    budget = Budget.of(mean_cosine=0.99)
    # Round by round the two swap places by up to 12%: a 5% median gap is within that noise.
    fast = _candidate("fast", 0.995, 0.0, rounds=[1000.0, 1000.0, 1000.0, 1000.0, 1000.0])
    faithful = _candidate("faithful", 0.999, 0.0, rounds=[1070.0, 950.0, 940.0, 960.0, 1010.0])
    selection = select([fast, faithful], budget)
    assert selection.chosen == "faithful" and selection.noise > 0.05
    # Measured steadily 5% apart, the faster one wins.
    steady = _candidate("steady", 0.999, 0.0, rounds=[950.0, 951.0, 949.0, 950.0, 950.0])
    assert select([fast, steady], budget).chosen == "fast"


def test_no_variant_meets_budget() -> None:
    budget = Budget.of(mean_cosine=0.99, min_cosine=0.985)
    selection = select([_candidate("x", 0.98, 10.0), _candidate("y", 0.97, 20.0)], budget)
    assert selection.chosen is None and set(selection.failures) == {"x", "y"}
    assert any("min cosine" in m for m in selection.failures["x"])


def test_a_pinned_variant_is_shipped_only_if_it_is_servable_and_inside_the_budget() -> None:
    candidates = [
        _candidate("torch", 1.0, 100.0, servable=False),
        _candidate("fp32", 1.0, 1000.0),
        _candidate("int8", 0.995, 990.0),
        _candidate("int8-bad", 0.96, 1200.0),
    ]
    budget = Budget.of(mean_cosine=0.99)
    assert select(candidates, budget).chosen == "fp32"  # tied on speed: the higher fidelity
    pinned = select(candidates, budget, pinned="int8")
    assert (pinned.chosen, pinned.pinned, pinned.tied) == ("int8", True, ["int8"])
    assert select(candidates, budget, pinned="int8-bad").chosen is None
    assert select(candidates, budget, pinned="torch").chosen is None
    assert select(candidates, budget, pinned="nonesuch").chosen is None
