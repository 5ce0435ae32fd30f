"""The baseline of benchmarks/image.py: the photo server a team writes around its PyTorch classifier.

FastAPI + PyTorch eager EfficientNet-Lite0, one request = decode + resize + crop + one forward pass, no batching
across requests, no cache, a sync endpoint (FastAPI runs it in its thread pool), uvicorn with its defaults. It
takes the same KServe v1 JSON as `inferopt serve` (`{"instances": [{"b64": ...}]}`) and answers the same top 5,
so one load script drives both. Preprocessing is the textbook one (PIL resize of the shorter side, centre
crop, normalize), the same numbers as inferopt's.

    python benchmarks/plain_image_server.py --port 8022
"""

from __future__ import annotations

import argparse
import base64
import io
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
import uvicorn
from fastapi import FastAPI
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from inferopt.tasks.image_classification.source import bundled_labels, load_bundled

app = FastAPI()
model = load_bundled()
labels = bundled_labels()
MEAN, STD = 127.0 / 255, 128.0 / 255  # EfficientNet-Lite's


def preprocess(data: bytes) -> torch.Tensor:
    image = Image.open(io.BytesIO(data)).convert("RGB")
    width, height = image.size
    scale = 256 / min(width, height)
    image = image.resize((round(width * scale), round(height * scale)), Image.Resampling.BILINEAR)
    left, top = (image.width - 224) // 2, (image.height - 224) // 2
    pixels = np.asarray(image.crop((left, top, left + 224, top + 224)), np.float32) / 255.0
    return torch.from_numpy(((pixels - MEAN) / STD).transpose(2, 0, 1).copy())


@app.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/v1/models/{name}:predict")
def predict(name: str, body: dict[str, Any]) -> dict[str, Any]:
    batch = torch.stack([preprocess(base64.b64decode(i["b64"])) for i in body["instances"]])
    with torch.inference_mode():
        scores = model(batch).softmax(dim=1)
    top = scores.topk(5, dim=1)
    return {
        "predictions": [
            {
                "top_k": [
                    {"index": int(i), "label": labels[int(i)], "score": float(s)}
                    for s, i in zip(row_s, row_i, strict=True)
                ]
            }
            for row_s, row_i in zip(top.values, top.indices, strict=True)
        ]
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=8022)
    args = parser.parse_args()
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
