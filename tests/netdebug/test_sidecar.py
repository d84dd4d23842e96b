"""Sidecar lifecycle against a fake pilot-agent on a loopback port, and native/classic detection."""

from __future__ import annotations

import contextlib
import io
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from netdebug import cli, sidecar
from netdebug.sidecar import SidecarEndpoints, parse_downward_annotations, sidecar_mode
from tests.procs import free_port


@dataclass
class FakeAgent:
    """Answers 503 on /healthz/ready `not_ready` times, then 200; records POST /quitquitquit."""

    not_ready: int = 0
    quit_status: int = 200
    health_calls: int = 0
    quits: list[str] = field(default_factory=list)
    port: int = 0

    @property
    def endpoints(self) -> SidecarEndpoints:
        base = f"http://127.0.0.1:{self.port}"
        return SidecarEndpoints(f"{base}/healthz/ready", f"{base}/quitquitquit")

    @property
    def env(self) -> dict[str, str]:
        return {
            "NETDEBUG_SIDECAR_HEALTH_URL": self.endpoints.health_url,
            "NETDEBUG_SIDECAR_QUIT_URL": self.endpoints.quit_url,
        }


def _handler(agent: FakeAgent) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _answer(self, status: int) -> None:
            self.send_response(status)
            self.send_header("content-length", "0")
            self.end_headers()

        def do_GET(self) -> None:
            if self.path != "/healthz/ready":
                self._answer(404)
                return
            agent.health_calls += 1
            self._answer(503 if agent.health_calls <= agent.not_ready else 200)

        def do_POST(self) -> None:
            agent.quits.append(self.path)
            self._answer(agent.quit_status if self.path == "/quitquitquit" else 404)

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


@contextlib.contextmanager
def serve_agent(not_ready: int = 0, quit_status: int = 200) -> Iterator[FakeAgent]:
    """A fake pilot-agent (health and quit) on a kernel-chosen loopback port, in a thread."""
    state = FakeAgent(not_ready=not_ready, quit_status=quit_status)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def agent() -> Iterator[FakeAgent]:
    with serve_agent() as state:
        yield state


def nobody() -> SidecarEndpoints:
    port = free_port()  # released at once: nothing listens there
    return SidecarEndpoints(f"http://127.0.0.1:{port}/healthz/ready", f"http://127.0.0.1:{port}/quitquitquit")


def test_default_endpoints_and_env_override() -> None:
    assert SidecarEndpoints.from_env({}) == SidecarEndpoints(
        "http://127.0.0.1:15021/healthz/ready", "http://127.0.0.1:15020/quitquitquit"
    )
    env = {"NETDEBUG_SIDECAR_HEALTH_URL": "http://h/r", "NETDEBUG_SIDECAR_QUIT_URL": "http://h/q"}
    assert SidecarEndpoints.from_env(env) == SidecarEndpoints("http://h/r", "http://h/q")


def test_production_poll_interval_is_pilot_agents() -> None:
    assert sidecar.POLL_INTERVAL == 0.5


@pytest.mark.anyio
async def test_detect(agent: FakeAgent) -> None:
    agent.not_ready = 100  # not ready still counts as present
    assert await sidecar.detect(agent.endpoints) is True
    assert await sidecar.detect(nobody()) is False


@pytest.mark.anyio
async def test_wait_ready_polls_until_200(agent: FakeAgent) -> None:
    agent.not_ready = 3
    assert await sidecar.wait_ready(agent.endpoints, timeout=10, interval=0.01) is True
    # Three 503s, then the 200 (more only if a poll timed out on a loaded machine).
    assert agent.health_calls >= 4


@pytest.mark.anyio
async def test_wait_ready_gives_up_at_the_deadline(agent: FakeAgent) -> None:
    agent.not_ready = 10**6
    now = [0.0]

    async def fake_sleep(seconds: float) -> None:
        now[0] += seconds

    ready = await sidecar.wait_ready(agent.endpoints, 2.0, 0.5, clock=lambda: now[0], sleep=fake_sleep)
    assert ready is False
    # Polls at 0, 0.5, 1.0, 1.5 and 2.0 on the fake clock: one per interval, the last at the deadline.
    assert agent.health_calls == 5
    assert now[0] == pytest.approx(2.0)


@pytest.mark.anyio
async def test_wait_ready_without_sidecar_times_out() -> None:
    assert await sidecar.wait_ready(nobody(), timeout=0.2, interval=0.05) is False


@pytest.mark.anyio
async def test_quit_posts_once(agent: FakeAgent) -> None:
    message = await sidecar.quit_sidecar(agent.endpoints)
    assert agent.quits == ["/quitquitquit"]
    assert "asked the sidecar to exit" in message


@pytest.mark.anyio
async def test_quit_never_raises() -> None:
    message = await sidecar.quit_sidecar(nobody())
    assert message.startswith("sidecar quit: no answer from")
    bad = await sidecar.quit_sidecar(SidecarEndpoints("http://127.0.0.1:1/", "not a url"))
    assert bad.startswith("sidecar quit:")


@pytest.mark.anyio
async def test_quit_refused_is_reported(agent: FakeAgent) -> None:
    agent.quit_status = 403
    accepted, message = await sidecar.quit_sidecar_result(agent.endpoints)
    assert not accepted
    assert "answered 403" in message


# --- native vs classic, from the Downward API annotations file --------------------------------

CLASSIC = json.dumps(
    {
        "initContainers": ["istio-init"],
        "containers": ["istio-proxy"],
        "volumes": ["istio-envoy"],
        "revision": "default",
    }
)
NATIVE = json.dumps(
    {"initContainers": ["istio-validation", "istio-proxy"], "containers": None, "revision": "default"}
)


def downward(annotations: dict[str, str]) -> str:
    # The kubelet writes key="value" lines, the value quoted like Go's %q (json.dumps quotes the same
    # way for these ASCII values).
    return "".join(f"{key}={json.dumps(value)}\n" for key, value in annotations.items())


MODE_CASES = [
    pytest.param({"sidecar.istio.io/status": CLASSIC}, "classic", id="classic"),
    pytest.param(
        {"sidecar.istio.io/status": NATIVE, "kubectl.kubernetes.io/default-container": "netdebug"},
        "native",
        id="native",
    ),
    pytest.param({"sidecar.istio.io/nativeSidecar": "true"}, "native", id="native-opt-in-before-injection"),
    pytest.param({"other": "x"}, "none", id="not-injected"),
    pytest.param({}, "none", id="no-annotations"),
    pytest.param({"sidecar.istio.io/status": "{not json"}, "unknown", id="garbled-status"),
    pytest.param({"sidecar.istio.io/status": '{"containers": ["app"]}'}, "unknown", id="no-proxy-listed"),
]


@pytest.mark.parametrize(("annotations", "mode"), MODE_CASES)
def test_sidecar_mode_from_annotations_file(annotations: dict[str, str], mode: str, tmp_path: Path) -> None:
    path = tmp_path / "annotations"
    path.write_text(downward(annotations))
    assert sidecar_mode(parse_downward_annotations(path.read_text())) == mode
    assert sidecar.mode_from_env({"NETDEBUG_POD_ANNOTATIONS_FILE": str(path)}) == (mode, str(path))


def test_downward_parsing_unquotes_go_escapes() -> None:
    text = 'a="x\\"y\\\\z\\n"\nb="plain"\nnot a line\nc=unquoted\n'
    assert parse_downward_annotations(text) == {"a": 'x"y\\z\n', "b": "plain", "c": "unquoted"}


def test_mode_unknown_without_a_readable_file(tmp_path: Path) -> None:
    assert sidecar.mode_from_env({}) == ("unknown", None)
    missing = str(tmp_path / "nope")
    assert sidecar.mode_from_env({"NETDEBUG_POD_ANNOTATIONS_FILE": missing}) == ("unknown", missing)


# --- the `netdebug sidecar` command -------------------------------------------------------------


def netdebug(argv: list[str], env: dict[str, str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = cli.main_impl(argv, env, out, err)
    return code, out.getvalue(), err.getvalue()


def test_command_status(agent: FakeAgent, tmp_path: Path) -> None:
    annotations = tmp_path / "annotations"
    annotations.write_text(downward({"sidecar.istio.io/status": NATIVE}))
    env = {**agent.env, "NETDEBUG_POD_ANNOTATIONS_FILE": str(annotations)}
    code, out, _ = netdebug(["sidecar", "status", "--output", "json"], env)
    assert code == 0
    doc = json.loads(out)
    assert (doc["detected"], doc["ready"], doc["mode"], doc["health_status"]) == (True, True, "native", 200)
    code, out, _ = netdebug(["sidecar", "status"], env)
    assert code == 0
    assert "detected: yes" in out
    assert "ready:    yes" in out
    assert "mode:     native" in out


def test_command_status_without_sidecar() -> None:
    ep = nobody()
    code, out, _ = netdebug(["sidecar", "status"], {"NETDEBUG_SIDECAR_HEALTH_URL": ep.health_url})
    assert code == 0
    assert "detected: no" in out
    assert "mode:     unknown" in out


def test_command_wait_and_quit(agent: FakeAgent) -> None:
    agent.not_ready = 1  # one 503, then ready after one 500 ms poll interval
    code, out, _ = netdebug(["sidecar", "wait", "--timeout", "10"], agent.env)
    assert code == 0
    assert agent.health_calls >= 2
    assert out.startswith("sidecar ready after")
    code, out, _ = netdebug(["sidecar", "quit"], agent.env)
    assert (code, agent.quits) == (0, ["/quitquitquit"])


def test_command_wait_times_out_with_exit_4() -> None:
    ep = nobody()
    code, out, _ = netdebug(
        ["sidecar", "wait", "--timeout", "0.3"], {"NETDEBUG_SIDECAR_HEALTH_URL": ep.health_url}
    )
    assert code == 4
    assert "not ready after 0.3s" in out


def test_command_quit_without_sidecar_exits_4() -> None:
    ep = nobody()
    code, out, _ = netdebug(["sidecar", "quit"], {"NETDEBUG_SIDECAR_QUIT_URL": ep.quit_url})
    assert code == 4
    assert "no answer" in out


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        pytest.param(
            ["sidecar", "wait", "--timeout", "soon"],
            {},
            "--timeout: expected a number of seconds",
            id="bad-flag",
        ),
        pytest.param(
            ["sidecar", "wait"],
            {"NETDEBUG_SIDECAR_TIMEOUT": "-1"},
            "expected a finite number >= 0",
            id="bad-env",
        ),
    ],
)
def test_command_usage_errors(argv: list[str], env: dict[str, str], message: str) -> None:
    code, _, err = netdebug(argv, env)
    assert code == 2
    assert message in err.splitlines()[0]
