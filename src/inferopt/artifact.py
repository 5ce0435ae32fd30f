"""The artifact: the only contract between `optimize` and `serve`.

A directory with `manifest.json` (schema version, task section with its config and assets, recipe, runtime
settings, io schema, accuracy, benchmark summary, environment, sha256 of every file) beside the model and the
task's asset files. Loading verifies every hash and names the file that does not match.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
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
    full = {"schema_version": SCHEMA_VERSION, **manifest, "files": hashes}
    (directory / MANIFEST).write_text(json.dumps(full, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    return directory / MANIFEST


@dataclass(frozen=True)
class Placements:
    """Where each model path of an artifact opens: `default`, and `paths` by name."""

    default: Placement
    paths: dict[str, Placement]


@dataclass(frozen=True)
class Artifact:
    path: Path
    manifest: dict[str, Any]

    @property
    def artifact_id(self) -> str:
        """A short stable identity: the hash of the file hashes. Cache keys and metrics carry it."""
        blob = json.dumps(self.manifest["files"], sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

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
        verify_files(artifact)
    return artifact


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
