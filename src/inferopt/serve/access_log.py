"""The access log: one JSON line per request, written straight to a binary stream (stderr by default).

Not through Python's `logging`: a record costs a caller look-up (a stack walk), a LogRecord with thread and
process names, a formatter and a handler lock. Measured on the event loop of `inferopt serve` (MiniLM
artifact, 2 cores, cache hits at concurrency 64): 138 us of CPU per request with `logging`, 104 with this
direct write, 98 with no access log. Each line is written and flushed at once (one syscall), so a
line is never lost in a buffer when the process dies; batching lines per 100 ms measured no faster.
"""

from __future__ import annotations

import logging
import sys
from typing import BinaryIO

import orjson

log = logging.getLogger("inferopt.serve")


class AccessLog:
    def __init__(self, stream: BinaryIO | None = None) -> None:
        """`stream`: where lines go; by default stderr's binary buffer. With no such buffer (stderr detached,
        or replaced by a text-only object) the log is off, with one warning."""
        self.stream = stream if stream is not None else getattr(sys.stderr, "buffer", None)  # None: log off
        if self.stream is None:
            log.warning("access log disabled: stderr has no binary stream to write to")

    def write(self, fields: dict[str, object]) -> None:
        stream = self.stream
        if stream is None:
            return
        try:
            stream.write(orjson.dumps(fields, option=orjson.OPT_APPEND_NEWLINE))
            stream.flush()
        except (OSError, ValueError) as exc:  # a closed pipe must not fail the requests it would log
            self.stream = None
            log.warning("access log disabled: writing to its stream failed (%s)", exc)
