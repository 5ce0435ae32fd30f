from pathlib import Path

import numpy as np
import pytest

from inferopt.batching import arrival_batches, sorted_batches
from inferopt.engine import Embedder
from inferopt.runtime.fake import FakeBackend
from inferopt.tasks.base import Item
from inferopt.tasks.text_embedding import TextEmbeddingTask
from inferopt.tasks.text_embedding.model_dir import ModelSpec
from inferopt.tasks.text_embedding.tokenizer import TextTokenizer, pad_batch


def test_pad_batch_masks_real_tokens() -> None:
    feeds = pad_batch([[101, 7, 102], [101, 102]], pad_id=0)
    assert feeds["input_ids"].tolist() == [[101, 7, 102], [101, 102, 0]]
    assert feeds["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]
    assert feeds["token_type_ids"].sum() == 0 and feeds["input_ids"].dtype == np.int64


def test_batches_sort_by_cost_and_keep_groups_apart() -> None:
    items = [Item(None, cost) for cost in (5, 1, 4, 2, 3)]
    assert sorted_batches(items, 2) == [[1, 3], [4, 2], [0]]
    assert arrival_batches(items[:3], 2) == [[0, 1], [2]]
    grouped = [Item(None, 1, "a"), Item(None, 1, "b"), Item(None, 2, "a")]
    assert sorted_batches(grouped, 4) == [[0, 2], [1]]  # items of two shapes never share a batch


@pytest.fixture(scope="module")
def tokenizer(minilm_tokenizer_file: Path) -> TextTokenizer:
    return TextTokenizer(minilm_tokenizer_file, max_length=16)


@pytest.fixture(scope="module")
def task(tokenizer: TextTokenizer) -> TextEmbeddingTask:
    """A text task over the MiniLM tokenizer, for a fake model of 8 dimensions."""
    return TextEmbeddingTask(tokenizer, ModelSpec("bert", 8, 1, 1, 32, tokenizer.max_length, 8))


def test_tokenizer_truncates_and_counts(tokenizer: TextTokenizer) -> None:
    long_text = "word " * 40
    assert len(tokenizer.encode_ids([long_text])[0]) == 16
    assert tokenizer.count_tokens(long_text) == 42  # [CLS] + 40 + [SEP], before truncation
    assert tokenizer.encode(["a b", "a"])["attention_mask"].tolist() == [[1, 1, 1, 1], [1, 1, 1, 0]]


def test_token_ids_match_the_tokenizers_full_encode(tokenizer: TextTokenizer, minilm_tokenizer_file: Path) -> None:
    """encode_ids takes the offset-free fast path: the ids must be exactly what the full encode gives."""
    from tokenizers import Tokenizer

    reference = Tokenizer.from_file(str(minilm_tokenizer_file))
    reference.no_padding()
    reference.enable_truncation(tokenizer.max_length)
    texts = ["A man is playing a guitar.", "Ünïcödé, emoji 🙂 and punctuation!?", "x", "word " * 40, ""]
    assert tokenizer.encode_ids(texts) == [e.ids for e in reference.encode_batch(texts)]


@pytest.mark.parametrize("sessions", [1, 3])
def test_embedder_keeps_input_order_whatever_the_batching(task: TextEmbeddingTask, sessions: int) -> None:
    texts = [f"sentence number {i} " + "x " * (i % 7) for i in range(50)]
    backends = [FakeBackend(dim=8, delay_s=0.002) for _ in range(sessions)]  # runs take time, as real ones do
    with Embedder(task, backends, batch_size=4) as embedder:  # type: ignore[arg-type]
        got = embedder.embed(texts)
    with Embedder(task, [FakeBackend(dim=8)], batch_size=1) as one_by_one:  # type: ignore[list-item]
        expected = one_by_one.embed(texts)
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    assert sum(sum(b.calls) for b in backends) == 50
    assert max(max(b.calls) for b in backends if b.calls) == 4
    if sessions > 1:
        assert sum(1 for b in backends if b.calls) > 1  # work really was spread


def test_embedder_refuses_nothing(task: TextEmbeddingTask) -> None:
    with Embedder(task, [FakeBackend()]) as embedder, pytest.raises(ValueError, match="at least one text"):  # type: ignore[list-item]
        embedder.embed([])
