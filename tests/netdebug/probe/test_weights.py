from __future__ import annotations

import pytest

from netdebug.k8s.hosts import caller_host_matches as host_matches
from netdebug.probe.weights import parse_weights, weights_from_mapping, weights_from_routes


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("v1=75,v2=25", {"v1": 75.0, "v2": 25.0}, id="basic"),
        pytest.param("v1=3, v2=1", {"v1": 3.0, "v2": 1.0}, id="relative-with-space"),
        pytest.param("v1:90 v2:10", {"v1": 90.0, "v2": 10.0}, id="colon-space"),
        pytest.param("v1=100", {"v1": 100.0}, id="single"),
        pytest.param("v1=75%,v2=25%", {"v1": 75.0, "v2": 25.0}, id="percent-signs"),
        pytest.param("v1=1,v2=0", {"v1": 1.0, "v2": 0.0}, id="zero-weight"),
        pytest.param("echo-v1.x=0.5,b=0.5", {"echo-v1.x": 0.5, "b": 0.5}, id="dotted-names"),
    ],
)
def test_parse_weights_ok(text: str, expected: dict[str, float]) -> None:
    assert parse_weights(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("", "empty", id="empty"),
        pytest.param("v1", "NAME=WEIGHT", id="no-separator"),
        pytest.param("v1=abc", "not a number", id="not-number"),
        pytest.param("v1=-5,v2=5", ">= 0", id="negative"),
        pytest.param("v1=inf", "finite", id="infinite"),
        pytest.param("v1=1,v1=2", "twice", id="duplicate"),
        pytest.param("=5", "bad version name", id="no-name"),
        pytest.param("v1=0,v2=0", "all be zero", id="all-zero"),
    ],
)
def test_parse_weights_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_weights(text)


def test_weights_from_mapping() -> None:
    assert weights_from_mapping({"v1": 75, "v2": "25"}) == {"v1": 75.0, "v2": 25.0}
    with pytest.raises(ValueError, match="not a number"):
        weights_from_mapping({"v1": True})
    with pytest.raises(ValueError, match="zero"):
        weights_from_mapping({})


@pytest.mark.parametrize(
    ("host", "pattern", "matches"),
    [
        pytest.param("echo-service", "echo-service", True, id="exact"),
        pytest.param("echo-service.echo.svc.cluster.local", "echo-service", True, id="short-pattern"),
        pytest.param("echo-service", "echo-service.echo.svc.cluster.local", True, id="short-host"),
        pytest.param("echo.local", "*.local", True, id="wildcard"),
        pytest.param("echo.local", "*", True, id="star"),
        pytest.param("other", "echo-service", False, id="other"),
        pytest.param("echo-service2", "echo-service", False, id="prefix-not-label"),
    ],
)
def test_host_matches(host: str, pattern: str, matches: bool) -> None:
    assert host_matches(host, pattern) is matches


VS = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: echo-route, namespace: echo}
spec:
  hosts: [echo-service, echo.local]
  gateways: [mesh, echo-gateway]
  http:
  - match: [{uri: {exact: /echo/v2-only}}]
    route: [{destination: {host: echo-service, subset: v2}}]
  - match: [{uri: {prefix: /echo}}]
    route:
    - {destination: {host: echo-service, subset: v1}, weight: 75}
    - {destination: {host: echo-service, subset: v2}, weight: 25}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: echo}
spec: {host: echo-service}
"""

HTTPROUTE = """
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: echo-mesh}
spec:
  parentRefs: [{group: "", kind: Service, name: echo-service, port: 80}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /echo}}]
    backendRefs:
    - {name: echo-v1, port: 80, weight: 90}
    - {name: echo-v2, port: 80, weight: 10}
  - backendRefs: [{name: echo-v1, port: 80}]
"""


@pytest.mark.parametrize(
    ("text", "url", "host", "expected"),
    [
        pytest.param(VS, "http://echo-service/echo", None, {"v1": 75.0, "v2": 25.0}, id="vs-prefix"),
        pytest.param(
            VS,
            "http://echo-service.echo.svc.cluster.local/echo/x",
            None,
            {"v1": 75.0, "v2": 25.0},
            id="vs-fqdn",
        ),
        pytest.param(VS, "http://echo-service/echo/v2-only", None, {"v2": 100.0}, id="vs-exact-first"),
        pytest.param(
            VS, "http://127.0.0.1:8080/echo", "echo.local", {"v1": 75.0, "v2": 25.0}, id="vs-host-header"
        ),
        pytest.param(HTTPROUTE, "http://echo-service/echo", None, {"v1": 90.0, "v2": 10.0}, id="httproute"),
        pytest.param(
            HTTPROUTE, "http://echo-service/echoes", None, {"v1": 1.0}, id="httproute-element-prefix"
        ),
    ],
)
def test_weights_from_routes(text: str, url: str, host: str | None, expected: dict[str, float]) -> None:
    assert weights_from_routes(text, url, host) == expected


@pytest.mark.parametrize(
    ("text", "url", "message"),
    [
        pytest.param(VS, "http://other/echo", "no weighted route matches host 'other'", id="no-host"),
        pytest.param(VS, "http://echo-service/", "path '/'", id="no-path"),
        pytest.param("kind: Service\n", "http://x/", "no VirtualService or HTTPRoute", id="wrong-kind"),
        pytest.param("a: [", "http://x/", "not valid YAML", id="bad-yaml"),
    ],
)
def test_weights_from_routes_errors(text: str, url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        weights_from_routes(text, url)
