"""A tiny BERT built in the test (random weights, MiniLM's tokenizer): the whole pipeline in seconds."""

from __future__ import annotations

import json
import shutil
from pathlib import Path


def build_tiny_bert(
    directory: Path, tokenizer_json: Path, *, layers: int = 2, hidden: int = 32, heads: int = 4
) -> Path:
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=30522,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=4 * hidden,
        max_position_embeddings=128,
    )
    BertModel(config).eval().save_pretrained(directory)
    shutil.copyfile(tokenizer_json, directory / "tokenizer.json")
    (directory / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 64}))
    return directory
