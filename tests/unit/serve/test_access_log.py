"""The access log writes whole JSON lines straight to its stream, and a broken stream fails no request."""

from __future__ import annotations

import io
import logging

import orjson
import pytest

from inferopt.serve.access_log import AccessLog


class CountingStream(io.BytesIO):
    """Records what had been written at each flush."""

    def __init__(self) -> None:
        super().__init__()
        self.flushed_at: list[int] = []

    def flush(self) -> None:
        self.flushed_at.append(len(self.getvalue()))


def test_each_write_is_one_flushed_json_line() -> None:
    stream = CountingStream()
    access = AccessLog(stream)
    access.write({"request_id": "a-1", "status": 200, "ms": 1.5})
    first = len(stream.getvalue())
    access.write({"request_id": "a-2", "status": 422, "ms": 0.25})
    assert stream.flushed_at == [first, len(stream.getvalue())]  # each line went out as it was written
    lines = stream.getvalue().split(b"\n")
    assert lines[-1] == b"" and [orjson.loads(line) for line in lines[:-1]] == [
        {"request_id": "a-1", "status": 200, "ms": 1.5},
        {"request_id": "a-2", "status": 422, "ms": 0.25},
    ]


class BrokenPipe(io.RawIOBase):
    writes = 0

    def writable(self) -> bool:
        return True

    def write(self, data: object) -> int:
        self.writes += 1
        raise BrokenPipeError(32, "Broken pipe")


def test_no_binary_stderr_means_no_access_log_rather_than_no_server(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr("sys.stderr", io.StringIO())  # text only: no .buffer
    with caplog.at_level(logging.WARNING, logger="inferopt.serve"):
        access = AccessLog()
        access.write({"request_id": "a-1"})  # nothing to write to, and nothing raised
    assert access.stream is None
    assert any("stderr has no binary stream" in r.getMessage() for r in caplog.records)


def test_a_broken_stream_turns_the_log_off_with_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    stream = BrokenPipe()
    access = AccessLog(stream)  # type: ignore[arg-type]
    with caplog.at_level(logging.WARNING, logger="inferopt.serve"):
        for i in range(3):
            access.write({"request_id": f"a-{i}"})  # raises nothing: the request it logs still gets its answer
    assert stream.writes == 1
    assert [r.getMessage() for r in caplog.records if "access log" in r.getMessage()] == [
        "access log disabled: writing to its stream failed ([Errno 32] Broken pipe)"
    ]
