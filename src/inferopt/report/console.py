"""The tables people read in the terminal: the end of `optimize`, and `inspect`."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from inferopt.accuracy.report import BY_NAME
from inferopt.artifact import Artifact
from inferopt.bench.stats import format_ms
from inferopt.report.columns import budget_text, shown_measures
from inferopt.report.students import student_lines
from inferopt.results import RunResult


def _num(value: float | None, fmt: str) -> str:
    return "n/a" if value is None else format(value, fmt)


def print_summary(result: RunResult, console: Console, out: Path) -> None:
    selection = result.selection
    measures = shown_measures(result)
    title = f"{result.model_name} ({result.task}) on {result.data_name} ({result.data_summary})"
    table = Table(title=title, title_justify="left")
    table.add_column("variant")
    for m in measures:
        table.add_column(m.label, justify="right")
    for column in ("p50 ms", "p99 ms", "best items/s", "layout", "MB", "$/1M", "budget"):
        table.add_column(column, justify="left" if column in ("layout", "budget") else "right")
    for v in result.variants:
        if v.error or not v.accuracy or not v.bench:
            table.add_row(v.name, *["-"] * (len(measures) + 6), f"[red]{v.error or 'not measured'}")
            continue
        bench = v.bench
        chosen = selection is not None and selection.chosen == v.name
        verdict = "[bold green]chosen" if chosen else ("ok" if selection and selection.passed(v.name) else "[red]miss")
        table.add_row(
            v.name,
            *(m.format(v.accuracy.get(m.name)) for m in measures),
            format_ms(bench.latency_ms.get("p50")),
            format_ms(bench.latency_ms.get("p99")),
            f"{bench.best.items_per_second:,.0f}",
            bench.best.settings.label,
            f"{bench.size_bytes / 2**20:.1f}",
            _num(bench.cost_per_million, ".4f"),
            verdict,
        )
    console.print(table)
    chosen_name = selection.chosen if selection else None
    console.print(f"budget: {budget_text(result)}")
    if selection is not None and selection.pinned and selection.chosen:
        console.print(f"{selection.chosen}: pinned by --variant (inside the budget)")
    elif selection is not None and len(selection.tied) > 1:
        console.print(
            f"tied on speed (within {selection.noise:.1%}): {', '.join(selection.tied)}; the higher fidelity won"
        )
    for line in student_lines(result):
        speed = f", {line.speedup:.2f}x the fastest teacher variant" if line.speedup else ""
        console.print(f"student {line.name}: {line.shape}; {line.training}{speed}; {line.verdict}")
    where = f"artifact: {out / 'artifact'}" if chosen_name else "no artifact"
    console.print(f"report: {out / 'report.html'}  |  {where}  |  {result.seconds:.0f} s")


def print_manifest(artifact: Artifact, console: Console) -> None:
    m = artifact.manifest
    console.print(f"[bold]{artifact.model_name}[/] ({artifact.task}) at {artifact.path}  id {artifact.artifact_id}")
    console.print(
        f"recipe: {m['recipe'].get('name')} ({m['recipe'].get('kind')})  runtime: {m['runtime']['kind']} "
        f"{artifact.settings.label} on {artifact.placement.label}"
    )
    io = Table("direction", "name", "dtype", "shape", title="inputs / outputs", title_justify="left")
    for direction in ("inputs", "outputs"):
        for spec in m["io"][direction]:
            io.add_row(direction[:-1], spec["name"], spec["dtype"], str(spec["shape"]))
    console.print(io)
    acc = m["accuracy"]
    values = ", ".join(
        f"{name.replace('_', ' ')} {BY_NAME[name].format(value)}"
        for name, value in acc["measures"].items()
        if value is not None and name in BY_NAME
    )
    metric = f"; {acc['metric_name']} {acc['metric']:.2f}" if acc.get("metric") is not None else ""
    console.print(f"accuracy on {acc['data']} ({acc['summary']}): {values}{metric}")
    bench = m["benchmark"]
    lat = bench["latency_ms_batch1"]
    console.print(
        f"benchmark: {bench['best']['items_per_second']:,.0f} items/s best, batch-1 latency p50 "
        f"{format_ms(lat.get('p50'))} ms p99 {format_ms(lat.get('p99'))} ms, "
        f"{bench['size_bytes'] / 2**20:.1f} MB, ${_num(bench.get('cost_per_million_usd'), '.4f')} per 1M"
    )
    console.print(f"measured on: {m['environment']['cpu_model']} ({m['environment']['usable_cores']} cores)")
