"""multipart/form-data uploads: files in order with their field names, plain fields as text, bad bodies refused."""

from __future__ import annotations

import base64

import httpx
import pytest

from inferopt.bench.inputs import load_images
from inferopt.serve.errors import InvalidField, MalformedBody
from inferopt.serve.wire.multipart import is_multipart, parse_form


def form_body(files: list[tuple[str, tuple[str, bytes]]], data: dict[str, str]) -> tuple[bytes, str]:
    request = httpx.Request("POST", "http://x/", files=files, data=data)
    return request.read(), request.headers["content-type"]


def test_files_keep_their_order_names_and_bytes() -> None:
    body, content_type = form_body([("image", ("a.jpg", b"\xff\xd8one")), ("photo", ("b.png", b"\x89PNGtwo"))],
                                   {"top_k": "3"})  # fmt: skip
    assert is_multipart(content_type)
    form = parse_form(body, content_type)
    assert [(f.name, f.filename, f.data) for f in form.files] == [
        ("image", "a.jpg", b"\xff\xd8one"),
        ("photo", "b.png", b"\x89PNGtwo"),
    ]
    assert form.fields == {"top_k": "3"}


def test_a_form_without_a_boundary_or_cut_short_is_refused() -> None:
    body, content_type = form_body([("image", ("a.jpg", b"x" * 100))], {})
    with pytest.raises(MalformedBody, match="boundary"):
        parse_form(body, "multipart/form-data")
    with pytest.raises((MalformedBody, InvalidField)):
        parse_form(b'--nope\r\nContent-Disposition: form-data; name="a"\r\n\r\n\xff\xfe', content_type)


def test_load_and_profile_send_a_folder_of_images_as_b64_instances(tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "cats").mkdir()
    (tmp_path / "cats" / "b.jpg").write_bytes(b"second")
    (tmp_path / "a.png").write_bytes(b"first")
    (tmp_path / "notes.txt").write_text("not an image")
    assert load_images(tmp_path) == [{"b64": base64.b64encode(b"first").decode()},
                                     {"b64": base64.b64encode(b"second").decode()}]  # fmt: skip


def test_a_body_cut_before_its_closing_boundary_is_refused() -> None:
    body, content_type = form_body([("image", ("a.jpg", b"DATA1234"))], {})
    with pytest.raises(MalformedBody, match="closing boundary"):
        parse_form(body[: body.index(b"1234") + 2], content_type)


def test_oip_v2_accepts_its_clients_own_parameters_and_refuses_task_ones() -> None:
    import orjson

    from inferopt.serve.testing import bundled_text_task
    from inferopt.serve.wire.oip_v2 import parse_infer

    tensor = {"name": "text", "datatype": "BYTES", "shape": [1], "data": ["hello"]}
    task = bundled_text_task()
    triton = orjson.dumps({"inputs": [tensor], "parameters": {"binary_data_output": True, "priority": 1}})
    assert parse_infer(triton, task, max_items=8).inputs == ["hello"]
    with pytest.raises(InvalidField, match="top_k"):
        parse_infer(orjson.dumps({"inputs": [tensor], "parameters": {"top_k": 2}}), task, max_items=8)
