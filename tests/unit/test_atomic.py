import os
import signal
import sys
import time
import weakref
from pathlib import Path

import pytest

from inferopt.atomic import MARKER, cleanup_survives_ctrl_c, staged_directory
from inferopt.errors import InputError


def test_success_publishes_and_failure_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "out"
    with staged_directory(target) as staging:
        (staging / "a.txt").write_text("a")
    assert (target / "a.txt").read_text() == "a" and (target / MARKER).exists()

    other = tmp_path / "other"
    with pytest.raises(KeyboardInterrupt), staged_directory(other) as staging:
        (staging / "half.txt").write_text("half")
        raise KeyboardInterrupt
    assert not other.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no staging folder left behind


def test_existing_target_needs_force_and_must_be_ours(tmp_path: Path) -> None:
    target = tmp_path / "out"
    with staged_directory(target) as staging:
        (staging / "old.txt").write_text("old")
    with pytest.raises(InputError, match="already exists"), staged_directory(target):
        pass
    with staged_directory(target, force=True) as staging:
        (staging / "new.txt").write_text("new")
    assert (target / "new.txt").exists() and not (target / "old.txt").exists()

    foreign = tmp_path / "precious"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("years of work")
    with pytest.raises(InputError, match="not written by inferopt"), staged_directory(foreign, force=True):
        pass
    assert (foreign / "thesis.tex").read_text() == "years of work"


def test_failed_replacement_keeps_the_old_output(tmp_path: Path) -> None:
    target = tmp_path / "out"
    with staged_directory(target) as staging:
        (staging / "old.txt").write_text("old")
    with pytest.raises(RuntimeError), staged_directory(target, force=True) as staging:
        (staging / "new.txt").write_text("new")
        raise RuntimeError("boom")
    assert (target / "old.txt").read_text() == "old"


def _ctrl_c() -> None:
    """SIGINT to ourselves; Python runs the handler at the next bytecode boundary, so give it a few."""
    os.kill(os.getpid(), signal.SIGINT)
    for _ in range(100):
        time.sleep(0.001)


def test_a_second_ctrl_c_cannot_cut_the_cleanup_short(tmp_path: Path) -> None:
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    cleaned = []
    with pytest.raises(KeyboardInterrupt), cleanup_survives_ctrl_c(), staged_directory(tmp_path / "out"):
        try:
            _ctrl_c()  # the first stops the work
        finally:
            _ctrl_c()  # pressed again while cleaning up: ignored
            cleaned.append(True)
    assert cleaned == [True] and list(tmp_path.iterdir()) == []
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # Ctrl-C works again afterwards
    with pytest.raises(KeyboardInterrupt):
        _ctrl_c()


def test_a_handler_someone_else_set_is_left_alone() -> None:
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # e.g. a background job
    try:
        with cleanup_survives_ctrl_c():
            _ctrl_c()
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)


class _Watched:
    pass


def test_a_ctrl_c_that_lands_where_python_cannot_raise_is_delivered_again() -> None:
    # Python swallows an exception raised in a weakref callback ("Exception ignored in ..."); importlib runs
    # one for each module lock, so the CLI's one Ctrl-C once went missing there and the run went on.
    hook = sys.unraisablehook
    with pytest.raises(KeyboardInterrupt), cleanup_survives_ctrl_c():
        watched = _Watched()
        ref = weakref.ref(watched, lambda _: signal.raise_signal(signal.SIGINT))  # the handler runs in it
        del watched
        assert ref() is None  # the callback has run and its KeyboardInterrupt was swallowed
        for _ in range(2000):  # it is raised again within about 50 ms
            time.sleep(0.001)
        pytest.fail("the Ctrl-C was lost in the weakref callback")
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert sys.unraisablehook is hook


def test_other_swallowed_exceptions_still_reach_the_previous_hook(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[BaseException | None] = []
    monkeypatch.setattr(sys, "unraisablehook", lambda unraisable: seen.append(unraisable.exc_value))
    with cleanup_survives_ctrl_c():
        watched = _Watched()
        ref = weakref.ref(watched, lambda _: int("x"))
        del watched
    assert ref() is None and len(seen) == 1 and isinstance(seen[0], ValueError)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
