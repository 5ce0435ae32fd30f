"""In-process server fixtures: the app over httpx's ASGI transport, lifespan included, FakeBackend inside."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from inferopt.serve.app import create_app
from inferopt.serve.config import ServeConfig
from inferopt.serve.model import ServingModel
from inferopt.serve.state import ModelSource, ServerState
from inferopt.serve.testing import bundled_text_task
from inferopt.serve.tracing import Tracing
from inferopt.tasks.text_embedding import TextEmbeddingTask


@pytest.fixture(scope="session")
def task(minilm_dir: Path) -> TextEmbeddingTask:
    """The bundled MiniLM's text task (its real tokenizer, cut at 256 tokens), shared by the fake models."""
    made = bundled_text_task(256)
    assert isinstance(made, TextEmbeddingTask)
    return made


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@dataclass
class Served:
    app: FastAPI
    client: httpx.AsyncClient

    @property
    def state(self) -> ServerState:
        state: ServerState = self.app.state.inferopt
        return state

    async def metric(self, line_prefix: str) -> float:
        """The value of the first /metrics sample line that starts with `line_prefix` (0 if absent)."""
        text = (await self.client.get("/metrics")).text
        for line in text.splitlines():
            if line.startswith(line_prefix):
                return float(line.rsplit(" ", 1)[1])
        return 0.0


ServeFactory = Callable[..., AbstractAsyncContextManager[Served]]


@pytest.fixture
def serve() -> ServeFactory:
    @asynccontextmanager
    async def served(
        source: ModelSource | ServingModel,
        *,
        wait_ready: bool = True,
        tracing: Tracing | None = None,
        **config: object,
    ) -> AsyncIterator[Served]:
        app = create_app(ServeConfig(**({"access_log": False} | config)), source, tracing=tracing)  # type: ignore[arg-type]
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://inferopt.test") as client:
                result = Served(app, client)
                while wait_ready and result.state.phase == "loading":
                    await asyncio.sleep(0.005)
                yield result

    return served
