"""Rendered manifests → a typed inventory of what a cluster would run (pure: no I/O).

The inventory holds the core kinds the local mesh emulates (Deployments → pods, Services,
ServiceAccounts) and keeps the routing kinds (Istio and Gateway API) as raw documents for the mesh
translation. Every error names the document and the field (`Document.error`, k8s/documents.py).

Each pod carries Istio's sidecar injection decision (`sidecar_injection`: the namespace's labels,
the pod template's `sidecar.istio.io/inject` label or annotation) and its ambient capture decision
(`ambient_capture`: `istio.io/dataplane-mode` on the namespace or the pod), each with the reason.

Pod names follow the ReplicaSet convention `<deployment>-<pod-template-hash>-<suffix>`, with both
parts drawn from Kubernetes' "safe" alphabet (no vowels, no 0/1/3) and derived from a hash of the
pod template, so a rendering always yields the same names.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from netdebug.k8s.documents import (
    GATEWAY_API_GROUP,
    ISTIO_NETWORKING_GROUP,
    ISTIO_SECURITY_GROUP,
    Document,
)
from netdebug.k8s.hosts import CLUSTER_DOMAIN, names_service, search_path_names, service_host

# k8s.io/apimachinery/pkg/util/rand SafeEncodeString: no vowels, no confusable digits.
_SAFE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
# The echo server's plain-HTTP port when the container does not set HTTP_PORT (issue 2 contract).
ECHO_DEFAULT_HTTP_PORT = 8080


@dataclass(frozen=True)
class Identity:
    """A workload identity: what Istio puts in the URI SAN of the workload's certificate."""

    namespace: str
    service_account: str

    @property
    def spiffe(self) -> str:
        return f"spiffe://{CLUSTER_DOMAIN}/ns/{self.namespace}/sa/{self.service_account}"

    @property
    def file_stem(self) -> str:
        return f"{self.namespace}.{self.service_account}"


@dataclass(frozen=True)
class ServicePort:
    name: str | None
    port: int
    target_port: int | str
    app_protocol: str | None

    @property
    def is_http(self) -> bool:
        """Istio's protocol selection: appProtocol first, else the port name's prefix."""
        proto = (self.app_protocol or "").lower()
        if proto:
            return proto in {"http", "http2", "h2c", "grpc", "kubernetes.io/h2c"}
        name = (self.name or "").lower()
        return name.split("-", 1)[0] in {"http", "http2", "grpc", "h2c"}


@dataclass(frozen=True)
class Service:
    doc: Document
    name: str
    namespace: str
    selector: Mapping[str, str]
    ports: tuple[ServicePort, ...]

    @property
    def fqdn(self) -> str:
        return service_host(self.name, self.namespace)

    def host_names(self, caller_namespace: str) -> list[str]:
        """Names a caller in `caller_namespace` can use for this Service (DNS search path)."""
        return search_path_names(self.name, self.namespace, caller_namespace)


@dataclass(frozen=True)
class EnvVar:
    name: str
    value: str | None = None
    field_path: str | None = None  # valueFrom.fieldRef.fieldPath


# Namespaces Istio's injector never injects (pkg/kube/inject: IgnoredNamespaces).
_NEVER_INJECTED = frozenset({"kube-system", "kube-public", "kube-node-lease", "local-path-storage"})
INJECTION_LABEL = "istio-injection"
REVISION_LABEL = "istio.io/rev"
SIDECAR_INJECT = "sidecar.istio.io/inject"


@dataclass(frozen=True)
class Injection:
    """Whether Istio's injector gives a pod a sidecar, and the manifest fact that decided it."""

    sidecar: bool
    reason: str


def sidecar_injection(
    namespace: str,
    namespace_labels: Mapping[str, str] | None,
    pod_labels: Mapping[str, str],
    pod_annotations: Mapping[str, str],
    host_network: bool = False,
) -> Injection:
    """Istio's sidecar injection decision for a pod template. Pure.

    Two steps, as in a cluster. First the injector's webhooks must be called for the pod: their
    selectors (istio-discovery chart, mutatingwebhook.yaml, default revision) read only labels:
    namespace `istio-injection: enabled`, or namespace `istio.io/rev` without `istio-injection`,
    unless the pod is labelled `sidecar.istio.io/inject: "false"`; in any other namespace without
    either label, a pod labelled `sidecar.istio.io/inject: "true"` (or `istio.io/rev`). Then the
    injector (pkg/kube/inject/inject.go injectRequired) reads `sidecar.istio.io/inject` from the pod's
    label, else its annotation: "false" skips injection, anything else injects.

    `namespace_labels` is None when the manifests do not define the namespace: injection is then
    assumed on (as for a namespace labelled for the mesh), and the reason says so.
    """
    label = pod_labels.get(SIDECAR_INJECT)
    if host_network:
        return Injection(False, "hostNetwork pods are never injected")
    if namespace in _NEVER_INJECTED:
        return Injection(False, f"namespace {namespace} is never injected")
    if namespace_labels is None:
        selected, why = (
            True,
            f"namespace {namespace} is not in the manifests (assumed labelled for injection)",
        )
    elif INJECTION_LABEL in namespace_labels:
        value = namespace_labels[INJECTION_LABEL]
        selected, why = value == "enabled", f"namespace {namespace} has {INJECTION_LABEL}: {value}"
    elif REVISION_LABEL in namespace_labels:
        selected = True
        why = f"namespace {namespace} has {REVISION_LABEL}: {namespace_labels[REVISION_LABEL]}"
    elif label == "true" and REVISION_LABEL not in pod_labels:
        selected, why = True, f"pod label {SIDECAR_INJECT}: true"
    elif REVISION_LABEL in pod_labels and label != "false":
        selected, why = True, f"pod label {REVISION_LABEL}: {pod_labels[REVISION_LABEL]}"
    else:
        return Injection(False, f"namespace {namespace} has no {INJECTION_LABEL} or {REVISION_LABEL} label")
    if not selected:
        return Injection(False, why)
    if label == "false":
        return Injection(False, f"pod label {SIDECAR_INJECT}: false")
    if label is None and pod_annotations.get(SIDECAR_INJECT) == "false":
        return Injection(False, f"pod annotation {SIDECAR_INJECT}: false")
    return Injection(True, why)


# Namespaces istio-cni leaves alone by default (its `excludeNamespaces`), and the ambient enrolment label.
_NEVER_CAPTURED = frozenset({"kube-system"})
DATAPLANE_MODE_LABEL = "istio.io/dataplane-mode"


@dataclass(frozen=True)
class Capture:
    """Whether istio-cni hands a pod's traffic to ztunnel (ambient mode), and why."""

    ambient: bool
    reason: str


def ambient_capture(
    namespace: str,
    namespace_labels: Mapping[str, str] | None,
    pod_labels: Mapping[str, str],
    injection: Injection,
    host_network: bool = False,
) -> Capture:
    """Istio's ambient enrolment of a pod template. Pure.

    A pod is captured when its namespace or the pod itself is labelled `istio.io/dataplane-mode:
    ambient`; the pod label `none` opts it out. A pod that gets a sidecar is never captured (sidecar
    injection takes precedence), nor is a hostNetwork pod or one in kube-system (istio-cni's default
    exclusion). Sources: istio.io docs ambient/usage/add-workloads ("Pod selection logic").
    """
    mode = pod_labels.get(DATAPLANE_MODE_LABEL)
    ns_mode = (namespace_labels or {}).get(DATAPLANE_MODE_LABEL)
    if mode != "ambient" and ns_mode != "ambient":
        return Capture(
            False, f"neither namespace {namespace} nor the pod has {DATAPLANE_MODE_LABEL}: ambient"
        )
    if mode == "none":
        return Capture(False, f"pod label {DATAPLANE_MODE_LABEL}: none")
    if injection.sidecar:
        return Capture(False, f"it gets a sidecar ({injection.reason}), which takes precedence over ambient")
    if host_network:
        return Capture(False, "hostNetwork pods are not captured")
    if namespace in _NEVER_CAPTURED:
        return Capture(False, f"namespace {namespace} is excluded from capture (istio-cni)")
    if mode == "ambient":
        return Capture(True, f"pod label {DATAPLANE_MODE_LABEL}: ambient")
    return Capture(True, f"namespace {namespace} has {DATAPLANE_MODE_LABEL}: ambient")


@dataclass(frozen=True)
class Pod:
    """One replica of a Deployment, as the ReplicaSet controller would name and label it."""

    name: str
    namespace: str
    deployment: str
    labels: Mapping[str, str]
    service_account: str
    env: tuple[EnvVar, ...]
    container_ports: Mapping[str, int]  # port name → containerPort ("" for unnamed)
    http_port: int  # the port the echo container serves plain HTTP on (in the cluster)
    injection: Injection = Injection(True, "sidecar injected")
    capture: Capture = Capture(False, "not in ambient mode")

    @property
    def ambient(self) -> bool:
        """Captured by ztunnel: no sidecar, traffic carried by the node's ztunnel (L4, mTLS)."""
        return self.capture.ambient

    @property
    def identity(self) -> Identity:
        return Identity(self.namespace, self.service_account)

    @property
    def version(self) -> str:
        return self.labels.get("version", "unknown")


@dataclass(frozen=True)
class Inventory:
    documents: tuple[Document, ...]
    services: tuple[Service, ...]
    pods: tuple[Pod, ...]
    warnings: tuple[str, ...] = field(default=())

    def of_kind(self, kind: str, api_prefix: str = "") -> Iterator[Document]:
        for doc in self.documents:
            if doc.kind == kind and doc.api_version.startswith(api_prefix):
                yield doc

    def service_by_host(self, host: str, namespace: str) -> Service | None:
        """Resolve a routing host as Istio does: an FQDN, or a short name in the rule's namespace."""
        for svc in self.services:
            if names_service(host, namespace, svc.name, svc.namespace):
                return svc
        return None

    def pods_selected(self, namespace: str, selector: Mapping[str, str]) -> list[Pod]:
        return [
            pod
            for pod in self.pods
            if pod.namespace == namespace and all(pod.labels.get(k) == v for k, v in selector.items())
        ]


def _safe_encode(digest: bytes, length: int) -> str:
    return "".join(_SAFE_ALPHABET[b % len(_SAFE_ALPHABET)] for b in digest[:length])


def pod_names(deployment: str, template: Mapping[str, Any], replicas: int) -> tuple[str, list[str]]:
    """(pod-template-hash, pod names) for a Deployment, deterministic for a given template."""
    canonical = json.dumps(template, sort_keys=True, default=str).encode()
    template_hash = _safe_encode(hashlib.sha256(canonical).digest(), 10)
    names = []
    for index in range(replicas):
        digest = hashlib.sha256(f"{deployment}/{template_hash}/{index}".encode()).digest()
        names.append(f"{deployment}-{template_hash}-{_safe_encode(digest, 5)}")
    return template_hash, names


def _str_map(value: object, doc: Document, field_path: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise doc.error(field_path, "expected a mapping of strings")
    return {str(k): str(v) for k, v in value.items()}


def _int(value: object, doc: Document, field_path: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise doc.error(field_path, f"expected an integer, got {value!r}")
    return value


def _service(doc: Document) -> Service:
    spec = doc.spec
    ports: list[ServicePort] = []
    raw_ports = spec.get("ports") or []
    if not isinstance(raw_ports, list):
        raise doc.error("spec.ports", "expected a list")
    for i, p in enumerate(raw_ports):
        if not isinstance(p, Mapping):
            raise doc.error(f"spec.ports[{i}]", "expected a mapping")
        port = _int(p.get("port"), doc, f"spec.ports[{i}].port")
        target = p.get("targetPort", port)
        if not isinstance(target, int | str) or isinstance(target, bool):
            raise doc.error(
                f"spec.ports[{i}].targetPort", f"expected a number or a port name, got {target!r}"
            )
        ports.append(
            ServicePort(
                name=str(p["name"]) if p.get("name") else None,
                port=port,
                target_port=target,
                app_protocol=str(p["appProtocol"]) if p.get("appProtocol") else None,
            )
        )
    return Service(
        doc=doc,
        name=doc.name,
        namespace=doc.namespace,
        selector=_str_map(spec.get("selector"), doc, "spec.selector"),
        ports=tuple(ports),
    )


def _deployment_pods(doc: Document, namespaces: Mapping[str, Mapping[str, str]]) -> list[Pod]:
    spec = doc.spec
    replicas = spec.get("replicas", 1)
    replicas = _int(replicas, doc, "spec.replicas")
    template = spec.get("template")
    if not isinstance(template, Mapping):
        raise doc.error("spec.template", "missing pod template")
    meta = template.get("metadata") or {}
    labels = _str_map(
        meta.get("labels") if isinstance(meta, Mapping) else None, doc, "spec.template.metadata.labels"
    )
    selector = spec.get("selector") or {}
    match_labels = _str_map(
        selector.get("matchLabels") if isinstance(selector, Mapping) else None,
        doc,
        "spec.selector.matchLabels",
    )
    for key, value in match_labels.items():
        if labels.get(key) != value:
            raise doc.error(
                "spec.selector.matchLabels",
                f"{key}={value} does not match the template's labels (the API rejects this)",
            )
    pod_spec = template.get("spec")
    if not isinstance(pod_spec, Mapping):
        raise doc.error("spec.template.spec", "missing pod spec")
    containers = pod_spec.get("containers")
    if not isinstance(containers, list) or not containers or not isinstance(containers[0], Mapping):
        raise doc.error("spec.template.spec.containers", "expected at least one container")
    # The first container is the workload; the local mesh runs one echo-server per pod.
    container = containers[0]
    env: list[EnvVar] = []
    for i, item in enumerate(container.get("env") or []):
        if not isinstance(item, Mapping) or not item.get("name"):
            raise doc.error(f"spec.template.spec.containers[0].env[{i}]", "expected {name, value|valueFrom}")
        value_from = item.get("valueFrom")
        field_ref = value_from.get("fieldRef") if isinstance(value_from, Mapping) else None
        if isinstance(field_ref, Mapping):
            env.append(EnvVar(str(item["name"]), field_path=str(field_ref.get("fieldPath", ""))))
        elif value_from is not None:
            env.append(EnvVar(str(item["name"])))  # secrets/config maps: not emulated, see resolve_env
        else:
            env.append(EnvVar(str(item["name"]), value=str(item.get("value", ""))))
    ports: dict[str, int] = {}
    for i, p in enumerate(container.get("ports") or []):
        if not isinstance(p, Mapping):
            raise doc.error(f"spec.template.spec.containers[0].ports[{i}]", "expected a mapping")
        number = _int(
            p.get("containerPort"), doc, f"spec.template.spec.containers[0].ports[{i}].containerPort"
        )
        ports[str(p.get("name") or f"#{number}")] = number
    http_port = ECHO_DEFAULT_HTTP_PORT
    for var in env:
        if var.name == "HTTP_PORT" and var.value is not None:
            if not var.value.isdigit():
                raise doc.error(
                    "spec.template.spec.containers[0].env[HTTP_PORT]", f"not a port: {var.value!r}"
                )
            http_port = int(var.value)
    service_account = str(pod_spec.get("serviceAccountName") or pod_spec.get("serviceAccount") or "default")
    annotations = _str_map(
        meta.get("annotations") if isinstance(meta, Mapping) else None,
        doc,
        "spec.template.metadata.annotations",
    )
    host_network = pod_spec.get("hostNetwork") is True
    injection = sidecar_injection(
        doc.namespace, namespaces.get(doc.namespace), labels, annotations, host_network
    )
    capture = ambient_capture(doc.namespace, namespaces.get(doc.namespace), labels, injection, host_network)
    template_hash, names = pod_names(doc.name, template, replicas)
    pod_labels = {**labels, "pod-template-hash": template_hash}
    return [
        Pod(
            name=name,
            namespace=doc.namespace,
            deployment=doc.name,
            labels=pod_labels,
            service_account=service_account,
            env=tuple(env),
            container_ports=ports,
            http_port=http_port,
            injection=injection,
            capture=capture,
        )
        for name in names
    ]


# Kinds whose content the local mesh uses (or needs nothing from); routing kinds are judged by translate.
_QUIETLY_USED = frozenset({"Namespace", "ServiceAccount", "Service", "ConfigMap", "Secret"})
_ROUTING_GROUPS = (f"{ISTIO_NETWORKING_GROUP}/", f"{ISTIO_SECURITY_GROUP}/", f"{GATEWAY_API_GROUP}/")


def build_inventory(documents: Sequence[Document]) -> Inventory:
    """Services and pods from the documents; raises ManifestError naming the document and field."""
    seen: dict[tuple[str, str, str, str], Document] = {}
    for doc in documents:
        key = (doc.api_version.split("/")[0], doc.kind, doc.namespace, doc.name)
        if not doc.name:
            raise doc.error("metadata.name", "missing")
        if key in seen:
            raise doc.error("metadata.name", f"duplicate of {seen[key].where()}")
        seen[key] = doc
    services = [_service(d) for d in documents if d.kind == "Service" and d.api_version == "v1"]
    namespaces = {
        d.name: _str_map(d.data["metadata"].get("labels"), d, "metadata.labels")
        for d in documents
        if d.kind == "Namespace" and d.api_version == "v1"
    }
    pods: list[Pod] = []
    warnings: list[str] = []
    for doc in documents:
        if doc.kind == "Deployment" and doc.api_version == "apps/v1":
            pods.extend(_deployment_pods(doc, namespaces))
        elif doc.kind in {"StatefulSet", "DaemonSet", "ReplicaSet", "Pod", "Job", "CronJob"}:
            warnings.append(f"{doc.where()}: not started (only Deployments run locally)")
        elif doc.kind not in _QUIETLY_USED and not doc.api_version.startswith(_ROUTING_GROUPS):
            warnings.append(f"{doc.where()}: kind not emulated by the local mesh (ignored)")
    return Inventory(tuple(documents), tuple(services), tuple(pods), tuple(warnings))


_LABEL_PATH = re.compile(r"^metadata\.labels\['([^']+)'\]$")
_ANNOTATION_PATH = re.compile(r"^metadata\.annotations\['([^']+)'\]$")


def resolve_env(pod: Pod, *, pod_ip: str, node_name: str) -> tuple[dict[str, str], list[str]]:
    """The container env as the kubelet would set it (Downward API fieldRefs resolved), plus warnings.

    Identity variables the echo server reads are filled in even when the manifest omits them, so the
    echo always reports which local "pod" answered.
    """
    fields = {
        "metadata.name": pod.name,
        "metadata.namespace": pod.namespace,
        "status.podIP": pod_ip,
        "status.podIPs": pod_ip,
        "status.hostIP": pod_ip,
        "spec.nodeName": node_name,
        "spec.serviceAccountName": pod.service_account,
    }
    env: dict[str, str] = {}
    warnings: list[str] = []
    for var in pod.env:
        if var.value is not None:
            env[var.name] = var.value
        elif var.field_path is not None:
            label = _LABEL_PATH.match(var.field_path)
            if var.field_path in fields:
                env[var.name] = fields[var.field_path]
            elif label:
                env[var.name] = pod.labels.get(label.group(1), "")
            elif _ANNOTATION_PATH.match(var.field_path):
                env[var.name] = ""
            else:
                warnings.append(f"pod {pod.name}: env {var.name}: fieldRef {var.field_path!r} not emulated")
        else:
            warnings.append(f"pod {pod.name}: env {var.name}: secret/configMap references are not emulated")
    defaults = {
        "POD_NAME": pod.name,
        "POD_NAMESPACE": pod.namespace,
        "POD_IP": pod_ip,
        "NODE_NAME": node_name,
        "POD_SERVICE_ACCOUNT": pod.service_account,
        "SERVICE_VERSION": pod.labels.get("version", ""),
    }
    for key, value in defaults.items():
        env.setdefault(key, value)
    return env, warnings


def downward_labels_file(labels: Mapping[str, str]) -> str:
    """The content of a Downward API `metadata.labels` file: `key="value"` lines, sorted."""
    return "".join(f"{k}={json.dumps(v)}\n" for k, v in sorted(labels.items()))
