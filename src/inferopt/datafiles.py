"""Users' data files, read with a one-line error that names the file and the flag it came from."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from inferopt.errors import InputError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")  # what Pillow reads here


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


Row = dict[str, np.ndarray]  # one input: name -> array without the batch axis
_GROUP = re.compile(r"^g(\d+)\.(.+)$")


def write_rows(path: Path, rows: list[Row]) -> None:
    """Rows into one .npz. Rows of one shape are stacked under their input names; when the shapes differ (a
    dynamic axis), each shape group k is stored as `g{k}.{input}`."""
    groups: dict[tuple[tuple[int, ...], ...], list[Row]] = {}
    for row in rows:
        groups.setdefault(tuple(v.shape for v in row.values()), []).append(row)
    prefix = (lambda k: f"g{k}.") if len(groups) > 1 else (lambda k: "")
    arrays = {
        prefix(k) + name: np.stack([r[name] for r in members])
        for k, members in enumerate(groups.values())
        for name in members[0]
    }
    np.savez(path, **arrays)  # type: ignore[arg-type]


def read_rows(path: Path, flag: str) -> list[Row]:
    """The rows of an .npz written by numpy.savez (arrays named as the inputs, batch on axis 0) or by
    write_rows (shape groups `g{k}.{input}`), in file order."""
    arrays = read_npz_groups(path, flag)
    rows: list[Row] = []
    for group in arrays.values():
        count = len(next(iter(group.values())))
        rows.extend({name: value[i] for name, value in group.items()} for i in range(count))
    return rows


def read_npz_groups(path: Path, flag: str) -> dict[str, dict[str, np.ndarray]]:
    """group -> input name -> array; a file without groups is one group ("")."""
    if not path.exists():
        raise InputError(f"{path} does not exist", f"check the {flag} path")
    try:
        with np.load(path, allow_pickle=False) as archive:
            loaded = {name: archive[name] for name in archive.files}
    except (OSError, ValueError, EOFError) as exc:
        raise InputError(f"{path} is not a readable .npz file ({exc})", "save it with numpy.savez") from exc
    groups: dict[str, dict[str, np.ndarray]] = {}
    for key, value in loaded.items():
        match = _GROUP.match(key)
        group, name = (f"g{match.group(1)}", match.group(2)) if match else ("", key)
        groups.setdefault(group, {})[name] = value
    if not groups:
        raise InputError(f"{path} holds no arrays", "save at least one input with numpy.savez")
    for arrays in groups.values():
        _check_batch(path, arrays)
    names = {tuple(sorted(g)) for g in groups.values()}
    if len(names) > 1:
        raise InputError(f"{path}: its shape groups name different inputs", "give every group the same inputs")
    return dict(sorted(groups.items(), key=lambda item: int(item[0][1:] or 0)))


def read_npz(path: Path, flag: str) -> dict[str, np.ndarray]:
    """Named arrays from an .npz file (numpy.savez), all with the same length on axis 0 (the batch)."""
    groups = read_npz_groups(path, flag)
    if len(groups) > 1:
        raise InputError(f"{path} holds rows of several shapes", "give one array per input")
    return next(iter(groups.values()))


def _check_batch(path: Path, arrays: dict[str, np.ndarray]) -> None:
    lengths = {name: (value.shape[0] if value.ndim else None) for name, value in arrays.items()}
    if None in lengths.values():
        scalar = next(n for n, size in lengths.items() if size is None)
        raise InputError(f"{path}: array {scalar!r} has no batch axis (it is a scalar)", "give axis 0 as the batch")
    if len(set(lengths.values())) > 1:
        sizes = ", ".join(f"{n}: {size}" for n, size in lengths.items())
        raise InputError(f"{path}: the arrays have different batch sizes ({sizes})", "give every input the same rows")
    if next(iter(lengths.values())) == 0:
        raise InputError(f"{path}: the arrays have no rows", "give at least one row")
