"""PyTorch eager backend: the FP32 baseline every variant is measured against, and BF16 autocast."""

from __future__ import annotations

from typing import Any

import numpy as np

from inferopt.runtime.base import Arrays


class TorchBackend:
    def __init__(
        self,
        module: Any,
        output_names: list[str],
        *,
        intra_op_threads: int | None = None,
        autocast_dtype: str | None = None,
    ) -> None:
        import torch

        if intra_op_threads:
            torch.set_num_threads(intra_op_threads)
        self.module = module.eval()
        self.output_names = output_names
        self.autocast_dtype = autocast_dtype
        self._dtype = getattr(torch, autocast_dtype) if autocast_dtype else None

    def run(self, inputs: Arrays) -> Arrays:
        import torch

        tensors = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in inputs.items()}
        with torch.inference_mode(), torch.autocast("cpu", dtype=self._dtype, enabled=self._dtype is not None):
            outputs = self.module(**tensors)
        if isinstance(outputs, torch.Tensor):
            outputs = (outputs,)
        return {name: out.float().numpy() for name, out in zip(self.output_names, outputs, strict=True)}

    def warmup(self, example: Arrays) -> None:
        self.run(example)

    def info(self) -> dict[str, object]:
        import torch

        return {
            "runtime": "torch",
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "autocast": self.autocast_dtype,
        }
