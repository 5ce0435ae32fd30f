"""A file's sha256: the artifact's integrity hashes, and the key of TensorRT's engine cache."""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_unchanged_file(path: Path) -> str:
    """sha256_file, read once for as long as the file keeps its size and modification time (each session of
    a model asks again)."""
    stat = path.stat()
    return _cached(path.resolve(), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _cached(path: Path, size: int, mtime_ns: int) -> str:
    return sha256_file(path)
