"""Throw-away certificates for the test plane, made with the ``cryptography`` package.

One CA signs the kube-apiserver serving certificate (SANs 127.0.0.1, localhost and the
``kubernetes`` Service names) and an admin client certificate in ``system:masters``. A separate
key signs ServiceAccount tokens. Elliptic-curve keys keep generation in the milliseconds.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = dt.timedelta(days=2)
SERVING_DNS_NAMES = ("localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc")
SERVING_IPS = ("127.0.0.1", "10.0.0.1")


@dataclass(frozen=True)
class PkiFiles:
    """PEM files written by :func:`write_pki`."""

    ca_cert: Path
    ca_key: Path
    serving_cert: Path
    serving_key: Path
    admin_cert: Path
    admin_key: Path
    service_account_key: Path
    service_account_pub: Path


@dataclass(frozen=True)
class _Issued:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey


def _name(common_name: str, organization: str | None = None) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(attributes)


def _builder(subject: x509.Name, issuer: x509.Name, key: ec.EllipticCurvePrivateKey) -> x509.CertificateBuilder:
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
    )


def _new_ca() -> _Issued:
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name("outbound-test-plane-ca")
    cert = (
        _builder(name, name, key)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_usage(cert_sign=True), critical=True)
        .sign(key, hashes.SHA256())
    )
    return _Issued(cert, key)


def _usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _issue(ca: _Issued, subject: x509.Name, extensions: list[x509.ExtensionType]) -> _Issued:
    key = ec.generate_private_key(ec.SECP256R1())
    builder = _builder(subject, ca.cert.subject, key)
    builder = builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
    builder = builder.add_extension(_usage(cert_sign=False), critical=True)
    for extension in extensions:
        builder = builder.add_extension(extension, critical=False)
    return _Issued(builder.sign(ca.key, hashes.SHA256()), key)


def _serving(ca: _Issued) -> _Issued:
    names: list[x509.GeneralName] = [x509.DNSName(name) for name in SERVING_DNS_NAMES]
    names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in SERVING_IPS]
    extensions: list[x509.ExtensionType] = [
        x509.SubjectAlternativeName(names),
        x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
    ]
    return _issue(ca, _name("kube-apiserver"), extensions)


def _client(ca: _Issued, user: str, group: str) -> _Issued:
    return _issue(ca, _name(user, group), [x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH])])


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    path.chmod(0o600)
    return path


def _write_pair(directory: Path, stem: str, issued: _Issued) -> tuple[Path, Path]:
    cert = _write(directory / f"{stem}.crt", issued.cert.public_bytes(serialization.Encoding.PEM))
    return cert, _write(directory / f"{stem}.key", _key_pem(issued.key))


def _write_service_account_key(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return _write(directory / "sa.key", _key_pem(key)), _write(directory / "sa.pub", public)


def write_pki(directory: Path) -> PkiFiles:
    """Create a CA, the serving and admin certificates and the ServiceAccount key in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = _new_ca()
    ca_cert, ca_key = _write_pair(directory, "ca", ca)
    serving_cert, serving_key = _write_pair(directory, "apiserver", _serving(ca))
    admin_cert, admin_key = _write_pair(directory, "admin", _client(ca, "outbound-test-admin", "system:masters"))
    sa_key, sa_pub = _write_service_account_key(directory)
    return PkiFiles(ca_cert, ca_key, serving_cert, serving_key, admin_cert, admin_key, sa_key, sa_pub)


def issue_server_certificate(pki: PkiFiles, directory: Path, stem: str, ips: list[str]) -> tuple[Path, Path]:
    """A serving certificate for ``ips`` signed by the plane's CA (which every pod's ``ca.crt`` is):
    for test servers that pods call over https. Returns (certificate, key) paths."""
    key = serialization.load_pem_private_key(pki.ca_key.read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    ca = _Issued(x509.load_pem_x509_certificate(pki.ca_cert.read_bytes()), key)
    names: list[x509.GeneralName] = [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
    extensions: list[x509.ExtensionType] = [
        x509.SubjectAlternativeName(names),
        x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
    ]
    directory.mkdir(parents=True, exist_ok=True)
    return _write_pair(directory, stem, _issue(ca, _name(stem), extensions))
