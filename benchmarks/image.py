"""Image classification, EfficientNet-Lite0 on ImageNet photos: the seed's baseline against inferopt's pick, in one
run on one machine. Every row decodes the same JPEG files (Pillow, the same preprocessing): a request costs it.

1. `inferopt optimize --task image-classification` (default variants and budget), unless --artifact is given.
2. In-process, on the 320 eval images (the 20 foolbox ImageNet photos and their transformed copies): PyTorch
   eager one image per call (the seed's baseline) and in batches of 8, ONNX FP32 (the plain export, one
   session with every core, batches of 8), and `inferopt.Predictor` at the artifact's benchmarked settings.
   Fidelity of the pick to eager: top-1 agreement, and top-1 accuracy on the 20 labelled photos.
3. Over HTTP, KServe v1 JSON with the same base64 JPEG bodies for both (one photo per request, the cache off):
   `inferopt serve` against benchmarks/plain_image_server.py (FastAPI + PyTorch eager per request), closed loop
   at concurrency 1 and 16.
4. Where one request's time goes on inferopt's server (`inferopt profile`'s split: decode, preprocess, queue,
   inference, postprocess, encode).

    python benchmarks/image.py [--artifact DIR] [--out build/bench/image] [--duration 15] [--json OUT]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from benchmarks.byo import start, write_record  # noqa: E402

console = Console(width=None if sys.stdout.isatty() else 160)


def build_artifact(out: Path) -> Path:
    from inferopt.config import OptimizeConfig
    from inferopt.optimize import run_optimize

    outcome = run_optimize(OptimizeConfig(task="image-classification", out=out, force=True), console)
    assert outcome.artifact_dir is not None
    return outcome.artifact_dir


def timed(call: Callable[[Any], object], batches: list[Any], rounds: int) -> tuple[float, list[float]]:
    """Median seconds per whole pass over `batches`, and the first pass's per-call latencies."""
    call(batches[0])  # warm
    passes, first = [], []
    for r in range(rounds):
        started = time.perf_counter()
        for batch in batches:
            t0 = time.perf_counter()
            call(batch)
            if r == 0:
                first.append(time.perf_counter() - t0)
        passes.append(time.perf_counter() - started)
    return statistics.median(passes), first


def in_process(artifact: Path, images: list[bytes], rounds: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    import torch

    import inferopt
    from inferopt.export import export_onnx
    from inferopt.runtime.onnx import OnnxBackend
    from inferopt.tasks.image_classification import ImageClassificationTask

    torch.set_num_threads(os.cpu_count() or 1)
    task = ImageClassificationTask.from_model(None)
    source = task.load_source()
    module = source.module
    prep = task.preprocessing

    def eager(files: list[bytes]) -> np.ndarray:
        batch = torch.from_numpy(np.stack([prep.array(f) for f in files]))
        with torch.inference_mode():
            return module(batch).numpy()

    work = Path(tempfile.mkdtemp())
    fp32 = export_onnx(source, task.io_schema(), work / "fp32.onnx")
    plain = inferopt.Predictor(task, [OnnxBackend(fp32, intra_op_threads=os.cpu_count() or 1)], batch_size=8)
    pick = inferopt.Predictor.from_artifact(artifact)
    n = len(images)
    cases: list[tuple[str, Callable[[Any], object], list[Any]]] = [
        ("PyTorch eager, 1 image per call (the seed's baseline)", eager, [[f] for f in images]),
        ("PyTorch eager, batches of 8", eager, [images[i : i + 8] for i in range(0, n, 8)]),
        ("ONNX Runtime FP32 export, 1 session, batches of 8", plain.outputs, [images]),
        (f"inferopt pick ({pick.batch_size}/batch, {len(pick.backends)} sessions)", pick.outputs, [images]),
    ]  # fmt: skip
    rows = []
    for name, call, batches in cases:
        seconds, latencies = timed(call, batches, rounds)
        rows.append({
            "row": name,
            "images_per_second": n / seconds,
            "p50_ms": float(np.percentile(latencies, 50) * 1000) if len(batches) > 1 else None,
            "p95_ms": float(np.percentile(latencies, 95) * 1000) if len(batches) > 1 else None,
        })  # fmt: skip
        console.print(f"  {name}: {rows[-1]['images_per_second']:,.1f} images/s")
    # The same, model only: both sides get the preprocessed arrays, so decoding's share is out of the ratio.
    items = task.preprocess(images)
    arrays = [torch.from_numpy(item.data[None]) for item in items]

    def eager_arrays(x: Any) -> object:
        with torch.inference_mode():
            return module(x)

    for name, call, batches in [
        ("model only: PyTorch eager, 1 image per call", eager_arrays, arrays),
        ("model only: inferopt pick", pick.run_items, [items]),
    ]:
        seconds, _ = timed(call, batches, rounds)
        rows.append({"row": name, "images_per_second": n / seconds, "p50_ms": None, "p95_ms": None})
        console.print(f"  {name}: {rows[-1]['images_per_second']:,.1f} images/s")
    reference = np.concatenate([eager(images[i : i + 32]) for i in range(0, n, 32)])
    picked = pick.outputs(images)["logits"]
    from inferopt.tasks.image_classification.evaldata import builtin_photos

    labels = np.array([label for _, label in builtin_photos()])
    fidelity = {
        "top1_agreement": float(np.mean(reference.argmax(1) == picked.argmax(1))),
        "eager_top1_labelled": float(np.mean(reference[: len(labels)].argmax(1) == labels) * 100),
        "pick_top1_labelled": float(np.mean(picked[: len(labels)].argmax(1) == labels) * 100),
        "images": n,
    }
    pick.close()
    plain.close()
    return rows, fidelity


def over_http(artifact: Path, photos: Path, duration: float) -> list[dict[str, Any]]:
    from inferopt.artifact import load_artifact
    from inferopt.bench.loadgen import LoadConfig, run_load

    name = load_artifact(artifact).model_name
    servers = [
        ("inferopt serve", [sys.executable, "-m", "inferopt", "serve", str(artifact), "--port", "8021",
                            "--no-access-log", "--cache", "off"], "http://127.0.0.1:8021", "/health/ready"),
        ("FastAPI + PyTorch eager", [sys.executable, "benchmarks/plain_image_server.py", "--port", "8022"],
         "http://127.0.0.1:8022", "/health"),
    ]  # fmt: skip
    results = []
    for label, command, base, health in servers:
        process = start(command, base + health, label)
        try:
            for concurrency in (1, 16):
                config = LoadConfig(f"{base}/v1/models/{name}:predict", rate=None, concurrency=concurrency,
                                    duration_s=duration + 3, warmup_s=3, inputs=photos, timeout_s=120)  # fmt: skip
                result = run_load(config)
                lat = result.latency_ms
                results.append({
                    "server": label, "concurrency": concurrency, "requests_per_second": result.achieved_rate,
                    "p50_ms": lat["p50"], "p95_ms": lat["p95"], "p99_ms": lat["p99"],
                    "errors": sum(result.errors.values()), "requests": result.ok,
                })  # fmt: skip
                console.print(f"  {label} c={concurrency}: {result.achieved_rate:,.1f} req/s, p50 {lat['p50']:.1f} ms")
            if label == "inferopt serve":
                results.append({"server": label, "profile": profile(f"{base}/v1/models/{name}:predict", photos)})
        finally:
            process.terminate()
            process.wait(30)
    return results


def profile(url: str, photos: Path) -> list[dict[str, Any]]:
    from inferopt.bench.inputs import load_inputs
    from inferopt.bench.profile import profile_url

    result = profile_url(url, load_inputs(photos), 300)
    return result.breakdown()


def draft_decoding(repeats: int = 20) -> list[dict[str, Any]]:
    """Preprocessing one 12 MP phone photo (4,000 x 3,000 JPEG) to the model's input, draft mode on and off."""
    import io
    from dataclasses import replace

    from PIL import Image

    from inferopt.tasks.image_classification.preprocessing import ImagePreprocessing

    rng = np.random.default_rng(0)
    small = rng.integers(0, 255, (300, 400, 3), dtype=np.uint8)  # smooth-ish content, like a photo, not noise
    photo = Image.fromarray(small).resize((4000, 3000), Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    photo.save(buffer, "JPEG", quality=90)
    data = buffer.getvalue()
    rows = []
    for draft in (False, True):
        config = replace(ImagePreprocessing(), draft=draft)
        config.array(data)
        started = time.perf_counter()
        for _ in range(repeats):
            config.array(data)
        rows.append({"draft": draft, "ms": (time.perf_counter() - started) / repeats * 1000, "bytes": len(data)})
        console.print(f"  12 MP JPEG, draft {'on' if draft else 'off'}: {rows[-1]['ms']:.1f} ms")
    return rows


def print_tables(local: list[dict[str, Any]], fidelity: dict[str, Any], http: list[dict[str, Any]]) -> None:
    def fmt(value: float | None, digits: int = 1) -> str:
        return "n/a" if value is None else f"{value:.{digits}f}"

    title = f"in-process, {fidelity['images']} JPEG images, decoding included (model only: without)"
    table = Table(title=title, title_justify="left")
    for column in ("row", "images/s", "x eager 1-image", "p50 ms", "p95 ms"):
        table.add_column(column, justify="left" if column == "row" else "right")

    def base_of(row: dict[str, Any]) -> float:  # model-only rows against the model-only eager row
        kind = row["row"].startswith("model only")
        return next(r["images_per_second"] for r in local if r["row"].startswith("model only") == kind)

    for r in local:
        base = base_of(r)
        table.add_row(r["row"], f"{r['images_per_second']:,.1f}", f"{r['images_per_second'] / base:.2f}x",
                      fmt(r["p50_ms"]), fmt(r["p95_ms"]))  # fmt: skip
    console.print(table)
    console.print(
        f"pick vs eager: top-1 agreement {fidelity['top1_agreement']:.4f} on {fidelity['images']} images; top-1 on the "
        f"20 labelled photos {fidelity['eager_top1_labelled']:.0f}% eager, {fidelity['pick_top1_labelled']:.0f}% pick"
    )
    table = Table(title="over HTTP, KServe v1 JSON, one base64 JPEG per request, closed loop", title_justify="left")
    for column in ("server", "concurrency", "req/s", "p50 ms", "p95 ms", "p99 ms", "errors"):
        table.add_column(column, justify="left" if column == "server" else "right")
    for r in http:
        if "profile" in r:
            continue
        table.add_row(r["server"], str(r["concurrency"]), f"{r['requests_per_second']:,.1f}", fmt(r["p50_ms"]),
                      fmt(r["p95_ms"]), fmt(r["p99_ms"]), str(r["errors"]))  # fmt: skip
    console.print(table)
    for r in http:
        if "profile" in r:
            table = Table(title="one request on inferopt serve (300 sequential requests)", title_justify="left")
            for column in ("stage", "p50 ms", "share of a typical request"):
                table.add_column(column, justify="left" if column == "stage" else "right")
            for stage in r["profile"]:
                table.add_row(
                    str(stage.get("stage")), fmt(stage.get("p50_ms"), 2), f"{stage.get('typical_share', 0):.0%}"
                )
            console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--artifact", type=Path, help="an optimized EfficientNet-Lite0 artifact (default: optimize)")
    parser.add_argument("--out", type=Path, default=REPO / "build" / "bench" / "image")
    parser.add_argument("--rounds", type=int, default=3, help="timed in-process passes per row (median)")
    parser.add_argument("--duration", type=float, default=15.0, help="measured seconds per HTTP run")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    from inferopt.tasks.image_classification.evaldata import builtin_set

    artifact = args.artifact or build_artifact(args.out)
    data = builtin_set()
    console.print("[bold]in-process[/]")
    local, fidelity = in_process(artifact, list(data.images), args.rounds)
    console.print("[bold]over HTTP[/]")
    with tempfile.TemporaryDirectory() as tmp:
        for i, image in enumerate(data.images[:20]):
            (Path(tmp) / f"photo{i:02d}.jpg").write_bytes(image)
        http = over_http(artifact, Path(tmp), args.duration)
    console.print("[bold]preprocessing a 12 MP photo[/]")
    drafts = draft_decoding()
    print_tables(local, fidelity, http)
    if args.json:
        write_record(args.json, artifact, {"in_process": local, "fidelity": fidelity, "http": http,
                                           "draft_decoding": drafts})  # fmt: skip


if __name__ == "__main__":
    main()
