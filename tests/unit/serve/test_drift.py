"""Drift: the reference's bins and columns, PSI and KS on known distributions, the live window (its size, its
age limit, its minimum), and through the server: the gauges and GET /v1/drift move when the live inputs shift
and stay put when they do not."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from inferopt.drift.reference import MAX_COLUMNS, DriftReference
from inferopt.drift.stats import bin_counts, ks, psi
from inferopt.errors import ArtifactError, InputError
from inferopt.serve.config import ServeConfig
from inferopt.serve.drift import DriftMonitor
from inferopt.serve.testing import fake_model
from inferopt.tasks.base import Item
from inferopt.tasks.text_embedding import TextEmbeddingTask

RNG = np.random.default_rng(7)


def _reference(values: np.ndarray) -> DriftReference:
    return DriftReference.build({"x": values}, "synthetic")


def _monitor(reference: DriftReference, clock=None, **window: int | float) -> DriftMonitor:
    settings = {"window": 500, "min_items": 100, "max_age_s": 3600.0} | window
    extract = lambda items, outputs: {"x": outputs["x"]}  # noqa: E731
    if clock is None:
        return DriftMonitor(reference, extract, **settings)  # type: ignore[arg-type]
    return DriftMonitor(reference, extract, clock=clock, **settings)  # type: ignore[arg-type]


def _feed(monitor: DriftMonitor, values: np.ndarray, batch: int = 25) -> None:
    for start in range(0, len(values), batch):
        chunk = values[start : start + batch]
        monitor.observe([Item(None)] * len(chunk), {"x": chunk})


def test_psi_and_ks_are_near_zero_for_the_same_distribution_and_large_for_a_shifted_one() -> None:
    ref = _reference(RNG.normal(0, 1, 3000)).signals["x"]
    assert len(ref.edges) == 9 and ref.shares == pytest.approx(np.full(10, 0.1), abs=0.002)
    same, shifted = RNG.normal(0, 1, 1000), RNG.normal(1, 1, 1000)
    assert psi(ref.shares, bin_counts(ref.edges, same)) < 0.05
    assert psi(ref.shares, bin_counts(ref.edges, shifted)) > 0.5
    assert ks(ref.sample, same)[0] < 0.06 and ks(ref.sample, same)[1] > 0.01
    assert ks(ref.sample, shifted)[0] > 0.3 and ks(ref.sample, shifted)[1] < 1e-6


def test_a_discrete_signal_gets_a_bin_per_value_and_columns_keep_the_most_varied() -> None:
    codes = RNG.integers(0, 4, 2000).astype(np.float64)
    assert _reference(codes).signals["x"].edges.tolist() == [0.5, 1.5, 2.5]
    matrix = RNG.normal(0, 0.01, (500, 32))
    matrix[:, [3, 30]] *= 100  # the two columns a shift would show in first
    reference = DriftReference.build({"emb": matrix, "n": RNG.normal(size=500)}, "synthetic")
    assert len(reference.columns["emb"]) == MAX_COLUMNS and {3, 30} <= set(reference.columns["emb"])
    watched = reference.watch({"emb": matrix[:5], "n": np.zeros(5)})
    assert set(watched) == {"n", *(f"emb[{j}]" for j in reference.columns["emb"])}
    assert watched["emb[30]"].tolist() == matrix[:5, 30].tolist()


def test_the_reference_round_trips_and_a_malformed_one_is_an_artifact_error(tmp_path: Path) -> None:
    reference = DriftReference.build({"x": RNG.normal(size=300), "emb": RNG.normal(size=(300, 12))}, "d")
    again = DriftReference.read(reference.write(tmp_path / "drift_reference.json"))
    assert again.columns == reference.columns and again.items == 300 and set(again.signals) == set(reference.signals)
    assert again.signals["x"].edges == pytest.approx(reference.signals["x"].edges, rel=1e-5)
    (tmp_path / "bad.json").write_text('{"version": 1, "signals": {"x": {"edges": [1], "shares": [1]}}}')
    with pytest.raises(ArtifactError, match=r"bad.json in the artifact is malformed"):
        DriftReference.read(tmp_path / "bad.json")


def test_the_window_keeps_the_latest_items_and_reports_once_it_has_enough() -> None:
    monitor = _monitor(_reference(RNG.normal(0, 1, 3000)))
    _feed(monitor, RNG.normal(0, 1, 75))
    early = monitor.compute()
    assert early["window"]["items"] == 75 and not early["ready"] and early["signals"] == {}
    _feed(monitor, RNG.normal(0, 1, 500))
    stable = monitor.compute()["signals"]["x"]
    assert stable["psi"] < 0.1 and stable["ks"] < 0.1
    _feed(monitor, RNG.normal(2, 1, 500))  # the whole window is replaced by shifted values
    moved = monitor.compute()
    assert moved["window"]["items"] == 500
    assert moved["signals"]["x"]["psi"] > 1 and moved["signals"]["x"]["ks"] > 0.5
    assert moved["signals"]["x"]["live_mean"] == pytest.approx(2, abs=0.2)


def test_items_older_than_the_max_age_leave_the_window() -> None:
    now = [0.0]
    monitor = _monitor(_reference(RNG.normal(0, 1, 3000)), clock=lambda: now[0], max_age_s=60.0)
    _feed(monitor, RNG.normal(0, 1, 200))
    now[0] = 30.0
    _feed(monitor, RNG.normal(0, 1, 150))
    assert monitor.compute()["window"]["items"] == 350
    now[0] = 70.0  # the first 200 are 70 s old
    figures = monitor.compute()
    assert figures["window"]["items"] == 150 and figures["ready"]


@pytest.mark.parametrize(
    ("field", "value", "flag"),
    [
        ("drift_window", 0, "--drift-window"),
        ("drift_window", -5, "--drift-window"),
        ("drift_min_items", 0, "--drift-min-items"),
        ("drift_max_age_s", 0.0, "--drift-max-age-s"),
        ("drift_max_age_s", -1.0, "--drift-max-age-s"),
        ("drift_min_items", 2000, "--drift-min-items"),  # more than the window holds
    ],
)
def test_drift_windows_of_no_size_are_refused_naming_the_flag(field: str, value: float, flag: str) -> None:
    with pytest.raises(InputError, match=flag):
        ServeConfig(**{field: value})  # type: ignore[arg-type]


SHORT = [f"the {w} sat on the mat by the door" for w in ("cat", "dog", "bird", "fox", "cow", "hen", "owl", "ant")]


def _texts(count: int, words: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    vocabulary = [
        "river",
        "stone",
        "light",
        "quiet",
        "market",
        "signal",
        "window",
        "garden",
        "paper",
        "engine",
        "morning",
        "harbor",
    ]
    return [" ".join(rng.choice(vocabulary, size=rng.integers(words // 2, words + 1))) for _ in range(count)]


def _served_model(task: TextEmbeddingTask):
    """The fake text model, with a drift reference from short texts (its FakeBackend's own outputs)."""
    model = fake_model(task=task)
    items = task.preprocess(_texts(600, 12, seed=1))
    outputs = model.backends[0].run(task.collate(items))
    return replace(model, drift=DriftReference.build(task.drift_signals(items, outputs), "short texts"))


@pytest.mark.anyio
@pytest.mark.parametrize(("words", "moves"), [(12, False), (120, True)])
async def test_served_drift_moves_when_the_live_inputs_shift_and_stays_put_when_they_do_not(
    serve, task: TextEmbeddingTask, words: int, moves: bool
) -> None:
    async with serve(_served_model(task), cache="off", drift_window=300, drift_min_items=200) as served:
        for start in range(0, 300, 20):  # new texts, of the reference's lengths or ten times longer
            texts = _texts(300, words, seed=2)[start : start + 20]
            assert (await served.client.post("/v1/embeddings", json={"input": texts})).status_code == 200
        figures = (await served.client.get("/v1/drift")).json()
        metrics = (await served.client.get("/metrics")).text
    assert figures["ready"] and figures["window"]["items"] == 300 and figures["reference"]["items"] == 600
    tokens = figures["signals"]["input.tokens"]
    assert (tokens["psi"] > 1.0 and tokens["ks"] > 0.8) if moves else (tokens["psi"] < 0.1 and tokens["ks"] < 0.1)
    assert f'inferopt_drift_psi{{signal="input.tokens"}} {tokens["psi"]}' in metrics
    assert "inferopt_drift_window_items 300.0" in metrics
    embedding = [name for name in figures["signals"] if name.startswith("output.embedding[")]
    assert len(embedding) == MAX_COLUMNS


@pytest.mark.anyio
async def test_drift_without_a_reference_is_a_404_that_says_why(serve, task: TextEmbeddingTask) -> None:
    async with serve(fake_model(task=task)) as served:
        response = await served.client.get("/v1/drift")
        metrics = (await served.client.get("/metrics")).text
    assert response.status_code == 404 and "no drift reference" in response.json()["error"]
    assert "inferopt_drift_psi" not in metrics
