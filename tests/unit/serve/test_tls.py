"""TLS: with --ssl-certfile / --ssl-keyfile the server speaks HTTPS and gRPC over TLS with a certificate the
test makes, plain clients are turned away, and a wrong pair (expired, mismatched, not PEM, missing) is one
clear line at start-up, before anything binds."""

from __future__ import annotations

import ssl
from pathlib import Path

import grpc
import httpx
import pytest
from tests.certs import certificate, private_key

from inferopt.errors import InputError
from inferopt.serve.command import build_app
from inferopt.serve.config import ServeConfig
from inferopt.serve.grpc_client import GrpcClient
from inferopt.serve.testing import FAKE_NAME, ServerThread, fake_model
from inferopt.serve.tls import check_tls
from inferopt.tasks.text_embedding import TextEmbeddingTask

KEY = "k-tls-5e0d9c8b7a6f"


def test_https_and_grpc_over_tls_with_a_key(tmp_path: Path, task: TextEmbeddingTask) -> None:
    import asyncio

    cert, key = certificate(tmp_path)
    check_tls(cert, key)
    config = ServeConfig(access_log=False, ssl_certfile=cert, ssl_keyfile=key, grpc_port=0, api_keys=(KEY,))
    trust = ssl.create_default_context(cafile=str(cert))
    with ServerThread(fake_model(task=task), config) as server:
        assert server.url.startswith("https://")
        with httpx.Client(base_url=server.url, verify=trust) as client:
            assert client.get("/health/ready").json()["status"] == "ready"
            answer = client.post(
                f"/v1/models/{FAKE_NAME}:predict",
                json={"instances": ["hello"]},
                headers={"authorization": f"Bearer {KEY}"},
            )
            assert answer.status_code == 200 and len(answer.json()["predictions"][0]) == 384
        with pytest.raises(httpx.HTTPError):  # plain HTTP on the TLS port gets no answer
            httpx.get(server.url.replace("https://", "http://") + "/health/live", timeout=5)
        with pytest.raises(httpx.ConnectError):  # a client that does not trust the certificate stops
            httpx.get(server.url + "/health/live", timeout=5)

        async def over_grpc() -> None:
            async with GrpcClient(server.grpc_target, root_certificates=cert.read_bytes()) as client:
                metadata = (("authorization", f"Bearer {KEY}"),)
                outputs = await client.infer(FAKE_NAME, {"text": ["hello"]}, metadata=metadata)
                assert outputs["embeddings"].shape == (1, 384)
            async with GrpcClient(server.grpc_target) as plain:
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    await plain.infer(FAKE_NAME, {"text": ["hello"]}, timeout_s=5, metadata=metadata)
                assert caught.value.code() == grpc.StatusCode.UNAVAILABLE

        asyncio.run(over_grpc())


def test_a_wrong_certificate_or_key_is_one_line_at_start_up(tmp_path: Path) -> None:
    cert, key = certificate(tmp_path)
    expired, expired_key = certificate(tmp_path, "old", expired=True)
    stranger = tmp_path / "stranger.key"
    private_key(stranger)
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    cases = [
        ((expired, expired_key), r"the certificate expired on \d{4}-\d\d-\d\d"),
        ((cert, stranger), "the private key does not match the certificate"),
        ((junk, key), "not a PEM certificate and private key"),
        ((tmp_path / "missing.pem", key), "--ssl-certfile .*missing.pem: no such file"),
    ]
    for (certfile, keyfile), message in cases:
        with pytest.raises(InputError, match=message):
            # the artifact does not exist either: TLS is checked first, before any file is loaded
            build_app(ServeConfig(artifact=tmp_path / "no-artifact", ssl_certfile=certfile, ssl_keyfile=keyfile))
    with pytest.raises(InputError, match="--ssl-certfile and --ssl-keyfile go together"):
        ServeConfig(ssl_certfile=cert)
