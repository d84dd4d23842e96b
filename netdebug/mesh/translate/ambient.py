"""Istio's ambient data plane in the local mesh: the ztunnel stand-in and the waypoints. Pure: plain
data in, Envoy JSON out.

What each piece stands in for (Istio 1.30; docs/ambient.md cites the code):

* **ztunnel** (one Envoy: this machine is one node). L4 only: it never parses HTTP, adds no header
  and applies no route.
  - *inbound*, per captured pod (the pod's HBONE port 15008): mTLS with the pod's SPIFFE certificate,
    any mesh client certificate accepted, the bytes passed to the app from the caller's pod address
    (ztunnel's `enable_original_source`): the caller, the gateway, or the waypoint;
  - *outbound*, for the local caller when its namespace is ambient: one "ClusterIP" listener per
    Service port, and an HTTP CONNECT entry that resolves the Service's names (`curl -p -x`) and
    hands the tunnel's bytes on (to the ClusterIP listener when a waypoint is in use). A Service
    that uses a waypoint is sent there over HBONE (HTTP/2 CONNECT in mTLS, the authority naming the
    Service and port, as ztunnel sends it); any other Service goes straight to one of its pods,
    picked at random per connection, over mTLS with the caller's identity, so keep-alive
    connections stick to one pod and no route (weights included) is applied.
* **waypoints** (translate/waypoint.py): one per Gateway of class `istio-waypoint` that a Service
  uses (`istio.io/use-waypoint` on the Service or its namespace, binding accepted).

Addresses: the pods see their caller's pod IP; locally each origin has a 127/8 address
(`CALLER_ADDRESS`, `GATEWAY_ADDRESS`, one per waypoint from `WAYPOINT_ADDRESS_BASE`), bound as the
source of its connections and matched by the ztunnel inbound listener, which binds it again towards
the app.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import TYPE_CHECKING

from netdebug.k8s.ambient import Ambient
from netdebug.k8s.documents import GATEWAY_API_GROUP, ISTIO_NETWORKING_GROUP, name_of, namespace_of
from netdebug.k8s.hosts import namespace_domain
from netdebug.k8s.index import Index
from netdebug.k8s.inventory import Identity, Inventory, Pod, Service, ServicePort
from netdebug.mesh.translate.envoy import (
    envoy_bootstrap,
    envoy_listener,
    source_bind,
    upstream_cluster,
    with_client_tls,
)
from netdebug.mesh.translate.model import (
    JSON,
    AmbientLayout,
    AmbientService,
    EnvoySpec,
    Placement,
    Waypoint,
    ca_path,
    cert_paths,
)

if TYPE_CHECKING:
    from netdebug.mesh.translate.gateway_api import GatewayApiRoutes

# Pod addresses of the origins of ambient traffic (all in 127.0.0.0/8, which Linux routes to lo).
CALLER_ADDRESS = "127.0.10.1"  # the local caller (the netdebug Job's pod), ambient or with a sidecar
GATEWAY_ADDRESS = "127.0.10.2"
WAYPOINT_ADDRESS_BASE = ipaddress.ip_address("127.0.10.3")

_TCP_PROXY = "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy"
HCM = "envoy.filters.network.http_connection_manager"
HCM_TYPE = (
    "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
)
ROUTER = {
    "name": "envoy.filters.http.router",
    "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
}
DOWNSTREAM_TLS = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext"
UPSTREAM_TLS = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"
_H2_UPSTREAM = {
    "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
        "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
        "explicit_http_config": {"http2_protocol_options": {}},
    }
}


# ---------------------------------------------------------------------------------------------
# Layout: what a rendering needs


def _l4_ports(inventory: Inventory, svc: Service) -> list[ServicePort]:
    """HTTP ports of `svc` whose target is the echo's HTTP port on every pod (the local echo serves
    nothing else, so other ports are not emulated)."""
    pods = inventory.pods_selected(svc.namespace, svc.selector) if svc.selector else []
    ports = []
    for port in svc.ports:
        target = port.target_port
        numbers = [pod.container_ports.get(target) if isinstance(target, str) else target for pod in pods]
        if pods and port.is_http and all(n == pod.http_port for n, pod in zip(numbers, pods, strict=True)):
            ports.append(port)
    return ports


def ambient_layout(inventory: Inventory, caller_namespace: str) -> AmbientLayout:
    """The ambient parts a rendering needs: captured pods, the Services an ambient caller reaches and
    how (waypoint or ztunnel only), and the waypoints in use. Pure."""
    index = Index([dict(d.data) for d in inventory.documents])
    ambient = Ambient(index)
    caller = ambient.is_ambient(caller_namespace)
    caller_reason = (
        f"namespace {caller_namespace} has istio.io/dataplane-mode: ambient"
        if caller
        else f"namespace {caller_namespace} is not in ambient mode"
    )
    gateways = {(d.namespace, d.name): d for d in inventory.of_kind("Gateway", GATEWAY_API_GROUP + "/")}
    services: list[AmbientService] = []
    bound: dict[tuple[str, str], list[tuple[Service, ServicePort]]] = {}
    for svc in inventory.services:
        waypoint = ambient.usable_waypoint(dict(svc.doc.data))
        key = (namespace_of(waypoint), name_of(waypoint)) if waypoint is not None else None
        ingress = key if key is not None and ambient.ingress_reaches_waypoint(dict(svc.doc.data)) else None
        for port in _l4_ports(inventory, svc):
            services.append(
                AmbientService(
                    svc,
                    port,
                    f"{key[0]}/{key[1]}" if key else None,
                    f"{ingress[0]}/{ingress[1]}" if ingress else None,
                )
            )
            if key is not None and (caller or ingress is not None):
                bound.setdefault(key, []).append((svc, port))
    waypoints = []
    for i, (key, ports) in enumerate(sorted(bound.items())):
        doc = gateways[key]
        waypoints.append(
            Waypoint(
                doc=doc,
                # istiod deploys a waypoint as a Deployment and ServiceAccount named after the Gateway.
                identity=Identity(doc.namespace, doc.name),
                address=str(WAYPOINT_ADDRESS_BASE + i),
                services=tuple(ports),
                xfcc_client_identity=ambient.xfcc_client_identity(dict(doc.data)),
            )
        )
    return AmbientLayout(
        caller=caller,
        caller_reason=caller_reason,
        pods=tuple(pod.name for pod in inventory.pods if pod.ambient),
        services=tuple(services) if caller else tuple(s for s in services if s.ingress_waypoint),
        waypoints=tuple(waypoints),
    )


# ---------------------------------------------------------------------------------------------
# Envoy pieces


def tls_context(kind: str, identity: Identity, cert_dir: str, **extra: object) -> JSON:
    cert, key = cert_paths(cert_dir, identity)
    common: JSON = {
        "tls_params": {"tls_minimum_protocol_version": "TLSv1_2"},
        "tls_certificates": [{"certificate_chain": {"filename": cert}, "private_key": {"filename": key}}],
        "validation_context": {"trusted_ca": {"filename": ca_path(cert_dir)}},
    }
    alpn = extra.pop("alpn", None)
    if alpn:
        common["alpn_protocols"] = alpn
    san = extra.pop("san", None)
    if san:
        common["validation_context"]["match_typed_subject_alt_names"] = [
            {"san_type": "URI", "matcher": {"exact": san}}
        ]
    return {
        "name": "envoy.transport_sockets.tls",
        "typed_config": {"@type": kind, "common_tls_context": common, **extra},
    }


def tcp_proxy(cluster: str, stat_prefix: str, tunnel_host: str | None = None) -> JSON:
    config: JSON = {"@type": _TCP_PROXY, "stat_prefix": stat_prefix, "cluster": cluster}
    if tunnel_host is not None:
        config["tunneling_config"] = {"hostname": tunnel_host}
    return {"name": "envoy.filters.network.tcp_proxy", "typed_config": config}


def static_cluster(name: str, address: str, port: int) -> JSON:
    return {
        "name": name,
        "type": "STATIC",
        "connect_timeout": "10s",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [
                {
                    "lb_endpoints": [
                        {
                            "endpoint": {
                                "address": {"socket_address": {"address": address, "port_value": port}}
                            }
                        }
                    ]
                }
            ],
        },
    }


def is_ipv4(bind: str) -> bool:
    return ipaddress.ip_address(bind).version == 4


def hbone_cluster(waypoint: Waypoint, identity: Identity, source: str, placement: Placement) -> JSON:
    """The HTTP/2 mTLS connection into `waypoint` that HBONE tunnels ride on, opened with `identity`
    from the `source` pod address. A TCP proxy with `tunneling_config` (`hbone_tunnel`) sends each
    downstream connection as one `CONNECT <fqdn>:<port>` stream over it, as ztunnel (or an
    ambient-aware gateway) does."""
    assert placement.ambient is not None
    port, _admin = placement.ambient.waypoint_ports[waypoint.key]
    cluster = static_cluster(f"hbone|{waypoint.key}", placement.bind, port)
    cluster["transport_socket"] = tls_context(
        UPSTREAM_TLS, identity, placement.cert_dir, alpn=["h2"], san=waypoint.identity.spiffe
    )
    cluster["typed_extension_protocol_options"] = _H2_UPSTREAM
    if is_ipv4(placement.bind):
        source_bind(cluster, source)
    return cluster


def hbone_tunnel(service: AmbientService, waypoint: Waypoint) -> JSON:
    """A TCP proxy that carries the bytes of one connection to `service` into `waypoint` as an HBONE
    stream (the authority names the Service port). It runs on a real listener: Envoy's internal
    (user-space) connections turn a close after the last bytes into a reset and lose them."""
    return tcp_proxy(f"hbone|{waypoint.key}", f"hbone_{service.key}", tunnel_host=service.key)


def ztunnel_inbound(pod: Pod, placement: Placement, origins: Sequence[str]) -> tuple[JSON, list[JSON]]:
    """A captured pod's ztunnel inbound listener (its HBONE port): mTLS in with the pod's identity,
    the bytes out to the app, from the origin's address when the connection came from a known one."""
    where = placement.pods[pod.name]
    tls = tls_context(DOWNSTREAM_TLS, pod.identity, placement.cert_dir, require_client_certificate=True)
    chains: list[JSON] = []
    clusters: list[JSON] = []
    for origin in origins if is_ipv4(placement.bind) else ():
        name = f"inbound|{pod.http_port}|{pod.name}|{origin}"
        cluster = static_cluster(name, "127.0.0.1", where.echo_port)
        cluster["upstream_bind_config"] = {"source_address": {"address": origin, "port_value": 0}}
        clusters.append(cluster)
        chains.append(
            {
                "filter_chain_match": {
                    "source_prefix_ranges": [{"address_prefix": origin, "prefix_len": 32}]
                },
                "transport_socket": tls,
                "filters": [tcp_proxy(name, f"inbound_{pod.name}")],
            }
        )
    default = f"inbound|{pod.http_port}|{pod.name}"
    clusters.append(static_cluster(default, "127.0.0.1", where.echo_port))
    chains.append({"transport_socket": tls, "filters": [tcp_proxy(default, f"inbound_{pod.name}")]})
    listener = {
        "name": f"ztunnel-inbound|{pod.name}",
        "address": {"socket_address": {"address": placement.bind, "port_value": where.sidecar_port}},
        "traffic_direction": "INBOUND",
        "filter_chains": chains,
    }
    return listener, clusters


def _connect_entry(routes: Sequence[tuple[list[str], str]], port: int, bind: str) -> JSON:
    """The ambient caller's HTTP CONNECT entry: `CONNECT <name>:<port>` picks the Service (the names a
    pod's DNS search path resolves), then the tunnel carries bytes only; anything else is refused."""
    vhosts: list[JSON] = [
        {
            "name": cluster,
            "domains": domains,
            "routes": [
                {
                    "match": {"connect_matcher": {}},
                    "route": {
                        "cluster": cluster,
                        "upgrade_configs": [{"upgrade_type": "CONNECT", "connect_config": {}}],
                    },
                }
            ],
        }
        for domains, cluster in routes
    ]
    vhosts.append(
        {
            "name": "not-connect",
            "domains": ["*"],
            "routes": [
                {
                    "match": {"prefix": "/"},
                    "direct_response": {
                        "status": 400,
                        "body": {
                            "inline_string": "ztunnel is L4: send CONNECT <service>:<port> through this"
                            " proxy (curl -p -x ..., https_proxy=...), or call a Service's ClusterIP"
                            " address from the mesh up printout\n"
                        },
                    },
                }
            ],
        }
    )
    hcm: JSON = {
        "@type": HCM_TYPE,
        "stat_prefix": "ztunnel_connect_entry",
        "codec_type": "AUTO",
        "server_name": "ztunnel",
        "http2_protocol_options": {"allow_connect": True},
        "upgrade_configs": [{"upgrade_type": "CONNECT"}],
        "stream_idle_timeout": "0s",
        "route_config": {"name": "connect-entry", "virtual_hosts": vhosts},
        "http_filters": [ROUTER],
    }
    return envoy_listener(
        bind, "ztunnel-outbound-connect", port, "OUTBOUND", {"filters": [{"name": HCM, "typed_config": hcm}]}
    )


def ztunnel_spec(routes: GatewayApiRoutes, layout: AmbientLayout, caller: Identity) -> EnvoySpec:
    """The node's ztunnel: inbound listeners for the captured pods, and (ambient caller) its outbound
    side: ClusterIP listeners, the CONNECT entry and the tunnels into the waypoints."""
    placement = routes.placement
    assert placement.ambient is not None
    origins = [CALLER_ADDRESS, GATEWAY_ADDRESS, *(w.address for w in layout.waypoints)]
    listeners: list[JSON] = []
    clusters: list[JSON] = []
    pods = [p for p in routes.inv.pods if p.name in layout.pods]
    for pod in pods:
        listener, pod_clusters = ztunnel_inbound(pod, placement, origins)
        listeners.append(listener)
        clusters.extend(pod_clusters)
    if layout.caller:
        entry_routes: list[tuple[list[str], str]] = []
        for target in layout.services:
            port = placement.ambient.service_ports[target.key]
            if target.waypoint is not None:
                waypoint = layout.waypoint(target.waypoint)
                hbone = hbone_cluster(waypoint, caller, CALLER_ADDRESS, placement)
                if hbone["name"] not in {c["name"] for c in clusters}:
                    clusters.append(hbone)
                outbound = hbone_tunnel(target, waypoint)
                # The CONNECT entry hands such a connection to this ClusterIP listener, which tunnels.
                cluster = f"clusterip|{target.key}"
                clusters.append(static_cluster(cluster, placement.bind, port))
            else:
                cluster = f"ztunnel|{target.port.port}||{target.service.fqdn}"
                svc = target.service
                members = routes.inv.pods_selected(svc.namespace, svc.selector)
                sans = sorted({p.identity.spiffe for p in members if p.injection.sidecar or p.ambient})
                sni = f"outbound_.{target.port.port}_._.{svc.fqdn}"
                # ztunnel picks one endpoint at random per connection (ztunnel src/state.rs).
                bare = upstream_cluster(placement, cluster, members, "RANDOM", sni, sans)
                clusters.append(with_client_tls(bare, caller, placement.cert_dir, CALLER_ADDRESS))
                outbound = tcp_proxy(cluster, f"outbound_{target.key}")
            listeners.append(
                envoy_listener(
                    placement.bind,
                    f"ztunnel-outbound|{target.key}",
                    port,
                    "OUTBOUND",
                    {"filters": [outbound]},
                )
            )
            names = target.service.host_names(caller.namespace)
            entry_routes.append(([f"{n}:{target.port.port}" for n in names], cluster))
        listeners.append(_connect_entry(entry_routes, placement.client_port, placement.bind))
    node_id = f"ztunnel~127.0.0.1~ztunnel.istio-system~{namespace_domain('istio-system')}"
    bootstrap = envoy_bootstrap(
        node_id, "ztunnel", placement.ambient.ztunnel_admin_port, listeners[0], clusters
    )
    bootstrap["static_resources"]["listeners"] = listeners
    return EnvoySpec(
        "ztunnel",
        "ztunnel",
        placement.client_port if layout.caller else 0,
        placement.ambient.ztunnel_admin_port,
        caller,
        bootstrap,
        extra_identities=tuple(pod.identity for pod in pods),
    )


def unapplied_mesh_virtual_services(routes: GatewayApiRoutes) -> list[str]:
    """VirtualServices bound to `mesh` when the local caller is ambient: no client sidecar applies
    them, and the local waypoint applies HTTPRoutes only (VirtualService in ambient is alpha)."""
    found = []
    for doc in routes.inv.of_kind("VirtualService", f"{ISTIO_NETWORKING_GROUP}/"):
        gateways = doc.spec.get("gateways") or ["mesh"]
        if "mesh" in [str(g) for g in gateways]:
            found.append(
                f"{doc.where('spec.gateways')}: not applied by the local mesh: the caller is in ambient"
                " mode (no client sidecar) and the local waypoint applies HTTPRoutes only"
            )
    return found
