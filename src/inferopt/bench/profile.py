"""`inferopt profile`: where the time of one request goes.

Against a URL, requests go one at a time over one keep-alive connection (no queueing of our own making) and
each is split using the server's `Server-Timing` header (decode, tokenize, queue, inference, postprocess,
encode, total) plus the client's own clock: network + HTTP handling = client total - server total. Against
an artifact, the same pipeline stages run in-process and are timed directly (no network, queue = 0).

Two views of the split: a typical request (the mean split of requests whose total lies between the 40th
and 60th percentile) and a slow one (the mean split of requests at or beyond the 99th percentile, only
with enough requests for a p99); the stage shares of each add up to 100% because they describe the same
requests. Per-stage p50/p99 are given too, but those of different stages come from different requests.
"""

from __future__ import annotations

import http.client
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from inferopt.bench.http1 import parse_target
from inferopt.bench.stats import min_samples_for
from inferopt.errors import InputError
from inferopt.tasks.base import Task

SERVER_STAGES = ("decode", "preprocess", "queue", "inference", "postprocess", "encode")
NETWORK = "network + HTTP"
SERVER_OTHER = "server (other)"
TYPICAL_BAND = (40.0, 60.0)


@dataclass
class ProfileResult:
    source: str  # the URL or artifact profiled
    mode: str  # "url" or "in-process"
    stages: tuple[str, ...]
    durations: np.ndarray  # (requests, stages), seconds
    totals: np.ndarray  # (requests,), seconds: what the client (or the in-process timer) measured
    notes: list[str] = field(default_factory=list)
    wall_s: float | None = None  # in-process: the clock around the whole timed run, independent of the stages
    partial: str | None = None  # why the run stopped before all requests were timed

    @property
    def requests(self) -> int:
        return int(self.totals.size)

    def stage_sum_ratio(self) -> float:
        """How much of the time the timed stages account for: 1.0 when none goes unexplained.

        The remainder column ("server (other)": the server's total less its named stages) is left out, so a
        server whose stages miss part of its time shows a ratio below 1. In-process, the reference is the clock
        around the whole run, so time lost between the stages shows too."""
        timed = [j for j, stage in enumerate(self.stages) if stage != SERVER_OTHER]
        per_request = self.wall_s / self.requests if self.wall_s else float(self.totals.mean())
        return float(self.durations[:, timed].sum(axis=1).mean() / per_request)

    def breakdown(self) -> list[dict[str, Any]]:
        """One row per stage: p50/p99 of the stage alone, and its time and share in typical and slow requests."""
        typical = self._split(self._band(*TYPICAL_BAND))
        tail_ok = self.requests >= min_samples_for(99.0)
        tail = self._split(self._band(99.0, 100.0)) if tail_ok else None
        enough_p99 = self.requests >= min_samples_for(99.0)
        rows = []
        for j, stage in enumerate(self.stages):
            col = self.durations[:, j] * 1000.0
            rows.append({
                "stage": stage,
                "p50_ms": float(np.percentile(col, 50)),
                "p99_ms": float(np.percentile(col, 99)) if enough_p99 else None,
                "typical_ms": typical[0][j],
                "typical_share": typical[1][j],
                "slow_ms": tail[0][j] if tail else None,
                "slow_share": tail[1][j] if tail else None,
            })  # fmt: skip
        return rows

    def _band(self, low: float, high: float) -> np.ndarray:
        lo, hi = np.percentile(self.totals, [low, high])
        return (self.totals >= lo) & (self.totals <= hi)

    def _split(self, mask: np.ndarray) -> tuple[list[float], list[float]]:
        means = self.durations[mask].mean(axis=0) * 1000.0
        total = float(means.sum()) or 1.0
        return means.tolist(), (means / total).tolist()

    def totals_ms(self) -> dict[str, float | None]:
        from inferopt.bench.stats import latency_summary

        return latency_summary(self.totals)

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "mode": self.mode,
            "requests": self.requests,
            "total_ms": self.totals_ms(),
            "stage_sum_ratio": self.stage_sum_ratio(),
            "stages": self.breakdown(),
            "notes": self.notes,
            "partial": self.partial,
        }


def parse_server_timing(header: str) -> dict[str, float]:
    """`name;dur=ms, name;desc="x";dur=ms` -> {name: seconds}; entries without a duration are skipped."""
    timings: dict[str, float] = {}
    for entry in header.split(","):
        name, *params = (part.strip() for part in entry.split(";"))
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "dur" and name:
                try:
                    timings[name] = float(value.strip().strip('"')) / 1000.0
                except ValueError:
                    continue
    return timings


def profile_url(
    url: str, inputs: list[Any], requests: int, *, warmup: int = 20, timeout_s: float = 30.0
) -> ProfileResult:
    """Sequential requests to `url`, each split into network + HTTP and the server's own stages."""
    from inferopt.bench.inputs import INFER_SUFFIX, bytes_input, request_body, v2_text_input

    target = parse_target(url)
    text_v2 = target.path.endswith(INFER_SUFFIX) and bytes_input(inputs)
    v2_text = v2_text_input(target) if text_v2 else "text"
    cls = http.client.HTTPSConnection if target.tls else http.client.HTTPConnection
    conn = cls(target.host, target.port, timeout=timeout_s)
    samples: list[tuple[float, dict[str, float]]] = []
    partial = None
    try:
        for i in range(warmup + requests):
            body = request_body(target.path, [inputs[i % len(inputs)]], v2_text_input=v2_text)
            try:
                sample = _timed_request(conn, target.path, body, target.url)
            except InputError as exc:
                if not samples:
                    raise
                partial = f"stopped after {len(samples)} of {requests} requests: {exc.what}"
                break
            if i >= warmup:
                samples.append(sample)
    finally:
        conn.close()
    stages, durations = _split(samples)
    totals = np.asarray([total for total, _ in samples])
    return ProfileResult(target.url, "url", stages, durations, totals, partial=partial)


def _split(samples: list[tuple[float, dict[str, float]]]) -> tuple[tuple[str, ...], np.ndarray]:
    """Stage columns: network + HTTP, the known server stages, any others the server named (a cache lookup),
    and the server's unattributed time (routing, middleware: its total minus its named stages)."""
    extra: list[str] = []
    for _, timings in samples:
        extra += [n for n in timings if n not in SERVER_STAGES and n != "total" and n not in extra]
    named = (*SERVER_STAGES, *extra)
    rows = []
    for total, timings in samples:
        parts = [timings.get(stage, 0.0) for stage in named]
        server_total = timings.get("total", sum(parts))
        rows.append([max(total - server_total, 0.0), *parts, max(server_total - sum(parts), 0.0)])
    return (NETWORK, *named, SERVER_OTHER), np.asarray(rows, dtype=np.float64).reshape(len(rows), len(named) + 2)


def _timed_request(
    conn: http.client.HTTPConnection, path: str, body: bytes, url: str
) -> tuple[float, dict[str, float]]:
    started = time.perf_counter()
    try:
        conn.request("POST", path, body=body, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        content = response.read()
    except (OSError, http.client.HTTPException) as exc:
        raise InputError(f"Cannot profile {url} ({exc})", "start the server or fix the URL") from exc
    total = time.perf_counter() - started
    if response.status != 200:
        snippet = content[:200].decode("utf-8", "replace")
        raise InputError(f"{url} answered {response.status}: {snippet!r}", "profile needs a working inference route")
    header = response.getheader("server-timing")
    if not header:
        raise InputError(
            f"{url} sent no Server-Timing header",
            "profile a URL served by `inferopt serve` (or any server that sends decode/tokenize/... durations)",
        )
    return total, parse_server_timing(header)


def profile_pipeline(
    task: Task, backend: Any, inputs: list[Any], requests: int, *, warmup: int = 20, model_name: str = "profile"
) -> ProfileResult:
    """The server's per-request stages, in-process and timed one by one, through the server's own request codec
    (OpenAI embeddings for text encoders, else OIP v2) and response code (queue is 0: nothing waits). The whole
    loop is timed as well, so that time spent between the stages would show as a stage sum short of the total."""
    from inferopt.serve.cache import CachedResult

    codec = InProcessCodec.for_task(task, model_name)
    bodies = [codec.body(inputs[i % len(inputs)]) for i in range(warmup + requests)]  # the client's work: untimed
    rows, totals = [], []
    for i, body in enumerate(bodies):
        t0 = time.perf_counter()
        parsed, raws = codec.parse(body)
        t1 = time.perf_counter()
        items = task.preprocess(raws)
        feeds = task.collate(items)
        t2 = time.perf_counter()
        outputs = backend.run(feeds)
        t3 = time.perf_counter()
        results = [
            CachedResult.make(out, item.cost, item.truncated, partial(task.postprocess, item=item))
            for out, item in zip(task.split(outputs, items), items, strict=True)
        ]
        t4 = time.perf_counter()
        codec.render(parsed, results)
        t5 = time.perf_counter()
        if i == warmup:
            timed_from = t0
        if i >= warmup:
            rows.append([t1 - t0, t2 - t1, 0.0, t3 - t2, t4 - t3, t5 - t4])
            totals.append(t5 - t0)
    wall_s = time.perf_counter() - timed_from
    return ProfileResult("in-process", "in-process", SERVER_STAGES, np.asarray(rows), np.asarray(totals), wall_s=wall_s)


@dataclass(frozen=True)
class InProcessCodec:
    """The wire a profiled request takes in-process: its body, the server's parser and its response builder."""

    body: Callable[[Any], bytes]
    parse: Callable[[bytes], tuple[Any, list[Any]]]
    render: Callable[[Any, list[Any]], bytes]

    @classmethod
    def for_task(cls, task: Task, model_name: str) -> InProcessCodec:
        from inferopt.bench.inputs import request_body
        from inferopt.tasks.base import OPENAI_EMBEDDINGS

        if OPENAI_EMBEDDINGS in task.protocols:
            from inferopt.serve.wire.openai import embedding_response, parse_embedding_request

            def parse_openai(body: bytes) -> tuple[Any, list[Any]]:
                parsed = parse_embedding_request(body, max_items=1, dim=0)
                return parsed, parsed.texts

            def render_openai(parsed: Any, results: list[Any]) -> bytes:
                vectors = [next(iter(r.outputs.values())) for r in results]
                payload = embedding_response(
                    model_name, parsed.encoding_format, vectors, sum(r.cost for r in results), [r.json for r in results]
                )
                return orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY)

            return cls(lambda raw: request_body("/v1/embeddings", [raw]), parse_openai, render_openai)

        from inferopt.serve.wire.oip_v2 import infer_response, parse_infer

        v2_name = next((t["name"] for t in task.v2_inputs() if t["datatype"] == "BYTES"), "text")

        def parse_v2(body: bytes) -> tuple[Any, list[Any]]:
            parsed = parse_infer(body, task, max_items=1)
            return parsed, parsed.inputs

        def render_v2(parsed: Any, results: list[Any]) -> bytes:
            return infer_response(model_name, "1", parsed, [r.outputs for r in results])

        return cls(lambda raw: request_body("/infer", [raw], v2_text_input=v2_name), parse_v2, render_v2)


def profile_artifact(
    path: Path, inputs: list[Any] | None, requests: int, *, warmup: int = 20, device: str | None = None
) -> ProfileResult:
    from inferopt.artifact import load_artifact
    from inferopt.runtime.onnx import open_backend
    from inferopt.tasks.registry import for_artifact

    artifact = load_artifact(path)
    task = for_artifact(artifact.manifest, artifact.path)
    # text: the built-in corpus; tensors: the artifact's examples; images: the built-in calibration photos
    inputs = inputs or [task.to_instance(raw) for raw in task.calibration_inputs()]
    placement = artifact.resolve_placements(device).default
    backend = open_backend(artifact.model_file, placement, artifact.settings.intra_op_threads)
    result = profile_pipeline(task, backend, inputs, requests, warmup=warmup)
    result.source = str(path)
    result.notes.append("in-process: no network, no HTTP server, no batching; queue is 0 by construction")
    return result


def looks_like_url(target: str) -> bool:
    return "://" in target or (not Path(target).exists() and ":" in target)
