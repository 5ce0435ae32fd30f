"""Raw text -> token arrays (the `tokenizers` library: batched, truncated at the model's max length, padded
to the longest in the batch). No torch: the server tokenizes with it too."""

from __future__ import annotations

from pathlib import Path

import numpy as np


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


def pad_batch(ids: list[list[int]], pad_id: int = 0) -> dict[str, np.ndarray]:
    """Right-pad token id lists to the longest one; the mask marks real tokens."""
    width = max((len(row) for row in ids), default=0)
    input_ids = np.full((len(ids), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(ids), width), dtype=np.int64)
    for i, row in enumerate(ids):
        input_ids[i, : len(row)] = row
        mask[i, : len(row)] = 1
    return {"input_ids": input_ids, "attention_mask": mask, "token_type_ids": np.zeros_like(input_ids)}
