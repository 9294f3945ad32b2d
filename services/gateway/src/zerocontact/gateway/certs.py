"""A development certificate authority: the gateway's server certificate and partners' client
certificates, for local runs and tests (production certificates come from the bank's PKI).

A partner's certificate names the partner twice: subject CN = the partner id and a SAN URI
``urn:zerocontact:partner:<id>``; the gateway reads the URI from the verified peer chain.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

PARTNER_URI_PREFIX = "urn:zerocontact:partner:"


@dataclass(frozen=True)
class Issued:
    """A certificate and its private key, PEM."""

    cert_pem: bytes
    key_pem: bytes

    def write(self, directory: Path, name: str) -> tuple[Path, Path]:
        """Write ``<name>.crt`` and ``<name>.key`` (0600) into ``directory``."""
        directory.mkdir(parents=True, exist_ok=True)
        cert, key = directory / f"{name}.crt", directory / f"{name}.key"
        cert.write_bytes(self.cert_pem)
        key.write_bytes(self.key_pem)
        key.chmod(0o600)
        return cert, key


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "zerocontact development"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def issue_ca(common_name: str = "zerocontact development CA", *, days: int = 3650) -> Issued:
    """A self-signed CA (P-256)."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
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
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .sign(key, hashes.SHA256())
    )
    return Issued(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def _leaf(
    ca: Issued,
    common_name: str,
    sans: list[x509.GeneralName],
    usage: x509.ObjectIdentifier,
    days: int,
) -> Issued:
    ca_cert = x509.load_pem_x509_certificate(ca.cert_pem)
    ca_key = serialization.load_pem_private_key(ca.key_pem, password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise TypeError("the development CA key must be an EC key")
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return Issued(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def issue_server(ca: Issued, hosts: list[str] | None = None, *, days: int = 825) -> Issued:
    """The gateway's server certificate for ``hosts`` (DNS names or IP addresses)."""
    sans: list[x509.GeneralName] = []
    for host in hosts or ["localhost", "127.0.0.1", "gateway"]:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            sans.append(x509.DNSName(host))
    return _leaf(ca, "zerocontact gateway", sans, ExtendedKeyUsageOID.SERVER_AUTH, days)


def issue_partner(ca: Issued, partner_id: str, *, days: int = 365) -> Issued:
    """A partner's client certificate: CN = partner id, SAN URI urn:zerocontact:partner:<id>."""
    sans: list[x509.GeneralName] = [x509.UniformResourceIdentifier(PARTNER_URI_PREFIX + partner_id)]
    return _leaf(ca, partner_id, sans, ExtendedKeyUsageOID.CLIENT_AUTH, days)


def load(directory: Path, name: str) -> Issued:
    """Read ``<name>.crt`` and ``<name>.key`` from ``directory``."""
    return Issued(
        (directory / f"{name}.crt").read_bytes(), (directory / f"{name}.key").read_bytes()
    )


def still_valid(
    directory: Path, name: str, *, issuer: Issued | None = None, margin_days: int = 30
) -> Issued | None:
    """``<name>.crt``/``.key`` of ``directory`` if both are there, parse, stay valid for
    ``margin_days`` more and (given an ``issuer``) were signed by it; None otherwise."""
    try:
        found = load(directory, name)
        cert = x509.load_pem_x509_certificate(found.cert_pem)
        serialization.load_pem_private_key(found.key_pem, password=None)
        if issuer is not None:
            cert.verify_directly_issued_by(x509.load_pem_x509_certificate(issuer.cert_pem))
    except (OSError, ValueError, TypeError, InvalidSignature):  # missing, unreadable, other CA
        return None
    if cert.not_valid_after_utc < datetime.now(UTC) + timedelta(days=margin_days):
        return None
    return found
