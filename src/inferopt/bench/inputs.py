"""What the load generator sends: texts from a file (one per line, or STS format) or the built-in corpus.

For cache studies the texts are stretched to exactly `--distinct` different inputs (a text reused with a
numbered suffix is a different cache key but costs the model about the same), and `schedule.input_sequence`
decides which input each request carries.
"""

from __future__ import annotations

from pathlib import Path

from inferopt.errors import InputError
from inferopt.evaldata import builtin_corpus, read_text_file

STS_COLUMNS = 7  # genre, file, year, id, score, sentence1, sentence2


def load_texts(path: Path | None) -> list[str]:
    """Distinct non-empty texts, in file order; the built-in corpus when `path` is None."""
    texts = _builtin_corpus() if path is None else _read_file(path)
    unique = list(dict.fromkeys(t.strip() for t in texts if t.strip()))
    if not unique:
        where = "the built-in corpus" if path is None else str(path)
        raise InputError(f"Inputs file {where} holds no text", "give a file with at least one non-empty line")
    return unique


def distinct_inputs(texts: list[str], distinct: int | None) -> list[str]:
    """Exactly `distinct` different texts (all of `texts` when None)."""
    if distinct is None:
        return texts
    if distinct < 1:
        raise InputError(f"--distinct must be at least 1, got {distinct}", "pass a positive number of inputs")
    if distinct <= len(texts):
        return texts[:distinct]
    return [texts[i % len(texts)] + ("" if i < len(texts) else f" ({i // len(texts)})") for i in range(distinct)]


def _builtin_corpus() -> list[str]:
    try:
        return list(builtin_corpus().texts)
    except FileNotFoundError as exc:
        raise InputError("The built-in corpus is not installed", "pass --inputs FILE (one text per line)") from exc


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
