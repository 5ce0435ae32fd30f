import sys
from pathlib import Path

import pytest

from inferopt.bench.loadgen import LoadConfig
from inferopt.errors import InputError


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"duration_s": 5, "warmup_s": 10}, "not longer than --warmup"),
        ({"duration_s": 5, "warmup_s": 5}, "not longer than --warmup"),
        ({"rate": 0}, "--rate must be > 0"),
        ({"rate": -5}, "--rate must be > 0"),
        ({"rate": 1e7, "duration_s": 60}, "schedules more than"),
        ({"arrival": "bursty"}, "--arrival must be one of"),
        ({"workers": 0}, "--workers must be at least 1"),
        ({"rate": None, "concurrency": 1, "workers": 2}, "less than --workers"),
        ({"zipf": 0}, "--zipf must be > 0"),
        ({"timeout_s": 0}, "--timeout must be > 0"),
    ],
)
def test_bad_flags_are_input_errors(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(InputError, match=match):
        LoadConfig("http://127.0.0.1:1", **kwargs)  # type: ignore[arg-type]


def run_cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    from inferopt import cli

    monkeypatch.setattr(sys, "argv", ["inferopt", *args])
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    return int(exit_info.value.code or 0), capsys.readouterr().err


def test_cli_bad_input_is_one_line_and_exit_2(monkeypatch, capsys, tmp_path: Path) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_text("", encoding="utf-8")
    cases = [
        (["load", "http://127.0.0.1:9", "--duration", "1", "--warmup", "2"], "not longer than --warmup"),
        (["load", "http://127.0.0.1:9", "--inputs", str(empty)], "is empty"),
        (["load", "http://127.0.0.1:9", "--rate", "5", "--concurrency", "2"], "exclude each other"),
        (["load", "http://127.0.0.1:9", "--duration", "2", "--warmup", "0"], "connection refused"),
        (["load", "http://127.0.0.1:9", "--find-peak", "--plot", "x.svg"], "Cannot write a chart"),
        (["profile", "http://127.0.0.1:9", "--requests", "5"], "Cannot profile"),
    ]
    for args, match in cases:
        code, err = run_cli(monkeypatch, capsys, *args)
        assert code == 2, (args, err)
        assert match in err and "Traceback" not in err
        assert len(err.strip().splitlines()) == 1
