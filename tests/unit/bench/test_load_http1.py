import pytest

from inferopt.bench.http1 import Http1Connection, encode_post, parse_target
from inferopt.errors import InputError


class Sink:
    def __init__(self) -> None:
        self.responses: list[tuple[int, bool]] = []
        self.lost = 0

    def on_response(self, conn: Http1Connection, status: int, done: float, keep_alive: bool) -> None:
        conn.tag = -1
        self.responses.append((status, keep_alive))

    def on_lost(self, conn: Http1Connection) -> None:
        self.lost += 1


def feed(*pieces: bytes) -> Sink:
    sink = Sink()
    conn = Http1Connection(sink)
    conn.tag = 0
    for piece in pieces:
        conn.data_received(piece)
    return sink


def test_content_length_body_split_across_packets() -> None:
    sink = feed(b"HTTP/1.1 200 OK\r\nContent-Le", b"ngth: 10\r\n\r\n01234", b"56789")
    assert sink.responses == [(200, True)]


def test_response_is_not_complete_before_its_body() -> None:
    assert feed(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123").responses == []


def test_chunked_body_ends_at_the_zero_chunk() -> None:
    head = b"HTTP/1.1 503 Busy\r\nTransfer-Encoding: chunked\r\n\r\n"
    assert feed(head, b"5\r\nhello\r\n", b"6\r\n world\r\n").responses == []
    assert feed(head, b"5\r\nhello\r\n6\r\n world\r\n0\r\n", b"\r\n").responses == [(503, True)]


def test_connection_close_and_no_body_statuses() -> None:
    assert feed(b"HTTP/1.1 500 X\r\nConnection: close\r\nContent-Length: 0\r\n\r\n").responses == [(500, False)]
    assert feed(b"HTTP/1.1 204 No Content\r\n\r\n").responses == [(204, True)]
    assert feed(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok").responses == [(200, False)]


def test_body_delimited_by_close_completes_when_the_connection_ends() -> None:
    sink = Sink()
    conn = Http1Connection(sink)
    conn.tag = 3
    conn.data_received(b"HTTP/1.1 200 OK\r\n\r\nsome body")
    assert sink.responses == []
    conn.connection_lost(None)
    assert sink.responses == [(200, False)] and sink.lost == 1


def test_targets_default_to_the_embeddings_route() -> None:
    assert parse_target("http://127.0.0.1:8000").url == "http://127.0.0.1:8000/v1/embeddings"
    assert parse_target("localhost:9000/").path == "/v1/embeddings"
    assert parse_target("https://example.com/custom?x=1").port == 443
    assert parse_target("https://example.com/custom?x=1").path == "/custom?x=1"
    request = encode_post(parse_target("http://h:1/p"), b'{"input":"a"}')
    assert request.startswith(b"POST /p HTTP/1.1\r\nHost: h:1\r\n") and b"Content-Length: 13\r\n" in request


@pytest.mark.parametrize("url", ["ftp://host/x", "http://", "http://host:99999"])
def test_unusable_urls_are_input_errors(url: str) -> None:
    with pytest.raises(InputError):
        parse_target(url)


def test_a_malformed_response_is_a_server_error_not_a_crash() -> None:
    assert feed(b"HTTP/1.1 200 OK\r\nContent-Length: lots\r\n\r\n").responses == [(599, False)]


def test_retry_after_is_noted_on_429s_only() -> None:
    sink = Sink()
    conn = Http1Connection(sink)
    for head, noted in (
        (b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 1\r\nContent-Length: 2\r\n\r\n{}", True),
        (b"HTTP/1.1 429 Too Many Requests\r\nContent-Length: 2\r\n\r\n{}", False),
        (b"HTTP/1.1 503 Unavailable\r\nretry-after: 1\r\nContent-Length: 2\r\n\r\n{}", False),
        (b"HTTP/1.1 429 X\r\nX-Not-Retry-After: 1\r\nContent-Length: 0\r\n\r\n", False),
    ):
        conn.tag = 0
        conn.data_received(head)
        assert conn.retry_after is noted
    assert [status for status, _ in sink.responses] == [429, 429, 503, 429]
