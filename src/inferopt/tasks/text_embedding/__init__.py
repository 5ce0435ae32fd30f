"""Sentence embeddings: all-MiniLM-L6-v2 and other BERT-family encoders in sentence-transformers layout.

A raw input is one text. Tokenization (tokenizer.py) turns texts into token ids; collate pads a batch to its
longest text. Mean pooling and L2 normalisation live inside the model graph (torch_model.py), so every
runtime returns final embeddings. This module imports no torch: the server tokenizes with it too.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from inferopt.tasks.base import (
    KSERVE_V1,
    NO_OPTIONS,
    OIP_V2,
    OPENAI_EMBEDDINGS,
    Arrays,
    EvalSet,
    FusionProfile,
    InvalidInput,
    IOSchema,
    Item,
    Metrics,
    ModelOptions,
    Source,
    Task,
    TensorSpec,
    v2_texts,
)
from inferopt.tasks.text_embedding.evaldata import builtin_corpus, load_eval_data
from inferopt.tasks.text_embedding.model_dir import (
    INPUT_NAMES,
    OUTPUT_NAME,
    WEIGHT_FILES,
    ModelSpec,
    default_model_dir,
    read_model_spec,
)
from inferopt.tasks.text_embedding.tokenizer import TextTokenizer, pad_batch

BUNDLED_MODEL_NAME = "all-MiniLM-L6-v2"
TOKENIZER_ASSET = "tokenizer.json"
V2_TEXT_INPUT = "text"
WARMUP_SHORT_TOKENS = 16
EXAMPLE_TEXTS = ("an example input", "a second, longer example input sentence")


class TextEmbeddingTask(Task):
    name = "text-embedding"
    version = 1
    protocols = (OPENAI_EMBEDDINGS, KSERVE_V1, OIP_V2)
    distill_loss = "cosine"

    def __init__(
        self, tokenizer: TextTokenizer, spec: ModelSpec, *, model_dir: Path | None = None, bundled: bool = False
    ) -> None:
        self.tokenizer = tokenizer
        self.spec = spec
        self.model_dir = model_dir  # only at optimize time: serving needs just the tokenizer
        self.bundled = bundled

    # -- where it comes from ---------------------------------------------------------------------------------

    @classmethod
    def claims(cls, ref: str | None) -> bool:
        """No model (the bundled MiniLM) or a folder: a Hugging Face encoder directory."""
        return ref is None or Path(ref).is_dir() or (":" not in ref and not ref.endswith(".onnx"))

    @classmethod
    def from_model(cls, ref: str | None, options: ModelOptions = NO_OPTIONS) -> Task:
        options.refuse_others((), "a text encoder folder")
        model_dir = default_model_dir() if ref is None else Path(ref)
        spec = read_model_spec(model_dir)
        tokenizer = TextTokenizer.from_dir(model_dir, spec.max_length)
        return cls(tokenizer, spec, model_dir=model_dir, bundled=ref is None)

    @property
    def max_length(self) -> int:
        return self.spec.max_length

    @property
    def max_cost(self) -> int:
        return self.spec.max_length

    @property
    def model_name(self) -> str:
        if self.bundled or self.model_dir is None:
            return BUNDLED_MODEL_NAME
        return self.model_dir.resolve().name

    # -- optimize ----------------------------------------------------------------------------------------------

    def load_source(self) -> Source:
        from inferopt.tasks.text_embedding.torch_model import load_pooled_encoder

        model_dir = self._model_dir()
        weights = next((model_dir / w for w in WEIGHT_FILES if (model_dir / w).exists()), None)
        return Source(
            name=self.model_name,
            location=str(model_dir),
            module=load_pooled_encoder(model_dir),
            example=self.collate(self.preprocess(list(EXAMPLE_TEXTS))),
            size_bytes=weights.stat().st_size if weights else 0,
            fusion=FusionProfile(
                "bert",
                num_heads=self.spec.num_heads,
                hidden_size=self.spec.hidden_size,
                expected_ops=expected_fusions(self.spec),
                mask_input="attention_mask",
            ),
        )

    def _model_dir(self) -> Path:
        if self.model_dir is None:
            raise RuntimeError("this text-embedding task was loaded from an artifact: it has no source model")
        return self.model_dir

    def io_schema(self) -> IOSchema:
        return IOSchema(
            tuple(TensorSpec(name, "int64", ("batch", "sequence")) for name in INPUT_NAMES),
            (TensorSpec(OUTPUT_NAME, "float32", ("batch", self.spec.embedding_dim)),),
        )

    def eval_data(self, path: Path | None, limit: int | None = None) -> EvalSet:
        data = load_eval_data(path)
        if limit is not None:
            data = data.limited(limit)
        return EvalSet(data.name, data.texts, data.pairs, f"{len(data.texts)} texts, {len(data.pairs)} scored pairs")

    def calibration_inputs(self) -> list[Any]:
        return self.sample_inputs()

    @classmethod
    def sample_inputs(cls) -> list[Any]:
        return list(builtin_corpus().texts)

    def distillation_inputs(self) -> list[Any]:
        from inferopt.tasks.text_embedding.distillation import distillation_texts

        # Not the built-in corpus: it is the default eval set (and calibration's), and must stay unseen.
        return distillation_texts()

    def metrics(self) -> Metrics:
        from inferopt.tasks.text_embedding.metrics import TextEmbeddingMetrics

        return TextEmbeddingMetrics()

    # -- serve -------------------------------------------------------------------------------------------------

    def preprocess(self, raws: Sequence[Any]) -> list[Item]:
        """Token ids, cut at max_length. Only a text that reached max_length gets the (slower) untruncated count
        that tells a cut text from one exactly max_length long."""
        tokenizer, limit = self.tokenizer, self.tokenizer.max_length
        return [
            Item(row, len(row), None, len(row) >= limit and tokenizer.count_tokens(text) > len(row))
            for row, text in zip(tokenizer.encode_ids(list(raws)), raws, strict=True)
        ]

    def collate(self, items: Sequence[Item]) -> Arrays:
        return pad_batch([item.data for item in items], self.tokenizer.pad_id)

    def drift_signals(self, items: Sequence[Item], outputs: Arrays) -> dict[str, np.ndarray]:
        """The input lengths (tokens) and the embedding's components."""
        return {
            "input.tokens": np.array([item.cost for item in items], np.float64),
            "output.embedding": outputs[OUTPUT_NAME],
        }

    def postprocess(self, outputs: Arrays, item: Item) -> Any:
        return outputs[OUTPUT_NAME]  # the vector; orjson writes numpy arrays

    def canonical(self, raw: Any) -> bytes:
        """The text as the model's own tokenizer normalizer sees it (for MiniLM: lower-cased, accents stripped,
        control characters dropped): the same normal form gives the same tokens, so the same embedding. Except
        where the raw text holds an added token the tokenizer matches before normalizing (`[SEP]`, `[MASK]`):
        `[SEP] hi` is one special token and a word, `[sep] hi` five ordinary tokens, so such a text is keyed
        as it is. The normalizer drops control characters, so no normal form starts with the raw marker. Texts
        come from orjson, which refuses lone surrogates, so every text encodes to UTF-8."""
        normalize, raw_tokens = self._normalizer
        if any(token in raw for token in raw_tokens):
            return b"\x00raw:" + raw.encode("utf-8")
        return normalize(raw).encode("utf-8")

    @functools.cached_property
    def _normalizer(self) -> tuple[Any, tuple[str, ...]]:
        """(normalize, the added tokens matched on the raw text). Its own copy of the tokenizer: the event loop
        normalizes while the preprocessing thread tokenizes."""
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(str(self.tokenizer.path))
        raw_tokens = tuple(t.content for t in tokenizer.get_added_tokens_decoder().values() if not t.normalized)
        normalizer = tokenizer.normalizer
        return ((lambda text: text) if normalizer is None else normalizer.normalize_str), raw_tokens

    def instance(self, value: Any, field: str) -> Any:
        text = value.get("text") if isinstance(value, dict) else value
        if not isinstance(text, str):
            raise InvalidInput(f'{field} must be a string (or {{"text": string}}) for a text encoder', field)
        if not text.strip():
            raise InvalidInput(f"{field} is empty or only whitespace; there is nothing to embed", field)
        return text

    def from_tensors(self, tensors: dict[str, Any]) -> list[Any]:
        if set(tensors) != {V2_TEXT_INPUT}:
            names = ", ".join(sorted(tensors)) or "none"
            raise InvalidInput(f"this model takes one BYTES input named {V2_TEXT_INPUT!r}, got {names}", "inputs")
        texts = v2_texts(tensors[V2_TEXT_INPUT], V2_TEXT_INPUT)
        for i, text in enumerate(texts):
            self.instance(text, f"{V2_TEXT_INPUT}[{i}]")
        return texts

    def v2_inputs(self) -> list[dict[str, Any]]:
        return [{"name": V2_TEXT_INPUT, "datatype": "BYTES", "shape": [-1]}]

    def warmup_batches(self, max_batch: int, max_cost: int) -> list[Arrays]:
        """One short text, a full batch of short ones, and the largest padded batch the token budget allows."""
        short = min(WARMUP_SHORT_TOKENS, self.max_length)
        longest_rows = max(1, min(max_batch, max_cost // self.max_length))
        shapes = sorted({(1, short), (max_batch, short), (longest_rows, self.max_length)})
        pad_id = self.tokenizer.pad_id
        return [pad_batch([[pad_id + 1] * tokens] * rows, pad_id) for rows, tokens in shapes]

    # -- the artifact ------------------------------------------------------------------------------------------

    def config(self) -> dict[str, Any]:
        return {
            "max_length": self.max_length,
            "padding": "longest",
            "truncation": "longest_first",
            "pooling": "mean",
            "normalize": "l2",
            "model_spec": self.spec.to_dict(),
        }

    def assets(self, work: Path | None = None) -> dict[str, Path]:
        return {TOKENIZER_ASSET: self.tokenizer.path}

    @classmethod
    def from_artifact(cls, config: dict[str, Any], directory: Path) -> Task:
        max_length = int(config["max_length"])
        spec = dataclasses.replace(ModelSpec.from_dict(config["model_spec"]), max_length=max_length)
        return cls(TextTokenizer(directory / TOKENIZER_ASSET, max_length), spec)


def expected_fusions(spec: ModelSpec) -> dict[str, int]:
    """What our fused BERT encoder has: per layer one Attention, one BiasGelu and two LayerNormalizations
    (after attention and after the FFN, each behind a plain Add: SkipLayerNormalization is left unfused on
    purpose, see runtime/onnx.py), and one EmbedLayerNormalization at the input."""
    layers = spec.num_layers
    return {
        "Attention": layers,
        "LayerNormalization": 2 * layers,
        "SkipLayerNormalization": 0,
        "BiasGelu": layers,
        "EmbedLayerNormalization": 1,
    }
