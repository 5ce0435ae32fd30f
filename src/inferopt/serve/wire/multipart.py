"""multipart/form-data bodies (a photo app's file upload): the files, in order, and the plain fields.

Parsed with python-multipart over the body already read under --max-request-bytes, so a form costs no temp
files and no second size limit.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from inferopt.serve.errors import InvalidField, MalformedBody


@dataclass
class FormFile:
    name: str  # the form field's name
    filename: str
    data: bytes


@dataclass
class Form:
    files: list[FormFile] = field(default_factory=list)
    fields: dict[str, str] = field(default_factory=dict)


@dataclass
class _Part:
    headers: dict[bytes, bytes] = field(default_factory=dict)
    chunks: list[bytes] = field(default_factory=list)


def is_multipart(content_type: str | None) -> bool:
    return content_type is not None and content_type.lower().startswith("multipart/form-data")


def parse_form(body: bytes, content_type: str) -> Form:
    """MalformedBody (400) for a body that is not the form its content type says."""
    from python_multipart.multipart import MultipartParser, parse_options_header

    _, options = parse_options_header(content_type)
    boundary = options.get(b"boundary")
    if not boundary:
        raise MalformedBody("multipart/form-data without a boundary in its content-type")
    parts: list[_Part] = []
    header: list[bytes] = [b"", b""]

    def on_part_begin() -> None:
        parts.append(_Part())

    def on_header_field(data: bytes, start: int, end: int) -> None:
        header[0] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        header[1] += data[start:end]

    def on_header_end() -> None:
        parts[-1].headers[header[0].strip().lower()] = header[1].strip()
        header[0], header[1] = b"", b""

    def on_part_data(data: bytes, start: int, end: int) -> None:
        parts[-1].chunks.append(data[start:end])

    ended: list[bool] = []

    def on_end() -> None:
        ended.append(True)

    callbacks = {
        "on_part_begin": on_part_begin,
        "on_header_field": on_header_field,
        "on_header_value": on_header_value,
        "on_header_end": on_header_end,
        "on_part_data": on_part_data,
        "on_end": on_end,
    }
    try:
        parser = MultipartParser(boundary, callbacks)  # type: ignore[arg-type]
        parser.write(body)
        parser.finalize()
    except Exception as exc:  # python-multipart's errors have no common base beyond this
        raise MalformedBody(f"the multipart/form-data body is malformed ({exc})") from None
    if not ended:  # the parser takes a body cut short for a whole one: its last part would be a fragment
        raise MalformedBody("the multipart/form-data body ends before its closing boundary (cut short?)")
    return _form(parts)


def _form(parts: list[_Part]) -> Form:
    form = Form()
    for part in parts:
        _, disposition = _disposition(part.headers.get(b"content-disposition", b""))
        name = disposition.get("name", "")
        data = b"".join(part.chunks)
        filename = disposition.get("filename", disposition.get("filename*"))  # filename*: RFC 5987's form
        if filename is not None:
            form.files.append(FormFile(name or "file", filename, data))
            continue
        try:
            form.fields[name] = data.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidField(f"form field {name!r} is not UTF-8 text (a file needs a filename)", param=name) from None
    return form


def _disposition(value: bytes) -> tuple[str, dict[str, str]]:
    from python_multipart.multipart import parse_options_header

    kind, options = parse_options_header(value)
    return kind.decode("latin-1"), {k.decode("latin-1"): v.decode("utf-8", "replace") for k, v in options.items()}
