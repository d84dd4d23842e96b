"""The waypoint in the local mesh: the Envoy istiod deploys for a Gateway of class `istio-waypoint`
(pilot/pkg/networking/core/listener_waypoint.go). Pure: plain data in, Envoy JSON out.

It terminates HBONE (listener `connect_terminate`: HTTP/2 CONNECT in mTLS, the authority naming the
Service port) and hands each Service port to an inner listener, where an inbound HTTP connection
manager applies the Service's HTTPRoutes (parentRef: the Service) or Istio's default inbound route.
Istio's inner listener (`main_internal`) is an Envoy internal listener; here it is a loopback one,
because Envoy's internal connections turn the inner HCM's close after a `Connection: close` answer
into a reset that loses the answer's last bytes. The HBONE peer's identity, which Istio passes in
filter state, travels in a PROXY protocol v2 TLV.
Like Istio's, it generates `x-request-id`, sets `x-forwarded-proto` (http: the inner connection is
plain text), appends no `x-forwarded-for`, removes any XFCC (Envoy's default SANITIZE) unless the
Gateway or its class has `ambient.istio.io/xfcc-include-client-identity: "true"` (then
`By=<waypoint>;URI=<source workload>`), consumes and does not forward `x-envoy-decorator-operation`
(an INBOUND listener), sets no attempt count (an inbound virtual host), and answers
`server: istio-envoy` with `x-envoy-upstream-service-time`. It reaches the pods at their ztunnel
inbound listeners over mTLS with its own identity, from its own pod address.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from netdebug.k8s.hosts import namespace_domain
from netdebug.k8s.inventory import Identity, Service, ServicePort
from netdebug.mesh.translate.ambient import (
    DOWNSTREAM_TLS,
    GATEWAY_ADDRESS,
    HCM,
    HCM_TYPE,
    ROUTER,
    hbone_cluster,
    hbone_tunnel,
    static_cluster,
    tls_context,
)
from netdebug.mesh.translate.envoy import (
    RAW_BUFFER,
    clusters_for,
    envoy_bootstrap,
    envoy_listener,
    http_connection_manager,
    inbound_retry_policy,
    referenced_clusters,
)
from netdebug.mesh.translate.model import JSON, AmbientLayout, EnvoySpec, Placement, Waypoint

if TYPE_CHECKING:
    from netdebug.mesh.translate.gateway_api import GatewayApiRoutes

# The inner hop carries the HBONE peer's SPIFFE id in a PROXY protocol v2 TLV (type from the
# PP2_TYPE_MIN_CUSTOM range), read back into filter state by the inner listener.
_PEER_TLV = 0xE0
_PEER_TLV_KEY = "peer_principal"
_PROXY_PROTOCOL_STATE = "envoy.network.proxy_protocol.tlv"
# What the waypoint's CONNECT terminator records for the inner hop (Istio's connect_authority filter,
# xds/filters.go): the HBONE peer's SPIFFE id, shared with the upstream connection.
_PEER_PRINCIPAL = "io.istio.peer_principal"
_CONNECT_AUTHORITY = {
    "name": "connect_authority",
    "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.set_filter_state.v3.Config",
        "on_request_headers": [
            {
                "object_key": _PEER_PRINCIPAL,
                "factory_key": "envoy.string",
                "format_string": {"text_format_source": {"inline_string": "%DOWNSTREAM_PEER_URI_SAN%"}},
                "shared_with_upstream": "ONCE",
            }
        ],
    },
}


def _to_inner(name: str, port: int) -> JSON:
    """connect_terminate's cluster for one Service port: the inner listener, with the HBONE peer's
    identity in a PROXY protocol TLV."""
    cluster = static_cluster(name, "127.0.0.1", port)
    tlv = {
        "type": _PEER_TLV,
        "format_string": {
            "text_format_source": {"inline_string": f"%FILTER_STATE({_PEER_PRINCIPAL}:PLAIN)%"}
        },
    }
    cluster["transport_socket"] = {
        "name": "envoy.transport_sockets.upstream_proxy_protocol",
        "typed_config": {
            "@type": (
                "type.googleapis.com/envoy.extensions.transport_sockets.proxy_protocol.v3.ProxyProtocolUpstreamTransport"
            ),
            "config": {"version": "V2", "added_tlvs": [tlv]},
            "transport_socket": RAW_BUFFER,
        },
    }
    return cluster


_READ_PEER_TLV = {
    "name": "envoy.filters.listener.proxy_protocol",
    "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.listener.proxy_protocol.v3.ProxyProtocol",
        "tlv_location": "FILTER_STATE",
        "rules": [{"tlv_type": _PEER_TLV, "on_tlv_present": {"key": _PEER_TLV_KEY}}],
    },
}


def _default_inbound_route(
    service: Service, port: ServicePort, cluster: str, routes: GatewayApiRoutes
) -> JSON:
    """A waypoint's route for a Service port no HTTPRoute routes: all of the Service's pods, as
    Istio's default inbound route (route.go BuildDefaultHTTPInboundRoute)."""
    route: JSON = {
        "name": "default",
        "match": {"prefix": "/"},
        "route": {"cluster": cluster, "timeout": "0s"},
        "decorator": {"operation": f"{service.fqdn}:{port.port}/*"},
    }
    if routes.istio.inbound_retry_policy:
        route["route"]["retry_policy"] = inbound_retry_policy()
    return route


def waypoint_spec(routes: GatewayApiRoutes, waypoint: Waypoint) -> EnvoySpec:
    """One waypoint Envoy (listener_waypoint.go: connect_terminate, main_internal, the routes)."""
    placement = routes.placement
    assert placement.ambient is not None
    port, admin = placement.ambient.waypoint_ports[waypoint.key]
    gamma = routes.gamma_routes()
    terminate_vhosts: list[JSON] = []
    listeners: list[JSON] = []
    internal: list[JSON] = []
    referenced: set[str] = set()
    for svc, svc_port in waypoint.services:
        key = f"{svc.fqdn}:{svc_port.port}"
        inner = f"main_internal|{key}"
        terminate_vhosts.append(
            {
                "name": key,
                "domains": [key],
                "routes": [
                    {
                        "match": {"connect_matcher": {}},
                        "route": {
                            "cluster": inner,
                            "upgrade_configs": [{"upgrade_type": "CONNECT", "connect_config": {}}],
                        },
                    }
                ],
            }
        )
        service_routes = gamma.get(svc.fqdn)
        if service_routes is not None and service_routes.port in (None, svc_port.port):
            vhost_routes = [dict(r) for r in service_routes.routes]
        else:
            cluster = routes.service_cluster(svc, svc_port, None, {})
            vhost_routes = [_default_inbound_route(svc, svc_port, cluster, routes)]
        # Istio's inbound virtual host: any authority, and no attempt count (only outbound ones set it).
        vhost: JSON = {"name": f"inbound|http|{svc_port.port}", "domains": ["*"], "routes": vhost_routes}
        if waypoint.xfcc_client_identity:
            peer = f"%FILTER_STATE({_PROXY_PROTOCOL_STATE}:FIELD:{_PEER_TLV_KEY})%"
            value = f"By={waypoint.identity.spiffe};URI={peer}"
            vhost["request_headers_to_add"] = [
                {
                    "header": {"key": "x-forwarded-client-cert", "value": value},
                    "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
                }
            ]
        referenced |= referenced_clusters([vhost])
        # No forward_client_cert_details: Envoy's default SANITIZE removes any XFCC the caller sent.
        hcm = http_connection_manager(
            f"inbound-vip|{svc_port.port}|http|{svc.fqdn}",
            [vhost],
            server_name="istio-envoy",
            extra={"use_remote_address": False},
        )
        inner_port = placement.ambient.inner_ports[f"{waypoint.key}|{key}"]
        listener = envoy_listener("127.0.0.1", inner, inner_port, "INBOUND", {"filters": [hcm]})
        listener["listener_filters"] = [_READ_PEER_TLV]
        listeners.append(listener)
        internal.append(_to_inner(inner, inner_port))
    terminate: JSON = {
        "@type": HCM_TYPE,
        "stat_prefix": "connect_terminate",
        "codec_type": "AUTO",
        "server_name": "istio-envoy",
        "use_remote_address": False,
        "http2_protocol_options": {"allow_connect": True},
        "upgrade_configs": [{"upgrade_type": "CONNECT"}],
        "stream_idle_timeout": "0s",
        "route_config": {"name": "default", "virtual_hosts": terminate_vhosts},
        "http_filters": [_CONNECT_AUTHORITY, ROUTER],
    }
    tls = tls_context(
        DOWNSTREAM_TLS, waypoint.identity, placement.cert_dir, alpn=["h2"], require_client_certificate=True
    )
    front = envoy_listener(
        placement.bind,
        "connect_terminate",
        port,
        "INBOUND",
        {"filters": [{"name": HCM, "typed_config": terminate}], "transport_socket": tls},
    )
    clusters = internal + clusters_for(
        routes.clusters, referenced, waypoint.identity, placement.cert_dir, waypoint.address
    )
    ns, name = waypoint.doc.namespace, waypoint.doc.name
    node_id = f"waypoint~127.0.0.1~{name}.{ns}~{namespace_domain(ns)}"
    bootstrap = envoy_bootstrap(node_id, f"{name}.{ns}", admin, front, clusters)
    bootstrap["static_resources"]["listeners"] = [front, *listeners]
    return EnvoySpec(f"waypoint-{ns}-{name}", "waypoint", port, admin, waypoint.identity, bootstrap)


def ingress_through_waypoints(
    bootstrap: JSON, layout: AmbientLayout, identity: Identity, placement: Placement
) -> None:
    """`istio.io/ingress-use-waypoint: "true"`: the gateway's clusters for such a Service (any subset)
    lead to a tunnel listener of the gateway's own that carries each connection into the Service's
    waypoint over HBONE, as an ambient-aware ingress gateway sends it."""
    via = {s.key: s for s in layout.services if s.ingress_waypoint is not None}
    if not via or placement.ambient is None:
        return
    resources = bootstrap["static_resources"]
    tunnels: dict[str, JSON] = {}
    hbones: dict[str, JSON] = {}
    for i, cluster in enumerate(resources["clusters"]):
        parts = str(cluster["name"]).split("|")
        target = via.get(f"{parts[-1]}:{parts[1]}") if len(parts) == 4 else None
        if target is None or target.ingress_waypoint is None:
            continue
        waypoint = layout.waypoint(target.ingress_waypoint)
        port = placement.ambient.gateway_tunnel_ports[target.key]
        # The route keeps its cluster name; the cluster now leads into the tunnel listener.
        resources["clusters"][i] = static_cluster(str(cluster["name"]), "127.0.0.1", port)
        tunnels[target.key] = envoy_listener(
            "127.0.0.1",
            f"tunnel|{target.key}",
            port,
            "OUTBOUND",
            {"filters": [hbone_tunnel(target, waypoint)]},
        )
        hbone = hbone_cluster(waypoint, identity, GATEWAY_ADDRESS, placement)
        hbones[hbone["name"]] = hbone
    resources["listeners"].extend(tunnels.values())
    resources["clusters"].extend(hbones.values())
