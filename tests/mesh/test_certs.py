"""SPIFFE certificates of the local mesh, as istiod's CA would issue them."""

from __future__ import annotations

import datetime
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from netdebug.k8s.inventory import Identity
from netdebug.mesh.certs import issue_mesh_certs
from netdebug.mesh.translate.model import ca_path, cert_paths

NOW = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)


def test_workload_certs_carry_the_spiffe_id_and_chain_to_the_ca(tmp_path: Path) -> None:
    ids = [Identity("echo", "echo-v1"), Identity("istio-system", "istio-ingressgateway-service-account")]
    issue_mesh_certs(tmp_path, ids, NOW)
    ca = x509.load_pem_x509_certificate(Path(ca_path(str(tmp_path))).read_bytes())
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    for identity in ids:
        cert_file, key_file = cert_paths(str(tmp_path), identity)
        cert = x509.load_pem_x509_certificate(Path(cert_file).read_bytes())
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        assert san.critical  # empty subject → SAN must be critical (RFC 5280)
        assert san.value.get_values_for_type(x509.UniformResourceIdentifier) == [identity.spiffe]
        assert cert.subject == x509.Name([])
        assert cert.issuer == ca.subject
        cert.verify_directly_issued_by(ca)
        assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
        assert Path(key_file).stat().st_mode & 0o077 == 0  # the key is private to its owner
        assert cert.not_valid_before_utc <= NOW < cert.not_valid_after_utc
        # The pair loads as a TLS identity (what Envoy will do with it).
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert_file, key_file)
