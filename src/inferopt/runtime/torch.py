"""PyTorch eager backend: the FP32 baseline every variant is measured against, and BF16 autocast. Inputs go to
the module positionally in the io schema's order; its outputs come back by the schema's output names."""

from __future__ import annotations

from typing import Any

import numpy as np

from inferopt.runtime.base import Arrays


class TorchBackend:
    def __init__(
        self,
        module: Any,
        input_names: list[str],
        output_names: list[str],
        *,
        intra_op_threads: int | None = None,
        autocast_dtype: str | None = None,
    ) -> None:
        import torch

        if intra_op_threads:
            torch.set_num_threads(intra_op_threads)
        self.module = module.eval()
        self.input_names = input_names
        self.output_names = output_names
        self.autocast_dtype = autocast_dtype
        self._dtype = getattr(torch, autocast_dtype) if autocast_dtype else None

    def run(self, inputs: Arrays) -> Arrays:
        import torch

        # Positionally, in the io schema's order: the order the ONNX export traced them in.
        tensors = [torch.from_numpy(np.ascontiguousarray(inputs[name])) for name in self.input_names]
        with torch.inference_mode(), torch.autocast("cpu", dtype=self._dtype, enabled=self._dtype is not None):
            outputs = self.module(*tensors)
        return dict(zip(self.output_names, (_numpy(o) for o in _as_tuple(outputs, self.output_names)), strict=True))

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


def _as_tuple(outputs: Any, names: list[str]) -> tuple[Any, ...]:
    """A module's outputs in `names` order: one tensor, a tuple or list of them, or a dict by name."""
    if isinstance(outputs, dict):
        return tuple(outputs[name] for name in names)
    if isinstance(outputs, (tuple, list)):
        return tuple(outputs)
    return (outputs,)


def _numpy(tensor: Any) -> np.ndarray:
    array: np.ndarray = tensor.float().numpy() if tensor.is_floating_point() else tensor.numpy()
    return array
