"""One rendered Kubernetes document, in the two forms its users need. Pure.

- `Document` is a parsed document plus where it came from (file, or the kustomization and the
  document's position), so every error can name the file, the kind, the namespace/name and the
  field: `where()` and `error()` write that prefix. `mesh up` and the typed inventory use it.
- `Doc` is the bare mapping, read through the accessors below. The cross-reference checks work on
  it because they must accept any shape (`spec: null`, a list where a mapping belongs) and report
  it as a finding, where building the typed inventory would stop at the first bad field.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

Doc = dict[str, Any]

ISTIO_NETWORKING_GROUP = "networking.istio.io"
ISTIO_SECURITY_GROUP = "security.istio.io"
ISTIO_NETWORKING_VERSIONS = frozenset(
    {
        f"{ISTIO_NETWORKING_GROUP}/v1",
        f"{ISTIO_NETWORKING_GROUP}/v1beta1",
        f"{ISTIO_NETWORKING_GROUP}/v1alpha3",
    }
)
GATEWAY_API_GROUP = "gateway.networking.k8s.io"

CLUSTER_SCOPED = frozenset(
    {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition", "GatewayClass"}
)


class ManifestError(Exception):
    """Bad manifests, input that cannot be emulated, or a failed render: one line naming where."""


@dataclass(frozen=True)
class Document:
    data: Mapping[str, Any]
    origin: str  # file path, or "kubectl kustomize DIR"
    index: int | None  # position of the document in that stream, from 0; None when origin is exact

    @property
    def kind(self) -> str:
        return str(self.data.get("kind", ""))

    @property
    def api_version(self) -> str:
        return str(self.data.get("apiVersion", ""))

    @property
    def name(self) -> str:
        meta = self.data.get("metadata")
        return str(meta.get("name", "")) if isinstance(meta, Mapping) else ""

    @property
    def namespace(self) -> str:
        meta = self.data.get("metadata")
        ns = meta.get("namespace") if isinstance(meta, Mapping) else None
        return str(ns) if ns else "default"

    @property
    def spec(self) -> Mapping[str, Any]:
        spec = self.data.get("spec")
        return spec if isinstance(spec, Mapping) else {}

    def where(self, field_path: str = "") -> str:
        """`origin (document N): Kind ns/name: field` — the prefix of every message about this document."""
        doc_no = f" (document {self.index + 1})" if self.index is not None else ""
        name = self.name if self.kind in CLUSTER_SCOPED else f"{self.namespace}/{self.name}"
        at = f"{self.origin}{doc_no}: {self.kind} {name}"
        return f"{at}: {field_path}" if field_path else at

    def error(self, field_path: str, message: str) -> ManifestError:
        return ManifestError(f"{self.where(field_path)}: {message}")


# --- accessors of a bare `Doc` --------------------------------------------------------------------


def group_of(doc: Mapping[str, Any]) -> str:
    api_version = str(doc.get("apiVersion", ""))
    return api_version.rpartition("/")[0]


def namespace_of(doc: Mapping[str, Any], default: str = "default") -> str:
    return str(doc.get("metadata", {}).get("namespace") or default)


def name_of(doc: Mapping[str, Any]) -> str:
    return str(doc.get("metadata", {}).get("name", ""))


def of_kind(docs: Iterable[Doc], kind: str, group: str | None = None) -> Iterator[Doc]:
    for doc in docs:
        if doc.get("kind") == kind and (group is None or group_of(doc) == group):
            yield doc


def find(docs: Iterable[Doc], kind: str, name: str, namespace: str, group: str | None = None) -> Doc | None:
    for doc in of_kind(docs, kind, group):
        if name_of(doc) == name and namespace_of(doc) == namespace:
            return doc
    return None
