"""What the mesh translation produces, and where every local process listens: the contract between
the translation (pure), the certificate issuer (certs.py) and the process edge (orchestrate.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from netdebug.k8s.inventory import Identity

Role = Literal["server-sidecar", "gateway", "client-sidecar"]
JSON = dict[str, Any]


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
