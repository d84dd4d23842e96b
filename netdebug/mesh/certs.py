"""A throw-away mesh CA and SPIFFE workload certificates, as istiod's CA would issue them.

Workload certificates follow Istio's shape: an empty subject, the identity only in a critical URI
SAN `spiffe://cluster.local/ns/<ns>/sa/<sa>`, EC P-256 keys, usable for both server and client
auth (every sidecar is both). The CA's subject is `O=cluster.local` like Istio's self-signed root.
Keys never leave the temporary directory the caller chooses.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Iterable
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from netdebug.k8s.hosts import CLUSTER_DOMAIN
from netdebug.k8s.inventory import Identity
from netdebug.mesh.translate.model import ca_path, cert_paths

# Istio's default workload certificate lifetime.
WORKLOAD_TTL = datetime.timedelta(hours=24)
CA_TTL = datetime.timedelta(days=1)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def issue_mesh_certs(cert_dir: Path, identities: Iterable[Identity], now: datetime.datetime) -> None:
    """Write `ca.crt` and a certificate/key pair per identity into `cert_dir` (names from translate.model)."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, CLUSTER_DOMAIN)])
    start = now - datetime.timedelta(minutes=5)  # tolerate small clock differences
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(now + CA_TTL)
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
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    Path(ca_path(str(cert_dir))).write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    for identity in identities:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([]))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(now + WORKLOAD_TTL)
            # RFC 5280 §4.2.1.6: with an empty subject the SAN extension must be critical.
            .add_extension(
                x509.SubjectAlternativeName([x509.UniformResourceIdentifier(identity.spiffe)]), critical=True
            )
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=True,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                critical=False,
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
            )
            .sign(ca_key, hashes.SHA256())
        )
        cert_file, key_file = cert_paths(str(cert_dir), identity)
        Path(cert_file).write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        _write_private(Path(key_file), _key_pem(key))
