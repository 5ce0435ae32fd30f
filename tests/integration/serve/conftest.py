"""Fixtures for the real-socket server tests (uvicorn with httptools and uvloop, in a thread or a process)."""

from __future__ import annotations

from pathlib import Path

import pytest

from inferopt.tasks.text_embedding import TextTokenizer


@pytest.fixture(scope="session")
def tokenizer(minilm_tokenizer_file: Path) -> TextTokenizer:
    return TextTokenizer(minilm_tokenizer_file, 256)
