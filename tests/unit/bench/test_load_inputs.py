from pathlib import Path

import pytest

from inferopt.bench.http1 import parse_target
from inferopt.bench.inputs import distinct_inputs, load_texts
from inferopt.bench.loadgen import LoadConfig, build_requests
from inferopt.errors import InputError


def test_text_file_one_per_line_skips_blanks_and_duplicates(tmp_path: Path) -> None:
    path = tmp_path / "texts.txt"
    path.write_text("first\n\nsecond\nfirst\n  \nthird\n", encoding="utf-8")
    assert load_texts(path) == ["first", "second", "third"]


def test_sts_format_is_detected_and_both_sentences_are_used(stsb_dev: Path) -> None:
    texts = load_texts(stsb_dev)
    assert "A man with a hard hat is dancing." in texts
    assert "A man wearing a hard hat is dancing." in texts
    assert 1500 < len(texts) <= 3000 and not any("\t" in t for t in texts)


def test_builtin_corpus_is_the_default() -> None:
    texts = load_texts(None)
    assert len(texts) >= 20 and all(t.strip() for t in texts)


@pytest.mark.parametrize(("content", "match"), [("", "is empty"), ("\n  \n", "is empty")])
def test_empty_inputs_file_is_a_clear_error(tmp_path: Path, content: str, match: str) -> None:
    path = tmp_path / "empty.txt"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(InputError, match=match):
        load_texts(path)


def test_missing_inputs_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        load_texts(tmp_path / "nope.txt")


def test_distinct_inputs_stretch_and_cut() -> None:
    assert distinct_inputs(["a", "b", "c"], 2) == ["a", "b"]
    stretched = distinct_inputs(["a", "b"], 5)
    assert len(set(stretched)) == 5 and stretched[:2] == ["a", "b"]
    with pytest.raises(InputError):
        distinct_inputs(["a"], 0)


def test_requests_are_encoded_once_per_distinct_input(tmp_path: Path) -> None:
    path = tmp_path / "texts.txt"
    path.write_text("alpha\nbeta\ngamma\n", encoding="utf-8")
    config = LoadConfig("http://h:1", inputs=path, model="m", items_per_request=2)
    requests = build_requests(config, parse_target(config.url))
    assert len(requests) == 3
    assert requests[0].endswith(b'{"input":["alpha","beta"],"model":"m"}')
