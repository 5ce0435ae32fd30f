"""One inference request, whatever carried it (HTTP or gRPC): the model it names, its inputs through the
service, its results rendered, and where its time went (the stage histograms and the request span's stages).

The transports (serve/http.py, serve/protocols/oip_v2_grpc.py) read the request, parse it with the protocol's
codec, and turn every error into their own status codes; the rest of a request's life is here, once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from inferopt.serve.batcher import HIGH, LANES
from inferopt.serve.errors import InvalidField, ModelNotFound
from inferopt.serve.service import Computed
from inferopt.serve.state import Ready, ServerState
from inferopt.serve.tracing import RequestSpan, StageMarks

PRIORITY_HEADER = "x-priority"  # an HTTP header, or a gRPC metadata key


@dataclass
class Rendered:
    """A response body, and what rendering it found out."""

    content: Any  # bytes for HTTP; the protocol's message for gRPC
    postprocess_s: float = 0.0  # of the render time, what went into building the payload (the rest: encoding)
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    log: dict[str, Any] = field(default_factory=dict)


Render = Callable[[Ready, Any, list[Computed]], Rendered]


@dataclass(frozen=True)
class Answered:
    rendered: Rendered
    timings: dict[str, float]  # seconds per stage: decode, [features,] preprocess, queue, ... total
    items: int
    cached: int  # of the items, how many a cache answered


def require_model(state: ServerState, protocol: str, name: str | None) -> Ready:
    """The ready model, if it is the one `name` asks for and it speaks `protocol`; else 404 (or 503)."""
    ready = state.require_ready()
    model = ready.model
    if name is not None and not model.answers_to(name):
        raise ModelNotFound(
            f"model {name!r} is not served here; this server serves {model.public_name!r}", param="name"
        )
    if protocol not in model.task.protocols:
        spoken = ", ".join(model.task.protocols)
        raise ModelNotFound(
            f"this server's model ({model.task.name}) does not speak {protocol}; it speaks {spoken}", param="path"
        )
    return ready


def lane_of(raw: str | None) -> str:
    """The request's lane from its x-priority: high (the default for interactive requests; jobs run low) or low."""
    if raw is None:
        return HIGH
    lane = raw.strip().lower()
    if lane not in LANES:
        raise InvalidField(f"{PRIORITY_HEADER} must be high or low, got {raw!r}", param=PRIORITY_HEADER)
    return lane


async def answer(
    ready: Ready,
    parsed: Any,
    inputs: list[Any],
    render: Render,
    *,
    deadline: float,
    lane: str,
    started: float,
    decoded: float,
    arrived: float,
    span: RequestSpan | None,
) -> Answered:
    """Run the parsed request's `inputs` and render them. `started`: when the handler began (perf_counter),
    `decoded`: when parsing ended, `arrived`: when the request reached the server (the start of `total`)."""
    results = await ready.service.infer(inputs, deadline, lane)
    post_started = time.perf_counter()
    rendered = render(ready, parsed, results)
    finished = time.perf_counter()
    lookup, preprocess, queue, inference, cached = _item_times(results)
    timings = {
        "decode": decoded - started + lookup,
        "preprocess": preprocess,
        "queue": queue,
        "inference": inference,
        "postprocess": rendered.postprocess_s,
        "encode": finished - post_started - rendered.postprocess_s,
        "total": finished - arrived,
    }
    features = results[0].features_s  # one read for the whole request, in parallel over its entities
    if features:
        timings["features"] = features
    ready.service.metrics.observe_stages(timings)
    if span is not None:
        span.stages(StageMarks(started, decoded, post_started, rendered.postprocess_s, finished), results)
    return Answered(rendered, timings, len(results), cached)


def _item_times(results: list[Computed]) -> tuple[float, float, float, float, int]:
    """(lookup, preprocess, queue, inference) as the max over the items, and how many came from a cache. A
    single item, the common request, is read directly: four generator passes cost ~3 us of the event loop."""
    if len(results) == 1:
        c = results[0]
        return c.lookup_s, c.preprocess_s, c.queue_s, c.inference_s, int(c.source != "model")
    return (
        max(c.lookup_s for c in results),
        max(c.preprocess_s for c in results),
        max(c.queue_s for c in results),
        max(c.inference_s for c in results),
        sum(c.source != "model" for c in results),
    )
