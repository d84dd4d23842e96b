from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Iterator, MutableMapping
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from echo.admin import Readiness
from echo.app import EchoApp, create_app
from echo.config import EchoConfig, env_var_names, load_config
from echo.controls import ALL_CONTROLS
from echo.identity import Identity, identity_from_environ
from echo.requestlog import FdSink

pytestmark = pytest.mark.anyio

IDENTITY = Identity(
    name="echo-v1-abc", hostname="host-1", version="v1", namespace="echo", labels={"app": "echo"}
)


class FakeClock:
    """Advances 2 ms per reading, so every request's latency is exactly 2 ms."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        self.now += 0.002
        return self.now


class Harness:
    def __init__(
        self, env: dict[str, str] | None = None, *, draw: float = 0.5, environ: dict[str, str] | None = None
    ):
        self.lines: list[bytes] = []
        self.sleeps: list[float] = []
        self.config = load_config([], env or {})
        self.app = create_app(
            self.config,
            IDENTITY,
            rng=lambda: draw,
            clock=FakeClock(),
            wall_clock=lambda: 1_764_000_000.25,
            environ=environ or {},
            log_sink=self.lines.append,
            sleep=self._sleep,
        )

    async def _sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url="http://echo.local")

    def logs(self) -> list[dict[str, Any]]:
        assert all(line.endswith(b"\n") and line.count(b"\n") == 1 for line in self.lines)
        return [orjson.loads(line) for line in self.lines]


@pytest.fixture
def harness() -> Harness:
    return Harness()


@pytest.fixture
async def client(harness: Harness) -> AsyncIterator[httpx.AsyncClient]:
    async with harness.client() as c:
        yield c


def assert_identity(response: httpx.Response) -> None:
    assert response.headers["x-echo-pod"] == "echo-v1-abc"
    assert response.headers["x-echo-version"] == "v1"


async def test_echo_document(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/a/b?x=1&x=2",
        json={"k": "v"},
        headers={"x-request-id": "rid-1", "x-envoy-attempt-count": "1", "cookie": "s=1"},
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json; charset=utf-8"
    assert_identity(response)
    doc = response.json()
    assert doc["path"] == "/a/b"
    assert doc["method"] == "POST"
    assert doc["query"] == {"x": ["1", "2"]}
    assert doc["json"] == {"k": "v"}
    assert doc["body"] == '{"k":"v"}'
    assert doc["cookies"] == {"s": "1"}
    assert doc["headers"]["x-request-id"] == "rid-1"
    assert doc["pod"] == IDENTITY.to_json()
    assert doc["mesh"]["sidecar"] is True
    assert doc["mesh"]["attempt"] == 1
    assert doc["os"] == {"hostname": "host-1"}
    assert doc["http_version"] == "1.1"
    assert doc["body_bytes"] == 9
    # mendhak pretty-prints with two spaces
    assert response.text.startswith('{\n  "path": "/a/b",')


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH", "OPTIONS", "PROPFIND"])
async def test_any_method_any_path(client: httpx.AsyncClient, method: str) -> None:
    response = await client.request(method, "/deep/path/ü")
    assert response.status_code == 200
    assert response.json()["method"] == method
    assert response.json()["path"] == "/deep/path/ü"


async def test_head_has_no_body(client: httpx.AsyncClient) -> None:
    response = await client.head("/x")
    assert response.status_code == 200
    assert response.content == b""
    assert int(response.headers["content-length"]) > 0
    assert_identity(response)


async def test_binary_body_round_trips(client: httpx.AsyncClient) -> None:
    payload = bytes(range(256))
    doc = (await client.post("/bin", content=payload)).json()
    assert doc["body_encoding"] == "base64"
    import base64

    assert base64.b64decode(doc["body"]) == payload


# -- admin endpoints -----------------------------------------------------------------------------


async def test_livez_readyz_metrics(harness: Harness, client: httpx.AsyncClient) -> None:
    live = await client.get("/_echo/livez")
    assert (live.status_code, live.json()) == (200, {"status": "alive"})
    assert_identity(live)
    ready = await client.get("/_echo/readyz")
    assert (ready.status_code, ready.json()) == (200, {"status": "ready"})
    await client.get("/one")
    await client.get("/two", headers={"x-set-response-status-code": "503"})
    await client.post("/three")
    metrics = await client.get("/_echo/metrics")
    assert metrics.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = metrics.text
    assert 'echo_requests_total{method="GET",status="200",version="v1",pod="echo-v1-abc"} 1' in text
    assert 'echo_requests_total{method="GET",status="503",version="v1",pod="echo-v1-abc"} 1' in text
    assert 'echo_requests_total{method="POST",status="200",version="v1",pod="echo-v1-abc"} 1' in text
    assert 'echo_request_duration_seconds_count{version="v1",pod="echo-v1-abc"} 3' in text
    assert 'echo_request_duration_seconds_bucket{le="0.001",version="v1",pod="echo-v1-abc"} 0' in text
    assert 'echo_request_duration_seconds_bucket{le="0.0025",version="v1",pod="echo-v1-abc"} 3' in text
    assert 'echo_ready{version="v1",pod="echo-v1-abc"} 1' in text
    # Admin requests are neither logged nor counted.
    assert [entry["path"] for entry in harness.logs()] == ["/one", "/two", "/three"]
    assert "livez" not in text


async def test_readiness_flip_and_drain(harness: Harness, client: httpx.AsyncClient) -> None:
    flipped = await client.post("/_echo/readyz?ready=false")
    assert (flipped.status_code, flipped.json()) == (200, {"status": "not-ready"})
    assert (await client.get("/_echo/readyz")).status_code == 503
    assert (await client.get("/still-echoed")).status_code == 200
    await client.post("/_echo/readyz?ready=true")
    assert (await client.get("/_echo/readyz")).status_code == 200
    harness.app.set_draining()
    assert harness.app.admin.readiness is Readiness.DRAINING
    drained = await client.get("/_echo/readyz")
    assert (drained.status_code, drained.json()) == (503, {"status": "draining"})
    # A demo flip cannot undo a drain.
    assert (await client.post("/_echo/readyz?ready=true")).json() == {"status": "draining"}
    assert (await client.get("/_echo/readyz")).status_code == 503
    assert (await client.get("/served-while-draining")).status_code == 200
    assert 'echo_ready{version="v1",pod="echo-v1-abc"} 0' in (await client.get("/_echo/metrics")).text


@pytest.mark.parametrize(
    ("method", "path", "status", "body_part"),
    [
        pytest.param("POST", "/_echo/readyz", 400, {"control": "ready"}, id="flip-without-value"),
        pytest.param("POST", "/_echo/readyz?ready=maybe", 400, {"control": "ready"}, id="flip-bad-value"),
        pytest.param("PUT", "/_echo/livez", 405, {"allow": "GET, HEAD"}, id="livez-put"),
        pytest.param("DELETE", "/_echo/readyz", 405, {"allow": "GET, HEAD, POST"}, id="readyz-delete"),
        pytest.param("POST", "/_echo/metrics", 405, {"allow": "GET, HEAD"}, id="metrics-post"),
        pytest.param(
            "GET",
            "/_echo/nope",
            404,
            {"endpoints": ["/_echo/livez", "/_echo/readyz", "/_echo/metrics"]},
            id="unknown-admin",
        ),
    ],
)
async def test_admin_errors(
    client: httpx.AsyncClient, method: str, path: str, status: int, body_part: dict[str, object]
) -> None:
    response = await client.request(method, path)
    assert response.status_code == status
    assert_identity(response)
    doc = response.json()
    assert "error" in doc
    for key, value in body_part.items():
        assert doc[key] == value


async def test_admin_prefix_is_configurable_and_exact() -> None:
    harness = Harness({"ECHO_ADMIN_PREFIX": "/admin"})
    async with harness.client() as client:
        assert (await client.get("/admin/livez")).json() == {"status": "alive"}
        echoed = await client.get("/_echo/livez")
        assert echoed.json()["path"] == "/_echo/livez"  # the default prefix is just a path now
    async with Harness().client() as client:
        assert (await client.get("/_echoes")).json()["path"] == "/_echoes"


# -- controls ------------------------------------------------------------------------------------


async def test_status_and_delay_controls(harness: Harness, client: httpx.AsyncClient) -> None:
    response = await client.get(
        "/x", headers={"x-set-response-status-code": "418", "x-set-response-delay-ms": "250"}
    )
    assert response.status_code == 418
    assert response.headers["x-echo-delay-ms"] == "250"
    assert "x-echo-delay-capped" not in response.headers
    assert harness.sleeps == [0.25]
    assert response.json()["path"] == "/x"
    query = await client.get("/x?x-set-response-status-code=401&x-set-response-delay-ms=10")
    assert query.status_code == 401
    assert harness.sleeps == [0.25, 0.01]


@pytest.mark.parametrize("status", [204, 304])
async def test_no_body_statuses(harness: Harness, client: httpx.AsyncClient, status: int) -> None:
    response = await client.get("/x", headers={"x-set-response-status-code": str(status)})
    assert response.status_code == status
    assert response.content == b""
    assert "content-length" not in response.headers
    assert_identity(response)
    assert harness.logs()[0]["bytes_out"] == 0


async def test_delay_is_capped() -> None:
    harness = Harness({"ECHO_MAX_DELAY_MS": "100"})
    async with harness.client() as client:
        response = await client.get("/x?x-set-response-delay-ms=60000")
    assert response.headers["x-echo-delay-ms"] == "100"
    assert response.headers["x-echo-delay-capped"] == "true"
    assert harness.sleeps == [0.1]


@pytest.mark.parametrize(
    ("headers", "url", "control"),
    [
        pytest.param({"x-set-response-status-code": "abc"}, "/x", "x-set-response-status-code", id="status"),
        pytest.param({}, "/x?x-set-response-delay-ms=soon", "x-set-response-delay-ms", id="delay-query"),
        pytest.param({}, "/x?response_body_only=perhaps", "response_body_only", id="body-only"),
        pytest.param({"x-set-response-status-mix": "503:200"}, "/x", "x-set-response-status-mix", id="mix"),
        pytest.param({"x-fail-attempts": "x"}, "/x", "x-fail-attempts", id="fail"),
        pytest.param(
            {"x-set-response-header": "content-length: 1"}, "/x", "x-set-response-header", id="header"
        ),
    ],
)
async def test_invalid_control_is_400(
    harness: Harness, client: httpx.AsyncClient, headers: dict[str, str], url: str, control: str
) -> None:
    response = await client.get(url, headers=headers)
    assert response.status_code == 400
    assert_identity(response)
    doc = response.json()
    assert doc["control"] == control
    assert doc["error"].startswith(f"{control}: ")
    assert harness.sleeps == []
    assert harness.logs()[-1]["status"] == 400


async def test_content_type_body_only_and_headers(client: httpx.AsyncClient) -> None:
    typed = await client.get("/x", headers={"x-set-response-content-type": "text/plain"})
    assert typed.headers["content-type"] == "text/plain; charset=utf-8"  # Express adds the charset
    assert typed.json()["path"] == "/x"
    raw = await client.post(
        "/x?response_body_only=true", content=b"just this", headers={"content-type": "application/x-thing"}
    )
    assert raw.content == b"just this"
    assert raw.headers["content-type"] == "application/x-thing"
    bare = await client.post("/x?response_body_only=true", content=b"plain")
    assert bare.headers["content-type"] == "text/plain"
    extra = await client.get(
        "/x?x-set-response-header=X-From-Query%3A%20q",
        headers=[("x-set-response-header", "X-One: 1"), ("x-set-response-header", "X-Two: 2")],
    )
    assert (extra.headers["x-one"], extra.headers["x-two"], extra.headers["x-from-query"]) == ("1", "2", "q")
    assert_identity(extra)


@pytest.mark.parametrize(
    ("draw", "status"),
    [
        pytest.param(0.0, 503, id="in-503-band"),
        pytest.param(0.26, 404, id="in-404-band"),
        pytest.param(0.5, 200, id="rest"),
    ],
)
async def test_status_mix_uses_injected_rng(draw: float, status: int) -> None:
    async with Harness(draw=draw).client() as client:
        response = await client.get("/x", headers={"x-set-response-status-mix": "503:25,404:5"})
    assert response.status_code == status


@pytest.mark.parametrize(
    ("attempt", "status"),
    [
        pytest.param(None, 503, id="no-count-is-first"),
        pytest.param("1", 503, id="first"),
        pytest.param("2", 503, id="second"),
        pytest.param("3", 200, id="third-passes"),
    ],
)
async def test_fail_attempts(client: httpx.AsyncClient, attempt: str | None, status: int) -> None:
    headers = {"x-fail-attempts": "2"}
    if attempt is not None:
        headers["x-envoy-attempt-count"] = attempt
    response = await client.get("/retry", headers=headers)
    assert response.status_code == status
    assert response.json()["mesh"]["attempt"] == (int(attempt) if attempt else None)


# -- mendhak environment -------------------------------------------------------------------------


async def test_echo_back_to_client_false() -> None:
    harness = Harness({"ECHO_BACK_TO_CLIENT": "false"})
    async with harness.client() as client:
        response = await client.get("/x", headers={"x-set-response-status-code": "202"})
    assert (response.status_code, response.content) == (202, b"")
    assert_identity(response)
    assert harness.logs()[0]["status"] == 202


async def test_override_response_body(tmp_path: Path) -> None:
    page = tmp_path / "page.html"
    page.write_bytes(b"<h1>hi</h1>")
    harness = Harness({"OVERRIDE_RESPONSE_BODY_FILE_PATH": str(page)})
    async with harness.client() as client:
        response = await client.get("/anything")
        unknown_type = create_app(
            EchoConfig(override_response_body_file_path=tmp_path / "blob"), IDENTITY, override_body=b"\x00"
        )
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=unknown_type), base_url="http://e"
        ) as other:
            blob = await other.get("/")
    assert response.content == b"<h1>hi</h1>"
    assert response.headers["content-type"] == "text/html; charset=utf-8"  # as Express's sendFile
    assert (blob.content, blob.headers["content-type"]) == (b"\x00", "application/octet-stream")


async def test_cors() -> None:
    env = {
        "CORS_ALLOW_ORIGIN": "https://app.example.invalid",
        "CORS_ALLOW_METHODS": "GET, POST",
        "CORS_ALLOW_HEADERS": "x-custom",
        "CORS_ALLOW_CREDENTIALS": "true",
    }
    async with Harness(env).client() as client:
        simple = await client.get("/x", headers={"origin": "https://app.example.invalid"})
        preflight = await client.options(
            "/x", headers={"origin": "https://app.example.invalid", "access-control-request-method": "POST"}
        )
        plain_options = await client.options("/x")
    for response in (simple, preflight):
        assert response.headers["access-control-allow-origin"] == "https://app.example.invalid"
        assert response.headers["access-control-allow-methods"] == "GET, POST"
        assert response.headers["access-control-allow-headers"] == "x-custom"
        assert response.headers["access-control-allow-credentials"] == "true"
    assert simple.status_code == 200
    assert (preflight.status_code, preflight.content) == (204, b"")
    assert plain_options.json()["method"] == "OPTIONS"
    async with Harness().client() as client:
        assert "access-control-allow-origin" not in (await client.get("/x")).headers


async def test_jwt_and_env_from_config() -> None:
    token = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.sig"
    harness = Harness(
        {"JWT_HEADER": "Authentication", "ECHO_INCLUDE_ENV_VARS": "true"}, environ={"A": "1", "MY_TOKEN": "t"}
    )
    async with harness.client() as client:
        doc = (await client.get("/", headers={"authentication": f"Bearer {token}"})).json()
    assert doc["jwt"] == {"header": {"alg": "none"}, "payload": {"sub": "x"}, "signature": "sig"}
    assert doc["env"] == {"A": "1", "MY_TOKEN": "[redacted]"}


async def test_preserve_header_case() -> None:
    async with Harness({"PRESERVE_HEADER_CASE": "true"}).client() as client:
        doc = (await client.get("/", headers={"x-thing": "1"})).json()
    assert doc["headers"]["X-Thing"] == "1"
    assert doc["headers"]["Host"] == "echo.local"


# -- limits --------------------------------------------------------------------------------------


async def test_header_limit_431(harness: Harness) -> None:
    small = Harness({"MAX_HEADER_SIZE": "200"})
    async with small.client() as client:
        ok = await client.get("/x")
        big = await client.get("/x", headers={"x-big": "a" * 300})
    assert ok.status_code == 200
    assert big.status_code == 431
    assert big.json()["error"].startswith("request headers total")
    assert big.headers["connection"] == "close"
    assert_identity(big)


async def test_declared_body_over_limit_413() -> None:
    harness = Harness({"ECHO_MAX_BODY_BYTES": "10"})
    async with harness.client() as client:
        ok = await client.post("/x", content=b"0123456789")
        big = await client.post("/x", content=b"0123456789A")
    assert ok.status_code == 200
    assert big.status_code == 413
    assert big.json() == {"error": "request body larger than 10 bytes", "limit": 10}
    assert_identity(big)
    assert harness.logs()[-1]["status"] == 413


class RawDriver:
    """Drives the ASGI app by hand: controls exactly which messages the app receives."""

    def __init__(self, app: EchoApp, incoming: list[dict[str, Any]]) -> None:
        self.app = app
        self.incoming = iter(incoming)
        self.received = 0
        self.sent: list[MutableMapping[str, Any]] = []

    async def receive(self) -> dict[str, Any]:
        self.received += 1
        return next(self.incoming)

    async def send(self, message: MutableMapping[str, Any]) -> None:
        self.sent.append(message)

    async def run(self, scope: dict[str, Any]) -> None:
        await self.app(scope, self.receive, self.send)


def http_scope(
    method: str = "POST", headers: list[tuple[bytes, bytes]] | None = None, http_version: str = "1.1"
) -> dict[str, Any]:
    return {
        "type": "http",
        "http_version": http_version,
        "method": method,
        "scheme": "http",
        "path": "/stream",
        "query_string": b"",
        "headers": headers or [(b"host", b"echo.local")],
        "client": ("127.0.0.1", 5000),
    }


def chunks(count: int, size: int) -> Iterator[dict[str, Any]]:
    for index in range(count):
        yield {"type": "http.request", "body": b"x" * size, "more_body": index < count - 1}


@pytest.mark.parametrize("http_version", ["1.1", "2"])
async def test_streamed_body_over_limit_stops_reading(http_version: str) -> None:
    harness = Harness({"ECHO_MAX_BODY_BYTES": "1000"})
    driver = RawDriver(harness.app, list(chunks(100, 300)))
    await driver.run(http_scope(http_version=http_version))
    # 300, 600, 900, 1200: the fourth chunk crosses the limit, and nothing after it is read.
    assert driver.received == 4
    start, body = driver.sent
    assert start["status"] == 413
    headers = dict(start["headers"])
    assert headers[b"x-echo-pod"] == b"echo-v1-abc"
    # No "Connection: close": the server discards the rest of the body as it arrives, and the client,
    # still sending, is not reset before it can read the 413.
    assert b"connection" not in headers
    assert orjson.loads(body["body"])["limit"] == 1000
    assert harness.logs()[0]["bytes_in"] == 1200


async def test_streamed_body_under_limit_is_joined() -> None:
    harness = Harness()
    driver = RawDriver(harness.app, list(chunks(3, 5)))
    await driver.run(http_scope())
    assert orjson.loads(driver.sent[1]["body"])["body"] == "x" * 15


async def test_client_disconnect_mid_body() -> None:
    harness = Harness()
    driver = RawDriver(
        harness.app,
        [{"type": "http.request", "body": b"abc", "more_body": True}, {"type": "http.disconnect"}],
    )
    await driver.run(http_scope())
    assert driver.sent == []
    assert harness.logs()[0]["status"] == 499


# -- request log ---------------------------------------------------------------------------------


async def test_request_log_line(harness: Harness, client: httpx.AsyncClient) -> None:
    await client.get(
        "/logged?q=1",
        headers={
            "authorization": "Bearer secret",
            "proxy-authorization": "Basic x",
            "cookie": "session=s",
            "x-request-id": "rid-9",
        },
    )
    (entry,) = harness.logs()
    assert entry["time"] == "2025-11-24T16:00:00.250Z"
    assert entry["pod"] == "echo-v1-abc"
    assert entry["version"] == "v1"
    assert entry["status"] == 200
    assert entry["latency_ms"] == 2.0
    assert entry["request_id"] == "rid-9"
    assert entry["method"] == "GET"
    assert entry["path"] == "/logged"
    assert entry["client"] == "127.0.0.1"
    assert entry["headers"]["authorization"] == "[redacted]"
    assert entry["headers"]["proxy-authorization"] == "[redacted]"
    assert entry["headers"]["cookie"] == "[redacted]"
    assert b"secret" not in harness.lines[0]
    assert b"session=s" not in harness.lines[0]
    assert entry["bytes_out"] > 0


@pytest.mark.parametrize(
    ("env", "logged"),
    [
        pytest.param({"DISABLE_REQUEST_LOGS": "true"}, [], id="disabled"),
        pytest.param({"LOG_IGNORE_PATH": "/ping"}, ["/pingx", "/other"], id="exact-path-as-mendhak"),
        pytest.param({"LOG_IGNORE_PATH": "/ping.*"}, ["/other"], id="regex"),
        pytest.param({"LOG_IGNORE_PATH": "/"}, ["/ping", "/pingx", "/other"], id="slash-is-not-everything"),
        pytest.param({"LOG_WITHOUT_NEWLINE": "true"}, ["/ping", "/pingx", "/other"], id="one-line-anyway"),
    ],
)
async def test_log_switches(env: dict[str, str], logged: list[str]) -> None:
    harness = Harness(env)
    async with harness.client() as client:
        for path in ("/ping", "/pingx", "/other"):
            assert (await client.get(path)).status_code == 200
    assert [entry["path"] for entry in harness.logs()] == logged


# -- websocket and lifespan ----------------------------------------------------------------------


async def test_websocket_echo(harness: Harness) -> None:
    driver = RawDriver(
        harness.app,
        [
            {"type": "websocket.connect"},
            {"type": "websocket.receive", "text": "hello"},
            {"type": "websocket.receive", "bytes": b"\x00\x01"},
            {"type": "websocket.receive", "text": ""},
            {"type": "websocket.disconnect", "code": 1000},
        ],
    )
    xfcc = b"By=spiffe://cluster.local/ns/echo/sa/echo;URI=spiffe://cluster.local/ns/echo/sa/caf\xc3\xa9"
    headers = [(b"x-forwarded-client-cert", xfcc), (b"x-envoy-attempt-count", b"1")]
    await driver.run({"type": "websocket", "path": "/any/path", "headers": headers, "query_string": b""})
    accept, *echoes = driver.sent
    assert accept["type"] == "websocket.accept"
    accepted = dict(accept["headers"])
    assert accepted.pop(b"x-echo-pod") == b"echo-v1-abc"
    assert accepted.pop(b"x-echo-version") == b"v1"
    mesh = json.loads(accepted.pop(b"x-echo-mesh").decode("ascii"))  # ASCII even for a non-ASCII URI
    assert accepted == {}
    assert mesh["sidecar"] is True
    assert mesh["attempt"] == 1
    assert mesh["client_identity"] == "spiffe://cluster.local/ns/echo/sa/café"
    assert echoes == [
        {"type": "websocket.send", "text": "hello"},
        {"type": "websocket.send", "bytes": b"\x00\x01"},
        {"type": "websocket.send", "text": ""},
    ]
    assert harness.app.metrics.websocket_sessions == 1
    assert harness.app.metrics.websocket_messages == 3


async def test_websocket_that_never_connects(harness: Harness) -> None:
    driver = RawDriver(harness.app, [{"type": "websocket.disconnect", "code": 1006}])
    await driver.run({"type": "websocket", "path": "/", "headers": [], "query_string": b""})
    assert driver.sent == []


async def test_lifespan(harness: Harness) -> None:
    driver = RawDriver(harness.app, [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])
    await driver.run({"type": "lifespan"})
    assert driver.sent == [{"type": "lifespan.startup.complete"}, {"type": "lifespan.shutdown.complete"}]


async def test_unknown_scope_type_is_ignored(harness: Harness) -> None:
    driver = RawDriver(harness.app, [])
    await driver.run({"type": "something-new"})
    assert driver.sent == []


async def test_tls_extension_reaches_document(harness: Harness) -> None:
    scope = http_scope("GET")
    scope["scheme"] = "https"
    scope["extensions"] = {
        "meshecho.tls": {
            "version": "TLSv1.3",
            "cipher": "TLS_AES_128_GCM_SHA256",
            "alpn": "http/1.1",
            "sni": "echo.local",
            "peer_cert_der": None,
        }
    }
    driver = RawDriver(harness.app, [{"type": "http.request", "body": b"", "more_body": False}])
    await driver.run(scope)
    doc = orjson.loads(driver.sent[1]["body"])
    assert doc["protocol"] == "https"
    assert doc["tls"]["alpn"] == "http/1.1"
    assert doc["connection"] == {"servername": "echo.local"}
    assert doc["clientCertificate"] == {}


# -- the default stdout sink ---------------------------------------------------------------------


def test_fd_sink_writes_at_once_outside_a_loop() -> None:
    read_end, write_end = os.pipe()
    try:
        sink = FdSink(write_end)
        sink(b'{"a":1}\n')
        sink(b'{"b":2}\n')
        assert os.read(read_end, 100) == b'{"a":1}\n{"b":2}\n'
    finally:
        os.close(read_end)
        os.close(write_end)


async def test_fd_sink_batches_within_a_loop_iteration() -> None:
    read_end, write_end = os.pipe()
    os.set_blocking(read_end, False)
    try:
        sink = FdSink(write_end)
        sink(b"one\n")
        sink(b"two\n")
        with pytest.raises(BlockingIOError):
            os.read(read_end, 100)  # nothing yet: the write waits for the end of this iteration
        await asyncio.sleep(0)
        assert os.read(read_end, 100) == b"one\ntwo\n"
    finally:
        os.close(read_end)
        os.close(write_end)


async def test_fd_sink_drops_lines_when_stdout_is_gone() -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)
    sink = FdSink(write_end)
    try:
        sink(b"lost\n")
        await asyncio.sleep(0)  # EPIPE inside flush: swallowed, the request is not failed
        sink.flush()
    finally:
        os.close(write_end)


async def test_lifespan_shutdown_flushes_the_sink() -> None:
    read_end, write_end = os.pipe()
    os.set_blocking(read_end, False)
    try:
        sink = FdSink(write_end)
        app = create_app(EchoConfig(), IDENTITY, log_sink=sink)
        sink(b"pending\n")
        driver = RawDriver(app, [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])
        await driver.run({"type": "lifespan"})
        assert os.read(read_end, 100) == b"pending\n"
    finally:
        os.close(read_end)
        os.close(write_end)


# -- the README's echo reference stays true ------------------------------------------------

DOCS = Path(__file__).resolve().parents[2] / "README.md"


async def test_docs_example_is_current() -> None:
    environ = {
        "POD_NAME": "echo-v1-6d5f7c9b8-x2x7q",
        "POD_NAMESPACE": "echo",
        "POD_IP": "10.244.1.17",
        "NODE_NAME": "worker-1",
        "POD_SERVICE_ACCOUNT": "echo",
        "SERVICE_VERSION": "v1",
    }
    # The injector labels a pod it gives a sidecar (security.istio.io/tlsMode): the mesh block reads it.
    labels = 'app="echo"\nsecurity.istio.io/tlsMode="istio"\nversion="v1"\n'
    identity = identity_from_environ(environ, "echo-v1-6d5f7c9b8-x2x7q", labels)
    app = create_app(EchoConfig(), identity, log_sink=lambda line: None)
    xfcc = (
        "By=spiffe://cluster.local/ns/echo/sa/echo;"
        "Hash=2a7d1c0b9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b;"
        'Subject="";URI=spiffe://cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account'
    )
    headers = [
        (b"host", b"echo.local"),
        (b"user-agent", b"curl/8.5.0"),
        (b"accept", b"*/*"),
        (b"content-type", b"application/json"),
        (b"content-length", b"16"),
        (b"x-forwarded-for", b"203.0.113.10"),
        (b"x-forwarded-proto", b"https"),
        (b"x-envoy-external-address", b"203.0.113.10"),
        (b"x-request-id", b"7f3c2a9e-5b1d-4e8f-9a6c-0d2b4f6e8a1c"),
        (b"x-envoy-attempt-count", b"1"),
        (b"traceparent", b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        (b"x-forwarded-client-cert", xfcc.encode()),
    ]
    scope = {
        "type": "http",
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/echo",
        "query_string": b"greeting=hi",
        "headers": headers,
        "client": ("127.0.0.6", 48712),
    }
    driver = RawDriver(app, [{"type": "http.request", "body": b'{"hello":"mesh"}', "more_body": False}])
    await driver.run(scope)
    generated = driver.sent[1]["body"].decode()
    text = DOCS.read_text(encoding="utf-8")
    documented = text.split("<!-- example:begin -->\n```json\n", 1)[1].split(
        "\n```\n<!-- example:end -->", 1
    )[0]
    assert documented == generated


def test_docs_cover_every_variable_control_and_endpoint() -> None:
    text = DOCS.read_text(encoding="utf-8")
    for name in env_var_names():
        assert f"`{name}`" in text, name
    for control in ALL_CONTROLS:
        assert f"`{control}`" in text, control
    for endpoint in ("livez", "readyz", "metrics"):
        assert f"`/_echo/{endpoint}`" in text, endpoint
    for field in (
        "sidecar",
        "evidence",
        "request_id",
        "trace",
        "attempt",
        "forwarded_for",
        "client_identity",
    ):
        assert f"`{field}`" in text, field


async def test_metrics_bound_method_cardinality_and_escape_labels() -> None:
    identity = Identity(name='pod"with\\quotes', hostname="h", version="v\n2")
    app = create_app(EchoConfig(), identity, log_sink=lambda line: None)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://e") as client:
        await client.request("PROPFIND", "/x")
        await client.request("BREW", "/x")
        response = await client.get("/_echo/metrics")
        text = response.text
    assert response.headers["x-echo-version"] == "v?2"  # no header injection from a version value
    labels = 'version="v\\n2",pod="pod\\"with\\\\quotes"'
    assert f'echo_requests_total{{method="other",status="200",{labels}}} 2' in text
    assert "PROPFIND" not in text
