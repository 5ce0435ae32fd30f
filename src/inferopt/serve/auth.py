"""API keys: `--api-key KEY` (repeatable) and/or `--api-keys-file FILE` (one key per line), required as
`Authorization: Bearer KEY` on every route but health (and /metrics, unless `--metrics-auth`), over HTTP and
gRPC alike.

A key is never kept, compared or logged as itself: the server holds SHA-256 digests, compares the presented
key's digest with every one of them in constant time (hmac.compare_digest, no early exit, so neither which
key matched nor how much of it did shows in the timing), and the access log names a key by its id, the first
8 hex digits of its digest (`printf %s KEY | sha256sum | cut -c1-8` tells which key an id is).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from inferopt.errors import InputError
from inferopt.serve.errors import ServeError

SCHEME = "Bearer"
REALM = "inferopt"
# Open whatever the keys: what a load balancer or Kubernetes probes, and the API's own description.
OPEN_PATHS = frozenset({
    "/health/live",
    "/health/ready",
    "/v2/health/live",
    "/v2/health/ready",
    "/docs",
    "/docs/oauth2-redirect",
    "/openapi.json",
})  # fmt: skip
METRICS_PATH = "/metrics"
OPEN_GRPC_CALLS = frozenset({"ServerLive", "ServerReady"})


class Unauthorized(ServeError):
    """401: no key, a malformed Authorization header, or a key this server does not know."""

    status, reason, error_type = 401, "unauthorized", "authentication_error"

    def __init__(self, message: str, *, error: str | None) -> None:
        super().__init__(message, param="authorization")
        self.error = error  # RFC 6750's error code: None when no credentials came, else invalid_request / _token

    def headers(self) -> dict[str, str]:
        challenge = f'{SCHEME} realm="{REALM}"'
        return {"www-authenticate": challenge + (f', error="{self.error}"' if self.error else "")}

    def asgi(self, *, plain: bool) -> Callable[..., Awaitable[None]]:
        """The refusal as a plain ASGI response (the middleware sends it before any route runs)."""
        body = orjson.dumps(self.plain_body() if plain else self.body())
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
        headers += [(k.encode(), v.encode()) for k, v in self.headers().items()]

        async def respond(_scope: object, _receive: object, send: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
            await send({"type": "http.response.start", "status": self.status, "headers": headers})
            await send({"type": "http.response.body", "body": body})

        return respond


def key_id(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:8]


def check_key(key: str, where: str) -> str:
    """A key as a header can carry it: printable ASCII, no whitespace, not empty. The message never shows it."""
    if not key:
        raise InputError(f"{where}: an API key is empty", "give each key as a non-empty string")
    if not key.isascii() or not key.isprintable() or any(c.isspace() for c in key):
        raise InputError(
            f"{where}: an API key (id {key_id(key)}) has whitespace or characters a header cannot carry",
            "use printable ASCII without spaces (e.g. the output of: openssl rand -hex 32)",
        )
    return key


def read_keys_file(path: Path) -> tuple[str, ...]:
    """One key per line; blank lines and lines starting with # are skipped. An empty file is refused: a server
    meant to be locked must not start open."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"--api-keys-file {path}: cannot be read ({exc})", "give a UTF-8 file of keys") from None
    keys = []
    for number, line in enumerate(text.splitlines(), start=1):
        entry = line.strip()
        if entry and not entry.startswith("#"):
            keys.append(check_key(entry, f"--api-keys-file {path}, line {number}"))
    if not keys:
        raise InputError(f"--api-keys-file {path} holds no key", "put one key per line, or drop the flag")
    return tuple(keys)


@dataclass(frozen=True)
class ApiKeys:
    """The digests of the keys the server takes, by key id."""

    digests: tuple[tuple[str, bytes], ...]
    metrics_auth: bool = False

    @classmethod
    def of(cls, keys: tuple[str, ...], *, metrics_auth: bool = False) -> ApiKeys | None:
        if not keys:
            return None
        return cls(tuple((key_id(k), hashlib.sha256(k.encode()).digest()) for k in dict.fromkeys(keys)), metrics_auth)

    def required_for(self, path: str) -> bool:
        if path == METRICS_PATH:
            return self.metrics_auth
        return path not in OPEN_PATHS

    def identify(self, authorization: str | None) -> str:
        """The id of the key the Authorization value carries, or Unauthorized saying what was wrong."""
        if authorization is None:
            raise Unauthorized("an API key is required: send Authorization: Bearer KEY", error=None)
        scheme, _, rest = authorization.partition(" ")
        token = rest.strip(" ")
        if scheme.lower() != SCHEME.lower() or not token or " " in token:
            raise Unauthorized(
                "the Authorization header is not 'Bearer KEY' (one API key, no other scheme)", error="invalid_request"
            )
        digest = hashlib.sha256(token.encode()).digest()
        found = None
        for kid, known in self.digests:  # every key compared, whatever matched: no early exit
            if hmac.compare_digest(digest, known):
                found = kid
        if found is None:
            raise Unauthorized("the API key is not valid for this server", error="invalid_token")
        return found
