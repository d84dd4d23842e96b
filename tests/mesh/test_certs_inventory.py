"""SPIFFE certificates and the manifest inventory (pod names, Downward API env)."""

from __future__ import annotations

import datetime
import ssl
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from netdebug.mesh.certs import issue_mesh_certs
from netdebug.mesh.inventory import (
    Identity,
    build_inventory,
    downward_labels_file,
    parse_documents,
    pod_names,
    resolve_env,
    with_kustomize_origins,
)
from netdebug.mesh.translate import ca_path, cert_paths
from tests.mesh.fixtures import BASE, inventory

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


def test_pod_names_look_like_replicaset_pods_and_are_stable() -> None:
    template = {"metadata": {"labels": {"app": "echo"}}}
    template_hash, names = pod_names("echo-v1", template, 3)
    assert len(names) == 3
    assert len(set(names)) == 3
    for name in names:
        prefix, hash_part, suffix = name.rsplit("-", 2)
        assert prefix == "echo-v1"
        assert hash_part == template_hash
        assert len(hash_part) == 10
        assert len(suffix) == 5
        assert set(hash_part + suffix) <= set("bcdfghjklmnpqrstvwxz2456789")
    assert pod_names("echo-v1", template, 3) == (template_hash, names)
    assert pod_names("echo-v1", {"metadata": {"labels": {"app": "other"}}}, 1)[0] != template_hash


def test_replicas_and_labels() -> None:
    inv = inventory(BASE)
    versions = sorted(pod.version for pod in inv.pods)
    assert versions == ["v1", "v1", "v2"]
    for pod in inv.pods:
        assert pod.labels["pod-template-hash"] in pod.name
        assert pod.service_account == f"echo-{pod.version}"
        assert pod.http_port == 8080


def test_resolve_env_is_what_the_downward_api_sets() -> None:
    pod = inventory(BASE).pods[0]
    env, warnings = resolve_env(pod, pod_ip="127.0.0.1", node_name="node-a")
    assert warnings == []
    assert env["POD_NAME"] == pod.name  # from the fieldRef in the manifest
    assert env["SERVICE_VERSION"] == pod.version  # metadata.labels['version']
    assert env["HTTP_PORT"] == "8080"  # a literal value
    # Filled in even though the fixture manifest does not ask for them.
    assert env["POD_NAMESPACE"] == "echo"
    assert env["POD_IP"] == "127.0.0.1"
    assert env["NODE_NAME"] == "node-a"
    assert env["POD_SERVICE_ACCOUNT"] == pod.service_account


def test_labels_file_format() -> None:
    assert downward_labels_file({"version": "v1", "app": "echo"}) == 'app="echo"\nversion="v1"\n'


@pytest.mark.parametrize(
    ("text", "warning"),
    [
        pytest.param(
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: np, namespace: echo}\n",
            "NetworkPolicy echo/np: kind not emulated",
            id="network-policy",
        ),
        pytest.param(
            "apiVersion: batch/v1\nkind: Job\nmetadata: {name: probe, namespace: echo}\n",
            "Job echo/probe: not started",
            id="job",
        ),
    ],
)
def test_kinds_not_emulated_warn(text: str, warning: str) -> None:
    inv = build_inventory(parse_documents(text, "x.yaml"))
    assert any(warning in w for w in inv.warnings), inv.warnings


def test_list_kind_is_flattened_and_duplicates_rejected() -> None:
    text = (
        "apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: ServiceAccount, metadata: {name: a}}\n"
    )
    assert [d.name for d in parse_documents(text, "x.yaml")] == ["a"]
    from netdebug.mesh.inventory import ManifestError

    with pytest.raises(ManifestError, match=r"ServiceAccount default/a: metadata\.name: duplicate of"):
        build_inventory(parse_documents(text + "---\n" + text.replace("kind: List", "kind: List"), "x.yaml"))


def test_kustomize_origin_annotation_names_the_file() -> None:
    text = (
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: s\n  annotations:\n"
        "    config.kubernetes.io/origin: |\n      path: ../k8s/base/service.yaml\n    keep: me\n"
        "---\napiVersion: v1\nkind: ServiceAccount\nmetadata: {name: a}\n"
    )
    docs = with_kustomize_origins(parse_documents(text, "rendered"), "/w/wrap", lambda p: f"<{p}>")
    assert docs[0].where("spec") == "</w/k8s/base/service.yaml>: Service default/s: spec"
    assert docs[0].data["metadata"]["annotations"] == {"keep": "me"}
    assert docs[1].where() == "rendered (document 2): ServiceAccount default/a"


def test_cluster_scoped_kinds_are_named_without_namespace() -> None:
    (doc,) = parse_documents("apiVersion: v1\nkind: Namespace\nmetadata: {name: echo}\n", "ns.yaml")
    assert doc.where("metadata.labels") == "ns.yaml (document 1): Namespace echo: metadata.labels"
