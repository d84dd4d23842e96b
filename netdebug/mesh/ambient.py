"""The ambient data plane's part of `netdebug mesh up` that is not Envoy configuration: its ports, what
a pod's Downward API files say about its mesh, and its part of the state file and the printout. Pure,
except for the port-taking callback `place` hands in.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from netdebug.k8s.hosts import CLUSTER_DOMAIN
from netdebug.k8s.inventory import Inventory, Pod
from netdebug.mesh.translate.ambient import CALLER_ADDRESS, GATEWAY_ADDRESS, ambient_layout
from netdebug.mesh.translate.model import AmbientPlacement, MeshConfig, Placement
from netdebug.mesh.translate.translator import default_client_identity

# What Istio writes on a pod, as its Downward API files show it: the injector's labels and status
# annotation (injection-template.yaml) on a pod with a sidecar; istio-cni's annotation on a pod it
# handed to ztunnel. The echo reads them to tell a waypoint hop from its own sidecar (echo/mesh.py).
TLS_MODE_LABEL = "security.istio.io/tlsMode"
SIDECAR_STATUS = "sidecar.istio.io/status"
AMBIENT_REDIRECTION = "ambient.istio.io/redirection"
_SIDECAR_STATUS_VALUE = json.dumps(
    {
        "initContainers": ["istio-init"],
        "containers": ["istio-proxy"],
        "volumes": ["istio-envoy", "istio-data", "istio-podinfo", "istio-token", "istiod-ca-cert"],
        "imagePullSecrets": None,
        "revision": "default",
    },
    separators=(",", ":"),
)

TakePort = Callable[[int, str, str], int]  # (port or 0, what, bind address) -> the port held


def ambient_placement(inventory: Inventory, bind: str, take: TakePort) -> AmbientPlacement | None:
    """Ports for the ambient data plane, or None when the rendering has none."""
    layout = ambient_layout(inventory, default_client_identity(inventory).namespace)
    if not (layout.needs_ztunnel or layout.waypoints):
        return None
    services = (
        {s.key: take(0, f"ClusterIP of {s.key}", bind) for s in layout.services} if layout.caller else {}
    )
    waypoints = {
        w.key: (take(0, f"waypoint {w.key}", bind), take(0, f"waypoint admin {w.key}", "127.0.0.1"))
        for w in layout.waypoints
    }
    inner = {
        f"{w.key}|{svc.fqdn}:{port.port}": take(0, f"waypoint {w.key} inner listener", "127.0.0.1")
        for w in layout.waypoints
        for svc, port in w.services
    }
    tunnels = {
        s.key: take(0, f"gateway tunnel to {s.key}", "127.0.0.1")
        for s in layout.services
        if s.ingress_waypoint
    }
    return AmbientPlacement(take(0, "ztunnel admin", "127.0.0.1"), services, waypoints, inner, tunnels)


def pod_labels(pod: Pod) -> dict[str, str]:
    """The pod's labels as the API server would show them: the template's, plus the injector's."""
    labels = dict(pod.labels)
    if pod.injection.sidecar:
        labels.setdefault(TLS_MODE_LABEL, "istio")
        labels.setdefault(
            "service.istio.io/canonical-name",
            labels.get("app.kubernetes.io/name") or labels.get("app") or pod.deployment,
        )
        labels.setdefault(
            "service.istio.io/canonical-revision",
            labels.get("app.kubernetes.io/version") or labels.get("version") or "latest",
        )
    return labels


def pod_annotations(pod: Pod) -> dict[str, str]:
    """The annotations Istio adds to the pod (the template's own are not carried by the inventory)."""
    if pod.injection.sidecar:
        return {SIDECAR_STATUS: _SIDECAR_STATUS_VALUE}
    if pod.ambient:
        return {AMBIENT_REDIRECTION: "enabled"}
    return {}


def pod_state(pod: Pod, placement: Placement, host: str) -> dict[str, Any]:
    """The ambient fields of a pod in the state file."""
    where = placement.pods[pod.name]
    return {
        "ambient": pod.ambient,
        "capture": pod.capture.reason,
        "ztunnel_url": f"https://{host}:{where.sidecar_port}" if pod.ambient else None,
    }


def ambient_state(
    mesh: MeshConfig, placement: Placement, host: str, pids: Mapping[str, int]
) -> dict[str, Any] | None:
    """The state file's `ambient` object: ztunnel, the ambient caller, its Services, the waypoints."""
    layout = mesh.ambient
    if layout is None or placement.ambient is None:
        return None
    ztunnel = mesh.envoy("ztunnel")
    client = None
    if layout.caller:
        client = {
            "url": f"http://{host}:{placement.client_port}",
            "port": placement.client_port,
            "identity": mesh.client_identity.spiffe,
            "address": CALLER_ADDRESS,
            "why": layout.caller_reason,
        }
    return {
        "ztunnel": None
        if ztunnel is None
        else {
            "pid": pids.get(ztunnel.name),
            "admin": f"http://127.0.0.1:{ztunnel.admin_port}",
            "identities": sorted(i.spiffe for i in (ztunnel.identity, *ztunnel.extra_identities)),
        },
        "client": client,
        "services": [
            {
                "host": s.service.fqdn,
                "port": s.port.port,
                "names": s.service.host_names(mesh.client_identity.namespace),
                "url": f"http://{host}:{placement.ambient.service_ports[s.key]}",
                "local_port": placement.ambient.service_ports[s.key],
                "waypoint": s.waypoint,
            }
            for s in layout.services
            if s.key in placement.ambient.service_ports
        ],
        "ingress_through_waypoint": sorted(s.key for s in layout.services if s.ingress_waypoint),
        "gateway_address": GATEWAY_ADDRESS,
        "waypoints": [
            {
                "name": w.key,
                "url": f"https://{host}:{placement.ambient.waypoint_ports[w.key][0]}",
                "admin": f"http://127.0.0.1:{placement.ambient.waypoint_ports[w.key][1]}",
                "pid": pids.get(f"waypoint-{w.doc.namespace}-{w.doc.name}"),
                "identity": w.identity.spiffe,
                "address": w.address,
                "services": [f"{svc.fqdn}:{port.port}" for svc, port in w.services],
                "xfcc_client_identity": w.xfcc_client_identity,
            }
            for w in layout.waypoints
        ],
    }


def summary_lines(state: Mapping[str, Any]) -> list[str]:
    """The printout's ambient lines: the caller's entry, its Services and how each is served."""
    ambient = state.get("ambient")
    if not ambient:
        return []
    lines: list[str] = []
    client = ambient.get("client")
    services = ambient.get("services", [])
    if client:
        # One fact a line, so mesh up's printout stays within its 100 columns without breaking a phrase.
        lines.append(f"ambient client  {client['url']}  (CONNECT proxy into ztunnel)")
        lines.append(f"  identity {client['identity']}")
        fqdn = next((s for s in services if s["host"].endswith(f".svc.{CLUSTER_DOMAIN}")), None)
        if fqdn is not None:
            lines.append(f"  try: curl -p -x {client['url']} http://{fqdn['host']}:{fqdn['port']}/echo")
    for svc in services:
        via = f"waypoint {svc['waypoint']}" if svc["waypoint"] else "ztunnel only: routes NOT applied"
        address = svc["url"].removeprefix("http://")
        lines.append(f"  service {svc['host']}:{svc['port']}  ({via})")
        lines.append(f"    ClusterIP {address}")
        lines.append(
            f"    try: curl --connect-to {svc['host']}:{svc['port']}:{address} http://{svc['host']}:{svc['port']}/echo"
        )
    for waypoint in ambient.get("waypoints", []):
        lines.append(f"waypoint {waypoint['name']}  {waypoint['url']} (HBONE)")
        lines.append(f"  identity {waypoint['identity']}; {len(waypoint['services'])} Service ports")
    return lines
