"""Unlabeled text a student encoder is distilled on: sentences that ship inside installed packages, none of
them from the eval data.

- The Lee background corpus (300 ABC news articles, about 2,600 sentences; Lee, Pincombe & Welsh, 2005), in
  gensim's test data. gensim is installed by `make setup` without its dependencies, for this file only (its
  package imports scipy, so the file is found with find_spec, never imported).
- Python's own documentation topics (`pydoc_data`, in every CPython install, PSF licence): several thousand
  sentences of technical prose, so there is data even without gensim.

News and documentation are other text than a user's, so a student distilled on them is measured on the user's
eval data like every other variant, never on these.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

LEE_FILE = ("test", "test_data", "lee_background.cor")
MIN_WORDS, MAX_WORDS = 4, 80
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"'(])")
_MARKUP = re.compile(r"[*`|]+|\s+")


def distillation_texts() -> list[str]:
    """Distinct sentences from the Lee corpus (when gensim is installed) and pydoc's topics, in a fixed order."""
    seen: set[str] = set()
    texts = []
    for text in (*_sentences(_lee_text()), *_sentences(_pydoc_text())):
        if text not in seen:
            seen.add(text)
            texts.append(text)
    return texts


def lee_corpus_path() -> Path | None:
    spec = importlib.util.find_spec("gensim")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))).joinpath(*LEE_FILE)
    return path if path.is_file() else None


def _lee_text() -> str:
    path = lee_corpus_path()
    return path.read_text(encoding="utf-8", errors="replace") if path else ""


def _pydoc_text() -> str:
    try:
        from pydoc_data.topics import topics
    except ImportError:  # a Python built without its docs
        return ""
    # Keep prose: drop indented code and grammar lines, which are not sentences.
    lines = (line for body in topics.values() for line in body.splitlines() if line and not line.startswith(" "))
    return "\n".join(lines)


def _sentences(text: str) -> list[str]:
    out = []
    for paragraph in text.split("\n"):
        for sentence in _SENTENCE_END.split(paragraph):
            clean = _MARKUP.sub(" ", sentence).strip()
            if MIN_WORDS <= len(clean.split()) <= MAX_WORDS and any(c.isalpha() for c in clean):
                out.append(clean)
    return out
