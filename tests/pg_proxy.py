"""A PostgreSQL that a test can stop and start: a TCP proxy of the test's own in front of the real server at
127.0.0.1:5432. Stopping it drops every open connection, as a crashed server would; it starts again on the same
port. `ThreadedProxy` runs one on its own event loop, for tests whose server runs in another thread."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import Any

PG_PORT = 5432


class TcpProxy:
    """127.0.0.1:port -> PostgreSQL: the server the reader talks to, which the test can stop (dropping every
    open connection, as a crashed server would) and start again on the same port."""

    def __init__(self, port: int = 0) -> None:
        self.port = port
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        await self._server.wait_closed()
        if self._tasks:
            await asyncio.wait(set(self._tasks))

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        ends = [writer]
        self._writers.add(writer)
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", PG_PORT)
            ends.append(upstream_writer)
            self._writers.add(upstream_writer)
            await asyncio.gather(_pipe(reader, upstream_writer), _pipe(upstream_reader, writer))
        except OSError:
            pass
        finally:
            for end in ends:
                self._writers.discard(end)
                end.transport.abort()
            self._tasks.discard(task)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    writer.transport.abort()  # one side gone: the other goes too, as with a real server


class ThreadedProxy:
    """A TcpProxy on an event loop of its own thread: start() and stop() block until done."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.proxy = TcpProxy()

    @property
    def port(self) -> int:
        return self.proxy.port

    def _call(self, coroutine: Any) -> None:
        asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(10)

    def start(self) -> ThreadedProxy:
        self._call(self.proxy.start())
        return self

    def stop(self) -> None:
        self._call(self.proxy.stop())

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.stop()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
