"""The manifest → Envoy translator, table-driven, no processes."""

from __future__ import annotations

import re
import textwrap
from typing import Any

import pytest

from netdebug.k8s.documents import ManifestError
from netdebug.k8s.hosts import host_matches
from netdebug.mesh.translate.envoy import envoy_duration, istio_default_retry_policy, route_operation
from netdebug.mesh.translate.fields import parse_duration
from netdebug.mesh.translate.model import Role
from netdebug.mesh.translate.versions import NEWEST
from tests.mesh.fixtures import (
    BASE,
    GATEWAY_API_INGRESS,
    SPLIT_75_25,
    clusters,
    deployment,
    endpoint_ports,
    inventory,
    mesh_config,
    mtls_socket,
    placement,
    route_config,
    vhost,
    virtual_service,
)

V1 = "outbound|80|v1|echo-service.echo.svc.cluster.local"
V2 = "outbound|80|v2|echo-service.echo.svc.cluster.local"
ALL = "outbound|80||echo-service.echo.svc.cluster.local"
FQDN = "echo-service.echo.svc.cluster.local"


def _dest(subset: str | None = "v1", weight: int | None = None, port: bool = True) -> str:
    parts = [f"host: {FQDN}"]
    if subset:
        parts.append(f"subset: {subset}")
    if port:
        parts.append("port: {number: 80}")
    line = "  - destination: {" + ", ".join(parts) + "}\n"
    if weight is not None:
        line += f"    weight: {weight}\n"
    return line


def _http(match: str, *dests: str, extra: str = "") -> str:
    out = "- name: r\n"
    if match:
        out += "  match:\n" + textwrap.indent(textwrap.dedent(match), "  ")
    out += "  route:\n" + "".join(dests) + extra
    return out


# --------------------------------------------------------------------------------------------
# Routes: matches, weights, order


@pytest.mark.parametrize(
    ("http", "expected_match", "expected_action"),
    [
        pytest.param(
            SPLIT_75_25,
            {"prefix": "/echo"},
            {"weighted_clusters": {"clusters": [{"name": V1, "weight": 75}, {"name": V2, "weight": 25}]}},
            id="weights-75-25",
        ),
        pytest.param(
            _http("- uri: {prefix: /echo}\n", _dest("v1", 3), _dest("v2", 1)),
            {"prefix": "/echo"},
            {"weighted_clusters": {"clusters": [{"name": V1, "weight": 3}, {"name": V2, "weight": 1}]}},
            id="relative-weights-3-1",
        ),
        pytest.param(
            _http("- uri: {exact: /echo}\n", _dest("v2")),
            {"path": "/echo"},
            {"cluster": V2},
            id="exact-single-destination",
        ),
        pytest.param(
            _http("- uri: {regex: '/echo/[0-9]+'}\n", _dest("v1", 100), _dest("v2", 0)),
            {"safe_regex": {"regex": "/echo/[0-9]+"}},
            {"cluster": V1},
            id="regex-zero-weight-dropped",
        ),
        pytest.param(
            _http("", _dest(None, port=False)),
            {"prefix": "/"},
            {"cluster": ALL},
            id="no-match-no-subset-all-pods",
        ),
        pytest.param(
            _http("- uri: {prefix: /Echo}\n  ignoreUriCase: true\n", _dest("v1")),
            {"prefix": "/Echo", "case_sensitive": False},
            {"cluster": V1},
            id="ignore-uri-case",
        ),
        pytest.param(
            _http(
                """\
                - uri: {prefix: /echo}
                  headers:
                    x-canary: {exact: "yes"}
                    user-agent: {prefix: curl}
                    x-id: {regex: "[a-f]+"}
                  withoutHeaders:
                    x-debug: {exact: "1"}
                  method: {exact: POST}
                  queryParams:
                    v: {exact: "2"}
                """,
                _dest("v2"),
            ),
            {
                "prefix": "/echo",
                # Sorted by name as Istio sorts them; the pseudo-header matches follow.
                "headers": [
                    {"name": "user-agent", "string_match": {"prefix": "curl"}},
                    {"name": "x-canary", "string_match": {"exact": "yes"}},
                    {
                        "name": "x-debug",
                        "string_match": {"exact": "1"},
                        "invert_match": True,
                        "treat_missing_header_as_empty": True,
                    },
                    {"name": "x-id", "string_match": {"safe_regex": {"regex": "[a-f]+"}}},
                    {"name": ":method", "string_match": {"exact": "POST"}},
                ],
                "query_parameters": [{"name": "v", "string_match": {"exact": "2"}}],
            },
            {"cluster": V2},
            id="header-method-query-matches",
        ),
    ],
)
def test_route_translation(
    http: str, expected_match: dict[str, Any], expected_action: dict[str, Any]
) -> None:
    config = mesh_config(BASE, virtual_service(http))
    entry_points: tuple[tuple[Role, str], ...] = (("client-sidecar", FQDN), ("gateway", "echo.local"))
    for role, domain in entry_points:
        (route,) = vhost(config, role, domain)["routes"]
        assert route["match"] == expected_match, role
        action = {k: v for k, v in route["route"].items() if k in ("cluster", "weighted_clusters")}
        assert action == expected_action, role
        # Istio's defaults on every route it generates.
        assert route["route"]["timeout"] == "0s"
        assert route["route"]["retry_policy"] == istio_default_retry_policy(NEWEST)


def test_multiple_routes_keep_order_and_multiple_matches_expand() -> None:
    http = (
        _http("- headers: {x-canary: {exact: 'yes'}}\n- uri: {prefix: /v2}\n", _dest("v2"))
        + _http("- uri: {prefix: /echo}\n", _dest("v1", 75), _dest("v2", 25))
        + _http("", _dest("v1"))
    )
    config = mesh_config(BASE, virtual_service(http))
    routes = vhost(config, "client-sidecar", FQDN)["routes"]
    assert [r["match"] for r in routes] == [
        {"prefix": "/", "headers": [{"name": "x-canary", "string_match": {"exact": "yes"}}]},
        {"prefix": "/v2"},
        {"prefix": "/echo"},
        {"prefix": "/"},
    ]
    assert [r["route"].get("cluster") for r in routes] == [V2, V2, None, V1]


def test_subsets_select_pods_by_label() -> None:
    http = _http("- uri: {prefix: /a}\n", _dest("v1")) + _http("- uri: {prefix: /b}\n", _dest("v2"))
    http += _http("", _dest(None))
    inv = inventory(BASE, virtual_service(http))
    where = placement(inv)
    from netdebug.mesh.translate.translator import translate

    config = translate(inv, where)
    found = clusters(config, "client-sidecar")
    sidecar = {pod.name: where.pods[pod.name].sidecar_port for pod in inv.pods}
    v1 = sorted(p for name, p in sidecar.items() if name.startswith("echo-v1-"))
    v2 = sorted(p for name, p in sidecar.items() if name.startswith("echo-v2-"))
    assert len(v1) == 2
    assert len(v2) == 1
    assert endpoint_ports(found[V1]) == v1
    assert endpoint_ports(found[V2]) == v2
    assert endpoint_ports(found[ALL]) == sorted(v1 + v2)
    # Upstream mTLS verifies the destination's SPIFFE ids and presents the caller's own certificate.
    tls = mtls_socket(found[V1])["typed_config"]
    sans = tls["common_tls_context"]["validation_context"]["match_typed_subject_alt_names"]
    assert [s["matcher"]["exact"] for s in sans] == ["spiffe://cluster.local/ns/echo/sa/echo-v1"]
    assert tls["sni"] == "outbound_.80_.v1_.echo-service.echo.svc.cluster.local"
    cert = tls["common_tls_context"]["tls_certificates"][0]["certificate_chain"]["filename"]
    assert cert == "/certs/echo.netdebug.crt"
    gateway_tls = mtls_socket(clusters(config, "gateway")[V1])["typed_config"]["common_tls_context"]
    gateway_cert = gateway_tls["tls_certificates"][0]["certificate_chain"]["filename"]
    assert gateway_cert == "/certs/istio-system.istio-ingressgateway-service-account.crt"


def test_subset_label_selecting_no_pod_warns_and_has_no_endpoints() -> None:
    rule = textwrap.dedent(
        """\
        apiVersion: networking.istio.io/v1
        kind: DestinationRule
        metadata: {name: echo-service, namespace: echo}
        spec:
          host: echo-service.echo.svc.cluster.local
          subsets:
          - {name: v1, labels: {version: v1}}
          - {name: v2, labels: {version: v2}}
          - {name: v3, labels: {version: v3}}
        """
    )
    base = "---\n".join([deployment("v1", 1), deployment("v2", 1), BASE.split("---\n")[2], rule])
    config = mesh_config(base, virtual_service(_http("", _dest("v3")), gateways="[mesh]"))
    assert clusters(config, "client-sidecar")["outbound|80|v3|" + FQDN]["load_assignment"]["endpoints"] == []
    assert any("subset 'v3' selects no pod" in w and "IST0173" in w for w in config.warnings)


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        pytest.param("  timeout: 2.5s\n", {"timeout": "2.500s"}, id="timeout"),
        pytest.param(
            "  retries: {attempts: 5, perTryTimeout: 500ms, retryOn: 'gateway-error,503'}\n",
            {
                "retry_policy": {
                    **istio_default_retry_policy(NEWEST),
                    "num_retries": 5,
                    "per_try_timeout": "0.500s",
                    "retry_on": "gateway-error,retriable-status-codes",
                    "retriable_status_codes": [503],
                }
            },
            id="retries",
        ),
        pytest.param("  retries: {attempts: 0}\n", {"retry_policy": None}, id="retries-off"),
    ],
)
def test_timeouts_and_retries(extra: str, expected: dict[str, Any]) -> None:
    config = mesh_config(BASE, virtual_service(_http("", _dest("v1"), extra=extra)))
    (route,) = vhost(config, "client-sidecar", FQDN)["routes"]
    for key, value in expected.items():
        assert route["route"].get(key) == value


def test_decorators_follow_istio() -> None:
    http = SPLIT_75_25 + _http("- uri: {exact: /one}\n", _dest("v1"))
    config = mesh_config(BASE, virtual_service(http))
    ops = [r["decorator"]["operation"] for r in vhost(config, "client-sidecar", FQDN)["routes"]]
    assert ops == ["echo-route:80/echo*", f"{FQDN}:80/one"]


def test_route_operation_regex() -> None:
    route = {"match": {"safe_regex": {"regex": "/x.*"}}, "route": {"weighted_clusters": {}}}
    assert route_operation(route, "vs", 8080) == "vs:8080/x.*"


def test_match_gateways_restrict_where_a_route_applies() -> None:
    http = _http("- uri: {prefix: /only-gw}\n  gateways: [echo-gateway]\n", _dest("v2")) + _http(
        "", _dest("v1")
    )
    config = mesh_config(BASE, virtual_service(http))
    assert [r["match"] for r in vhost(config, "gateway", "echo.local")["routes"]] == [
        {"prefix": "/only-gw"},
        {"prefix": "/"},
    ]
    assert [r["match"] for r in vhost(config, "client-sidecar", FQDN)["routes"]] == [{"prefix": "/"}]


def test_rewrite_redirect_direct_response_and_headers() -> None:
    http = textwrap.dedent(
        f"""\
        - match: [{{uri: {{prefix: /old}}}}]
          redirect: {{uri: /new, redirectCode: 302}}
        - match: [{{uri: {{prefix: /teapot}}}}]
          directResponse: {{status: 418, body: {{string: short and stout}}}}
        - match: [{{uri: {{prefix: /api}}}}]
          rewrite: {{uri: /echo, authority: inner.local}}
          headers:
            request: {{set: {{x-a: "1"}}, remove: [x-b]}}
            response: {{add: {{x-c: "2"}}}}
          route: [{{destination: {{host: {FQDN}, subset: v1}}}}]
        """
    )
    config = mesh_config(BASE, virtual_service(http))
    redirect, direct, rewritten = vhost(config, "client-sidecar", FQDN)["routes"]
    assert redirect["redirect"] == {"path_redirect": "/new", "response_code": "FOUND"}
    assert direct["direct_response"] == {"status": 418, "body": {"inline_string": "short and stout"}}
    assert rewritten["route"]["prefix_rewrite"] == "/echo"
    assert rewritten["route"]["host_rewrite_literal"] == "inner.local"
    assert rewritten["request_headers_to_add"] == [
        {"header": {"key": "x-a", "value": "1"}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}
    ]
    assert rewritten["request_headers_to_remove"] == ["x-b"]
    assert rewritten["response_headers_to_add"][0]["header"] == {"key": "x-c", "value": "2"}


# --------------------------------------------------------------------------------------------
# The three kinds of Envoy


def test_client_sidecar_names_and_identity() -> None:
    config = mesh_config(BASE, virtual_service(SPLIT_75_25))
    domains = vhost(config, "client-sidecar", FQDN)["domains"]
    for name in (
        "echo-service",
        "echo-service.echo",
        "echo-service.echo.svc",
        FQDN,
        f"{FQDN}:80",
        "echo-service:80",
    ):
        assert name in domains
    hcm = config.envoy("client-sidecar").bootstrap["static_resources"]["listeners"][0]  # type: ignore[union-attr]
    typed = hcm["filter_chains"][0]["filters"][0]["typed_config"]
    assert typed["server_name"] == "envoy"
    assert typed["strip_any_host_port"] is True
    assert typed["generate_request_id"] is True
    assert config.client_identity.spiffe == "spiffe://cluster.local/ns/echo/sa/netdebug"
    for vh in route_config(config, "client-sidecar")["virtual_hosts"]:
        assert vh["include_request_attempt_count"] is True


def test_client_sidecar_default_route_for_services_without_rules() -> None:
    config = mesh_config(BASE)
    (route,) = vhost(config, "client-sidecar", "echo-service")["routes"]
    assert route["route"]["cluster"] == ALL
    assert route["decorator"]["operation"] == f"{FQDN}:80/*"
    assert config.envoy("gateway") is not None  # the Gateway exists even with no route bound to it
    assert route_config(config, "gateway")["virtual_hosts"] == []


def test_gateway_serves_gateway_hosts_only() -> None:
    config = mesh_config(BASE, virtual_service(SPLIT_75_25))
    gateway = route_config(config, "gateway")["virtual_hosts"]
    assert [vh["domains"] for vh in gateway] == [["echo.local"]]
    envoy = config.envoy("gateway")
    assert envoy is not None
    typed = envoy.bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0][
        "typed_config"
    ]
    assert typed["server_name"] == "istio-envoy"
    assert typed["use_remote_address"] is True
    assert (
        envoy.identity.spiffe
        == "spiffe://cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account"
    )
    assert config.gateway_hosts == ("echo.local",)


def test_server_sidecar_terminates_mtls_and_forwards_xfcc() -> None:
    inv = inventory(BASE)
    where = placement(inv)
    from netdebug.mesh.translate.translator import translate

    config = translate(inv, where)
    sidecars = [e for e in config.envoys if e.role == "server-sidecar"]
    assert sorted(e.pod or "" for e in sidecars) == sorted(p.name for p in inv.pods)
    sidecar = sidecars[0]
    pod = next(p for p in inv.pods if p.name == sidecar.pod)
    listener = sidecar.bootstrap["static_resources"]["listeners"][0]
    assert listener["address"]["socket_address"]["port_value"] == where.pods[pod.name].sidecar_port
    chain = listener["filter_chains"][0]
    tls = chain["transport_socket"]["typed_config"]
    assert tls["require_client_certificate"] is True
    assert tls["common_tls_context"]["validation_context"]["trusted_ca"]["filename"] == "/certs/ca.crt"
    assert tls["common_tls_context"]["tls_certificates"][0]["certificate_chain"]["filename"] == (
        f"/certs/echo.{pod.service_account}.crt"
    )
    hcm = chain["filters"][0]["typed_config"]
    assert hcm["server_name"] == "istio-envoy"
    assert hcm["forward_client_cert_details"] == "APPEND_FORWARD"
    assert hcm["set_current_client_cert_details"] == {"subject": True, "dns": True, "uri": True}
    (local,) = sidecar.bootstrap["static_resources"]["clusters"]
    assert endpoint_ports(local) == [where.pods[pod.name].echo_port]
    assert sidecar.identity.spiffe == f"spiffe://cluster.local/ns/echo/sa/{pod.service_account}"


# --------------------------------------------------------------------------------------------
# Gateway API

GATEWAY_API = (
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
      - backendRefs: [{name: echo-service, port: 80}]
      - matches: [{path: {type: PathPrefix, value: /echo}}]
        backendRefs: [{name: echo-v1, port: 80, weight: 75}, {name: echo-v2, port: 80, weight: 25}]
      - matches: [{path: {type: Exact, value: /echo/exact}, headers: [{name: x-v, value: "2"}]}]
        backendRefs: [{name: echo-v2, port: 80}]
      - matches: [{path: {type: PathPrefix, value: /empty}}]
    """
    )
)
API_V1 = "outbound|80||echo-v1.echo.svc.cluster.local"
API_V2 = "outbound|80||echo-v2.echo.svc.cluster.local"


def _gateway_api_base() -> str:
    return "---\n".join([deployment("v1", 2), deployment("v2", 1), BASE.split("---\n")[2]])


def test_gateway_api_ingress_split() -> None:
    config = mesh_config(_gateway_api_base(), GATEWAY_API)
    (route,) = vhost(config, "gateway", "echo.local")["routes"]
    # Gateway API prefixes match whole segments: /echo and /echo/x, not /echoes.
    assert route["match"] == {"path_separated_prefix": "/echo"}
    assert route["route"]["weighted_clusters"]["clusters"] == [
        {"name": API_V1, "weight": 75},
        {"name": API_V2, "weight": 25},
    ]
    assert endpoint_ports(clusters(config, "gateway")[API_V1]) != endpoint_ports(
        clusters(config, "gateway")[API_V2]
    )
    envoy = config.envoy("gateway")
    assert envoy is not None
    assert envoy.identity.spiffe == "spiffe://cluster.local/ns/echo/sa/echo-gateway-istio"


def test_gamma_routes_sorted_by_precedence() -> None:
    config = mesh_config(_gateway_api_base(), GATEWAY_API)
    routes = vhost(config, "client-sidecar", "echo-service")["routes"]
    assert [r["match"] for r in routes] == [
        {"path": "/echo/exact", "headers": [{"name": "x-v", "string_match": {"exact": "2"}}]},
        {"path_separated_prefix": "/empty"},
        {"path_separated_prefix": "/echo"},
        {"prefix": "/"},
    ]
    assert routes[1]["direct_response"] == {"status": 500}  # a rule without backends
    assert routes[3]["route"]["cluster"] == ALL
    # The per-version Services keep their default routes.
    (default,) = vhost(config, "client-sidecar", "echo-v1.echo.svc.cluster.local")["routes"]
    assert default["route"]["cluster"] == API_V1


# --------------------------------------------------------------------------------------------
# Errors name the file, the document, the kind/name and the field


def _missing(field: str) -> str:
    return re.escape(field)


@pytest.mark.parametrize(
    ("docs", "pattern"),
    [
        pytest.param(
            [BASE, virtual_service(_http("", _dest("v1", 50), _dest("v3", 50)))],
            r"test\.yaml \(document 6\): VirtualService echo/echo-route: "
            r"spec\.http\[0\]\.route\[1\]\.destination\.subset:"
            r" subset 'v3' is not defined in .*DestinationRule echo/echo-service",
            id="missing-subset",
        ),
        pytest.param(
            [BASE, virtual_service("- route: [{destination: {host: other.echo.svc.cluster.local}}]\n")],
            r"VirtualService echo/echo-route: spec\.http\[0\]\.route\[0\]\.destination\.host: "
            r"'other.echo.svc.cluster.local'"
            r" is not a Service",
            id="host-not-a-service",
        ),
        pytest.param(
            [BASE, virtual_service(SPLIT_75_25, gateways="[missing-gateway]")],
            r"spec\.gateways\[0\]: Gateway echo/missing-gateway does not exist .*IST0101",
            id="missing-gateway",
        ),
        pytest.param(
            [BASE, virtual_service(SPLIT_75_25, hosts="['*']")],
            r"spec\.hosts: '\*' together with the mesh gateway .*IST0106",
            id="wildcard-with-mesh",
        ),
        pytest.param(
            [BASE, virtual_service(_http("", _dest("v1", 0), _dest("v2", 0)))],
            r"spec\.http\[0\]\.route: every destination has weight 0",
            id="all-weights-zero",
        ),
        pytest.param(
            [BASE, virtual_service(_http("- uri: {regex: '(unclosed'}\n", _dest("v1")))],
            r"spec\.http\[0\]\.match\[0\]\.uri: invalid regular expression",
            id="bad-regex",
        ),
        pytest.param(
            [BASE, virtual_service(_http("", _dest("v1"), extra="  timeout: soon\n"))],
            r"spec\.http\[0\]\.timeout: not a duration: 'soon'",
            id="bad-duration",
        ),
        pytest.param(
            [BASE, virtual_service(f"- route: [{{destination: {{host: {FQDN}, port: {{number: 443}}}}}}]\n")],
            r"destination\.port: port 443 of echo-service\.echo\.svc\.cluster\.local is not an HTTP port",
            id="tls-port",
        ),
        pytest.param(
            [
                BASE.replace(
                    "{name: https, port: 443, targetPort: 8443, appProtocol: https}",
                    "{name: http-alt, port: 81}",
                ),
                virtual_service(f"- route: [{{destination: {{host: {FQDN}}}}}]\n"),
            ],
            r"destination\.port: required: Service .* has several ports",
            id="ambiguous-port",
        ),
        pytest.param(
            [
                BASE,
                virtual_service(SPLIT_75_25),
                virtual_service(SPLIT_75_25).replace("name: echo-route", "name: echo-route-2"),
            ],
            r"VirtualService echo/echo-route-2: host .* is also routed by "
            r".*VirtualService echo/echo-route.*IST0109",
            id="conflicting-virtual-services",
        ),
        pytest.param(
            [BASE, "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec: {replicas: [1]}\n"],
            r"test\.yaml \(document 6\): Deployment default/x: spec\.replicas: expected an integer",
            id="bad-replicas",
        ),
        pytest.param(
            [BASE, "kind: Service\nmetadata: {name: a}\n"],
            r"test\.yaml \(document 6\): not a Kubernetes object \(no apiVersion/kind\)",
            id="no-api-version",
        ),
        pytest.param(
            ["apiVersion: v1\nkind: Service\nmetadata: {name: a\n"],
            r"test\.yaml: line \d+ column \d+: malformed YAML",
            id="malformed-yaml",
        ),
        pytest.param(
            [
                _gateway_api_base(),
                GATEWAY_API.replace("name: echo-v2, port: 80, weight: 25", "name: nope, port: 80"),
            ],
            r"HTTPRoute echo/echo-ingress: spec\.rules\[0\]\.backendRefs\[1\]\.name: "
            r"Service echo/nope does not exist",
            id="httproute-missing-backend",
        ),
        pytest.param(
            [_gateway_api_base(), GATEWAY_API.replace("sectionName: http", "sectionName: https")],
            r"spec\.parentRefs\[0\]\.sectionName: Gateway echo/echo-gateway has no listener 'https'",
            id="httproute-missing-listener",
        ),
    ],
)
def test_errors_name_where(docs: list[str], pattern: str) -> None:
    with pytest.raises(ManifestError, match=pattern):
        mesh_config(*docs)


def test_target_port_must_be_the_echo_http_port() -> None:
    bad = BASE.replace("targetPort: 8080", "targetPort: 9090")
    with pytest.raises(
        ManifestError, match=r"Service echo/echo-service: spec\.ports\[0\]\.targetPort: port 80 targets"
    ):
        mesh_config(bad, virtual_service(SPLIT_75_25))


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        pytest.param(
            "  fault: {abort: {httpStatus: 503, percentage: {value: 10}}}\n", "spec.http[0].fault", id="fault"
        ),
        pytest.param("  mirror: {host: x}\n", "spec.http[0].mirror", id="mirror"),
        pytest.param("  corsPolicy: {allowOrigins: []}\n", "spec.http[0].corsPolicy", id="cors"),
    ],
)
def test_unsupported_fields_warn(extra: str, field: str) -> None:
    config = mesh_config(BASE, virtual_service(_http("", _dest("v1"), extra=extra)))
    assert any(f"VirtualService echo/echo-route: {field}: not emulated" in w for w in config.warnings), (
        config.warnings
    )


def test_unsupported_match_field_warns() -> None:
    config = mesh_config(BASE, virtual_service(_http("- sourceLabels: {app: x}\n", _dest("v1"))))
    assert any("spec.http[0].match[0].sourceLabels: not emulated" in w for w in config.warnings)


# --------------------------------------------------------------------------------------------
# Helpers


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        pytest.param("5s", 5.0, id="seconds"),
        pytest.param("250ms", 0.25, id="millis"),
        pytest.param("1m30s", 90.0, id="compound"),
        pytest.param("1.5h", 5400.0, id="fraction-hours"),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "text", [pytest.param("", id="empty"), pytest.param("5", id="no-unit"), pytest.param("5x", id="unit")]
)
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [pytest.param(5.0, "5s", id="whole"), pytest.param(0.25, "0.250s", id="fraction")],
)
def test_envoy_duration(seconds: float, text: str) -> None:
    assert envoy_duration(seconds) == text


@pytest.mark.parametrize(
    ("pattern", "host", "expected"),
    [
        pytest.param("*", "echo.local", True, id="star"),
        pytest.param("echo.local", "echo.local", True, id="exact"),
        pytest.param("*.local", "echo.local", True, id="suffix"),
        pytest.param("*.local", "echo.example", False, id="other-suffix"),
        pytest.param("echo.local", "other.local", False, id="other"),
    ],
)
def test_host_matches(pattern: str, host: str, expected: bool) -> None:
    assert host_matches(pattern, host) is expected
