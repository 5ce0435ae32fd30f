"""Write a directory all at once or not at all.

Work goes into a hidden staging folder beside the target and is renamed into place at the end, so an
interrupted run (error, Ctrl-C) leaves nothing half-written. An existing target is replaced only with
`force`, and only if inferopt wrote it (it carries our marker file): we never delete what we did not write.
"""

from __future__ import annotations

import os
import shutil
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from inferopt.errors import InputError

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

    def stop_once(signum: int, frame: object) -> None:
        ignore_further_ctrl_c()
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, stop_once)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)


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
