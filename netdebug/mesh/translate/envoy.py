"""Envoy configuration builders: routes, virtual hosts, clusters, listeners, bootstraps, and the
server sidecar of a pod. Pure: plain data in, Envoy's JSON (v3 API) out.

Each piece stands in for what Istio's proxies get from istiod: its retry policy and decorator
operation on every route, its mTLS (SPIFFE identities, Istio ALPN) on every upstream cluster, its
inbound listener (XFCC `APPEND_FORWARD`) on every server sidecar.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from netdebug.k8s.documents import ManifestError
from netdebug.k8s.hosts import namespace_domain
from netdebug.k8s.inventory import Identity, Inventory, Pod
from netdebug.mesh.translate.model import JSON, EnvoySpec, Placement, ca_path, cert_paths
from netdebug.mesh.translate.versions import IstioVersion

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
# "6 is the magical number for inbound: 15006, 127.0.0.6, ::6" (pilot/pkg/networking/core): the source
# address of every connection a sidecar opens to its app.
INBOUND_PASSTHROUGH_BIND = "127.0.0.6"
# ALPN an Istio client offers towards another sidecar for HTTP/1.1 traffic.
_ISTIO_ALPN = ["istio-http/1.1", "istio", "http/1.1"]
# HTTP redirect status -> Envoy's RedirectAction.RedirectResponseCode.
REDIRECT_RESPONSE_CODES = {
    301: "MOVED_PERMANENTLY",
    302: "FOUND",
    303: "SEE_OTHER",
    307: "TEMPORARY_REDIRECT",
    308: "PERMANENT_REDIRECT",
}


def envoy_duration(seconds: float) -> str:
    """Protobuf JSON duration: whole seconds as "5s", fractions with millisecond precision."""
    if seconds == int(seconds):
        return f"{int(seconds)}s"
    return f"{seconds:.3f}s"


def route_operation(route: Mapping[str, Any], name: str, port: int) -> str:
    """Istio's decorator operation (route.go GetRouteOperation): `host:port<path>` for one destination,
    else `<VirtualService>:port<path>`, where <path> is `prefix*`, the exact path or the regex, and
    `/*` for any other match (a Gateway API PathPrefix, a `path_separated_prefix`, is not named)."""
    match = route.get("match", {})
    path = "/*"
    if "prefix" in match:
        path = f"{match['prefix']}*"
    elif "path" in match:
        path = match["path"]
    elif "safe_regex" in match:
        path = match["safe_regex"]["regex"]
    cluster = route.get("route", {}).get("cluster")
    if isinstance(cluster, str) and cluster.count("|") == 3:
        return f"{cluster.split('|')[3]}:{port}{path}"
    return f"{name}:{port}{path}"


def istio_default_retry_policy(istio: IstioVersion) -> JSON:
    """Istio's default outbound retry policy (pilot/pkg/networking/core/route/retry/retry.go).

    `retry_on` keeps `retriable-status-codes` in every release; since 1.24 the list of codes is
    empty, so an upstream 503 is answered as it is, after one attempt. Before 1.24 it was [503].
    """
    policy: JSON = {
        "retry_on": "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes",
        "num_retries": 2,
    }
    if not istio.excludes_503_from_default_retries:
        policy["retriable_status_codes"] = [503]
    policy["retry_host_predicate"] = [
        {"name": "envoy.retry_host_predicates.previous_hosts", "typed_config": {"@type": _PREVIOUS_HOSTS}}
    ]
    policy["host_selection_retry_max_attempts"] = 5
    return policy


def inbound_retry_policy() -> JSON:
    """The inbound route's policy since Istio 1.24 (route.go BuildDefaultHTTPInboundRoute): retry a
    request only when the connection to the app was reset before the request was sent."""
    return {"retry_on": "reset-before-request", "num_retries": 2}


def route_action(weighted: Sequence[tuple[str, int]], istio: IstioVersion) -> JSON:
    action: JSON = {}
    if len(weighted) == 1:
        action["cluster"] = weighted[0][0]
    else:
        # Relative weights (Envoy ≥ 1.28 no longer needs total_weight); the sum need not be 100.
        action["weighted_clusters"] = {"clusters": [{"name": c, "weight": w} for c, w in weighted]}
    # Istio disables Envoy's 15 s default route timeout.
    action["timeout"] = "0s"
    action["retry_policy"] = istio_default_retry_policy(istio)
    return action


@dataclass
class VirtualHost:
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


def add_virtual_host(table: dict[str, VirtualHost], vhost: VirtualHost) -> None:
    for domain in vhost.domains:
        for other in table.values():
            if domain in other.domains:
                raise ManifestError(
                    f"{vhost.origin}: host {domain!r} is also routed by {other.origin};"
                    " two routes for one host conflict (IST0109)"
                )
    table[vhost.name] = vhost


# Istio marks the endpoints of pods with a sidecar `tlsMode: istio`; auto mTLS then picks the
# cluster's Istio mTLS transport for them and plain text for the others (cluster_builder.go).
_TLS_MODE_MATCH = "envoy.transport_socket_match"
RAW_BUFFER = {
    "name": "envoy.transport_sockets.raw_buffer",
    "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer"
    },
}


def _lb_endpoint(placement: Placement, pod: Pod) -> JSON:
    where = placement.pods[pod.name]
    # A pod with a sidecar is reached at its sidecar, an ambient pod at its ztunnel inbound listener
    # (the pod's HBONE port; Istio marks both endpoints for mTLS), any other pod at the app itself.
    if not pod.injection.sidecar and not pod.ambient:
        # No sidecar: the caller connects to the app itself, in plain text.
        return {
            "endpoint": {
                "address": {"socket_address": {"address": "127.0.0.1", "port_value": where.echo_port}}
            }
        }
    return {
        "endpoint": {
            "address": {"socket_address": {"address": placement.bind, "port_value": where.sidecar_port}}
        },
        "metadata": {"filter_metadata": {_TLS_MODE_MATCH: {"tlsMode": "istio"}}},
    }


def upstream_cluster(
    placement: Placement, name: str, pods: Sequence[Pod], lb: str, sni: str, sans: Sequence[str]
) -> JSON:
    endpoints = [_lb_endpoint(placement, pod) for pod in pods]
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
    # Filled in per Envoy (the caller's own certificate differs): see with_client_tls.
    cluster["_mtls"] = {"sni": sni, "sans": list(sans)}
    cluster["_ambient"] = any(pod.ambient for pod in pods)
    return cluster


def source_bind(cluster: JSON, address: str) -> None:
    """Connect from `address` (a 127/8 address standing in for the caller's pod IP), so that a
    ztunnel inbound listener can hand the pod that source, as ztunnel does. Only over IPv4 loopback:
    with an IPv6 `--bind` the endpoints are ::1 and the source stays the socket's own."""
    endpoints = [
        lb["endpoint"]["address"]["socket_address"]["address"]
        for group in cluster["load_assignment"]["endpoints"]
        for lb in group["lb_endpoints"]
        if "socket_address" in lb["endpoint"]["address"]
    ]
    if endpoints and all(addr.startswith("127.") for addr in endpoints):
        cluster["upstream_bind_config"] = {"source_address": {"address": address, "port_value": 0}}


def with_client_tls(cluster: JSON, identity: Identity, cert_dir: str, source: str | None = None) -> JSON:
    """The cluster as one Envoy uses it: with its own client certificate for the mTLS endpoints, and
    (`source`) its pod address when the cluster reaches ambient pods."""
    mtls = cluster["_mtls"]
    out = {k: v for k, v in cluster.items() if not k.startswith("_")}
    if source is not None and cluster.get("_ambient"):
        source_bind(out, source)
    cert, key = cert_paths(cert_dir, identity)
    validation: JSON = {"trusted_ca": {"filename": ca_path(cert_dir)}}
    if mtls["sans"]:
        validation["match_typed_subject_alt_names"] = [
            {"san_type": "URI", "matcher": {"exact": san}} for san in mtls["sans"]
        ]
    istio_mtls = {
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
    out["transport_socket_matches"] = [
        {"name": "tlsMode-istio", "match": {"tlsMode": "istio"}, "transport_socket": istio_mtls},
        {"name": "tlsMode-disabled", "match": {}, "transport_socket": RAW_BUFFER},
    ]
    return out


def clusters_for(
    clusters: Mapping[str, JSON],
    names: Iterable[str],
    identity: Identity,
    cert_dir: str,
    source: str | None = None,
) -> list[JSON]:
    return [with_client_tls(clusters[n], identity, cert_dir, source) for n in sorted(set(names))]


def referenced_clusters(vhosts: Iterable[JSON]) -> set[str]:
    names: set[str] = set()
    for vh in vhosts:
        for route in vh["routes"]:
            action = route.get("route", {})
            if "cluster" in action:
                names.add(action["cluster"])
            for wc in action.get("weighted_clusters", {}).get("clusters", []):
                names.add(wc["name"])
    return names


def http_connection_manager(
    stat_prefix: str, vhosts: Sequence[JSON], *, server_name: str, extra: JSON
) -> JSON:
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
        # Istio allows WebSocket upgrades on every HTTP connection manager and turns the stream idle
        # timeout off, so a quiet WebSocket stays open (listener_builder.go buildHTTPConnectionManager).
        "upgrade_configs": [{"upgrade_type": "websocket"}],
        "stream_idle_timeout": "0s",
        "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {"@type": _ROUTER_TYPE}}],
    }
    config.update(extra)
    return {"name": "envoy.filters.network.http_connection_manager", "typed_config": config}


def envoy_listener(bind: str, name: str, port: int, direction: str, filter_chain: JSON) -> JSON:
    return {
        "name": name,
        "address": {"socket_address": {"address": bind, "port_value": port}},
        "traffic_direction": direction,
        "filter_chains": [filter_chain],
    }


def envoy_bootstrap(
    node_id: str, cluster: str, admin_port: int, listener: JSON, clusters: Sequence[JSON]
) -> JSON:
    return {
        "node": {"id": node_id, "cluster": cluster},
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin_port}}},
        "static_resources": {"listeners": [listener], "clusters": list(clusters)},
    }


def server_sidecar(pod: Pod, inventory: Inventory, placement: Placement, istio: IstioVersion) -> EnvoySpec:
    """The inbound sidecar of one pod: mTLS in (client certificate required), XFCC as Istio's inbound
    listeners set it, plain HTTP to the pod's echo process from 127.0.0.6, as Istio's inbound cluster
    binds it (cluster_builder.go, InboundPassthroughBindIpv4), so the app sees that peer address."""
    where = placement.pods[pod.name]
    cert, key = cert_paths(placement.cert_dir, pod.identity)
    operation = f"{pod.name}.{pod.namespace}:{pod.http_port}/*"
    for svc in inventory.services:
        if svc.selector and pod in inventory.pods_selected(svc.namespace, svc.selector):
            http_ports = [p for p in svc.ports if p.is_http]
            if http_ports:
                operation = f"{svc.fqdn}:{http_ports[0].port}/*"
                break
    inbound_cluster = f"inbound|{pod.http_port}||"
    vhost: JSON = {
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
    if istio.inbound_retry_policy:
        vhost["routes"][0]["route"]["retry_policy"] = inbound_retry_policy()
    hcm = http_connection_manager(
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
                    "validation_context": {"trusted_ca": {"filename": ca_path(placement.cert_dir)}},
                },
            },
        },
    }
    listener = envoy_listener(placement.bind, "virtualInbound", where.sidecar_port, "INBOUND", chain)
    local = {
        "name": inbound_cluster,
        "type": "STATIC",
        "connect_timeout": "10s",
        "upstream_bind_config": {"source_address": {"address": INBOUND_PASSTHROUGH_BIND, "port_value": 0}},
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
    node_id = f"sidecar~127.0.0.1~{pod.name}.{pod.namespace}~{namespace_domain(pod.namespace)}"
    bootstrap = envoy_bootstrap(
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
