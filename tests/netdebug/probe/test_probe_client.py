from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme

from netdebug.probe.attribution import By, parse_by
from netdebug.probe.client import ClientOptions, Prober, classify_error, interpret, resolve_target
from netdebug.probe.h1 import ResponseError, build_request
from tests.netdebug.probe.probe_support import Answer, echo_answer, scripted

AUTO = By("auto")


@pytest.mark.parametrize(
    ("status", "headers", "body", "version", "kind", "error"),
    [
        pytest.param(200, {"x-echo-version": "v1"}, b"{}", "v1", "bypass", None, id="header"),
        pytest.param(200, {}, b'{"pod": {"version": "v2"}}', "v2", "bypass", None, id="json"),
        pytest.param(
            200,
            {"server": "envoy", "x-envoy-upstream-service-time": "2"},
            b'{"pod": {"version": "v2"}}',
            "v2",
            "client-sidecar",
            None,
            id="via-envoy",
        ),
        pytest.param(404, {"server": "envoy"}, b"", None, "local-reply", None, id="local-reply"),
        pytest.param(503, {"x-echo-version": "v1"}, b"{}", None, "bypass", None, id="non-2xx-no-version"),
        pytest.param(200, {}, b"<html>hello</html>", None, "bypass", "no-version", id="non-json"),
        pytest.param(200, {}, b"{not json", None, "bypass", "no-version", id="broken-json"),
    ],
)
def test_interpret(
    status: int, headers: dict[str, str], body: bytes, version: str | None, kind: str, error: str | None
) -> None:
    s = interpret(status, headers, body, "HTTP/1.1", AUTO)
    assert (s.status, s.version, s.kind, s.error) == (status, version, kind, error)


def test_interpret_no_version_explains() -> None:
    s = interpret(200, {}, b"plain", "HTTP/1.1", parse_by("header:x-v"))
    assert s.detail == "the answer names no version (by header:x-v; body not JSON)"


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        pytest.param(socket.gaierror(-2, "Name or service not known"), "dns", id="dns"),
        pytest.param(ssl.SSLCertVerificationError("certificate verify failed"), "tls", id="tls"),
        pytest.param(ConnectionRefusedError(111, "Connection refused"), "connect", id="refused"),
        pytest.param(TimeoutError(), "timeout", id="timeout"),
        pytest.param(ResponseError("server closed"), "protocol", id="protocol"),
        pytest.param(ConnectionResetError(104, "reset"), "read", id="reset"),
        pytest.param(httpx.ConnectTimeout("t"), "timeout", id="httpx-timeout"),
        pytest.param(httpx.RemoteProtocolError("bad"), "protocol", id="httpx-protocol"),
        pytest.param(ValueError("x"), "other", id="other"),
    ],
)
def test_classify_error(exc: BaseException, kind: str) -> None:
    assert classify_error(exc)[0] == kind


def test_classify_error_follows_the_cause_chain() -> None:
    outer = httpx.ConnectError("x")
    outer.__cause__ = socket.gaierror(-2, "Name or service not known")
    assert classify_error(outer) == ("dns", "x")


@pytest.mark.parametrize(
    ("url", "resolve", "connect_to", "expected"),
    [
        pytest.param(
            "http://echo.local/echo",
            (("echo.local", 80, "127.0.0.1"),),
            (),
            ("http://127.0.0.1/echo", "echo.local", None),
            id="resolve",
        ),
        pytest.param(
            "https://echo.local:8443/",
            (("echo.local", 8443, "127.0.0.1"),),
            (),
            ("https://127.0.0.1:8443/", "echo.local:8443", "echo.local"),
            id="resolve-tls-sni",
        ),
        pytest.param(
            "http://echo.local/",
            (("echo.local", 8080, "127.0.0.1"),),
            (),
            ("http://echo.local/", None, None),
            id="resolve-other-port",
        ),
        pytest.param(
            "http://echo.local/",
            (),
            (("", None, "127.0.0.1", 9000),),
            ("http://127.0.0.1:9000/", "echo.local", None),
            id="connect-to-any",
        ),
        pytest.param(
            "http://a/",
            (),
            (("b", None, "127.0.0.1", None),),
            ("http://a/", None, None),
            id="connect-to-other-host",
        ),
    ],
)
def test_resolve_target(
    url: str, resolve: Any, connect_to: Any, expected: tuple[str, str | None, str | None]
) -> None:
    t = resolve_target(url, resolve, connect_to)
    assert (t.url, t.host_header, t.sni) == expected


def test_build_request() -> None:
    raw = build_request("POST", "/echo?a=1", "echo.local", (("Host", "other"), ("x-a", "b")), b"hi", True)
    head, body = raw.split(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0] == "POST /echo?a=1 HTTP/1.1"
    assert "Host: other" in lines
    assert "host: echo.local" not in lines
    assert "content-length: 2" in lines
    assert "connection: close" in lines
    assert body == b"hi"
    with pytest.raises(ValueError, match="line breaks"):
        build_request("GET", "/", "h", (("x", "a\r\nb"),), None, False)


def options(url: str, **kw: Any) -> ClientOptions:
    base: dict[str, Any] = dict(
        url=url,
        method="GET",
        headers=(),
        body=None,
        http2=False,
        insecure=False,
        cacert=None,
        cert=None,
        key=None,
        timeout=2.0,
        new_connection=False,
        resolve=(),
        connect_to=(),
        max_connections=10,
        by=AUTO,
    )
    base.update(kw)
    return ClientOptions(**base)


async def _run(prober: Prober, n: int) -> list[Any]:
    try:
        return [await prober(i) for i in range(n)]
    finally:
        await prober.aclose()


@pytest.mark.anyio
@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(echo_answer("v1"), id="content-length"),
        pytest.param(Answer(200, {"x-echo-version": "v1"}, b'{"a": 1}', chunked=True), id="chunked"),
        pytest.param(Answer(200, {"x-echo-version": "v1"}, b'{"a": 1}', close=True), id="until-close"),
    ],
)
async def test_h1_bodies_and_keep_alive(answer: Answer) -> None:
    with scripted({"/echo": [answer]}) as server:
        samples = await _run(Prober(options(server.url())), 5)
        assert [s.version for s in samples] == ["v1"] * 5
        assert all(s.error is None for s in samples)
        assert server.connections == (5 if answer.close else 1)


@pytest.mark.anyio
async def test_h1_new_connection_per_request() -> None:
    with scripted({"/echo": [echo_answer("v1")]}) as server:
        await _run(Prober(options(server.url(), new_connection=True)), 4)
        assert server.connections == 4
        assert all(b"connection: close" in r for r in server.requests)


@pytest.mark.anyio
async def test_h1_resolve_keeps_host_header() -> None:
    with scripted({"/echo": [echo_answer("v1")]}) as server:
        url = f"http://echo.local:{server.port}/echo"
        samples = await _run(Prober(options(url, resolve=(("echo.local", server.port, "127.0.0.1"),))), 1)
        assert samples[0].version == "v1"
        assert f"host: echo.local:{server.port}".encode() in server.requests[0]


@pytest.mark.anyio
async def test_h1_timeout_and_refused() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()  # accepts into the backlog and never answers
    port = listener.getsockname()[1]
    try:
        samples = await _run(Prober(options(f"http://127.0.0.1:{port}/", timeout=0.2)), 1)
        assert samples[0].error == "timeout"
    finally:
        listener.close()
    samples = await _run(Prober(options(f"http://127.0.0.1:{port}/")), 1)
    assert samples[0].error == "connect"


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    ca = trustme.CA()
    cert = ca.issue_cert("echo.local", "127.0.0.1")
    d = tmp_path_factory.mktemp("tls")
    ca.cert_pem.write_to_path(str(d / "ca.pem"))
    cert.private_key_and_cert_chain_pem.write_to_path(str(d / "server.pem"))
    return d / "ca.pem", d / "server.pem", d


async def _tls_server(server_pem: Path) -> asyncio.base_events.Server:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(server_pem))

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            body = b'{"pod": {"version": "v1"}}'
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body))
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0, ssl=ctx)


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("use_ca", "insecure", "error"),
    [
        pytest.param(True, False, None, id="verified"),
        pytest.param(False, False, "tls", id="untrusted"),
        pytest.param(False, True, None, id="insecure"),
    ],
)
async def test_h1_tls(
    tls_files: tuple[Path, Path, Path], use_ca: bool, insecure: bool, error: str | None
) -> None:
    ca, server_pem, _ = tls_files
    server = await _tls_server(server_pem)
    port = server.sockets[0].getsockname()[1]
    try:
        opts = options(f"https://127.0.0.1:{port}/", cacert=str(ca) if use_ca else None, insecure=insecure)
        samples = await _run(Prober(opts), 1)
        assert samples[0].error == error
        if error is None:
            assert samples[0].version == "v1"
    finally:
        server.close()


ASGIApp = Callable[[MutableMapping[str, Any], Any, Any], Awaitable[None]]


def versioned_app(versions: list[str]) -> ASGIApp:
    state = {"i": 0}

    async def app(scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        version = versions[state["i"] % len(versions)]
        state["i"] += 1
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"x-echo-version", version.encode()), (b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": b"{}"})

    return app


@pytest.mark.anyio
async def test_httpx_path_in_process() -> None:
    prober = Prober(
        options("http://echo-service/echo"), transport=httpx.ASGITransport(app=versioned_app(["v1", "v2"]))
    )
    samples = await _run(prober, 4)
    assert [s.version for s in samples] == ["v1", "v2", "v1", "v2"]


@pytest.mark.anyio
async def test_h1_ipv6_literal_host_header() -> None:
    seen: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await reader.readuntil(b"\r\n\r\n"))
        writer.write(b"HTTP/1.1 200 OK\r\nx-echo-version: v1\r\ncontent-length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    try:
        server = await asyncio.start_server(handle, "::1", 0)
    except OSError:
        pytest.skip("no IPv6 loopback on this machine")
    port = server.sockets[0].getsockname()[1]
    try:
        samples = await _run(Prober(options(f"http://[::1]:{port}/echo")), 1)
    finally:
        server.close()
    assert samples[0].version == "v1"
    assert f"host: [::1]:{port}".encode() in seen[0]
