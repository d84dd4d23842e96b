"""Ambient-mode cross-reference checks: the shipped ambient stage is clean with its plan, every ambient
trap is caught on a broken copy of it (with the `istioctl analyze` code where a cluster has one), the
variants Istio accepts stay clean, and the sidecar stages get no ambient finding."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from netdebug.k8s.ambient import AMBIENT_CHECKS, Ambient
from netdebug.k8s.checks import check_cross_references
from netdebug.k8s.documents import Doc, name_of
from netdebug.k8s.index import Index
from netdebug.k8s.splits import gateway_api_weights
from tests.k8s.stages import NETDEBUG_FOR, SIDECAR_STAGES

STAGE = "overlays/ambient"
MESH_HOST = "echo-service.echo.svc.cluster.local"
Mutation = Callable[[list[Doc]], None]


def _get(docs: list[Doc], kind: str, name: str) -> Doc:
    return next(d for d in docs if d["kind"] == kind and name_of(d) == name)


def _labels(doc: Doc) -> dict[str, str]:
    labels: dict[str, str] = doc["metadata"].setdefault("labels", {})
    return labels


def _texts(docs: list[Doc]) -> list[str]:
    return [str(f) for f in check_cross_references(docs)]


@pytest.fixture
def ambient_docs(docs_of: Callable[[str], list[Doc]]) -> list[Doc]:
    return copy.deepcopy(docs_of(STAGE) + docs_of(NETDEBUG_FOR[STAGE]))


def test_ambient_stage_and_its_plan_have_no_findings(ambient_docs: list[Doc]) -> None:
    assert _texts(ambient_docs) == []


@pytest.mark.parametrize("stage", SIDECAR_STAGES)
def test_sidecar_stages_get_no_ambient_finding(stage: str, docs_of: Callable[[str], list[Doc]]) -> None:
    index = Index(docs_of(stage) + docs_of(NETDEBUG_FOR[stage]))
    assert [str(f) for check in AMBIENT_CHECKS for f in check(index)] == []


def test_sidecar_plan_on_the_ambient_stage(docs_of: Callable[[str], list[Doc]]) -> None:
    # As on the Gateway API stage, the sidecar plan agrees with the routes (echo-mesh serves /echo
    # only, so the 404 local-reply step holds too).
    findings = check_cross_references(docs_of(STAGE) + docs_of("netdebug"))
    assert [(f.kind, f.field.rpartition(".")[2], "404" in f.message) for f in findings] == []


# --- one broken copy per trap ------------------------------------------------------------------


def _no_waypoint_in_use(docs: list[Doc]) -> None:
    del _labels(_get(docs, "Namespace", "echo"))["istio.io/use-waypoint"]


def _service_opts_out(docs: list[Doc]) -> None:
    _labels(_get(docs, "Service", "echo-service"))["istio.io/use-waypoint"] = "none"


def _waypoint_for(value: str) -> Mutation:
    def mutate(docs: list[Doc]) -> None:
        _labels(_get(docs, "Gateway", "echo-waypoint"))["istio.io/waypoint-for"] = value

    return mutate


def _class_default_workload(docs: list[Doc]) -> None:
    # No label on the Gateway: the GatewayClass's label decides.
    del _labels(_get(docs, "Gateway", "echo-waypoint"))["istio.io/waypoint-for"]
    docs.append(
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "GatewayClass",
            "metadata": {"name": "istio-waypoint", "labels": {"istio.io/waypoint-for": "workload"}},
            "spec": {"controllerName": "istio.io/mesh-controller"},
        }
    )


def _waypoint_missing(docs: list[Doc]) -> None:
    docs.remove(_get(docs, "Gateway", "echo-waypoint"))


def _service_names_missing_waypoint(docs: list[Doc]) -> None:
    _labels(_get(docs, "Service", "echo-service"))["istio.io/use-waypoint"] = "waypoint"


def _ingress_gateway_as_waypoint(docs: list[Doc]) -> None:
    _labels(_get(docs, "Namespace", "echo"))["istio.io/use-waypoint"] = "echo-gateway"


def _waypoint_in_other_namespace(docs: list[Doc]) -> None:
    # A shared waypoint in istio-system whose HBONE listener admits only its own namespace (default).
    shared = copy.deepcopy(_get(docs, "Gateway", "echo-waypoint"))
    shared["metadata"] = {"name": "shared", "namespace": "istio-system", "labels": {}}
    docs.append(shared)
    labels = _labels(_get(docs, "Namespace", "echo"))
    labels["istio.io/use-waypoint"] = "shared"
    labels["istio.io/use-waypoint-namespace"] = "istio-system"


def _injection_label(docs: list[Doc]) -> None:
    _labels(_get(docs, "Namespace", "echo"))["istio-injection"] = "enabled"


def _revision_label(docs: list[Doc]) -> None:
    _labels(_get(docs, "Namespace", "echo"))["istio.io/rev"] = "canary"


def _pod_asks_for_sidecar(docs: list[Doc]) -> None:
    template = _get(docs, "Deployment", "echo-v2")["spec"]["template"]
    template["metadata"]["labels"]["sidecar.istio.io/inject"] = "true"


def _mesh_virtual_service(docs: list[Doc]) -> None:
    # The sidecar stages' split, written as a mesh VirtualService over the per-version Services.
    docs.append(
        {
            "apiVersion": "networking.istio.io/v1",
            "kind": "VirtualService",
            "metadata": {"name": "echo-route", "namespace": "echo"},
            "spec": {
                "hosts": [MESH_HOST],
                "http": [
                    {
                        "route": [
                            {"destination": {"host": "echo-v1.echo.svc.cluster.local"}, "weight": 75},
                            {"destination": {"host": "echo-v2.echo.svc.cluster.local"}, "weight": 25},
                        ]
                    }
                ],
            },
        }
    )


def _ingress_to_mesh_routed_service(docs: list[Doc]) -> None:
    rule = _get(docs, "HTTPRoute", "echo-ingress")["spec"]["rules"][0]
    rule["backendRefs"] = [{"name": "echo-service", "port": 80}]


def _probe_address_not_allowed(docs: list[Doc]) -> None:
    ingress = _get(docs, "NetworkPolicy", "echo-ingress")["spec"]["ingress"]
    ingress[:] = [rule for rule in ingress if "ipBlock" not in rule["from"][0]]


def _hbone_port_not_allowed(docs: list[Doc]) -> None:
    _get(docs, "NetworkPolicy", "echo-ingress")["spec"]["ingress"][0]["ports"] = [{"port": 8080}]


AMBIENT_CASES = [
    pytest.param(_no_waypoint_in_use, "", "HTTPRoute", "spec.parentRefs[0]", id="route-without-waypoint"),
    pytest.param(_service_opts_out, "", "HTTPRoute", "spec.parentRefs[0]", id="service-opts-out-of-waypoint"),
    pytest.param(
        _waypoint_for("workload"),
        "IST0171",
        "Gateway",
        "metadata.labels[istio.io/waypoint-for]",
        id="waypoint-for-workload",
    ),
    pytest.param(
        _waypoint_for("none"),
        "IST0171",
        "Gateway",
        "metadata.labels[istio.io/waypoint-for]",
        id="waypoint-for-none",
    ),
    pytest.param(
        _class_default_workload,
        "IST0171",
        "Gateway",
        "metadata.labels[istio.io/waypoint-for]",
        id="waypoint-class-takes-workloads",
    ),
    pytest.param(
        _waypoint_missing,
        "IST0171",
        "Namespace",
        "metadata.labels[istio.io/use-waypoint]",
        id="waypoint-not-deployed",
    ),
    pytest.param(
        _service_names_missing_waypoint,
        "IST0171",
        "Service",
        "metadata.labels[istio.io/use-waypoint]",
        id="service-names-missing-waypoint",
    ),
    pytest.param(
        _ingress_gateway_as_waypoint, "", "Gateway", "spec.gatewayClassName", id="ingress-gateway-as-waypoint"
    ),
    pytest.param(
        _waypoint_in_other_namespace,
        "IST0171",
        "Gateway",
        "spec.listeners",
        id="waypoint-does-not-admit-namespace",
    ),
    pytest.param(_injection_label, "", "Namespace", "metadata.labels", id="injection-label-in-ambient"),
    pytest.param(_revision_label, "", "Namespace", "metadata.labels", id="revision-label-in-ambient"),
    pytest.param(
        _pod_asks_for_sidecar,
        "",
        "Deployment",
        "spec.template.metadata.labels[sidecar.istio.io/inject]",
        id="pod-asks-for-sidecar",
    ),
    pytest.param(
        _mesh_virtual_service, "", "VirtualService", "spec.hosts[0]", id="virtualservice-for-ambient-l7"
    ),
    pytest.param(
        _ingress_to_mesh_routed_service,
        "",
        "HTTPRoute",
        "spec.rules[0].backendRefs[0]",
        id="ingress-skips-mesh-route",
    ),
    pytest.param(_probe_address_not_allowed, "", "NetworkPolicy", "spec.ingress", id="probe-address-blocked"),
    pytest.param(_hbone_port_not_allowed, "", "NetworkPolicy", "spec.ingress", id="hbone-port-blocked"),
]


@pytest.mark.parametrize(("mutate", "code", "kind", "field"), AMBIENT_CASES)
def test_ambient_trap_is_found(
    mutate: Mutation, code: str, kind: str, field: str, ambient_docs: list[Doc]
) -> None:
    mutate(ambient_docs)
    findings = check_cross_references(ambient_docs)
    assert (kind, field, code) in {(f.kind, f.field, f.code) for f in findings}, [str(f) for f in findings]


def test_route_without_waypoint_says_why(ambient_docs: list[Doc]) -> None:
    _no_waypoint_in_use(ambient_docs)
    (finding,) = check_cross_references(ambient_docs)
    assert "ztunnel balances connections over all the Service's pods" in finding.message
    assert "istioctl analyze does not" in finding.message
    # The plan check does not also claim a split: no route applies, so the routes give none.
    assert finding.kind == "HTTPRoute"


def test_virtual_service_next_to_an_httproute_is_called_undefined(ambient_docs: list[Doc]) -> None:
    _mesh_virtual_service(ambient_docs)
    (finding,) = [f for f in check_cross_references(ambient_docs) if f.kind == "VirtualService"]
    assert "alpha" in finding.message
    assert "HTTPRoute echo-mesh also routes it: mixing both is undefined" in finding.message


# --- variants Istio accepts ----------------------------------------------------------------------


def _service_label_instead_of_namespace(docs: list[Doc]) -> None:
    del _labels(_get(docs, "Namespace", "echo"))["istio.io/use-waypoint"]
    _labels(_get(docs, "Service", "echo-service"))["istio.io/use-waypoint"] = "echo-waypoint"


def _waypoint_for_all(docs: list[Doc]) -> None:
    _labels(_get(docs, "Gateway", "echo-waypoint"))["istio.io/waypoint-for"] = "all"


def _injection_disabled(docs: list[Doc]) -> None:
    _labels(_get(docs, "Namespace", "echo"))["istio-injection"] = "disabled"


def _shared_waypoint_admitting_all(docs: list[Doc]) -> None:
    _waypoint_in_other_namespace(docs)
    shared = _get(docs, "Gateway", "shared")
    shared["spec"]["listeners"][0]["allowedRoutes"] = {"namespaces": {"from": "All"}}


def _ingress_through_the_waypoint(docs: list[Doc]) -> None:
    # The other design: one split (echo-mesh) applied at the waypoint for ingress traffic too.
    _ingress_to_mesh_routed_service(docs)
    _labels(_get(docs, "Service", "echo-service"))["istio.io/ingress-use-waypoint"] = "true"


def _virtual_service_only_at_the_ingress(docs: list[Doc]) -> None:
    _mesh_virtual_service(docs)
    vs = _get(docs, "VirtualService", "echo-route")
    vs["spec"]["gateways"] = ["echo-gateway"]
    vs["spec"]["hosts"] = ["echo.other"]
    docs.append(
        {
            "apiVersion": "networking.istio.io/v1",
            "kind": "Gateway",
            "metadata": {"name": "echo-gateway", "namespace": "echo"},
            "spec": {
                "selector": {"istio": "ingressgateway"},
                "servers": [
                    {"port": {"number": 80, "name": "http", "protocol": "HTTP"}, "hosts": ["echo.other"]}
                ],
            },
        }
    )


def _hbone_port_listed(docs: list[Doc]) -> None:
    _get(docs, "NetworkPolicy", "echo-ingress")["spec"]["ingress"][0]["ports"] = [
        {"port": 8080},
        {"port": 15008, "protocol": "TCP"},
    ]


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(_service_label_instead_of_namespace, id="service-label-instead-of-namespace"),
        pytest.param(_waypoint_for_all, id="waypoint-for-all"),
        pytest.param(_injection_disabled, id="injection-disabled-label"),
        pytest.param(_shared_waypoint_admitting_all, id="shared-waypoint-admitting-all"),
        pytest.param(_ingress_through_the_waypoint, id="ingress-through-the-waypoint"),
        pytest.param(_virtual_service_only_at_the_ingress, id="virtualservice-only-at-the-ingress"),
        pytest.param(_hbone_port_listed, id="hbone-port-listed"),
    ],
)
def test_accepted_ambient_variant_is_clean(mutate: Mutation, ambient_docs: list[Doc]) -> None:
    mutate(ambient_docs)
    assert _texts(ambient_docs) == []


# --- the split the routes give in ambient mode -----------------------------------------------------


@pytest.mark.parametrize(
    ("mutate", "ingress", "expected"),
    [
        pytest.param(None, False, {"v1": 75.0, "v2": 25.0}, id="mesh-through-waypoint"),
        pytest.param(_no_waypoint_in_use, False, None, id="mesh-route-not-applied-without-waypoint"),
        pytest.param(None, True, {"v1": 75.0, "v2": 25.0}, id="ingress-own-route"),
        pytest.param(
            _ingress_to_mesh_routed_service, True, {"echo-service": 100.0}, id="ingress-skips-waypoint"
        ),
        pytest.param(
            _ingress_through_the_waypoint, True, {"v1": 75.0, "v2": 25.0}, id="ingress-use-waypoint"
        ),
    ],
)
def test_gateway_api_weights_in_ambient(
    mutate: Mutation | None, ingress: bool, expected: dict[str, float] | None, ambient_docs: list[Doc]
) -> None:
    if mutate is not None:
        mutate(ambient_docs)
    host = "echo.local" if ingress else MESH_HOST
    assert gateway_api_weights(Index(ambient_docs), host, "/echo", "echo", ingress) == expected


@pytest.mark.parametrize(
    ("service_labels", "namespace_labels", "expected"),
    [
        pytest.param({}, {"istio.io/use-waypoint": "wp"}, ("wp", "echo", "Namespace"), id="namespace"),
        pytest.param(
            {"istio.io/use-waypoint": "svc-wp"},
            {"istio.io/use-waypoint": "wp"},
            ("svc-wp", "echo", "Service"),
            id="service-first",
        ),
        pytest.param(
            {"istio.io/use-waypoint": "none"}, {"istio.io/use-waypoint": "wp"}, None, id="service-opts-out"
        ),
        pytest.param({}, {"istio.io/use-waypoint": "none"}, None, id="namespace-none"),
        pytest.param(
            {"istio.io/use-waypoint": "wp", "istio.io/use-waypoint-namespace": "infra"},
            {},
            ("wp", "infra", "Service"),
            id="other-namespace",
        ),
        pytest.param({}, {}, None, id="no-label"),
    ],
)
def test_waypoint_resolution(
    service_labels: dict[str, str], namespace_labels: dict[str, str], expected: tuple[str, str, str] | None
) -> None:
    namespace: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": "echo", "labels": namespace_labels},
    }
    service: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "s", "namespace": "echo", "labels": service_labels},
        "spec": {},
    }
    ref = Ambient(Index([namespace, service])).waypoint_of(service)
    assert (None if ref is None else (ref.name, ref.namespace, ref.labelled["kind"])) == expected
