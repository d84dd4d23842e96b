"""Small manifests shaped like k8s/ (namespace echo, echo-v1 ×2, echo-v2 ×1, echo-service), for pure tests."""

from __future__ import annotations

import itertools
import textwrap
from typing import Any

from netdebug.k8s.inventory import Inventory, build_inventory
from netdebug.k8s.load import parse_documents
from netdebug.mesh.ambient import ambient_placement
from netdebug.mesh.translate.model import MeshConfig, Placement, PodPlacement, Role
from netdebug.mesh.translate.translator import translate

CERT_DIR = "/certs"


def deployment(version: str, replicas: int, extra_labels: str = "") -> str:
    return textwrap.dedent(
        f"""\
        apiVersion: apps/v1
        kind: Deployment
        metadata: {{name: echo-{version}, namespace: echo}}
        spec:
          replicas: {replicas}
          selector: {{matchLabels: {{app: echo, version: {version}}}}}
          template:
            metadata: {{labels: {{app: echo, version: {version}{extra_labels}}}}}
            spec:
              serviceAccountName: echo-{version}
              containers:
              - name: echo
                image: meshecho/echo:0.1.0
                env:
                - {{name: POD_NAME, valueFrom: {{fieldRef: {{fieldPath: metadata.name}}}}}}
                - name: SERVICE_VERSION
                  valueFrom: {{fieldRef: {{fieldPath: "metadata.labels['version']"}}}}
                - {{name: HTTP_PORT, value: "8080"}}
                ports:
                - {{containerPort: 8080, name: http}}
                - {{containerPort: 8443, name: https}}
        """
    )


SERVICE = textwrap.dedent(
    """\
    apiVersion: v1
    kind: Service
    metadata: {name: echo-service, namespace: echo}
    spec:
      selector: {app: echo}
      ports:
      - {name: http, port: 80, targetPort: 8080, appProtocol: http}
      - {name: https, port: 443, targetPort: 8443, appProtocol: https}
    """
)

DESTINATION_RULE = textwrap.dedent(
    """\
    apiVersion: networking.istio.io/v1
    kind: DestinationRule
    metadata: {name: echo-service, namespace: echo}
    spec:
      host: echo-service.echo.svc.cluster.local
      subsets:
      - {name: v1, labels: {version: v1}}
      - {name: v2, labels: {version: v2}}
    """
)

GATEWAY = textwrap.dedent(
    """\
    apiVersion: networking.istio.io/v1
    kind: Gateway
    metadata: {name: echo-gateway, namespace: echo}
    spec:
      selector: {istio: ingressgateway}
      servers:
      - port: {number: 80, name: http, protocol: HTTP}
        hosts: [echo.local]
    """
)

BASE = "---\n".join([deployment("v1", 2), deployment("v2", 1), SERVICE, DESTINATION_RULE, GATEWAY])


def virtual_service(http: str, *, gateways: str = "[echo-gateway, mesh]", hosts: str | None = None) -> str:
    hosts = hosts or "[echo-service.echo.svc.cluster.local, echo.local]"
    body = textwrap.indent(textwrap.dedent(http), "  ")
    return (
        "apiVersion: networking.istio.io/v1\n"
        "kind: VirtualService\n"
        "metadata: {name: echo-route, namespace: echo}\n"
        "spec:\n"
        f"  hosts: {hosts}\n"
        f"  gateways: {gateways}\n"
        "  http:\n"
        f"{body}"
    )


SPLIT_75_25 = """\
- name: echo-split
  match:
  - uri: {prefix: /echo}
  route:
  - destination: {host: echo-service.echo.svc.cluster.local, subset: v1, port: {number: 80}}
    weight: 75
  - destination: {host: echo-service.echo.svc.cluster.local, subset: v2, port: {number: 80}}
    weight: 25
"""


def inventory(*docs: str, origin: str = "test.yaml") -> Inventory:
    return build_inventory(parse_documents("---\n".join(docs), origin))


def placement(inv: Inventory, cert_dir: str = CERT_DIR, bind: str = "127.0.0.1") -> Placement:
    pods = {pod.name: PodPlacement(20000 + i, 21000 + i, 22000 + i) for i, pod in enumerate(inv.pods)}
    ports = itertools.count(25000)
    ambient = ambient_placement(inv, bind, lambda port, what, where: port or next(ports))
    return Placement(bind, pods, 23000, 23001, 24000, 24001, cert_dir, ambient)


def mesh_config(*docs: str) -> MeshConfig:
    inv = inventory(*docs)
    return translate(inv, placement(inv))


def route_config(config: MeshConfig, role: Role) -> dict[str, Any]:
    envoy = config.envoy(role)
    assert envoy is not None, f"no {role} envoy"
    listener = envoy.bootstrap["static_resources"]["listeners"][0]
    hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
    return dict(hcm["route_config"])


def vhost(config: MeshConfig, role: Role, domain: str) -> dict[str, Any]:
    for vh in route_config(config, role)["virtual_hosts"]:
        if domain in vh["domains"]:
            return dict(vh)
    raise AssertionError(f"no virtual host for {domain} in {role}")


def clusters(config: MeshConfig, role: Role) -> dict[str, dict[str, Any]]:
    envoy = config.envoy(role)
    assert envoy is not None
    return {c["name"]: c for c in envoy.bootstrap["static_resources"]["clusters"]}


def endpoint_ports(cluster: dict[str, Any]) -> list[int]:
    return sorted(
        lb["endpoint"]["address"]["socket_address"]["port_value"]
        for group in cluster["load_assignment"]["endpoints"]
        for lb in group["lb_endpoints"]
    )


def mtls_socket(cluster: dict[str, Any]) -> dict[str, Any]:
    """The transport socket an upstream cluster uses for endpoints marked `tlsMode: istio`."""
    (match,) = [m for m in cluster["transport_socket_matches"] if m["match"] == {"tlsMode": "istio"}]
    return dict(match["transport_socket"])


# The ambient stage in small (k8s/overlays/ambient): namespace echo in ambient mode using waypoint
# echo-waypoint, the per-version Services, the ingress route and the mesh route on echo-service.
AMBIENT_NAMESPACE = (
    "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: echo\n"
    "  labels: {istio.io/dataplane-mode: ambient, istio.io/use-waypoint: echo-waypoint}\n"
)
WAYPOINT = textwrap.dedent(
    """\
    apiVersion: gateway.networking.k8s.io/v1
    kind: Gateway
    metadata: {name: echo-waypoint, namespace: echo, labels: {istio.io/waypoint-for: service}}
    spec:
      gatewayClassName: istio-waypoint
      listeners: [{name: mesh, port: 15008, protocol: HBONE}]
    """
)
# Gateway API: one Service per version, the Gateway and its 75/25 ingress route.
GATEWAY_API_INGRESS = textwrap.dedent(
    """\
    apiVersion: v1
    kind: Service
    metadata: {name: echo-v1, namespace: echo}
    spec:
      selector: {app: echo, version: v1}
      ports: [{name: http, port: 80, targetPort: http, appProtocol: http}]
    ---
    apiVersion: v1
    kind: Service
    metadata: {name: echo-v2, namespace: echo}
    spec:
      selector: {app: echo, version: v2}
      ports: [{name: http, port: 80, targetPort: 8080, appProtocol: http}]
    ---
    apiVersion: gateway.networking.k8s.io/v1
    kind: Gateway
    metadata: {name: echo-gateway, namespace: echo}
    spec:
      gatewayClassName: istio
      listeners: [{name: http, port: 80, protocol: HTTP, hostname: echo.local}]
    ---
    apiVersion: gateway.networking.k8s.io/v1
    kind: HTTPRoute
    metadata: {name: echo-ingress, namespace: echo}
    spec:
      parentRefs: [{name: echo-gateway, sectionName: http}]
      hostnames: [echo.local]
      rules:
      - matches: [{path: {type: PathPrefix, value: /echo}}]
        backendRefs: [{name: echo-v1, port: 80, weight: 75}, {name: echo-v2, port: 80, weight: 25}]
    """
)

AMBIENT_ROUTES = (
    GATEWAY_API_INGRESS
    + "---\n"
    + textwrap.dedent(
        """\
    apiVersion: gateway.networking.k8s.io/v1
    kind: HTTPRoute
    metadata: {name: echo-mesh, namespace: echo}
    spec:
      parentRefs: [{group: "", kind: Service, name: echo-service, port: 80}]
      rules:
      - matches: [{path: {type: PathPrefix, value: /echo}}]
        backendRefs: [{name: echo-v1, port: 80, weight: 75}, {name: echo-v2, port: 80, weight: 25}]
      - backendRefs: [{name: echo-service, port: 80}]
    """
    )
)


def ambient_docs(namespace: str = AMBIENT_NAMESPACE, *extra: str) -> list[str]:
    """The ambient stage's documents: one pod per version, as the overlay has."""
    return [namespace, deployment("v1", 1), deployment("v2", 1), SERVICE, WAYPOINT, AMBIENT_ROUTES, *extra]
