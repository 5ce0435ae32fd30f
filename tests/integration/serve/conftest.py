"""Fixtures for the real-socket server tests (uvicorn with httptools and uvloop, in a thread or a process)."""

from __future__ import annotations

import pytest

from inferopt.serve.testing import bundled_text_task
from inferopt.tasks.text_embedding import TextEmbeddingTask


@pytest.fixture(scope="session")
def task(minilm_dir: object) -> TextEmbeddingTask:
    """The bundled MiniLM's text task (its real tokenizer, cut at 256 tokens), shared by the fake models."""
    made = bundled_text_task(256)
    assert isinstance(made, TextEmbeddingTask)
    return made
