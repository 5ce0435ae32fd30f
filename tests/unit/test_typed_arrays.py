"""JSON numbers into typed arrays: values that do not fit the type are refused in words, never wrapped or turned
into infinity, and never a warning that escapes as an error (the generated-input suite found one: an FP32 value
of 3.4e72)."""

from __future__ import annotations

import numpy as np
import pytest

from inferopt.typed_arrays import ValueProblem, typed_array


@pytest.mark.parametrize(
    ("values", "dtype", "words"),
    [
        ([-3.44e72, -3.44e72, True], np.float32, "too large for float32"),
        ([70000.0], np.float16, "too large for float16"),
        ([3_000_000_000], np.int32, "outside int32's range"),
        ([1.5], np.int64, "must hold integers"),
        ([True, 1], np.bool_, "must hold true/false"),
        ([[1, 2], [3]], np.float32, "rectangular"),
        (["a"], np.float32, "must hold float32 numbers"),
    ],
)
def test_values_that_do_not_fit_are_refused_in_words(values: list, dtype: type, words: str) -> None:
    with pytest.raises(ValueProblem, match=words):
        typed_array(values, np.dtype(dtype))


def test_values_that_fit_keep_their_values() -> None:
    assert typed_array([[1, 2], [3, 4]], np.dtype(np.int32)).tolist() == [[1, 2], [3, 4]]
    np.testing.assert_array_equal(typed_array([0.5, -2.0], np.dtype(np.float16)), np.array([0.5, -2.0], np.float16))
