"""Manifests → Envoy bootstrap configs for the local mesh (pure: plain data in, plain data out).

What gets built, and which Istio behaviour each piece stands in for:

* one **server sidecar** per pod: terminates mTLS with the pod's SPIFFE certificate, requires a
  client certificate signed by the mesh CA, and forwards to the pod's echo process with
  `x-forwarded-client-cert` handled as Istio's inbound listeners do (`APPEND_FORWARD`, subject, URI
  and DNS of the peer), `server: istio-envoy`;
* one **gateway** for every Istio `Gateway` / Gateway API `Gateway` (merged into one listener):
  virtual hosts from the Gateway's hosts and the routes bound to it, upstream mTLS with the
  gateway's identity, `server: istio-envoy`, `use_remote_address` as an edge proxy;
* one **client sidecar** for mesh callers: the outbound routes a sidecar gets (VirtualServices with
  `mesh`, GAMMA HTTPRoutes, and a default route per Service), `server: envoy`. It is also an HTTP
  proxy: Envoy accepts absolute-form request targets, so `http_proxy=` works.

Routing follows Istio's translation (pilot/pkg/networking/core/route): relative weights become
`weighted_clusters`, subsets become label selectors over the pods, route timeouts default to 0 (off),
the default retry policy is Istio's (2 retries on connect-failure/refused-stream/unavailable/
cancelled/503), `x-envoy-attempt-count` is on, and each route gets Istio's decorator operation.
Anything not emulated produces a warning; anything a cluster would reject raises ManifestError.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from netdebug.k8s.documents import (
    GATEWAY_API_GROUP,
    ISTIO_NETWORKING_GROUP,
    ISTIO_NETWORKING_VERSIONS,
    ISTIO_SECURITY_GROUP,
    Document,
    ManifestError,
)
from netdebug.k8s.hosts import CLUSTER_DOMAIN, host_matches, more_specific, service_host
from netdebug.k8s.inventory import Identity, Inventory, Pod, Service, ServicePort

Role = Literal["server-sidecar", "gateway", "client-sidecar"]
JSON = dict[str, Any]

# Istio's ingress gateway identity (demo profile), and the local caller's service account.
ISTIO_GATEWAY_IDENTITY = Identity("istio-system", "istio-ingressgateway-service-account")
CLIENT_SERVICE_ACCOUNT = "netdebug"

_TLS_SOCKET = "envoy.transport_sockets.tls"
_HCM_TYPE = (
    "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
)
_ROUTER_TYPE = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
_UPSTREAM_TLS = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"
_DOWNSTREAM_TLS = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext"
_PREVIOUS_HOSTS = "type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate"
# Istio sets every circuit-breaker threshold to the maximum so Envoy's defaults (1024) never bite.
_UNLIMITED = 4294967295
# ALPN an Istio client offers towards another sidecar for HTTP/1.1 traffic.
_ISTIO_ALPN = ["istio-http/1.1", "istio", "http/1.1"]


@dataclass(frozen=True)
class PodPlacement:
    echo_port: int
    sidecar_port: int
    admin_port: int


@dataclass(frozen=True)
class Placement:
    """Where every local process listens. `bind` is the address the Envoys listen on."""

    bind: str
    pods: Mapping[str, PodPlacement]
    gateway_port: int
    gateway_admin_port: int
    client_port: int
    client_admin_port: int
    cert_dir: str


@dataclass(frozen=True)
class EnvoySpec:
    name: str
    role: Role
    port: int
    admin_port: int
    identity: Identity
    bootstrap: JSON
    pod: str | None = None


@dataclass(frozen=True)
class MeshConfig:
    envoys: tuple[EnvoySpec, ...]
    gateway_hosts: tuple[str, ...]  # hosts the gateway serves (use one as the Host header)
    mesh_hosts: tuple[str, ...]  # names the client sidecar routes
    client_identity: Identity
    warnings: tuple[str, ...]

    @property
    def identities(self) -> tuple[Identity, ...]:
        return tuple(sorted({e.identity for e in self.envoys}, key=lambda i: i.spiffe))

    def envoy(self, role: Role) -> EnvoySpec | None:
        return next((e for e in self.envoys if e.role == role), None)


def cert_paths(cert_dir: str, identity: Identity) -> tuple[str, str]:
    """(certificate chain, private key) file names for an identity; certs.py writes them."""
    return f"{cert_dir}/{identity.file_stem}.crt", f"{cert_dir}/{identity.file_stem}.key"


def ca_path(cert_dir: str) -> str:
    return f"{cert_dir}/ca.crt"


# ---------------------------------------------------------------------------------------------
# Small pure helpers


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(h|ms|us|µs|ns|m|s)")
_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}


def parse_duration(value: object) -> float:
    """A Go/protobuf duration ("5s", "250ms", "1m30s") in seconds; ValueError when malformed."""
    text = str(value).strip()
    if not text or _DURATION_PART.sub("", text):
        raise ValueError(f"not a duration: {value!r} (expected e.g. 5s, 250ms, 1m30s)")
    return sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART.findall(text))


def envoy_duration(seconds: float) -> str:
    """Protobuf JSON duration: whole seconds as "5s", fractions with millisecond precision."""
    if seconds == int(seconds):
        return f"{int(seconds)}s"
    return f"{seconds:.3f}s"


def route_operation(route: Mapping[str, Any], name: str, port: int) -> str:
    """Istio's decorator operation: `host:port/path*` for one destination, else `<vs>:port/path*`."""
    match = route.get("match", {})
    path = "/*"
    if "prefix" in match:
        path = f"{match['prefix']}*"
    elif "path_separated_prefix" in match:
        path = f"{match['path_separated_prefix']}*"
    elif "path" in match:
        path = match["path"]
    elif "safe_regex" in match:
        path = match["safe_regex"]["regex"]
    cluster = route.get("route", {}).get("cluster")
    if isinstance(cluster, str) and cluster.count("|") == 3:
        return f"{cluster.split('|')[3]}:{port}{path}"
    return f"{name}:{port}{path}"


def istio_default_retry_policy() -> JSON:
    return {
        "retry_on": "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes",
        "num_retries": 2,
        "retriable_status_codes": [503],
        "retry_host_predicate": [
            {"name": "envoy.retry_host_predicates.previous_hosts", "typed_config": {"@type": _PREVIOUS_HOSTS}}
        ],
        "host_selection_retry_max_attempts": 5,
    }


def _string_match(spec: object, doc: Document, where: str) -> JSON:
    """Istio StringMatch {exact|prefix|regex} → Envoy StringMatcher."""
    if not isinstance(spec, Mapping) or len(spec) != 1:
        raise doc.error(where, "expected exactly one of exact, prefix, regex")
    ((kind, value),) = spec.items()
    if kind == "exact":
        return {"exact": str(value)}
    if kind == "prefix":
        return {"prefix": str(value)}
    if kind == "regex":
        return {"safe_regex": {"regex": _checked_regex(str(value), doc, where)}}
    raise doc.error(where, f"unknown match type {kind!r} (expected exact, prefix or regex)")


def _checked_regex(value: str, doc: Document, where: str) -> str:
    try:
        re.compile(value)
    except re.error as exc:
        raise doc.error(where, f"invalid regular expression {value!r}: {exc}") from None
    return value


def _mapping(value: object, doc: Document, where: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise doc.error(where, "expected a mapping")
    return value


def _list(value: object, doc: Document, where: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise doc.error(where, "expected a list")
    return value


def _gateway_api_name_matches(match: Mapping[str, Any], field: str, doc: Document, where: str) -> list[JSON]:
    """A Gateway API match's `headers` or `queryParams` list as Envoy name + string_match entries.

    Each item has `name`, `value` and `type`: Exact (the default) gives an exact match, any other type
    a checked regex. Headers and query parameters follow the same rule, so one function does both.
    """
    out: list[JSON] = []
    for k, item in enumerate(_list(match.get(field), doc, f"{where}.{field}")):
        item = _mapping(item, doc, f"{where}.{field}[{k}]")
        value = str(item.get("value", ""))
        string_match: JSON = (
            {"exact": value}
            if str(item.get("type", "Exact")) == "Exact"
            else {"safe_regex": {"regex": _checked_regex(value, doc, f"{where}.{field}[{k}].value")}}
        )
        out.append({"name": str(item.get("name", "")), "string_match": string_match})
    return out


def _warn_unknown(
    warnings: list[str], spec: Mapping[str, Any], supported: Iterable[str], doc: Document, where: str
) -> None:
    for key in sorted(set(spec) - set(supported)):
        path = f"{where}.{key}" if where else key
        warnings.append(f"{doc.where(path)}: not emulated by the local mesh (ignored)")


# ---------------------------------------------------------------------------------------------
# The translation


@dataclass
class _VirtualHost:
    name: str
    domains: list[str]
    routes: list[JSON]
    origin: str  # what defined it, for conflict messages

    def to_envoy(self) -> JSON:
        return {
            "name": self.name,
            "domains": self.domains,
            "routes": self.routes,
            "include_request_attempt_count": True,
        }


@dataclass
class _DestinationRule:
    doc: Document
    subsets: dict[str, dict[str, str]]
    lb_policy: str
    subset_lb: dict[str, str] = field(default_factory=dict)


_LB_POLICIES = {
    "ROUND_ROBIN": "ROUND_ROBIN",
    "LEAST_REQUEST": "LEAST_REQUEST",
    "LEAST_CONN": "LEAST_REQUEST",
    "RANDOM": "RANDOM",
    "UNSPECIFIED": "LEAST_REQUEST",
}


@dataclass(frozen=True)
class _GatewayApiMatch:
    """One HTTPRoute match, with what Gateway API precedence sorts on."""

    route: JSON
    precedence: tuple[int, int, int, int, int]
    tie: tuple[str, int, int]


class _Translator:
    def __init__(self, inventory: Inventory, placement: Placement, client_identity: Identity) -> None:
        self.inv = inventory
        self.placement = placement
        self.client_identity = client_identity
        self.warnings: list[str] = list(inventory.warnings)
        self.clusters: dict[str, JSON] = {}
        self.destination_rules = self._destination_rules()
        self.istio_gateways = {
            (d.namespace, d.name): d for d in inventory.of_kind("Gateway", f"{ISTIO_NETWORKING_GROUP}/")
        }
        self.api_gateways = {
            (d.namespace, d.name): d for d in inventory.of_kind("Gateway", GATEWAY_API_GROUP + "/")
        }
        for doc in inventory.documents:
            if (
                doc.api_version.startswith(f"{ISTIO_NETWORKING_GROUP}/")
                and doc.api_version not in ISTIO_NETWORKING_VERSIONS
            ):
                raise doc.error("apiVersion", f"unknown Istio API version {doc.api_version!r}")
            if doc.api_version.startswith(
                (f"{ISTIO_NETWORKING_GROUP}/", f"{ISTIO_SECURITY_GROUP}/")
            ) and doc.kind not in {
                "VirtualService",
                "DestinationRule",
                "Gateway",
            }:
                self.warnings.append(f"{doc.where()}: kind not emulated by the local mesh (ignored)")
            if doc.api_version.startswith(GATEWAY_API_GROUP + "/") and doc.kind not in {
                "Gateway",
                "HTTPRoute",
            }:
                self.warnings.append(f"{doc.where()}: kind not emulated by the local mesh (ignored)")

    # -- destinations ---------------------------------------------------------------------

    def _destination_rules(self) -> dict[str, _DestinationRule]:
        rules: dict[str, _DestinationRule] = {}
        for doc in self.inv.of_kind("DestinationRule", f"{ISTIO_NETWORKING_GROUP}/"):
            spec = doc.spec
            host = str(spec.get("host", ""))
            svc = self.inv.service_by_host(host, doc.namespace)
            if svc is None:
                raise doc.error("spec.host", f"{host!r} is not a Service in the manifests")
            if svc.fqdn in rules:
                self.warnings.append(
                    f"{doc.where('spec.host')}: a second DestinationRule for {svc.fqdn} is ignored"
                    f" (the first is {rules[svc.fqdn].doc.where()})"
                )
                continue
            _warn_unknown(self.warnings, spec, {"host", "subsets", "trafficPolicy", "exportTo"}, doc, "spec")
            lb = self._lb_policy(
                _mapping(spec.get("trafficPolicy"), doc, "spec.trafficPolicy"), doc, "spec.trafficPolicy"
            )
            rule = _DestinationRule(doc, {}, lb or "LEAST_REQUEST")
            for i, subset in enumerate(_list(spec.get("subsets"), doc, "spec.subsets")):
                where = f"spec.subsets[{i}]"
                subset = _mapping(subset, doc, where)
                name = str(subset.get("name", ""))
                if not name:
                    raise doc.error(f"{where}.name", "missing")
                labels = {
                    str(k): str(v) for k, v in _mapping(subset.get("labels"), doc, f"{where}.labels").items()
                }
                if not self.inv.pods_selected(svc.namespace, {**svc.selector, **labels}):
                    self.warnings.append(
                        f"{doc.where(where + '.labels')}: subset {name!r} selects no pod of {svc.fqdn}"
                        " (a cluster answers 503 no_healthy_upstream; istioctl analyze: IST0173)"
                    )
                rule.subsets[name] = labels
                sub_lb = self._lb_policy(
                    _mapping(subset.get("trafficPolicy"), doc, f"{where}.trafficPolicy"),
                    doc,
                    f"{where}.trafficPolicy",
                )
                if sub_lb:
                    rule.subset_lb[name] = sub_lb
                _warn_unknown(self.warnings, subset, {"name", "labels", "trafficPolicy"}, doc, where)
            rules[svc.fqdn] = rule
        return rules

    def _lb_policy(self, policy: Mapping[str, Any], doc: Document, where: str) -> str | None:
        if not policy:
            return None
        tls_mode = _mapping(policy.get("tls"), doc, f"{where}.tls").get("mode")
        if tls_mode not in (None, "ISTIO_MUTUAL"):
            self.warnings.append(
                f"{doc.where(where + '.tls.mode')}: {tls_mode} not emulated (ISTIO_MUTUAL used)"
            )
        _warn_unknown(self.warnings, policy, {"loadBalancer", "tls"}, doc, where)
        lb = _mapping(policy.get("loadBalancer"), doc, f"{where}.loadBalancer")
        if not lb:
            return None
        simple = str(lb.get("simple", "UNSPECIFIED"))
        if simple not in _LB_POLICIES or set(lb) != {"simple"}:
            self.warnings.append(
                f"{doc.where(where + '.loadBalancer')}: only simple {sorted(_LB_POLICIES)} is emulated"
            )
        return _LB_POLICIES.get(simple)

    def _target_check(self, svc: Service, index: int, port: ServicePort, pods: Sequence[Pod]) -> None:
        for pod in pods:
            target = port.target_port
            number = pod.container_ports.get(target) if isinstance(target, str) else target
            if number is None:
                raise svc.doc.error(
                    f"spec.ports[{index}].targetPort",
                    f"no container port named {target!r} in Deployment {pod.namespace}/{pod.deployment}",
                )
            if number != pod.http_port:
                raise svc.doc.error(
                    f"spec.ports[{index}].targetPort",
                    f"port {port.port} targets container port {number} of {pod.namespace}/{pod.deployment},"
                    f" but the echo serves plain HTTP on {pod.http_port}; only HTTP ports are emulated",
                )

    def service_cluster(
        self, svc: Service, port: ServicePort, subset: str | None, labels: Mapping[str, str]
    ) -> str:
        name = f"outbound|{port.port}|{subset or ''}|{svc.fqdn}"
        if name in self.clusters:
            return name
        if not svc.selector:
            self.warnings.append(
                f"{svc.doc.where('spec.selector')}: a Service without selector has no local endpoints"
            )
        pods = self.inv.pods_selected(svc.namespace, {**svc.selector, **labels}) if svc.selector else []
        self._target_check(svc, svc.ports.index(port), port, pods)
        rule = self.destination_rules.get(svc.fqdn)
        lb = "LEAST_REQUEST"
        if rule is not None:
            lb = rule.subset_lb.get(subset or "", rule.lb_policy)
        sni = f"outbound_.{port.port}_.{subset or ''}_.{svc.fqdn}"
        sans = sorted({pod.identity.spiffe for pod in pods})
        self.clusters[name] = self._upstream_cluster(name, pods, lb, sni, sans)
        return name

    def _upstream_cluster(
        self, name: str, pods: Sequence[Pod], lb: str, sni: str, sans: Sequence[str]
    ) -> JSON:
        endpoints = [
            {
                "endpoint": {
                    "address": {
                        "socket_address": {
                            "address": self.placement.bind,
                            "port_value": self.placement.pods[pod.name].sidecar_port,
                        }
                    }
                }
            }
            for pod in pods
        ]
        cluster: JSON = {
            "name": name,
            "type": "STATIC",
            "connect_timeout": "10s",
            "lb_policy": lb,
            "load_assignment": {
                "cluster_name": name,
                "endpoints": [{"lb_endpoints": endpoints}] if endpoints else [],
            },
            "circuit_breakers": {
                "thresholds": [
                    {
                        "max_connections": _UNLIMITED,
                        "max_pending_requests": _UNLIMITED,
                        "max_requests": _UNLIMITED,
                        "max_retries": _UNLIMITED,
                    }
                ]
            },
        }
        # Filled in per Envoy (the caller's own certificate differs): see _with_client_tls.
        cluster["_mtls"] = {"sni": sni, "sans": list(sans)}
        return cluster

    def _with_client_tls(self, cluster: JSON, identity: Identity) -> JSON:
        mtls = cluster["_mtls"]
        out = {k: v for k, v in cluster.items() if k != "_mtls"}
        cert, key = cert_paths(self.placement.cert_dir, identity)
        validation: JSON = {"trusted_ca": {"filename": ca_path(self.placement.cert_dir)}}
        if mtls["sans"]:
            validation["match_typed_subject_alt_names"] = [
                {"san_type": "URI", "matcher": {"exact": san}} for san in mtls["sans"]
            ]
        out["transport_socket"] = {
            "name": _TLS_SOCKET,
            "typed_config": {
                "@type": _UPSTREAM_TLS,
                "sni": mtls["sni"],
                "common_tls_context": {
                    "alpn_protocols": _ISTIO_ALPN,
                    "tls_params": {"tls_minimum_protocol_version": "TLSv1_2"},
                    "tls_certificates": [
                        {"certificate_chain": {"filename": cert}, "private_key": {"filename": key}}
                    ],
                    "validation_context": validation,
                },
            },
        }
        return out

    def _service_port(self, svc: Service, number: int | None, doc: Document, where: str) -> ServicePort:
        if number is None:
            http_ports = [p for p in svc.ports if p.is_http]
            if len(svc.ports) == 1:
                candidates = list(svc.ports)
            elif len(http_ports) == 1:
                candidates = http_ports
            else:
                raise doc.error(where, f"required: Service {svc.fqdn} has several ports")
            port = candidates[0]
        else:
            found = [p for p in svc.ports if p.port == number]
            if not found:
                raise doc.error(where, f"Service {svc.fqdn} has no port {number}")
            port = found[0]
        if not port.is_http:
            raise doc.error(
                where,
                f"port {port.port} of {svc.fqdn} is not an HTTP port (name {port.name!r},"
                f" appProtocol {port.app_protocol!r}); Istio treats it as TCP (IST0118)",
            )
        return port

    # -- Istio VirtualService -------------------------------------------------------------

    def _resolve_istio_gateway(
        self, ref: str, doc: Document, where: str
    ) -> tuple[str, str] | Literal["mesh"]:
        if ref == "mesh":
            return "mesh"
        ns, _, name = ref.rpartition("/")
        key = (ns or doc.namespace, name)
        if key not in self.istio_gateways:
            raise doc.error(where, f"Gateway {key[0]}/{key[1]} does not exist in the manifests (IST0101)")
        return key

    def _vs_gateways(self, doc: Document) -> list[tuple[str, str] | Literal["mesh"]]:
        refs = _list(doc.spec.get("gateways"), doc, "spec.gateways") or ["mesh"]
        return [self._resolve_istio_gateway(str(r), doc, f"spec.gateways[{i}]") for i, r in enumerate(refs)]

    def istio_routes(
        self, doc: Document, context: tuple[str, str] | Literal["mesh"], port: int
    ) -> list[JSON]:
        spec = doc.spec
        routes: list[JSON] = []
        for i, http in enumerate(_list(spec.get("http"), doc, "spec.http")):
            where = f"spec.http[{i}]"
            http = _mapping(http, doc, where)
            _warn_unknown(
                self.warnings,
                http,
                {
                    "name",
                    "match",
                    "route",
                    "redirect",
                    "directResponse",
                    "rewrite",
                    "timeout",
                    "retries",
                    "headers",
                },
                doc,
                where,
            )
            action = self._istio_action(doc, http, where)
            matches = _list(http.get("match"), doc, f"{where}.match") or [{}]
            for j, match in enumerate(matches):
                mwhere = f"{where}.match[{j}]"
                match = _mapping(match, doc, mwhere)
                gateways = [
                    self._resolve_istio_gateway(str(g), doc, f"{mwhere}.gateways[{k}]")
                    for k, g in enumerate(_list(match.get("gateways"), doc, f"{mwhere}.gateways"))
                ]
                if gateways and context not in gateways:
                    continue
                route: JSON = {
                    "name": str(http.get("name") or f"{doc.name}.{i}"),
                    "match": self._istio_match(doc, match, mwhere),
                }
                route.update(action)
                self._istio_rewrite(doc, http, route, where)
                route["decorator"] = {"operation": route_operation(route, doc.name, port)}
                routes.append(route)
        for key in ("tcp", "tls"):
            if spec.get(key):
                self.warnings.append(f"{doc.where('spec.' + key)}: only HTTP routes are emulated (ignored)")
        return routes

    def _istio_match(self, doc: Document, match: Mapping[str, Any], where: str) -> JSON:
        _warn_unknown(
            self.warnings,
            match,
            {
                "name",
                "uri",
                "headers",
                "withoutHeaders",
                "method",
                "authority",
                "queryParams",
                "ignoreUriCase",
                "gateways",
            },
            doc,
            where,
        )
        out: JSON = {}
        uri = match.get("uri")
        if uri is None:
            out["prefix"] = "/"
        else:
            sm = _string_match(uri, doc, f"{where}.uri")
            if "exact" in sm:
                out["path"] = sm["exact"]
            elif "prefix" in sm:
                out["prefix"] = sm["prefix"]
            else:
                out["safe_regex"] = sm["safe_regex"]
        if match.get("ignoreUriCase"):
            out["case_sensitive"] = False
        headers: list[JSON] = []
        for name, spec in _mapping(match.get("headers"), doc, f"{where}.headers").items():
            headers.append(
                {"name": str(name), "string_match": _string_match(spec, doc, f"{where}.headers.{name}")}
            )
        for name, spec in _mapping(match.get("withoutHeaders"), doc, f"{where}.withoutHeaders").items():
            headers.append(
                {
                    "name": str(name),
                    "string_match": _string_match(spec, doc, f"{where}.withoutHeaders.{name}"),
                    "invert_match": True,
                }
            )
        if match.get("method") is not None:
            headers.append(
                {"name": ":method", "string_match": _string_match(match["method"], doc, f"{where}.method")}
            )
        if match.get("authority") is not None:
            headers.append(
                {
                    "name": ":authority",
                    "string_match": _string_match(match["authority"], doc, f"{where}.authority"),
                }
            )
        if headers:
            out["headers"] = headers
        params = [
            {"name": str(name), "string_match": _string_match(spec, doc, f"{where}.queryParams.{name}")}
            for name, spec in _mapping(match.get("queryParams"), doc, f"{where}.queryParams").items()
        ]
        if params:
            out["query_parameters"] = params
        return out

    def _istio_action(self, doc: Document, http: Mapping[str, Any], where: str) -> JSON:
        kinds = [k for k in ("route", "redirect", "directResponse") if http.get(k)]
        if len(kinds) != 1:
            raise doc.error(where, "exactly one of route, redirect, directResponse is required")
        out: JSON = {}
        headers = _mapping(http.get("headers"), doc, f"{where}.headers")
        out.update(self._header_ops(doc, headers, f"{where}.headers"))
        if kinds[0] == "redirect":
            redirect = _mapping(http["redirect"], doc, f"{where}.redirect")
            _warn_unknown(
                self.warnings,
                redirect,
                {"uri", "authority", "scheme", "redirectCode", "port"},
                doc,
                f"{where}.redirect",
            )
            envoy_redirect: JSON = {}
            if "uri" in redirect:
                envoy_redirect["path_redirect"] = str(redirect["uri"])
            if "authority" in redirect:
                envoy_redirect["host_redirect"] = str(redirect["authority"])
            if "scheme" in redirect:
                envoy_redirect["scheme_redirect"] = str(redirect["scheme"])
            if "port" in redirect:
                envoy_redirect["port_redirect"] = int(redirect["port"])
            codes = {
                301: "MOVED_PERMANENTLY",
                302: "FOUND",
                303: "SEE_OTHER",
                307: "TEMPORARY_REDIRECT",
                308: "PERMANENT_REDIRECT",
            }
            code = int(redirect.get("redirectCode", 301))
            if code not in codes:
                raise doc.error(f"{where}.redirect.redirectCode", f"{code} is not a redirect status")
            envoy_redirect["response_code"] = codes[code]
            out["redirect"] = envoy_redirect
            return out
        if kinds[0] == "directResponse":
            direct = _mapping(http["directResponse"], doc, f"{where}.directResponse")
            body = _mapping(direct.get("body"), doc, f"{where}.directResponse.body")
            response: JSON = {"status": int(direct.get("status", 200))}
            if "string" in body:
                response["body"] = {"inline_string": str(body["string"])}
            out["direct_response"] = response
            return out
        destinations = _list(http["route"], doc, f"{where}.route")
        weighted: list[tuple[str, int]] = []
        for k, dest in enumerate(destinations):
            dwhere = f"{where}.route[{k}]"
            dest = _mapping(dest, doc, dwhere)
            _warn_unknown(self.warnings, dest, {"destination", "weight", "headers"}, doc, dwhere)
            target = _mapping(dest.get("destination"), doc, f"{dwhere}.destination")
            cluster = self._istio_destination(doc, target, f"{dwhere}.destination")
            weight = dest.get("weight", 100 if len(destinations) == 1 else 0)
            if not isinstance(weight, int) or isinstance(weight, bool) or weight < 0:
                raise doc.error(f"{dwhere}.weight", f"expected a non-negative integer, got {weight!r}")
            if dest.get("headers"):
                self.warnings.append(
                    f"{doc.where(dwhere + '.headers')}: per-destination headers not emulated (ignored)"
                )
            # Istio drops zero-weight destinations (and a missing weight among several is zero).
            if weight > 0 or len(destinations) == 1:
                weighted.append((cluster, weight))
        if not weighted:
            raise doc.error(f"{where}.route", "every destination has weight 0: no traffic could be routed")
        action: JSON = self._route_action(weighted)
        if "timeout" in http:
            action["timeout"] = envoy_duration(self._duration(doc, http["timeout"], f"{where}.timeout"))
        retries = _mapping(http.get("retries"), doc, f"{where}.retries")
        if "retries" in http:
            policy = self._istio_retries(doc, retries, f"{where}.retries")
            if policy is None:
                action.pop("retry_policy")
            else:
                action["retry_policy"] = policy
        out["route"] = action
        return out

    @staticmethod
    def _route_action(weighted: Sequence[tuple[str, int]]) -> JSON:
        action: JSON = {}
        if len(weighted) == 1:
            action["cluster"] = weighted[0][0]
        else:
            # Relative weights (Envoy ≥ 1.28 no longer needs total_weight); the sum need not be 100.
            action["weighted_clusters"] = {"clusters": [{"name": c, "weight": w} for c, w in weighted]}
        # Istio disables Envoy's 15 s default route timeout.
        action["timeout"] = "0s"
        action["retry_policy"] = istio_default_retry_policy()
        return action

    def _duration(self, doc: Document, value: object, where: str) -> float:
        try:
            return parse_duration(value)
        except ValueError as exc:
            raise doc.error(where, str(exc)) from None

    def _istio_retries(self, doc: Document, retries: Mapping[str, Any], where: str) -> JSON | None:
        _warn_unknown(
            self.warnings,
            retries,
            {"attempts", "perTryTimeout", "retryOn", "retryRemoteLocalities"},
            doc,
            where,
        )
        attempts = retries.get("attempts", 2)
        if not isinstance(attempts, int) or isinstance(attempts, bool) or attempts < 0:
            raise doc.error(f"{where}.attempts", f"expected a non-negative integer, got {attempts!r}")
        if attempts == 0:
            return None
        policy = istio_default_retry_policy()
        policy["num_retries"] = attempts
        if "perTryTimeout" in retries:
            policy["per_try_timeout"] = envoy_duration(
                self._duration(doc, retries["perTryTimeout"], f"{where}.perTryTimeout")
            )
        if "retryOn" in retries:
            # Istio: numeric entries are status codes to retry on; the rest are Envoy retry conditions.
            conditions, codes = [], []
            for item in str(retries["retryOn"]).split(","):
                item = item.strip()
                if item.isdigit():
                    codes.append(int(item))
                elif item:
                    conditions.append(item)
            if codes and "retriable-status-codes" not in conditions:
                conditions.append("retriable-status-codes")
            policy["retry_on"] = ",".join(conditions)
            if codes:
                policy["retriable_status_codes"] = codes
            else:
                policy.pop("retriable_status_codes")
        return policy

    def _header_ops(self, doc: Document, headers: Mapping[str, Any], where: str) -> JSON:
        out: JSON = {}
        for direction, prefix in (("request", "request_headers"), ("response", "response_headers")):
            ops = _mapping(headers.get(direction), doc, f"{where}.{direction}")
            _warn_unknown(self.warnings, ops, {"set", "add", "remove"}, doc, f"{where}.{direction}")
            to_add = [
                {"header": {"key": str(k), "value": str(v)}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}
                for k, v in _mapping(ops.get("set"), doc, f"{where}.{direction}.set").items()
            ] + [
                {"header": {"key": str(k), "value": str(v)}, "append_action": "APPEND_IF_EXISTS_OR_ADD"}
                for k, v in _mapping(ops.get("add"), doc, f"{where}.{direction}.add").items()
            ]
            if to_add:
                out[f"{prefix}_to_add"] = to_add
            remove = [str(h) for h in _list(ops.get("remove"), doc, f"{where}.{direction}.remove")]
            if remove:
                out[f"{prefix}_to_remove"] = remove
        return out

    def _istio_rewrite(self, doc: Document, http: Mapping[str, Any], route: JSON, where: str) -> None:
        rewrite = _mapping(http.get("rewrite"), doc, f"{where}.rewrite")
        if not rewrite or "route" not in route:
            return
        _warn_unknown(self.warnings, rewrite, {"uri", "authority"}, doc, f"{where}.rewrite")
        if "uri" in rewrite:
            if "prefix" in route["match"]:
                route["route"]["prefix_rewrite"] = str(rewrite["uri"])
            else:
                route["route"]["regex_rewrite"] = {
                    "pattern": {"regex": "^.*$"},
                    "substitution": str(rewrite["uri"]),
                }
        if "authority" in rewrite:
            route["route"]["host_rewrite_literal"] = str(rewrite["authority"])

    def _istio_destination(self, doc: Document, target: Mapping[str, Any], where: str) -> str:
        host = str(target.get("host", ""))
        svc = self.inv.service_by_host(host, doc.namespace)
        if svc is None:
            raise doc.error(
                f"{where}.host", f"{host!r} is not a Service in the manifests (ServiceEntry is not emulated)"
            )
        if host != svc.fqdn:
            self.warnings.append(
                f"{doc.where(where + '.host')}: short name {host!r}; prefer the FQDN {svc.fqdn} (IST0174)"
            )
        port_spec = _mapping(target.get("port"), doc, f"{where}.port")
        number = port_spec.get("number")
        port = self._service_port(svc, int(number) if number is not None else None, doc, f"{where}.port")
        subset = target.get("subset")
        labels: Mapping[str, str] = {}
        if subset is not None:
            rule = self.destination_rules.get(svc.fqdn)
            if rule is None:
                raise doc.error(
                    f"{where}.subset", f"subset {subset!r}: no DestinationRule for {svc.fqdn} (IST0101)"
                )
            if str(subset) not in rule.subsets:
                raise doc.error(
                    f"{where}.subset",
                    f"subset {subset!r} is not defined in {rule.doc.where()}"
                    f" (defined: {', '.join(sorted(rule.subsets)) or 'none'})",
                )
            labels = rule.subsets[str(subset)]
        return self.service_cluster(svc, port, str(subset) if subset is not None else None, labels)

    # -- Gateway API HTTPRoute ------------------------------------------------------------

    def _backend_cluster(self, doc: Document, ref: Mapping[str, Any], where: str) -> str:
        kind = str(ref.get("kind", "Service"))
        group = str(ref.get("group", ""))
        if kind != "Service" or group not in ("", "core"):
            raise doc.error(where, f"backend kind {group or 'core'}/{kind} is not emulated (only Services)")
        name = str(ref.get("name", ""))
        namespace = str(ref.get("namespace", doc.namespace))
        svc = self.inv.service_by_host(service_host(name, namespace), namespace)
        if svc is None:
            raise doc.error(f"{where}.name", f"Service {namespace}/{name} does not exist in the manifests")
        if ref.get("port") is None:
            raise doc.error(f"{where}.port", "required for a Service backend")
        port = self._service_port(svc, int(ref["port"]), doc, f"{where}.port")
        return self.service_cluster(svc, port, None, {})

    def _gateway_api_match(
        self, doc: Document, match: Mapping[str, Any], where: str
    ) -> tuple[JSON, tuple[int, int, int, int, int]]:
        _warn_unknown(self.warnings, match, {"path", "headers", "queryParams", "method"}, doc, where)
        path = _mapping(match.get("path"), doc, f"{where}.path")
        path_type = str(path.get("type", "PathPrefix"))
        value = str(path.get("value", "/"))
        out: JSON = {}
        if path_type == "Exact":
            out["path"] = value
            rank = 0
        elif path_type == "PathPrefix":
            trimmed = value.rstrip("/")
            # Gateway API prefixes match whole path segments ("/echo" matches "/echo/x", not "/echoes").
            if trimmed:
                out["path_separated_prefix"] = trimmed
            else:
                out["prefix"] = "/"
            rank = 2
        elif path_type == "RegularExpression":
            out["safe_regex"] = {"regex": _checked_regex(value, doc, f"{where}.path.value")}
            rank = 1
        else:
            raise doc.error(f"{where}.path.type", f"unknown path match type {path_type!r}")
        headers = _gateway_api_name_matches(match, "headers", doc, where)
        if match.get("method"):
            headers.append({"name": ":method", "string_match": {"exact": str(match["method"])}})
        if headers:
            out["headers"] = headers
        params = _gateway_api_name_matches(match, "queryParams", doc, where)
        if params:
            out["query_parameters"] = params
        # Gateway API precedence: exact path, longest prefix, method, most headers, most query params.
        header_count = len(headers) - (1 if match.get("method") else 0)
        return out, (rank, -len(value), 0 if match.get("method") else 1, -header_count, -len(params))

    def gateway_api_routes(self, doc: Document, port: int) -> list[_GatewayApiMatch]:
        spec = doc.spec
        out: list[_GatewayApiMatch] = []
        for i, rule in enumerate(_list(spec.get("rules"), doc, "spec.rules") or [{}]):
            where = f"spec.rules[{i}]"
            rule = _mapping(rule, doc, where)
            _warn_unknown(
                self.warnings, rule, {"name", "matches", "backendRefs", "filters", "timeouts"}, doc, where
            )
            action: JSON = {}
            weighted: list[tuple[str, int]] = []
            for k, ref in enumerate(_list(rule.get("backendRefs"), doc, f"{where}.backendRefs")):
                bwhere = f"{where}.backendRefs[{k}]"
                ref = _mapping(ref, doc, bwhere)
                if ref.get("filters"):
                    self.warnings.append(
                        f"{doc.where(bwhere + '.filters')}: per-backend filters not emulated (ignored)"
                    )
                weight = ref.get("weight", 1)
                if not isinstance(weight, int) or isinstance(weight, bool) or weight < 0:
                    raise doc.error(f"{bwhere}.weight", f"expected a non-negative integer, got {weight!r}")
                cluster = self._backend_cluster(doc, ref, bwhere)
                if weight > 0:
                    weighted.append((cluster, weight))
            filters = self._gateway_api_filters(
                doc, _list(rule.get("filters"), doc, f"{where}.filters"), f"{where}.filters"
            )
            if "redirect" in filters:
                action = {"redirect": filters.pop("redirect")}
            elif weighted:
                action = {"route": self._route_action(weighted)}
                timeouts = _mapping(rule.get("timeouts"), doc, f"{where}.timeouts")
                _warn_unknown(
                    self.warnings, timeouts, {"request", "backendRequest"}, doc, f"{where}.timeouts"
                )
                if "request" in timeouts:
                    action["route"]["timeout"] = envoy_duration(
                        self._duration(doc, timeouts["request"], f"{where}.timeouts.request")
                    )
                if "backendRequest" in timeouts:
                    action["route"]["retry_policy"]["per_try_timeout"] = envoy_duration(
                        self._duration(doc, timeouts["backendRequest"], f"{where}.timeouts.backendRequest")
                    )
            else:
                # Gateway API: a rule with no usable backend answers 500.
                action = {"direct_response": {"status": 500}}
            rewrite = filters.pop("rewrite", {})
            for j, match in enumerate(_list(rule.get("matches"), doc, f"{where}.matches") or [{}]):
                mwhere = f"{where}.matches[{j}]"
                envoy_match, precedence = self._gateway_api_match(doc, _mapping(match, doc, mwhere), mwhere)
                route: JSON = {"name": f"{doc.namespace}.{doc.name}.{i}.{j}", "match": envoy_match}
                route.update({k: (dict(v) if isinstance(v, dict) else v) for k, v in action.items()})
                route.update(filters)
                if rewrite and "route" in route:
                    route["route"] = {**route["route"], **rewrite}
                    if (
                        "prefix_rewrite" in rewrite
                        and "path_separated_prefix" not in envoy_match
                        and "prefix" not in envoy_match
                    ):
                        raise doc.error(f"{where}.filters", "ReplacePrefixMatch needs a PathPrefix match")
                route["decorator"] = {"operation": route_operation(route, doc.name, port)}
                out.append(_GatewayApiMatch(route, precedence, (f"{doc.namespace}/{doc.name}", i, j)))
        return out

    def _gateway_api_filters(self, doc: Document, filters: list[Any], where: str) -> JSON:
        out: JSON = {}
        for k, item in enumerate(filters):
            fwhere = f"{where}[{k}]"
            item = _mapping(item, doc, fwhere)
            ftype = str(item.get("type", ""))
            if ftype in ("RequestHeaderModifier", "ResponseHeaderModifier"):
                key = "requestHeaderModifier" if ftype.startswith("Request") else "responseHeaderModifier"
                prefix = "request_headers" if ftype.startswith("Request") else "response_headers"
                spec = _mapping(item.get(key), doc, f"{fwhere}.{key}")
                adds = []
                for op, action in (("set", "OVERWRITE_IF_EXISTS_OR_ADD"), ("add", "APPEND_IF_EXISTS_OR_ADD")):
                    for h in _list(spec.get(op), doc, f"{fwhere}.{key}.{op}"):
                        h = _mapping(h, doc, f"{fwhere}.{key}.{op}")
                        adds.append(
                            {
                                "header": {"key": str(h.get("name")), "value": str(h.get("value"))},
                                "append_action": action,
                            }
                        )
                if adds:
                    out[f"{prefix}_to_add"] = adds
                if spec.get("remove"):
                    out[f"{prefix}_to_remove"] = [
                        str(h) for h in _list(spec["remove"], doc, f"{fwhere}.{key}.remove")
                    ]
            elif ftype == "URLRewrite":
                spec = _mapping(item.get("urlRewrite"), doc, f"{fwhere}.urlRewrite")
                rewrite: JSON = {}
                if spec.get("hostname"):
                    rewrite["host_rewrite_literal"] = str(spec["hostname"])
                path = _mapping(spec.get("path"), doc, f"{fwhere}.urlRewrite.path")
                if path.get("type") == "ReplacePrefixMatch":
                    rewrite["prefix_rewrite"] = str(path.get("replacePrefixMatch", "/"))
                elif path.get("type") == "ReplaceFullPath":
                    rewrite["regex_rewrite"] = {
                        "pattern": {"regex": "^.*$"},
                        "substitution": str(path.get("replaceFullPath", "/")),
                    }
                elif path:
                    raise doc.error(f"{fwhere}.urlRewrite.path.type", f"unknown type {path.get('type')!r}")
                out["rewrite"] = rewrite
            elif ftype == "RequestRedirect":
                spec = _mapping(item.get("requestRedirect"), doc, f"{fwhere}.requestRedirect")
                codes = {
                    301: "MOVED_PERMANENTLY",
                    302: "FOUND",
                    303: "SEE_OTHER",
                    307: "TEMPORARY_REDIRECT",
                    308: "PERMANENT_REDIRECT",
                }
                redirect: JSON = {"response_code": codes.get(int(spec.get("statusCode", 302)), "FOUND")}
                if spec.get("scheme"):
                    redirect["scheme_redirect"] = str(spec["scheme"])
                if spec.get("hostname"):
                    redirect["host_redirect"] = str(spec["hostname"])
                if spec.get("port"):
                    redirect["port_redirect"] = int(spec["port"])
                path = _mapping(spec.get("path"), doc, f"{fwhere}.requestRedirect.path")
                if path.get("type") == "ReplaceFullPath":
                    redirect["path_redirect"] = str(path.get("replaceFullPath", "/"))
                elif path.get("type") == "ReplacePrefixMatch":
                    redirect["prefix_rewrite"] = str(path.get("replacePrefixMatch", "/"))
                out["redirect"] = redirect
            else:
                self.warnings.append(f"{doc.where(fwhere)}: filter {ftype or '?'} not emulated (ignored)")
        return out

    @staticmethod
    def _sorted_gateway_api(matches: Iterable[_GatewayApiMatch]) -> list[JSON]:
        return [m.route for m in sorted(matches, key=lambda m: (m.precedence, m.tie))]

    def _api_parents(
        self, doc: Document
    ) -> tuple[list[tuple[Document, str | None]], list[tuple[Service, int | None]]]:
        gateways: list[tuple[Document, str | None]] = []
        services: list[tuple[Service, int | None]] = []
        for i, ref in enumerate(_list(doc.spec.get("parentRefs"), doc, "spec.parentRefs")):
            where = f"spec.parentRefs[{i}]"
            ref = _mapping(ref, doc, where)
            kind = str(ref.get("kind", "Gateway"))
            group = str(ref.get("group", GATEWAY_API_GROUP if kind == "Gateway" else ""))
            name = str(ref.get("name", ""))
            namespace = str(ref.get("namespace", doc.namespace))
            if kind == "Gateway" and group == GATEWAY_API_GROUP:
                gw = self.api_gateways.get((namespace, name))
                if gw is None:
                    raise doc.error(
                        f"{where}.name", f"Gateway {namespace}/{name} does not exist in the manifests"
                    )
                section = ref.get("sectionName")
                if section is not None:
                    listeners = [
                        str(_mapping(item, gw, "spec.listeners").get("name"))
                        for item in _list(gw.spec.get("listeners"), gw, "spec.listeners")
                    ]
                    if str(section) not in listeners:
                        raise doc.error(
                            f"{where}.sectionName", f"Gateway {namespace}/{name} has no listener {section!r}"
                        )
                gateways.append((gw, str(section) if section is not None else None))
            elif kind == "Service" and group in ("", "core"):
                svc = self.inv.service_by_host(service_host(name, namespace), namespace)
                if svc is None:
                    raise doc.error(
                        f"{where}.name", f"Service {namespace}/{name} does not exist in the manifests"
                    )
                port = ref.get("port")
                services.append((svc, int(port) if port is not None else None))
            else:
                raise doc.error(where, f"parent {group or 'core'}/{kind} is not emulated")
        return gateways, services

    # -- virtual hosts --------------------------------------------------------------------

    def _add_vhost(self, table: dict[str, _VirtualHost], vhost: _VirtualHost) -> None:
        for domain in vhost.domains:
            for other in table.values():
                if domain in other.domains:
                    raise ManifestError(
                        f"{vhost.origin}: host {domain!r} is also routed by {other.origin};"
                        " two routes for one host conflict (IST0109)"
                    )
        table[vhost.name] = vhost

    def gateway_vhosts(self) -> tuple[list[_VirtualHost], list[str], int]:
        table: dict[str, _VirtualHost] = {}
        served: list[str] = []
        ports: list[int] = []
        # Istio Gateways: server hosts per gateway key.
        gw_hosts: dict[tuple[str, str], list[str]] = {}
        for key, gw in self.istio_gateways.items():
            _warn_unknown(self.warnings, gw.spec, {"selector", "servers"}, gw, "spec")
            hosts: list[str] = []
            for i, server in enumerate(_list(gw.spec.get("servers"), gw, "spec.servers")):
                server = _mapping(server, gw, f"spec.servers[{i}]")
                server_port = _mapping(server.get("port"), gw, f"spec.servers[{i}].port")
                protocol = str(server_port.get("protocol", "HTTP")).upper()
                if protocol not in ("HTTP", "HTTP2"):
                    self.warnings.append(
                        f"{gw.where(f'spec.servers[{i}].port.protocol')}: {protocol} not emulated (HTTP only)"
                    )
                    continue
                if server.get("tls"):
                    self.warnings.append(f"{gw.where(f'spec.servers[{i}].tls')}: not emulated (ignored)")
                ports.append(int(server_port.get("number", 80)))
                for host in _list(server.get("hosts"), gw, f"spec.servers[{i}].hosts"):
                    # "namespace/host": the namespace part restricts which VirtualServices bind; dropped here.
                    hosts.append(str(host).rpartition("/")[2])
            gw_hosts[key] = hosts
        port = ports[0] if ports else 80
        for vs in self.inv.of_kind("VirtualService", f"{ISTIO_NETWORKING_GROUP}/"):
            bound = [g for g in self._vs_gateways(vs) if isinstance(g, tuple)]
            if not bound:
                continue
            domains: list[str] = []
            for gkey in bound:
                for host in _list(vs.spec.get("hosts"), vs, "spec.hosts"):
                    for gw_host in gw_hosts.get(gkey, []):
                        if host_matches(gw_host, str(host)) or host_matches(str(host), gw_host):
                            domain = more_specific(str(host), gw_host)
                            if domain not in domains:
                                domains.append(domain)
            if not domains:
                self.warnings.append(
                    f"{vs.where('spec.hosts')}: no host matches its Gateways' hosts (not served there)"
                )
                continue
            routes: list[JSON] = []
            for gkey in bound:
                routes.extend(r for r in self.istio_routes(vs, gkey, port) if r not in routes)
            self._add_vhost(table, _VirtualHost(f"{domains[0]}:{port}", domains, routes, vs.where()))
            served.extend(domains)
        # Gateway API: listeners of each Gateway, HTTPRoutes attached to them, merged per hostname.
        by_host: dict[str, list[_GatewayApiMatch]] = {}
        origins: dict[str, str] = {}
        for route_doc in self.inv.of_kind("HTTPRoute", GATEWAY_API_GROUP + "/"):
            parents, _ = self._api_parents(route_doc)
            route_hosts = [
                str(h) for h in _list(route_doc.spec.get("hostnames"), route_doc, "spec.hostnames")
            ]
            for gw, section in parents:
                for k, listener in enumerate(_list(gw.spec.get("listeners"), gw, "spec.listeners")):
                    listener = _mapping(listener, gw, f"spec.listeners[{k}]")
                    if section is not None and str(listener.get("name")) != section:
                        continue
                    protocol = str(listener.get("protocol", "HTTP"))
                    if protocol != "HTTP":
                        self.warnings.append(
                            f"{gw.where(f'spec.listeners[{k}].protocol')}: {protocol} not emulated"
                        )
                        continue
                    ports.append(int(listener.get("port", 80)))
                    listener_host = str(listener["hostname"]) if listener.get("hostname") else "*"
                    hosts = [
                        more_specific(h, listener_host)
                        for h in (route_hosts or [listener_host])
                        if host_matches(listener_host, h) or host_matches(h, listener_host)
                    ]
                    for host in hosts:
                        matches = self.gateway_api_routes(route_doc, int(listener.get("port", 80)))
                        by_host.setdefault(host, []).extend(matches)
                        origins.setdefault(host, route_doc.where())
        for host, matches in by_host.items():
            self._add_vhost(
                table,
                _VirtualHost(f"{host}:gateway-api", [host], self._sorted_gateway_api(matches), origins[host]),
            )
            served.append(host)
        return list(table.values()), served, ports[0] if ports else 80

    def mesh_vhosts(self) -> tuple[list[_VirtualHost], list[str]]:
        table: dict[str, _VirtualHost] = {}
        caller_ns = self.client_identity.namespace
        claimed: set[str] = set()
        for vs in self.inv.of_kind("VirtualService", f"{ISTIO_NETWORKING_GROUP}/"):
            if "mesh" not in self._vs_gateways(vs):
                continue
            hosts = [str(h) for h in _list(vs.spec.get("hosts"), vs, "spec.hosts")]
            if "*" in hosts:
                raise vs.error(
                    "spec.hosts", "'*' together with the mesh gateway is rejected by Istio (IST0106)"
                )
            domains: list[str] = []
            vs_port = 80
            for host in hosts:
                svc = self.inv.service_by_host(host, vs.namespace)
                if svc is None:
                    domains.append(host)
                    continue
                http_ports = [p for p in svc.ports if p.is_http]
                vs_port = http_ports[0].port if http_ports else vs_port
                names = svc.host_names(caller_ns)
                domains.extend(names + [f"{n}:{p.port}" for p in http_ports for n in names])
                claimed.add(svc.fqdn)
            routes = self.istio_routes(vs, "mesh", vs_port)
            self._add_vhost(table, _VirtualHost(f"{vs.namespace}/{vs.name}", domains, routes, vs.where()))
        # GAMMA: HTTPRoutes whose parent is a Service replace that Service's default route.
        gamma: dict[str, list[_GatewayApiMatch]] = {}
        gamma_origin: dict[str, str] = {}
        gamma_service: dict[str, Service] = {}
        for route_doc in self.inv.of_kind("HTTPRoute", GATEWAY_API_GROUP + "/"):
            _, services = self._api_parents(route_doc)
            for svc, port_number in services:
                parent_port = self._service_port(svc, port_number, route_doc, "spec.parentRefs")
                gamma.setdefault(svc.fqdn, []).extend(self.gateway_api_routes(route_doc, parent_port.port))
                gamma_origin.setdefault(svc.fqdn, route_doc.where())
                gamma_service[svc.fqdn] = svc
        for host, matches in gamma.items():
            svc = gamma_service[host]
            if host in claimed:
                raise ManifestError(
                    f"{gamma_origin[host]}: {host} is also routed by a VirtualService (conflict)"
                )
            names = svc.host_names(caller_ns)
            http_ports = [p for p in svc.ports if p.is_http]
            domains = names + [f"{n}:{p.port}" for p in http_ports for n in names]
            self._add_vhost(
                table,
                _VirtualHost(f"gamma/{host}", domains, self._sorted_gateway_api(matches), gamma_origin[host]),
            )
            claimed.add(host)
        # Every other Service gets the default route a sidecar has: all of its pods.
        for svc in self.inv.services:
            if svc.fqdn in claimed:
                continue
            http_ports = [p for p in svc.ports if p.is_http]
            if not http_ports or not svc.selector:
                continue
            port = http_ports[0]
            if len(http_ports) > 1:
                self.warnings.append(
                    f"{svc.doc.where('spec.ports')}: several HTTP ports, routing {port.port} only"
                )
            cluster = self.service_cluster(svc, port, None, {})
            names = svc.host_names(caller_ns)
            route: JSON = {
                "name": "default",
                "match": {"prefix": "/"},
                "route": self._route_action([(cluster, 1)]),
            }
            route["decorator"] = {"operation": route_operation(route, svc.fqdn, port.port)}
            domains = names + [f"{n}:{p.port}" for p in http_ports for n in names]
            self._add_vhost(table, _VirtualHost(f"{svc.fqdn}:{port.port}", domains, [route], svc.doc.where()))
        mesh_hosts = [d for vh in table.values() for d in vh.domains if ":" not in d]
        return list(table.values()), mesh_hosts

    # -- bootstraps -----------------------------------------------------------------------

    def _hcm(self, stat_prefix: str, vhosts: Sequence[JSON], *, server_name: str, extra: JSON) -> JSON:
        config: JSON = {
            "@type": _HCM_TYPE,
            "stat_prefix": stat_prefix,
            "codec_type": "AUTO",
            "server_name": server_name,
            "generate_request_id": True,
            "normalize_path": True,
            # A tracing block (no provider) makes Envoy propagate and consume x-envoy-decorator-operation
            # as Istio's proxies do; no spans are sent anywhere.
            "tracing": {},
            "route_config": {"name": stat_prefix, "virtual_hosts": list(vhosts), "validate_clusters": True},
            "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {"@type": _ROUTER_TYPE}}],
        }
        config.update(extra)
        return {"name": "envoy.filters.network.http_connection_manager", "typed_config": config}

    def _bootstrap(
        self, node_id: str, cluster: str, admin_port: int, listener: JSON, clusters: Sequence[JSON]
    ) -> JSON:
        return {
            "node": {"id": node_id, "cluster": cluster},
            "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin_port}}},
            "static_resources": {"listeners": [listener], "clusters": list(clusters)},
        }

    def _listener(self, name: str, port: int, direction: str, filter_chain: JSON) -> JSON:
        return {
            "name": name,
            "address": {"socket_address": {"address": self.placement.bind, "port_value": port}},
            "traffic_direction": direction,
            "filter_chains": [filter_chain],
        }

    def _clusters_for(self, names: Iterable[str], identity: Identity) -> list[JSON]:
        return [self._with_client_tls(self.clusters[n], identity) for n in sorted(set(names))]

    @staticmethod
    def _referenced_clusters(vhosts: Iterable[JSON]) -> set[str]:
        names: set[str] = set()
        for vh in vhosts:
            for route in vh["routes"]:
                action = route.get("route", {})
                if "cluster" in action:
                    names.add(action["cluster"])
                for wc in action.get("weighted_clusters", {}).get("clusters", []):
                    names.add(wc["name"])
        return names

    def server_sidecar(self, pod: Pod) -> EnvoySpec:
        where = self.placement.pods[pod.name]
        cert, key = cert_paths(self.placement.cert_dir, pod.identity)
        operation = f"{pod.name}.{pod.namespace}:{pod.http_port}/*"
        for svc in self.inv.services:
            if svc.selector and pod in self.inv.pods_selected(svc.namespace, svc.selector):
                http_ports = [p for p in svc.ports if p.is_http]
                if http_ports:
                    operation = f"{svc.fqdn}:{http_ports[0].port}/*"
                    break
        inbound_cluster = f"inbound|{pod.http_port}||"
        vhost = {
            "name": f"inbound|http|{pod.http_port}",
            "domains": ["*"],
            "routes": [
                {
                    "name": "default",
                    "match": {"prefix": "/"},
                    "route": {"cluster": inbound_cluster, "timeout": "0s"},
                    "decorator": {"operation": operation},
                }
            ],
        }
        hcm = self._hcm(
            f"inbound_0.0.0.0_{pod.http_port}",
            [vhost],
            server_name="istio-envoy",
            extra={
                "use_remote_address": False,
                "forward_client_cert_details": "APPEND_FORWARD",
                "set_current_client_cert_details": {"subject": True, "dns": True, "uri": True},
            },
        )
        chain = {
            "filters": [hcm],
            "transport_socket": {
                "name": _TLS_SOCKET,
                "typed_config": {
                    "@type": _DOWNSTREAM_TLS,
                    "require_client_certificate": True,
                    "common_tls_context": {
                        "alpn_protocols": ["h2", "http/1.1"],
                        "tls_params": {"tls_minimum_protocol_version": "TLSv1_2"},
                        "tls_certificates": [
                            {"certificate_chain": {"filename": cert}, "private_key": {"filename": key}}
                        ],
                        "validation_context": {"trusted_ca": {"filename": ca_path(self.placement.cert_dir)}},
                    },
                },
            },
        }
        listener = self._listener("virtualInbound", where.sidecar_port, "INBOUND", chain)
        local = {
            "name": inbound_cluster,
            "type": "STATIC",
            "connect_timeout": "10s",
            "load_assignment": {
                "cluster_name": inbound_cluster,
                "endpoints": [
                    {
                        "lb_endpoints": [
                            {
                                "endpoint": {
                                    "address": {
                                        "socket_address": {
                                            "address": "127.0.0.1",
                                            "port_value": where.echo_port,
                                        }
                                    }
                                }
                            }
                        ]
                    }
                ],
            },
        }
        node_id = f"sidecar~127.0.0.1~{pod.name}.{pod.namespace}~{pod.namespace}.svc.{CLUSTER_DOMAIN}"
        bootstrap = self._bootstrap(
            node_id, f"{pod.deployment}.{pod.namespace}", where.admin_port, listener, [local]
        )
        return EnvoySpec(
            f"sidecar-{pod.name}",
            "server-sidecar",
            where.sidecar_port,
            where.admin_port,
            pod.identity,
            bootstrap,
            pod.name,
        )

    def gateway_identity(self) -> Identity:
        if not self.istio_gateways and self.api_gateways:
            (ns, name) = sorted(self.api_gateways)[0]
            # Istio's automated deployment for a Gateway API Gateway runs as `<name>-istio`.
            return Identity(ns, f"{name}-istio")
        return ISTIO_GATEWAY_IDENTITY

    def build(self) -> MeshConfig:
        envoys = [self.server_sidecar(pod) for pod in self.inv.pods]
        gateway_hosts: list[str] = []
        if self.istio_gateways or self.api_gateways:
            if len(self.istio_gateways) + len(self.api_gateways) > 1:
                self.warnings.append(
                    "several Gateways: the local mesh serves them all on one gateway listener"
                )
            vhosts, gateway_hosts, _port = self.gateway_vhosts()
            identity = self.gateway_identity()
            envoy_vhosts = [vh.to_envoy() for vh in vhosts]
            hcm = self._hcm(
                f"outbound_0.0.0.0_{self.placement.gateway_port}",
                envoy_vhosts,
                server_name="istio-envoy",
                extra={
                    "use_remote_address": True,
                    "xff_num_trusted_hops": 0,
                    "forward_client_cert_details": "SANITIZE_SET",
                    "set_current_client_cert_details": {"subject": True, "dns": True, "uri": True},
                    "strip_any_host_port": True,
                },
            )
            listener = self._listener(
                "gateway-http", self.placement.gateway_port, "OUTBOUND", {"filters": [hcm]}
            )
            clusters = self._clusters_for(self._referenced_clusters(envoy_vhosts), identity)
            ns = identity.namespace
            node_id = f"router~127.0.0.1~istio-ingressgateway.{ns}~{ns}.svc.{CLUSTER_DOMAIN}"
            bootstrap = self._bootstrap(
                node_id, "istio-ingressgateway", self.placement.gateway_admin_port, listener, clusters
            )
            envoys.append(
                EnvoySpec(
                    "gateway",
                    "gateway",
                    self.placement.gateway_port,
                    self.placement.gateway_admin_port,
                    identity,
                    bootstrap,
                )
            )
        mesh, mesh_hosts = self.mesh_vhosts()
        mesh_envoy = [vh.to_envoy() for vh in mesh]
        hcm = self._hcm(
            f"outbound_0.0.0.0_{self.placement.client_port}",
            mesh_envoy,
            server_name="envoy",
            extra={"use_remote_address": False, "strip_any_host_port": True},
        )
        listener = self._listener(
            "virtualOutbound-http", self.placement.client_port, "OUTBOUND", {"filters": [hcm]}
        )
        clusters = self._clusters_for(self._referenced_clusters(mesh_envoy), self.client_identity)
        ident = self.client_identity
        node_id = (
            f"sidecar~127.0.0.1~{ident.service_account}.{ident.namespace}"
            f"~{ident.namespace}.svc.{CLUSTER_DOMAIN}"
        )
        bootstrap = self._bootstrap(
            node_id,
            f"{ident.service_account}.{ident.namespace}",
            self.placement.client_admin_port,
            listener,
            clusters,
        )
        envoys.append(
            EnvoySpec(
                "client-sidecar",
                "client-sidecar",
                self.placement.client_port,
                self.placement.client_admin_port,
                ident,
                bootstrap,
            )
        )
        return MeshConfig(
            envoys=tuple(envoys),
            gateway_hosts=tuple(gateway_hosts),
            mesh_hosts=tuple(mesh_hosts),
            client_identity=ident,
            warnings=tuple(dict.fromkeys(self.warnings)),
        )


def default_client_identity(inventory: Inventory) -> Identity:
    """The local caller: service account `netdebug` in the namespace of the routing rules."""
    for kind in ("VirtualService", "HTTPRoute", "Service"):
        for doc in inventory.documents:
            if doc.kind == kind:
                return Identity(doc.namespace, CLIENT_SERVICE_ACCOUNT)
    return Identity("default", CLIENT_SERVICE_ACCOUNT)


def translate(
    inventory: Inventory, placement: Placement, client_identity: Identity | None = None
) -> MeshConfig:
    """Envoy bootstraps for every local process; raises ManifestError naming file/kind/name/field."""
    missing = [pod.name for pod in inventory.pods if pod.name not in placement.pods]
    if missing:
        raise ValueError(f"placement has no ports for pods {missing}")
    return _Translator(inventory, placement, client_identity or default_client_identity(inventory)).build()
