"""What `load` and `profile` print: live progress while running, then tables with every caveat on top."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from inferopt.bench.load_result import OPEN_LOOP, LoadResult
from inferopt.bench.loadgen import ProgressCallback
from inferopt.bench.peak import PeakResult, PeakStep
from inferopt.bench.profile import ProfileResult
from inferopt.bench.stats import format_ms

LATENCY_KEYS = ("p50", "p90", "p95", "p99", "p99_9", "max")
STAGE_COLOURS = ("grey50", "cyan", "blue", "yellow", "red", "magenta", "green", "white", "bright_black", "orange3")


@contextmanager
def load_progress(console: Console, duration_s: float, label: str) -> Iterator[ProgressCallback]:
    """A progress bar over the run's duration with live counts; yields the callback the run reports to."""
    columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[counts]}"),
               TimeRemainingColumn())  # fmt: skip
    with Progress(*columns, console=console, transient=True, refresh_per_second=4) as progress:
        task = progress.add_task(label, total=duration_s, counts="starting senders...")

        def update(snap: dict[str, float]) -> None:
            counts = (
                f"sent {snap['dispatched']:,.0f}  ok {snap['ok']:,.0f}  errors {snap['errors']:,.0f}  "
                f"late {snap['late']:,.0f}  conns {snap['connections']:,.0f}"
            )
            progress.update(task, completed=max(0.0, min(snap["elapsed"], duration_s)), counts=counts)

        yield update


def _notes(console: Console, notes: list[str]) -> None:
    for note in notes:
        style = "bold red" if note.startswith(("INVALID", "PARTIAL", "ERRORS")) else "yellow"
        console.print(Text(note, style=style))


def print_load_result(result: LoadResult, console: Console) -> None:
    title = f"{result.mode} load: {result.config.get('url', '')}"
    rates = Table(title=title, show_header=False, title_justify="left")
    rates.add_column("", style="bold")
    rates.add_column("")
    if result.mode == OPEN_LOOP:
        rates.add_row("offered rate", f"{result.offered_rate:,.1f} req/s ({result.config.get('arrival')})")
    else:
        rates.add_row("concurrency", f"{result.config.get('concurrency')} connections (closed loop)")
    rates.add_row("achieved rate", f"{result.achieved_rate:,.1f} req/s (successful, in the measured window)")
    rates.add_row("measured", f"{result.measured:,} requests over {result.window_s:.1f}s after warm-up")
    rates.add_row("errors", _errors_text(result))
    rates.add_row("rejected (429)", _rejections_text(result))
    if result.mode == OPEN_LOOP:
        rates.add_row("sent > 1 ms late", f"{result.late_fraction:.2%} (INVALID above 1%)")
    rates.add_row("connections", str(result.connections))
    if result.sender_priority:
        rates.add_row("sender scheduling", result.sender_priority)
    console.print(rates)
    console.print(latency_table(result))
    _notes(console, result.notes())


def _errors_text(result: LoadResult) -> str:
    if not result.errors:
        return "none"
    kinds = ", ".join(f"{k}: {v:,}" for k, v in sorted(result.errors.items()))
    return f"{result.error_count:,} ({result.error_fraction:.2%}): {kinds}"


def _rejections_text(result: LoadResult) -> str:
    refused = result.rejections
    if not refused.count:
        return "none"
    share = refused.count / result.measured if result.measured else 0.0
    return f"{refused.count:,} ({share:.2%}), {refused.with_retry_after:,} with Retry-After (also in errors)"


def latency_table(result: LoadResult) -> Table:
    first = "latency (from intended send)" if result.mode == OPEN_LOOP else "latency (closed loop = service)"
    table = Table(title="milliseconds; n/a = too few requests for that percentile", title_justify="left")
    table.add_column("")
    for key in LATENCY_KEYS:
        table.add_column(key.replace("_", "."), justify="right")
    rows: list[tuple[str, dict[str, Any]]] = [(first, result.latency_ms)]
    if result.mode == OPEN_LOOP:
        rows += [("service (from actual send)", result.service_ms), ("generator dispatch lag", result.dispatch_lag_ms)]
    if result.rejections.count:
        rows.append(("rejected 429 (from intended send)" if result.mode == OPEN_LOOP else "rejected 429",
                     result.rejections.latency_ms))  # fmt: skip
    for name, summary in rows:
        table.add_row(name, *(format_ms(summary.get(k)) for k in LATENCY_KEYS))
    return table


def print_peak_step(step: PeakStep, console: Console) -> None:
    r = step.result
    verdict = Text("pass", style="green") if step.passed else Text(f"fail: {step.reason}", style="red")
    line = Text(
        f"{step.rate:>10,.1f} req/s  achieved {r.achieved_rate:>10,.1f}  p50 {format_ms(r.latency_ms.get('p50'))}"
        f"  p99 {format_ms(r.latency_ms.get('p99'))} ms  errors {r.error_fraction:.1%}  "
    )
    console.print(line + verdict)


def print_peak(peak: PeakResult, console: Console) -> None:
    table = Table(title=f"find-peak: p99 SLO {peak.slo_p99_ms:g} ms", title_justify="left")
    for col in ("offered req/s", "achieved req/s", "p50 ms", "p90 ms", "p99 ms", "errors", "late", "verdict"):
        table.add_column(col, justify="right" if col != "verdict" else "left")
    for step in sorted(peak.steps, key=lambda s: s.rate):
        r = step.result
        table.add_row(f"{step.rate:,.1f}", f"{r.achieved_rate:,.1f}", *(format_ms(r.latency_ms.get(k))
                      for k in ("p50", "p90", "p99")), f"{r.error_fraction:.1%}", f"{r.late_fraction:.1%}",
                      "pass" if step.passed else step.reason)  # fmt: skip
    console.print(table)
    if peak.peak_rate is None:
        console.print(Text(f"No rate met the SLO. {peak.limited_by or ''}", style="bold red"))
    else:
        console.print(Text(f"Peak: {peak.peak_rate:,.1f} req/s with p99 <= {peak.slo_p99_ms:g} ms", style="bold green"))
    if peak.limited_by:
        console.print(Text(f"Search stopped: {peak.limited_by}", style="yellow"))


def print_profile(profile: ProfileResult, console: Console) -> None:
    rows = profile.breakdown()
    totals = profile.totals_ms()
    table = Table(title=f"profile of {profile.source}: {profile.requests:,} requests, one at a time",
                  title_justify="left")  # fmt: skip
    for col in ("stage", "p50 ms", "p99 ms", "typical ms", "typical share", "slow ms", "slow share"):
        table.add_column(col, justify="left" if col == "stage" else "right")
    for row in rows:
        table.add_row(row["stage"], format_ms(row["p50_ms"]), format_ms(row["p99_ms"]), format_ms(row["typical_ms"]),
                      _share(row["typical_share"]), format_ms(row["slow_ms"]), _share(row["slow_share"]))  # fmt: skip
    table.add_row("total", format_ms(totals["p50"]), format_ms(totals["p99"]), "", "100%", "", "100%", style="bold")
    console.print(table)
    console.print("typical = mean split of requests between p40 and p60 of total; slow = of requests at p99 or beyond")
    console.print(_stacked_bar(rows, "typical_share", "typical"))
    if rows and rows[0]["slow_share"] is not None:
        console.print(_stacked_bar(rows, "slow_share", "slow   "))
    legend = Text("        ")
    for row, colour in zip(rows, STAGE_COLOURS, strict=False):
        legend.append(f"■ {row['stage']}  ", style=colour)
    console.print(legend)
    console.print(f"the timed stages account for {profile.stage_sum_ratio():.1%} of the measured time")
    _notes(console, profile.notes)
    if profile.partial:
        console.print(Text(f"PARTIAL: {profile.partial}", style="bold red"))


def _share(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def _stacked_bar(rows: list[dict[str, Any]], key: str, label: str, width: int = 60) -> Text:
    bar = Text(f"{label} ")
    for row, colour in zip(rows, STAGE_COLOURS, strict=False):
        bar.append("█" * round(row[key] * width), style=colour)
    return bar
