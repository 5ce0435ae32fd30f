import json
from pathlib import Path

import pytest

from inferopt.artifact import MANIFEST, load_artifact, write_artifact, write_manifest
from inferopt.errors import ArtifactError

MANIFEST_BODY = {
    "task": {"name": "text-embedding", "version": 1, "config": {"max_length": 128}, "assets": ["tokenizer.json"]},
    "model_name": "tiny",
    "runtime": {
        "kind": "onnxruntime",
        "model_file": "model.onnx",
        "settings": {"sessions": 2, "intra_op_threads": 1, "batch_size": 16},
    },
    "io": {
        "inputs": [{"name": "input_ids", "dtype": "int64", "shape": ["batch", "sequence"]}],
        "outputs": [{"name": "embeddings", "dtype": "float32", "shape": ["batch", 32]}],
    },
}


@pytest.fixture
def artifact_dir(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    (src / "m.onnx").write_bytes(b"model bytes")
    (src / "tok.json").write_text("{}")
    write_artifact(tmp_path / "art", MANIFEST_BODY, {"model.onnx": src / "m.onnx", "tokenizer.json": src / "tok.json"})
    return tmp_path / "art"


def test_round_trip(artifact_dir: Path) -> None:
    artifact = load_artifact(artifact_dir)
    assert artifact.settings.sessions == 2 and artifact.settings.batch_size == 16
    assert artifact.task == "text-embedding" and artifact.model_file == artifact_dir / "model.onnx"
    assert artifact.io.input_names == ["input_ids"] and artifact.io.outputs[0].shape == ("batch", 32)
    assert set(artifact.manifest["files"]) == {"model.onnx", "tokenizer.json"}
    assert len(artifact.artifact_id) == 16


def test_tampered_file_is_named(artifact_dir: Path) -> None:
    (artifact_dir / "model.onnx").write_bytes(b"model bytez")
    with pytest.raises(ArtifactError, match=r"model\.onnx does not match its sha256"):
        load_artifact(artifact_dir)


def test_missing_file_and_bad_manifests(artifact_dir: Path, tmp_path: Path) -> None:
    (artifact_dir / "tokenizer.json").unlink()
    with pytest.raises(ArtifactError, match=r"tokenizer\.json is missing"):
        load_artifact(artifact_dir)
    manifest = json.loads((artifact_dir / MANIFEST).read_text())
    (artifact_dir / MANIFEST).write_text(json.dumps(manifest | {"schema_version": 99}))
    with pytest.raises(ArtifactError, match="schema version 99"):
        load_artifact(artifact_dir)
    (artifact_dir / MANIFEST).write_text("{oops")
    with pytest.raises(ArtifactError, match="not valid JSON"):
        load_artifact(artifact_dir)
    with pytest.raises(ArtifactError, match="not an inferopt artifact"):
        load_artifact(tmp_path)
    with pytest.raises(ArtifactError, match="does not exist"):
        load_artifact(tmp_path / "nowhere")


def test_a_schema_1_artifact_is_refused_with_what_to_do(artifact_dir: Path) -> None:
    manifest = json.loads((artifact_dir / MANIFEST).read_text())
    (artifact_dir / MANIFEST).write_text(json.dumps(manifest | {"schema_version": 1, "task": "text-embedding"}))
    with pytest.raises(ArtifactError, match=r"schema version 1.*re-run inferopt optimize"):
        load_artifact(artifact_dir)


def _edit(artifact_dir: Path, change: dict) -> None:
    manifest = json.loads((artifact_dir / MANIFEST).read_text())
    (artifact_dir / MANIFEST).write_text(json.dumps(manifest | change, indent=2))


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (
            {
                "runtime": MANIFEST_BODY["runtime"]
                | {"settings": {"sessions": 64, "intra_op_threads": 1, "batch_size": 16}}
            },
            r"\(runtime changed\)",
        ),
        ({"recipe": {"name": "int8-per-channel"}}, r"\(recipe added\)"),
        ({"model_name": "other", "io": {}}, r"\(io, model_name changed\)"),
    ],
)
def test_an_edited_manifest_is_refused_naming_the_field(artifact_dir: Path, change: dict, named: str) -> None:
    before = load_artifact(artifact_dir).artifact_id
    _edit(artifact_dir, change)
    with pytest.raises(ArtifactError, match=rf"manifest\.json was edited after optimize wrote it {named}"):
        load_artifact(artifact_dir)
    assert load_artifact(artifact_dir, verify=False).artifact_id != before  # the id covers the manifest


def test_a_removed_field_or_identity_is_named(artifact_dir: Path) -> None:
    manifest = json.loads((artifact_dir / MANIFEST).read_text())
    (artifact_dir / MANIFEST).write_text(json.dumps({k: v for k, v in manifest.items() if k != "model_name"}))
    with pytest.raises(ArtifactError, match=r"\(model_name removed\)"):
        load_artifact(artifact_dir)
    (artifact_dir / MANIFEST).write_text(json.dumps({k: v for k, v in manifest.items() if k != "identity"}))
    with pytest.raises(ArtifactError, match="has no identity hash"):
        load_artifact(artifact_dir)
    (artifact_dir / MANIFEST).write_text(json.dumps(manifest | {"identity": manifest["identity"] | {"sha256": "0"}}))
    with pytest.raises(ArtifactError, match="its identity hash itself was edited"):
        load_artifact(artifact_dir)


def test_the_id_ignores_layout_but_not_content(artifact_dir: Path) -> None:
    """Reformatting (key order, indentation) keeps the id; a rewrite through write_manifest is a new artifact."""
    artifact = load_artifact(artifact_dir)
    manifest = json.loads((artifact_dir / MANIFEST).read_text())
    (artifact_dir / MANIFEST).write_text(json.dumps(dict(reversed(list(manifest.items())))))
    assert load_artifact(artifact_dir).artifact_id == artifact.artifact_id
    write_manifest(artifact_dir, manifest | {"model_name": "renamed"})
    assert load_artifact(artifact_dir).artifact_id != artifact.artifact_id
