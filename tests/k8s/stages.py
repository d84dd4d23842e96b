"""What k8s/ must contain: the directories users apply, and what each renders to."""

from __future__ import annotations

from tests.procs import REPO

K8S = REPO / "k8s"

BASE_OBJECTS = {
    ("Namespace", "echo"),
    ("ServiceAccount", "echo-v1"),
    ("ServiceAccount", "echo-v2"),
    ("Deployment", "echo-v1"),
    ("Deployment", "echo-v2"),
    ("Service", "echo-service"),
    ("NetworkPolicy", "echo-ingress"),
}
ISTIO_OBJECTS = {
    ("Gateway", "echo-gateway"),
    ("DestinationRule", "echo-service"),
    ("VirtualService", "echo-route"),
}
GATEWAY_API_OBJECTS = {
    ("Service", "echo-v1"),
    ("Service", "echo-v2"),
    ("Gateway", "echo-gateway"),
    ("HTTPRoute", "echo-ingress"),
    ("HTTPRoute", "echo-mesh"),
}
AMBIENT_OBJECTS = {
    ("Gateway", "echo-waypoint"),
}
NETDEBUG_OBJECTS = {
    ("ServiceAccount", "netdebug"),
    ("Job", "netdebug-plan"),
    ("Job", "netdebug-gateway"),
    ("NetworkPolicy", "netdebug-deny-ingress"),
    ("ConfigMap", "netdebug-plan"),  # plus kustomize's content hash suffix
}

# Directory (relative to k8s/) -> the (kind, name) set it renders, exactly.
STAGES: dict[str, set[tuple[str, str]]] = {
    "base": BASE_OBJECTS,
    "overlays/istio": BASE_OBJECTS | ISTIO_OBJECTS,
    "overlays/istio-v1-only": BASE_OBJECTS | ISTIO_OBJECTS,
    "overlays/gateway-api": BASE_OBJECTS | GATEWAY_API_OBJECTS,
    "overlays/ambient": BASE_OBJECTS | GATEWAY_API_OBJECTS | AMBIENT_OBJECTS,
    "netdebug": NETDEBUG_OBJECTS,
    "netdebug-ambient": NETDEBUG_OBJECTS,
}
# The routing stages users apply one after another (the netdebug Job goes on top of any of them).
ROUTING_STAGES = ["overlays/istio-v1-only", "overlays/istio", "overlays/gateway-api", "overlays/ambient"]
# The sidecar stages, and the ambient stage with the netdebug Job (and plan) that goes with it.
SIDECAR_STAGES = ["overlays/istio-v1-only", "overlays/istio", "overlays/gateway-api"]
NETDEBUG_FOR = {stage: "netdebug" for stage in SIDECAR_STAGES} | {"overlays/ambient": "netdebug-ambient"}
# The split each routing stage applies to /echo, for mesh callers and at the ingress gateway.
STAGE_SPLIT = {
    "overlays/istio-v1-only": {"v1": 100.0},
    "overlays/istio": {"v1": 75.0, "v2": 25.0},
    "overlays/gateway-api": {"v1": 75.0, "v2": 25.0},
    "overlays/ambient": {"v1": 75.0, "v2": 25.0},
}


def kustomization_dirs() -> list[str]:
    """Every directory under k8s/ with a Kustomization (components are rendered through them)."""
    found = []
    for path in sorted(K8S.rglob("kustomization.yaml")):
        if "kind: Component" not in path.read_text(encoding="utf-8"):
            found.append(str(path.parent.relative_to(K8S)))
    return found
