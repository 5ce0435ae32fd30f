"""The one face of inferopt: `optimize`, `inspect`, `serve`, `load`, `profile`.

Commands stay thin: they parse flags into a config and call one function. A user's mistake
(InferoptError) prints as one line and exits 2; Ctrl-C exits 130 and leaves nothing half-written.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from typer._click.exceptions import ClickException

from inferopt.atomic import ignore_further_ctrl_c
from inferopt.bench.commands import load_command, profile_command
from inferopt.errors import InferoptError
from inferopt.serve.command import serve_command

app = typer.Typer(
    name="inferopt",
    help="Make a trained model fast in production, and prove it.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
err_console = Console(stderr=True)


@app.command()
def optimize(
    model_dir: Annotated[
        Path | None, typer.Argument(help="Hugging Face / sentence-transformers model folder (default: bundled MiniLM)")
    ] = None,
    data: Annotated[Path | None, typer.Option(help="Eval data: .txt, .csv/.tsv (STS format detected), .jsonl")] = None,
    out: Annotated[Path, typer.Option(help="Output folder: report files and artifact/")] = Path("inferopt-out"),
    min_cosine: Annotated[float, typer.Option(help="Budget: least mean cosine to FP32")] = 0.99,
    min_item_cosine: Annotated[float | None, typer.Option(help="Budget: least cosine of any single item")] = None,
    max_metric_drop: Annotated[
        float | None, typer.Option(help="Budget: most task-metric drop in points (Spearman x100)")
    ] = None,
    price_per_hour: Annotated[float, typer.Option(help="$ per machine-hour, for cost per 1M embeddings")] = 0.05,
    quick: Annotated[bool, typer.Option(help="Fewer variants and shorter measurements (about a minute)")] = False,
    force: Annotated[bool, typer.Option(help="Replace --out if an earlier inferopt run wrote it")] = False,
) -> None:
    """Export, build variants, verify accuracy against FP32, benchmark, pick the fastest within budget."""
    from inferopt.config import Budget, OptimizeConfig
    from inferopt.optimize import run_optimize

    config = OptimizeConfig(
        model_dir=model_dir,
        data=data,
        out=out,
        budget=Budget(min_cosine, min_item_cosine, max_metric_drop),
        price_per_hour=price_per_hour,
        quick=quick,
        force=force,
    )
    outcome = run_optimize(config)
    if outcome.artifact_dir is None:
        raise typer.Exit(code=1)


@app.command("inspect")
def inspect_artifact(artifact: Annotated[Path, typer.Argument(help="Artifact folder written by optimize")]) -> None:
    """Print an artifact's inputs/outputs, recipe, accuracy and benchmark summary (after checking its hashes)."""
    from inferopt.artifact import load_artifact
    from inferopt.report.console import print_manifest

    print_manifest(load_artifact(artifact), Console())


app.command("serve")(serve_command)
app.command("load")(load_command)
app.command("profile")(profile_command)


INTERRUPTED = "[bold red]interrupted:[/] stopped; nothing was left half-written"


def main() -> None:
    try:
        code = app(standalone_mode=False)
    except InferoptError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except (KeyboardInterrupt, typer.Abort):
        _interrupted()
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except ClickException as exc:  # bad flags: the parser's own message, with usage
        exc.show()
        sys.exit(2)
    code = code if isinstance(code, int) else 0
    if code == 130:  # typer turns Ctrl-C into an exit code of 130 and returns it
        _interrupted()
    sys.exit(code)


def _interrupted() -> None:
    ignore_further_ctrl_c()  # the exit code stays 130 however often Ctrl-C is pressed during teardown
    err_console.print(INTERRUPTED, highlight=False)
    sys.exit(130)


if __name__ == "__main__":
    main()
