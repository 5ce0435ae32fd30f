"""The PyTorch side of the text-embedding task: a Hugging Face encoder with mean pooling and L2 normalisation
folded into one module, so the exported graph returns final embeddings."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from inferopt.errors import InputError


class PooledEncoder(nn.Module):
    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor
    ) -> torch.Tensor:
        hidden = self.encoder(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
        ).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        summed = (hidden * mask).sum(dim=1)
        counts = mask.sum(dim=1).clamp(min=1e-9)
        return nn.functional.normalize(summed / counts, p=2.0, dim=1)


def load_pooled_encoder(model_dir: Path) -> PooledEncoder:
    import transformers
    from transformers import AutoModel

    # Hugging Face prints a progress bar per model load; optimize's is the one that matters.
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()

    try:
        # Eager attention exports to the MatMul/Softmax pattern ONNX Runtime fuses into one Attention op;
        # the SDPA path exports a mask subgraph that defeats the fusion.
        encoder = AutoModel.from_pretrained(str(model_dir), attn_implementation="eager")
    except (OSError, ValueError) as exc:
        raise InputError(f"Could not load the model in {model_dir} ({exc})", "check the weights file") from exc
    return PooledEncoder(encoder).eval()
