"""The plan's http step against a real echo-server on loopback: its latency is the request's (the
connection is opened and timed apart), comparable to the prober's; proxies apply as for the prober."""

from __future__ import annotations

import io
import json
import statistics
from collections.abc import Iterator
from pathlib import Path

import pytest

from netdebug.cli import main_impl
from tests.netdebug.proxy_support import http_proxy
from tests.procs import free_port, http_ok, running, tool

STEPS = 9


@pytest.fixture(scope="module")
def echo_url() -> Iterator[str]:
    echo = tool("echo-server")
    if echo is None:
        pytest.skip("echo-server console script not installed")
    port = free_port()
    env = {
        "HTTP_PORT": str(port),
        "HTTPS_PORT": "off",
        "ECHO_BIND": "127.0.0.1",
        "SERVICE_VERSION": "v1",
        "DISABLE_REQUEST_LOGS": "true",
    }
    url = f"http://127.0.0.1:{port}"
    with running([echo], env=env, ready=lambda: http_ok(f"{url}/_echo/readyz"), what="echo-server"):
        yield url


def run(argv: list[str], env: dict[str, str] | None = None) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main_impl(argv, {"NETDEBUG_WAIT_SIDECAR": "never", **(env or {})}, out, err)
    return code, out.getvalue(), err.getvalue()


def plan_file(tmp_path: Path, url: str, steps: int = STEPS, extra: str = "") -> Path:
    path = tmp_path / "plan.yaml"
    lines = ["steps:"]
    lines += [
        f"  - {{name: s{i}, http: {{url: '{url}'{extra}, expect: {{status: 200}}}}}}" for i in range(steps)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_http_step_latency_is_the_requests_within_2x_the_probes_p50(echo_url: str, tmp_path: Path) -> None:
    url = f"{echo_url}/echo"
    code, out, err = run(["plan", str(plan_file(tmp_path, url)), "--output", "json"])
    assert code == 0, (out, err)
    doc = json.loads(out)
    details = [step["attempts"][0]["details"] for step in doc["steps"]]
    plan_ms = statistics.median(d["elapsed_ms"] for d in details)
    assert all(d["connect_ms"] is not None for d in details)  # the set-up, reported apart
    code, out, err = run(["probe", url, "-n", "200", "--rps", "100", "-o", "json"])
    assert code == 0, (out, err)
    probe_p50 = json.loads(out)["latency_ms"]["p50"]
    # Before: the step timed the client's construction too (99-261 ms for a 1-2 ms request).
    assert plan_ms <= 2 * probe_p50, (plan_ms, probe_p50, details)


def test_http_step_goes_through_the_proxy(echo_url: str, tmp_path: Path) -> None:
    port = int(echo_url.rsplit(":", 1)[1])
    with http_proxy({"echo.proxied.test": port}) as proxy:
        plan = plan_file(tmp_path, "http://echo.proxied.test/echo", steps=1)
        code, out, err = run(["plan", str(plan)], env={"http_proxy": proxy.url})
        assert code == 0, (out, err)
        assert f"via proxy {proxy.url}" in out
        code, out, err = run(["plan", str(plan), "--proxy", proxy.url, "--output", "json"])
        assert code == 0, (out, err)
    assert proxy.seen.request_lines == ["GET http://echo.proxied.test/echo HTTP/1.1"] * 2
    assert json.loads(out)["steps"][0]["attempts"][0]["details"]["headers"]["x-echo-version"] == "v1"


def test_plan_proxy_flag_reaches_probe_steps(echo_url: str, tmp_path: Path) -> None:
    port = int(echo_url.rsplit(":", 1)[1])
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        "steps:\n  - name: split\n    probe: {url: 'http://echo.proxied.test/echo', requests: 80, rps: 400,"
        " expect: {v1: 100}}\n"
    )
    with http_proxy({"echo.proxied.test": port}) as proxy:
        code, out, err = run(["plan", str(plan), "--proxy", proxy.url])
    assert code == 0, (out, err)
    assert len(proxy.seen.request_lines) == 80  # one connection per request through this proxy


def test_http2_step_still_works(echo_url: str, tmp_path: Path) -> None:
    # h2c is not offered on the plain port: httpx speaks HTTP/1.1 there, through the httpx path.
    code, out, err = run(["plan", str(plan_file(tmp_path, f"{echo_url}/echo", 1, ", http2: true"))])
    assert code == 0, (out, err)
