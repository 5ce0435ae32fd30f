"""ONNX Runtime backend. Providers are taken in order of preference among those this build has:
TensorRT -> CUDA -> CPU, unless the caller names them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from inferopt.runtime.base import Arrays

PREFERRED_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")

# ONNX Runtime's CPU SkipLayerNormalization kernel measured 4x slower than the LayerNormalization + Add it
# replaces (onnxruntime 1.32, AVX-512 CPU: 1,040 ms vs 238 ms over STS-B dev, one thread), where it was 29% of
# an INT8 MiniLM's time. Our graphs keep Add + LayerNormalization, and sessions do not re-fuse them.
DISABLED_OPTIMIZERS = ("SkipLayerNormFusion",)


def available_providers(preferred: tuple[str, ...] = PREFERRED_PROVIDERS) -> list[str]:
    import onnxruntime as ort

    have = set(ort.get_available_providers())
    return [p for p in preferred if p in have] or ["CPUExecutionProvider"]


def session_options(intra_op_threads: int, *, optimize: bool = True) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = (
        ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize else ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    )
    options.log_severity_level = 3
    if intra_op_threads == 1:
        # One thread per session: nothing to spin for, and spinning would steal the core of a sibling session.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


class OnnxBackend:
    def __init__(
        self,
        model_path: str | Path,
        *,
        intra_op_threads: int = 1,
        providers: list[str] | None = None,
        disabled_optimizers: tuple[str, ...] = DISABLED_OPTIMIZERS,
    ) -> None:
        import onnxruntime as ort

        self.model_path = Path(model_path)
        self.intra_op_threads = intra_op_threads
        self.session = ort.InferenceSession(
            str(self.model_path),
            sess_options=session_options(intra_op_threads),
            providers=providers or available_providers(),
            disabled_optimizers=list(disabled_optimizers),
        )
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]

    def run(self, inputs: Arrays) -> Arrays:
        feeds = {name: inputs[name] for name in self.input_names}
        outputs = self.session.run(self.output_names, feeds)
        return dict(zip(self.output_names, (np.asarray(o) for o in outputs), strict=True))

    def warmup(self, example: Arrays) -> None:
        self.run(example)

    def info(self) -> dict[str, object]:
        return {
            "runtime": "onnxruntime",
            "model": self.model_path.name,
            "providers": self.session.get_providers(),
            "intra_op_threads": self.intra_op_threads,
        }
