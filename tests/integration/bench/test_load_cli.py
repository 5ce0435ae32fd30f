"""`inferopt load` end to end: progress, summary table, JSON."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from load_servers import Behaviour, Capacity

from inferopt.bench.peak import UNDECIDED


def run_cli(monkeypatch: pytest.MonkeyPatch, *args: str) -> int:
    from inferopt import cli

    monkeypatch.setattr(sys, "argv", ["inferopt", *args])
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    return int(exit_info.value.code or 0)


def test_load_command_prints_summary_and_writes_json(serve, texts_file, tmp_path: Path, monkeypatch, capsys) -> None:
    server = serve(Behaviour())
    out = tmp_path / "load.json"
    code = run_cli(monkeypatch, "load", server.url, "--rate", "100", "--duration", "3", "--warmup", "1",
                   "--inputs", texts_file, "--zipf", "1.1", "--distinct", "20", "--json", str(out))  # fmt: skip
    data = json.loads(out.read_text(encoding="utf-8"))
    assert code == (0 if data["valid"] else 1)
    printed = capsys.readouterr().out
    assert "open-loop load" in printed and "latency (from intended send)" in printed
    assert data["mode"] == "open-loop" and data["offered_rate"] == 100
    assert 150 <= data["measured"] <= 250 and data["errors"] == {}
    assert data["latency_ms"]["p50"] > 0 and data["latency_ms"]["p99"] is None  # ~200 requests: p99 is n/a
    assert data["config"]["zipf"] == 1.1 and data["histogram"].startswith("HIST")
    assert "cpu_model" in data["environment"]


def test_closed_loop_command_is_labelled(serve, texts_file, monkeypatch, capsys) -> None:
    server = serve(Behaviour())
    code = run_cli(monkeypatch, "load", server.url, "--concurrency", "2", "--duration", "1.5", "--warmup", "0.5",
                   "--inputs", texts_file)  # fmt: skip
    printed = capsys.readouterr().out
    assert code == 0
    assert "closed-loop load" in printed and "CLOSED LOOP" in printed and "2 connections" in printed


def test_find_peak_command_prints_the_curve_and_writes_chart_and_json(
    serve, texts_file, tmp_path: Path, monkeypatch, capsys
) -> None:
    """A server that serves at most 1,000 req/s: 400 and 800 pass, 1,600 and 1,200 build a backlog and fail."""
    server = serve(Capacity(per_second=1000))
    plot, out = tmp_path / "peak.html", tmp_path / "peak.json"
    code = run_cli(monkeypatch, "load", server.url, "--find-peak", "--slo-p99-ms", "50", "--rate", "400",
                   "--tolerance", "0.5", "--arrival", "constant", "--duration", "1", "--warmup", "0.3",
                   "--timeout", "2", "--inputs", texts_file, "--plot", str(plot), "--json", str(out))  # fmt: skip
    data = json.loads(out.read_text(encoding="utf-8"))
    if data["limited_by"] is not None and "generator" in data["limited_by"]:
        pytest.skip(f"this machine is too busy to send on schedule right now: {data['limited_by']}")
    assert code == 0
    decided = [c for c in data["curve"] if c["reason"] != UNDECIDED]  # a busy moment may repeat a step
    assert [c["rate"] for c in decided] == [400, 800, 1200, 1600]
    assert [c["passed"] for c in decided] == [True, True, False, False]
    assert data["peak_rate"] == 800 and data["slo_p99_ms"] == 50
    assert "Peak: 800.0 req/s with p99 <= 50 ms" in capsys.readouterr().out
    assert "data:image/png;base64," in plot.read_text(encoding="utf-8")
