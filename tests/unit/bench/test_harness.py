"""The in-process harness's choice of texts."""

from inferopt.bench.harness import representative_sample


def test_the_benchmark_sample_spans_the_whole_eval_set() -> None:
    texts = [f"t{i}" for i in range(3000)]
    sample = representative_sample(texts, 1024)
    assert len(sample) == 1024 and len(set(sample)) == 1024
    assert sample[0] == "t0" and int(sample[-1][1:]) >= 2990  # from the start to the end, not the first 1024
    assert sample == sorted(sample, key=lambda t: int(t[1:]))  # in the set's order
    assert representative_sample(["a", "b", "c"], 7) == ["a", "b", "c", "a", "b", "c", "a"]  # short sets cycle
