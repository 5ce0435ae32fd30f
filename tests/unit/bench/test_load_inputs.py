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


def test_jsonl_instances_keep_their_order_and_repeats(tmp_path: Path) -> None:
    from inferopt.bench.inputs import load_inputs

    path = tmp_path / "replay.jsonl"
    path.write_text('{"user_id": 3, "k": 10}\n\n{"user_id": 1}\n{"user_id": 3, "k": 10}\n', encoding="utf-8")
    assert load_inputs(path) == [{"user_id": 3, "k": 10}, {"user_id": 1}, {"user_id": 3, "k": 10}]
    target = parse_target("http://127.0.0.1:1/v1/models/m:predict")
    requests = build_requests(LoadConfig(target.url, inputs=path, in_order=True), target)
    assert len(requests) == 3 and requests[0].endswith(b'{"instances":[{"user_id":3,"k":10}]}')


@pytest.mark.parametrize(("content", "match"), [('{"user_id": 1}\n[1, 2]\n', "line 2: not a JSON object"),
                                                ('{"user_id": 1\n', "line 1: not JSON")])  # fmt: skip
def test_a_bad_jsonl_line_is_named(tmp_path: Path, content: str, match: str) -> None:
    from inferopt.bench.inputs import load_inputs

    path = tmp_path / "bad.jsonl"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(InputError, match=match):
        load_inputs(path)


def test_in_order_sends_the_file_sequence_cycling_and_refuses_zipf() -> None:
    from inferopt.bench.loadgen import _plans

    target = parse_target("http://127.0.0.1:1/v1/models/m:predict")
    config = LoadConfig(target.url, rate=100, duration_s=1.0, warmup_s=0.0, in_order=True, arrival="constant")
    plans, total = _plans(config, target, [b"a", b"b", b"c"])
    assert total == 100 and plans[0].inputs[:7].tolist() == [0, 1, 2, 0, 1, 2, 0]
    with pytest.raises(InputError, match="--in-order replays"):
        LoadConfig(target.url, in_order=True, zipf=1.1)
