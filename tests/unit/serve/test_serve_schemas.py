"""Request parsing: each bad input gets its status class and a message that names the field."""

from __future__ import annotations

import orjson
import pytest

from inferopt.serve.errors import InvalidField, MalformedBody, PayloadTooLarge, ServeError
from inferopt.serve.wire.openai import EmbeddingRequest, EmbeddingRequestDoc, parse_embedding_request


def parse(body: object, *, max_items: int = 4) -> EmbeddingRequest:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    return parse_embedding_request(raw, max_items=max_items, dim=8)


@pytest.mark.parametrize(
    ("body", "error", "param"),
    [
        (b'{"input": ', MalformedBody, None),
        (b'{"input": "caf\xe9"}', MalformedBody, None),
        (b'{"input": "\\ud800 lone surrogate"}', MalformedBody, None),
        ([1, 2], InvalidField, "body"),
        ({}, InvalidField, "input"),
        ({"input": None}, InvalidField, "input"),
        ({"input": 5}, InvalidField, "input"),
        ({"input": [[1, 2]]}, InvalidField, "input[0]"),
        ({"input": ["ok", 3]}, InvalidField, "input[1]"),
        ({"input": ""}, InvalidField, "input"),
        ({"input": " \n\t"}, InvalidField, "input"),
        ({"input": ["ok", ""]}, InvalidField, "input[1]"),
        ({"input": []}, InvalidField, "input"),
        ({"input": ["a"] * 5}, PayloadTooLarge, "input"),
        ({"input": "a", "model": 7}, InvalidField, "model"),
        ({"input": "a", "encoding_format": "hex"}, InvalidField, "encoding_format"),
        ({"input": "a", "dimensions": 4}, InvalidField, "dimensions"),
        ({"input": "a", "dimensions": True}, InvalidField, "dimensions"),
    ],
)
def test_bad_requests_are_refused_naming_the_field(body: object, error: type[ServeError], param: str | None) -> None:
    with pytest.raises(error) as refused:
        parse(body)
    assert refused.value.param == param
    if param is not None:
        assert param.split("[")[0] in refused.value.message
    assert type(refused.value) is error


def test_non_utf8_is_named_as_such() -> None:
    with pytest.raises(MalformedBody, match="UTF-8"):
        parse(b'{"input": "\xff"}')


def test_good_requests_parse_to_texts_and_format() -> None:
    assert parse({"input": "one"}).texts == ["one"]
    request = parse({"input": ["a", "b"], "model": "m", "encoding_format": "base64", "dimensions": 8, "user": "u"})
    assert request.texts == ["a", "b"] and request.encoding_format == "base64"


@pytest.mark.parametrize("name", ["text-embedding-3-small", "default", "anything at all"])
def test_any_model_name_is_taken_and_kept_for_the_response(name: str) -> None:
    assert parse({"input": "a", "model": name}).model == name


def test_documented_request_fields_are_the_parsed_ones() -> None:
    """/docs shows EmbeddingRequestDoc; the parser must accept exactly those fields."""
    documented = set(EmbeddingRequestDoc.model_json_schema()["properties"])
    assert documented == {"input", "model", "encoding_format", "dimensions", "user"}
    parse({"input": "a", "model": "m", "encoding_format": "float", "dimensions": 8, "user": "x"})
