"""The rendered documents as the cross-reference checks see them (bare `Doc` mappings), with the
look-ups every check needs, and the `Finding` a check reports. Pure.

Host names follow Istio's rules (k8s/hosts.py): a name without a dot is a short name, expanded in
the namespace of the rule that uses it; `<svc>.<ns>.svc.<domain>` names a Service; anything else must
be a ServiceEntry host (or a Gateway host) to mean something.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from netdebug.k8s.documents import (
    CLUSTER_SCOPED,
    ISTIO_NETWORKING_GROUP,
    Doc,
    find,
    group_of,
    name_of,
    namespace_of,
    of_kind,
)
from netdebug.k8s.hosts import resolve_host

POD_TEMPLATE_KINDS = frozenset({"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"})


@dataclass(frozen=True, slots=True)
class Finding:
    kind: str
    name: str
    field: str
    message: str
    code: str  # the `istioctl analyze` code that reports it in a cluster, "" when there is none
    namespace: str = ""

    def __str__(self) -> str:
        where = f"{self.kind} {self.namespace}/{self.name}" if self.namespace else f"{self.kind} {self.name}"
        code = f" [{self.code}]" if self.code else ""
        return f"{where} {self.field}: {self.message}{code}"


@dataclass(frozen=True, slots=True)
class PodTemplate:
    """The pods a workload would create, as far as routing cares."""

    owner_kind: str
    owner_name: str
    namespace: str
    labels: Mapping[str, str]
    container_ports: Mapping[int, str]  # number -> name ("" when unnamed)
    run_as_users: tuple[int, ...]
    # The kubelet probes some container over the network (httpGet, tcpSocket or grpc; exec is local).
    network_probes: bool = False


def pod_templates(docs: Iterable[Doc]) -> list[PodTemplate]:
    found: list[PodTemplate] = []
    for doc in docs:
        kind = doc.get("kind")
        if kind == "Pod":
            metadata, spec = doc.get("metadata", {}), doc.get("spec", {})
        elif kind in POD_TEMPLATE_KINDS and group_of(doc) in ("apps", "batch"):
            template = doc.get("spec", {}).get("template", {})
            metadata, spec = template.get("metadata", {}), template.get("spec", {})
        else:
            continue
        ports: dict[int, str] = {}
        users: list[int] = []
        probed = False
        pod_user = (spec.get("securityContext") or {}).get("runAsUser")
        for container in spec.get("containers") or []:
            for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
                handler = container.get(probe) or {}
                probed = probed or any(key in handler for key in ("httpGet", "tcpSocket", "grpc"))
            for port in container.get("ports") or []:
                if isinstance(port.get("containerPort"), int):
                    ports[port["containerPort"]] = str(port.get("name", ""))
            user = (container.get("securityContext") or {}).get("runAsUser", pod_user)
            if isinstance(user, int):
                users.append(user)
        found.append(
            PodTemplate(
                owner_kind=str(kind),
                owner_name=name_of(doc),
                namespace=namespace_of(doc),
                labels={str(k): str(v) for k, v in (metadata.get("labels") or {}).items()},
                container_ports=ports,
                run_as_users=tuple(users),
                network_probes=probed,
            )
        )
    return found


def finding_at(doc: Mapping[str, Any], field: str, message: str, code: str) -> Finding:
    """A finding about `doc` (its kind, name and namespace) at `field`."""
    kind = str(doc.get("kind"))
    namespace = "" if kind in CLUSTER_SCOPED else namespace_of(doc)
    return Finding(kind, name_of(doc), field, message, code, namespace)


def labels_of(doc: Mapping[str, Any]) -> dict[str, str]:
    """`metadata.labels` as strings ({} when absent)."""
    return {str(k): str(v) for k, v in ((doc.get("metadata") or {}).get("labels") or {}).items()}


def selects(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


class Index:
    """The rendered documents, with the look-ups every check needs."""

    def __init__(self, docs: Sequence[Doc]) -> None:
        self.docs = list(docs)
        self.pods = pod_templates(self.docs)
        self.services = list(of_kind(self.docs, "Service", ""))
        self.service_entry_hosts = {
            str(host)
            for entry in of_kind(self.docs, "ServiceEntry", ISTIO_NETWORKING_GROUP)
            for host in entry.get("spec", {}).get("hosts") or []
        }

    def service(self, name: str, namespace: str) -> Doc | None:
        return find(self.services, "Service", name, namespace)

    def service_for_host(self, host: str, namespace: str) -> Doc | None:
        resolved = resolve_host(host, namespace)
        return self.service(*resolved) if resolved else None

    def host_exists(self, host: str, namespace: str) -> bool:
        return self.service_for_host(host, namespace) is not None or host in self.service_entry_hosts

    def pods_of_service(self, service: Doc) -> list[PodTemplate]:
        selector = service.get("spec", {}).get("selector") or {}
        if not selector:
            return []
        return [p for p in self.pods if p.namespace == namespace_of(service) and selects(selector, p.labels)]

    def destination_rules(self, host: str, namespace: str) -> list[Doc]:
        """DestinationRules whose host is the same service as `host` (seen from `namespace`)."""
        target = resolve_host(host, namespace) or (host, "")
        found = []
        for dr in of_kind(self.docs, "DestinationRule", ISTIO_NETWORKING_GROUP):
            dr_host = str(dr.get("spec", {}).get("host", ""))
            if (resolve_host(dr_host, namespace_of(dr)) or (dr_host, "")) == target:
                found.append(dr)
        return found

    def subset_labels(self, host: str, subset: str, namespace: str) -> Mapping[str, str] | None:
        for dr in self.destination_rules(host, namespace):
            for entry in dr.get("spec", {}).get("subsets") or []:
                if entry.get("name") == subset:
                    return {str(k): str(v) for k, v in (entry.get("labels") or {}).items()}
        return None


def vs_gateways(vs: Mapping[str, Any]) -> list[str]:
    # No `gateways` at all means the mesh only.
    return [str(g) for g in vs.get("spec", {}).get("gateways") or ["mesh"]]
