"""What the model folders the repository's trainers write have in common (recommendation/, tabular/): JSON and
an .npz of plain arrays (never pickle), read with errors that name the file, and reused when a folder was
trained with exactly the same settings."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from inferopt.errors import InferoptError, InputError


def write_json(path: Path, value: Any, *, compact: bool = False) -> None:
    text = json.dumps(value, separators=(",", ":")) if compact else json.dumps(value, indent=1)
    path.write_text(text + "\n", encoding="utf-8")


def read_json(path: Path, hint: str, error: type[InferoptError] = InputError) -> Any:
    """The file's JSON; `error` (one line naming the file, with `hint`) when it is missing or malformed."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise error(f"{path}: no such file", hint) from None
    except (OSError, ValueError) as exc:
        raise error(f"{path}: not readable JSON ({exc})", hint) from None


def trained_with(path: Path, manifest: str, fmt: str, files: Iterable[str], settings: dict[str, Any]) -> bool:
    """Whether `path` holds a complete folder of format `fmt` trained with exactly `settings`."""
    try:
        meta = json.loads((path / manifest).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    complete = all((path / name).is_file() for name in files)
    return complete and meta.get("format") == fmt and meta.get("training") == settings


def save_weights(path: Path, model: Any) -> None:
    np.savez(path, **{name: value.detach().numpy() for name, value in model.state_dict().items()})


def load_weights(model: Any, path: Path, hint: str) -> Any:
    """`model` with the state dict of the .npz at `path`, in eval mode."""
    import torch

    with np.load(path, allow_pickle=False) as weights:
        state = {name: torch.from_numpy(weights[name]) for name in weights.files}
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise InputError(f"{path} does not fit its architecture ({exc})", hint) from None
    return model.eval()
