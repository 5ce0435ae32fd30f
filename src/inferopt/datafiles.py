"""Users' data files, read with a one-line error that names the file and the flag it came from."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from inferopt.errors import InputError


def read_text_file(path: Path, flag: str, what: str, kinds: str) -> str:
    """A UTF-8 text file with something in it, or a one-line error naming `what` (e.g. "Data file") and the
    `flag` it came from; `kinds` says which files the flag takes."""
    if not path.exists():
        raise InputError(f"{what} {path} does not exist", f"check the {flag} path")
    if path.is_dir():
        raise InputError(f"{flag} {path} is a directory", f"pass {kinds}")
    try:
        content = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"Cannot read {what.lower()} {path} ({exc})", "give a readable UTF-8 file") from exc
    if not content.strip():
        raise InputError(f"{what} {path} is empty", "give at least one text")
    return content


def read_npz(path: Path, flag: str) -> dict[str, np.ndarray]:
    """Named arrays from an .npz file (numpy.savez), all with the same length on axis 0 (the batch)."""
    if not path.exists():
        raise InputError(f"{path} does not exist", f"check the {flag} path")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except (OSError, ValueError, EOFError) as exc:
        raise InputError(f"{path} is not a readable .npz file ({exc})", "save it with numpy.savez") from exc
    if not arrays:
        raise InputError(f"{path} holds no arrays", "save at least one input with numpy.savez")
    lengths = {name: (value.shape[0] if value.ndim else None) for name, value in arrays.items()}
    if None in lengths.values():
        scalar = next(n for n, size in lengths.items() if size is None)
        raise InputError(f"{path}: array {scalar!r} has no batch axis (it is a scalar)", "give axis 0 as the batch")
    if len(set(lengths.values())) > 1:
        sizes = ", ".join(f"{n}: {size}" for n, size in lengths.items())
        raise InputError(f"{path}: the arrays have different batch sizes ({sizes})", "give every input the same rows")
    if next(iter(lengths.values())) == 0:
        raise InputError(f"{path}: the arrays have no rows", "give at least one row")
    return arrays
