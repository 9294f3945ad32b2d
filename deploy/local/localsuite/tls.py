"""The dev CA and the broker's TLS certificate for the SASL_SSL listener, made once.

Files under ``<ZC_LOCAL_HOME>/kafka-tls/``: ``ca.pem`` (what clients trust:
``KAFKA_SSL_CAFILE``), ``ca-key.pem`` and ``broker.pem`` (the broker's PKCS#8 key and its
certificate chain, a Kafka PEM keystore: ``ssl.keystore.type=PEM``). Made with
``cryptography``, so this module needs the project's venv (engines.py runs from it).
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from pathlib import Path

from .common import EngineError

VALID_DAYS = 825  # the longest validity macOS and browsers accept for a server certificate


def _write_private(path: Path, data: bytes) -> None:
    path.touch(mode=0o600)
    path.write_bytes(data)


def ensure_broker_tls(folder: Path) -> tuple[Path, Path]:
    """``(ca.pem, broker.pem)`` in ``folder``; made on the first call, reused afterwards."""
    ca_pem, keystore = folder / "ca.pem", folder / "broker.pem"
    if ca_pem.exists() and keystore.exists():
        return ca_pem, keystore
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
    except ImportError as exc:  # engines.py run by a Python without the project's venv
        raise EngineError(
            "the Kafka dev CA needs the 'cryptography' package: run engines.py with .venv/bin/python"
        ) from exc
    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "zerocontact local dev CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    pkcs8 = serialization.PrivateFormat.PKCS8
    plain = serialization.NoEncryption()
    _write_private(folder / "ca-key.pem", ca_key.private_bytes(pem, pkcs8, plain))
    _write_private(
        keystore,
        key.private_bytes(pem, pkcs8, plain) + cert.public_bytes(pem) + ca_cert.public_bytes(pem),
    )
    tmp = ca_pem.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_bytes(ca_cert.public_bytes(pem))
    tmp.replace(ca_pem)  # last: its presence means the folder is complete
    return ca_pem, keystore
