"""The cross-reference checks a cluster would otherwise report only at runtime, over one rendered set
of documents; each finding carries the `istioctl analyze` code that catches it in a cluster.

Invariants:
- Pure: every check takes plain data (the `Index` of bare documents) and returns plain data.
- A field of the wrong shape never stops the checks: it becomes a finding that says to validate the
  schemas (which name it precisely), and the other checks still run.
- Host names follow Istio's rules (k8s/hosts.py).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from netdebug.k8s.ambient import AMBIENT_CHECKS
from netdebug.k8s.documents import (
    GATEWAY_API_GROUP,
    ISTIO_NETWORKING_GROUP,
    Doc,
    find,
    name_of,
    namespace_of,
    of_kind,
)
from netdebug.k8s.hosts import expand_short_name, is_short_name, service_host
from netdebug.k8s.index import Finding, Index, finding_at, selects, vs_gateways
from netdebug.k8s.splits import check_plans

# Istio's protocol selection: the port name `<protocol>[-<suffix>]` or `appProtocol`.
# https://istio.io/latest/docs/ops/configuration/traffic-management/protocol-selection/
ISTIO_PROTOCOLS = frozenset(
    {"http", "http2", "https", "grpc", "grpc-web", "h2c", "mongo", "mysql", "redis", "tcp", "tls", "udp"}
)
# The sidecar's own UID: Istio's iptables rules let its traffic out unredirected.
PROXY_UID = 1337


# --- checks --------------------------------------------------------------------------------------


def check_cross_references(docs: Sequence[Doc]) -> list[Finding]:
    """Every cross-reference check over one rendered set of documents, in a stable order."""
    index = Index(docs)
    findings: list[Finding] = []
    for check in CHECKS:
        try:
            findings.extend(check(index))
        except (AttributeError, TypeError, KeyError, ValueError, re.error) as exc:
            # A field of the wrong shape (`spec: null`, a list where a mapping belongs): the schema
            # validation names it precisely; here it only stops this one check.
            message = (
                f"skipped, a field has the wrong shape ({type(exc).__name__}: {exc}); validate the schemas"
            )
            findings.append(Finding("Manifests", check.__name__, "", message, ""))
    return findings


def _vs_destinations(vs: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    spec = vs.get("spec", {})
    for protocol in ("http", "tcp", "tls"):
        for r, route in enumerate(spec.get(protocol) or []):
            for d, weighted in enumerate(route.get("route") or []):
                yield f"spec.{protocol}[{r}].route[{d}].destination", weighted.get("destination") or {}
            if protocol == "http" and route.get("mirror"):
                yield f"spec.http[{r}].mirror", route["mirror"]


def check_gateway_references(index: Index) -> list[Finding]:
    """Every Gateway a VirtualService names exists (istioctl analyze IST0101)."""
    findings: list[Finding] = []
    gateways = {(namespace_of(g), name_of(g)) for g in of_kind(index.docs, "Gateway", ISTIO_NETWORKING_GROUP)}
    for vs in of_kind(index.docs, "VirtualService", ISTIO_NETWORKING_GROUP):
        refs = [(f"spec.gateways[{i}]", g) for i, g in enumerate(vs.get("spec", {}).get("gateways") or [])]
        for r, route in enumerate(vs.get("spec", {}).get("http") or []):
            for m, match in enumerate(route.get("match") or []):
                refs += [
                    (f"spec.http[{r}].match[{m}].gateways[{i}]", g)
                    for i, g in enumerate(match.get("gateways") or [])
                ]
        for field, ref in refs:
            if ref == "mesh":
                continue
            namespace, _, name = str(ref).rpartition("/")
            if (namespace or namespace_of(vs), name) not in gateways:
                findings.append(finding_at(vs, field, f"Gateway {ref!r} not found", "IST0101"))
    return findings


def check_mesh_wildcard(index: Index) -> list[Finding]:
    """No `"*"` host on a VirtualService bound to the mesh (IST0106)."""
    findings: list[Finding] = []
    for vs in of_kind(index.docs, "VirtualService", ISTIO_NETWORKING_GROUP):
        if "mesh" not in vs_gateways(vs):
            continue
        for i, host in enumerate(vs.get("spec", {}).get("hosts") or []):
            if host == "*":
                findings.append(
                    finding_at(
                        vs,
                        f"spec.hosts[{i}]",
                        'host "*" with the mesh gateway captures every host',
                        "IST0106",
                    )
                )
    return findings


def check_fqdn_hosts(index: Index) -> list[Finding]:
    """Hosts are full names: a short name is expanded in the rule's namespace, not the Service's."""
    findings: list[Finding] = []
    for vs in of_kind(index.docs, "VirtualService", ISTIO_NETWORKING_GROUP):
        fields = [(f"spec.hosts[{i}]", h) for i, h in enumerate(vs.get("spec", {}).get("hosts") or [])]
        fields += [(f"{field}.host", dest.get("host", "")) for field, dest in _vs_destinations(vs)]
        for field, host in fields:
            if host and host != "*" and is_short_name(str(host)):
                findings.append(
                    finding_at(
                        vs,
                        field,
                        f"short host {host!r}: use {service_host(str(host), namespace_of(vs))}",
                        "IST0101",
                    )
                )
    for dr in of_kind(index.docs, "DestinationRule", ISTIO_NETWORKING_GROUP):
        host = str(dr.get("spec", {}).get("host", ""))
        if host and is_short_name(host):
            message = f"short host {host!r}: use {service_host(host, namespace_of(dr))}"
            findings.append(finding_at(dr, "spec.host", message, "IST0174"))
    return findings


def check_destinations(index: Index) -> list[Finding]:
    """Every destination host exists, and every subset is defined for it (IST0101); every
    DestinationRule host names a service (IST0174)."""
    findings: list[Finding] = []
    for vs in of_kind(index.docs, "VirtualService", ISTIO_NETWORKING_GROUP):
        namespace = namespace_of(vs)
        for field, dest in _vs_destinations(vs):
            host = str(dest.get("host", ""))
            if not index.host_exists(host, namespace):
                findings.append(
                    finding_at(vs, f"{field}.host", f"host {host!r} matches no Service", "IST0101")
                )
                continue
            subset = dest.get("subset")
            if subset and index.subset_labels(host, str(subset), namespace) is None:
                message = f"subset {subset!r} of {host} is not defined in any DestinationRule"
                findings.append(finding_at(vs, f"{field}.subset", message, "IST0101"))
            port = (dest.get("port") or {}).get("number")
            service = index.service_for_host(host, namespace)
            if port is not None and service is not None:
                numbers = [p.get("port") for p in service.get("spec", {}).get("ports") or []]
                if port not in numbers:
                    message = f"port {port} is not a port of Service {name_of(service)} ({numbers})"
                    findings.append(finding_at(vs, f"{field}.port.number", message, "IST0101"))
    for dr in of_kind(index.docs, "DestinationRule", ISTIO_NETWORKING_GROUP):
        host = str(dr.get("spec", {}).get("host", ""))
        if not index.host_exists(host, namespace_of(dr)):
            findings.append(finding_at(dr, "spec.host", f"host {host!r} matches no Service", "IST0174"))
    return findings


def check_subsets_select_pods(index: Index) -> list[Finding]:
    """Every subset's labels select the pods of some workload behind the host (IST0173); a subset that
    selects nothing answers 503 no_healthy_upstream."""
    findings: list[Finding] = []
    for dr in of_kind(index.docs, "DestinationRule", ISTIO_NETWORKING_GROUP):
        service = index.service_for_host(str(dr.get("spec", {}).get("host", "")), namespace_of(dr))
        if service is None:
            continue  # reported by check_destinations (or a ServiceEntry, whose endpoints are not pods)
        behind = index.pods_of_service(service)
        for i, subset in enumerate(dr.get("spec", {}).get("subsets") or []):
            labels = {str(k): str(v) for k, v in (subset.get("labels") or {}).items()}
            if not any(selects(labels, pod.labels) for pod in behind):
                subset_name = subset.get("name")
                message = (
                    f"subset {subset_name!r} labels {labels} select no pod of Service {name_of(service)}"
                )
                findings.append(finding_at(dr, f"spec.subsets[{i}].labels", message, "IST0173"))
    return findings


def _port_protocol_ok(port: Mapping[str, Any]) -> bool:
    app_protocol = str(port.get("appProtocol", "")).lower()
    if app_protocol:
        return app_protocol in ISTIO_PROTOCOLS or app_protocol.startswith("kubernetes.io/")
    name = str(port.get("name", "")).lower()
    return any(name == p or name.startswith(f"{p}-") for p in ISTIO_PROTOCOLS)


def check_service_ports(index: Index) -> list[Finding]:
    """Ports are named `<protocol>[-suffix]` or carry appProtocol, else Istio treats them as TCP and
    ignores HTTP routing (IST0118); targetPort is a port the selected containers declare (IST0143)."""
    findings: list[Finding] = []
    for service in index.services:
        pods = index.pods_of_service(service)
        if service.get("spec", {}).get("selector") and not pods:
            message = "selector matches no pod template in these manifests"
            findings.append(finding_at(service, "spec.selector", message, ""))
        for i, port in enumerate(service.get("spec", {}).get("ports") or []):
            if not _port_protocol_ok(port):
                port_name = port.get("name", "")
                message = (
                    f"port {port.get('port')} named {port_name!r}: no Istio protocol (name or appProtocol)"
                )
                findings.append(finding_at(service, f"spec.ports[{i}]", message, "IST0118"))
            target = port.get("targetPort", port.get("port"))
            for pod in pods:
                if isinstance(target, int):
                    ok = target in pod.container_ports
                else:
                    ok = str(target) in pod.container_ports.values()
                if not ok:
                    message = (
                        f"targetPort {target!r} is not a container port of {pod.owner_kind} {pod.owner_name} "
                        f"({sorted(pod.container_ports)})"
                    )
                    findings.append(finding_at(service, f"spec.ports[{i}].targetPort", message, "IST0143"))
    return findings


def check_namespaces(index: Index) -> list[Finding]:
    """A namespace labelled both `istio-injection` and `istio.io/rev` (IST0123)."""
    findings: list[Finding] = []
    for ns in of_kind(index.docs, "Namespace", ""):
        labels = ns.get("metadata", {}).get("labels") or {}
        if "istio-injection" in labels and "istio.io/rev" in labels:
            message = "both istio-injection and istio.io/rev are set; keep one"
            findings.append(Finding("Namespace", name_of(ns), "metadata.labels", message, "IST0123"))
    return findings


def check_conflicting_virtual_services(index: Index) -> list[Finding]:
    """Two VirtualServices for one host on the same gateway conflict (IST0109)."""
    findings: list[Finding] = []
    seen: dict[tuple[str, str], str] = {}
    for vs in of_kind(index.docs, "VirtualService", ISTIO_NETWORKING_GROUP):
        for gateway in vs_gateways(vs):
            for host in vs.get("spec", {}).get("hosts") or []:
                full = expand_short_name(str(host), namespace_of(vs))
                key = (gateway, full)
                if key in seen and seen[key] != name_of(vs):
                    message = f"host {full} on gateway {gateway} is also routed by VirtualService {seen[key]}"
                    findings.append(finding_at(vs, "spec.hosts", message, "IST0109"))
                seen.setdefault(key, name_of(vs))
    return findings


def check_gateway_api_references(index: Index) -> list[Finding]:
    """HTTPRoute parents (Gateway listener or GAMMA Service) and backends (Service and port) exist."""
    findings: list[Finding] = []
    for route in of_kind(index.docs, "HTTPRoute", GATEWAY_API_GROUP):
        namespace = namespace_of(route)
        spec = route.get("spec", {})
        for i, parent in enumerate(spec.get("parentRefs") or []):
            field = f"spec.parentRefs[{i}]"
            parent_ns = str(parent.get("namespace") or namespace)
            kind = parent.get("kind", "Gateway")
            if kind == "Service":
                service = index.service(str(parent.get("name")), parent_ns)
                if service is None:
                    message = f"Service {parent.get('name')!r} not found"
                    findings.append(finding_at(route, field, message, "IST0101"))
                elif parent.get("port") is not None and parent["port"] not in [
                    p.get("port") for p in service.get("spec", {}).get("ports") or []
                ]:
                    message = f"port {parent['port']} is not a port of Service {name_of(service)}"
                    findings.append(finding_at(route, f"{field}.port", message, "IST0101"))
                continue
            gateway = find(index.docs, "Gateway", str(parent.get("name")), parent_ns, GATEWAY_API_GROUP)
            if gateway is None:
                findings.append(
                    finding_at(route, field, f"Gateway {parent.get('name')!r} not found", "IST0101")
                )
                continue
            section = parent.get("sectionName")
            listeners = [str(item.get("name")) for item in gateway.get("spec", {}).get("listeners") or []]
            if section and section not in listeners:
                message = f"Gateway {name_of(gateway)} has no listener {section!r} ({listeners})"
                findings.append(finding_at(route, f"{field}.sectionName", message, "IST0101"))
        for r, rule in enumerate(spec.get("rules") or []):
            for b, backend in enumerate(rule.get("backendRefs") or []):
                if backend.get("kind", "Service") != "Service" or backend.get("group", "") != "":
                    continue
                field = f"spec.rules[{r}].backendRefs[{b}]"
                service = index.service(str(backend.get("name")), str(backend.get("namespace") or namespace))
                if service is None:
                    findings.append(
                        finding_at(route, field, f"Service {backend.get('name')!r} not found", "IST0101")
                    )
                elif backend.get("port") not in [
                    p.get("port") for p in service.get("spec", {}).get("ports") or []
                ]:
                    message = f"port {backend.get('port')} is not a port of Service {name_of(service)}"
                    findings.append(finding_at(route, f"{field}.port", message, "IST0101"))
    return findings


def check_proxy_uid(index: Index) -> list[Finding]:
    """No workload runs as the sidecar's UID: its calls would bypass the sidecar and the routing."""
    findings: list[Finding] = []
    for pod in index.pods:
        if PROXY_UID in pod.run_as_users:
            message = f"runs as UID {PROXY_UID}, the sidecar's: its traffic bypasses the proxy"
            findings.append(
                Finding(
                    pod.owner_kind, pod.owner_name, "securityContext.runAsUser", message, "", pod.namespace
                )
            )
    return findings


CHECKS = (
    check_namespaces,
    check_service_ports,
    check_proxy_uid,
    check_gateway_references,
    check_mesh_wildcard,
    check_fqdn_hosts,
    check_destinations,
    check_subsets_select_pods,
    check_conflicting_virtual_services,
    check_gateway_api_references,
    *AMBIENT_CHECKS,
    check_plans,
)
