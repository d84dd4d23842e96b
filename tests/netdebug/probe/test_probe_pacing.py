"""Real processes: pacing accuracy against a local echo-server, and Ctrl-C on a netdebug process."""

from __future__ import annotations

import io
import json
import signal
import subprocess
import sys

import pytest

from netdebug.cli import main_impl
from tests.netdebug.probe.probe_support import scripted, split
from tests.procs import free_port, http_ok, running, tool, wait_until

ENV = {"NETDEBUG_WAIT_SIDECAR": "no"}


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_1000_rps_for_10_s_within_1_percent() -> None:
    echo = tool("echo-server")
    if echo is None:
        pytest.skip("echo-server console script not installed")
    port = free_port()
    env = {
        "SERVICE_VERSION": "v1",
        "HTTP_PORT": str(port),
        "HTTPS_PORT": "off",
        "ECHO_BIND": "127.0.0.1",
        "DISABLE_REQUEST_LOGS": "true",
    }
    with running(
        [echo], env=env, ready=lambda: http_ok(f"http://127.0.0.1:{port}/_echo/readyz"), what="echo"
    ):
        out, err = io.StringIO(), io.StringIO()
        code = main_impl(
            [
                "probe",
                f"http://127.0.0.1:{port}/echo",
                "--rps",
                "1000",
                "-d",
                "10s",
                "-o",
                "json",
                "--max-error-rate",
                "0.01",
                # A stall of a shared machine must show as lateness, not as drops: no cap in reach.
                "--max-in-flight",
                "20000",
            ],
            ENV,
            out,
            err,
        )
    doc = json.loads(out.getvalue())
    assert code == 0, err
    assert doc["dropped"] == 0
    # Requests are launched on an absolute schedule, so the launch rate is exact even when a
    # wake-up is late; lateness is reported rather than hidden.
    assert doc["achieved_rps"] == pytest.approx(1000.0, rel=0.01)
    assert doc["requests"] == 10_000
    assert doc["lateness_ms"]["p50"] is not None
    print(f"achieved {doc['achieved_rps']} rps, lateness ms {doc['lateness_ms']}")


@pytest.mark.timeout(60)
def test_http2_cleartext_against_echo() -> None:
    echo = tool("echo-server")
    if echo is None:
        pytest.skip("echo-server console script not installed")
    port = free_port()
    env = {
        "SERVICE_VERSION": "v2",
        "HTTP_PORT": "off",
        "HTTPS_PORT": "off",
        "H2C_PORT": str(port),
        "ECHO_BIND": "127.0.0.1",
        "DISABLE_REQUEST_LOGS": "true",
    }
    with running(
        [echo], env=env, ready=lambda: http_ok(f"http://127.0.0.1:{port}/_echo/readyz"), what="echo"
    ):
        out, err = io.StringIO(), io.StringIO()
        code = main_impl(
            [
                "probe",
                f"http://127.0.0.1:{port}/echo",
                "--http2",
                "-n",
                "100",
                "--rps",
                "500",
                "--expect",
                "v2=1",
                "-o",
                "json",
            ],
            ENV,
            out,
            err,
        )
    doc = json.loads(out.getvalue())
    assert code == 0, (doc, err.getvalue())
    assert doc["http_versions"] == {"HTTP/2": 100}
    assert doc["counts"] == {"v2": 100}


@pytest.mark.timeout(60)
def test_ctrl_c_prints_the_partial_report_and_exits_130() -> None:
    with scripted({"/echo": split({"v1": 3, "v2": 1})}) as server:
        cmd = [
            sys.executable,
            "-m",
            "netdebug",
            "probe",
            server.url(),
            "-n",
            "100000",
            "--rps",
            "200",
            "--expect",
            "v1=75,v2=25",
            "-o",
            "json",
            "--wait-sidecar",
            "no",
        ]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            wait_until(lambda: len(server.requests) >= 40 or proc.poll() is not None, 30, "40 requests")
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == 130, err
    doc = json.loads(out)
    assert doc["interrupted"] is True
    assert doc["exit_code"] == 130
    assert 40 <= doc["requests"] < 100_000
    assert sum(doc["counts"].values()) == doc["requests"]
