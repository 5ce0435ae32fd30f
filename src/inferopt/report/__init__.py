"""Reports of an optimize run: report.json (everything), results.csv (one row per variant), report.html
(self-contained, with plots), and the rich table printed at the end."""

from __future__ import annotations

from pathlib import Path

from inferopt.report.html import write_html
from inferopt.report.tables import write_csv, write_json
from inferopt.results import RunResult

__all__ = ["write_reports"]


def write_reports(result: RunResult, directory: Path) -> list[Path]:
    return [
        write_json(result, directory / "report.json"),
        write_csv(result, directory / "results.csv"),
        write_html(result, directory / "report.html"),
    ]
