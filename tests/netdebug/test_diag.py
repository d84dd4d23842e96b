"""dns/tcp/tls diagnostics against real loopback servers (trustme certificates, ALPN, SNI)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import json
import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from netdebug import cli, diag
from netdebug.context import UsageError
from netdebug.diag import Address, TlsOptions, parse_address

ADDRESS_CASES = [
    pytest.param("h:80", None, Address("h", 80), id="host-port"),
    pytest.param(" 127.0.0.1:8443 ", None, Address("127.0.0.1", 8443), id="ipv4-trimmed"),
    pytest.param("[::1]:443", None, Address("::1", 443), id="ipv6"),
    pytest.param("[::1]", 443, Address("::1", 443), id="ipv6-default-port"),
    pytest.param("echo.local", 443, Address("echo.local", 443), id="default-port"),
]


@pytest.mark.parametrize(("text", "default", "expected"), ADDRESS_CASES)
def test_parse_address(text: str, default: int | None, expected: Address) -> None:
    assert parse_address(text, default) == expected


ADDRESS_ERRORS = [
    pytest.param("", "empty", id="empty"),
    pytest.param("h", "missing port", id="no-port"),
    pytest.param(":80", "empty host", id="no-host"),
    pytest.param("h:0", "port must be 1-65535", id="port-zero"),
    pytest.param("h:http", "port must be 1-65535", id="port-name"),
    pytest.param("::1:80", "write IPv6 addresses as [ADDRESS]:PORT", id="bare-ipv6"),
    pytest.param("[::1", "missing ']'", id="unclosed-bracket"),
    pytest.param("[::1]80", "expected ':PORT' after ']'", id="junk-after-bracket"),
]


@pytest.mark.parametrize(("text", "message"), ADDRESS_ERRORS)
def test_parse_address_errors(text: str, message: str) -> None:
    with pytest.raises(UsageError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_address(text)


def test_address_str_brackets_ipv6() -> None:
    assert (str(Address("::1", 80)), str(Address("h", 80))) == ("[::1]:80", "h:80")


# --- DNS -----------------------------------------------------------------------------------------


def test_dns_localhost() -> None:
    result = asyncio.run(diag.resolve("localhost", 5.0))
    assert result.ok
    assert set(result.addresses) & {"127.0.0.1", "::1"}
    assert result.duration_ms >= 0
    assert diag.check_dns(result) == []
    assert diag.check_dns(result, resolves=False) != []
    assert diag.check_dns(result, addresses=["192.0.2.1"]) == [
        f"localhost: expected address 192.0.2.1 not among {', '.join(result.addresses)}"
    ]


def test_dns_failure_is_a_result() -> None:
    result = asyncio.run(diag.resolve("nonexistent.invalid", 5.0))
    assert not result.ok
    assert result.addresses == ()
    assert result.error
    assert diag.check_dns(result, resolves=False) == []
    assert diag.check_dns(result) == [f"nonexistent.invalid did not resolve: {result.error}"]
    assert diag.render_dns(result).startswith("dns nonexistent.invalid: failed after")


# --- TCP -----------------------------------------------------------------------------------------


@pytest.fixture
def listener() -> Iterator[int]:
    """A TCP listener on 127.0.0.1 that the kernel accepts connections for (backlog), never served."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield int(sock.getsockname()[1])


def closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_tcp_connects(listener: int) -> None:
    result = asyncio.run(diag.tcp_connect(Address("127.0.0.1", listener), 5.0))
    assert result.ok
    assert result.peer == f"127.0.0.1:{listener}"
    assert result.local is not None
    assert result.local.startswith("127.0.0.1:")
    assert result.dns_ms is None  # an IP needs no lookup
    assert result.connect_ms is not None
    assert result.connect_ms >= 0
    assert diag.check_tcp(result) == []
    assert diag.check_tcp(result, connects=False) == [
        f"127.0.0.1:{listener}: connected to 127.0.0.1:{listener}, expected no connection"
    ]
    assert "connected to" in diag.render_tcp(result)


def test_tcp_tries_every_address_of_a_name(listener: int) -> None:
    # localhost may resolve to ::1 first; the listener is on 127.0.0.1 only.
    result = asyncio.run(diag.tcp_connect(Address("localhost", listener), 5.0))
    assert result.ok, result.error
    assert result.dns_ms is not None


def test_tcp_refused() -> None:
    port = closed_port()
    result = asyncio.run(diag.tcp_connect(Address("127.0.0.1", port), 5.0))
    assert not result.ok
    assert result.error_kind == "connect"
    assert result.error == f"connect to 127.0.0.1:{port} failed: 127.0.0.1: Connection refused"
    assert diag.check_tcp(result, connects=False) == []


def test_tcp_unresolvable() -> None:
    result = asyncio.run(diag.tcp_connect(Address("nonexistent.invalid", 80), 5.0))
    assert result.error_kind == "dns"
    assert result.error is not None
    assert result.error.startswith("cannot resolve nonexistent.invalid")


# --- TLS -----------------------------------------------------------------------------------------


@dataclass
class TlsServer:
    port: int
    ca_file: Path
    leaf_der: bytes
    sni_seen: list[str | None] = field(default_factory=list)


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def tls_server(ca: trustme.CA, tmp_path: Path) -> Iterator[TlsServer]:
    with serve_tls(ca, tmp_path) as server:
        yield server


@contextlib.contextmanager
def serve_tls(ca: trustme.CA, tmp_path: Path) -> Iterator[TlsServer]:
    """A TLS server on a loopback port (own thread and loop) offering h2 and http/1.1."""
    leaf = ca.issue_cert("echo.local", "localhost", "127.0.0.1")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    leaf.configure_cert(ctx)
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    der = x509.load_pem_x509_certificate(leaf.cert_chain_pems[0].bytes()).public_bytes(Encoding.DER)
    state = TlsServer(0, ca_file, der)

    def remember_sni(sslobj: ssl.SSLObject, name: str | None, context: ssl.SSLContext) -> None:
        state.sni_seen.append(name)

    ctx.sni_callback = remember_sni
    loop = asyncio.new_event_loop()
    started = threading.Event()
    stop: asyncio.Event | None = None

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, ssl.SSLError):
            await reader.read(1)  # until the client closes
        writer.close()

    async def serve() -> None:
        nonlocal stop
        stop = asyncio.Event()
        server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=ctx)
        state.port = server.sockets[0].getsockname()[1]
        started.set()
        async with server:
            await stop.wait()

    thread = threading.Thread(target=lambda: loop.run_until_complete(serve()), daemon=True)
    thread.start()
    assert started.wait(10), "TLS server did not start"
    try:
        yield state
    finally:
        assert stop is not None
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)
        loop.close()


def handshake(server: TlsServer, **options: object) -> diag.TlsResult:
    opts = TlsOptions(**{"ca": str(server.ca_file), "timeout": 5.0, **options})  # type: ignore[arg-type]
    return asyncio.run(diag.tls_handshake(Address("127.0.0.1", server.port), opts))


def test_tls_handshake_verified_with_alpn_sni_and_certificate(tls_server: TlsServer) -> None:
    result = handshake(tls_server, sni="echo.local")
    assert result.ok, result.error
    assert result.verified
    assert result.alpn == "h2"
    assert result.version in ("TLSv1.2", "TLSv1.3")
    assert result.sni == "echo.local"
    assert tls_server.sni_seen == ["echo.local"]
    assert result.cert is not None
    assert result.cert.sans == ("DNS:echo.local", "DNS:localhost", "IP:127.0.0.1")
    assert result.cert.sha256 == ":".join(f"{b:02X}" for b in hashlib.sha256(tls_server.leaf_der).digest())
    assert "trustme" in result.cert.issuer
    assert result.cert.days_left > 300
    assert result.handshake_ms is not None
    assert result.connect_ms is not None
    assert (
        diag.check_tls(result, expect_alpn="h2", expect_version=result.version, expect_san=["echo.local"])
        == []
    )
    text = diag.render_tls(result)
    assert "alpn:      h2" in text
    assert "sans:      DNS:echo.local" in text


def test_tls_alpn_offer_and_expectation(tls_server: TlsServer) -> None:
    result = handshake(tls_server, sni="echo.local", alpn=("http/1.1",))
    assert result.alpn == "http/1.1"
    assert diag.check_tls(result, expect_alpn="h2") == ["ALPN http/1.1, expected h2"]
    assert diag.check_tls(result, expect_san=["other.local"]) == [
        "certificate SANs DNS:echo.local, DNS:localhost, IP:127.0.0.1 lack other.local"
    ]


def test_tls_no_sni_for_an_ip(tls_server: TlsServer) -> None:
    result = handshake(tls_server)
    assert result.ok, result.error  # the certificate has an IP SAN, so it verifies without SNI
    assert result.sni is None
    assert tls_server.sni_seen == [None]


def test_tls_untrusted_certificate_still_shows_it(tls_server: TlsServer) -> None:
    result = handshake(tls_server, sni="echo.local", ca=None)
    assert not result.ok
    assert result.error_kind == "verify"
    assert result.error is not None
    assert result.error.startswith("certificate verify failed")
    assert result.cert is not None
    assert "DNS:echo.local" in result.cert.sans
    assert not result.verified


def test_tls_wrong_name_fails_verification(tls_server: TlsServer) -> None:
    result = handshake(tls_server, sni="wrong.local")
    assert result.error_kind == "verify"
    assert "wrong.local" in (result.error or "") or "mismatch" in (result.error or "")


def test_tls_insecure_skips_verification(tls_server: TlsServer) -> None:
    result = handshake(tls_server, sni="wrong.local", ca=None, insecure=True)
    assert result.ok, result.error
    assert not result.verified
    assert result.cert is not None


def test_tls_against_a_plain_tcp_listener_fails_cleanly(listener: int) -> None:
    opts = TlsOptions(timeout=0.5, insecure=True)
    result = asyncio.run(diag.tls_handshake(Address("127.0.0.1", listener), opts))
    assert result.error_kind == "tls"
    assert result.error == f"TLS handshake with 127.0.0.1:{listener} failed: timed out"


def test_tls_refused() -> None:
    port = closed_port()
    result = asyncio.run(diag.tls_handshake(Address("127.0.0.1", port), TlsOptions(timeout=2.0)))
    assert result.error_kind == "connect"


def test_cert_info_is_pure(ca: trustme.CA) -> None:
    leaf = ca.issue_cert("a.example.invalid")
    cert = x509.load_pem_x509_certificate(leaf.cert_chain_pems[0].bytes())
    der = cert.public_bytes(Encoding.DER)
    info = diag.cert_info(der, cert.not_valid_after_utc)
    assert info.days_left == 0
    assert info.sans == ("DNS:a.example.invalid",)
    assert info.serial == format(cert.serial_number, "x")
    assert info.not_after == cert.not_valid_after_utc.isoformat()
    later = diag.cert_info(der, datetime(2000, 1, 1, tzinfo=UTC))
    assert later.days_left > 0


# --- the commands --------------------------------------------------------------------------------


def netdebug(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = cli.main_impl(argv, {}, out, err)
    return code, out.getvalue(), err.getvalue()


def test_command_dns() -> None:
    code, out, _ = netdebug(["dns", "localhost", "--output", "json"])
    assert code == 0
    assert json.loads(out)["name"] == "localhost"
    code, out, _ = netdebug(["dns", "nonexistent.invalid"])
    assert code == 4
    assert out.startswith("dns nonexistent.invalid: failed")


def test_command_tcp(listener: int) -> None:
    code, out, _ = netdebug(["tcp", f"127.0.0.1:{listener}"])
    assert (code, out.startswith(f"tcp 127.0.0.1:{listener}: connected")) == (0, True)
    code, out, _ = netdebug(["tcp", f"127.0.0.1:{closed_port()}", "--timeout", "2"])
    assert code == 4
    assert "Connection refused" in out


def test_command_tls(tls_server: TlsServer) -> None:
    target = f"127.0.0.1:{tls_server.port}"
    args = ["tls", target, "--sni", "echo.local", "--ca", str(tls_server.ca_file)]
    code, out, _ = netdebug([*args, "--output", "json"])
    assert code == 0
    doc = json.loads(out)
    assert (doc["alpn"], doc["verified"], doc["exit_code"]) == ("h2", True, 0)
    assert doc["cert"]["sans"] == ["DNS:echo.local", "DNS:localhost", "IP:127.0.0.1"]
    code, out, _ = netdebug([*args, "--alpn", "http/1.1", "--expect-alpn", "h2"])
    assert code == 1
    assert "FAIL: ALPN http/1.1, expected h2" in out
    code, out, _ = netdebug(["tls", target, "--sni", "echo.local"])
    assert code == 4
    assert "certificate verify failed" in out
    code, _, _ = netdebug(["tls", target, "--sni", "echo.local", "-k"])
    assert code == 0


COMMAND_ERRORS = [
    pytest.param(
        ["tcp", "localhost"], "address 'localhost': missing port; expected HOST:PORT", id="tcp-no-port"
    ),
    pytest.param(["tcp", "h:1", "--timeout", "0"], "--timeout: must be > 0", id="zero-timeout"),
    pytest.param(
        ["dns", "x", "--timeout", "x"], "--timeout: expected a number of seconds, got 'x'", id="bad-timeout"
    ),
    pytest.param(["tls", "h:1", "--alpn", ","], "--alpn ',': expected a comma-separated list", id="bad-alpn"),
    pytest.param(
        ["tls", "h:1", "--ca", "/nonexistent/ca.pem"], "--ca /nonexistent/ca.pem: no such file", id="no-ca"
    ),
]


@pytest.mark.parametrize(("argv", "message"), COMMAND_ERRORS)
def test_command_usage_errors(argv: list[str], message: str) -> None:
    code, out, err = netdebug(argv)
    assert code == 2
    assert out == ""
    assert err.splitlines()[0].startswith(f"netdebug {argv[0]}: error: {message}")


def test_bad_ca_file_is_a_usage_error(tmp_path: Path) -> None:
    bad = tmp_path / "ca.pem"
    bad.write_text("not a certificate")
    code, _, err = netdebug(["tls", "127.0.0.1:1", "--ca", str(bad)])
    assert code == 2
    assert "not a PEM CA bundle" in err
