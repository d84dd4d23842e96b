"""`netdebug mesh up` behaves as today's Istio on real Envoy (issue 14): what the echo sees, measured.

Real processes: each mesh is a `netdebug mesh up` child on free loopback ports (tests/mesh/
test_mesh_up.py's helpers), from the repository's overlays rendered by kubectl and edited as data.
What is checked, and the Istio code each follows (tables in tests/mesh/test_translate_fidelity.py):
- a 503 from the app is answered after ONE attempt with the default retry policy (Istio ≥ 1.24,
  retry.go), after three with `--istio-version 1.23` (the echo logs each attempt);
- `withoutHeaders` matches a request that lacks the header (route.go TranslateRouteMatch);
- Gateway API ReplacePrefixMatch "/" strips the prefix: the echo sees "/foo", never "//foo";
- WebSocket sessions through the gateway and the client sidecar (listener_builder.go upgrade_configs);
- the app's peer address is 127.0.0.6 behind a sidecar (cluster_builder.go);
- pods without injection: the gateway reaches them in plain text, the split still passes at 75/25,
  and the prober classes the answers `gateway` (routed) without mTLS.
"""

from __future__ import annotations

import json
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets.sync.client
import yaml

from netdebug.k8s.load import render_kustomize
from tests.mesh.test_mesh_up import (
    CALLER,
    FQDN,
    OVERLAYS,
    Mesh,
    _require_tools,
    echo_log,
    mesh_up,
    split_probe,
)
from tests.procs import tool, wait_until

pytestmark = [pytest.mark.envoy, pytest.mark.slow]

GATEWAY_IDENTITY = "spiffe://cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account"


def _rendered(overlay: str) -> list[dict[str, Any]]:
    kubectl = tool("kubectl")
    assert kubectl is not None
    return [d for d in yaml.safe_load_all(render_kustomize(OVERLAYS / overlay, kubectl)) if d]


def _write(docs: list[dict[str, Any]], path: Path) -> Path:
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return path


def _find(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    return next(d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name)


def _gateway_get(mesh: Mesh, path: str, **headers: str) -> httpx.Response:
    return httpx.get(f"{mesh.gateway}{path}", headers={"host": "echo.local", **headers}, timeout=15)


def _sidecar_get(mesh: Mesh, path: str, **headers: str) -> httpx.Response:
    with httpx.Client(proxy=mesh.client, timeout=15) as client:
        return client.get(f"http://{FQDN}{path}", headers=headers)


# --------------------------------------------------------------------------------------------
# The default overlay (newest Istio behaviour), plus two routes for the withoutHeaders check:
# /nodebug without `x-debug: 1` goes to v2, everything else under /nodebug to v1.


@pytest.fixture(scope="module")
def fidelity_mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    _require_tools()
    tmp = tmp_path_factory.mktemp("fidelity")
    docs = _rendered("istio")
    vs = _find(docs, "VirtualService", "echo-route")

    def to(subset: str) -> list[dict[str, Any]]:
        return [{"destination": {"host": FQDN, "subset": subset, "port": {"number": 80}}}]

    vs["spec"]["http"][:0] = [
        {
            "name": "no-debug",
            "match": [{"uri": {"prefix": "/nodebug"}, "withoutHeaders": {"x-debug": {"exact": "1"}}}],
            "route": to("v2"),
        },
        {"name": "debug", "match": [{"uri": {"prefix": "/nodebug"}}], "route": to("v1")},
    ]
    with mesh_up(_write(docs, tmp / "all.yaml"), tmp) as mesh:
        yield mesh


@pytest.mark.parametrize("entry", ["gateway", "client-sidecar"])
def test_a_503_from_the_app_is_answered_after_one_attempt(fidelity_mesh: Mesh, entry: str) -> None:
    path = f"/echo/retry-{uuid.uuid4().hex}"
    get = _gateway_get if entry == "gateway" else _sidecar_get
    response = get(fidelity_mesh, path, **{"x-set-response-status-code": "503"})
    assert response.status_code == 503
    assert "x-envoy-upstream-service-time" in response.headers  # the app's 503, not Envoy's
    assert response.json()["mesh"]["attempt"] == 1
    wait_until(lambda: len(echo_log(fidelity_mesh, path)) >= 1, 30, "the echo's log line")
    # Any retry would have reached the echo (and been logged) before the answer came back.
    (record,) = echo_log(fidelity_mesh, path)
    assert record["status"] == 503
    assert record["headers"]["x-envoy-attempt-count"] == "1"


@pytest.mark.parametrize("entry", ["gateway", "client-sidecar"])
@pytest.mark.parametrize(
    ("headers", "version"),
    [
        pytest.param({}, "v2", id="header-missing-matches"),
        pytest.param({"x-debug": "0"}, "v2", id="other-value-matches"),
        pytest.param({"x-debug": "1"}, "v1", id="excluded-value-falls-through"),
    ],
)
def test_without_headers_matches_a_request_without_the_header(
    fidelity_mesh: Mesh, entry: str, headers: dict[str, str], version: str
) -> None:
    get = _gateway_get if entry == "gateway" else _sidecar_get
    response = get(fidelity_mesh, "/nodebug", **headers)
    assert response.status_code == 200, response.text
    assert response.headers["x-echo-version"] == version


def _websocket(port: int, host: str) -> tuple[dict[str, str], list[str | bytes]]:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    with websockets.sync.client.connect(f"ws://{host}/echo/ws", sock=sock, open_timeout=10) as ws:
        ws.send("hello through the mesh")
        text = ws.recv(timeout=10)
        ws.send(b"\x00\xffbinary")
        binary = ws.recv(timeout=10)
        assert ws.response is not None
        return dict(ws.response.headers), [text, binary]


@pytest.mark.parametrize(
    ("entry", "host", "server", "caller"),
    [
        pytest.param("gateway", "echo.local", "istio-envoy", GATEWAY_IDENTITY, id="gateway"),
        pytest.param("client_sidecar", FQDN, "envoy", CALLER, id="client-sidecar"),
    ],
)
def test_websocket_through_the_mesh(
    fidelity_mesh: Mesh, entry: str, host: str, server: str, caller: str
) -> None:
    headers, echoed = _websocket(fidelity_mesh.state[entry]["port"], host)
    assert echoed == ["hello through the mesh", b"\x00\xffbinary"]
    assert headers["server"] == server
    assert headers["x-echo-version"] in ("v1", "v2")
    mesh = json.loads(headers["x-echo-mesh"])
    # The upgrade went through the pod's sidecar over mTLS, from the entry's identity.
    assert mesh["sidecar"] is True
    assert mesh["client_identity"] == caller
    assert mesh["attempt"] == 1
    assert mesh["request_id"]


def test_the_app_sees_peer_127_0_0_6_behind_its_sidecar(fidelity_mesh: Mesh) -> None:
    body = _sidecar_get(fidelity_mesh, "/echo").json()
    assert body["ip"] == "127.0.0.6"  # no X-Forwarded-For from sidecars: the socket's peer
    path = f"/echo/peer-{uuid.uuid4().hex}"
    assert _gateway_get(fidelity_mesh, path).status_code == 200
    wait_until(lambda: len(echo_log(fidelity_mesh, path)) == 1, 30, "the echo's log line")
    assert echo_log(fidelity_mesh, path)[0]["client"] == "127.0.0.6"


# --------------------------------------------------------------------------------------------
# Istio 1.23's default policy retried 503: the same request reaches the echo three times.


def test_istio_1_23_retries_a_503_twice(tmp_path: Path) -> None:
    _require_tools()
    with mesh_up(OVERLAYS / "istio", tmp_path, "--istio-version", "1.23") as mesh:
        assert mesh.state["istio_version"] == "1.23"
        path = f"/echo/retry-{uuid.uuid4().hex}"
        response = _gateway_get(mesh, path, **{"x-set-response-status-code": "503"})
        assert response.status_code == 503
        assert response.json()["mesh"]["attempt"] == 3
        wait_until(lambda: len(echo_log(mesh, path)) >= 3, 30, "three log lines")
        attempts = [r["headers"]["x-envoy-attempt-count"] for r in echo_log(mesh, path)]
        assert sorted(attempts) == ["1", "2", "3"]


# --------------------------------------------------------------------------------------------
# Pods without injection (namespace not labelled): no server sidecars at all.


def test_gateway_to_pods_without_sidecars(tmp_path: Path) -> None:
    _require_tools()
    docs = _rendered("istio")
    namespace = _find(docs, "Namespace", "echo")
    namespace["metadata"]["labels"].pop("istio-injection")
    with mesh_up(_write(docs, tmp_path / "all.yaml"), tmp_path) as mesh:
        pods = mesh.state["pods"]
        assert [p["sidecar"] for p in pods] == [False, False]
        assert all("no istio-injection or istio.io/rev label" in p["injection"] for p in pods)
        assert len(mesh.state["pids"]) == 4  # two echo servers, the gateway, the client sidecar

        body = _gateway_get(mesh, "/echo").json()
        assert body["mesh"]["sidecar"] is False
        assert body["mesh"]["decorator"] == "echo-route:80/echo*"  # no inbound sidecar consumed it
        assert body["mesh"]["forwarded_client_cert"] == []
        through_sidecar = _sidecar_get(mesh, "/echo")
        assert through_sidecar.headers["server"] == "envoy"
        assert through_sidecar.json()["mesh"]["decorator"] == "echo-route:80/echo*"

        code, report = split_probe(
            f"{mesh.gateway}/echo", "v1=75,v2=25", 1000, "-H", "host: echo.local", "--require-path", "gateway"
        )
        assert report["verdict"] == "pass", report
        assert code == 0
        answered = sum(report["counts"].values())
        assert report["fingerprints"] == {"gateway": answered}
        assert report["mtls"]["answers"] == 0
        assert not any("NOT ROUTED" in w for w in report["warnings"])
        _, out, _ = mesh.stop()
    assert out.count("NO SIDECAR") == 2


# --------------------------------------------------------------------------------------------
# Gateway API URLRewrite, as the echo sees the path.


def test_gateway_api_rewrites_as_the_echo_sees_them(tmp_path: Path) -> None:
    _require_tools()
    docs = _rendered("gateway-api")
    parent = [{"name": "echo-gateway", "sectionName": "http"}]
    backend = [{"name": "echo-v1", "port": 80}]

    def rule(prefix: str, replacement: str) -> dict[str, Any]:
        return {
            "matches": [{"path": {"type": "PathPrefix", "value": prefix}}],
            "filters": [
                {
                    "type": "URLRewrite",
                    "urlRewrite": {"path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": replacement}},
                }
            ],
            "backendRefs": backend,
        }

    docs.append(
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "HTTPRoute",
            "metadata": {"name": "echo-rewrite", "namespace": "echo"},
            "spec": {
                "parentRefs": parent,
                "hostnames": ["echo.local"],
                "rules": [rule("/strip", "/"), rule("/swap/", "/echo/")],
            },
        }
    )
    with mesh_up(_write(docs, tmp_path / "all.yaml"), tmp_path) as mesh:
        for sent, seen in [
            ("/strip/foo", "/foo"),
            ("/strip", "/"),
            ("/strip/", "/"),
            ("/strip/a/b?q=1", "/a/b"),
            ("/swap/x", "/echo/x"),
        ]:
            response = _gateway_get(mesh, sent)
            assert response.status_code == 200, (sent, response.text)
            assert response.json()["path"] == seen, sent
