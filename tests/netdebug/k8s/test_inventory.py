"""The manifest inventory: pod names, Downward API env, kinds not emulated, kustomize origins."""

from __future__ import annotations

import pytest

from netdebug.k8s.inventory import build_inventory, downward_labels_file, pod_names, resolve_env
from netdebug.k8s.load import parse_documents, with_kustomize_origins
from tests.mesh.fixtures import BASE, inventory


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
    from netdebug.k8s.documents import ManifestError

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
