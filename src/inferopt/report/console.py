"""The tables people read in the terminal: the end of `optimize`, and `inspect`."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from inferopt.artifact import Artifact
from inferopt.bench.stats import format_ms
from inferopt.results import RunResult


def _num(value: float | None, fmt: str) -> str:
    return "n/a" if value is None else format(value, fmt)


def print_summary(result: RunResult, console: Console, out: Path) -> None:
    selection = result.selection
    table = Table(title=f"{result.model_name} on {result.data_name} ({result.data_texts} texts)", title_justify="left")
    for column in (
        "variant",
        "mean cos",
        "min cos",
        "metric Δ",
        "p50 ms",
        "p99 ms",
        "best items/s",
        "layout",
        "MB",
        "$/1M",
        "budget",
    ):
        table.add_column(column, justify="left" if column in ("variant", "layout", "budget") else "right")
    for v in result.variants:
        if v.error or not v.accuracy or not v.bench:
            table.add_row(v.name, *["-"] * 9, f"[red]{v.error or 'not measured'}")
            continue
        fid, bench = v.accuracy.fidelity, v.bench
        chosen = selection is not None and selection.chosen == v.name
        verdict = "[bold green]chosen" if chosen else ("ok" if selection and selection.passed(v.name) else "[red]miss")
        table.add_row(
            v.name,
            f"{fid.mean_cosine:.4f}",
            f"{fid.min_cosine:.4f}",
            _num(v.accuracy.metric_drop, "+.2f"),
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
    where = f"artifact: {out / 'artifact'}" if chosen_name else "no artifact (budget not met)"
    console.print(f"report: {out / 'report.html'}  |  {where}  |  {result.seconds:.0f} s")


def print_manifest(artifact: Artifact, console: Console) -> None:
    m = artifact.manifest
    console.print(f"[bold]{artifact.model_name}[/] ({m['task']}) at {artifact.path}  id {artifact.artifact_id}")
    console.print(
        f"recipe: {m['recipe'].get('name')} ({m['recipe'].get('kind')})  runtime: {m['runtime']['kind']} "
        f"{artifact.settings.label}"
    )
    io = Table("direction", "name", "dtype", "shape", title="inputs / outputs", title_justify="left")
    for direction in ("inputs", "outputs"):
        for spec in m[direction]:
            io.add_row(direction[:-1], spec["name"], spec["dtype"], str(spec["shape"]))
    console.print(io)
    acc, fid = m["accuracy"], m["accuracy"]["fidelity"]
    console.print(
        f"accuracy on {acc['data']} ({acc['texts']} texts): mean cosine {fid['mean_cosine']:.4f}, "
        f"p1 {fid['p1_cosine']:.4f}, min {fid['min_cosine']:.4f}"
        + (
            f", {acc['metric_name']} {acc['metric']:.2f} (drop {acc['metric_drop']:+.2f})"
            if acc.get("metric") is not None
            else ""
        )
    )
    bench = m["benchmark"]
    lat = bench["latency_ms_batch1"]
    console.print(
        f"benchmark: {bench['best']['items_per_second']:,.0f} items/s best, batch-1 latency p50 "
        f"{format_ms(lat.get('p50'))} ms p99 {format_ms(lat.get('p99'))} ms, "
        f"{bench['size_bytes'] / 2**20:.1f} MB, ${_num(bench.get('cost_per_million_usd'), '.4f')} per 1M"
    )
    console.print(f"measured on: {m['environment']['cpu_model']} ({m['environment']['usable_cores']} cores)")
