"""ONNX Runtime backend. It runs where its Placement says, on exactly the providers the placement names: never
"whatever this onnxruntime build offers", which on a GPU host would move a CPU-measured artifact to CUDA."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from inferopt.errors import PlacementUnavailable
from inferopt.runtime.base import Arrays, Backend
from inferopt.runtime.buckets import BucketedBackend, Shape
from inferopt.runtime.placement import Placement, engine_cache_dir

# ONNX Runtime's CPU SkipLayerNormalization kernel measured 4x slower than the LayerNormalization + Add it
# replaces (onnxruntime 1.32, AVX-512 CPU: 1,040 ms vs 238 ms over STS-B dev, one thread), where it was 29% of
# an INT8 MiniLM's time. Our graphs keep Add + LayerNormalization, and sessions do not re-fuse them.
DISABLED_OPTIMIZERS = ("SkipLayerNormFusion",)


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
        placement: Placement | None = None,
        disabled_optimizers: tuple[str, ...] = DISABLED_OPTIMIZERS,
    ) -> None:
        import onnxruntime as ort

        self.model_path = Path(model_path)
        self.intra_op_threads = intra_op_threads
        self.placement = placement or Placement.cpu()
        cache = engine_cache_dir(self.model_path, self.placement) if self.placement.uses_engine_cache else None
        self.session = ort.InferenceSession(
            str(self.model_path),
            sess_options=session_options(intra_op_threads),
            providers=self.placement.session_providers(cache),
            # The CPU kernel is slow (above); on a GPU the fused SkipLayerNormalization is the fast one.
            disabled_optimizers=[] if self.placement.on_gpu else list(disabled_optimizers),
        )
        self._check_providers()
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.input_shapes: dict[str, Shape] = {i.name: tuple(i.shape) for i in self.session.get_inputs()}
        self.output_shapes: dict[str, Shape] = {o.name: tuple(o.shape) for o in self.session.get_outputs()}

    def _check_providers(self) -> None:
        # onnxruntime falls back to the CPU, silently, when a GPU provider's libraries (CUDA, cuDNN, TensorRT)
        # fail to load: that would serve a GPU-measured artifact on the CPU.
        wanted, got = self.placement.providers[0], self.session.get_providers()
        if wanted not in got:
            raise PlacementUnavailable(
                f"onnxruntime could not start {wanted} for {self.model_path.name} (it offered {', '.join(got)})",
                "check that the CUDA, cuDNN and TensorRT libraries onnxruntime-gpu needs are installed and found",
            )

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
            "placement": self.placement.label,
            "intra_op_threads": self.intra_op_threads,
        }


def open_backend(model_path: str | Path, placement: Placement | None = None, intra_op_threads: int = 1) -> Backend:
    """An ONNX Runtime session on `placement`, padded to its shape buckets where it has them."""

    backend = OnnxBackend(model_path, intra_op_threads=intra_op_threads, placement=placement)
    if not backend.placement.batch_buckets:
        return backend
    placement = backend.placement
    return BucketedBackend(
        backend, backend.input_shapes, placement.batch_buckets, placement.sequence_buckets, backend.output_shapes
    )
