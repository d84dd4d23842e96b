"""Cross-reference checks: the shipped stages are clean, and every check catches the trap it names
(one broken copy of a real stage per case, with the `istioctl analyze` code that reports it)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
import yaml

from netdebug.k8s.checks import check_cross_references
from netdebug.k8s.documents import Doc, ManifestError, name_of
from netdebug.k8s.index import Finding, Index
from netdebug.k8s.splits import (
    check_plan_expectations,
    gateway_api_weights,
    istio_weights,
    parse_expect,
    plans_in,
)
from tests.k8s.stages import ROUTING_STAGES, STAGE_SPLIT

MESH_HOST = "echo-service.echo.svc.cluster.local"


def _get(docs: list[Doc], kind: str, name: str) -> Doc:
    return next(d for d in docs if d["kind"] == kind and name_of(d) == name)


@pytest.mark.parametrize("relative", ["base", "netdebug", "netdebug-ambient", *ROUTING_STAGES])
def test_shipped_manifests_have_no_findings(relative: str, docs_of: Callable[[str], list[Doc]]) -> None:
    assert [str(f) for f in check_cross_references(docs_of(relative))] == []


def test_example_plan_agrees_with_the_default_stage(docs_of: Callable[[str], list[Doc]]) -> None:
    assert [str(f) for f in check_cross_references(docs_of("overlays/istio") + docs_of("netdebug"))] == []


@pytest.mark.parametrize("stage", ROUTING_STAGES)
def test_each_stage_applies_its_split(stage: str, docs_of: Callable[[str], list[Doc]]) -> None:
    # The split each stage is documented to apply to /echo, for mesh callers and at the ingress.
    index = Index(docs_of(stage))
    mesh = istio_weights(index, MESH_HOST, "/echo", "echo", "mesh")
    ingress = istio_weights(index, "echo.local", "/echo", "echo", "echo-gateway")
    if mesh is None:
        mesh = gateway_api_weights(index, MESH_HOST, "/echo", "echo", ingress=False)
        ingress = gateway_api_weights(index, "echo.local", "/echo", "echo", ingress=True)
    assert mesh == ingress == STAGE_SPLIT[stage]


def test_example_plan_checks_the_mesh_and_gateway_split(docs_of: Callable[[str], list[Doc]]) -> None:
    # The plan check below only proves something if the plans have probe steps with expectations:
    # plan.yaml (the mesh, from the meshed Job) and gateway-plan.yaml (the ingress, from outside).
    plans = {key: plan for _, key, plan in plans_in(docs_of("netdebug"))}
    assert set(plans) == {"plan.yaml", "gateway-plan.yaml"}
    for plan in plans.values():
        probes = [s["probe"] for s in plan["steps"] if "probe" in s and "expect" in s["probe"]]
        assert len(probes) == 1


def test_example_plan_disagrees_with_the_first_stage(docs_of: Callable[[str], list[Doc]]) -> None:
    # The v1-only stage routes /echo 100% to v1: both split expectations of the plan must be flagged.
    findings = check_cross_references(docs_of("overlays/istio-v1-only") + docs_of("netdebug"))
    assert findings
    assert all(f.kind == "ConfigMap" and f.field.endswith("probe.expect") for f in findings)
    assert all("v1=100" in f.message for f in findings)
    assert {MESH_HOST, "echo.local"} == {
        h for f in findings for h in (MESH_HOST, "echo.local") if h in f.message
    }


def test_example_plans_hold_on_the_gateway_api_stage(docs_of: Callable[[str], list[Doc]]) -> None:
    # Same splits, and (without a catch-all in the GAMMA route) the same 404 for paths without /echo:
    # both Jobs' plans hold on this stage as they are.
    assert check_cross_references(docs_of("overlays/gateway-api") + docs_of("netdebug")) == []


# --- one broken copy per trap ------------------------------------------------------------------

Mutation = Callable[[list[Doc]], None]


def _subset_selects_nothing(docs: list[Doc]) -> None:
    _get(docs, "DestinationRule", "echo-service")["spec"]["subsets"][1]["labels"] = {"version": "v3"}


def _pods_without_version_label(docs: list[Doc]) -> None:
    template = _get(docs, "Deployment", "echo-v2")["spec"]["template"]
    del template["metadata"]["labels"]["version"]


def _destination_host_missing(docs: list[Doc]) -> None:
    route = _get(docs, "VirtualService", "echo-route")["spec"]["http"][0]["route"]
    route[0]["destination"]["host"] = "echo-svc.echo.svc.cluster.local"


def _destination_subset_missing(docs: list[Doc]) -> None:
    _get(docs, "VirtualService", "echo-route")["spec"]["http"][0]["route"][1]["destination"]["subset"] = "v3"


def _destination_port_missing(docs: list[Doc]) -> None:
    route = _get(docs, "VirtualService", "echo-route")["spec"]["http"][0]["route"]
    route[0]["destination"]["port"]["number"] = 8080


def _removed_istio_gateway(docs: list[Doc]) -> None:
    # The 2020 tutorial's reference: that Gateway was deleted in Istio 1.6.
    _get(docs, "VirtualService", "echo-route")["spec"]["gateways"] = ["istio-system/ingressgateway", "mesh"]


def _gateway_missing(docs: list[Doc]) -> None:
    docs.remove(_get(docs, "Gateway", "echo-gateway"))


def _wildcard_with_mesh(docs: list[Doc]) -> None:
    _get(docs, "VirtualService", "echo-route")["spec"]["hosts"] = ["*"]


def _no_gateways_means_mesh(docs: list[Doc]) -> None:
    spec = _get(docs, "VirtualService", "echo-route")["spec"]
    del spec["gateways"]
    spec["hosts"] = ["*"]


def _short_vs_host(docs: list[Doc]) -> None:
    _get(docs, "VirtualService", "echo-route")["spec"]["hosts"][0] = "echo-service"


def _short_destination_host(docs: list[Doc]) -> None:
    _get(docs, "VirtualService", "echo-route")["spec"]["http"][0]["route"][0]["destination"]["host"] = (
        "echo-service"
    )


def _short_dr_host(docs: list[Doc]) -> None:
    _get(docs, "DestinationRule", "echo-service")["spec"]["host"] = "echo-service"


def _dr_host_missing(docs: list[Doc]) -> None:
    _get(docs, "DestinationRule", "echo-service")["spec"]["host"] = "echo.default.svc.cluster.local"


def _unnamed_port(docs: list[Doc]) -> None:
    port = _get(docs, "Service", "echo-service")["spec"]["ports"][0]
    port["name"] = "web"
    del port["appProtocol"]


def _unknown_app_protocol(docs: list[Doc]) -> None:
    port = _get(docs, "Service", "echo-service")["spec"]["ports"][0]
    port["name"] = "web"
    port["appProtocol"] = "web"


def _target_port_mismatch(docs: list[Doc]) -> None:
    _get(docs, "Service", "echo-service")["spec"]["ports"][0]["targetPort"] = 8081


def _named_target_port_mismatch(docs: list[Doc]) -> None:
    _get(docs, "Service", "echo-service")["spec"]["ports"][0]["targetPort"] = "metrics"


def _missing_target_port_defaults_to_port(docs: list[Doc]) -> None:
    del _get(docs, "Service", "echo-service")["spec"]["ports"][0][
        "targetPort"
    ]  # then 80: not a container port


def _service_selects_nothing(docs: list[Doc]) -> None:
    _get(docs, "Service", "echo-service")["spec"]["selector"] = {"app": "echoo"}


def _injection_and_revision(docs: list[Doc]) -> None:
    _get(docs, "Namespace", "echo")["metadata"]["labels"]["istio.io/rev"] = "canary"


def _two_virtual_services(docs: list[Doc]) -> None:
    second = copy.deepcopy(_get(docs, "VirtualService", "echo-route"))
    second["metadata"]["name"] = "echo-route-copy"
    docs.append(second)


def _runs_as_proxy_uid(docs: list[Doc]) -> None:
    pod = _get(docs, "Deployment", "echo-v1")["spec"]["template"]["spec"]
    pod["containers"][0]["securityContext"]["runAsUser"] = 1337


def _plan_expects_other_split(docs: list[Doc]) -> None:
    for cm, key, plan in plans_in(docs):
        for step in plan["steps"]:
            if "probe" in step:
                step["probe"]["expect"] = "v1=50,v2=50"
        cm["data"][key] = _dump(plan)


def _plan_expects_404_on_routed_path(docs: list[Doc]) -> None:
    for cm, key, plan in plans_in(docs):
        for step in plan["steps"]:
            if "http" in step and step["http"].get("expect", {}).get("status") == 404:
                step["http"]["url"] = "${svc}/echo/x"
        cm["data"][key] = _dump(plan)


def _dump(plan: Any) -> str:
    return str(yaml.safe_dump(plan))


ISTIO_CASES = [
    pytest.param(
        _subset_selects_nothing,
        "IST0173",
        "DestinationRule",
        "spec.subsets[1].labels",
        id="subset-selects-no-pod",
    ),
    pytest.param(
        _pods_without_version_label,
        "IST0173",
        "DestinationRule",
        "spec.subsets[1].labels",
        id="pods-lack-version-label",
    ),
    pytest.param(
        _destination_host_missing,
        "IST0101",
        "VirtualService",
        "spec.http[0].route[0].destination.host",
        id="destination-host-missing",
    ),
    pytest.param(
        _destination_subset_missing,
        "IST0101",
        "VirtualService",
        "spec.http[0].route[1].destination.subset",
        id="destination-subset-missing",
    ),
    pytest.param(
        _destination_port_missing,
        "IST0101",
        "VirtualService",
        "spec.http[0].route[0].destination.port.number",
        id="destination-port-missing",
    ),
    pytest.param(
        _removed_istio_gateway,
        "IST0101",
        "VirtualService",
        "spec.gateways[0]",
        id="tutorial-ingressgateway-removed-in-1.6",
    ),
    pytest.param(_gateway_missing, "IST0101", "VirtualService", "spec.gateways[0]", id="gateway-missing"),
    pytest.param(
        _wildcard_with_mesh, "IST0106", "VirtualService", "spec.hosts[0]", id="wildcard-host-with-mesh"
    ),
    pytest.param(
        _no_gateways_means_mesh,
        "IST0106",
        "VirtualService",
        "spec.hosts[0]",
        id="wildcard-host-implicit-mesh",
    ),
    pytest.param(_short_vs_host, "IST0101", "VirtualService", "spec.hosts[0]", id="short-vs-host"),
    pytest.param(
        _short_destination_host,
        "IST0101",
        "VirtualService",
        "spec.http[0].route[0].destination.host",
        id="short-destination-host",
    ),
    pytest.param(_short_dr_host, "IST0174", "DestinationRule", "spec.host", id="short-dr-host"),
    pytest.param(_dr_host_missing, "IST0174", "DestinationRule", "spec.host", id="dr-host-missing"),
    pytest.param(_unnamed_port, "IST0118", "Service", "spec.ports[0]", id="port-without-protocol"),
    pytest.param(_unknown_app_protocol, "IST0118", "Service", "spec.ports[0]", id="unknown-app-protocol"),
    pytest.param(
        _target_port_mismatch, "IST0143", "Service", "spec.ports[0].targetPort", id="target-port-mismatch"
    ),
    pytest.param(
        _named_target_port_mismatch,
        "IST0143",
        "Service",
        "spec.ports[0].targetPort",
        id="named-target-port-mismatch",
    ),
    pytest.param(
        _missing_target_port_defaults_to_port,
        "IST0143",
        "Service",
        "spec.ports[0].targetPort",
        id="target-port-defaults-to-port",
    ),
    pytest.param(_service_selects_nothing, "", "Service", "spec.selector", id="service-selects-nothing"),
    pytest.param(
        _injection_and_revision, "IST0123", "Namespace", "metadata.labels", id="injection-and-revision-labels"
    ),
    pytest.param(
        _two_virtual_services, "IST0109", "VirtualService", "spec.hosts", id="two-virtual-services-one-host"
    ),
    pytest.param(_runs_as_proxy_uid, "", "Deployment", "securityContext.runAsUser", id="runs-as-proxy-uid"),
    pytest.param(
        _plan_expects_other_split,
        "",
        "ConfigMap",
        "data[plan.yaml].steps[2].probe.expect",
        id="plan-expects-other-split",
    ),
    pytest.param(
        _plan_expects_404_on_routed_path,
        "",
        "ConfigMap",
        "data[plan.yaml].steps[3].http.expect",
        id="plan-expects-404-on-routed-path",
    ),
]


@pytest.mark.parametrize(("mutate", "code", "kind", "field"), ISTIO_CASES)
def test_istio_trap_is_found(
    mutate: Mutation, code: str, kind: str, field: str, docs_of: Callable[[str], list[Doc]]
) -> None:
    docs = copy.deepcopy(docs_of("overlays/istio") + docs_of("netdebug"))
    mutate(docs)
    findings = check_cross_references(docs)
    assert (kind, field, code) in {(f.kind, f.field, f.code) for f in findings}, [str(f) for f in findings]


def _backend_service_missing(docs: list[Doc]) -> None:
    docs.remove(_get(docs, "Service", "echo-v2"))


def _backend_port_missing(docs: list[Doc]) -> None:
    _get(docs, "HTTPRoute", "echo-ingress")["spec"]["rules"][0]["backendRefs"][0]["port"] = 8080


def _gamma_parent_missing(docs: list[Doc]) -> None:
    _get(docs, "HTTPRoute", "echo-mesh")["spec"]["parentRefs"][0]["name"] = "echo"


def _gamma_parent_port_missing(docs: list[Doc]) -> None:
    _get(docs, "HTTPRoute", "echo-mesh")["spec"]["parentRefs"][0]["port"] = 8080


def _parent_gateway_missing(docs: list[Doc]) -> None:
    _get(docs, "HTTPRoute", "echo-ingress")["spec"]["parentRefs"][0]["name"] = "ingressgateway"


def _parent_listener_missing(docs: list[Doc]) -> None:
    _get(docs, "HTTPRoute", "echo-ingress")["spec"]["parentRefs"][0]["sectionName"] = "https"


def _per_version_service_port_unnamed(docs: list[Doc]) -> None:
    port = _get(docs, "Service", "echo-v1")["spec"]["ports"][0]
    del port["appProtocol"]
    port["name"] = "web"


def _gamma_split_changed(docs: list[Doc]) -> None:
    backends = _get(docs, "HTTPRoute", "echo-mesh")["spec"]["rules"][0]["backendRefs"]
    backends[0]["weight"], backends[1]["weight"] = 50, 50


def _ingress_split_changed(docs: list[Doc]) -> None:
    del _get(docs, "HTTPRoute", "echo-ingress")["spec"]["rules"][0]["backendRefs"][1]


GATEWAY_API_CASES = [
    pytest.param(
        _backend_service_missing,
        "IST0101",
        "HTTPRoute",
        "spec.rules[0].backendRefs[1]",
        id="backend-service-missing",
    ),
    pytest.param(
        _backend_port_missing,
        "IST0101",
        "HTTPRoute",
        "spec.rules[0].backendRefs[0].port",
        id="backend-port-missing",
    ),
    pytest.param(
        _gamma_parent_missing, "IST0101", "HTTPRoute", "spec.parentRefs[0]", id="gamma-parent-missing"
    ),
    pytest.param(
        _gamma_parent_port_missing,
        "IST0101",
        "HTTPRoute",
        "spec.parentRefs[0].port",
        id="gamma-parent-port-missing",
    ),
    pytest.param(
        _parent_gateway_missing, "IST0101", "HTTPRoute", "spec.parentRefs[0]", id="parent-gateway-missing"
    ),
    pytest.param(
        _parent_listener_missing,
        "IST0101",
        "HTTPRoute",
        "spec.parentRefs[0].sectionName",
        id="parent-listener-missing",
    ),
    pytest.param(
        _per_version_service_port_unnamed,
        "IST0118",
        "Service",
        "spec.ports[0]",
        id="per-version-port-unnamed",
    ),
    pytest.param(
        _gamma_split_changed,
        "",
        "ConfigMap",
        "data[plan.yaml].steps[2].probe.expect",
        id="plan-vs-gamma-split",
    ),
    pytest.param(
        _ingress_split_changed,
        "",
        "ConfigMap",
        "data[gateway-plan.yaml].steps[0].probe.expect",
        id="plan-vs-ingress-split",
    ),
]


@pytest.mark.parametrize(("mutate", "code", "kind", "field"), GATEWAY_API_CASES)
def test_gateway_api_trap_is_found(
    mutate: Mutation, code: str, kind: str, field: str, docs_of: Callable[[str], list[Doc]]
) -> None:
    docs = copy.deepcopy(docs_of("overlays/gateway-api") + docs_of("netdebug"))
    mutate(docs)
    findings = check_cross_references(docs)
    assert (kind, field, code) in {(f.kind, f.field, f.code) for f in findings}, [str(f) for f in findings]


# --- the pure pieces -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("v1=75,v2=25", {"v1": 75.0, "v2": 25.0}, id="flag-form"),
        pytest.param(" v1 = 90 , v2=10", {"v1": 90.0, "v2": 10.0}, id="spaces"),
        pytest.param({"v1": 75, "v2": 25}, {"v1": 75.0, "v2": 25.0}, id="mapping"),
        pytest.param({"v1": "1", "v2": 3}, {"v1": 1.0, "v2": 3.0}, id="relative-mapping"),
    ],
)
def test_parse_expect(text: object, expected: dict[str, float]) -> None:
    assert parse_expect(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("v1:75", "not version=weight", id="no-equals"),
        pytest.param("v1=lots", "numbers", id="not-a-number"),
        pytest.param(["v1", 75], "not a mapping", id="a-list"),
        pytest.param({"v1": None}, "numbers", id="null-weight"),
    ],
)
def test_parse_expect_errors(text: object, message: str) -> None:
    with pytest.raises(ManifestError, match=message):
        parse_expect(text)


def _vs(http: list[dict[str, Any]], gateways: list[str] | None = None) -> Doc:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": "r", "namespace": "echo"},
        "spec": {"hosts": ["echo-service"], "gateways": gateways or ["mesh"], "http": http},
    }


def _dest(subset: str, weight: int | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {"destination": {"host": "echo-service", "subset": subset}}
    if weight is not None:
        entry["weight"] = weight
    return entry


DR: Doc = {
    "apiVersion": "networking.istio.io/v1",
    "kind": "DestinationRule",
    "metadata": {"name": "d", "namespace": "echo"},
    "spec": {
        "host": MESH_HOST,
        "subsets": [
            {"name": "one", "labels": {"version": "v1"}},
            {"name": "two", "labels": {"version": "v2"}},
        ],
    },
}

TWO_ROUTES = [
    {"match": [{"uri": {"exact": "/echo/v2"}}], "route": [_dest("two")]},
    {"match": [{"uri": {"regex": "/echo/[0-9]+"}}], "route": [_dest("one", 1), _dest("two", 1)]},
    {"match": [{"uri": {"prefix": "/echo"}}], "route": [_dest("one", 3), _dest("two", 1)]},
]


@pytest.mark.parametrize(
    ("http", "path", "gateway", "expected"),
    [
        pytest.param(TWO_ROUTES, "/echo/v2", "mesh", {"v2": 100.0}, id="exact-first"),
        pytest.param(TWO_ROUTES, "/echo/42", "mesh", {"v1": 50.0, "v2": 50.0}, id="regex"),
        pytest.param(TWO_ROUTES, "/echoes", "mesh", {"v1": 75.0, "v2": 25.0}, id="prefix-is-textual"),
        pytest.param(TWO_ROUTES, "/", "mesh", {}, id="no-route-is-404"),
        pytest.param(TWO_ROUTES, "/echo", "echo-gateway", None, id="not-bound-to-that-gateway"),
        pytest.param(
            [{"route": [_dest("one", 0), _dest("two", 5)]}], "/", "mesh", {"v2": 100.0}, id="zero-weight"
        ),
    ],
)
def test_istio_weights(
    http: list[dict[str, Any]], path: str, gateway: str, expected: dict[str, float] | None
) -> None:
    assert istio_weights(Index([_vs(http), DR]), MESH_HOST, path, "echo", gateway) == expected


@pytest.mark.parametrize(
    ("path", "ingress", "expected"),
    [
        pytest.param("/echo", False, {"v1": 75.0, "v2": 25.0}, id="gamma-split"),
        pytest.param("/echo/x", False, {"v1": 75.0, "v2": 25.0}, id="gamma-prefix-element"),
        pytest.param("/echoes", False, None, id="gamma-prefix-is-by-element"),
        pytest.param("/", False, None, id="gamma-serves-echo-only"),
        pytest.param("/echo", True, {"v1": 75.0, "v2": 25.0}, id="ingress-split"),
        pytest.param("/", True, None, id="ingress-no-route"),
    ],
)
def test_gateway_api_weights(
    path: str, ingress: bool, expected: dict[str, float] | None, docs_of: Callable[[str], list[Doc]]
) -> None:
    host = "echo.local" if ingress else MESH_HOST
    index = Index(docs_of("overlays/gateway-api"))
    assert gateway_api_weights(index, host, path, "echo", ingress) == expected


@pytest.mark.parametrize(
    ("step", "flagged"),
    [
        pytest.param(
            {"probe": {"url": "http://echo-service/echo", "expect": "v1=75,v2=25"}}, False, id="short-url"
        ),
        pytest.param(
            {"probe": {"url": "http://echo-service/echo", "expect": "v1=3,v2=1"}}, False, id="relative-expect"
        ),
        pytest.param(
            {"probe": {"url": "http://echo-service/echo", "expect": "v1=80,v2=20"}}, True, id="wrong-split"
        ),
        pytest.param(
            {"probe": {"url": "http://echo-service/echo", "expect": "v1=100"}}, True, id="missing-version"
        ),
        pytest.param(
            {"probe": {"url": "http://echo-service/other", "expect": "v1=75,v2=25"}}, True, id="no-route"
        ),
        pytest.param(
            {
                "probe": {
                    "url": "http://gw.invalid/echo",
                    "headers": {"Host": "echo.local:80"},
                    "expect": {"v1": 75, "v2": 25},
                }
            },
            False,
            id="through-gateway",
        ),
        pytest.param(
            {
                "probe": {
                    "url": "http://gw.invalid/echo",
                    "headers": {"host": "echo.local"},
                    "expect": {"v1": 50, "v2": 50},
                }
            },
            True,
            id="through-gateway-wrong",
        ),
        pytest.param(
            {"probe": {"url": "http://unknown.invalid/echo", "expect": "v1=1"}},
            False,
            id="unknown-host-ignored",
        ),
        pytest.param({"probe": {"url": "http://echo-service/echo"}}, False, id="no-expectation"),
        pytest.param({"probe": {"url": "http://echo-service/echo", "expect": "v1"}}, True, id="bad-expect"),
        pytest.param(
            {"http": {"url": "http://echo-service/", "expect": {"status": 404, "local_reply": True}}},
            False,
            id="404-no-route",
        ),
        pytest.param(
            {"http": {"url": "http://echo-service/echo", "expect": {"status": 404, "local_reply": True}}},
            True,
            id="404-but-routed",
        ),
        pytest.param({"dns": {"name": "echo-service"}}, False, id="other-step"),
    ],
)
def test_plan_step_expectations(
    step: dict[str, Any], flagged: bool, docs_of: Callable[[str], list[Doc]]
) -> None:
    plan = {"steps": [{"name": "s", **step}]}
    findings = check_plan_expectations(docs_of("overlays/istio"), plan, "echo")
    assert bool(findings) is flagged, [str(f) for f in findings]
    assert all(f.kind == "Plan" and f.field.startswith("steps[0].") for f in findings)


def test_plan_vars_are_substituted(docs_of: Callable[[str], list[Doc]]) -> None:
    plan = {
        "vars": {"svc": "http://echo-service.echo.svc.cluster.local"},
        "steps": [{"probe": {"url": "${svc}/echo", "expect": "v1=50,v2=50"}}],
    }
    (finding,) = check_plan_expectations(docs_of("overlays/istio"), plan, "echo")
    assert f"routes for {MESH_HOST}/echo give v1=75,v2=25" in finding.message


@pytest.mark.parametrize(
    ("finding", "text"),
    [
        pytest.param(
            Finding("Service", "s", "spec.ports[0]", "bad", "IST0118", "echo"),
            "Service echo/s spec.ports[0]: bad [IST0118]",
            id="namespaced",
        ),
        pytest.param(
            Finding("Namespace", "echo", "metadata.labels", "both", "IST0123"),
            "Namespace echo metadata.labels: both [IST0123]",
            id="cluster-scoped",
        ),
        pytest.param(Finding("Plan", "p", "steps[0]", "off", ""), "Plan p steps[0]: off", id="no-code"),
    ],
)
def test_finding_text(finding: Finding, text: str) -> None:
    assert str(finding) == text


GW: Doc = {"apiVersion": "networking.istio.io/v1", "kind": "Gateway", "metadata": {"name": "gw"}, "spec": {}}
PLAN_STEP = "steps: [{probe: {url: 'http://gw.invalid/echo', headers: {host: echo.local}, expect: 'v1=1'}}]"


@pytest.mark.parametrize(
    "spec",
    [
        pytest.param(None, id="null-spec"),
        pytest.param({"hosts": ["echo.local"], "gateways": ["gw"], "http": "not-a-list"}, id="wrong-shape"),
        pytest.param(
            {"hosts": ["echo.local"], "gateways": ["gw"], "http": [{"match": [{"uri": {"regex": "("}}]}]},
            id="bad-regex",
        ),
    ],
)
def test_malformed_fields_are_reported_not_raised(spec: Any) -> None:
    vs: Doc = {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "metadata": {"name": "v"}}
    vs["spec"] = spec
    plan: Doc = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "p"},
        "data": {"plan.yaml": PLAN_STEP},
    }
    findings = check_cross_references([GW, vs, plan])
    assert any(f.kind == "Manifests" and "wrong shape" in f.message for f in findings), [
        str(f) for f in findings
    ]
