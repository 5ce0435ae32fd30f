"""W3C Trace Context (https://www.w3.org/TR/trace-context/): the `traceparent` a caller sends is continued,
and every response returns the trace with this server's own span id, so a caller's trace and the access log
line share one trace id. A malformed or absent traceparent starts a fresh trace, never an error.

    traceparent: 00-<32 hex trace id>-<16 hex parent span id>-<2 hex flags>

Ids come from `random.getrandbits` (as OpenTelemetry's default generator does): they must be unique, not
secret, and os.urandom costs ~100 us per call on some VMs.
"""

from __future__ import annotations

import random
import re
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

HEADER = b"traceparent"
_FORMAT = re.compile(rb"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_ZERO_TRACE, _ZERO_SPAN = b"0" * 32, b"0" * 16
SAMPLED = "01"
# While a traced request runs (serve/tracing.py on): its span's context, which the batch span links to.
REQUEST_SPAN: ContextVar[Any] = ContextVar("inferopt_request_span", default=None)


@dataclass(frozen=True, slots=True)
class TraceContext:
    trace_id: str  # 32 lower-case hex digits
    span_id: str  # this server's span: 16 hex digits
    parent_id: str | None  # the caller's span, when it sent one
    flags: str = SAMPLED

    def header(self) -> bytes:
        """The traceparent this server returns: the same trace, its own span."""
        return f"00-{self.trace_id}-{self.span_id}-{self.flags}".encode()


def from_headers(headers: list[tuple[bytes, bytes]] | tuple[tuple[bytes, bytes], ...]) -> TraceContext:
    """The request's trace: the caller's, continued, or a fresh one."""
    for name, value in headers:
        if name == HEADER:
            parsed = parse(value)
            if parsed is not None:
                trace_id, parent_id, flags = parsed
                return TraceContext(trace_id, _span_id(), parent_id, flags)
            break
    return TraceContext(f"{random.getrandbits(128) or 1:032x}", _span_id(), None)


def parse(value: bytes) -> tuple[str, str, str] | None:
    """(trace id, parent id, flags) of a valid traceparent, else None. Version 00 is exactly 55 characters; a
    later version may carry more after a '-' (the spec's forward compatibility); version ff is invalid."""
    value = value.strip()
    match = _FORMAT.match(value)
    if match is None:
        return None
    version, trace_id, parent_id, flags = match.groups()
    if version == b"ff" or trace_id == _ZERO_TRACE or parent_id == _ZERO_SPAN:
        return None
    if (version == b"00" and len(value) != 55) or (len(value) > 55 and value[55:56] != b"-"):
        return None
    return trace_id.decode(), parent_id.decode(), flags.decode()


def _span_id() -> str:
    return f"{random.getrandbits(64) or 1:016x}"
