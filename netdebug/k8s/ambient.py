"""The cross-reference checks for Istio's ambient data plane: the traps that leave an L7 route silently
unapplied. Pure: plain documents in (the `Index`), findings out.

Facts they rely on (Istio 1.30; sources in docs/ambient.md):
- A pod is in ambient mode when its namespace (or the pod) has `istio.io/dataplane-mode: ambient` and
  the pod has no sidecar. Sidecar injection (namespace `istio-injection: enabled` or `istio.io/rev`,
  pod label `sidecar.istio.io/inject: "true"`) takes precedence: such pods get a sidecar and ztunnel
  does not capture them.
- ztunnel is L4 only. An L7 route whose parent is a Service applies only when that Service uses a
  waypoint: `istio.io/use-waypoint: <Gateway>` on the Service, else on its namespace (`none` on the
  Service opts out; `istio.io/use-waypoint-namespace` names another namespace). Without one, ztunnel
  balances connections over all the Service's pods and Istio says so only in the route's
  `ResolvedWaypoints` condition, whose status stays True: `istioctl analyze` (IST0171 looks for
  False conditions) does not report it.
- A waypoint is a Gateway of class `istio-waypoint`. Its `istio.io/waypoint-for` label (else its
  GatewayClass's, else `service`) says which traffic it takes; a Service can bind only to `service`
  or `all`, and only from a namespace the HBONE listener's `allowedRoutes` admits (default: Same).
  A refused binding is the Service's condition `istio.io/WaypointBound: False`, which
  `istioctl analyze` reports as IST0171 in a cluster.
- Ingress gateways skip the waypoint unless the backend Service (or its namespace) has
  `istio.io/ingress-use-waypoint: "true"`; without it, the Service's mesh route does not apply to
  ingress traffic (in sidecar mode the gateway never applies it either).
- A VirtualService for ambient L7 routing is alpha; the recommended API is an HTTPRoute with the
  Service as parentRef, and mixing both for one Service is undefined.
- NetworkPolicy: ambient's HBONE tunnel arrives on port 15008, and kubelet probes reach ambient pods
  from the link-local address 169.254.7.127 (SNAT), which some CNIs then filter by the policy.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from netdebug.k8s.documents import (
    GATEWAY_API_GROUP,
    ISTIO_NETWORKING_GROUP,
    Doc,
    find,
    name_of,
    namespace_of,
    of_kind,
)
from netdebug.k8s.index import Finding, Index, PodTemplate, finding_at, labels_of, selects, vs_gateways
from netdebug.k8s.inventory import DATAPLANE_MODE_LABEL

DATAPLANE_MODE = DATAPLANE_MODE_LABEL
USE_WAYPOINT = "istio.io/use-waypoint"
USE_WAYPOINT_NAMESPACE = "istio.io/use-waypoint-namespace"
WAYPOINT_FOR = "istio.io/waypoint-for"
INGRESS_USE_WAYPOINT = "istio.io/ingress-use-waypoint"
INJECTION = "istio-injection"
REVISION = "istio.io/rev"
SIDECAR_INJECT = "sidecar.istio.io/inject"
WAYPOINT_CLASS = "istio-waypoint"
SERVICE_TRAFFIC = frozenset({"service", "all"})
HBONE_PORT = 15008
# Istio >= 1.30: the waypoint replaces XFCC with the source workload's identity (on the Gateway or
# its GatewayClass; "true" in any case).
XFCC_CLIENT_IDENTITY = "ambient.istio.io/xfcc-include-client-identity"
PROBE_SNAT_ADDRESS = ipaddress.ip_address("169.254.7.127")
# Route kinds whose parentRef may be a Service (GAMMA); all of them need a waypoint in ambient mode.
ROUTE_KINDS = ("HTTPRoute", "GRPCRoute", "TCPRoute", "TLSRoute")
USE_WAYPOINT_FIELD = f"metadata.labels[{USE_WAYPOINT}]"
NOT_ANALYZED = "Istio reports it only in the route's ResolvedWaypoints condition; istioctl analyze does not"


@dataclass(frozen=True, slots=True)
class WaypointRef:
    """The waypoint a Service uses, and the object whose label names it."""

    name: str
    namespace: str
    labelled: Doc  # the Service or the Namespace carrying istio.io/use-waypoint


@dataclass(frozen=True, slots=True)
class ServiceRoute:
    """A route whose parent is a Service (GAMMA)."""

    route: Doc
    field: str  # spec.parentRefs[i]
    service_name: str
    service_namespace: str


class Ambient:
    """Ambient-mode look-ups over one rendered set of documents."""

    def __init__(self, index: Index) -> None:
        self.index = index
        self.namespaces = {name_of(ns): ns for ns in of_kind(index.docs, "Namespace", "")}

    def namespace_labels(self, namespace: str) -> dict[str, str] | None:
        """The namespace's labels; None when these manifests do not define the namespace."""
        doc = self.namespaces.get(namespace)
        return None if doc is None else labels_of(doc)

    def is_ambient(self, namespace: str) -> bool:
        return (self.namespace_labels(namespace) or {}).get(DATAPLANE_MODE) == "ambient"

    def waypoint_of(self, service: Doc) -> WaypointRef | None:
        """The waypoint `service` uses, as istiod resolves it (Service label first, then namespace)."""
        namespace = namespace_of(service)
        labels = labels_of(service)
        if USE_WAYPOINT in labels:
            if labels[USE_WAYPOINT] == "none":
                return None
            return WaypointRef(labels[USE_WAYPOINT], labels.get(USE_WAYPOINT_NAMESPACE, namespace), service)
        ns_doc = self.namespaces.get(namespace)
        ns_labels = labels_of(ns_doc) if ns_doc is not None else {}
        if ns_doc is not None and ns_labels.get(USE_WAYPOINT, "none") != "none":
            return WaypointRef(
                ns_labels[USE_WAYPOINT], ns_labels.get(USE_WAYPOINT_NAMESPACE, namespace), ns_doc
            )
        return None

    def ingress_uses_waypoint(self, service: Doc) -> bool:
        labels = labels_of(service)
        if INGRESS_USE_WAYPOINT in labels:
            return labels[INGRESS_USE_WAYPOINT] == "true"
        return (self.namespace_labels(namespace_of(service)) or {}).get(INGRESS_USE_WAYPOINT) == "true"

    def route_applies(self, service_name: str, namespace: str) -> bool:
        """Whether a route whose parent is this Service is applied: always in sidecar mode (the
        callers' sidecars apply it), only through a waypoint in ambient mode."""
        if not self.is_ambient(namespace):
            return True
        service = self.index.service(service_name, namespace)
        return service is not None and self.waypoint_of(service) is not None

    def ingress_reaches_waypoint(self, service: Doc) -> bool:
        """Whether an ingress gateway sends traffic for `service` through its waypoint."""
        return (
            self.is_ambient(namespace_of(service))
            and self.ingress_uses_waypoint(service)
            and self.waypoint_of(service) is not None
        )

    def usable_waypoint(self, service: Doc) -> Doc | None:
        """The waypoint Gateway that takes `service`'s traffic, or None: no waypoint named, or Istio
        refuses the binding (the Gateway is missing, not of class istio-waypoint, not for service
        traffic, or its HBONE listener does not admit the Service's namespace). Without one, ztunnel
        sends the Service's traffic straight to its pods (check_waypoints_take_service_traffic
        reports each refusal)."""
        ref = self.waypoint_of(service)
        if ref is None:
            return None
        waypoint = find(self.index.docs, "Gateway", ref.name, ref.namespace, GATEWAY_API_GROUP)
        if waypoint is None or waypoint.get("spec", {}).get("gatewayClassName") != WAYPOINT_CLASS:
            return None
        if self.traffic_type(waypoint) not in SERVICE_TRAFFIC:
            return None
        return waypoint if _admits(self, waypoint, namespace_of(service)) else None

    def xfcc_client_identity(self, waypoint: Doc) -> bool:
        """Whether the waypoint synthesises XFCC from the source workload's identity: the annotation
        on the Gateway, else on its GatewayClass, is "true" (case-insensitive)."""
        value = _annotations_of(waypoint).get(XFCC_CLIENT_IDENTITY)
        if value is None:
            gateway_class = self._gateway_class(waypoint)
            value = _annotations_of(gateway_class).get(XFCC_CLIENT_IDENTITY) if gateway_class else None
        return value is not None and value.lower() == "true"

    def service_routes(self) -> Iterator[ServiceRoute]:
        for kind in ROUTE_KINDS:
            for route in of_kind(self.index.docs, kind, GATEWAY_API_GROUP):
                for i, parent in enumerate(route.get("spec", {}).get("parentRefs") or []):
                    if parent.get("kind") == "Service" and parent.get("group", "") in ("", "core"):
                        namespace = str(parent.get("namespace") or namespace_of(route))
                        yield ServiceRoute(route, f"spec.parentRefs[{i}]", str(parent.get("name")), namespace)

    def traffic_type(self, waypoint: Doc) -> str:
        """What the waypoint takes: its label, else its GatewayClass's, else Istio's default."""
        labels = labels_of(waypoint)
        if WAYPOINT_FOR in labels:
            return labels[WAYPOINT_FOR]
        gateway_class = self._gateway_class(waypoint)
        return labels_of(gateway_class).get(WAYPOINT_FOR, "service") if gateway_class else "service"

    def _gateway_class(self, gateway: Doc) -> Doc | None:
        class_name = str(gateway.get("spec", {}).get("gatewayClassName", ""))
        classes = of_kind(self.index.docs, "GatewayClass", GATEWAY_API_GROUP)
        return next((c for c in classes if name_of(c) == class_name), None)


# --- checks --------------------------------------------------------------------------------------


def check_routes_have_waypoints(index: Index) -> list[Finding]:
    """A route whose parent is a Service of an ambient namespace needs a waypoint in use."""
    ambient = Ambient(index)
    findings: list[Finding] = []
    for sr in ambient.service_routes():
        if not ambient.is_ambient(sr.service_namespace):
            continue  # sidecar mode: the callers' sidecars apply the route themselves
        service = index.service(sr.service_name, sr.service_namespace)
        if service is None or ambient.waypoint_of(service) is not None:
            continue  # a missing Service is check_gateway_api_references' finding
        message = (
            f"Service {sr.service_namespace}/{sr.service_name} uses no waypoint (no {USE_WAYPOINT} label "
            f"on it or on namespace {sr.service_namespace}): in ambient mode this route is not applied and "
            f"ztunnel balances connections over all the Service's pods ({NOT_ANALYZED})"
        )
        findings.append(finding_at(sr.route, sr.field, message, ""))
    return findings


def check_waypoints_take_service_traffic(index: Index) -> list[Finding]:
    """The waypoint a route's Service uses exists, is a waypoint, takes service traffic and admits the
    Service's namespace; else Istio refuses the binding (WaypointBound=False, IST0171 in a cluster) and
    ztunnel goes straight to the pods."""
    ambient = Ambient(index)
    findings: list[Finding] = []
    seen: set[tuple[str, str, str, str]] = set()
    for sr in ambient.service_routes():
        service = index.service(sr.service_name, sr.service_namespace)
        ref = ambient.waypoint_of(service) if service is not None else None
        if ref is None:
            continue
        key = (sr.service_namespace, sr.service_name, ref.namespace, ref.name)
        if key in seen:
            continue
        seen.add(key)
        svc = f"Service {sr.service_namespace}/{sr.service_name}"
        route = f"{sr.route.get('kind')} {name_of(sr.route)}"
        waypoint = find(index.docs, "Gateway", ref.name, ref.namespace, GATEWAY_API_GROUP)
        if waypoint is None:
            message = (
                f"names waypoint {ref.namespace}/{ref.name}, which is not in these manifests: until it "
                f"exists ztunnel sends {svc}'s traffic straight to its pods and {route} is not applied "
                f"(create it: istioctl waypoint apply -n {ref.namespace} --name {ref.name})"
            )
            findings.append(finding_at(ref.labelled, USE_WAYPOINT_FIELD, message, "IST0171"))
            continue
        class_name = waypoint.get("spec", {}).get("gatewayClassName")
        if class_name != WAYPOINT_CLASS:
            message = (
                f"{svc} uses this Gateway as its waypoint ({USE_WAYPOINT} on {ref.labelled.get('kind')} "
                f"{name_of(ref.labelled)}), but its class is "
                f"{class_name!r}, not {WAYPOINT_CLASS!r}: name a waypoint for {route} to apply"
            )
            findings.append(finding_at(waypoint, "spec.gatewayClassName", message, ""))
            continue
        traffic = ambient.traffic_type(waypoint)
        if traffic not in SERVICE_TRAFFIC:
            message = (
                f"the waypoint takes {traffic!r} traffic, but {svc} uses it for {route}: Istio refuses the "
                f"binding (UnsupportedTrafficType) and ztunnel skips the waypoint; use 'service' or 'all'"
            )
            findings.append(finding_at(waypoint, f"metadata.labels[{WAYPOINT_FOR}]", message, "IST0171"))
        elif not _admits(ambient, waypoint, sr.service_namespace):
            message = (
                f"{svc} uses this waypoint from another namespace, which its HBONE listener does not "
                f"admit (allowedRoutes.namespaces, default Same): Istio refuses the binding "
                f"(AttachmentDenied) and {route} is not applied"
            )
            findings.append(finding_at(waypoint, "spec.listeners", message, "IST0171"))
    return findings


def _admits(ambient: Ambient, waypoint: Doc, namespace: str) -> bool:
    """Whether the waypoint's HBONE listener admits Services of `namespace` (istiod's
    makeAllowedRoutes: the HBONE/15008 listener's allowedRoutes.namespaces, default Same)."""
    if namespace == namespace_of(waypoint):
        return True
    for listener in waypoint.get("spec", {}).get("listeners") or []:
        if listener.get("protocol") == "HBONE" and listener.get("port") == HBONE_PORT:
            allowed = (listener.get("allowedRoutes") or {}).get("namespaces") or {}
            source = allowed.get("from", "Same")
            if source == "All":
                return True
            if source == "Selector":
                selector = allowed.get("selector") or {}
                match = {str(k): str(v) for k, v in (selector.get("matchLabels") or {}).items()}
                # matchExpressions are not evaluated: give the benefit of the doubt.
                return bool(selector.get("matchExpressions")) or selects(
                    match, ambient.namespace_labels(namespace) or {}
                )
            return False
    return False


def check_injection_in_ambient(index: Index) -> list[Finding]:
    """No sidecar injection in an ambient namespace: injected pods get a sidecar and ztunnel skips them."""
    ambient = Ambient(index)
    findings: list[Finding] = []
    for ns in ambient.namespaces.values():
        labels = labels_of(ns)
        if labels.get(DATAPLANE_MODE) != "ambient":
            continue
        # istio-injection=disabled is an explicit "no sidecar" and fits ambient.
        asks = [
            f"{key}={labels[key]}"
            for key in (INJECTION, REVISION)
            if key in labels and not (key == INJECTION and labels[key] == "disabled")
        ]
        if asks:
            message = (
                f"ambient ({DATAPLANE_MODE}=ambient) and sidecar injection ({', '.join(asks)}) together: "
                "injection takes precedence, so new pods get sidecars and ztunnel does not capture them; "
                "keep one"
            )
            findings.append(finding_at(ns, "metadata.labels", message, ""))
    for pod in index.pods:
        if ambient.is_ambient(pod.namespace) and pod.labels.get(SIDECAR_INJECT) == "true":
            message = (
                f"{SIDECAR_INJECT}=true in ambient namespace {pod.namespace}: this pod gets a sidecar "
                "instead of ztunnel"
            )
            field = f"spec.template.metadata.labels[{SIDECAR_INJECT}]"
            findings.append(Finding(pod.owner_kind, pod.owner_name, field, message, "", pod.namespace))
    return findings


def check_virtual_services_in_ambient(index: Index) -> list[Finding]:
    """No VirtualService for mesh routing to a Service of an ambient namespace: alpha there (the
    recommended API is HTTPRoute), and undefined together with an HTTPRoute on the same Service."""
    ambient = Ambient(index)
    routed = {(sr.service_namespace, sr.service_name): sr.route for sr in ambient.service_routes()}
    findings: list[Finding] = []
    for vs in of_kind(index.docs, "VirtualService", ISTIO_NETWORKING_GROUP):
        if "mesh" not in vs_gateways(vs):
            continue  # bound only to an ingress Gateway: Istio Gateway resources work unchanged in ambient
        for i, host in enumerate(vs.get("spec", {}).get("hosts") or []):
            service = index.service_for_host(str(host), namespace_of(vs))
            if service is None or not ambient.is_ambient(namespace_of(service)):
                continue
            key = (namespace_of(service), name_of(service))
            message = (
                f"routes Service {key[0]}/{key[1]} of an ambient namespace for mesh callers: VirtualService "
                "support in ambient mode is alpha; use an HTTPRoute with the Service as parentRef"
            )
            if key in routed:
                other = routed[key]
                message += (
                    f" (here {other.get('kind')} {name_of(other)} also routes it: mixing both is undefined)"
                )
            findings.append(finding_at(vs, f"spec.hosts[{i}]", message, ""))
    return findings


def check_ingress_skips_mesh_routes(index: Index) -> list[Finding]:
    """An ingress route sending to a Service whose split lives in a Service-parented (mesh) route: the
    ingress gateway does not apply that route, unless ambient's istio.io/ingress-use-waypoint sends it
    through the Service's waypoint."""
    ambient = Ambient(index)
    mesh_routes: dict[tuple[str, str], Doc] = {}
    for sr in ambient.service_routes():
        mesh_routes.setdefault((sr.service_namespace, sr.service_name), sr.route)
    findings: list[Finding] = []
    for route in of_kind(index.docs, "HTTPRoute", GATEWAY_API_GROUP):
        spec = route.get("spec", {})
        parents = spec.get("parentRefs") or []
        if not any(p.get("kind", "Gateway") == "Gateway" for p in parents):
            continue
        for r, rule in enumerate(spec.get("rules") or []):
            for b, backend in enumerate(rule.get("backendRefs") or []):
                if backend.get("kind", "Service") != "Service" or backend.get("group", "") != "":
                    continue
                key = (str(backend.get("namespace") or namespace_of(route)), str(backend.get("name")))
                mesh = mesh_routes.get(key)
                service = index.service(key[1], key[0])
                if mesh is None or mesh is route or service is None:
                    continue
                if ambient.is_ambient(key[0]):
                    if ambient.ingress_uses_waypoint(service):
                        continue
                    how = (
                        f"the gateway skips the waypoint of Service {key[0]}/{key[1]} unless it (or its "
                        f'namespace) has {INGRESS_USE_WAYPOINT}: "true"'
                    )
                else:
                    how = "the ingress gateway does not apply routes whose parent is a Service"
                message = (
                    f"sends to Service {key[0]}/{key[1]}, whose {mesh.get('kind')} {name_of(mesh)} "
                    f"applies to mesh callers only: {how}; split in this route instead"
                )
                findings.append(finding_at(route, f"spec.rules[{r}].backendRefs[{b}]", message, ""))
    return findings


def check_network_policies_for_ambient(index: Index) -> list[Finding]:
    """An ingress NetworkPolicy on ambient pods lets HBONE (port 15008) in, and kubelet probes from the
    address ambient gives them (169.254.7.127), which some CNIs otherwise block."""
    ambient = Ambient(index)
    findings: list[Finding] = []
    for policy in of_kind(index.docs, "NetworkPolicy", "networking.k8s.io"):
        namespace = namespace_of(policy)
        spec = policy.get("spec", {})
        if not ambient.is_ambient(namespace) or not _restricts_ingress(spec):
            continue
        pods = _selected(index.pods, namespace, spec.get("podSelector") or {})
        if not pods:
            continue
        rules = spec.get("ingress") or []
        # HBONE comes from the callers' pods (their ztunnel, in their network namespace), the
        # waypoint or a gateway: the rules that admit pods must admit port 15008.
        from_pods = [rule for rule in rules if _admits_pods(rule)]
        if (
            from_pods
            and all(rule.get("ports") for rule in from_pods)
            and not any(map(_opens_hbone, from_pods))
        ):
            message = (
                "lets ingress in only on the ports it lists: ambient's HBONE tunnel arrives on port "
                f"{HBONE_PORT}, so mesh traffic to {_owners(pods)} is blocked; add port {HBONE_PORT}"
            )
            findings.append(finding_at(policy, "spec.ingress", message, ""))
        probed = [pod for pod in pods if pod.network_probes]
        if probed and not any(_admits_probe_address(rule) for rule in rules):
            message = (
                f"ambient sends kubelet probes to {_owners(probed)} from {PROBE_SNAT_ADDRESS} (SNAT), "
                "which this policy does not allow: depending on the CNI the probes fail; "
                f"allow ipBlock {PROBE_SNAT_ADDRESS}/32"
            )
            findings.append(finding_at(policy, "spec.ingress", message, ""))
    return findings


def _annotations_of(doc: Mapping[str, Any]) -> dict[str, str]:
    return {str(k): str(v) for k, v in ((doc.get("metadata") or {}).get("annotations") or {}).items()}


def _restricts_ingress(spec: Mapping[str, Any]) -> bool:
    types = spec.get("policyTypes")
    return "Ingress" in types if types else True  # without policyTypes, every policy restricts ingress


def _selected(pods: list[PodTemplate], namespace: str, selector: Mapping[str, Any]) -> list[PodTemplate]:
    if selector.get("matchExpressions"):
        return []  # not evaluated: no finding rather than a wrong one
    match = {str(k): str(v) for k, v in (selector.get("matchLabels") or {}).items()}
    return [p for p in pods if p.namespace == namespace and selects(match, p.labels)]


def _admits_pods(rule: Mapping[str, Any]) -> bool:
    sources = rule.get("from")
    return not sources or any("podSelector" in s or "namespaceSelector" in s for s in sources)


def _opens_hbone(rule: Mapping[str, Any]) -> bool:
    return any(
        port.get("port") == HBONE_PORT and port.get("protocol", "TCP") == "TCP"
        for port in rule.get("ports") or []
    )


def _admits_probe_address(rule: Mapping[str, Any]) -> bool:
    sources = rule.get("from")
    if not sources:
        return True  # no `from`: every source
    for source in sources:
        block = source.get("ipBlock")
        if not block:
            continue
        try:
            inside = PROBE_SNAT_ADDRESS in ipaddress.ip_network(str(block.get("cidr")), strict=False)
            excluded = any(
                PROBE_SNAT_ADDRESS in ipaddress.ip_network(str(e), strict=False)
                for e in block.get("except") or []
            )
        except ValueError:
            continue
        if inside and not excluded:
            return True
    return False


def _owners(pods: list[PodTemplate]) -> str:
    return ", ".join(sorted({f"{p.owner_kind} {p.owner_name}" for p in pods}))


AMBIENT_CHECKS = (
    check_injection_in_ambient,
    check_routes_have_waypoints,
    check_waypoints_take_service_traffic,
    check_virtual_services_in_ambient,
    check_ingress_skips_mesh_routes,
    check_network_policies_for_ambient,
)
