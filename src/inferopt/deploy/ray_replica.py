"""One Ray Serve replica of `inferopt deploy ray`: inferopt's own app (serve/app.py's create_app) as the replica's
ASGI ingress, held back from traffic until its model is ready, and (with --metrics-port) its Prometheus metrics on a
port of its own, so that each replica can be scraped apart from the others.

Ray imports this module in every replica (the deployment's class is pickled by reference); it imports no web
framework itself: it calls inferopt.serve's functions.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Awaitable, Callable, MutableMapping
from functools import partial
from typing import Any

from inferopt.serve.config import ServeConfig

log = logging.getLogger("inferopt.deploy")
READY_POLL_S = 0.05
MAX_HEADER_BYTES = 16 * 1024  # a scrape's request line and headers

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class ReplicaApp:
    """create_app's app as a Ray Serve replica runs it.

    Ray runs the app's ASGI lifespan when the replica starts and routes to the replica once that startup is
    complete. inferopt's lifespan only starts loading the model in the background (so that `inferopt serve`
    answers /health/live meanwhile), so this holds the startup's completion until the model is loaded and warm:
    a replica takes no traffic before it is ready, and one whose model fails to load fails its startup (Ray
    retries it, then marks the deployment failed) instead of answering 503s.
    """

    def __init__(self, app: Any, metrics_at: Callable[[], tuple[str, int]] | None = None) -> None:
        self.app = app
        self.state = app.state.inferopt  # serve/state.py's ServerState: loading -> ready | failed -> draining
        self.metrics_at = metrics_at  # where this replica's own metrics listener goes, once it is ready
        self.metrics_server: asyncio.Server | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, self._lifespan_send(send))
            return
        await self.app(scope, receive, send)

    def _lifespan_send(self, send: Send) -> Send:
        async def held(message: Message) -> None:
            kind = message["type"]
            if kind == "lifespan.startup.complete":
                while self.state.phase == "loading":
                    await asyncio.sleep(READY_POLL_S)
                if self.state.phase == "failed":
                    message = {"type": "lifespan.startup.failed", "message": str(self.state.detail)}
                elif self.metrics_at is not None:
                    await self._listen_for_scrapes(*self.metrics_at())
            elif kind.startswith("lifespan.shutdown.") and self.metrics_server is not None:
                self.metrics_server.close()
            await send(message)

        return held

    async def _listen_for_scrapes(self, host: str, port: int) -> None:
        """This replica's metrics on host:port, answered on the replica's event loop (where the request histograms
        are written). A port already taken is a warning: the replica still serves."""
        try:
            self.metrics_server = await asyncio.start_server(self._scrape, host, port)
        except OSError as exc:
            log.warning(
                "metrics listener on %s:%d not started (%s); /metrics through Ray still answers", host, port, exc
            )
            return
        log.info("this replica's metrics: http://%s:%d/metrics", host, port)

    async def _scrape(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Any GET: the Prometheus text /metrics gives (drift figures refreshed first, as that route does)."""
        from inferopt.serve.metrics import CONTENT_TYPE

        try:
            head = await reader.readuntil(b"\r\n\r\n")
            if len(head) > MAX_HEADER_BYTES or not head.startswith(b"GET "):
                writer.write(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            else:
                ready = self.state.ready
                if ready is not None and ready.drift is not None:
                    await ready.drift.current()
                body = self.state.metrics.render()
                header = f"HTTP/1.1 200 OK\r\nContent-Type: {CONTENT_TYPE}\r\nContent-Length: {len(body)}\r\n"
                writer.write(header.encode() + b"Connection: close\r\n\r\n" + body)
            await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass
        finally:
            writer.close()

    def check_health(self) -> None:
        """Ray's periodic health check: a replica whose model failed is replaced."""
        if self.state.phase == "failed":
            raise RuntimeError(f"inferopt replica failed: {self.state.detail}")


def replica_app(config: ServeConfig, metrics_at: Callable[[], tuple[str, int]] | None = None) -> ReplicaApp:
    """What `inferopt serve` builds (serve/command.py's build_app), minus uvicorn. The access log goes to the
    process's own stderr: Ray's high-throughput mode replaces sys.stderr in replicas with a text logger, where it
    would be off."""
    from inferopt.serve.access_log import AccessLog
    from inferopt.serve.command import build_app

    access_log = AccessLog(getattr(_process_stderr(), "buffer", None)) if config.access_log else None
    return ReplicaApp(build_app(config, access_log=access_log), metrics_at)


class InferoptReplica:
    """The deployment's class. It has no `__call__`: `serve.ingress()` with no app calls
    `__serve_build_asgi_app__` once the constructor ran. `metrics`: (host, base port) of --metrics-port."""

    def __init__(self, config: ServeConfig, log_level: str = "info", metrics: tuple[str, int] | None = None) -> None:
        # The tokenizer must not spawn its own thread pool: the replica's CPUs belong to the runtime sessions.
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        _inferopt_logging(log_level)
        self._app = replica_app(config, partial(_metrics_address, *metrics) if metrics else None)

    def __serve_build_asgi_app__(self) -> ReplicaApp:
        return self._app

    async def check_health(self) -> None:
        self._app.check_health()


def _metrics_address(host: str, base_port: int) -> tuple[str, int]:
    """--metrics-port P: the replica of local rank r on its node listens on P + r (so a node's replicas never
    collide, and a Prometheus scrape config lists P .. P + replicas per node - 1 on each node)."""
    from ray import serve

    rank = serve.get_replica_context().rank
    local = getattr(rank, "local_rank", rank)  # a ReplicaRank (Ray >= 2.50), an int before
    return host, base_port + (local if isinstance(local, int) else 0)


def _inferopt_logging(level: str) -> None:
    """inferopt's own log lines (loading, ready, errors) on the replica's stderr, which Ray keeps in the worker's
    log and streams to the driver; Ray's loggers are left as Ray set them."""
    logger = logging.getLogger("inferopt")
    numeric = logging.getLevelName(level.upper())
    logger.setLevel(numeric if isinstance(numeric, int) else logging.INFO)
    if not logger.handlers:
        from inferopt.serve.command import LOG_FORMAT

        handler = logging.StreamHandler(_process_stderr())
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        logger.addHandler(handler)
        logger.propagate = False


def _process_stderr() -> Any:
    """The stderr the replica started with (Ray keeps it in the worker's log and streams it to the driver), even
    where Ray's throughput mode has put a logger in place of sys.stderr."""
    return sys.__stderr__ if sys.__stderr__ is not None else sys.stderr
