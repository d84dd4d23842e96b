"""Where the local mesh follows today's Istio: each table cites the Istio code it is checked against.

Sources read in istio/istio (master at 1.31.0-rc.0, newest release 1.30.3 unless a case says when a
behaviour changed): pilot/pkg/networking/core/route/route.go, route/retry/retry.go,
pilot/pkg/config/kube/gateway/conversion.go and route_collections.go (and their testdata goldens
mesh.yaml.golden @dca00d31, route-precedence.yaml.golden @55d91bce), listener_builder.go,
cluster_builder.go, pkg/config/validation, pkg/kube/inject/inject.go and the istio-discovery chart's
injection webhooks. No processes: bootstraps are inspected as data (real Envoy: test_mesh_up.py).
"""

from __future__ import annotations

import re
import textwrap
from typing import Any

import pytest

from netdebug.k8s.documents import ManifestError
from netdebug.k8s.inventory import Injection, sidecar_injection
from netdebug.mesh.translate.envoy import inbound_retry_policy, istio_default_retry_policy
from netdebug.mesh.translate.gateway_api import go_quote_meta
from netdebug.mesh.translate.model import MeshConfig, Role
from netdebug.mesh.translate.translator import translate
from netdebug.mesh.translate.versions import CHANGES, NEWEST, IstioVersion, parse_istio_version
from tests.mesh.fixtures import (
    BASE,
    DESTINATION_RULE,
    GATEWAY,
    SERVICE,
    SPLIT_75_25,
    clusters,
    deployment,
    endpoint_ports,
    inventory,
    mesh_config,
    placement,
    route_config,
    vhost,
    virtual_service,
)
from tests.mesh.test_translate import GATEWAY_API, _gateway_api_base
from tests.procs import REPO

FQDN = "echo-service.echo.svc.cluster.local"
V1 = f"outbound|80|v1|{FQDN}"
ROLES: tuple[tuple[Role, str], ...] = (("client-sidecar", FQDN), ("gateway", "echo.local"))


def _translate(*docs: str, istio: IstioVersion = NEWEST) -> MeshConfig:
    inv = inventory(*docs)
    return translate(inv, placement(inv), istio=istio)


def _one_route(http: str, role: Role = "client-sidecar", istio: IstioVersion = NEWEST) -> dict[str, Any]:
    config = _translate(BASE, virtual_service(http), istio=istio)
    (route,) = vhost(config, role, FQDN if role == "client-sidecar" else "echo.local")["routes"]
    return dict(route)


def _v1(extra: str = "", match: str = "") -> str:
    return f"- name: r\n{match}  route: [{{destination: {{host: {FQDN}, subset: v1}}}}]\n{extra}"


def _hcms(config: MeshConfig) -> dict[str, dict[str, Any]]:
    return {
        e.name: e.bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0][
            "typed_config"
        ]
        for e in config.envoys
    }


# --------------------------------------------------------------------------------------------
# 1. Default retries. retry.go defaultPolicy: retry_on keeps retriable-status-codes; the 503 entry
#    is added only when EXCLUDE_UNSAFE_503_FROM_DEFAULT_RETRY is false (its default since 1.24; the
#    compatibility-version-1.23 profile sets it false).


@pytest.mark.parametrize(
    ("version", "codes"),
    [
        pytest.param("1.22", [503], id="1.22-retries-503"),
        pytest.param("1.23", [503], id="1.23-retries-503"),
        pytest.param("1.24", None, id="1.24-no-status-codes"),
        pytest.param("1.30.3", None, id="1.30-no-status-codes"),
        pytest.param("latest", None, id="latest-no-status-codes"),
    ],
)
def test_default_retry_policy_by_version(version: str, codes: list[int] | None) -> None:
    istio = parse_istio_version(version)
    for role, _ in ROLES:
        policy = _one_route(SPLIT_75_25, role, istio)["route"]["retry_policy"]
        assert (
            policy["retry_on"]
            == "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes"
        )
        assert policy["num_retries"] == 2
        assert policy.get("retriable_status_codes") == codes, role
        assert policy["host_selection_retry_max_attempts"] == 5
        assert [p["name"] for p in policy["retry_host_predicate"]] == [
            "envoy.retry_host_predicates.previous_hosts"
        ]
    # The Services' default routes (no VirtualService) get the same policy.
    config = _translate(BASE, istio=istio)
    (default,) = vhost(config, "client-sidecar", FQDN)["routes"]
    assert default["route"]["retry_policy"] == istio_default_retry_policy(istio)


# retry.go ConvertPolicy starts from the default policy and overrides what the VirtualService sets;
# validation (pkg/config/validation validateHTTPRetry) rejects a policy with attempts 0 or unset.
@pytest.mark.parametrize(
    ("retries", "version", "expected"),
    [
        pytest.param("{attempts: 3}", "latest", {"num_retries": 3, "codes": None}, id="attempts-only-1.24+"),
        pytest.param("{attempts: 3}", "1.23", {"num_retries": 3, "codes": [503]}, id="attempts-only-1.23"),
        pytest.param(
            "{attempts: 4, retryOn: '5xx,503'}",
            "latest",
            {"num_retries": 4, "retry_on": "5xx,retriable-status-codes", "codes": [503]},
            id="status-code-adds-retriable-status-codes",
        ),
        pytest.param(
            "{attempts: 1, retryOn: gateway-error}",
            "1.23",
            {"retry_on": "gateway-error", "codes": None},
            id="retry-on-replaces-default-codes",
        ),
        pytest.param(
            "{attempts: 2, retryOn: 'retriable-status-codes,429'}",
            "latest",
            {"retry_on": "retriable-status-codes", "codes": [429]},
            id="explicit-retriable-status-codes",
        ),
        pytest.param(
            "{attempts: 2, perTryTimeout: 250ms}", "latest", {"per_try_timeout": "0.250s"}, id="per-try"
        ),
        pytest.param(
            "{attempts: 2, retryIgnorePreviousHosts: false}",
            "latest",
            {"retry_host_predicate": None},
            id="ignore-previous-hosts-off",
        ),
        pytest.param(
            "{attempts: 2, backoff: 1s}", "latest", {"retry_back_off": {"base_interval": "1s"}}, id="backoff"
        ),
        pytest.param("{attempts: 0}", "latest", None, id="attempts-0-disables"),
        pytest.param("{}", "latest", None, id="empty-block-disables"),
    ],
)
def test_virtual_service_retries(retries: str, version: str, expected: dict[str, Any] | None) -> None:
    route = _one_route(_v1(f"  retries: {retries}\n"), istio=parse_istio_version(version))
    policy = route["route"].get("retry_policy")
    if expected is None:
        assert policy is None
        return
    assert policy is not None
    for key, value in expected.items():
        if key == "codes":
            assert policy.get("retriable_status_codes") == value
        else:
            assert policy.get(key) == value, key


@pytest.mark.parametrize(
    ("retries", "pattern"),
    [
        pytest.param("{perTryTimeout: 2s}", r"retries\.attempts: missing: Istio rejects", id="no-attempts"),
        pytest.param(
            "{attempts: 0, retryOn: 5xx}", r"retries\.attempts: 0: Istio rejects", id="zero-with-retry-on"
        ),
        pytest.param("{attempts: -1}", r"non-negative integer", id="negative"),
        pytest.param(
            "{attempts: 2, retryOn: '5xx, 503'}", r"' 503' is not a valid retryOn policy", id="space"
        ),
        pytest.param(
            "{attempts: 2, retryOn: sometimes}", r"'sometimes' is not a valid retryOn", id="unknown"
        ),
        pytest.param("{attempts: 2, retryOn: '999'}", r"'999' is not a valid retryOn", id="not-a-status"),
    ],
)
def test_virtual_service_retries_rejected_as_istio_does(retries: str, pattern: str) -> None:
    with pytest.raises(ManifestError, match=pattern):
        _one_route(_v1(f"  retries: {retries}\n"))


# route.go BuildDefaultHTTPInboundRoute: `reset-before-request` ×2 when the proxy is ≥ 1.24 and
# ENABLE_INBOUND_RETRY_POLICY (default true since 1.24; a preview, off by default, in 1.23).
@pytest.mark.parametrize(
    ("version", "policy"),
    [
        pytest.param("1.23", None, id="1.23-none"),
        pytest.param("1.24", {"retry_on": "reset-before-request", "num_retries": 2}, id="1.24-reset-before"),
        pytest.param("latest", inbound_retry_policy(), id="latest"),
    ],
)
def test_inbound_route_retries_by_version(version: str, policy: dict[str, Any] | None) -> None:
    config = _translate(BASE, istio=parse_istio_version(version))
    for envoy in config.envoys:
        if envoy.role != "server-sidecar":
            continue
        hcm = _hcms(config)[envoy.name]
        (route,) = hcm["route_config"]["virtual_hosts"][0]["routes"]
        assert route["route"].get("retry_policy") == policy


# --------------------------------------------------------------------------------------------
# 2. Header matches. route.go TranslateRouteMatch: withoutHeaders → invert_match plus
#    treat_missing_header_as_empty (so a request without the header matches), except where
#    canBeConvertedToPresentMatch ({} or regex "*") makes it present_match; headers sorted by name.


@pytest.mark.parametrize(
    ("match", "expected"),
    [
        pytest.param(
            "withoutHeaders: {x-debug: {exact: '1'}}",
            {
                "name": "x-debug",
                "string_match": {"exact": "1"},
                "invert_match": True,
                "treat_missing_header_as_empty": True,
            },
            id="without-exact-matches-missing",
        ),
        pytest.param(
            "withoutHeaders: {x-debug: {}}",
            {"name": "x-debug", "present_match": True, "invert_match": True},
            id="without-empty-is-absent",
        ),
        pytest.param(
            "withoutHeaders: {x-debug: {regex: '*'}}",
            {"name": "x-debug", "present_match": True, "invert_match": True},
            id="without-star-is-absent",
        ),
        pytest.param(
            "withoutHeaders: {x-debug: {prefix: a}}",
            {
                "name": "x-debug",
                "string_match": {"prefix": "a"},
                "invert_match": True,
                "treat_missing_header_as_empty": True,
            },
            id="without-prefix",
        ),
        pytest.param(
            "headers: {x-debug: {}}", {"name": "x-debug", "present_match": True}, id="headers-empty-present"
        ),
        pytest.param(
            "headers: {x-debug: {regex: '*'}}", {"name": "x-debug", "present_match": True}, id="star-present"
        ),
        pytest.param(
            "headers: {x-debug: {regex: 'a.*'}}",
            {"name": "x-debug", "string_match": {"safe_regex": {"regex": "a.*"}}},
            id="real-regex",
        ),
        pytest.param(
            "scheme: {exact: http}", {"name": ":scheme", "string_match": {"exact": "http"}}, id="scheme"
        ),
    ],
)
def test_header_match_translation(match: str, expected: dict[str, Any]) -> None:
    route = _one_route(_v1(match=f"  match:\n  - {match}\n"))
    assert route["match"]["headers"] == [expected]


def test_header_matches_sorted_by_name_then_pseudo_headers() -> None:
    match = (
        "  match:\n  - {method: {exact: GET}, headers: {b: {exact: '1'}}, withoutHeaders: {a: {prefix: x}}}\n"
    )
    names = [h["name"] for h in _one_route(_v1(match=match))["match"]["headers"]]
    assert names == ["a", "b", ":method"]


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        pytest.param("{q: {}}", {"name": "q", "present_match": True}, id="empty-present"),
        pytest.param("{q: {regex: '*'}}", {"name": "q", "present_match": True}, id="star-present"),
        pytest.param("{q: {exact: '1'}}", {"name": "q", "string_match": {"exact": "1"}}, id="exact"),
    ],
)
def test_query_param_match_translation(params: str, expected: dict[str, Any]) -> None:
    route = _one_route(_v1(match=f"  match:\n  - queryParams: {params}\n"))
    assert route["match"]["query_parameters"] == [expected]


# --------------------------------------------------------------------------------------------
# 9a. Header operations that set the authority. route.go TranslateHeadersOperations: a request
#     set/add of `host`/`:authority` becomes host_rewrite_literal (set wins over add; a rewrite's
#     authority wins over both); internal headers never reach request_headers_to_add.


@pytest.mark.parametrize(
    ("extra", "authority", "added"),
    [
        pytest.param("  headers: {request: {set: {host: a.local}}}\n", "a.local", [], id="set-host"),
        pytest.param(
            "  headers: {request: {add: {':authority': b.local}}}\n", "b.local", [], id="add-authority"
        ),
        pytest.param(
            "  headers: {request: {set: {Host: s.local, x-a: '1'}, add: {host: a.local}}}\n",
            "s.local",
            ["x-a"],
            id="set-wins-over-add",
        ),
        pytest.param(
            "  headers: {request: {set: {host: h.local}}}\n  rewrite: {authority: r.local}\n",
            "r.local",
            [],
            id="rewrite-wins",
        ),
    ],
)
def test_authority_header_operations(extra: str, authority: str, added: list[str]) -> None:
    route = _one_route(_v1(extra))
    assert route["route"]["host_rewrite_literal"] == authority
    assert [h["header"]["key"] for h in route.get("request_headers_to_add", [])] == added


@pytest.mark.parametrize(
    ("headers", "pattern"),
    [
        pytest.param(
            "{request: {set: {':path': /x}}}",
            r'headers\.request\.set\.:path: invalid header ":path"',
            id="pseudo",
        ),
        pytest.param(
            "{request: {remove: [host]}}", r'request\.remove\[0\]: invalid header "host"', id="remove-host"
        ),
        pytest.param(
            "{response: {set: {host: x}}}", r'response\.set\.host: invalid header "host"', id="response-host"
        ),
    ],
)
def test_header_operations_rejected_as_istio_does(headers: str, pattern: str) -> None:
    with pytest.raises(ManifestError, match=pattern):
        _one_route(_v1(f"  headers: {headers}\n"))


def test_gateway_api_host_header_modifier_rewrites_authority() -> None:
    filters = "[{type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: Host, value: in.local}]}}]"
    route = _gamma(
        f"- {{matches: [{{path: {{type: PathPrefix, value: /}}}}], filters: {filters}, {BACKEND}}}\n"
    )[0]
    assert route["route"]["host_rewrite_literal"] == "in.local"
    assert "request_headers_to_add" not in route


# --------------------------------------------------------------------------------------------
# 3. URLRewrite. conversion.go createRewriteFilter trims a trailing "/" from ReplacePrefixMatch ("" →
#    "/"); route.go applyHTTPRouteDestination turns "/" (remove the prefix) into the regex rewrite
#    ^<QuoteMeta(prefix)>(/?)(.*) → /\2; ReplaceFullPath is the regex "/.*".


def _rewrite_route(
    path_filter: str, match: str = "{path: {type: PathPrefix, value: /echo}}"
) -> dict[str, Any]:
    doc = textwrap.dedent(
        f"""\
        apiVersion: gateway.networking.k8s.io/v1
        kind: Gateway
        metadata: {{name: echo-gateway, namespace: echo}}
        spec:
          gatewayClassName: istio
          listeners: [{{name: http, port: 80, protocol: HTTP, hostname: echo.local}}]
        ---
        apiVersion: gateway.networking.k8s.io/v1
        kind: HTTPRoute
        metadata: {{name: rw, namespace: echo}}
        spec:
          parentRefs: [{{name: echo-gateway}}]
          rules:
          - matches: [{match}]
            filters: [{{type: URLRewrite, urlRewrite: {{path: {path_filter}}}}}]
            backendRefs: [{{name: echo-service, port: 80}}]
        """
    )
    (route,) = vhost(mesh_config(_gateway_api_base(), doc), "gateway", "echo.local")["routes"]
    return dict(route["route"])


@pytest.mark.parametrize(
    ("path_filter", "match", "expected"),
    [
        pytest.param(
            "{type: ReplacePrefixMatch, replacePrefixMatch: /}",
            "{path: {type: PathPrefix, value: /echo}}",
            {"regex_rewrite": {"pattern": {"regex": "^/echo(/?)(.*)"}, "substitution": "/\\2"}},
            id="strip-prefix",
        ),
        pytest.param(
            "{type: ReplacePrefixMatch, replacePrefixMatch: /}",
            "{path: {type: PathPrefix, value: /echo/}}",
            {"regex_rewrite": {"pattern": {"regex": "^/echo(/?)(.*)"}, "substitution": "/\\2"}},
            id="strip-prefix-trailing-slash-in-match",
        ),
        pytest.param(
            "{type: ReplacePrefixMatch, replacePrefixMatch: /}",
            "{path: {type: PathPrefix, value: /a.b}}",
            {"regex_rewrite": {"pattern": {"regex": "^/a\\.b(/?)(.*)"}, "substitution": "/\\2"}},
            id="prefix-quoted",
        ),
        pytest.param(
            "{type: ReplacePrefixMatch, replacePrefixMatch: /v2/}",
            "{path: {type: PathPrefix, value: /echo}}",
            {"prefix_rewrite": "/v2"},
            id="replace-trims-slash",
        ),
        pytest.param(
            "{type: ReplaceFullPath, replaceFullPath: /new}",
            "{path: {type: PathPrefix, value: /echo}}",
            {"regex_rewrite": {"pattern": {"regex": "/.*"}, "substitution": "/new"}},
            id="full-path",
        ),
    ],
)
def test_gateway_api_url_rewrite(path_filter: str, match: str, expected: dict[str, Any]) -> None:
    route = _rewrite_route(path_filter, match)
    for key, value in expected.items():
        assert route[key] == value
    assert not ({"prefix_rewrite", "regex_rewrite"} - set(expected)) & set(route)


@pytest.mark.parametrize(
    ("path", "rewritten"),
    [
        pytest.param("/echo/foo", "/foo", id="segment"),
        pytest.param("/echo", "/", id="whole-prefix"),
        pytest.param("/echo/", "/", id="trailing-slash"),
        pytest.param("/echo/a/b", "/a/b", id="deeper"),
    ],
)
def test_strip_prefix_regex_never_doubles_the_slash(path: str, rewritten: str) -> None:
    rewrite = _rewrite_route("{type: ReplacePrefixMatch, replacePrefixMatch: /}")["regex_rewrite"]
    # RE2 and Python agree on this pattern; Envoy substitutes \2 as Python does.
    assert re.sub(rewrite["pattern"]["regex"], rewrite["substitution"], path) == rewritten


@pytest.mark.parametrize(
    ("text", "quoted"),
    [
        pytest.param("/a.b", "/a\\.b", id="dot"),
        pytest.param("/x-y_z~", "/x-y_z~", id="plain"),
        pytest.param("/(a)+", "/\\(a\\)\\+", id="meta"),
    ],
)
def test_go_quote_meta(text: str, quoted: str) -> None:
    assert go_quote_meta(text) == quoted


# --------------------------------------------------------------------------------------------
# 6. Gateway API precedence. conversion.go sortHTTPRoutes: getURIRank Exact(3) > Prefix(2) >
#    Regex(1), then the longer path (trimmed prefix), a method, more headers, more query params;
#    stable for the rest (oldest route, rule order). Cases follow route-precedence.yaml.golden.


def _gamma(rules: str) -> list[dict[str, Any]]:
    doc = (
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: p, namespace: echo}\n"
        "spec:\n  parentRefs: [{group: '', kind: Service, name: echo-service, port: 80}]\n  rules:\n"
        + textwrap.indent(textwrap.dedent(rules), "  ")
    )
    return list(vhost(mesh_config(_gateway_api_base(), doc), "client-sidecar", "echo-service")["routes"])


BACKEND = "backendRefs: [{name: echo-service, port: 80}]"


@pytest.mark.parametrize(
    ("rules", "order"),
    [
        pytest.param(
            f"""\
            - {{matches: [{{path: {{type: RegularExpression, value: '/foo((/).*)?'}}}}], {BACKEND}}}
            - {{matches: [{{path: {{type: PathPrefix, value: /foo}}}}], {BACKEND}}}
            - {{matches: [{{path: {{type: Exact, value: /baz}}}}], {BACKEND}}}
            """,
            [{"path": "/baz"}, {"path_separated_prefix": "/foo"}, {"safe_regex": {"regex": "/foo((/).*)?"}}],
            id="exact-prefix-regex",
        ),
        pytest.param(
            f"""\
            - {{matches: [{{path: {{type: RegularExpression, value: '/a/very/long/regex.*'}}}}], {BACKEND}}}
            - {{matches: [{{path: {{type: PathPrefix, value: /b}}}}], {BACKEND}}}
            """,
            [{"path_separated_prefix": "/b"}, {"safe_regex": {"regex": "/a/very/long/regex.*"}}],
            id="prefix-beats-longer-regex",
        ),
        pytest.param(
            f"""\
            - {{matches: [{{path: {{type: PathPrefix, value: /foo/}}}}], {BACKEND}}}
            - {{matches: [{{path: {{type: PathPrefix, value: /food}}}}], {BACKEND}}}
            """,
            [{"path_separated_prefix": "/food"}, {"path_separated_prefix": "/foo"}],
            id="trimmed-length",
        ),
        pytest.param(
            f"""\
            - {{matches: [{{path: {{type: PathPrefix, value: /}}}}], {BACKEND}}}
            - {{matches: [{{path: {{type: PathPrefix, value: /}}, method: PATCH}}], {BACKEND}}}
            - {{matches: [{{path: {{value: /}}, headers: [{{name: a, value: b}}]}}], {BACKEND}}}
            - {{matches: [{{path: {{value: /}}, queryParams: [{{name: q, value: v}}]}}], {BACKEND}}}
            """,
            [
                {"prefix": "/", "headers": [{"name": ":method", "string_match": {"exact": "PATCH"}}]},
                {"prefix": "/", "headers": [{"name": "a", "string_match": {"exact": "b"}}]},
                {"prefix": "/", "query_parameters": [{"name": "q", "string_match": {"exact": "v"}}]},
                {"prefix": "/"},
            ],
            id="method-headers-query",
        ),
    ],
)
def test_gateway_api_precedence(rules: str, order: list[dict[str, Any]]) -> None:
    assert [r["match"] for r in _gamma(rules)] == order


# --------------------------------------------------------------------------------------------
# 9b. Gateway API timeouts and retry (conversion.go convertHTTPRoute): backendRequest is the route
#     timeout unless the rule has a retry stanza, where it is the per-try timeout.


@pytest.mark.parametrize(
    ("fields", "timeout", "per_try"),
    [
        pytest.param("timeouts: {request: 10s}", "10s", None, id="request"),
        pytest.param("timeouts: {backendRequest: 2s}", "2s", None, id="backend-is-route-timeout"),
        pytest.param("timeouts: {request: 10s, backendRequest: 2s}", "2s", None, id="backend-wins"),
        pytest.param(
            "timeouts: {request: 10s, backendRequest: 2s}, retry: {attempts: 3}", "10s", "2s", id="with-retry"
        ),
        pytest.param("timeouts: {request: 0s}", "0s", None, id="zero-is-off"),
    ],
)
def test_gateway_api_timeouts(fields: str, timeout: str, per_try: str | None) -> None:
    (route, _) = _gamma(
        f"- {{matches: [{{path: {{type: PathPrefix, value: /t}}}}], {fields}, {BACKEND}}}\n"
        f"- {{matches: [{{path: {{type: PathPrefix, value: /}}}}], {BACKEND}}}\n"
    )
    assert route["route"]["timeout"] == timeout
    assert route["route"]["retry_policy"].get("per_try_timeout") == per_try


def test_gateway_api_retry_stanza() -> None:
    (route, _) = _gamma(
        f"- {{matches: [{{path: {{value: /t}}}}], retry: {{attempts: 4, codes: [503, 502]}}, {BACKEND}}}\n"
        f"- {{matches: [{{path: {{type: PathPrefix, value: /}}}}], retry: {{attempts: 0}}, {BACKEND}}}\n"
    )
    policy = route["route"]["retry_policy"]
    assert policy["num_retries"] == 4
    assert policy["retry_on"] == "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes"
    assert policy["retriable_status_codes"] == [503, 502]


# --------------------------------------------------------------------------------------------
# 9c. HTTPRoute names and decorators. conversion.go names a rule's routes <ns>.<route>.<rule index>;
#     route_collections.go mergeHTTPRoutes names the VirtualService by its merge key with "/" as
#     "~" (mesh.yaml.golden: `default~echo.default.svc…`, `default~80~echo-port.default.svc…`,
#     `istio-system~gateway~istio-autogenerated-k8s-gateway~default~foo.example.com`); route.go
#     GetRouteOperation names a split `<VirtualService>:<port>` + `/*` for a path_separated_prefix.


def test_http_route_names_and_decorators() -> None:
    config = mesh_config(_gateway_api_base(), GATEWAY_API)
    (ingress,) = vhost(config, "gateway", "echo.local")["routes"]
    assert ingress["name"] == "echo.echo-ingress.0"
    assert (
        ingress["decorator"]["operation"]
        == "echo~echo-gateway~istio-autogenerated-k8s-gateway~http~echo.local:80/*"
    )
    mesh = {
        r["name"]: r["decorator"]["operation"]
        for r in vhost(config, "client-sidecar", "echo-service")["routes"]
    }
    assert mesh["echo.echo-mesh.1"] == f"echo~80~{FQDN}:80/*"  # the split: the merged VirtualService
    assert mesh["echo.echo-mesh.0"] == f"{FQDN}:80/*"  # one backend: host:port
    assert mesh["echo.echo-mesh.2"] == "echo-v2.echo.svc.cluster.local:80/echo/exact"


# A GAMMA parentRef without a port applies to every port (route_collections.go adds a port match only
# for a parentRef with a port); the local mesh used to reject it on a multi-port Service.
def test_gamma_parent_without_port_on_a_multi_port_service() -> None:
    service = SERVICE.replace(
        "{name: https, port: 443, targetPort: 8443, appProtocol: https}",
        "{name: http-alt, port: 8080, targetPort: 8080}",
    )
    route = GATEWAY_API.replace(
        'parentRefs: [{group: "", kind: Service, name: echo-service, port: 80}]',
        'parentRefs: [{group: "", kind: Service, name: echo-service}]',
    )
    base = "---\n".join([deployment("v1", 2), deployment("v2", 1), service])
    config = mesh_config(base, route)
    routes = vhost(config, "client-sidecar", "echo-service")["routes"]
    split = next(r for r in routes if r["name"] == "echo.echo-mesh.1")
    assert split["decorator"]["operation"] == f"echo~{FQDN}:80/*"
    domains = vhost(config, "client-sidecar", "echo-service")["domains"]
    assert f"{FQDN}:8080" in domains


# --------------------------------------------------------------------------------------------
# 4. WebSocket (listener_builder.go buildHTTPConnectionManager: "Allow websocket upgrades", and
#    stream_idle_timeout 0) on every connection manager: gateway, client sidecar, server sidecars.
# 8. The app's peer address: the inbound cluster binds 127.0.0.6 (cluster_builder.go,
#    InboundPassthroughBindIpv4 "6 is the magical number for inbound").


def test_every_connection_manager_upgrades_websocket() -> None:
    config = _translate(BASE, virtual_service(SPLIT_75_25))
    hcms = _hcms(config)
    assert {e.role for e in config.envoys} == {"gateway", "client-sidecar", "server-sidecar"}
    for name, hcm in hcms.items():
        assert hcm["upgrade_configs"] == [{"upgrade_type": "websocket"}], name
        assert hcm["stream_idle_timeout"] == "0s", name


def test_inbound_cluster_binds_127_0_0_6() -> None:
    config = _translate(BASE)
    for envoy in config.envoys:
        if envoy.role == "server-sidecar":
            (local,) = envoy.bootstrap["static_resources"]["clusters"]
            assert local["upstream_bind_config"] == {
                "source_address": {"address": "127.0.0.6", "port_value": 0}
            }


# --------------------------------------------------------------------------------------------
# 7. Injection. The istio-discovery chart's webhooks (default revision) select pods by labels only;
#    inject.go injectRequired then reads sidecar.istio.io/inject from the label, else the annotation.


@pytest.mark.parametrize(
    ("ns_labels", "pod_labels", "annotations", "host_network", "sidecar", "reason"),
    [
        pytest.param(
            {"istio-injection": "enabled"}, {}, {}, False, True, "istio-injection: enabled", id="ns-enabled"
        ),
        pytest.param(
            {"istio-injection": "disabled"},
            {},
            {},
            False,
            False,
            "istio-injection: disabled",
            id="ns-disabled",
        ),
        pytest.param(
            {"istio.io/rev": "canary"}, {}, {}, False, True, "istio.io/rev: canary", id="ns-revision"
        ),
        pytest.param(
            {"istio-injection": "disabled", "istio.io/rev": "canary"},
            {},
            {},
            False,
            False,
            "disabled",
            id="injection-label-wins-over-revision",
        ),
        pytest.param({}, {}, {}, False, False, "no istio-injection or istio.io/rev", id="ns-unlabelled"),
        pytest.param(None, {}, {}, False, True, "not in the manifests", id="ns-not-in-manifests"),
        pytest.param(
            {"istio-injection": "enabled"},
            {"sidecar.istio.io/inject": "false"},
            {},
            False,
            False,
            "pod label",
            id="pod-label-false",
        ),
        pytest.param(
            {"istio-injection": "enabled"},
            {},
            {"sidecar.istio.io/inject": "false"},
            False,
            False,
            "pod annotation",
            id="pod-annotation-false",
        ),
        pytest.param(
            {"istio-injection": "enabled"},
            {"sidecar.istio.io/inject": "true"},
            {"sidecar.istio.io/inject": "false"},
            False,
            True,
            "enabled",
            id="label-wins-over-annotation",
        ),
        pytest.param(
            {}, {"sidecar.istio.io/inject": "true"}, {}, False, True, "pod label", id="pod-label-opt-in"
        ),
        pytest.param(
            {},
            {},
            {"sidecar.istio.io/inject": "true"},
            False,
            False,
            "no istio-injection",
            id="annotation-cannot-opt-in",  # the webhook's objectSelector sees labels only
        ),
        pytest.param({}, {"istio.io/rev": "default"}, {}, False, True, "istio.io/rev", id="pod-revision"),
        pytest.param(
            {"istio-injection": "enabled"},
            {},
            {"sidecar.istio.io/inject": "no"},
            False,
            True,
            "enabled",
            id="annotation-only-false-counts",
        ),
        pytest.param({"istio-injection": "enabled"}, {}, {}, True, False, "hostNetwork", id="host-network"),
    ],
)
def test_sidecar_injection(
    ns_labels: dict[str, str] | None,
    pod_labels: dict[str, str],
    annotations: dict[str, str],
    host_network: bool,
    sidecar: bool,
    reason: str,
) -> None:
    decision = sidecar_injection("echo", ns_labels, pod_labels, annotations, host_network)
    assert decision.sidecar is sidecar
    assert reason in decision.reason


def test_system_namespace_never_injected() -> None:
    assert sidecar_injection("kube-system", {"istio-injection": "enabled"}, {}, {}) == Injection(
        False, "namespace kube-system is never injected"
    )


NAMESPACE = "apiVersion: v1\nkind: Namespace\nmetadata: {name: echo, labels: {istio-injection: enabled}}\n"


def test_pods_without_sidecar_are_reached_directly_in_plain_text() -> None:
    v2_no_sidecar = deployment("v2", 1).replace(
        "metadata: {labels: {app: echo, version: v2}}",
        "metadata: {labels: {app: echo, version: v2, sidecar.istio.io/inject: 'false'}}",
    )
    docs = "---\n".join([NAMESPACE, deployment("v1", 2), v2_no_sidecar, SERVICE, DESTINATION_RULE, GATEWAY])
    everything = f"- match: [{{uri: {{prefix: /all}}}}]\n  route: [{{destination: {{host: {FQDN}}}}}]\n"
    inv = inventory(docs, virtual_service(SPLIT_75_25 + everything))
    where = placement(inv)
    config = translate(inv, where)
    injected = {p.name for p in inv.pods if p.injection.sidecar}
    bare = [p for p in inv.pods if not p.injection.sidecar]
    assert len(injected) == 2
    assert [p.version for p in bare] == ["v2"]
    assert {e.pod for e in config.envoys if e.role == "server-sidecar"} == injected
    for role in ("gateway", "client-sidecar"):
        found = clusters(config, role)
        v2 = found[f"outbound|80|v2|{FQDN}"]
        (endpoint,) = v2["load_assignment"]["endpoints"][0]["lb_endpoints"]
        # The echo's own port on 127.0.0.1, no tlsMode: the raw-buffer transport (auto mTLS off).
        assert endpoint_ports(v2) == [where.pods[bare[0].name].echo_port]
        assert "metadata" not in endpoint
        assert (
            v2["transport_socket_matches"][-1]["transport_socket"]["name"]
            == "envoy.transport_sockets.raw_buffer"
        )
        # Mixed Service: SAN checks name only the pods that present a certificate.
        everyone = found[f"outbound|80||{FQDN}"]
        tls = everyone["transport_socket_matches"][0]["transport_socket"]["typed_config"]
        sans = [
            m["matcher"]["exact"]
            for m in tls["common_tls_context"]["validation_context"]["match_typed_subject_alt_names"]
        ]
        assert sans == ["spiffe://cluster.local/ns/echo/sa/echo-v1"]
        tagged = [e for e in everyone["load_assignment"]["endpoints"][0]["lb_endpoints"] if "metadata" in e]
        assert len(tagged) == 2


def test_unlabelled_namespace_has_no_sidecars() -> None:
    bare_ns = NAMESPACE.replace(", labels: {istio-injection: enabled}", "")
    inv = inventory(bare_ns, BASE)
    assert [p.injection.sidecar for p in inv.pods] == [False, False, False]
    config = translate(inv, placement(inv))
    assert [e.role for e in config.envoys if e.role == "server-sidecar"] == []


# --------------------------------------------------------------------------------------------
# The version setting


@pytest.mark.parametrize(
    ("text", "version"),
    [
        pytest.param("1.23", IstioVersion(1, 23), id="minor"),
        pytest.param("1.24.3", IstioVersion(1, 24), id="patch"),
        pytest.param("v1.25.0-rc.1", IstioVersion(1, 25), id="v-and-rc"),
        pytest.param("latest", NEWEST, id="latest"),
        pytest.param(" Newest ", NEWEST, id="newest-any-case"),
        pytest.param("1.99", IstioVersion(1, 99), id="future-behaves-newest"),
    ],
)
def test_parse_istio_version(text: str, version: IstioVersion) -> None:
    assert parse_istio_version(text) == version


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("1.21", "Istio 1.21 is not emulated (oldest: 1.22", id="too-old"),
        pytest.param("one", "not an Istio version: 'one'", id="word"),
        pytest.param("1", "not an Istio version", id="major-only"),
        pytest.param("", "not an Istio version", id="empty"),
    ],
)
def test_parse_istio_version_rejects(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_istio_version(text)


def test_future_version_behaves_like_the_newest() -> None:
    future = parse_istio_version("1.99")
    assert future.excludes_503_from_default_retries
    assert future.inbound_retry_policy
    assert route_config(_translate(BASE, istio=future), "client-sidecar") == route_config(
        _translate(BASE), "client-sidecar"
    )


def test_mesh_up_docs_list_every_version_change() -> None:
    docs = (REPO / "docs" / "mesh-up.md").read_text()
    section = docs.split("### Istio versions", 1)[1].split("\n### ", 1)[0]
    rows = [line for line in section.splitlines() if re.match(r"\| \d+\.\d+ \|", line)]
    assert len(rows) == len(CHANGES)
    for change, row in zip(CHANGES, rows, strict=True):
        assert f"| {change.since} |" in row
        assert f"`{change.flag}`" in row
        assert change.source.split(" ")[0].removeprefix("pilot/pkg/networking/core/") in row
    assert f"`latest` (= {NEWEST}" in docs


def test_pod_template_annotation_opts_out() -> None:
    annotated = deployment("v2", 1).replace(
        "metadata: {labels: {app: echo, version: v2}}",
        "metadata: {labels: {app: echo, version: v2}, annotations: {sidecar.istio.io/inject: 'false'}}",
    )
    inv = inventory(NAMESPACE, deployment("v1", 1), annotated, SERVICE)
    assert {p.version: p.injection for p in inv.pods} == {
        "v1": Injection(True, "namespace echo has istio-injection: enabled"),
        "v2": Injection(False, "pod annotation sidecar.istio.io/inject: false"),
    }
