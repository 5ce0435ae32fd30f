"""The one face of inferopt: `optimize`, `inspect`, `serve`, `load`, `profile`, `export`, `deploy`.

Commands stay thin: they parse flags into a config and call one function. A user's mistake
(InferoptError) prints as one line and exits 2; Ctrl-C exits 130 and leaves nothing half-written.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from typer._click.exceptions import ClickException

from inferopt.atomic import ignore_further_ctrl_c
from inferopt.bench.commands import load_command, profile_command
from inferopt.deploy.commands import deploy_app, export_app
from inferopt.errors import InferoptError, InputError
from inferopt.serve.command import serve_command

app = typer.Typer(
    name="inferopt",
    help="Make a trained model fast in production, and prove it.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
err_console = Console(stderr=True)


MODEL_HELP = (
    "The model: a Hugging Face / sentence-transformers folder (default: the bundled all-MiniLM-L6-v2), "
    "module:function returning a torch.nn.Module (with --example), a .onnx file, or a recommender folder "
    "written by python -m inferopt.tasks.recommendation.train"
)


@app.command()
def optimize(
    model: Annotated[str | None, typer.Argument(help=MODEL_HELP, show_default=False)] = None,
    task: Annotated[
        str | None,
        typer.Option(
            help="The task, when MODEL does not tell: text-embedding, image-classification, tensor, recommendation, "
            "tabular"
        ),
    ] = None,
    example: Annotated[
        str | None, typer.Option(help="module:function returning example inputs: {name: tensor}, batch on axis 0")
    ] = None,
    dynamic_axes: Annotated[
        list[str] | None, typer.Option(help="INPUT:AXIS[:NAME] dynamic beyond the batch axis (repeatable)")
    ] = None,
    preprocess: Annotated[
        Path | None, typer.Option(help="Image: a JSON of size, resize, mean, std, interpolation, labels")
    ] = None,
    image_size: Annotated[int | None, typer.Option(help="Image: the square crop the model takes (224)")] = None,
    resize: Annotated[int | None, typer.Option(help="Image: the shorter side before the crop (256)")] = None,
    mean: Annotated[str | None, typer.Option(help="Image: per-channel mean on 0-1 values, R,G,B")] = None,
    std: Annotated[str | None, typer.Option(help="Image: per-channel std on 0-1 values, R,G,B")] = None,
    labels: Annotated[Path | None, typer.Option(help="Image: class names, one per line in index order")] = None,
    data: Annotated[
        Path | None,
        typer.Option(help="Eval data: text .txt/.csv/.tsv (STS)/.jsonl; tensors .npz; images: a folder or a CSV"),
    ] = None,
    out: Annotated[Path, typer.Option(help="Output folder: report files and artifact/")] = Path("inferopt-out"),
    min_cosine: Annotated[
        float | None, typer.Option(help="Budget: least mean cosine to FP32 (text default 0.995)")
    ] = None,
    min_item_cosine: Annotated[
        float | None, typer.Option(help="Budget: least cosine of any single item (text default 0.98)")
    ] = None,
    max_metric_drop: Annotated[
        float | None,
        typer.Option(
            help="Budget: most task-metric drop in points (Spearman x100 for STS, top-1 % for images, "
            "HR@10 x100 for recommenders, AUC x100 for risk scorers)"
        ),
    ] = None,
    min_sqnr_db: Annotated[float | None, typer.Option(help="Budget: least SQNR in dB (worst output)")] = None,
    min_argmax_agreement: Annotated[
        float | None, typer.Option(help="Budget: least share of items whose top class matches FP32's")
    ] = None,
    max_abs_error: Annotated[float | None, typer.Option(help="Budget: largest absolute error of any output")] = None,
    min_top1_agreement: Annotated[
        float | None, typer.Option(help="Budget: least share of images whose top class is FP32's (default 0.99)")
    ] = None,
    min_top5_overlap: Annotated[
        float | None, typer.Option(help="Budget: least mean share of FP32's top 5 classes kept in the top 5")
    ] = None,
    min_top10_overlap: Annotated[
        float | None, typer.Option(help="Budget: least mean share of FP32's top 10 items kept (recommender: 0.98)")
    ] = None,
    min_rank_correlation: Annotated[
        float | None, typer.Option(help="Budget: least mean Spearman rho of candidate scores to FP32's")
    ] = None,
    max_mean_abs_error: Annotated[
        float | None, typer.Option(help="Budget: most mean absolute error of the score (risk scorer)")
    ] = None,
    min_decision_agreement: Annotated[
        float | None, typer.Option(help="Budget: least share of decisions at the threshold that match FP32's")
    ] = None,
    price_per_hour: Annotated[float, typer.Option(help="$ per machine-hour, for cost per 1M items")] = 0.05,
    variant: Annotated[
        str | None,
        typer.Option(help="Ship this variant (by name, e.g. int8-static-qdq) if it meets the budget, not the fastest"),
    ] = None,
    quick: Annotated[bool, typer.Option(help="Fewer variants and shorter measurements (about a minute)")] = False,
    distill_minutes: Annotated[
        float,
        typer.Option(help="Training budget of each pruned + distilled student (full runs only; 0: no students)"),
    ] = 2.0,  # a full text run then stays under 10 minutes on a 2-core machine
    force: Annotated[bool, typer.Option(help="Replace --out if an earlier inferopt run wrote it")] = False,
) -> None:
    """Export, build variants, verify accuracy against FP32, benchmark, pick the fastest within budget."""
    from inferopt.config import Budget, OptimizeConfig
    from inferopt.optimize import run_optimize
    from inferopt.tasks.base import ModelOptions

    budget = Budget.of(
        mean_cosine=min_cosine,
        min_cosine=min_item_cosine,
        metric_drop=max_metric_drop,
        sqnr_db=min_sqnr_db,
        argmax_agreement=min_argmax_agreement,
        max_abs_error=max_abs_error,
        top1_agreement=min_top1_agreement,
        top5_overlap=min_top5_overlap,
        top10_overlap=min_top10_overlap,
        rank_correlation=min_rank_correlation,
        mean_abs_error=max_mean_abs_error,
        decision_agreement=min_decision_agreement,
    )
    config = OptimizeConfig(
        model=model,
        task=task,
        model_options=ModelOptions(
            example=example,
            dynamic_axes=tuple(dynamic_axes or ()),
            preprocess=preprocess,
            image_size=image_size,
            resize=resize,
            mean=_floats(mean, "--mean"),
            std=_floats(std, "--std"),
            labels=labels,
        ),
        data=data,
        out=out,
        budget=budget,
        price_per_hour=price_per_hour,
        quick=quick,
        force=force,
        variant=variant,
        distill_minutes=distill_minutes,
    )
    outcome = run_optimize(config)
    if outcome.artifact_dir is None:
        raise typer.Exit(code=1)


def _floats(text: str | None, flag: str) -> tuple[float, ...] | None:
    if text is None:
        return None
    try:
        return tuple(float(part) for part in text.split(","))
    except ValueError:
        raise InputError(
            f"{flag} {text!r} is not numbers separated by commas", "write it as 0.485,0.456,0.406"
        ) from None


@app.command("inspect")
def inspect_artifact(artifact: Annotated[Path, typer.Argument(help="Artifact folder written by optimize")]) -> None:
    """Print an artifact's inputs/outputs, recipe, accuracy and benchmark summary (after checking its hashes)."""
    from inferopt.artifact import load_artifact
    from inferopt.report.console import print_manifest

    print_manifest(load_artifact(artifact), Console())


app.command("serve")(serve_command)
app.command("load")(load_command)
app.command("profile")(profile_command)
app.add_typer(deploy_app, name="deploy")
app.add_typer(export_app, name="export")


INTERRUPTED = "[bold red]interrupted:[/] stopped; nothing was left half-written"


def main() -> None:
    try:
        code = app(standalone_mode=False)
    except InferoptError as exc:
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
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
    """Exit 130, at once. Not sys.exit: under `python -m`, CPython ends in a death by SIGINT (exit -2) whenever a
    KeyboardInterrupt stopped code run from a string (`exec(text)`, which @dataclass does for every class an
    import defines), even if the interrupt was caught afterwards; its flag is checked after the teardown. The
    work's own cleanup (staging and temp folders) has run by now, so nothing is left for the teardown to do."""
    ignore_further_ctrl_c()
    err_console.print(INTERRUPTED, highlight=False)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(130)


if __name__ == "__main__":
    main()
