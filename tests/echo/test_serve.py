"""Real-process tests of echo-server's serving layer: each starts `python -m echo` on free loopback ports.

Covered: plain HTTP, HTTPS (trustme) over HTTP/1.1 and HTTP/2, h2c (prior knowledge and Upgrade),
mTLS client-certificate reporting (verified and unverified), the generated ECDSA certificate,
WebSocket (ws and wss), 431 and 413 without buffering the excess, malformed HTTP, a taken port, and
the SIGTERM/SIGINT drain.
"""

from __future__ import annotations

import signal
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme
import websockets.sync.client
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from tests.echo.serving import (
    ECHO,
    PKI,
    READY_PATH,
    Echo,
    echo_server,
    make_pki,
    raw_connection,
    read_until,
    send_tolerant,
)
from tests.echo.serving import ready as _ready
from tests.procs import free_port, port_open, running, wait_until


def _ready_tls(port: int) -> bool:
    try:
        return (
            httpx.get(f"https://127.0.0.1:{port}{READY_PATH}", timeout=0.5, verify=False).status_code == 200
        )
    except httpx.HTTPError:
        return False


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return make_pki(tmp_path_factory.mktemp("pki"))


def _tls_env(pki: PKI) -> dict[str, str]:
    return pki.env()


HEADER_LIMIT = 4096
BODY_LIMIT = 65536


@pytest.fixture(scope="module")
def shared(pki: PKI) -> Iterator[Echo]:
    """One server with every listener and small limits, for the tests that do not stop it."""
    env = _tls_env(pki) | {"MAX_HEADER_SIZE": str(HEADER_LIMIT), "ECHO_MAX_BODY_BYTES": str(BODY_LIMIT)}
    with echo_server(env, h2c=True) as echo:
        yield echo


# --- plain HTTP, HTTPS, HTTP/2, h2c -----------------------------------------------------------------


def test_http_echo_with_identity_headers(shared: Echo) -> None:
    response = httpx.get(shared.url("/some/path?x=1"), headers={"x-test": "yes"})
    assert response.status_code == 200
    assert response.headers["x-echo-pod"] == "echo-test-pod"
    assert response.headers["x-echo-version"] == "v-test"
    doc = response.json()
    assert doc["path"] == "/some/path"
    assert doc["http_version"] == "1.1"
    assert doc["headers"]["x-test"] == "yes"
    assert doc["tls"] is None


@pytest.mark.parametrize(
    ("http2", "http_version", "alpn"),
    [pytest.param(False, "1.1", "http/1.1", id="http1.1"), pytest.param(True, "2", "h2", id="h2")],
)
def test_https_with_given_certificate(
    pki: PKI, shared: Echo, http2: bool, http_version: str, alpn: str
) -> None:
    with httpx.Client(verify=pki.client_context(), http2=http2) as client:
        response = client.get(shared.url("/tls", "https"), extensions={"sni_hostname": "localhost"})
    assert response.status_code == 200
    assert response.http_version == ("HTTP/2" if http2 else "HTTP/1.1")
    doc = response.json()
    assert doc["http_version"] == http_version
    assert doc["protocol"] == "https"
    assert doc["tls"]["alpn"] == alpn
    assert doc["tls"]["sni"] == "localhost"
    assert doc["tls"]["version"] in ("TLSv1.2", "TLSv1.3")
    assert doc["tls"]["cipher"]
    assert doc["tls"]["client_certificate"] is None
    assert response.headers["x-echo-pod"] == "echo-test-pod"


def test_generated_certificate_is_ecdsa_p256_with_local_names() -> None:
    with echo_server({"POD_IP": "127.0.0.9"}) as echo:
        assert echo.https is not None
        pem = ssl.get_server_certificate(("127.0.0.1", echo.https))
        response = httpx.get(echo.url("/", "https"), verify=False)
    cert = x509.load_pem_x509_certificate(pem.encode())
    key = cert.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    assert key.curve.name == "secp256r1"
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in sans.get_values_for_type(x509.DNSName)
    ips = {str(ip) for ip in sans.get_values_for_type(x509.IPAddress)}
    assert {"127.0.0.1", "127.0.0.9"} <= ips
    assert response.status_code == 200
    assert response.json()["tls"]["version"] == "TLSv1.3"


def test_https_only(pki: PKI) -> None:
    """HTTP_PORT=off: the HTTPS port still serves HTTP/1.1 (uvicorn) and HTTP/2 (hypercorn)."""
    https_port = free_port()
    env = _tls_env(pki) | {
        "HTTP_PORT": "off",
        "HTTPS_PORT": str(https_port),
        "ECHO_BIND": "127.0.0.1",
        "DISABLE_REQUEST_LOGS": "true",
    }
    with running(ECHO, env=env, ready=lambda: _ready_tls(https_port), what="echo-server (https only)"):
        for http2 in (False, True):
            with httpx.Client(verify=pki.client_context(), http2=http2) as client:
                response = client.get(f"https://127.0.0.1:{https_port}/only")
            assert response.json()["http_version"] == ("2" if http2 else "1.1")
            assert response.json()["tls"]["alpn"] == ("h2" if http2 else "http/1.1")


def test_h2c_prior_knowledge_and_http1_on_the_h2c_port(shared: Echo) -> None:
    with httpx.Client(http1=False, http2=True) as client:
        h2 = client.get(shared.url("/h2c", "h2c"))
    h1 = httpx.get(shared.url("/h1", "h2c"))
    assert h2.http_version == "HTTP/2"
    assert h2.json()["http_version"] == "2"
    assert h2.json()["protocol"] == "http"
    assert h1.json()["http_version"] == "1.1"


def test_h2c_upgrade_switches_protocols(shared: Echo) -> None:
    assert shared.h2c is not None
    with socket.create_connection(("127.0.0.1", shared.h2c), timeout=5) as sock:
        sock.sendall(
            b"GET /upgrade HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade, HTTP2-Settings\r\n"
            b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n"
        )
        head = read_until(sock, b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101 ")
    assert b"upgrade: h2c" in head.lower()


def test_plain_http_port_has_no_h2c(shared: Echo) -> None:
    """The fast HTTP/1.1 port refuses an HTTP/2 preface rather than hanging."""
    with httpx.Client(http1=False, http2=True, timeout=5) as client, pytest.raises(httpx.HTTPError):
        client.get(shared.url("/"))
    assert httpx.get(shared.url("/")).status_code == 200  # and keeps serving


# --- mTLS ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("with_ca", "client_ca_known"),
    [
        pytest.param(True, True, id="ca-bundle-verified"),
        pytest.param(False, False, id="no-ca-bundle-unverified-reported"),
    ],
)
def test_mtls_reports_client_certificate(
    pki: PKI, tmp_path: Path, with_ca: bool, client_ca_known: bool
) -> None:
    client_ca = pki.ca if client_ca_known else trustme.CA()
    client_cert = client_ca.issue_cert("client.test")
    env = _tls_env(pki) | {"MTLS_ENABLE": "true"}
    if with_ca:
        env["MTLS_CA_FILE"] = str(pki.ca_file)
    context = pki.client_context()
    client_cert.configure_cert(context)
    with echo_server(env) as echo, httpx.Client(verify=context, http2=True) as client:
        response = client.get(echo.url("/mtls", "https"), extensions={"sni_hostname": "localhost"})
    assert response.status_code == 200
    described = response.json()["tls"]["client_certificate"]
    assert described is not None
    assert "DNS:client.test" in described["sans"]
    assert described["issuer"] == _issuer_of(client_ca)
    assert len(described["sha256"]) == 64
    assert response.json()["clientCertificate"]["fingerprint256"]


def _issuer_of(ca: trustme.CA) -> str:
    return x509.load_pem_x509_certificate(ca.cert_pem.bytes()).subject.rfc4514_string()


def test_mtls_without_client_certificate(pki: PKI) -> None:
    """MTLS_ENABLE alone requests a certificate (optional); with a CA bundle one is required."""
    with echo_server(_tls_env(pki) | {"MTLS_ENABLE": "true"}) as echo:
        with httpx.Client(verify=pki.client_context()) as client:
            response = client.get(echo.url("/", "https"), extensions={"sni_hostname": "localhost"})
        assert response.json()["tls"]["client_certificate"] is None
    with echo_server(_tls_env(pki) | {"MTLS_ENABLE": "true", "MTLS_CA_FILE": str(pki.ca_file)}) as echo:
        with httpx.Client(verify=pki.client_context()) as client, pytest.raises(httpx.HTTPError):
            client.get(echo.url("/", "https"), extensions={"sni_hostname": "localhost"})
        assert _ready(echo.http)  # a failed handshake does not disturb the server


# --- WebSocket ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", [pytest.param("ws", id="ws"), pytest.param("wss", id="wss")])
def test_websocket_echo(pki: PKI, shared: Echo, scheme: str) -> None:
    port = shared.https if scheme == "wss" else shared.http
    context = pki.client_context() if scheme == "wss" else None
    with websockets.sync.client.connect(
        f"{scheme}://127.0.0.1:{port}/any/path",
        ssl=context,
        server_hostname="localhost" if context else None,
        open_timeout=5,
    ) as ws:
        ws.send("hello")
        text = ws.recv(timeout=5)
        ws.send(b"\x00\xffbinary")
        binary = ws.recv(timeout=5)
        assert ws.response is not None
        pod = ws.response.headers.get("x-echo-pod")
    assert text == "hello"
    assert binary == b"\x00\xffbinary"
    assert pod == "echo-test-pod"


# --- limits and bad input -----------------------------------------------------------------------------


LISTENERS = [pytest.param("http", id="http-uvicorn"), pytest.param("https", id="https-hypercorn")]


@pytest.mark.parametrize("scheme", [*LISTENERS, pytest.param("h2c", id="h2c-port-http1.1-hypercorn")])
@pytest.mark.parametrize(
    ("header_bytes", "complete"),
    [
        pytest.param(HEADER_LIMIT + 2000, True, id="complete-headers-over-limit"),
        pytest.param(512 * 1024, False, id="endless-headers-answered-before-end"),
    ],
)
def test_headers_over_max_header_size_get_431(
    pki: PKI, shared: Echo, scheme: str, header_bytes: int, complete: bool
) -> None:
    with raw_connection(shared, scheme, pki) as sock:
        send_tolerant(sock, b"GET /big HTTP/1.1\r\nHost: localhost\r\nX-Big: ")
        sent = 0
        while sent < header_bytes and send_tolerant(sock, b"a" * min(16384, header_bytes - sent)):
            sent += 16384
        if complete:
            send_tolerant(sock, b"\r\n\r\n")
        head = read_until(sock, b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 431 "), head[:200]
    assert httpx.get(shared.url("/small")).status_code == 200


@pytest.mark.parametrize("scheme", [*LISTENERS, pytest.param("h2c", id="h2c-port-http1.1-hypercorn")])
@pytest.mark.parametrize(
    "framing",
    [
        pytest.param("chunked", id="chunked-stream-never-finished"),
        pytest.param("length", id="huge-content-length"),
    ],
)
def test_body_over_max_gets_413_without_reading_the_rest(
    pki: PKI, shared: Echo, scheme: str, framing: str
) -> None:
    """The server answers 413 while the client is still sending: the excess is never read or buffered."""
    with raw_connection(shared, scheme, pki) as sock:
        if framing == "chunked":
            send_tolerant(sock, b"POST /up HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n")
            chunk = b"4000\r\n" + b"x" * 0x4000 + b"\r\n"
            for _ in range(BODY_LIMIT // 0x4000 + 1):  # just over the limit, never the final 0-chunk
                send_tolerant(sock, chunk)
        else:
            send_tolerant(
                sock, b"POST /up HTTP/1.1\r\nHost: localhost\r\nContent-Length: 10737418240\r\n\r\n"
            )
            send_tolerant(sock, b"x" * 1024)
        head = read_until(sock, b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413 "), head[:200]
    assert httpx.get(shared.url("/after")).status_code == 200


@pytest.mark.parametrize("scheme", [pytest.param("https", id="h2-tls"), pytest.param("h2c", id="h2c")])
@pytest.mark.parametrize(
    ("headers", "content", "status"),
    [
        pytest.param({"x-big": "a" * (HEADER_LIMIT + 100)}, b"", 431, id="431"),
        pytest.param({}, b"x" * (BODY_LIMIT + 1), 413, id="413"),
        pytest.param({}, b"x" * BODY_LIMIT, 200, id="at-the-limit"),
    ],
)
def test_http2_limits(
    pki: PKI, shared: Echo, scheme: str, headers: dict[str, str], content: bytes, status: int
) -> None:
    verify: ssl.SSLContext | bool = pki.client_context() if scheme == "https" else False
    with httpx.Client(http1=False, http2=True, verify=verify) as client:
        response = client.post(shared.url("/limits", scheme), headers=headers, content=content)
        # The same HTTP/2 connection keeps serving (an early 413 once dropped it in hypercorn).
        after = client.get(shared.url("/after", scheme))
    assert response.http_version == "HTTP/2"
    assert response.status_code == status
    assert after.status_code == 200


@pytest.mark.parametrize("scheme", [*LISTENERS, pytest.param("h2c", id="h2c-hypercorn")])
def test_malformed_http_gets_400_and_the_server_stays_up(pki: PKI, shared: Echo, scheme: str) -> None:
    with raw_connection(shared, scheme, pki) as sock:
        sock.sendall(b"THIS IS NOT HTTP\x00\x01\r\n\r\n")
        head = read_until(sock, b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 "), head[:200]
    assert shared.proc.poll() is None
    assert httpx.get(shared.url("/still-here")).status_code == 200


# --- start-up errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "taken", [pytest.param("HTTP_PORT", id="http"), pytest.param("HTTPS_PORT", id="https")]
)
def test_taken_port_is_a_clean_error(taken: str) -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        taken_port = blocker.getsockname()[1]
        env = {
            "HTTP_PORT": str(free_port()),
            "HTTPS_PORT": str(free_port()),
            "ECHO_BIND": "127.0.0.1",
            taken: str(taken_port),
        }
        result = subprocess.run(
            ECHO, env=_child_env(env), capture_output=True, text=True, timeout=30, check=False
        )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert lines == [f"echo-server: error: cannot listen for {'http' if taken == 'HTTP_PORT' else 'https'} "
                     f"on 127.0.0.1:{taken_port}: address already in use"]  # fmt: skip
    assert result.stdout == ""


def test_bad_certificate_pair_is_a_clean_error(pki: PKI, tmp_path: Path) -> None:
    other_key = tmp_path / "other.pem"
    trustme.CA().issue_cert("localhost").private_key_pem.write_to_path(str(other_key))
    env = {
        "HTTP_PORT": str(free_port()),
        "HTTPS_PORT": str(free_port()),
        "ECHO_BIND": "127.0.0.1",
        "HTTPS_CERT_FILE": str(pki.cert_file),
        "HTTPS_KEY_FILE": str(other_key),
    }
    result = subprocess.run(
        ECHO, env=_child_env(env), capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"echo-server: error: HTTPS_KEY_FILE {other_key} does not match the (first) certificate in "
        f"HTTPS_CERT_FILE {pki.cert_file}"
    ]


def _child_env(extra: Mapping[str, str]) -> dict[str, str]:
    import os

    return {**os.environ, "DISABLE_REQUEST_LOGS": "true", **extra}


# --- SIGTERM / SIGINT drain -----------------------------------------------------------------------------


def _in_flight(port: int) -> int:
    text = httpx.get(f"http://127.0.0.1:{port}/_echo/metrics", timeout=2).text
    for line in text.splitlines():
        if line.startswith("echo_in_flight_requests"):
            return int(float(line.rsplit(" ", 1)[1]))
    raise AssertionError("no echo_in_flight_requests gauge in /_echo/metrics")


SLOW_MS = 2500


def _background_get(url: str, **kwargs: Any) -> tuple[threading.Thread, dict[str, Any]]:
    """A GET delayed SLOW_MS by the server, in a thread; records the response and when it arrived."""
    outcome: dict[str, Any] = {}

    def call() -> None:
        try:
            with httpx.Client(timeout=30, **kwargs) as client:
                outcome["response"] = client.get(url, headers={"x-set-response-delay-ms": str(SLOW_MS)})
                outcome["at"] = time.monotonic()
        except httpx.HTTPError as error:
            outcome["error"] = error

    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    return thread, outcome


def _signal_while_in_flight(echo: Echo, signum: int, outcome: dict[str, Any]) -> float:
    wait_until(lambda: _in_flight(echo.http) >= 1, 10, "the slow request to be in flight")
    signalled = time.monotonic()
    echo.proc.send_signal(signum)
    return signalled


def _assert_completed_after(outcome: dict[str, Any], signalled: float) -> None:
    assert "error" not in outcome, outcome.get("error")
    assert outcome["response"].status_code == 200
    # It really was in flight when the signal arrived (else this test would prove nothing).
    assert outcome["at"] > signalled


@pytest.mark.slow
@pytest.mark.parametrize(
    ("signum", "scheme"),
    [
        pytest.param(signal.SIGTERM, "http", id="sigterm-http"),
        pytest.param(signal.SIGTERM, "https", id="sigterm-https-h2"),
        pytest.param(signal.SIGTERM, "https-http1.1", id="sigterm-https-http1.1"),
        pytest.param(signal.SIGINT, "http", id="sigint-http"),
    ],
)
def test_drain_finishes_in_flight_and_serves_new_requests(pki: PKI, signum: int, scheme: str) -> None:
    with echo_server(_tls_env(pki) | {"ECHO_DRAIN_SECONDS": "5"}) as echo:
        client_options: dict[str, Any] = {}
        if scheme.startswith("https"):
            client_options = {"verify": pki.client_context(), "http2": scheme == "https"}
        thread, outcome = _background_get(echo.url("/slow", scheme.split("-")[0]), **client_options)
        signalled = _signal_while_in_flight(echo, signum, outcome)
        wait_until(
            lambda: httpx.get(echo.url(READY_PATH)).status_code == 503,
            5,
            "readiness to turn 503 while draining",
        )
        during = httpx.get(echo.url("/new-during-drain"))
        assert during.status_code == 200
        assert during.json()["path"] == "/new-during-drain"
        thread.join(30)
        _assert_completed_after(outcome, signalled)
        assert echo.proc.wait(30) == 0


@pytest.mark.slow
def test_in_flight_request_outlives_a_short_drain() -> None:
    """Drain 0 s: listeners close at once, but a request already being served still completes."""
    with echo_server(https=False) as echo:
        thread, outcome = _background_get(echo.url("/slow"))
        signalled = _signal_while_in_flight(echo, signal.SIGTERM, outcome)
        wait_until(lambda: not port_open(echo.http), 5, "the HTTP listener to close")
        assert echo.proc.poll() is None  # still finishing the slow request
        thread.join(30)
        _assert_completed_after(outcome, signalled)
        assert echo.proc.wait(30) == 0


@pytest.mark.slow
def test_second_signal_cuts_the_drain_short() -> None:
    with echo_server(https=False, env={"ECHO_DRAIN_SECONDS": "600"}) as echo:
        echo.proc.send_signal(signal.SIGTERM)
        wait_until(lambda: httpx.get(echo.url(READY_PATH)).status_code == 503, 5, "draining")
        echo.proc.send_signal(signal.SIGTERM)
        assert echo.proc.wait(20) == 0
