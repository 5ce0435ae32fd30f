"""Open Inference Protocol v2 calls over gRPC for synchronous tests (each opens and closes its own channel)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import numpy as np


def grpc_infer(target: str, model: str, tensors: dict[str, Any], *, raw: bool = True) -> dict[str, np.ndarray]:
    """One Open Inference Protocol v2 ModelInfer over gRPC, from a synchronous test: the output tensors."""
    from inferopt.serve.grpc_client import GrpcClient

    async def call() -> dict[str, np.ndarray]:
        async with GrpcClient(target) as client:
            return await client.infer(model, tensors, raw=raw)

    return asyncio.run(call())


def grpc_error(target: str, model: str, tensors: dict[str, Sequence[Any] | np.ndarray]) -> tuple[str, str]:
    """(status code name, message) of a ModelInfer that must fail."""
    import grpc

    try:
        grpc_infer(target, model, tensors)
    except grpc.RpcError as exc:
        return exc.code().name, exc.details()
    raise AssertionError("the call succeeded")
