from pathlib import Path

import pytest

from inferopt.errors import InputError
from inferopt.tasks.text_embedding.evaldata import builtin_corpus, load_eval_data


def test_builtin_corpus_is_varied() -> None:
    corpus = builtin_corpus()
    lengths = [len(t.split()) for t in corpus.texts]
    assert len(corpus.texts) >= 200
    assert min(lengths) <= 4 and max(lengths) >= 50
    assert len(set(corpus.texts)) == len(corpus.texts) and not corpus.labelled


def test_txt_and_jsonl(tmp_path: Path) -> None:
    txt = tmp_path / "a.txt"
    txt.write_text("one\n\n two \nthree\n", encoding="utf-8")
    assert load_eval_data(txt).texts == ("one", " two ", "three")
    jl = tmp_path / "b.jsonl"
    jl.write_text('{"text": "x"}\n"y"\n{"sentence1": "a", "sentence2": "b", "score": 3.5}\n', encoding="utf-8")
    data = load_eval_data(jl)
    assert data.texts == ("x", "y", "a", "b")
    assert data.pairs[0].first == 2 and data.pairs[0].second == 3 and data.pairs[0].score == 3.5


def test_sts_tsv_is_detected_and_deduplicated(tmp_path: Path) -> None:
    tsv = tmp_path / "sts.tsv"
    tsv.write_text(
        "g\tf\t2012\t0001\t5.0\tA cat sits.\tA cat is sitting.\n"
        "g\tf\t2012\t0002\t1.0\tA cat sits.\tThe stock fell.\textra\tcolumns\n",
        encoding="utf-8",
    )
    data = load_eval_data(tsv)
    assert data.texts == ("A cat sits.", "A cat is sitting.", "The stock fell.")
    assert [(p.first, p.second, p.score) for p in data.pairs] == [(0, 1, 5.0), (0, 2, 1.0)]


def test_real_stsb_dev(stsb_dev: Path) -> None:
    data = load_eval_data(stsb_dev)
    assert len(data.pairs) == 1500
    assert 2500 < len(data.texts) <= 3000
    limited = data.limited(100)
    assert len(limited.texts) == 100 and all(p.first < 100 and p.second < 100 for p in limited.pairs)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("missing.txt", None, "does not exist"),
        ("empty.txt", "  \n", "is empty"),
        ("data.parquet", "x", "unsupported type"),
        ("bad.jsonl", "{not json\n", "line 1 is not JSON"),
        ("bad.jsonl", '{"foo": 1}\n', 'has no "text"'),
        ("bad.tsv", "a\tb\tc\td\tfive\tx\ty\na\tb\tc\td\t1.0\tx\ty\na\tb\tc\td\t2.0\tx\ty\n", "not a number"),
        ("bin.txt", b"\xff\xfe\x00bad", "Cannot read"),
    ],
)
def test_bad_data_files_say_what_is_wrong(tmp_path: Path, name: str, content: str | bytes | None, message: str) -> None:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(InputError, match=message):
        load_eval_data(path)


def test_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="is a directory"):
        load_eval_data(tmp_path)
