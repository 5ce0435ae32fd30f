"""One model of a Triton repository as `inferopt export triton` plans it: what deploy/triton.py writes into its
config.pbtxt and deploy/triton_readme.py tells a client about."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from inferopt.runtime.placement import Placement


@dataclass(frozen=True)
class TritonModel:
    """One model of the repository: a model path of the artifact with the numbers its config carries."""

    name: str
    path: str  # the artifact's model path: "default" or one of runtime.paths
    variant: str
    graph: Path  # the artifact's ONNX file
    max_batch_size: int  # 0: Triton does not batch (some tensor has no dynamic axis 0)
    preferred_batch_size: int
    max_queue_delay_us: int
    instances: int
    intra_op_threads: int
    placement: Placement = field(default_factory=Placement.cpu)  # where the benchmark ran it
