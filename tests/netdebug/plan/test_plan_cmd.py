"""`netdebug plan` as a command: bad input, every step kind against loopback servers (with an injected
fake prober), JSON/JUnit/text output, exit codes, and the sidecar lifecycle around the plan."""

from __future__ import annotations

import io
import json
import socket
import textwrap
import threading
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import trustme

from netdebug import cli
from netdebug.context import ExitStatus, UsageError
from netdebug.plan.command import main_impl
from netdebug.plan.execute import ProbeBackend, snapshot_text
from tests.netdebug.test_diag import serve_tls
from tests.netdebug.test_sidecar import CLASSIC, NATIVE, downward, serve_agent
from tests.procs import free_port

# --- an upstream that looks like a client sidecar in front of an echo --------------------------


class EnvoyLike(BaseHTTPRequestHandler):
    """/echo: an upstream answer through Envoy; /direct: no Envoy; anything else: a 404 local reply."""

    def version_string(self) -> str:
        return "uvicorn" if self.path == "/direct" else "envoy"

    def do_GET(self) -> None:
        routed = self.path in ("/echo", "/direct")
        body = b"hello from v1" if routed else b""
        self.send_response(200 if routed else 404)
        if self.path == "/echo":
            self.send_header("x-envoy-upstream-service-time", "3")
            self.send_header("x-echo-version", "v1")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def upstream() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), EnvoyLike)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


# --- a fake prober with the probe API's shape ---------------------------------------------------


@dataclass
class FakeReport:
    exit_status: ExitStatus
    url: str

    def to_json(self) -> dict[str, object]:
        return {"verdict": self.exit_status.name.lower(), "exit_code": int(self.exit_status), "url": self.url}

    def summary_line(self) -> str:
        return f"{self.exit_status.name}: fake probe of {self.url}"


@dataclass
class FakeProber:
    """Per URL, the exit statuses of successive probes."""

    script: dict[str, list[ExitStatus]] = field(default_factory=dict)
    configs: list[dict[str, object]] = field(default_factory=list)
    progress_lines: list[str] = field(default_factory=list)

    def config_from_mapping(self, options: Mapping[str, object], env: Mapping[str, str]) -> object:
        if "bogus" in options:
            raise UsageError("unknown probe option(s): bogus")
        self.configs.append(dict(options))
        return dict(options)

    async def run(self, config: Any, progress: Callable[[Any], None] | None) -> FakeReport:
        if progress is not None:
            progress(SimpleNamespace(done=3, planned=4, rate=50.0, counts={"v1": 3, "v2": 1}, errors=0))
        url = str(config["url"])
        return FakeReport(self.script[url].pop(0), url)

    def backend(self) -> ProbeBackend:
        return ProbeBackend(self.config_from_mapping, self.run)


def run_plan(
    plan_text: str,
    tmp_path: Path,
    *args: str,
    env: Mapping[str, str] | None = None,
    prober: FakeProber | None = None,
) -> tuple[int, str, str]:
    path = tmp_path / "plan.yaml"
    path.write_text(textwrap.dedent(plan_text))
    out, err = io.StringIO(), io.StringIO()
    # Point the sidecar endpoints at a port nobody listens on unless the test says otherwise.
    nobody = f"http://127.0.0.1:{free_port()}"
    base_env = {
        "NETDEBUG_SIDECAR_HEALTH_URL": f"{nobody}/healthz/ready",
        "NETDEBUG_SIDECAR_QUIT_URL": f"{nobody}/quitquitquit",
    }
    fake = prober or FakeProber()
    code = main_impl([str(path), *args], {**base_env, **(env or {})}, out, err, fake.backend)
    return code, out.getvalue(), err.getvalue()


# --- bad input: one line, exit 2, nothing run -----------------------------------------------------

BAD_INPUT = [
    pytest.param(None, [], "plan.yaml: no such file", id="missing-file"),
    pytest.param("steps: [", [], "plan.yaml: not valid YAML at line 1", id="bad-yaml"),
    pytest.param(
        "steps: [{name: a, ping: {host: x}}]",
        [],
        "step 1 \"a\": unknown step kind or field 'ping'",
        id="unknown-kind",
    ),
    pytest.param(
        "steps: [{name: a, dns: {name: '${host}'}}]",
        [],
        'step 1 "a": field dns.name: undefined variable ${host}',
        id="missing-var",
    ),
    pytest.param(
        "steps: [{name: a, dns: {name: x}}]",
        ["--var", "oops"],
        "--var 'oops': expected NAME=VALUE",
        id="bad-var-flag",
    ),
    pytest.param(
        "steps: [{name: a, probe: {url: 'http://127.0.0.1:1/', bogus: 1}}]",
        [],
        'step 1 "a": field probe: unknown probe option(s): bogus',
        id="probe-option-rejected-by-prober",
    ),
    pytest.param(
        "steps: [{name: a, probe: {url: 'http://127.0.0.1:1/', rps: -3}}]",
        [],
        'step 1 "a": field probe: ',
        id="probe-value-rejected-by-prober",
    ),
    pytest.param(
        "steps: [{name: a, tls: {address: '127.0.0.1:1', ca: /nonexistent/ca.pem}}]",
        [],
        'step 1 "a": field tls: --ca /nonexistent/ca.pem: no such file',
        id="tls-ca-missing",
    ),
    pytest.param(
        "steps: [{name: a, dns: {name: x}}]",
        ["--sidecar-timeout", "x"],
        "--sidecar-timeout: expected",
        id="bad-timeout",
    ),
]


@pytest.mark.parametrize(("plan_text", "args", "message"), BAD_INPUT)
def test_bad_input_is_one_line_and_exit_2(
    plan_text: str | None, args: list[str], message: str, tmp_path: Path
) -> None:
    path = tmp_path / "plan.yaml"
    if plan_text is not None:
        path.write_text(plan_text)
    out, err = io.StringIO(), io.StringIO()
    # Through the real dispatcher and the real prober's option validation.
    code = cli.main_impl(["plan", str(path), *args], {}, out, err)
    assert code == 2
    assert out.getvalue() == ""
    first = err.getvalue().splitlines()[0]
    assert first.startswith("netdebug plan: error: ")
    assert message in first
    assert "Traceback" not in err.getvalue()


def test_bad_policy_env_is_a_usage_error(tmp_path: Path) -> None:
    code, _, err = run_plan(
        "steps: [{name: a, dns: {name: x}}]", tmp_path, env={"NETDEBUG_WAIT_SIDECAR": "maybe"}
    )
    assert code == 2
    assert "NETDEBUG_WAIT_SIDECAR='maybe': expected one of auto, always, never" in err


# --- every step kind, with the exit code of the worst ---------------------------------------------

ALL_KINDS = """
vars: {base: "http://127.0.0.1:0"}
steps:
  - name: split
    probe: {url: "${base}/echo", requests: 10, expect: {v1: 75, v2: 25}, require_path: [client-sidecar]}
    repeat: {until_passes: 2, max_attempts: 4, interval: 0}
  - name: no route
    http: {url: "${base}/", expect: {status: 404, local_reply: true}}
  - name: routed
    http:
      url: "${base}/echo"
      headers: {host: echo.local}
      expect: {status: 2xx, headers: {x-echo-version: v1}, body_contains: hello, local_reply: false}
  - {name: dns, dns: {name: localhost}}
  - {name: nxdomain, dns: {name: nonexistent.invalid, expect: {resolves: false}}}
  - {name: tcp, tcp: {address: "${tcp}"}}
  - {name: closed, tcp: {address: "127.0.0.1:${closed}", expect: {connects: false}}}
"""


@pytest.fixture
def tcp_listener() -> Iterator[str]:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield f"127.0.0.1:{sock.getsockname()[1]}"


def all_kinds_vars(upstream: int, tcp: str) -> list[str]:
    return [
        "--var",
        f"base=http://127.0.0.1:{upstream}",
        "--var",
        f"tcp={tcp}",
        "--var",
        f"closed={free_port()}",
    ]


def test_every_kind_passes(upstream: int, tcp_listener: str, tmp_path: Path) -> None:
    prober = FakeProber(
        {f"http://127.0.0.1:{upstream}/echo": [ExitStatus.MISMATCH, ExitStatus.OK, ExitStatus.OK]}
    )
    junit = tmp_path / "junit.xml"
    code, out, err = run_plan(
        ALL_KINDS, tmp_path, *all_kinds_vars(upstream, tcp_listener), "--junit", str(junit), prober=prober
    )
    assert err == ""
    assert code == 0, out
    lines = out.splitlines()
    assert lines[0].startswith("      attempt 1/4 fail: MISMATCH: fake probe")
    assert lines[3].startswith("[1/7] PASS         split: converged: 2/2 passes in a row after 3/4 attempts")
    assert lines[4].startswith("[2/7] PASS         no route: 404 in ")
    assert "Envoy local reply" in lines[4]
    assert lines[6].startswith("[4/7] PASS         dns: localhost -> ")
    assert lines[7].startswith("[5/7] PASS         nxdomain: nonexistent.invalid did not resolve in ")
    assert lines[7].endswith("(as expected)")
    assert lines[8].startswith(f"[6/7] PASS         tcp: connected to {tcp_listener} in ")
    assert lines[9].endswith("Connection refused (as expected)")
    assert lines[-1].startswith("plan ")
    assert lines[-1].endswith("exit 0")
    # The plan owns the sidecar: its probes neither wait for nor quit it, and draw no live view.
    assert prober.configs[0]["wait_sidecar"] == "never"
    assert prober.configs[0]["quit_sidecar"] == "never"
    assert prober.configs[0]["require_path"] == ["client-sidecar"]
    root = ET.parse(junit).getroot()
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("7", "0", "0")


def test_failures_json_and_worst_exit(upstream: int, tcp_listener: str, tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{upstream}/echo"
    # The probe stays inconclusive; the http step now expects the wrong things; dns fails to resolve.
    plan_text = ALL_KINDS.replace("status: 404, local_reply: true", "status: 200, local_reply: false")
    plan_text = plan_text.replace("name: localhost", "name: nonexistent.invalid")
    prober = FakeProber({url: [ExitStatus.INCONCLUSIVE] * 4})
    code, out, _ = run_plan(
        plan_text, tmp_path, *all_kinds_vars(upstream, tcp_listener), "--output", "json", prober=prober
    )
    doc = json.loads(out)
    statuses = {s["name"]: s["status"] for s in doc["steps"]}
    assert statuses == {
        "split": "inconclusive",
        "no route": "fail",
        "routed": "pass",
        "dns": "error",
        "nxdomain": "pass",
        "tcp": "pass",
        "closed": "pass",
    }
    # unreachable (dns) outranks fail and inconclusive
    assert code == doc["exit_code"] == 4
    split = doc["steps"][0]
    # 2 passes in a row are impossible after the third inconclusive attempt of 4: stop there.
    assert len(split["attempts"]) == 3
    assert split["attempts"][0]["details"] == {"verdict": "inconclusive", "exit_code": 3, "url": url}
    no_route = doc["steps"][1]["attempts"][0]
    assert no_route["failures"] == [
        "status 404, expected 200",
        "got an Envoy local reply (no x-envoy-upstream-service-time), expected an upstream",
    ]
    assert no_route["details"]["local_reply"] is True


def test_tls_steps(tmp_path: Path) -> None:
    with serve_tls(trustme.CA(), tmp_path) as server:
        address = f"127.0.0.1:{server.port}"
        plan_text = f"""
        vars: {{address: "{address}", ca: "{server.ca_file}"}}
        steps:
          - {{name: h2, tls: {{address: "${{address}}", sni: echo.local, ca: "${{ca}}", expect_alpn: h2,
                             expect: {{san: [echo.local, "IP:127.0.0.1"]}}}}}}
          - {{name: h1 only, tls: {{address: "${{address}}", sni: echo.local, ca: "${{ca}}", alpn: [http/1.1],
                                  expect_alpn: h2}}}}
          - {{name: untrusted, tls: {{address: "${{address}}", sni: echo.local}}}}
          - {{name: insecure, tls: {{address: "${{address}}", sni: other.local, insecure: true}}}}
        """
        code, out, _ = run_plan(plan_text, tmp_path, "--output", "json")
    doc = json.loads(out)
    statuses = {s["name"]: (s["status"], s["summary"]) for s in doc["steps"]}
    assert statuses["h2"][0] == "pass"
    assert "ALPN h2, SNI echo.local" in statuses["h2"][1]
    assert statuses["h1 only"][0] == "fail"
    assert statuses["h1 only"][1].endswith("; ALPN http/1.1, expected h2")
    assert statuses["untrusted"][0] == "error"
    assert statuses["untrusted"][1].startswith("certificate verify failed")
    assert statuses["insecure"][0] == "pass"
    assert code == 4
    cert = doc["steps"][0]["attempts"][0]["details"]["cert"]
    assert cert["sans"] == ["DNS:echo.local", "DNS:localhost", "IP:127.0.0.1"]


def test_http_step_against_nothing_is_unreachable(tmp_path: Path) -> None:
    plan_text = f"steps: [{{name: a, http: {{url: 'http://127.0.0.1:{free_port()}/', timeout: 2}}}}]"
    code, out, _ = run_plan(plan_text, tmp_path)
    assert code == 4
    assert "[1/1] ERROR" in out
    assert "connect: " in out


def test_direct_answer_is_not_a_local_reply(upstream: int, tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{upstream}/direct"
    plan_text = f"steps: [{{name: a, http: {{url: '{url}', expect: {{local_reply: true}}}}}}]"
    code, out, _ = run_plan(plan_text, tmp_path)
    assert code == 1
    assert "expected an Envoy local reply, got server 'uvicorn'" in out


def test_snapshot_text() -> None:
    snap = SimpleNamespace(
        done=30, planned=100, rate=49.6, counts={"v2": 1, "v1": 3}, errors=2, local_replies=0
    )
    assert snapshot_text(snap) == "30/100 requests, 50/s, v1 75.0% v2 25.0%, errors 2"
    assert snapshot_text(object()) == ""


def test_probe_progress_reaches_the_live_view(upstream: int, tmp_path: Path) -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    url = f"http://127.0.0.1:{upstream}/echo"
    path = tmp_path / "plan.yaml"
    path.write_text(f"steps: [{{name: split, probe: {{url: '{url}'}}}}]")
    out, err = Tty(), io.StringIO()
    prober = FakeProber({url: [ExitStatus.OK]})
    code = main_impl([str(path), "--wait-sidecar", "never"], {}, out, err, prober.backend)
    assert code == 0
    assert "PASS" in out.getvalue()
    assert "split" in out.getvalue()


# --- the sidecar lifecycle around the plan --------------------------------------------------------

ONE_FAILING_STEP = "steps: [{name: closed, tcp: {address: '127.0.0.1:%d', timeout: 2}}]"


@dataclass(frozen=True)
class Lifecycle:
    args: tuple[str, ...] = ()
    annotations: str | None = None  # the sidecar.istio.io/status value, when the file is mounted
    in_job: bool = False
    agent_present: bool = True
    not_ready: int = 0


LIFECYCLE_CASES = [
    pytest.param(Lifecycle(in_job=True, annotations=CLASSIC), True, True, id="job-classic-quits"),
    pytest.param(Lifecycle(args=("--job",)), True, True, id="job-flag-unknown-mode-quits-when-detected"),
    pytest.param(Lifecycle(in_job=True, annotations=NATIVE), True, False, id="job-native-no-quit"),
    pytest.param(Lifecycle(annotations=CLASSIC), True, False, id="not-a-job-no-quit"),
    pytest.param(Lifecycle(in_job=True, agent_present=False), False, False, id="no-sidecar-no-wait-no-quit"),
    pytest.param(
        Lifecycle(args=("--quit-sidecar", "always"), annotations=NATIVE), True, True, id="always-quits"
    ),
    pytest.param(Lifecycle(args=("--quit-sidecar", "no"), in_job=True), True, False, id="never-via-synonym"),
    pytest.param(
        Lifecycle(args=("--wait-sidecar", "never"), in_job=True), False, True, id="no-wait-still-quits"
    ),
    pytest.param(Lifecycle(in_job=True, not_ready=2), True, True, id="waits-through-503s"),
]


@pytest.mark.parametrize(("case", "waited", "quit"), LIFECYCLE_CASES)
def test_sidecar_lifecycle(case: Lifecycle, waited: bool, quit: bool, tmp_path: Path) -> None:
    with serve_agent(not_ready=case.not_ready) as agent:
        env: dict[str, str] = dict(agent.env) if case.agent_present else {}
        if case.annotations is not None:
            annotations = tmp_path / "annotations"
            annotations.write_text(downward({"sidecar.istio.io/status": case.annotations}))
            env["NETDEBUG_POD_ANNOTATIONS_FILE"] = str(annotations)
        if case.in_job:
            env["NETDEBUG_IN_JOB"] = "1"
        code, out, _ = run_plan(
            ONE_FAILING_STEP % free_port(), tmp_path, *case.args, "--output", "json", env=env
        )
        doc = json.loads(out)
        # The quit never changes the exit code: the closed port is a failed (unreachable) step.
        assert code == 4
        assert doc["exit_code"] == 4
        assert doc["sidecar"]["waited"] is waited
        assert doc["sidecar"]["quit"] is quit
        assert agent.quits == (["/quitquitquit"] if quit and case.agent_present else [])
        if case.not_ready:
            assert agent.health_calls >= case.not_ready + 1


def test_sidecar_never_ready_runs_nothing(tmp_path: Path) -> None:
    with serve_agent(not_ready=10**6) as agent:
        junit = tmp_path / "j.xml"
        code, out, _ = run_plan(
            "steps: [{name: a, dns: {name: localhost}}, {name: b, dns: {name: localhost}}]",
            tmp_path,
            "--sidecar-timeout",
            "0.3",
            "--junit",
            str(junit),
            env={**agent.env, "NETDEBUG_IN_JOB": "true"},
        )
    assert code == 4
    lines = out.splitlines()
    assert lines[0].startswith("sidecar not ready after 0.3s")
    assert lines[1].startswith("sidecar quit: asked the sidecar to exit")
    assert agent.quits == ["/quitquitquit"]
    root = ET.parse(junit).getroot()
    assert (root.get("tests"), root.get("skipped")) == ("2", "2")


def test_quit_failure_keeps_a_passing_exit_code(tmp_path: Path) -> None:
    code, out, _ = run_plan(
        "steps: [{name: a, dns: {name: localhost}}]", tmp_path, "--quit-sidecar", "always", "--job"
    )
    assert code == 0
    assert "sidecar quit: no answer from" in out
