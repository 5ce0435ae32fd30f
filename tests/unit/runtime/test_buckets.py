"""Shape buckets: the runtime sees only bucket shapes, and the caller gets exactly its own rows back."""

from __future__ import annotations

import numpy as np
import pytest

from inferopt.runtime.base import Arrays
from inferopt.runtime.buckets import BucketedBackend, bucket


class Recorder:
    """Mean-pools the masked tokens (what a text encoder's pooling does) and records the shapes it was given."""

    def __init__(self) -> None:
        self.shapes: list[tuple[int, ...]] = []

    def run(self, inputs: Arrays) -> Arrays:
        ids, mask = inputs["input_ids"], inputs["attention_mask"]
        self.shapes.append(ids.shape)
        pooled = (ids * mask).sum(axis=1) / mask.sum(axis=1)
        return {"pooled": pooled.astype(np.float32), "first": ids[:, :1].copy()}

    def warmup(self, example: Arrays) -> None:
        self.run(example)

    def info(self) -> dict[str, object]:
        return {"runtime": "recorder"}


SHAPES = {"input_ids": ("batch", "sequence"), "attention_mask": ("batch", "sequence")}


def _batch(rows: int, length: int, rng: np.random.Generator) -> Arrays:
    ids = rng.integers(1, 1000, size=(rows, length))
    mask = np.ones_like(ids)
    mask[0, length // 2 :] = 0  # a shorter text in the batch, padded as the tokenizer pads
    ids[0, length // 2 :] = 0
    return {"input_ids": ids, "attention_mask": mask}


def test_bucket_is_the_smallest_that_holds_it() -> None:
    assert [bucket(n, (1, 2, 4, 8)) for n in (1, 2, 3, 5, 8, 9)] == [1, 2, 4, 8, 8, 9]
    assert bucket(7, ()) == 7


@pytest.mark.parametrize(("rows", "length"), [(1, 5), (3, 17), (8, 16), (5, 40), (40, 3)])
def test_padding_to_buckets_changes_no_result(rows: int, length: int) -> None:
    rng = np.random.default_rng(rows * 100 + length)
    inputs = _batch(rows, length, rng)
    plain = Recorder().run(inputs)
    inner = Recorder()
    bucketed = BucketedBackend(inner, SHAPES, (1, 2, 4, 8, 16, 32), (16, 32, 64))
    out = bucketed.run(inputs)
    for name, value in plain.items():
        np.testing.assert_array_equal(out[name], value)
    (shape,) = inner.shapes
    assert shape == (bucket(rows, (1, 2, 4, 8, 16, 32)), bucket(length, (16, 32, 64)))


def test_padding_rows_repeat_the_last_real_row_and_tokens_are_masked() -> None:
    inputs = {"input_ids": np.array([[5, 6, 7]]), "attention_mask": np.array([[1, 1, 0]])}
    padded = BucketedBackend(Recorder(), SHAPES, (2,), (4,)).pad(inputs)
    np.testing.assert_array_equal(padded["input_ids"], [[5, 6, 7, 0], [5, 6, 7, 0]])
    np.testing.assert_array_equal(padded["attention_mask"], [[1, 1, 0, 0], [1, 1, 0, 0]])


def test_inputs_without_a_sequence_axis_pad_rows_only() -> None:
    inner = Recorder()
    bucketed = BucketedBackend(inner, {"input_ids": ("batch", 3), "attention_mask": ("batch", 3)}, (4,), (16,))
    bucketed.run({"input_ids": np.ones((3, 3), np.int64), "attention_mask": np.ones((3, 3), np.int64)})
    assert inner.shapes == [(4, 3)]


def test_warmup_builds_the_example_bucket_and_the_largest_shape() -> None:
    inner = Recorder()
    bucketed = BucketedBackend(inner, SHAPES, (1, 2, 4, 8), (16, 32))
    bucketed.warmup(_batch(1, 10, np.random.default_rng(0)))
    assert inner.shapes == [(1, 16), (8, 32)]
    assert bucketed.info() == {"runtime": "recorder", "batch_buckets": [1, 2, 4, 8], "sequence_buckets": [16, 32]}


class TokenLevel(Recorder):
    """A per-token output (batch, sequence): what a user's tagging model returns."""

    def run(self, inputs: Arrays) -> Arrays:
        self.shapes.append(inputs["input_ids"].shape)
        return {"tokens": (inputs["input_ids"] * inputs["attention_mask"]).astype(np.float32)}


def test_a_per_token_output_comes_back_at_the_inputs_own_length() -> None:
    inputs = _batch(3, 10, np.random.default_rng(1))
    inner = TokenLevel()
    out = BucketedBackend(inner, SHAPES, (4,), (16,), {"tokens": ("batch", "sequence")}).run(inputs)
    assert inner.shapes == [(4, 16)]
    np.testing.assert_array_equal(out["tokens"], TokenLevel().run(inputs)["tokens"])
