"""The baseline of benchmarks/byo.py: the server a team writes around its own PyTorch module.

FastAPI + PyTorch eager, one request = one forward pass, no batching across requests, no cache, a sync
endpoint (FastAPI runs it in its thread pool), uvicorn with its defaults. It takes the same Open Inference
Protocol v2 JSON as `inferopt serve` (`POST /v2/models/{name}/infer`), so one load script drives both.

    python benchmarks/plain_tensor_server.py --port 8002 --model benchmarks.byo_lstm:build
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
import uvicorn
from fastapi import FastAPI

app = FastAPI()
module: torch.nn.Module | None = None
DTYPES = {"INT64": np.int64, "INT32": np.int32, "FP32": np.float32}


@app.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/v2/models/{name}/infer")
def infer(name: str, body: dict[str, Any]) -> dict[str, Any]:
    assert module is not None
    tensors = [
        torch.from_numpy(np.asarray(t["data"], DTYPES[t["datatype"]]).reshape(t["shape"])) for t in body["inputs"]
    ]
    with torch.inference_mode():
        output = module(*tensors)
    return {
        "model_name": name,
        "outputs": [
            {"name": "output", "datatype": "FP32", "shape": list(output.shape), "data": output.flatten().tolist()}
        ],
    }


def main() -> None:
    global module
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8002)
    parser.add_argument("--model", default="benchmarks.byo_lstm:build")
    args = parser.parse_args()
    sys.path.insert(0, str(Path.cwd()))
    path, _, attr = args.model.partition(":")
    module = getattr(importlib.import_module(path), attr)().eval()
    uvicorn.run(app, host="127.0.0.1", port=args.port, access_log=False)


if __name__ == "__main__":
    main()
