"""What the mesh translation produces, and where every local process listens: the contract between
the translation (pure), the certificate issuer (certs.py) and the process edge (orchestrate.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from netdebug.k8s.documents import Document
from netdebug.k8s.inventory import Identity, Service, ServicePort

Role = Literal["server-sidecar", "gateway", "client-sidecar", "ztunnel", "waypoint"]
JSON = dict[str, Any]


@dataclass(frozen=True)
class PodPlacement:
    echo_port: int
    sidecar_port: int
    admin_port: int


@dataclass(frozen=True)
class AmbientPlacement:
    """Ports of the ambient data plane: the ztunnel stand-in's admin, a "ClusterIP" per Service port
    an ambient caller can reach (keyed `<fqdn>:<port>`), each waypoint's HBONE and admin ports (keyed
    `<namespace>/<name>`) and its inner listener per Service port (keyed `<waypoint>|<fqdn>:<port>`),
    and the gateway's tunnel listener per Service port it sends through a waypoint. A pod's ztunnel
    inbound listener uses its `sidecar_port`."""

    ztunnel_admin_port: int
    service_ports: Mapping[str, int]
    waypoint_ports: Mapping[str, tuple[int, int]]
    inner_ports: Mapping[str, int] = field(default_factory=dict)
    gateway_tunnel_ports: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Placement:
    """Where every local process listens. `bind` is the address the Envoys listen on. `client_port`
    is the in-mesh caller's address: the client sidecar's, or the ambient caller's ztunnel entry."""

    bind: str
    pods: Mapping[str, PodPlacement]
    gateway_port: int
    gateway_admin_port: int
    client_port: int
    client_admin_port: int
    cert_dir: str
    ambient: AmbientPlacement | None = None


@dataclass(frozen=True)
class Waypoint:
    """A waypoint in use: the Gateway (class istio-waypoint), the Envoy istiod would deploy for it
    (service account = the Gateway's name), and the Service ports bound to it."""

    doc: Document
    identity: Identity
    address: str  # its pod IP in the local emulation (a 127/8 address), the source the pods see
    services: tuple[tuple[Service, ServicePort], ...]
    xfcc_client_identity: bool  # ambient.istio.io/xfcc-include-client-identity (Istio >= 1.30)

    @property
    def key(self) -> str:
        return f"{self.doc.namespace}/{self.doc.name}"


@dataclass(frozen=True)
class AmbientService:
    """A Service port as the ambient data plane serves it: through a waypoint, or straight to the
    pods (ztunnel only); `ingress_waypoint` when ingress gateways also go through that waypoint."""

    service: Service
    port: ServicePort
    waypoint: str | None  # Waypoint.key
    ingress_waypoint: str | None

    @property
    def key(self) -> str:
        return f"{self.service.fqdn}:{self.port.port}"


@dataclass(frozen=True)
class AmbientLayout:
    """What of the ambient data plane a rendering needs (translate/ambient.py `ambient_layout`)."""

    caller: bool  # the local caller's namespace is ambient: its traffic goes through ztunnel
    caller_reason: str
    pods: tuple[str, ...]  # names of the captured pods (each gets a ztunnel inbound listener)
    services: tuple[AmbientService, ...]
    waypoints: tuple[Waypoint, ...]

    @property
    def needs_ztunnel(self) -> bool:
        return self.caller or bool(self.pods)

    def waypoint(self, key: str) -> Waypoint:
        return next(w for w in self.waypoints if w.key == key)


@dataclass(frozen=True)
class EnvoySpec:
    name: str
    role: Role
    port: int
    admin_port: int
    identity: Identity
    bootstrap: JSON
    pod: str | None = None
    # Identities it also presents (ztunnel impersonates the workloads of its node).
    extra_identities: tuple[Identity, ...] = ()


@dataclass(frozen=True)
class MeshConfig:
    envoys: tuple[EnvoySpec, ...]
    gateway_hosts: tuple[str, ...]  # hosts the gateway serves (use one as the Host header)
    mesh_hosts: tuple[str, ...]  # names the client sidecar routes
    client_identity: Identity
    warnings: tuple[str, ...]
    ambient: AmbientLayout | None = None

    @property
    def identities(self) -> tuple[Identity, ...]:
        found = {e.identity for e in self.envoys} | {i for e in self.envoys for i in e.extra_identities}
        return tuple(sorted(found, key=lambda i: i.spiffe))

    def envoy(self, role: Role) -> EnvoySpec | None:
        return next((e for e in self.envoys if e.role == role), None)


def cert_paths(cert_dir: str, identity: Identity) -> tuple[str, str]:
    """(certificate chain, private key) file names for an identity; certs.py writes them."""
    return f"{cert_dir}/{identity.file_stem}.crt", f"{cert_dir}/{identity.file_stem}.key"


def ca_path(cert_dir: str) -> str:
    return f"{cert_dir}/ca.crt"
