"""`netdebug mesh up` on the ambient stage (k8s/overlays/ambient), end to end on real Envoy: the
ztunnel stand-in, the waypoint, the gateway, real echo processes and the real prober.

- through the waypoint, the HTTPRoute's 75/25 split passes and every answer is classed `waypoint`;
- with the waypoint removed from a copy of the overlay, ztunnel balances connections over both pods
  (one per version: ~50/50), the 75/25 check fails and the report says the route was not applied;
- the echo's `mesh.hop` names the path in both cases; it sees what docs/ambient.md says a workload
  sees behind a waypoint (x-request-id, x-forwarded-proto, no XFF, no XFCC, no decorator, no
  attempt count, the waypoint's address) and nothing at all behind ztunnel alone;
- the shipped ambient plan (k8s/components/netdebug-ambient) passes against it, with its addresses
  given as variables, and fails its mesh split step without the waypoint;
- the gateway reaches the ambient pods directly (waypoint skipped) unless the namespace has
  istio.io/ingress-use-waypoint, and a waypoint annotated ambient.istio.io/xfcc-include-client-identity
  hands the source workload's identity to the app.

Split tolerances are those of test_mesh_up.py (±10 points, alpha 1e-7: a false verdict < 1e-6).
Without a waypoint the prober opens a new connection per request (`--new-connection`), as the
tutorial's advice for callers without a sidecar says: ztunnel picks a pod per connection.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from netdebug.k8s.load import render_kustomize
from netdebug.mesh.translate.ambient import CALLER_ADDRESS, GATEWAY_ADDRESS
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
from tests.procs import REPO, tool, wait_until

pytestmark = [pytest.mark.envoy, pytest.mark.slow]

GATEWAY_IDENTITY = "spiffe://cluster.local/ns/echo/sa/echo-gateway-istio"
WAYPOINT_IDENTITY = "spiffe://cluster.local/ns/echo/sa/echo-waypoint"


def _require_ambient() -> None:
    _require_tools()
    if not (OVERLAYS / "ambient").is_dir():
        pytest.skip("k8s/overlays/ambient not in this checkout")


def _service(mesh: Mesh, host: str = FQDN) -> dict[str, Any]:
    return next(s for s in mesh.state["ambient"]["services"] if s["host"] == host)


def _in_mesh_get(mesh: Mesh, path: str, **headers: str) -> httpx.Response:
    """A request as an ambient pod sends it: to the Service's ClusterIP, captured by ztunnel."""
    url = _service(mesh)["url"]
    return httpx.get(f"{url}{path}", headers={"host": FQDN, **headers}, timeout=15)


def _in_mesh_split(mesh: Mesh, *extra: str) -> tuple[int, dict[str, Any]]:
    port = _service(mesh)["local_port"]
    return split_probe(
        f"http://{FQDN}/echo", "v1=75,v2=25", 1000, "--connect-to", f"{FQDN}:80:127.0.0.1:{port}", *extra
    )


PLAN = REPO / "k8s" / "components" / "netdebug-ambient" / "plan-ambient.yaml"


def _ambient_plan(mesh: Mesh, *variables: str) -> dict[str, Any]:
    """The shipped ambient plan against the local mesh: the cluster names become local addresses
    (the Host headers stay the plan's), the rate is raised to keep the run short."""
    clusterip = _service(mesh)["url"]
    address = clusterip.removeprefix("http://")
    args = [
        *("--var", f"svc={clusterip}", "--var", f"gateway={mesh.gateway}", "--var", "dns_name=localhost"),
        *("--var", f"mesh_address={address}", "--var", "rps=300", "--var", "tolerance=10"),
        *(arg for variable in variables for arg in ("--var", variable)),
        *("--output", "json", "--wait-sidecar", "no", "--quit-sidecar", "no"),
    ]
    done = subprocess.run(
        [sys.executable, "-m", "netdebug", "plan", str(PLAN), *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    try:
        result: dict[str, Any] = json.loads(done.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"plan exit {done.returncode}, no JSON:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return result


@pytest.fixture(scope="module")
def ambient_mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    _require_ambient()
    with mesh_up(OVERLAYS / "ambient", tmp_path_factory.mktemp("ambient")) as mesh:
        yield mesh


# --------------------------------------------------------------------------------------------
# The ambient stage as shipped: waypoint in use


def test_state_names_ztunnel_the_waypoint_and_the_ambient_caller(ambient_mesh: Mesh) -> None:
    state = ambient_mesh.state
    roles = sorted(c["role"] for c in state["children"])
    assert roles == ["echo", "echo", "gateway", "waypoint", "ztunnel"]
    assert state["client_sidecar"] is None  # the caller's namespace is ambient: no sidecar
    ambient = state["ambient"]
    assert ambient["client"]["identity"] == CALLER
    assert {s["host"]: s["waypoint"] for s in ambient["services"]} == {
        FQDN: "echo/echo-waypoint",
        "echo-v1.echo.svc.cluster.local": "echo/echo-waypoint",
        "echo-v2.echo.svc.cluster.local": "echo/echo-waypoint",
    }
    (waypoint,) = ambient["waypoints"]
    assert waypoint["identity"] == WAYPOINT_IDENTITY
    for pod in state["pods"]:
        assert pod["ambient"] is True
        assert pod["sidecar"] is False
        assert pod["ztunnel_url"].startswith("https://127.0.0.1:")


def test_through_the_waypoint_75_25_passes(ambient_mesh: Mesh) -> None:
    code, report = _in_mesh_split(ambient_mesh, "--require-path", "waypoint")
    assert report["verdict"] == "pass", report
    assert code == 0
    answered = sum(report["counts"].values())
    assert answered >= 1000
    assert report["fingerprints"] == {"waypoint": answered}
    assert not any("NOT ROUTED" in w for w in report["warnings"])


def test_a_connection_per_request_through_the_waypoint(ambient_mesh: Mesh) -> None:
    # `Connection: close` makes the waypoint close its inner connection right after the answer;
    # every answer must still arrive whole (a kube-proxy-style client opens one per request).
    code, report = _in_mesh_split(ambient_mesh, "--new-connection", "--require-path", "waypoint")
    assert report["errors"] == {}, report["error_details"]
    assert report["verdict"] == "pass", report
    assert code == 0


def test_what_the_echo_sees_behind_the_waypoint(ambient_mesh: Mesh) -> None:
    # A client's own XFCC and decorator do not survive: the waypoint sanitises XFCC and, as an
    # inbound listener, consumes the decorator without forwarding one.
    response = _in_mesh_get(
        ambient_mesh,
        "/echo",
        **{"x-forwarded-client-cert": "URI=spiffe://forged", "x-envoy-decorator-operation": "forged"},
    )
    assert response.status_code == 200
    assert response.headers["server"] == "istio-envoy"
    assert "x-envoy-upstream-service-time" in response.headers
    body = response.json()
    headers, mesh = body["headers"], body["mesh"]
    assert headers["x-forwarded-proto"] == "http"
    assert headers["x-request-id"]
    for absent in ("x-forwarded-for", "x-forwarded-client-cert", "x-envoy-decorator-operation"):
        assert absent not in headers
    assert "x-envoy-attempt-count" not in headers
    assert mesh["hop"] == "waypoint"
    assert mesh["dataplane"] == "ambient"
    assert mesh["sidecar"] is False
    assert body["ip"] == ambient_mesh.state["ambient"]["waypoints"][0]["address"]  # source = the waypoint


def test_the_shipped_ambient_plan_passes(ambient_mesh: Mesh) -> None:
    result = _ambient_plan(ambient_mesh)
    assert result["status"] == "pass", json.dumps(result["steps"], indent=1)[-3000:]
    assert [step["status"] for step in result["steps"]] == ["pass"] * 5


def test_other_paths_get_the_waypoints_404(ambient_mesh: Mesh) -> None:
    # echo-mesh serves /echo only: a route attached to a Service rejects what matches no rule, and
    # the waypoint answers 404 itself (a local reply: no upstream time).
    response = _in_mesh_get(ambient_mesh, "/other")
    assert response.status_code == 404
    assert response.headers["server"] == "istio-envoy"
    assert "x-envoy-upstream-service-time" not in response.headers


def test_connect_entry_carries_bytes_only(ambient_mesh: Mesh) -> None:
    client = ambient_mesh.state["ambient"]["client"]
    with socket.create_connection(("127.0.0.1", client["port"]), timeout=15) as sock:
        sock.sendall(b"CONNECT echo-service:80 HTTP/1.1\r\nHost: echo-service:80\r\n\r\n")
        head = _read_head(sock)
        assert head.startswith(b"HTTP/1.1 200"), head
        sock.sendall(f"GET /echo HTTP/1.1\r\nHost: {FQDN}\r\nConnection: close\r\n\r\n".encode())
        answer = _read_all(sock)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    assert json.loads(body)["mesh"]["hop"] == "waypoint"
    # `http_proxy=` sends an absolute-form request: refused, with how to call an L4 proxy.
    refused = httpx.Client(proxy=client["url"], timeout=15).get(f"http://{FQDN}/echo")
    assert refused.status_code == 400
    assert "CONNECT" in refused.text


def test_gateway_skips_the_waypoint(ambient_mesh: Mesh) -> None:
    code, report = split_probe(
        f"{ambient_mesh.gateway}/echo",
        "v1=75,v2=25",
        1000,
        "-H",
        "host: echo.local",
        "--require-path",
        "gateway",
    )
    assert report["verdict"] == "pass", report
    assert code == 0
    path = "/echo/gateway-peer"
    body = httpx.get(f"{ambient_mesh.gateway}{path}", headers={"host": "echo.local"}, timeout=15).json()
    assert body["mesh"]["hop"] == "gateway"
    assert body["mesh"]["forwarded_client_cert"] == []  # ztunnel terminated the gateway's mTLS
    assert body["mesh"]["decorator"]  # the gateway's route: no waypoint consumed it
    wait_until(lambda: bool(echo_log(ambient_mesh, path)), 30, "the echo's log line")
    assert echo_log(ambient_mesh, path)[0]["client"] == GATEWAY_ADDRESS  # source = the gateway


# --------------------------------------------------------------------------------------------
# The same stage without its waypoint: the route is not applied


def test_without_the_waypoint_the_route_is_not_applied(tmp_path: Path) -> None:
    _require_ambient()
    copy = tmp_path / "k8s"
    shutil.copytree(REPO / "k8s", copy)
    component = copy / "components" / "ambient" / "kustomization.yaml"
    text = component.read_text()
    assert "resources:\n  - waypoint.yaml\n" in text
    component.write_text(text.replace("resources:\n  - waypoint.yaml\n", ""))
    with mesh_up(copy / "overlays" / "ambient", tmp_path) as mesh:
        assert sorted(c["role"] for c in mesh.state["children"]) == ["echo", "echo", "gateway", "ztunnel"]
        assert {s["waypoint"] for s in mesh.state["ambient"]["services"]} == {None}

        response = _in_mesh_get(mesh, "/echo")
        assert "server" not in response.headers  # no Envoy answered: ztunnel is L4
        assert "x-envoy-upstream-service-time" not in response.headers
        body = response.json()
        assert body["mesh"]["hop"] == "ztunnel"
        assert body["mesh"]["hop_evidence"] == ["no Envoy header", "pod captured by ztunnel"]
        assert body["ip"] == CALLER_ADDRESS  # the caller's own pod address
        assert not any(h.startswith("x-envoy-") or h == "x-request-id" for h in body["headers"])

        code, report = _in_mesh_split(mesh, "--new-connection")
        assert report["verdict"] == "fail", report
        assert code == 1
        answered = sum(report["counts"].values())
        assert report["fingerprints"] == {"ztunnel": answered}
        # ztunnel balanced connections over both pods, one per version: about half each.
        assert 0.4 < report["counts"]["v1"] / answered < 0.6
        (warning,) = [w for w in report["warnings"] if "NOT ROUTED BY THE MESH" in w]
        assert "the route was not applied" in warning
        assert "istio.io/use-waypoint" in warning

        # The shipped plan catches it: its mesh split step requires the waypoint path.
        result = _ambient_plan(mesh, "requests=200")
        assert result["status"] == "fail"
        mesh_split = next(s for s in result["steps"] if s["name"].startswith("mesh split"))
        assert mesh_split["status"] == "fail"
        assert "ztunnel" in mesh_split["summary"]
        _, out, err = mesh.stop()
    assert "(ztunnel only: routes NOT applied)" in out
    # Warnings are wrapped at 100 columns: compare the words.
    assert "names waypoint echo/echo-waypoint, which is not in these manifests" in " ".join(err.split())


# --------------------------------------------------------------------------------------------
# Ingress through the waypoint, and the waypoint's XFCC annotation (Istio >= 1.30)


def test_ingress_through_an_annotated_waypoint(tmp_path: Path) -> None:
    _require_ambient()
    kubectl = tool("kubectl")
    assert kubectl is not None
    docs = [d for d in yaml.safe_load_all(render_kustomize(OVERLAYS / "ambient", kubectl)) if d]
    namespace = next(d for d in docs if d["kind"] == "Namespace")
    namespace["metadata"]["labels"]["istio.io/ingress-use-waypoint"] = "true"
    waypoint = next(d for d in docs if d["kind"] == "Gateway" and d["metadata"]["name"] == "echo-waypoint")
    waypoint["metadata"]["annotations"] = {"ambient.istio.io/xfcc-include-client-identity": "true"}
    (tmp_path / "all.yaml").write_text(yaml.safe_dump_all(docs, sort_keys=False))
    with mesh_up(tmp_path / "all.yaml", tmp_path) as mesh:
        assert mesh.state["ambient"]["waypoints"][0]["xfcc_client_identity"] is True
        # Ingress: the gateway splits, then goes through the waypoint, which names the gateway.
        via_gateway = httpx.get(f"{mesh.gateway}/echo", headers={"host": "echo.local"}, timeout=15).json()
        (xfcc,) = via_gateway["mesh"]["forwarded_client_cert"]
        assert (xfcc["by"], xfcc["uri"]) == (WAYPOINT_IDENTITY, GATEWAY_IDENTITY)
        assert via_gateway["mesh"]["hop"] == "waypoint"
        assert via_gateway["mesh"]["forwarded_for"]  # the gateway's XFF, passed on by the waypoint
        assert via_gateway["mesh"]["decorator"] is None  # consumed by the waypoint's inbound listener
        # In the mesh: the waypoint names the ambient caller.
        closing = httpx.get(
            f"{mesh.gateway}/echo", headers={"host": "echo.local", "connection": "close"}, timeout=15
        )
        assert closing.json()["mesh"]["hop"] == "waypoint"
        in_mesh = _in_mesh_get(mesh, "/echo", connection="close").json()
        assert in_mesh["mesh"]["client_identity"] == CALLER
        assert in_mesh["mesh"]["hop"] == "waypoint"

        code, report = split_probe(
            f"{mesh.gateway}/echo",
            "v1=75,v2=25",
            1000,
            "-H",
            "host: echo.local",
            "--require-path",
            "waypoint",
        )
        assert report["verdict"] == "pass", report
        assert code == 0


def _read_head(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def _read_all(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
        if len(data) > 1 << 20:
            break
    return data
