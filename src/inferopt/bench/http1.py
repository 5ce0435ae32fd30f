"""A lean HTTP/1.1 keep-alive client for the load generator: pre-encoded requests, minimal response framing.

General clients (httpx, aiohttp) spend tens of microseconds per request building and parsing objects the
load generator never looks at; on a 2-core box that cost comes straight out of the server under test and
caps the rate the generator can offer. Here every request is encoded once, up front, and a response is
only framed: status code, where its body ends (Content-Length or chunked), and whether the connection
stays open. One request at a time per connection (no pipelining), as browsers and SDKs do. Of the headers
only one more is looked at, and only on a 429: whether it carries Retry-After, as an overloaded server's
refusals should.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

from inferopt.errors import InputError

DEFAULT_PATH = "/v1/embeddings"
NO_BODY_STATUSES = frozenset({204, 304})


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str
    port: int
    path: str

    @property
    def tls(self) -> bool:
        return self.scheme == "https"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}{self.path}"


def parse_target(url: str, default_path: str = DEFAULT_PATH) -> Target:
    """`http://host:port[/path]`; a bare host:port gets http, an empty path gets the embeddings route."""
    parts = urlsplit(url if "://" in url else f"http://{url}")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InputError(f"Cannot use URL {url!r}", "give http://HOST:PORT[/path], e.g. http://127.0.0.1:8000")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise InputError(f"URL {url!r} has an invalid port", "give a port between 1 and 65535") from exc
    path = parts.path if parts.path not in ("", "/") else default_path
    if parts.query:
        path = f"{path}?{parts.query}"
    return Target(parts.scheme, parts.hostname, port, path)


def encode_post(target: Target, body: bytes, content_type: str = "application/json") -> bytes:
    head = (
        f"POST {target.path} HTTP/1.1\r\nHost: {target.host}:{target.port}\r\n"
        f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\nUser-Agent: inferopt-load\r\n\r\n"
    )
    return head.encode("latin-1") + body


class ResponseSink(Protocol):
    """Who hears about a connection's responses: the sender that owns it."""

    def on_response(self, conn: Http1Connection, status: int, done: float, keep_alive: bool) -> None: ...

    def on_lost(self, conn: Http1Connection) -> None: ...


class Http1Connection(asyncio.Protocol):
    """One keep-alive connection; `send` writes a pre-encoded request, the sink hears when its response ends."""

    __slots__ = (
        "_body_left", "_buf", "_chunked", "_keep_alive", "_status", "closed", "retry_after", "sink", "tag", "transport",
    )  # fmt: skip

    def __init__(self, sink: ResponseSink) -> None:
        self.sink = sink
        self.transport: asyncio.Transport | None = None
        self.tag = -1  # the request in flight on this connection, -1 when idle
        self.closed = False
        self.retry_after = False  # whether the latest response's head had Retry-After (looked at on 429s only)
        self._reset()

    def _reset(self) -> None:
        self._buf = bytearray()
        self._status = 0  # 0 while the head has not fully arrived
        self._body_left = 0  # bytes of body still to come (-1: until the connection closes)
        self._chunked = False
        self._keep_alive = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def send(self, request: bytes, tag: int) -> None:
        self.tag = tag
        self.transport.write(request)  # type: ignore[union-attr]

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.tag >= 0 and self._status and self._body_left == -1:
            self._finish(time.monotonic())  # a body delimited by the server closing the connection
        self.sink.on_lost(self)

    def data_received(self, data: bytes) -> None:
        self._buf += data
        try:
            self._frame()
        except ValueError:  # a malformed head or chunk size: a server error, and this connection is done
            self._status, self._keep_alive = 599, False
            self._finish(time.monotonic())

    def _frame(self) -> None:
        if not self._status and not self._parse_head():
            return
        if self._chunked:
            if self._chunked_done():
                self._finish(time.monotonic())
        elif self._body_left >= 0 and len(self._buf) >= self._body_left:
            self._finish(time.monotonic())

    def _parse_head(self) -> bool:
        end = self._buf.find(b"\r\n\r\n")
        if end < 0:
            return False
        head = bytes(self._buf[:end]).lower()
        del self._buf[: end + 4]
        try:
            self._status = int(head[9:12])
        except ValueError:
            self._status = 599  # not HTTP: counted as a server error, never dropped
        self.retry_after = self._status == 429 and b"\r\nretry-after:" in head
        if head.startswith(b"http/1.0"):
            self._keep_alive = b"connection: keep-alive" in head
        self._keep_alive = self._keep_alive and b"connection: close" not in head
        self._chunked = b"transfer-encoding: chunked" in head
        if self._status in NO_BODY_STATUSES or self._status < 200:
            self._body_left = 0
        elif not self._chunked:
            self._body_left = _content_length(head)
            if self._body_left < 0:
                self._keep_alive = False
        return True

    def _chunked_done(self) -> bool:
        """Consumes whole chunks from the buffer; True once the terminating zero-size chunk has arrived."""
        while True:
            line_end = self._buf.find(b"\r\n")
            if line_end < 0:
                return False
            size = int(bytes(self._buf[:line_end]).split(b";")[0], 16)
            if size == 0:
                return self._buf.find(b"\r\n\r\n", line_end) >= 0  # trailers end with an empty line
            if len(self._buf) < line_end + 2 + size + 2:
                return False
            del self._buf[: line_end + 2 + size + 2]

    def _finish(self, done: float) -> None:
        status, keep_alive = self._status, self._keep_alive
        self._reset()
        self.sink.on_response(self, status, done, keep_alive)


def _content_length(head: bytes) -> int:
    start = head.find(b"content-length:")
    if start < 0:
        return -1
    end = head.find(b"\r\n", start)
    return int(head[start + 15 : end if end >= 0 else len(head)])
