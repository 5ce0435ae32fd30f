"""TLS at start-up: the certificate and key `--ssl-certfile` / `--ssl-keyfile` name are checked before the
server binds (readable, a pair, inside their validity dates), so a wrong file is one clear line rather than a
handshake failure on the first client. The same pair serves HTTP (uvicorn) and gRPC.
"""

from __future__ import annotations

import ssl
from datetime import UTC, datetime
from pathlib import Path

from inferopt.errors import InputError

HINT = "pip install 'inferopt[tls]'"


def check_tls(certfile: Path | None, keyfile: Path | None, *, now: datetime | None = None) -> None:
    if certfile is None or keyfile is None:
        return
    for flag, path in (("--ssl-certfile", certfile), ("--ssl-keyfile", keyfile)):
        if not path.is_file():
            raise InputError(f"{flag} {path}: no such file", "give the PEM file's path")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(certfile, keyfile)
    except ssl.SSLError as exc:
        what = (
            "the private key does not match the certificate"
            if "KEY_VALUES_MISMATCH" in str(exc)
            else f"not a PEM certificate and private key ({exc.reason or exc})"
        )
        raise InputError(
            f"--ssl-certfile {certfile} / --ssl-keyfile {keyfile}: {what}", "give the certificate and its own key"
        ) from None
    _check_dates(certfile, now or datetime.now(UTC))


def _check_dates(certfile: Path, now: datetime) -> None:
    try:
        from cryptography import x509
    except ImportError:
        raise InputError("--ssl-certfile needs the cryptography package to check its dates", HINT) from None
    certificate = x509.load_pem_x509_certificate(certfile.read_bytes())
    if now > certificate.not_valid_after_utc:
        raise InputError(
            f"--ssl-certfile {certfile}: the certificate expired on "
            f"{certificate.not_valid_after_utc:%Y-%m-%d %H:%M} UTC",
            "renew it, or give the current one",
        )
    if now < certificate.not_valid_before_utc:
        raise InputError(
            f"--ssl-certfile {certfile}: the certificate is not valid until "
            f"{certificate.not_valid_before_utc:%Y-%m-%d %H:%M} UTC",
            "check this machine's clock, or give a certificate valid now",
        )
