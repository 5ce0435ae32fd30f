"""The sending side of a load run: one process, one precise event loop, many keep-alive connections.

Open loop: request i is handed to a connection at its intended time whatever the server is doing; if no
connection is free a new one is opened (up to a cap), so a stalled server accumulates in-flight requests
instead of slowing the schedule. Closed loop: N connections, each sends its next request the moment the
previous answer arrives (what wrk and most benchmarks do; it cannot see stalls, and says so).

Per request it records four timestamps (time.monotonic, shared by all processes on the machine):
intended, dispatched (when this loop got to it: dispatched - intended is the generator's own lag),
sent (bytes written, after any wait for a connection) and done; and a status: the HTTP code, or one of
the negative codes below. A request never resolved stays at status 0 (not sent: the run was stopped).
A 429 that carried Retry-After is noted too (the tag goes on a list: nothing is spent on other answers).
"""

from __future__ import annotations

import asyncio
import gc
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from inferopt.bench.http1 import Http1Connection, Target

TIMEOUT = -1
CONNECTION_ERROR = -2
ABANDONED = -3  # in flight when the run was interrupted: neither success nor the server's fault
NOT_SENT = 0
ERROR_NAMES = {TIMEOUT: "timeout", CONNECTION_ERROR: "connection error", ABANDONED: "abandoned"}
LATE_S = 0.001  # a request dispatched later than this after its intended time counts as late
TICK_S = 0.02  # how often timeouts, progress and the stop flag are looked at
PUBLISH_S = 0.2  # how often progress counts go to whoever watches
PROGRESS_FIELDS = ("dispatched", "ok", "errors", "late", "connections")
Publish = Callable[[tuple[int, ...]], None]


@dataclass(frozen=True)
class WorkerPlan:
    target: Target
    requests: list[bytes]  # encoded HTTP requests, one per distinct input
    inputs: np.ndarray  # which request each send carries (closed loop: cycled)
    intended: np.ndarray | None  # absolute send times for open loop; None means closed loop
    connections: int  # closed loop: exactly this many; open loop: at most this many
    start: float  # absolute time.monotonic() of the run's start
    stop: float  # closed loop sends nothing new after this
    timeout_s: float
    preopen: int = 8


@dataclass
class WorkerRecord:
    intended: np.ndarray
    dispatched: np.ndarray
    sent: np.ndarray
    done: np.ndarray
    status: np.ndarray
    connections_opened: int
    connect_failures: int
    retry_after: np.ndarray | None = None  # bool per request: a 429 with Retry-After (None: no such answer)

    def retry_after_mask(self) -> np.ndarray:
        return np.zeros(self.status.shape, dtype=bool) if self.retry_after is None else self.retry_after


class Sender:
    """What both modes share: connections, timestamps, outcomes, timeouts, progress and stopping."""

    def __init__(self, loop: asyncio.AbstractEventLoop, plan: WorkerPlan, publish: Publish) -> None:
        self.loop, self.plan, self.publish = loop, plan, publish
        self.requests = plan.requests
        self.inputs = plan.inputs.tolist()
        self.intended: list[float] = []
        self.dispatched: list[float] = []
        self.sent: list[float] = []
        self.done: list[float] = []
        self.status: list[int] = []
        self.retry_after_tags: list[int] = []  # requests answered 429 with a Retry-After header
        self.inflight: deque[tuple[float, int, Http1Connection]] = deque()  # send order = deadline order
        self.idle: list[Http1Connection] = []
        self.conns: set[Http1Connection] = set()
        self.open_count = 0  # open or opening
        self.outstanding = 0  # dispatched, outcome not yet known
        self.n_dispatched = 0
        self.counts = {"ok": 0, "errors": 0, "late": 0, "opened": 0, "connect_failures": 0}
        self.stopped = False
        self.stop_requested = False
        self._last_publish = 0.0
        self.finished: asyncio.Future[None] = loop.create_future()
        self._tasks: set[asyncio.Task[None]] = set()

    async def run(self) -> WorkerRecord:
        self.begin()
        self.loop.call_later(TICK_S, self._tick)
        await self.finished
        for conn in list(self.conns):
            conn.close()
        await asyncio.sleep(0)  # lets the transports run connection_lost and release their sockets
        return self.record()

    def begin(self) -> None:
        raise NotImplementedError

    def connection_free(self, conn: Http1Connection) -> None:
        raise NotImplementedError

    def connect_failed(self) -> None:
        raise NotImplementedError

    def all_sent(self) -> bool:
        raise NotImplementedError

    def connect(self) -> None:
        self.open_count += 1
        task = self.loop.create_task(self._open())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _open(self) -> None:
        target = self.plan.target
        try:
            _, conn = await self.loop.create_connection(
                lambda: Http1Connection(self), target.host, target.port, ssl=True if target.tls else None
            )
        except OSError:
            self.open_count -= 1
            self.counts["connect_failures"] += 1
            self.connect_failed()
            return
        self.counts["opened"] += 1
        self.conns.add(conn)
        self.connection_free(conn)

    def transmit(self, conn: Http1Connection, tag: int) -> None:
        now = time.monotonic()
        self.sent[tag] = now
        self.inflight.append((now + self.plan.timeout_s, tag, conn))
        # Closed loop cycles through the input sequence: its length is not known in advance.
        conn.send(self.requests[self.inputs[tag % len(self.inputs)]], tag)

    def on_response(self, conn: Http1Connection, status: int, done: float, keep_alive: bool) -> None:
        tag, conn.tag = conn.tag, -1
        if tag >= 0:
            if status == 429 and conn.retry_after:
                self.retry_after_tags.append(tag)
            self.resolve(tag, status, done)
        if keep_alive and not self.stopped:
            self.connection_free(conn)
        else:
            conn.close()

    def on_lost(self, conn: Http1Connection) -> None:
        if conn.tag >= 0:
            self.resolve(conn.tag, CONNECTION_ERROR, time.monotonic())
            conn.tag = -1
        if conn in self.conns:
            self.conns.discard(conn)
            self.open_count -= 1
        if conn in self.idle:
            self.idle.remove(conn)

    def resolve(self, tag: int, status: int, done: float) -> None:
        self.status[tag] = status
        self.done[tag] = done
        self.outstanding -= 1
        self.counts["ok" if 200 <= status < 300 else "errors"] += 1
        if self.outstanding == 0 and self.all_sent():
            self._finish()

    def _tick(self) -> None:
        now = time.monotonic()
        while self.inflight:
            deadline, tag, conn = self.inflight[0]
            if self.status[tag] != NOT_SENT:
                self.inflight.popleft()
            elif deadline <= now:
                self.inflight.popleft()
                conn.tag = -1
                conn.close()  # the late answer, if it ever comes, must not be read as the next request's
                self.resolve(tag, TIMEOUT, now)
            else:
                break
        if self.stop_requested and not self.stopped:
            self._abandon(now)
        if now - self._last_publish >= PUBLISH_S:
            self._publish()
            self._last_publish = now
        if not self.finished.done():
            self.loop.call_later(TICK_S, self._tick)

    def _abandon(self, now: float) -> None:
        self.stopped = True
        for _, tag, _conn in self.inflight:
            if self.status[tag] == NOT_SENT:
                self.resolve(tag, ABANDONED, now)
        self.inflight.clear()
        self._finish()

    def request_stop(self) -> None:
        """Stop sending; what is in flight is abandoned at the next tick and the record returned."""
        self.stop_requested = True

    def _publish(self) -> None:
        counts = self.counts
        self.publish((self.n_dispatched, counts["ok"], counts["errors"], counts["late"], len(self.conns)))

    def _finish(self) -> None:
        if not self.finished.done():
            self._publish()
            self.finished.set_result(None)

    def record(self) -> WorkerRecord:
        retry_after = None
        if self.retry_after_tags:
            retry_after = np.zeros(len(self.status), dtype=bool)
            retry_after[self.retry_after_tags] = True
        return WorkerRecord(
            intended=np.asarray(self.intended, dtype=np.float64),
            dispatched=np.asarray(self.dispatched, dtype=np.float64),
            sent=np.asarray(self.sent, dtype=np.float64),
            done=np.asarray(self.done, dtype=np.float64),
            status=np.asarray(self.status, dtype=np.int32),
            connections_opened=self.counts["opened"],
            connect_failures=self.counts["connect_failures"],
            retry_after=retry_after,
        )


class OpenLoopSender(Sender):
    """Sends request i at intended[i], come what may; waits for a connection only if the cap is reached."""

    def __init__(self, loop: asyncio.AbstractEventLoop, plan: WorkerPlan, publish: Publish) -> None:
        super().__init__(loop, plan, publish)
        assert plan.intended is not None
        self.intended = plan.intended.tolist()
        n = len(self.intended)
        self.dispatched, self.sent, self.done = [math.nan] * n, [math.nan] * n, [math.nan] * n
        self.status = [NOT_SENT] * n
        self.waiting: deque[int] = deque()

    def begin(self) -> None:
        for _ in range(min(self.plan.preopen, self.plan.connections)):
            self.connect()
        if self.intended:
            self.loop.call_at(self.intended[0], self._dispatch_due)
        else:
            self._finish()

    def all_sent(self) -> bool:
        return self.n_dispatched == len(self.intended) or self.stopped

    def _dispatch_due(self) -> None:
        """Hands every request whose time has come to a connection, then sleeps until the next one's."""
        intended, i, n = self.intended, self.n_dispatched, len(self.intended)
        while i < n and not self.stopped:
            now = time.monotonic()
            if intended[i] > now:
                self.loop.call_at(intended[i], self._dispatch_due)
                break
            self.dispatched[i] = now
            if now - intended[i] > LATE_S:
                self.counts["late"] += 1
            self.outstanding += 1
            i += 1
            self.n_dispatched = i
            if self.idle:
                self.transmit(self.idle.pop(), i - 1)
            else:
                self.waiting.append(i - 1)
                if self.open_count < self.plan.connections:
                    self.connect()

    def connection_free(self, conn: Http1Connection) -> None:
        if self.waiting:
            self.transmit(conn, self.waiting.popleft())
        else:
            self.idle.append(conn)

    def connect_failed(self) -> None:
        if self.waiting:
            self.resolve(self.waiting.popleft(), CONNECTION_ERROR, time.monotonic())

    def on_lost(self, conn: Http1Connection) -> None:
        super().on_lost(conn)
        if self.waiting and self.open_count < self.plan.connections and not self.stopped:
            self.connect()

    def _abandon(self, now: float) -> None:
        while self.waiting:
            self.resolve(self.waiting.popleft(), ABANDONED, now)
        super()._abandon(now)


class ClosedLoopSender(Sender):
    """N connections, each sending its next request as soon as the previous answer is in."""

    RETRY_S = 0.01  # after a failed connect, so a dead server is not hammered in a tight loop

    def begin(self) -> None:
        for _ in range(self.plan.connections):
            self.connect()

    def all_sent(self) -> bool:
        return self.stopped or time.monotonic() >= self.plan.stop

    def connection_free(self, conn: Http1Connection) -> None:
        now = time.monotonic()
        if now < self.plan.start:  # connected before the start: wait for it, so all connections begin together
            self.loop.call_at(self.plan.start, self.connection_free, conn)
            return
        if self.stopped or now >= self.plan.stop:
            conn.close()
            if self.outstanding == 0:
                self._finish()
            return
        tag = len(self.intended)
        self.intended.append(now)
        self.dispatched.append(now)
        self.sent.append(math.nan)
        self.done.append(math.nan)
        self.status.append(NOT_SENT)
        self.outstanding += 1
        self.n_dispatched += 1
        self.transmit(conn, tag)

    def connect_failed(self) -> None:
        if not self.stopped and time.monotonic() < self.plan.stop:
            self.loop.call_later(self.RETRY_S, self.connect)
        elif self.outstanding == 0:
            self._finish()

    def on_lost(self, conn: Http1Connection) -> None:
        super().on_lost(conn)
        if not self.stopped and time.monotonic() < self.plan.stop:
            self.connect()

    def _tick(self) -> None:
        if self.outstanding == 0 and self.all_sent():
            self._finish()
        super()._tick()


def run_sender(
    plan: WorkerPlan, publish: Publish, on_start: Callable[[asyncio.AbstractEventLoop, Sender], None] | None = None
) -> WorkerRecord:
    """Runs one plan to completion on a fresh precise event loop, with the garbage collector paused: a
    full collection over a large heap can stall the loop for milliseconds and make requests late.
    `on_start` gets the loop and sender before the run (to wire up a stop request)."""
    from inferopt.bench.precise_loop import precise_event_loop

    loop = precise_event_loop()
    sender_type = OpenLoopSender if plan.intended is not None else ClosedLoopSender
    gc.collect()
    gc.disable()
    try:
        sender = sender_type(loop, plan, publish)
        if on_start is not None:
            on_start(loop, sender)
        return loop.run_until_complete(sender.run())
    finally:
        gc.enable()
        loop.close()
