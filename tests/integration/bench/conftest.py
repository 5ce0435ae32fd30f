"""Fixtures for the load generator and profiler tests: servers of known behaviour (see load_servers.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from load_servers import Behaviour, TestServer


@pytest.fixture
def serve() -> Iterator[Callable[[Behaviour], TestServer]]:
    """`serve(behaviour)` starts a server that stops at the end of the test."""
    servers: list[TestServer] = []

    def start(behaviour: Behaviour) -> TestServer:
        server = TestServer(behaviour).__enter__()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.__exit__()


@pytest.fixture
def texts_file(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("inputs") / "texts.txt"
    path.write_text("".join(f"sentence number {i} for the load test\n" for i in range(50)), encoding="utf-8")
    return str(path)
