from pathlib import Path

import numpy as np
import pytest

from inferopt.bench.charts import latency_vs_load, stage_bars, write_chart
from inferopt.bench.profile import ProfileResult, looks_like_url, parse_server_timing, profile_pipeline
from inferopt.runtime.fake import FakeBackend


def test_server_timing_is_parsed_to_seconds() -> None:
    header = 'decode;dur=0.5, tokenize;desc="fast";dur=1.25,queue;dur=2, inference;dur=3.000, cache, total;dur=7.5'
    assert parse_server_timing(header) == pytest.approx(
        {"decode": 0.0005, "tokenize": 0.00125, "queue": 0.002, "inference": 0.003, "total": 0.0075}
    )
    assert parse_server_timing("x;dur=oops") == {}


def test_in_process_stages_sum_to_the_total_within_5_percent(minilm_dir: Path) -> None:
    from inferopt.serve.testing import bundled_text_task

    texts = [f"the quick brown fox number {i} jumps over the lazy dog" for i in range(300)]
    result = profile_pipeline(bundled_text_task(256), FakeBackend(delay_s=0.002), texts, 200, warmup=5)
    assert result.requests == 200 and result.stages[3] == "inference"
    assert result.stage_sum_ratio() == pytest.approx(1.0, abs=0.05)
    per_request = result.durations.sum(axis=1) / result.totals
    assert np.median(per_request) == pytest.approx(1.0, abs=0.05)
    rows = {row["stage"]: row for row in result.breakdown()}
    assert rows["queue"]["p50_ms"] == 0.0
    assert rows["inference"]["p50_ms"] >= 2.0  # the fake backend sleeps 2 ms
    assert rows["inference"]["typical_share"] > 0.5  # and that dominates a fake pipeline
    assert rows["inference"]["p99_ms"] is None and rows["inference"]["slow_ms"] is None  # 200 < 660 requests
    assert sum(row["typical_share"] for row in rows.values()) == pytest.approx(1.0)


def synthetic_profile(n: int) -> ProfileResult:
    rng = np.random.default_rng(0)
    durations = np.column_stack([rng.uniform(0.0005, 0.001, n), rng.uniform(0.002, 0.003, n)])
    durations[-n // 50 :, 0] += 0.05  # the slowest 2% are slow because of the first stage
    return ProfileResult("synthetic", "url", ("network + HTTP", "inference"), durations, durations.sum(axis=1))


def test_slow_requests_show_which_stage_made_them_slow() -> None:
    rows = synthetic_profile(1000).breakdown()
    assert rows[0]["p99_ms"] is not None
    assert rows[0]["typical_share"] < 0.4 and rows[0]["slow_share"] > 0.9
    assert sum(r["slow_share"] for r in rows) == pytest.approx(1.0)


def test_charts_are_written_as_png_and_html(tmp_path: Path) -> None:
    png = write_chart(stage_bars(synthetic_profile(1000)), tmp_path / "stages.png", "t", [])
    assert png.read_bytes().startswith(b"\x89PNG")
    html = write_chart(
        stage_bars(synthetic_profile(100)), tmp_path / "stages.html", "Stages", [{"stage": "x", "ms": 1.5}]
    )
    text = html.read_text(encoding="utf-8")
    assert "data:image/png;base64," in text and "<td>1.500</td>" in text


def test_latency_vs_load_chart(tmp_path: Path) -> None:
    from test_peak_search import BASE, capacity_model

    from inferopt.bench.peak import PeakSearch, find_peak

    peak = find_peak(BASE, PeakSearch(50.0, start_rate=100), runner=capacity_model(500, []))
    path = write_chart(latency_vs_load(peak), tmp_path / "peak.png", "Latency vs load", [])
    assert path.stat().st_size > 10_000


def test_url_or_artifact(tmp_path: Path) -> None:
    assert looks_like_url("http://127.0.0.1:8000") and looks_like_url("localhost:8000")
    assert not looks_like_url(str(tmp_path))


def test_url_split_accounts_for_network_and_unattributed_server_time() -> None:
    from inferopt.bench.profile import _split

    samples = [(0.010, {"preprocess": 0.001, "inference": 0.004, "cache": 0.0005, "total": 0.007})]
    stages, durations = _split(samples)
    assert stages == ("network + HTTP", "decode", "preprocess", "queue", "inference", "postprocess", "encode",
                      "cache", "server (other)")  # fmt: skip
    np.testing.assert_allclose(durations[0], [0.003, 0, 0.001, 0, 0.004, 0, 0, 0.0005, 0.0015])
    assert durations.sum() == pytest.approx(0.010)
