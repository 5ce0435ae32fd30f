"""A client of the Open Inference Protocol v2 over gRPC: one channel (HTTP/2 carries concurrent calls on one
connection, so the channel is the pool), the protocol's calls by name, and tensors in and out. What the tests,
the transport benchmark and a Python caller without tritonclient use; any OIP v2 client works as well."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import grpc
import numpy as np
from grpc import aio

from inferopt.serve.wire import oip_v2_grpc as wire

Metadata = Sequence[tuple[str, str]]


class GrpcClient:
    def __init__(
        self, target: str, *, max_message_bytes: int = 64 * 1024 * 1024, root_certificates: bytes | None = None
    ) -> None:
        """`target`: HOST:PORT, or unix:PATH; `root_certificates` (PEM): speak TLS, trusting these."""
        options = [
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
        ]
        if root_certificates is None:
            self.channel = aio.insecure_channel(target, options=options)
        else:
            credentials = grpc.ssl_channel_credentials(root_certificates=root_certificates)
            self.channel = aio.secure_channel(target, credentials, options=options)
        self._calls = {
            name: self.channel.unary_unary(
                f"/{wire.SERVICE}/{name}",
                request_serializer=request.SerializeToString,
                response_deserializer=response.FromString,
            )
            for name, (request, response) in wire.CALLS.items()
        }

    async def call(
        self, name: str, request: Any, *, timeout_s: float | None = None, metadata: Metadata | None = None
    ) -> Any:
        """One call (`ModelInfer`, `ServerReady`, ...) with its request message; grpc.aio.AioRpcError on a status."""
        return await self._calls[name](request, timeout=timeout_s, metadata=metadata)

    async def infer(
        self,
        model: str,
        tensors: dict[str, np.ndarray | Sequence[str | bytes]],
        *,
        timeout_s: float | None = None,
        metadata: Metadata | None = None,
        raw: bool = True,
    ) -> dict[str, np.ndarray]:
        """The model's output tensors for `tensors` (name -> array, batch first; strings or bytes for BYTES)."""
        request = wire.infer_request_message(model, tensors, raw=raw)
        return wire.response_outputs(await self.call("ModelInfer", request, timeout_s=timeout_s, metadata=metadata))

    async def close(self) -> None:
        await self.channel.close()

    async def __aenter__(self) -> GrpcClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
