"""Write a directory all at once or not at all.

Work goes into a hidden staging folder beside the target and is renamed into place at the end, so an
interrupted run (error, Ctrl-C) leaves nothing half-written. An existing target is replaced only with
`force`, and only if inferopt wrote it (it carries our marker file): we never delete what we did not write.
"""

from __future__ import annotations

import _thread
import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from inferopt.errors import InputError

if TYPE_CHECKING:
    from sys import UnraisableHookArgs

MARKER = ".inferopt"


def check_target(target: Path, *, force: bool) -> None:
    """Fail early, before hours of work, if the target cannot be written."""
    if target.exists() and not target.is_dir():
        raise InputError(f"{target} exists and is a file", "choose another --out")
    if not target.exists() or not any(target.iterdir()):
        return
    if not force:
        raise InputError(f"Output directory {target} already exists", "pass --force to replace it, or another --out")
    if not (target / MARKER).exists():
        raise InputError(
            f"{target} exists and was not written by inferopt, so --force will not delete it",
            "choose another --out, or remove it yourself",
        )


@contextmanager
def staged_directory(target: Path, *, force: bool = False) -> Iterator[Path]:
    """Yield an empty staging folder; on clean exit it becomes `target`, on any exception it vanishes."""
    target = target.resolve()
    check_target(target, force=force)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.parent / f".{target.name}.partial-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    (staging / MARKER).write_text("written by inferopt; --force may replace this directory\n")
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _publish(staging, target)


def ignore_further_ctrl_c() -> None:
    """For the CLI once it is stopping: the interpreter's teardown (about a second with torch loaded) then
    ends in exit code 130 however often Ctrl-C is pressed, instead of a death by SIGINT."""
    if _in_main_thread():  # the only thread that may change signal handlers
        signal.signal(signal.SIGINT, signal.SIG_IGN)


@contextmanager
def cleanup_survives_ctrl_c() -> Iterator[None]:
    """Wrap work and its cleanups (staging folder, temp folder): the first Ctrl-C stops the work, and any
    further Ctrl-C is ignored until the cleanups have run, so a second one cannot cut them short. The
    previous handler is back afterwards. Only the default handler is replaced: where Ctrl-C is ignored
    (a background job) or handled by someone else, that is respected."""
    if not _in_main_thread() or signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield
        return
    stop = _StopOnce()
    previous_hook = sys.unraisablehook
    signal.signal(signal.SIGINT, stop.on_sigint)
    sys.unraisablehook = lambda unraisable: stop.swallowed(unraisable) or previous_hook(unraisable)
    try:
        yield
    finally:
        stop.close()
        sys.unraisablehook = previous_hook
        signal.signal(signal.SIGINT, signal.default_int_handler)


class _StopOnce:
    """The first Ctrl-C raises KeyboardInterrupt and later ones are ignored, unless Python swallowed it.

    Python cannot raise out of a weakref callback or a __del__ (importlib runs one for every module lock): it
    hands the exception to sys.unraisablehook and goes on. That would lose the one Ctrl-C we act on, with the
    later ones ignored, and the work would run to its end. So a swallowed one is delivered again, from a helper
    thread that interrupts the main thread until the interrupt is raised somewhere it can propagate."""

    def __init__(self) -> None:
        self.raised: KeyboardInterrupt | None = None
        self.on_sigint = self._on_sigint  # one bound method, so that getsignal() can be compared with it
        # Re-entrant: the handler runs in the main thread between any two bytecodes, also inside `with _lock`.
        self._lock = threading.RLock()
        self._pending = False  # swallowed and not raised again yet
        self._active = True  # False once the protected block is over: nothing may be delivered after it
        self._redelivery: threading.Thread | None = None

    def _on_sigint(self, signum: int, frame: object) -> None:
        with self._lock:
            self._pending = False
        ignore_further_ctrl_c()
        self.raised = KeyboardInterrupt()
        raise self.raised

    def swallowed(self, unraisable: UnraisableHookArgs) -> bool:
        """The unraisable hook: True when it was our KeyboardInterrupt, armed again to be raised elsewhere."""
        if self.raised is None or unraisable.exc_value is not self.raised or not _in_main_thread():
            return False
        with self._lock:
            self._pending = True
            if self._redelivery is None:  # cleared, under the lock, by a thread that has decided to stop
                self._redelivery = threading.Thread(target=self._redeliver, name="inferopt-ctrl-c", daemon=True)
                self._redelivery.start()
            signal.signal(signal.SIGINT, self.on_sigint)
        return True

    def close(self) -> None:
        with self._lock:
            self._active = False
            self._pending = False

    def _redeliver(self) -> None:
        while True:
            time.sleep(0.05)  # after the hook has returned, so that the interrupt lands in ordinary code
            with self._lock:
                if not (self._pending and self._active):
                    self._redelivery = None
                    return
                _thread.interrupt_main(signal.SIGINT)


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _publish(staging: Path, target: Path) -> None:
    if not target.exists():
        staging.rename(target)
        return
    retired = target.parent / f".{target.name}.old-{os.getpid()}"
    target.rename(retired)
    try:
        staging.rename(target)
    except OSError:
        retired.rename(target)  # put the old one back: never leave the user with neither
        raise
    shutil.rmtree(retired, ignore_errors=True)
