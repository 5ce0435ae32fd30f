"""Evaluation data: the texts a variant is checked on, and scored pairs when the file has them.

Formats: .txt (one text per line), .csv/.tsv (STS format detected: score in column 5, sentences in 6 and 7;
otherwise the first column holds the text), .jsonl (objects with "text", or "sentence1"/"sentence2"/"score").
Default: the built-in corpus of varied sentences shipped with the package.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from inferopt.datafiles import read_text_file
from inferopt.errors import InputError

SUPPORTED_SUFFIXES = (".txt", ".csv", ".tsv", ".jsonl")


@dataclass(frozen=True)
class ScoredPair:
    first: int  # index into EvalData.texts
    second: int
    score: float


@dataclass(frozen=True)
class EvalData:
    name: str
    texts: tuple[str, ...]
    pairs: tuple[ScoredPair, ...] = ()

    @property
    def labelled(self) -> bool:
        return bool(self.pairs)

    def limited(self, max_texts: int) -> EvalData:
        """The first `max_texts` texts, keeping only pairs that lie wholly inside them."""
        if len(self.texts) <= max_texts:
            return self
        pairs = tuple(p for p in self.pairs if p.first < max_texts and p.second < max_texts)
        return EvalData(self.name, self.texts[:max_texts], pairs)


def builtin_corpus() -> EvalData:
    text = resources.files("inferopt.tasks.text_embedding").joinpath("data/corpus.txt").read_text(encoding="utf-8")
    return EvalData("built-in corpus", tuple(line for line in text.splitlines() if line.strip()))


def load_eval_data(path: Path | None) -> EvalData:
    if path is None:
        return builtin_corpus()
    suffix = path.suffix.lower()
    if path.is_file() and suffix not in SUPPORTED_SUFFIXES:
        raise InputError(
            f"Data file {path} has unsupported type {suffix or '(none)'}", f"use one of {', '.join(SUPPORTED_SUFFIXES)}"
        )
    content = read_text_file(path, "--data", "Data file", "a .txt, .csv, .tsv or .jsonl file")
    if suffix == ".txt":
        data = EvalData(path.name, tuple(line for line in content.splitlines() if line.strip()))
    elif suffix == ".jsonl":
        data = _parse_jsonl(path, content)
    else:
        data = _parse_delimited(path, content, "," if suffix == ".csv" and "\t" not in content else "\t")
    if not data.texts:
        raise InputError(f"Data file {path} holds no text", "give at least one non-empty text")
    return data


class _Collector:
    """Gathers texts, deduplicating so a sentence used by several pairs is embedded once."""

    def __init__(self) -> None:
        self.texts: list[str] = []
        self.index: dict[str, int] = {}
        self.pairs: list[ScoredPair] = []

    def add(self, text: str) -> int:
        if text not in self.index:
            self.index[text] = len(self.texts)
            self.texts.append(text)
        return self.index[text]

    def add_pair(self, first: str, second: str, score: float) -> None:
        self.pairs.append(ScoredPair(self.add(first), self.add(second), score))

    def result(self, name: str) -> EvalData:
        return EvalData(name, tuple(self.texts), tuple(self.pairs))


def _parse_delimited(path: Path, content: str, delimiter: str) -> EvalData:
    rows = [row for row in csv.reader(content.splitlines(), delimiter=delimiter, quoting=csv.QUOTE_NONE) if row]
    sts = _looks_like_sts(rows)
    collector = _Collector()
    for line_no, row in enumerate(rows, start=1):
        if sts:
            if len(row) < 7:
                raise InputError(
                    f"{path} line {line_no}: STS row has {len(row)} columns, needs 7", "fix or remove that row"
                )
            try:
                score = float(row[4])
            except ValueError:
                raise InputError(
                    f"{path} line {line_no}: score {row[4]!r} is not a number", "fix or remove that row"
                ) from None
            collector.add_pair(row[5], row[6], score)
        elif row[0].strip():
            collector.add(row[0])
    return collector.result(path.name)


def _looks_like_sts(rows: list[list[str]]) -> bool:
    """STS rows: >= 7 columns with a numeric score in column 5. Decided on the majority of the first rows."""
    head = rows[:50]

    def is_sts(row: list[str]) -> bool:
        try:
            float(row[4])
        except (IndexError, ValueError):
            return False
        return len(row) >= 7

    return sum(is_sts(r) for r in head) > len(head) / 2


def _parse_jsonl(path: Path, content: str) -> EvalData:
    collector = _Collector()
    for line_no, line in enumerate(content.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{path} line {line_no} is not JSON ({exc.msg})", "fix or remove that line") from None
        if isinstance(record, str):
            collector.add(record)
        elif isinstance(record, dict) and isinstance(record.get("text"), str):
            collector.add(record["text"])
        elif isinstance(record, dict) and {"sentence1", "sentence2", "score"} <= record.keys():
            collector.add_pair(str(record["sentence1"]), str(record["sentence2"]), float(record["score"]))
        else:
            raise InputError(
                f'{path} line {line_no} has no "text" (or sentence1/sentence2/score)',
                "give one object per line with a text field",
            )
    return collector.result(path.name)
