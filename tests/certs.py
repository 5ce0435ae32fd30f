"""Self-signed certificates for the TLS tests, made on the spot (cryptography): one for 127.0.0.1 valid now,
one that expired yesterday, and a key that belongs to neither."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from ipaddress import IPv4Address
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def private_key(path: Path) -> ec.EllipticCurvePrivateKey:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    path.write_bytes(pem)
    return key


def certificate(
    directory: Path, name: str = "server", *, valid_days: float = 1.0, expired: bool = False
) -> tuple[Path, Path]:
    """(certificate, key) for 127.0.0.1 and localhost, PEM files in `directory`."""
    key = private_key(directory / f"{name}.key")
    now = datetime.now(UTC)
    start, end = (
        (now - timedelta(days=3), now - timedelta(days=1))
        if expired
        else (now - timedelta(minutes=5), now + timedelta(days=valid_days))
    )
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(IPv4Address("127.0.0.1")), x509.DNSName("localhost")]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    path = directory / f"{name}.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path, directory / f"{name}.key"
