"""Write a directory all at once or not at all.

Work goes into a hidden staging folder beside the target and is renamed into place at the end, so an
interrupted run (error, Ctrl-C) leaves nothing half-written. An existing target is replaced only with
`force`, and only if inferopt wrote it (it carries our marker file): we never delete what we did not write.
"""

from __future__ import annotations

import os
import shutil
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
