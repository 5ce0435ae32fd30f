"""`profile URL` against a server that spends known times in each stage and says so in Server-Timing."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from load_servers import Behaviour, Timed

from inferopt.bench.profile import NETWORK, SERVER_OTHER, SERVER_STAGES, profile_url
from inferopt.errors import InputError

TEXTS = [f"text {i}" for i in range(100)]


def test_stages_sum_to_the_client_total_within_5_percent(serve) -> None:
    server = serve(Timed())
    result = profile_url(server.url, TEXTS, 120, warmup=5)
    assert result.stages == (NETWORK, *SERVER_STAGES, SERVER_OTHER)
    assert result.stage_sum_ratio() == pytest.approx(1.0, abs=0.05)
    per_request = result.durations.sum(axis=1) / result.totals
    assert np.all(np.abs(per_request - 1.0) < 0.05)
    rows = {row["stage"]: row for row in result.breakdown()}
    # The server slept 0.5/1/2/3/0.5/0.5 ms; what came back is at least that, and not much more.
    for stage, slept_ms in {"preprocess": 1.0, "queue": 2.0, "inference": 3.0}.items():
        assert slept_ms <= rows[stage]["p50_ms"] < slept_ms + 1.0
    assert rows[NETWORK]["p50_ms"] > 0.0
    assert rows[SERVER_OTHER]["p50_ms"] < 0.1  # this server accounts for all of its time
    assert rows["inference"]["typical_share"] == pytest.approx(3.0 / 7.5, abs=0.1)


def test_time_the_server_leaves_unnamed_lowers_the_ratio(serve) -> None:
    """The ratio is not 1 by construction: 3 ms of the server's 10.5 ms in no named stage shows as ~0.7."""
    result = profile_url(serve(Timed(unreported_s=0.003)).url, TEXTS, 60, warmup=5)
    assert result.stage_sum_ratio() < 0.8
    rows = {row["stage"]: row for row in result.breakdown()}
    assert 3.0 <= rows[SERVER_OTHER]["p50_ms"] < 4.0


def test_a_server_that_starts_failing_gives_a_labelled_partial_profile(serve) -> None:
    result = profile_url(serve(Timed(fail_after=30)).url, TEXTS, 100, warmup=5)
    assert result.requests == 25
    assert result.partial is not None and "stopped after 25 of 100 requests" in result.partial
    assert "answered 503" in result.partial
    assert result.to_dict()["partial"] == result.partial


def test_a_server_failing_from_the_start_is_a_clear_error(serve) -> None:
    with pytest.raises(InputError, match="answered 503"):
        profile_url(serve(Timed(fail_after=0)).url, TEXTS, 10, warmup=0)


def test_a_server_without_server_timing_is_a_clear_error(serve) -> None:
    server = serve(Behaviour())
    with pytest.raises(InputError, match="sent no Server-Timing header"):
        profile_url(server.url, TEXTS, 5, warmup=0)


def test_profile_command_writes_table_chart_and_json(serve, tmp_path: Path, monkeypatch, capsys) -> None:
    from inferopt import cli

    monkeypatch.setenv("COLUMNS", "200")  # rich would squeeze the table into 80 columns
    server = serve(Timed())
    chart, out = tmp_path / "stages.html", tmp_path / "profile.json"
    argv = ["inferopt", "profile", server.url, "--requests", "50", "--warmup", "2", "--chart", str(chart),
            "--json", str(out)]  # fmt: skip
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    assert exit_info.value.code == 0
    printed = capsys.readouterr().out
    assert "inference" in printed and "network + HTTP" in printed and "typical share" in printed
    data = json.loads(out.read_text(encoding="utf-8"))
    assert data["requests"] == 50 and abs(data["stage_sum_ratio"] - 1.0) < 0.05
    assert "cpu_model" in data["environment"]
    assert "data:image/png;base64," in chart.read_text(encoding="utf-8")
