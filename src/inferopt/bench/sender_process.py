"""A sender as its own process: `python -m inferopt.bench.sender_process READ_FD WRITE_FD`.

Sending runs in a separate process so that nothing in the parent (rich redrawing progress, the GIL held by
another thread) can delay a send by a millisecond. It is started with subprocess rather than
multiprocessing so that a user's script that calls `run_load` at import time is never re-imported.

Protocol on the two pipes (pickled messages, `multiprocessing.connection` framing):
child -> parent: ("ready", the scheduling it got); then ("progress", counts) a few times a second; then
("record", WorkerRecord) or ("error", traceback). parent -> child: the WorkerPlan; later, optionally, "stop".
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import traceback
from multiprocessing.connection import Connection

from inferopt.bench.sender import Sender, WorkerPlan, run_sender

RT_PRIORITY = 1
SENDER_NICE = -10


def main(read_fd: int, write_fd: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C belongs to the parent, which asks us to stop
    inbox, outbox = Connection(read_fd, writable=False), Connection(write_fd, readable=False)
    outbox.send(("ready", _raise_priority()))
    plan: WorkerPlan = inbox.recv()
    _raise_open_files_limit(plan.connections + 64)

    def listen_for_stop(loop: asyncio.AbstractEventLoop, sender: Sender) -> None:
        def on_message() -> None:
            try:
                inbox.recv()
            except EOFError:  # the parent is gone: stop rather than run on unobserved
                loop.remove_reader(read_fd)
            sender.request_stop()

        loop.add_reader(read_fd, on_message)

    try:
        record = run_sender(plan, lambda counts: outbox.send(("progress", counts)), listen_for_stop)
    except Exception:
        outbox.send(("error", traceback.format_exc()))
        return
    outbox.send(("record", record))


def _raise_priority() -> str:
    """Other work on the machine (above all, the server under test on the same cores) must not make the
    generator late. On a 2-core box a model server's threads delay a nice -10 sender past 1 ms for ~3% of
    requests; the real-time class (SCHED_FIFO, lowest RT priority) removes that. The sender sleeps between
    sends and never spins, so it takes the CPU only for the microseconds a send or an answer needs; the
    kernel's RT throttling still leaves others 5% even if it ever ran flat out. Both need privileges;
    without them the sender runs as it is and the INVALID check reports any lateness."""
    with contextlib.suppress(OSError, AttributeError):
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(RT_PRIORITY))
        return f"SCHED_FIFO {RT_PRIORITY}"
    with contextlib.suppress(OSError, AttributeError):
        os.setpriority(os.PRIO_PROCESS, 0, SENDER_NICE)
        return f"nice {SENDER_NICE}"
    return f"nice {os.getpriority(os.PRIO_PROCESS, 0)}"


def _raise_open_files_limit(wanted: int) -> None:
    """An open-loop run against a stalled server can hold a thousand connections at once."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not Unix
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))
