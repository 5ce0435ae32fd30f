"""Reproduce the published all-MiniLM-L6-v2 study on this machine, side by side with inferopt's pick.

Rows (one run, one machine, the 3,000 STS-B dev sentences in file order):
  PyTorch single request, PyTorch batch 32 (sentence-transformers, as teams ship it), ONNX FP32 single,
  ONNX + default INT8 single, ONNX + default INT8 batch 32 in arrival order (the study's best), and
  inferopt's pick through its own Python API (Embedder: length-sorted batches over the benchmarked layout).
Columns: p50/p95/p99 latency (per request for single rows, per batch call for batched rows), throughput,
size, mean and min cosine to PyTorch FP32, STS-B dev Spearman x100.

    python benchmarks/seed_study.py [--artifact DIR] [--out DIR] [--rounds 3] [--json OUT]

Without --artifact it first runs `inferopt optimize` on STS-B dev with the study's accuracy bar as budget
(mean cosine >= 0.995, min >= 0.98, Spearman drop <= 0.2), into --out (default build/bench/optimized), where
the artifact stays for benchmarks/serve.py.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np
from rich.console import Console
from rich.table import Table

from inferopt.accuracy import row_cosine
from inferopt.bench.stats import format_ms, latency_summary
from inferopt.engine import Embedder
from inferopt.hardware import cpu_info, environment, usable_cores
from inferopt.tasks.text_embedding import TextEmbeddingTask
from inferopt.tasks.text_embedding.evaldata import load_eval_data
from inferopt.tasks.text_embedding.metrics import spearman_x100
from inferopt.tasks.text_embedding.model_dir import default_model_dir, read_model_spec
from inferopt.tasks.text_embedding.tokenizer import TextTokenizer

REPO = Path(__file__).resolve().parents[1]
STSB = REPO.parent / "shared" / "data" / "stsbenchmark" / "sts-dev.csv"
console = Console(width=None if sys.stdout.isatty() else 160)  # a log file gets the full table


@dataclass
class Row:
    name: str
    size_bytes: int
    latencies: list[float] = field(default_factory=list)
    throughputs: list[float] = field(default_factory=list)
    embeddings: np.ndarray | None = None


def stsb_sentences(path: Path) -> list[str]:
    """Both sentences of every row, in file order (3,000 for dev), repeats kept as traffic would have them."""
    rows = [line.rstrip("\n").split("\t") for line in path.read_text(encoding="utf-8").splitlines() if line]
    return [text for row in rows for text in (row[5], row[6])]


def timed_pass(row: Row, run: Callable[[], tuple[np.ndarray, list[float]]], items: int) -> None:
    started = time.perf_counter()
    embeddings, latencies = run()
    row.throughputs.append(items / (time.perf_counter() - started))
    row.latencies.extend(latencies)
    row.embeddings = embeddings


def single(embed_one: Callable[[str], np.ndarray], texts: list[str]) -> Callable[[], tuple[np.ndarray, list[float]]]:
    def run() -> tuple[np.ndarray, list[float]]:
        out, lat = [], []
        for text in texts:
            t0 = time.perf_counter()
            out.append(embed_one(text))
            lat.append(time.perf_counter() - t0)
        return np.vstack(out), lat

    return run


def arrival_batches(embed_batch: Callable[[list[str]], np.ndarray], texts: list[str], size: int) -> Callable:
    def run() -> tuple[np.ndarray, list[float]]:
        out, lat = [], []
        for i in range(0, len(texts), size):
            t0 = time.perf_counter()
            out.append(embed_batch(texts[i : i + size]))
            lat.append(time.perf_counter() - t0)
        return np.vstack(out), lat

    return run


class TimedBackend:
    """Records each run call's duration: the per-batch latency inside inferopt's Embedder."""

    def __init__(self, inner: object, sink: list[float]) -> None:
        self.inner, self.sink = inner, sink

    def run(self, inputs: dict) -> dict:
        t0 = time.perf_counter()
        out = self.inner.run(inputs)  # type: ignore[attr-defined]
        self.sink.append(time.perf_counter() - t0)
        return out


def build_artifact(out: Path) -> Path:
    from inferopt.config import Budget, OptimizeConfig
    from inferopt.optimize import run_optimize

    budget = Budget.of(mean_cosine=0.995, min_cosine=0.98, metric_drop=0.2)
    outcome = run_optimize(OptimizeConfig(data=STSB, out=out, budget=budget, force=True), console)
    assert outcome.artifact_dir is not None
    return outcome.artifact_dir


def study_models(model_dir: Path, work: Path, texts: list[str]) -> tuple[Path, Path]:
    """The study's two ONNX models: the FP32 export (checked against PyTorch) and quantize_dynamic() with its
    defaults."""
    from onnxruntime.quantization import quantize_dynamic

    from inferopt.export import export_onnx
    from inferopt.runtime.onnx import OnnxBackend
    from inferopt.runtime.torch import TorchBackend

    task = TextEmbeddingTask.from_model(str(model_dir))
    source, schema = task.load_source(), task.io_schema()
    fp32 = export_onnx(source, schema, work / "fp32.onnx")
    torch_backend = TorchBackend(source.module, schema.input_names, schema.output_names)
    with Embedder(task, [torch_backend]) as torch_embed, Embedder(task, [OnnxBackend(fp32)]) as onnx_embed:  # type: ignore[arg-type]
        parity = row_cosine(onnx_embed.embed(texts[:64]), torch_embed.embed(texts[:64]))
    assert parity.min() > 0.9999, f"the FP32 export disagrees with PyTorch (min cosine {parity.min():.6f})"
    int8 = work / "int8-default.onnx"
    quantize_dynamic(fp32, int8)
    return fp32, int8


def ort_session(path: Path) -> Callable[[dict], np.ndarray]:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])  # the study's defaults
    return lambda feeds: session.run(None, feeds)[0]


def make_rows(model_dir: Path, artifact: Path, work: Path, texts: list[str]) -> list[tuple[Row, Callable, bool]]:
    """(row, one timed pass, repeat in every round). PyTorch single runs once: it alone takes ~20 s."""
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(model_dir), device="cpu")
    tokenizer = TextTokenizer.from_dir(model_dir, 256)
    fp32, int8 = study_models(model_dir, work, texts)
    run_fp32, run_int8 = ort_session(fp32), ort_session(int8)

    def ort_embed(run: Callable[[dict], np.ndarray]) -> Callable[[list[str]], np.ndarray]:
        return lambda batch: run(tokenizer.encode(batch))

    pick_latencies: list[float] = []
    embedder = Embedder.from_artifact(artifact)
    embedder.backends = [TimedBackend(b, pick_latencies) for b in embedder.backends]  # type: ignore[misc]
    pick = Row(
        f"inferopt pick ({embedder.batch_size}, {len(embedder.backends)} sessions)",
        (artifact / "model.onnx").stat().st_size,
    )

    def pick_pass() -> tuple[np.ndarray, list[float]]:
        pick_latencies.clear()
        return embedder.embed(texts), list(pick_latencies)

    st_size = (model_dir / "model.safetensors").stat().st_size
    encode = lambda batch: st.encode(batch, batch_size=32, normalize_embeddings=True)  # noqa: E731
    return [
        (Row("PyTorch single", st_size), single(lambda t: encode([t]), texts), False),
        (Row("PyTorch batch 32", st_size), arrival_batches(encode, texts, 32), True),
        (Row("ONNX FP32 single", fp32.stat().st_size), single(lambda t: ort_embed(run_fp32)([t]), texts), True),
        (Row("ONNX INT8 default single", int8.stat().st_size), single(lambda t: ort_embed(run_int8)([t]), texts), True),
        (
            Row("ONNX INT8 default batch 32 (study best)", int8.stat().st_size),
            arrival_batches(ort_embed(run_int8), texts, 32),
            True,
        ),
        (pick, pick_pass, True),
    ]


def physical_limit(model_dir: Path, texts: list[str]) -> dict[str, float]:
    """INT8 multiply-accumulates per embedding over the CPU's peak INT8 rate, as sentences per second.

    Peak assumes 2 x 512-bit VPDPBUSD per cycle per core (64 u8*s8 MACs each: AMD Zen 5 and Intel server cores
    with two FMA ports), at the clock /proc/cpuinfo reports; attention's activation x activation products stay
    in FP32 in ONNX Runtime's QAttention and are not counted."""
    spec = read_model_spec(model_dir)
    tokens = float(TextTokenizer.from_dir(model_dir, spec.max_length).lengths(texts).mean())
    d, ff = spec.hidden_size, spec.intermediate_size
    macs = spec.num_layers * tokens * (4 * d * d + 2 * d * ff)
    mhz = max(float(line.split(":")[1]) for line in Path("/proc/cpuinfo").read_text().splitlines() if "MHz" in line)
    cpu = cpu_info()
    per_cycle = 128 if "avx512_vnni" in cpu.flags else (64 if cpu.has_int8_dot else 32)
    peak = usable_cores() * mhz * 1e6 * per_cycle
    return {
        "mean_tokens": tokens,
        "int8_macs_per_embedding": macs,
        "peak_int8_macs_per_s": peak,
        "macs_per_cycle_per_core": per_cycle,
        "clock_mhz": mhz,
        "sentences_per_s_limit": peak / macs,
    }


def summarize(rows: list[Row], data_path: Path) -> list[dict]:
    data = load_eval_data(data_path)
    index = {text: i for i, text in enumerate(data.texts)}
    reference = rows[1].embeddings  # PyTorch FP32, batch 32
    out = []
    for row in rows:
        assert row.embeddings is not None and reference is not None
        cos = row_cosine(row.embeddings, reference)
        unique = np.zeros((len(data.texts), row.embeddings.shape[1]), np.float32)
        for text_pos, text in enumerate(TEXTS):
            unique[index[text]] = row.embeddings[text_pos]
        out.append(
            {
                "name": row.name,
                "latency_ms": latency_summary(row.latencies),
                "items_per_second": statistics.median(row.throughputs),
                "passes": len(row.throughputs),
                "size_mb": row.size_bytes / 2**20,
                "mean_cosine": float(cos.mean()),
                "min_cosine": float(cos.min()),
                "spearman_x100": spearman_x100(data.pairs, unique),
            }
        )
    return out


def print_table(summary: list[dict], limit: dict[str, float]) -> None:
    table = Table(title="all-MiniLM-L6-v2 on STS-B dev (3,000 sentences)", title_justify="left")
    for col in (
        "row",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "sent/s",
        "x torch single",
        "MB",
        "mean cos",
        "min cos",
        "Spearman",
    ):
        table.add_column(col, justify="left" if col == "row" else "right")
    base = summary[0]["items_per_second"]
    for s in summary:
        lat = s["latency_ms"]
        table.add_row(
            s["name"],
            format_ms(lat["p50"]),
            format_ms(lat["p95"]),
            format_ms(lat["p99"]),
            f"{s['items_per_second']:,.0f}",
            f"{s['items_per_second'] / base:.1f}x",
            f"{s['size_mb']:.1f}",
            f"{s['mean_cosine']:.4f}",
            f"{s['min_cosine']:.4f}",
            f"{s['spearman_x100']:.2f}",
        )
    console.print(table)
    pick, study = summary[-1], summary[-2]
    console.print(
        f"pick / study best: {pick['items_per_second'] / study['items_per_second']:.2f}x   "
        f"pick / PyTorch single: {pick['items_per_second'] / base:.1f}x   "
        f"Spearman change vs FP32: {pick['spearman_x100'] - summary[1]['spearman_x100']:+.2f}"
    )
    console.print(
        f"physical limit: {limit['int8_macs_per_embedding'] / 1e6:.0f} M INT8 MACs per sentence "
        f"({limit['mean_tokens']:.1f} tokens) over {limit['peak_int8_macs_per_s'] / 1e9:.0f} G MAC/s peak "
        f"= {limit['sentences_per_s_limit']:,.0f} sentences/s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--artifact", type=Path, help="an optimized artifact (default: run optimize first)")
    parser.add_argument(
        "--out", type=Path, default=REPO / "build" / "bench" / "optimized", help="where optimize writes (with --force)"
    )
    parser.add_argument("--rounds", type=int, default=3, help="timed passes per row (PyTorch single: 1)")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()
    if not STSB.exists():
        raise SystemExit(f"STS-B dev not found at {STSB}: this benchmark needs ../shared beside the repo")
    model_dir = default_model_dir()
    with tempfile.TemporaryDirectory() as tmp:
        artifact = args.artifact or build_artifact(args.out)
        rows = make_rows(model_dir, artifact, Path(tmp), TEXTS)
        for round_no in range(args.rounds):
            for row, run, repeat in rows:
                if round_no == 0 or repeat:
                    console.print(f"round {round_no + 1}/{args.rounds}: {row.name}")
                    timed_pass(row, run, len(TEXTS))
    summary = summarize([r for r, _, _ in rows], STSB)
    limit = physical_limit(model_dir, TEXTS)
    print_table(summary, limit)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(
                {
                    "rows": summary,
                    "physical_limit": limit,
                    "environment": environment(),
                    "date": time.strftime("%Y-%m-%d"),
                },
                indent=2,
            )
        )


TEXTS = stsb_sentences(STSB) if STSB.exists() else []

if __name__ == "__main__":
    main()
