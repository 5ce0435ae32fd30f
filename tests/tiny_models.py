"""Tiny models for the pruning and distillation tests: a 4-layer BERT encoder with mean pooling (random
weights) and token batches with some padding."""

from __future__ import annotations

import numpy as np
import torch
import transformers

from inferopt.recipes.structure import Probe
from inferopt.tasks.base import IOSchema, TensorSpec
from inferopt.tasks.text_embedding.torch_model import PooledEncoder

NAMES = ("input_ids", "attention_mask", "token_type_ids")
SCHEMA = IOSchema(
    tuple(TensorSpec(n, "int64", ("batch", "sequence")) for n in NAMES),
    (TensorSpec("embedding", "float32", ("batch", 32)),),
)


def tiny_bert(layers: int = 4, seed: int = 0) -> PooledEncoder:
    torch.manual_seed(seed)
    config = transformers.BertConfig(
        vocab_size=64,
        hidden_size=32,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=32,
    )
    config._attn_implementation = "eager"  # what the text task loads: the pattern ONNX export traces cleanly
    return PooledEncoder(transformers.BertModel(config, add_pooling_layer=False)).eval()


def token_probe(batches: int = 4, seed: int = 1) -> Probe:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(batches):
        ids = rng.integers(1, 64, size=(8, 12)).astype(np.int64)
        mask = np.ones_like(ids)
        mask[:4, 8:] = 0  # some padding, which importance must not count
        out.append({"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)})
    return Probe(NAMES, tuple(out), "attention_mask")
