"""The translation: an inventory and a placement → every local Envoy (a server sidecar per pod, the
gateway, the client sidecar) with its bootstrap. `translate` is the entry point; see the package
docstring for what each Envoy stands in for.
"""

from __future__ import annotations

from netdebug.k8s.ambient import WAYPOINT_CLASS
from netdebug.k8s.documents import (
    GATEWAY_API_GROUP,
    ISTIO_NETWORKING_GROUP,
    ISTIO_NETWORKING_VERSIONS,
    ISTIO_SECURITY_GROUP,
)
from netdebug.k8s.hosts import namespace_domain
from netdebug.k8s.inventory import Identity, Inventory
from netdebug.mesh.translate.ambient import (
    CALLER_ADDRESS,
    GATEWAY_ADDRESS,
    ambient_layout,
    unapplied_mesh_virtual_services,
    ztunnel_spec,
)
from netdebug.mesh.translate.envoy import (
    VirtualHost,
    add_virtual_host,
    clusters_for,
    envoy_bootstrap,
    envoy_listener,
    http_connection_manager,
    referenced_clusters,
    route_action,
    route_operation,
    server_sidecar,
)
from netdebug.mesh.translate.gateway_api import GatewayApiRoutes
from netdebug.mesh.translate.istio import IstioRoutes
from netdebug.mesh.translate.model import JSON, EnvoySpec, MeshConfig, Placement
from netdebug.mesh.translate.versions import NEWEST, IstioVersion
from netdebug.mesh.translate.waypoint import ingress_through_waypoints, waypoint_spec

# Istio's ingress gateway identity (demo profile), and the local caller's service account.
ISTIO_GATEWAY_IDENTITY = Identity("istio-system", "istio-ingressgateway-service-account")
CLIENT_SERVICE_ACCOUNT = "netdebug"


class _Translator(IstioRoutes, GatewayApiRoutes):
    """One translation: both inputs over the shared state of `Destinations`, which this sets up."""

    def __init__(
        self, inventory: Inventory, placement: Placement, client_identity: Identity, istio: IstioVersion
    ) -> None:
        self.inv = inventory
        self.placement = placement
        self.istio = istio
        self.client_identity = client_identity
        self.warnings: list[str] = list(inventory.warnings)
        self.clusters: dict[str, JSON] = {}
        self.destination_rules = self._destination_rules()
        self.istio_gateways = {
            (d.namespace, d.name): d for d in inventory.of_kind("Gateway", f"{ISTIO_NETWORKING_GROUP}/")
        }
        # Gateways of class istio-waypoint are waypoints (translate/ambient.py), not ingress gateways.
        self.api_gateways = {}
        self.waypoint_gateways = {}
        for d in inventory.of_kind("Gateway", GATEWAY_API_GROUP + "/"):
            waypoint = d.spec.get("gatewayClassName") == WAYPOINT_CLASS
            (self.waypoint_gateways if waypoint else self.api_gateways)[(d.namespace, d.name)] = d
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

    def gateway_vhosts(self) -> tuple[list[VirtualHost], list[str], int]:
        table: dict[str, VirtualHost] = {}
        served: list[str] = []
        ports: list[int] = []
        self.istio_gateway_vhosts(table, served, ports)
        self.gateway_api_gateway_vhosts(table, served, ports)
        return list(table.values()), served, ports[0] if ports else 80

    def mesh_vhosts(self) -> tuple[list[VirtualHost], list[str]]:
        table: dict[str, VirtualHost] = {}
        caller_ns = self.client_identity.namespace
        claimed: set[str] = set()
        self.istio_mesh_vhosts(table, claimed)
        self.gamma_vhosts(table, claimed)
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
                "route": route_action([(cluster, 1)], self.istio),
            }
            route["decorator"] = {"operation": route_operation(route, svc.fqdn, port.port)}
            domains = names + [f"{n}:{p.port}" for p in http_ports for n in names]
            add_virtual_host(table, VirtualHost(f"{svc.fqdn}:{port.port}", domains, [route], svc.doc.where()))
        mesh_hosts = [d for vh in table.values() for d in vh.domains if ":" not in d]
        return list(table.values()), mesh_hosts

    def gateway_identity(self) -> Identity:
        if not self.istio_gateways and self.api_gateways:
            (ns, name) = sorted(self.api_gateways)[0]
            # Istio's automated deployment for a Gateway API Gateway runs as `<name>-istio`.
            return Identity(ns, f"{name}-istio")
        return ISTIO_GATEWAY_IDENTITY

    def build(self) -> MeshConfig:
        layout = ambient_layout(self.inv, self.client_identity.namespace)
        if (layout.needs_ztunnel or layout.waypoints) and self.placement.ambient is None:
            raise ValueError("placement has no ports for the ambient data plane")
        # Only injected pods get a sidecar; ambient pods are reached through ztunnel, the others
        # directly, in plain text.
        envoys = [
            server_sidecar(pod, self.inv, self.placement, self.istio)
            for pod in self.inv.pods
            if pod.injection.sidecar
        ]
        gateway_hosts: list[str] = []
        if self.istio_gateways or self.api_gateways:
            if len(self.istio_gateways) + len(self.api_gateways) > 1:
                self.warnings.append(
                    "several Gateways: the local mesh serves them all on one gateway listener"
                )
            vhosts, gateway_hosts, _port = self.gateway_vhosts()
            identity = self.gateway_identity()
            envoy_vhosts = [vh.to_envoy() for vh in vhosts]
            hcm = http_connection_manager(
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
            listener = envoy_listener(
                self.placement.bind,
                "gateway-http",
                self.placement.gateway_port,
                "OUTBOUND",
                {"filters": [hcm]},
            )
            clusters = clusters_for(
                self.clusters,
                referenced_clusters(envoy_vhosts),
                identity,
                self.placement.cert_dir,
                GATEWAY_ADDRESS,
            )
            ns = identity.namespace
            node_id = f"router~127.0.0.1~istio-ingressgateway.{ns}~{namespace_domain(ns)}"
            bootstrap = envoy_bootstrap(
                node_id, "istio-ingressgateway", self.placement.gateway_admin_port, listener, clusters
            )
            ingress_through_waypoints(bootstrap, layout, identity, self.placement)
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
        if layout.caller:
            # An ambient caller has no sidecar: its ztunnel carries its traffic (L4).
            self.warnings.extend(unapplied_mesh_virtual_services(self))
            mesh_hosts = [
                n for s in layout.services for n in s.service.host_names(self.client_identity.namespace)
            ]
        else:
            mesh_hosts = self.client_sidecar(envoys)
        if layout.needs_ztunnel:
            envoys.append(ztunnel_spec(self, layout, self.client_identity))
        envoys.extend(waypoint_spec(self, waypoint) for waypoint in layout.waypoints)
        return MeshConfig(
            envoys=tuple(envoys),
            gateway_hosts=tuple(gateway_hosts),
            mesh_hosts=tuple(dict.fromkeys(mesh_hosts)),
            client_identity=self.client_identity,
            warnings=tuple(dict.fromkeys(self.warnings)),
            ambient=layout if layout.needs_ztunnel or layout.waypoints else None,
        )

    def client_sidecar(self, envoys: list[EnvoySpec]) -> list[str]:
        """The client sidecar (a mesh caller with a sidecar); returns the names it routes."""
        mesh, mesh_hosts = self.mesh_vhosts()
        mesh_envoy = [vh.to_envoy() for vh in mesh]
        hcm = http_connection_manager(
            f"outbound_0.0.0.0_{self.placement.client_port}",
            mesh_envoy,
            server_name="envoy",
            extra={"use_remote_address": False, "strip_any_host_port": True},
        )
        listener = envoy_listener(
            self.placement.bind,
            "virtualOutbound-http",
            self.placement.client_port,
            "OUTBOUND",
            {"filters": [hcm]},
        )
        clusters = clusters_for(
            self.clusters,
            referenced_clusters(mesh_envoy),
            self.client_identity,
            self.placement.cert_dir,
            CALLER_ADDRESS,
        )
        ident = self.client_identity
        node_id = (
            f"sidecar~127.0.0.1~{ident.service_account}.{ident.namespace}~{namespace_domain(ident.namespace)}"
        )
        bootstrap = envoy_bootstrap(
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
        return mesh_hosts


def default_client_identity(inventory: Inventory) -> Identity:
    """The local caller: service account `netdebug` in the namespace of the routing rules."""
    for kind in ("VirtualService", "HTTPRoute", "Service"):
        for doc in inventory.documents:
            if doc.kind == kind:
                return Identity(doc.namespace, CLIENT_SERVICE_ACCOUNT)
    return Identity("default", CLIENT_SERVICE_ACCOUNT)


def translate(
    inventory: Inventory,
    placement: Placement,
    client_identity: Identity | None = None,
    istio: IstioVersion = NEWEST,
) -> MeshConfig:
    """Envoy bootstraps for every local process, following the given Istio release where releases
    differ (versions.CHANGES); raises ManifestError naming file/kind/name/field."""
    missing = [pod.name for pod in inventory.pods if pod.name not in placement.pods]
    if missing:
        raise ValueError(f"placement has no ports for pods {missing}")
    client = client_identity or default_client_identity(inventory)
    return _Translator(inventory, placement, client, istio).build()
