"""The stack's own certificate authority and the broker's server certificate, made at first start.

``<state>/tls/`` holds ``ca.pem`` (give it to TLS clients), ``ca.key``, ``server.pem`` and
``server.key``. Existing files are kept, so clients that trust the CA keep working across restarts; the
server certificate alone is issued again (by the same CA) when it is missing, within 30 days of expiry,
or does not name a host the broker is now reached at.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from eldercare.platform.stack.errors import StackError
from eldercare.platform.stack.host import RunAs, ensure_dir, write_private

CA_LIFETIME = dt.timedelta(days=3650)
SERVER_LIFETIME = dt.timedelta(days=825)
RENEW_BEFORE = dt.timedelta(days=30)
DEFAULT_HOSTS: tuple[str, ...] = ("127.0.0.1", "::1", "localhost")
_BACKDATE = dt.timedelta(minutes=5)  # tolerate clocks slightly behind ours


@dataclass(frozen=True, slots=True)
class TlsFiles:
    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path


def tls_files(state_dir: Path) -> TlsFiles:
    folder = state_dir / "tls"
    return TlsFiles(
        ca_cert=folder / "ca.pem",
        ca_key=folder / "ca.key",
        server_cert=folder / "server.pem",
        server_key=folder / "server.key",
    )


def ensure_certificates(
    *, state_dir: Path, hosts: Sequence[str] = DEFAULT_HOSTS, key_owner: RunAs | None = None
) -> TlsFiles:
    """Create what is missing; ``key_owner`` (the broker's user) gets to read the server key."""
    files = tls_files(state_dir)
    ensure_dir(files.ca_cert.parent, mode=0o755)
    now = dt.datetime.now(dt.UTC)
    if not (files.ca_cert.exists() and files.ca_key.exists()):
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_cert = _ca_certificate(ca_key, now=now)
        write_private(files.ca_key, _key_pem(ca_key), mode=0o600)
        write_private(files.ca_cert, ca_cert.public_bytes(serialization.Encoding.PEM), mode=0o644)
        files.server_cert.unlink(missing_ok=True)
    if _needs_server_certificate(files, now=now, hosts=hosts):
        ca_key = _load_key(files.ca_key)
        ca_cert = x509.load_pem_x509_certificate(files.ca_cert.read_bytes())
        server_key = ec.generate_private_key(ec.SECP256R1())
        server_cert = _server_certificate(server_key, ca_key=ca_key, ca_cert=ca_cert, hosts=hosts, now=now)
        write_private(files.server_key, _key_pem(server_key), mode=0o600, owner=key_owner)
        write_private(files.server_cert, server_cert.public_bytes(serialization.Encoding.PEM), mode=0o644)
    elif key_owner is not None:
        info = files.server_key.stat()
        if (info.st_uid, info.st_gid) != (key_owner.uid, key_owner.gid):
            write_private(files.server_key, files.server_key.read_bytes(), mode=0o600, owner=key_owner)
    return files


def _needs_server_certificate(files: TlsFiles, *, now: dt.datetime, hosts: Sequence[str]) -> bool:
    """Missing, close to expiry, or not naming every host clients will use."""
    if not (files.server_cert.exists() and files.server_key.exists()):
        return True
    cert = x509.load_pem_x509_certificate(files.server_cert.read_bytes())
    if cert.not_valid_after_utc - now < RENEW_BEFORE:
        return True
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return not set(_general_names(hosts)) <= set(names)


def _general_names(hosts: Sequence[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


def _ca_certificate(key: ec.EllipticCurvePrivateKey, *, now: dt.datetime) -> x509.Certificate:
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "eldercare local stack"),
            x509.NameAttribute(NameOID.COMMON_NAME, "eldercare local stack CA"),
        ]
    )
    public = key.public_key()
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + CA_LIFETIME)
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
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )


def _server_certificate(
    key: ec.EllipticCurvePrivateKey,
    *,
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    hosts: Sequence[str],
    now: dt.datetime,
) -> x509.Certificate:
    public = key.public_key()
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
        .issuer_name(ca_cert.subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(min(now + SERVER_LIFETIME, ca_cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(_general_names(hosts)), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
        .sign(ca_key, hashes.SHA256())
    )


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _load_key(path: Path) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise StackError("tls", f"{path} does not hold an EC private key")
    return key
