"""A real server around a FakeBackend, for tests (this package's and the load generator's) and for trying the
HTTP API without an artifact: `python -m inferopt.serve.testing --port 8000 --delay-ms 5`.

The fake uses the bundled MiniLM tokenizer, so token counts, truncation and batching are the real ones; only
the numbers in the vectors are made up (deterministic per input, see runtime/fake.py).
"""

from __future__ import annotations

import argparse
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

import numpy as np

from inferopt.runtime.base import Backend, RuntimeSettings
from inferopt.runtime.fake import FakeBackend
from inferopt.serve.config import ServeConfig
from inferopt.serve.model import ServingModel
from inferopt.tasks.base import Task
from inferopt.tasks.registry import DEFAULT_TASK, for_model, task_class

if TYPE_CHECKING:
    import uvicorn

    from inferopt.serve.state import ServerState

FAKE_NAME = "fake-minilm"
FAKE_ARTIFACT_ID = "fa4efa4efa4efa4e"


class QuickWarmFake(FakeBackend):
    """A FakeBackend whose warm-up skips the per-batch delay, so slow fakes start in no time."""

    def warmup(self, example: dict[str, np.ndarray]) -> None:
        delay, self.delay_s = self.delay_s, 0.0
        try:
            self.run(example)
        finally:
            self.delay_s = delay


def bundled_text_task(max_length: int = 256) -> Task:
    """The bundled MiniLM's text task (its real tokenizer), cut at `max_length` tokens: what the fake serves."""
    bundled = for_model(None)
    tokenizer_dir = next(iter(bundled.assets(Path()).values())).parent
    return task_class(DEFAULT_TASK).from_artifact(bundled.config() | {"max_length": max_length}, tokenizer_dir)


def fake_model(
    *,
    dim: int = 384,
    delay_s: float = 0.0,
    fail_on_token: int | None = None,
    sessions: int = 1,
    batch_size: int = 32,
    max_length: int = 256,
    backends: list[Backend] | None = None,
    task: Task | None = None,
    aliases: tuple[str, ...] = (),
) -> ServingModel:
    """A servable text model whose runtime is FakeBackend(s); pass `task` to share one across many models."""
    backends = backends or [QuickWarmFake(dim, delay_s=delay_s, fail_on_token=fail_on_token) for _ in range(sessions)]
    return ServingModel(
        name=FAKE_NAME,
        artifact_id=FAKE_ARTIFACT_ID,
        task=task or bundled_text_task(max_length),
        backends=backends,
        settings=RuntimeSettings(len(backends), 1, batch_size),
        info={"runtime": "fake"},
        aliases=aliases,
    )


def fake_embedding(task: Task, text: str, dim: int = 384) -> np.ndarray:
    """The vector a fake-model server returns for `text`: the oracle for exact-value tests."""
    return FakeBackend(dim).run(task.collate(task.preprocess([text])))["embeddings"][0]


def free_socket(host: str = "127.0.0.1") -> socket.socket:
    """A bound socket on a free port, handed to uvicorn: no window in which another process takes the port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    return sock


def free_port(host: str = "127.0.0.1") -> int:
    """A port free right now (for a server in another process, which must bind it itself)."""
    with free_socket(host) as sock:
        return int(sock.getsockname()[1])


def wait_until(condition: Callable[[], object], timeout_s: float = 20.0, what: str = "condition") -> None:
    """Poll `condition` (exceptions count as not yet) until it is truthy; TimeoutError after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if condition():
                return
        except Exception:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not reached in {timeout_s} s")
        time.sleep(0.02)


class ServerThread:
    """uvicorn (httptools, uvloop) serving `model` on a free loopback port in a thread, until the block ends."""

    def __init__(self, model: ServingModel, config: ServeConfig | None = None, ready_timeout_s: float = 30.0) -> None:
        from inferopt.serve.app import create_app

        self.sock = free_socket()
        self.port = self.sock.getsockname()[1]
        self.config = replace(config or ServeConfig(access_log=False), host="127.0.0.1", port=self.port)
        self.url = f"{'https' if self.config.ssl_certfile else 'http'}://127.0.0.1:{self.port}"
        self.app = create_app(self.config, model)
        self.ready_timeout_s = ready_timeout_s
        self._thread: threading.Thread | None = None
        self._server: uvicorn.Server | None = None

    @property
    def state(self) -> ServerState:
        state: ServerState = self.app.state.inferopt
        return state

    @property
    def grpc_target(self) -> str:
        """HOST:PORT of its gRPC listener (started with grpc_port=0 in the config)."""
        listener = self.app.state.grpc
        if listener is None or listener.port is None:
            raise RuntimeError("this test server has no gRPC port: pass ServeConfig(grpc_port=0)")
        return f"127.0.0.1:{listener.port}"

    def __enter__(self) -> ServerThread:
        import uvicorn

        tls = self.config
        config = uvicorn.Config(
            self.app,
            loop="uvloop",
            http="httptools",
            lifespan="on",
            access_log=False,
            log_config=None,
            ssl_certfile=str(tls.ssl_certfile) if tls.ssl_certfile else None,
            ssl_keyfile=str(tls.ssl_keyfile) if tls.ssl_keyfile else None,
        )
        server = uvicorn.Server(config)
        self._server = server
        self._thread = threading.Thread(target=server.run, kwargs={"sockets": [self.sock]}, daemon=True)
        self._thread.start()
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.ready_timeout_s
        while time.monotonic() < deadline:
            if self.state.phase == "ready" and self._server is not None and self._server.started:
                return
            if self.state.phase == "failed":
                raise RuntimeError(f"test server failed: {self.state.detail}")
            time.sleep(0.01)
        raise TimeoutError(f"test server not ready after {self.ready_timeout_s} s ({self.state.detail})")

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(30)
        self.sock.close()


def main(argv: list[str] | None = None) -> None:
    from inferopt.serve.app import create_app
    from inferopt.serve.command import configure_logging, run_server

    parser = argparse.ArgumentParser(description="inferopt's HTTP server around a fake model (no artifact)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--uds", type=Path, default=None, help="listen on this Unix socket instead")
    parser.add_argument("--delay-ms", type=float, default=0.0, help="time per runtime batch")
    parser.add_argument("--sessions", type=int, default=1)
    parser.add_argument("--max-queue", type=int, default=ServeConfig.max_queue)
    parser.add_argument("--cache", default="memory")
    parser.add_argument("--jobs", default=None, help="redis://HOST:PORT/DB: turn on /v1/jobs")
    args = parser.parse_args(argv)
    configure_logging("info")
    config = ServeConfig(
        port=args.port,
        uds=args.uds,
        max_queue=args.max_queue,
        cache=args.cache,
        jobs=args.jobs,
        drain_timeout_s=10,
    )
    model = fake_model(delay_s=args.delay_ms / 1000, sessions=args.sessions)
    run_server(create_app(config, model), config)


if __name__ == "__main__":
    main()
