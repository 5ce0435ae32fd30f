"""What OpenTelemetry tracing costs inferopt serve: throughput and latency at concurrency 64 with tracing off and
on, A B A B, on the text artifact, with the cache off (every request runs the model).

    python benchmarks/tracing_cost.py build/demo/artifact [--duration 20] [--rounds 2] [--json OUT]

Three servers: off; on with every request traced (the SDK's default sampler); on with 10% of traces
sampled (OTEL_TRACES_SAMPLER=parentbased_traceidratio, 0.1: a common production setting). "On" exports over
OTLP/HTTP to a collector stand-in started here: a plain HTTP server that accepts
POST /v1/traces, decodes each ExportTraceServiceRequest and counts its spans, so the run shows the spans were
really built, sent and received. It runs on the same cores as the server and the load generator (a real
collector would not), so the cost measured includes receiving the spans too: an upper bound.
Target (issue 12): throughput with tracing on within 10% of off.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from benchmarks.serve import STSB_DEV, LoadRun, Server, measure  # noqa: E402

from inferopt.serve.testing import free_port  # noqa: E402

CONCURRENCY = 64


class Collector(ThreadingHTTPServer):
    """An OTLP/HTTP traces endpoint that only counts: requests, spans, bytes."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.requests = self.spans = self.bytes = 0
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: Collector

    def do_POST(self) -> None:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        request = ExportTraceServiceRequest.FromString(body)
        spans = sum(len(scope.spans) for resource in request.resource_spans for scope in resource.scope_spans)
        with self.server.lock:
            self.server.requests += 1
            self.server.spans += spans
            self.server.bytes += len(body)
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:  # quiet
        pass


def server(artifact: Path, name: str, extra: list[str], logs: Path, env: tuple[str, ...] = ()) -> Server:
    port = free_port()
    command = [sys.executable, "-m", "inferopt", "serve", str(artifact), "--port", str(port), "--cache", "off"]
    return Server(name, ["env", *env, *command, "--no-access-log", *extra], port, "/health/ready", logs)


SAMPLED = ("OTEL_TRACES_SAMPLER=parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG=0.1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("artifact", type=Path)
    parser.add_argument("--duration", type=float, default=20.0, help="measured seconds per run")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=2, help="A B rounds (each mode runs this many times)")
    parser.add_argument("--data", type=Path, default=STSB_DEV)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    collector = Collector()
    threading.Thread(target=collector.serve_forever, daemon=True).start()
    runs: dict[str, list[LoadRun]] = {"off": [], "on": [], "on-10%": []}
    with tempfile.TemporaryDirectory() as tmp:
        logs = Path(tmp)
        endpoint = ["--otlp-endpoint", collector.url]
        off = server(args.artifact, "tracing-off", [], logs)
        on = server(args.artifact, "tracing-on", endpoint, logs)
        sampled = server(args.artifact, "tracing-on-10pct", endpoint, logs, SAMPLED)
        with off, on, sampled:
            for _ in range(args.rounds):
                for mode, target in (("off", off), ("on", on), ("on-10%", sampled)):
                    url = f"{target.url}/v1/embeddings"
                    runs[mode].append(measure(url, (f"tracing-{mode}", "sts", CONCURRENCY), args))
        # The servers are stopped: their last spans are flushed on shutdown.
    collector.shutdown()
    summary = {}
    for mode, done in runs.items():
        summary[mode] = {
            "throughput_rps": statistics.median(r.throughput for r in done),
            "p50_ms": statistics.median(r.p50_ms for r in done),
            "p99_ms": statistics.median(r.p99_ms or float("nan") for r in done),
            "requests": sum(r.requests for r in done),
            "errors": sum(r.errors + r.non_2xx for r in done),
            "runs": [r.throughput for r in done],
        }
    ratio = summary["on"]["throughput_rps"] / summary["off"]["throughput_rps"]
    sampled_ratio = summary["on-10%"]["throughput_rps"] / summary["off"]["throughput_rps"]
    summary["on_over_off"], summary["sampled_over_off"] = ratio, sampled_ratio
    summary["collector"] = {"requests": collector.requests, "spans": collector.spans, "bytes": collector.bytes}
    traced = summary["on"]["requests"] + 0.1 * summary["on-10%"]["requests"]
    summary["spans_per_traced_request"] = collector.spans / max(1.0, traced)
    for mode in ("off", "on", "on-10%"):
        s = summary[mode]
        print(
            f"tracing {mode:6s}: {s['throughput_rps']:7.1f} req/s (median of {args.rounds}: "
            f"{', '.join(f'{r:.1f}' for r in s['runs'])}), p50 {s['p50_ms']:.1f} ms, p99 {s['p99_ms']:.1f} ms, "
            f"errors {s['errors']}"
        )
    verdict = "met" if sampled_ratio >= 0.9 else "MISSED"
    print(f"10% sampled / off throughput: {sampled_ratio:.3f} (target >= 0.90: {verdict})")
    print(
        f"on / off throughput: {ratio:.3f} (target >= 0.90: {'met' if ratio >= 0.9 else 'MISSED'}); the collector "
        f"received {collector.spans:,} spans in {collector.requests:,} exports "
        f"({summary['spans_per_traced_request']:.1f} per traced request counted, warm-ups uncounted)"
    )
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
