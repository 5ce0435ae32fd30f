"""The baseline of benchmarks/recsys.py: the recommendation server a team writes around its PyTorch model.

FastAPI + the trained NeuMF in PyTorch eager, one request = one pass over the whole catalogue (the model's own
scoring and top-k, the user path only: this server has no similar-items route), no batching across requests,
no cache, a sync endpoint (FastAPI runs it in its thread pool), uvicorn with its defaults. It takes the same
KServe v1 JSON as `inferopt serve` (`{"instances": [{"user_id": 42, "k": 10}]}`), maps catalogue ids to rows
and back, excludes what the user has seen, and answers the same `{"items": [...], "scores": [...]}`, so one
load script drives both.

    python benchmarks/plain_recsys_server.py MODEL_DIR --port 8031
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import torch
import uvicorn
from fastapi import FastAPI, HTTPException

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from inferopt.tasks.recommendation import model_dir

app = FastAPI()
state: dict[str, Any] = {}


def load(path: Path) -> None:
    folder = model_dir.read(path)
    state["model"] = folder.module()
    state["user_row"] = {u: n for n, u in enumerate(folder.user_ids)}
    state["item_ids"] = torch.tensor(folder.item_ids)
    state["seen"] = [torch.tensor(rows, dtype=torch.int64) for rows in folder.history]
    state["pad"] = len(folder.item_ids)


@app.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/v1/models/{name}:predict")
def predict(name: str, body: dict[str, Any]) -> dict[str, Any]:
    predictions = []
    for instance in body["instances"]:
        row = state["user_row"].get(instance["user_id"])
        if row is None:
            raise HTTPException(422, f"unknown user {instance['user_id']}")
        seen = state["seen"][row]
        with torch.inference_mode():  # the user path only: this server has no similar-items route
            scores = state["model"].catalogue_scores(torch.tensor([row]))
            items, scores = state["model"].top_k(
                scores,
                seen[None] if len(seen) else torch.tensor([[state["pad"]]]),
                torch.tensor([[state["pad"]]]),
                torch.tensor([int(instance.get("k", 10))]),
            )
        predictions.append({"items": state["item_ids"][items[0]].tolist(), "scores": scores[0].tolist()})
    return {"predictions": predictions}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model", type=Path)
    parser.add_argument("--port", type=int, default=8031)
    args = parser.parse_args()
    load(args.model)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
