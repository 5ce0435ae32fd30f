"""JSON request bodies: decoded with a 400 for bytes that are not JSON (or not UTF-8), and a value's kind in
words for the messages of the 422s that name a field."""

from __future__ import annotations

import orjson

from inferopt.serve.errors import MalformedBody


def decode_json(body: bytes) -> object:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        if "UTF-8" in str(exc):
            raise MalformedBody(f"the request body is not valid UTF-8 ({exc})") from None
        raise MalformedBody(f"the request body is not valid JSON ({exc})") from None


def kind(value: object) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number"
    )
