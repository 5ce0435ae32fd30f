"""The artifact: the only contract between `optimize` and `serve`.

A directory with `manifest.json` (schema version, task section with its config and assets, recipe, runtime
settings, io schema, accuracy, benchmark summary, environment, sha256 of every file) beside the model and the
task's asset files. Loading verifies every hash and names the file that does not match.

The manifest is covered too: its `identity` holds the sha256 of its canonical form (every other field, keys
sorted, compact JSON) and of each top-level field's. An edited manifest (64 sessions, another recipe name) is
refused at load, naming the field that differs. The artifact's id is the first 16 hex digits of the whole
manifest's hash, so it covers every file (through their hashes) and every setting: `serve --require-id` pins
a deployment to exactly one artifact. (A hash is not a signature: whoever may write the folder may also
rewrite the identity. The pinned id is what such an edit cannot keep.)
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from inferopt.errors import ArtifactError
from inferopt.hashing import sha256_file
from inferopt.runtime.base import RuntimeSettings
from inferopt.runtime.placement import Placement, resolve
from inferopt.tasks.base import IOSchema

SCHEMA_VERSION = 2
REQUIRED = ("task", "runtime", "io", "files")
MANIFEST = "manifest.json"
IDENTITY = "identity"


def write_artifact(directory: Path, manifest: dict[str, Any], files: dict[str, Path]) -> Path:
    """Copy `files` (name in artifact -> source) into `directory` and write the manifest with their hashes.

    `directory` should be inside a staged (atomic) output; this function itself writes in place.
    """
    directory.mkdir(parents=True, exist_ok=True)
    hashes = {}
    for name, source in sorted(files.items()):
        target = directory / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.resolve() != target.resolve():
            shutil.copyfile(source, target)
        hashes[name] = sha256_file(target)
    return write_manifest(directory, {"schema_version": SCHEMA_VERSION, **manifest, "files": hashes})


def write_manifest(directory: Path, manifest: dict[str, Any]) -> Path:
    """manifest.json with its identity computed afresh: what optimize writes (and what a tool that deliberately
    rewrites a manifest must use, or the artifact is refused as edited)."""
    body = {k: v for k, v in manifest.items() if k != IDENTITY}
    sealed = {**body, IDENTITY: identity_of(body)}
    (directory / MANIFEST).write_text(json.dumps(sealed, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    return directory / MANIFEST


def canonical(value: Any) -> bytes:
    """The one byte form of a JSON value: keys sorted, no spaces, UTF-8."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def identity_of(body: dict[str, Any]) -> dict[str, Any]:
    return {
        "sha256": hashlib.sha256(canonical(body)).hexdigest(),
        "fields": {name: hashlib.sha256(canonical(value)).hexdigest() for name, value in sorted(body.items())},
    }


@dataclass(frozen=True)
class Placements:
    """Where each model path of an artifact opens: `default`, and `paths` by name."""

    default: Placement
    paths: dict[str, Placement]


@dataclass(frozen=True)
class Artifact:
    path: Path
    manifest: dict[str, Any]

    @cached_property
    def artifact_id(self) -> str:
        """A short stable identity: the manifest's hash (which covers every file's). Cache keys, metrics,
        model versions and `serve --require-id` carry it."""
        body = {k: v for k, v in self.manifest.items() if k != IDENTITY}
        return hashlib.sha256(canonical(body)).hexdigest()[:16]

    @property
    def task(self) -> str:
        return str(self.manifest["task"]["name"])

    @property
    def model_file(self) -> Path:
        return self.path / self.manifest["runtime"]["model_file"]

    @property
    def settings(self) -> RuntimeSettings:
        return RuntimeSettings.from_dict(self.manifest["runtime"]["settings"])

    @property
    def placement(self) -> Placement:
        """Where the benchmark ran the default path. Artifacts from before placements were recorded were all
        measured on the CPU, and say so in their providers."""
        return _placement(self.manifest["runtime"], self.path)

    @property
    def path_placements(self) -> dict[str, Placement]:
        """Where the benchmark ran each of the other model paths."""
        return {name: _placement(e, self.path) for name, e in self.manifest["runtime"].get("paths", {}).items()}

    def resolve_placements(self, device: str | None = None) -> Placements:
        """Where to open the default path and each other path on this machine: as benchmarked, refused where
        the machine cannot give it, or all on the CPU with `device="cpu"` (runtime/placement.py's resolve)."""
        default = resolve(self.placement, device, f"The artifact {self.path}")
        others = {
            name: resolve(placement, device, f"The artifact {self.path}'s path {name!r}")
            for name, placement in self.path_placements.items()
        }
        return Placements(default, others)

    @property
    def paths(self) -> dict[str, tuple[Path, RuntimeSettings, str]]:
        """The model paths besides the default one: name -> (graph file, settings, variant name)."""
        entries = self.manifest["runtime"].get("paths", {})
        return {
            name: (self.path / e["model_file"], RuntimeSettings.from_dict(e["settings"]), str(e["variant"]))
            for name, e in entries.items()
        }

    @property
    def drift_file(self) -> Path | None:
        """The drift reference optimize recorded (drift/reference.py), when the artifact has one."""
        from inferopt.drift.reference import FILE

        return self.path / FILE if FILE in self.manifest["files"] else None

    @property
    def model_name(self) -> str:
        return str(self.manifest.get("model_name", self.path.name))

    @property
    def io(self) -> IOSchema:
        return IOSchema.from_dict(self.manifest["io"])


def _placement(entry: dict[str, Any], path: Path) -> Placement:
    recorded = entry.get("placement")
    if recorded is None:
        providers = entry.get("providers", ["CPUExecutionProvider"])
        if providers != ["CPUExecutionProvider"]:
            raise ArtifactError(
                f"{path / MANIFEST} names providers {providers} but no placement", "re-run inferopt optimize"
            )
        return Placement.cpu()
    try:
        return Placement.from_dict(recorded)
    except (TypeError, ValueError) as exc:
        raise ArtifactError(
            f"{path / MANIFEST} has a placement this inferopt cannot read: {exc}", "re-run inferopt optimize"
        ) from exc


def load_artifact(path: Path, *, verify: bool = True) -> Artifact:
    path = Path(path)
    manifest_path = path / MANIFEST
    if not path.is_dir():
        raise ArtifactError(f"Artifact {path} does not exist or is not a directory", "pass the folder optimize wrote")
    if not manifest_path.exists():
        raise ArtifactError(f"{path} has no {MANIFEST}, so it is not an inferopt artifact", "run inferopt optimize")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{manifest_path} is not valid JSON ({exc})", "re-run inferopt optimize") from exc
    version = manifest.get("schema_version")
    if version == 1:
        raise ArtifactError(
            f"{manifest_path} has schema version 1, from an inferopt that knew only text embeddings; this one "
            f"reads schema {SCHEMA_VERSION} (a task section with its assets)",
            "re-run inferopt optimize on the model to rebuild the artifact",
        )
    if version != SCHEMA_VERSION:
        raise ArtifactError(
            f"{manifest_path} has schema version {version}, this inferopt reads {SCHEMA_VERSION}",
            "re-run optimize with this version of inferopt",
        )
    for key in REQUIRED:
        if key not in manifest:
            raise ArtifactError(f"{manifest_path} lacks the field {key!r}", "re-run inferopt optimize")
    if not isinstance(manifest["task"], dict) or "name" not in manifest["task"]:
        raise ArtifactError(f"{manifest_path} has no task name", "re-run inferopt optimize")
    artifact = Artifact(path, manifest)
    _ = artifact.placement, artifact.path_placements  # a placement that cannot be read: refused now
    if verify:
        verify_identity(artifact)
        verify_files(artifact)
    return artifact


def verify_identity(artifact: Artifact) -> None:
    """The manifest is as optimize wrote it: its canonical hash matches its identity, else the differing
    fields are named."""
    where = artifact.path / MANIFEST
    stored = artifact.manifest.get(IDENTITY)
    if not isinstance(stored, dict) or not isinstance(stored.get("fields"), dict):
        raise ArtifactError(
            f"{where} has no identity hash: it was written by an inferopt from before manifests were covered, "
            "or the field was removed",
            "re-run inferopt optimize",
        )
    body = {k: v for k, v in artifact.manifest.items() if k != IDENTITY}
    actual = identity_of(body)
    if actual["sha256"] == stored.get("sha256"):
        return
    recorded = stored["fields"]
    changed = [n for n in actual["fields"] if n in recorded and recorded[n] != actual["fields"][n]]
    added = [n for n in actual["fields"] if n not in recorded]
    removed = [n for n in recorded if n not in actual["fields"]]
    parts = [f"{', '.join(changed)} changed"] if changed else []
    parts += [f"{', '.join(added)} added"] if added else []
    parts += [f"{', '.join(removed)} removed"] if removed else []
    what = "; ".join(parts) or "its identity hash itself was edited"
    raise ArtifactError(
        f"{where} was edited after optimize wrote it ({what}): it no longer matches its canonical hash",
        "restore the manifest, or re-run inferopt optimize",
    )


def verify_files(artifact: Artifact) -> None:
    for name, expected in artifact.manifest["files"].items():
        file = artifact.path / name
        if not file.exists():
            raise ArtifactError(f"Artifact file {name} is missing from {artifact.path}", "re-run inferopt optimize")
        if sha256_file(file) != expected:
            raise ArtifactError(
                f"Artifact file {name} does not match its sha256 in manifest.json: it was changed after optimize",
                "restore it or re-run inferopt optimize",
            )
