"""The `load` and `profile` commands: flags in, one call, tables out (and JSON / charts when asked)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, cast

import orjson
import typer
from rich.console import Console

from inferopt.bench.schedule import Arrival
from inferopt.errors import InputError
from inferopt.runtime.placement import DEVICE_HELP

ArrivalOption = typer.Option(help="Arrival process of the open-loop schedule: poisson or constant")


def load_command(
    url: Annotated[
        str,
        typer.Argument(
            help="Server URL: /v1/embeddings (the default path), /v1/models/NAME:predict or /v2/models/NAME/infer"
        ),
    ],
    rate: Annotated[float | None, typer.Option(help="Open-loop rate in req/s (find-peak: the start rate)")] = None,
    duration: Annotated[float, typer.Option(help="Seconds per run, warm-up included")] = 20.0,
    warmup: Annotated[float, typer.Option(help="Seconds at the start that are sent but not measured")] = 2.0,
    arrival: Annotated[str, ArrivalOption] = "poisson",
    concurrency: Annotated[int | None, typer.Option(help="Closed loop with N connections instead of a rate")] = None,
    inputs: Annotated[
        Path | None,
        typer.Option(
            help="Texts (one per line, or STS format), tensor rows (.npz), images (a folder), or KServe v1 "
            "instances (.jsonl, one JSON object per line); default: built-in"
        ),
    ] = None,
    in_order: Annotated[
        bool, typer.Option("--in-order", help="Send the inputs in file order, cycling (replay a recorded sequence)")
    ] = False,
    zipf: Annotated[
        float | None, typer.Option(help="Pick inputs with a Zipf skew (e.g. 1.1) for cache studies")
    ] = None,
    distinct: Annotated[int | None, typer.Option(help="Number of distinct inputs (default: all texts)")] = None,
    model: Annotated[str | None, typer.Option(help="`model` field to send (default: none)")] = None,
    items_per_request: Annotated[int, typer.Option(help="Texts per request (sent as a list when > 1)")] = 1,
    seed: Annotated[int, typer.Option(help="Seed of the schedule and the input mix")] = 0,
    timeout: Annotated[float, typer.Option(help="Seconds before a request counts as a timeout error")] = 30.0,
    connections: Annotated[int, typer.Option(help="Open loop: most connections held at once")] = 1000,
    workers: Annotated[int, typer.Option(help="Sender processes (more for rates one core cannot send)")] = 1,
    find_peak: Annotated[
        bool, typer.Option("--find-peak", help="Search the highest rate with p99 under the SLO")
    ] = False,
    slo_p99_ms: Annotated[float, typer.Option(help="find-peak: the p99 latency SLO in ms")] = 50.0,
    max_rate: Annotated[float | None, typer.Option(help="find-peak: never offer more than this")] = None,
    tolerance: Annotated[float, typer.Option(help="find-peak: stop when pass/fail rates are this close")] = 0.05,
    plot: Annotated[Path | None, typer.Option(help="find-peak: latency-vs-load chart (.png or .html)")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the full result as JSON here")] = None,
) -> None:
    """Open-loop load test (latency from the intended send time), closed loop with --concurrency, or
    --find-peak. Exits 1 when the run is INVALID (the generator fell behind)."""
    from inferopt.bench.loadgen import LoadConfig

    _refuse_conflicts(find_peak, rate, concurrency, plot)
    default_rate = 50.0 if find_peak else 100.0
    open_rate = None if concurrency is not None else (default_rate if rate is None else rate)
    config = LoadConfig(
        url=url, rate=open_rate, duration_s=duration, warmup_s=warmup, arrival=cast(Arrival, arrival),
        concurrency=concurrency, inputs=inputs, zipf=zipf, distinct=distinct, in_order=in_order, model=model,
        items_per_request=items_per_request, seed=seed, timeout_s=timeout, connections=connections, workers=workers,
    )  # fmt: skip
    console = Console()
    if find_peak:
        _run_peak(config, console, slo_p99_ms, max_rate, tolerance, plot, json_out)
    else:
        _run_once(config, console, json_out)


def _refuse_conflicts(find_peak: bool, rate: float | None, concurrency: int | None, plot: Path | None) -> None:
    if find_peak and concurrency is not None:
        raise InputError("--find-peak searches over open-loop rates", "drop --concurrency")
    if rate is not None and concurrency is not None:
        raise InputError("--rate (open loop) and --concurrency (closed loop) exclude each other", "pick one")
    if plot is not None:
        from inferopt.bench.charts import check_chart_path

        check_chart_path(plot)


def _run_once(config: Any, console: Console, json_out: Path | None) -> None:
    from inferopt.bench.load_console import load_progress, print_load_result
    from inferopt.bench.loadgen import run_load

    label = f"{config.rate:g} req/s" if config.concurrency is None else f"{config.concurrency} conns"
    with load_progress(console, config.duration_s, label) as on_progress:
        result = run_load(config, on_progress)
    print_load_result(result, console)
    _write_json(json_out, result.to_dict() | {"environment": _environment()}, console)
    if result.partial:
        raise typer.Exit(code=130)
    if not result.valid:
        raise typer.Exit(code=1)


def _run_peak(
    config: Any, console: Console, slo: float, max_rate: float | None, tolerance: float, plot: Path | None,
    json_out: Path | None,
) -> None:  # fmt: skip
    from inferopt.bench.load_console import load_progress, print_peak, print_peak_step
    from inferopt.bench.peak import PeakSearch, find_peak, step_config

    search = PeakSearch(slo, start_rate=config.rate, max_rate=max_rate, tolerance=tolerance)

    def run_step(step_cfg: Any) -> Any:
        from inferopt.bench.loadgen import run_load

        with load_progress(console, step_cfg.duration_s, f"{step_cfg.rate:g} req/s") as on_progress:
            return run_load(step_cfg, on_progress)

    step_config(config, config.rate)  # validates the per-step config before the first run
    peak = find_peak(config, search, on_step=lambda s: print_peak_step(s, console), runner=run_step)
    print_peak(peak, console)
    if plot is not None and peak.steps:
        from inferopt.bench.charts import latency_vs_load, write_chart

        table = [s.to_dict() for s in sorted(peak.steps, key=lambda s: s.rate)]
        console.print(f"chart: {write_chart(latency_vs_load(peak), plot, 'Latency vs load', table)}")
    _write_json(json_out, peak.to_dict() | {"environment": _environment()}, console)
    if peak.limited_by and peak.limited_by.startswith("interrupted"):
        raise typer.Exit(code=130)


def profile_command(
    target: Annotated[str, typer.Argument(help="A server URL (uses its Server-Timing) or an artifact folder")],
    requests: Annotated[int, typer.Option(help="Requests to time, one at a time")] = 1000,
    warmup: Annotated[int, typer.Option(help="Requests sent first and not timed")] = 20,
    inputs: Annotated[
        Path | None,
        typer.Option(
            help="Texts (one per line, or STS format), tensor rows (.npz), images (a folder), or KServe v1 "
            "instances (.jsonl, one JSON object per line); default: built-in"
        ),
    ] = None,
    chart: Annotated[Path | None, typer.Option(help="Stacked bar chart of the stages (.png or .html)")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the breakdown as JSON here")] = None,
    device: Annotated[str | None, typer.Option(help=f"Against an artifact: {DEVICE_HELP}")] = None,
) -> None:
    """Where the time of one request goes: network + HTTP, decode, preprocess, queue, inference, postprocess,
    encode. Against a URL from the server's Server-Timing header; against an artifact, in-process."""
    from inferopt.bench.inputs import distinct_inputs, load_inputs
    from inferopt.bench.load_console import print_profile
    from inferopt.bench.profile import looks_like_url, profile_artifact, profile_url

    if requests < 1 or warmup < 0:
        raise InputError(f"--requests must be >= 1 and --warmup >= 0, got {requests} and {warmup}", "")
    if chart is not None:
        from inferopt.bench.charts import check_chart_path

        check_chart_path(chart)
    url = looks_like_url(target)
    console = Console()
    # Distinct texts for every request: a repeated text would be a cache hit and skip the model. Tensor rows
    # cannot be stretched; they are cycled, and the profile says so.
    loaded: list[Any] | None = load_inputs(inputs) if inputs is not None or url else None
    texts = bool(loaded) and isinstance(loaded[0], str)  # type: ignore[index]
    chosen = distinct_inputs(loaded, requests + warmup) if texts and loaded else loaded
    with console.status(f"profiling {target} with {requests:,} requests..."):
        if url:
            result = profile_url(target, chosen, requests, warmup=warmup)  # type: ignore[arg-type]
        else:
            result = profile_artifact(Path(target), chosen, requests, warmup=warmup, device=device)
    if chosen and not texts and len(chosen) < requests + warmup:
        result.notes.append(f"{len(chosen)} distinct rows cycled: repeats may be answered from the server's cache")
    print_profile(result, console)
    if chart is not None:
        from inferopt.bench.charts import stage_bars, write_chart

        console.print(f"chart: {write_chart(stage_bars(result), chart, 'Request time by stage', result.breakdown())}")
    _write_json(json_out, result.to_dict() | {"environment": _environment()}, console)
    if result.partial:
        raise typer.Exit(code=1)


def _environment() -> dict[str, object]:
    from inferopt.hardware import environment

    return environment()


def _write_json(path: Path | None, data: dict[str, Any], console: Console) -> None:
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY) + b"\n")
    console.print(f"json: {path}")
