"""What the load generator and the profiler send: texts from a file (one per line, or STS format) or the
built-in corpus, tensor rows from an .npz file, or image files; encoded as the route's protocol wants them (OpenAI
embeddings, KServe v1 :predict, or Open Inference Protocol v2 /infer).

For cache studies the texts are stretched to exactly `--distinct` different inputs (a text reused with a
numbered suffix is a different cache key but costs the model about the same), and `schedule.input_sequence`
decides which input each request carries.
"""

from __future__ import annotations

import http.client
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from inferopt.bench.http1 import Target
from inferopt.datafiles import IMAGE_SUFFIXES, Row, read_rows, read_text_file
from inferopt.errors import InputError

PREDICT_SUFFIX = ":predict"
INFER_SUFFIX = "/infer"
METADATA_TIMEOUT_S = 10.0

STS_COLUMNS = 7  # genre, file, year, id, score, sentence1, sentence2


def load_inputs(path: Path | None) -> list[str] | list[Row] | list[dict[str, Any]]:
    """Rows of an .npz file (arrays with the batch on axis 0); KServe v1 instances, one JSON object per line of a
    .jsonl file (recommendation queries such as {"user_id": 42, "k": 10}), in file order with repeats kept (a
    replay); image files (a folder of them, or one) as {"b64": ...} instances; else texts (see load_texts)."""
    if path is not None and path.suffix.lower() == ".npz":
        return read_rows(path, "--inputs")
    if path is not None and path.suffix.lower() == ".jsonl":
        return load_instances(path)
    if path is not None and (path.is_dir() or path.suffix.lower() in IMAGE_SUFFIXES):
        return load_images(path)
    return load_texts(path)


def load_images(path: Path) -> list[dict[str, str]]:
    """Image files as TF-Serving's {"b64": ...} instances, in name order (the folder's subfolders too)."""
    import base64

    files = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES) if path.is_dir() else [path]
    if not files:
        raise InputError(f"--inputs {path}: no image files ({', '.join(IMAGE_SUFFIXES)})", "")
    return [{"b64": base64.b64encode(f.read_bytes()).decode("ascii")} for f in files]


def load_instances(path: Path) -> list[dict[str, Any]]:
    """JSON objects, one per non-blank line; InputError naming the line of one that is not."""
    content = read_text_file(path, "--inputs", "Inputs file", "a .jsonl file of JSON objects, one per line")
    instances = []
    for number, line in enumerate(content.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise InputError(f"--inputs {path}, line {number}: not JSON ({exc})", "one JSON object per line") from None
        if not isinstance(value, dict):
            raise InputError(f"--inputs {path}, line {number}: not a JSON object", "one JSON object per line")
        instances.append(value)
    if not instances:
        raise InputError(f"--inputs {path} holds no JSON objects", "one JSON object per line")
    return instances


def load_texts(path: Path | None) -> list[str]:
    """Distinct non-empty texts, in file order; the built-in corpus when `path` is None."""
    texts = _builtin_corpus() if path is None else _read_file(path)
    unique = list(dict.fromkeys(t.strip() for t in texts if t.strip()))
    if not unique:
        where = "the built-in corpus" if path is None else str(path)
        raise InputError(f"Inputs file {where} holds no text", "give a file with at least one non-empty line")
    return unique


def distinct_inputs(texts: list[Any], distinct: int | None) -> list[Any]:
    """Exactly `distinct` different inputs (all of them when None). Texts are stretched with numbered
    suffixes; tensor rows cannot be, so there may not be more than the file holds."""
    if distinct is None:
        return texts
    if distinct < 1:
        raise InputError(f"--distinct must be at least 1, got {distinct}", "pass a positive number of inputs")
    if distinct <= len(texts):
        return texts[:distinct]
    if not isinstance(texts[0], str):
        raise InputError(f"The inputs hold {len(texts)} rows, fewer than --distinct {distinct}", "lower --distinct")
    return [texts[i % len(texts)] + ("" if i < len(texts) else f" ({i // len(texts)})") for i in range(distinct)]


def request_body(path: str, inputs: list[Any], *, model: str | None = None, v2_text_input: str = "text") -> bytes:
    """The JSON body that carries `inputs` to the route at `path`: OIP v2 for .../infer, KServe v1 for
    ...:predict, else OpenAI embeddings (texts only). `v2_text_input`: the name of a text model's BYTES input."""
    if path.endswith(INFER_SUFFIX):
        from inferopt.serve.wire.oip_v2 import encode_infer_request

        if isinstance(inputs[0], str):
            return encode_infer_request({v2_text_input: list(inputs)})
        if is_image_instance(inputs[0]):  # image files: one BYTES input of base64 strings
            return encode_infer_request({v2_text_input: [i["b64"] for i in inputs]})
        return encode_infer_request({name: np.stack([row[name] for row in inputs]) for name in inputs[0]})
    if path.endswith(PREDICT_SUFFIX):
        return orjson.dumps({"instances": inputs}, option=orjson.OPT_SERIALIZE_NUMPY)
    if not isinstance(inputs[0], str):
        raise InputError(
            "Tensor inputs (.npz) go to an OIP v2 or KServe v1 route, not the embeddings route",
            "use a URL ending in /v2/models/NAME/infer or /v1/models/NAME:predict",
        )
    body: dict[str, Any] = {"input": inputs[0] if len(inputs) == 1 else list(inputs)}
    return orjson.dumps(body | ({"model": model} if model else {}))


def is_image_instance(value: Any) -> bool:
    return isinstance(value, dict) and set(value) == {"b64"}


def bytes_input(inputs: list[Any]) -> bool:
    """Whether the inputs travel as one OIP v2 BYTES tensor: texts, or image files as base64."""
    return isinstance(inputs[0], str) or is_image_instance(inputs[0])


def v2_text_input(target: Target) -> str:
    """The BYTES input a text (or image) model takes over OIP v2, as the server's model metadata names it."""
    cls = http.client.HTTPSConnection if target.tls else http.client.HTTPConnection
    conn = cls(target.host, target.port, timeout=METADATA_TIMEOUT_S)
    try:
        conn.request("GET", target.path[: -len(INFER_SUFFIX)])
        response = conn.getresponse()
        metadata = orjson.loads(response.read()) if response.status == 200 else {}
    except (OSError, http.client.HTTPException, orjson.JSONDecodeError):
        metadata = {}
    finally:
        conn.close()
    names = [i.get("name") for i in metadata.get("inputs", []) if i.get("datatype") == "BYTES"]
    return str(names[0]) if names else "text"


def _builtin_corpus() -> list[str]:
    from inferopt.tasks.registry import DEFAULT_TASK, task_class

    texts = task_class(DEFAULT_TASK).sample_inputs()
    if not texts:
        raise InputError("The built-in corpus is not installed", "pass --inputs FILE (one text per line)")
    return [str(t) for t in texts]


def _read_file(path: Path) -> list[str]:
    content = read_text_file(path, "--inputs", "Inputs file", "a file with one text per line, or STS format")
    lines = content.splitlines()
    return _sts_sentences(lines) if _looks_like_sts(lines) else lines


def _looks_like_sts(lines: list[str]) -> bool:
    """STS benchmark rows: tab-separated, a numeric score in column 5, the two sentences in columns 6 and 7."""
    sample = [line for line in lines[:20] if line.strip()]
    return bool(sample) and all(_sts_row(line) is not None for line in sample)


def _sts_row(line: str) -> tuple[str, str] | None:
    fields = line.split("\t")
    if len(fields) < STS_COLUMNS:
        return None
    try:
        float(fields[4])
    except ValueError:
        return None
    return fields[5], fields[6]


def _sts_sentences(lines: list[str]) -> list[str]:
    texts: list[str] = []
    for line in lines:
        row = _sts_row(line)
        if row is not None:
            texts.extend(row)
    return texts
