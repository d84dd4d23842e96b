"""Real-process tests of the serving layer's bounds, on every listener: read timeouts, the connection
cap, header and trailer limits, Host rules, raw bytes in the target, answers a client can read
before the connection closes, HTTP/2 stream errors, PRESERVE_HEADER_CASE and Ctrl-C.

HTTP/1.x listeners: the plain port, HTTP/1.1 over TLS, HTTP/1.1 on the h2c port. HTTP/2: over TLS
(ALPN h2) and h2c (prior knowledge).
"""

from __future__ import annotations

import json
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import websockets.sync.client
from hyperframe.frame import PriorityFrame

from tests.echo.serving import (
    PKI,
    Echo,
    assert_no_traceback,
    echo_server,
    h2_connection,
    make_pki,
    raw_connection,
    read_answer,
    read_until,
    send_tolerant,
)
from tests.procs import wait_until

HEADER_LIMIT = 4096
HEAD_BOUND = 2 * HEADER_LIMIT + 65536  # raw bytes of a head still arriving (echo.connections.Limits)
BODY_LIMIT = 65536
TIMEOUT = 1.5  # header and body timeouts of the shared server, seconds
SLACK = 1.5  # sweep interval and scheduling on a busy machine

H1 = [pytest.param("http", id="http"), pytest.param("https", id="https-h1"), pytest.param("h2c", id="h2c-h1")]
H2 = [pytest.param("https", id="h2-tls"), pytest.param("h2c", id="h2c")]

REFUSED_STREAM = 7
ENHANCE_YOUR_CALM = 11


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def echo(pki: PKI) -> Iterator[Echo]:
    env = pki.env() | {
        "MAX_HEADER_SIZE": str(HEADER_LIMIT),
        "ECHO_MAX_BODY_BYTES": str(BODY_LIMIT),
        "ECHO_HEADER_TIMEOUT_SECONDS": str(TIMEOUT),
        "ECHO_BODY_TIMEOUT_SECONDS": str(TIMEOUT),
    }
    with echo_server(env, h2c=True) as server:
        yield server
        assert_no_traceback(server)


def _alive(echo: Echo) -> None:
    assert echo.proc.poll() is None
    assert httpx.get(echo.url("/_echo/livez"), timeout=5).status_code == 200


def _assert_error_document(answer: Any, status: int) -> dict[str, Any]:
    assert answer is not None, "the connection ended before an answer could be read"
    assert answer.status == status, answer
    assert answer.headers["content-type"].startswith("application/json")
    assert answer.headers["x-echo-pod"] == "echo-test-pod"
    document: dict[str, Any] = json.loads(answer.body)
    assert set(document) == {"error"}
    return document


# --- read timeouts (issue 9, defect 2) ------------------------------------------------------------


@pytest.mark.parametrize("scheme", H1)
def test_a_trickling_head_gets_408_within_the_header_timeout(echo: Echo, pki: PKI, scheme: str) -> None:
    with raw_connection(echo, scheme, pki, timeout=TIMEOUT + 5) as sock:
        started = time.monotonic()
        sock.sendall(b"GET /slow HTTP/1.1\r\n")
        # One byte at a time, well inside any per-read timeout: only a total bound stops it.
        for byte in b"Host: x\r\nX-Slow: 1":
            if not send_tolerant(sock, bytes([byte])):
                break
            time.sleep(TIMEOUT / 20)  # a slow client's pace (this is the load, not a wait)
        answer = read_answer(sock)
        elapsed = time.monotonic() - started
    document = _assert_error_document(answer, 408)
    assert "headers" in document["error"]
    assert TIMEOUT - 0.1 <= elapsed <= TIMEOUT + SLACK
    _alive(echo)


@pytest.mark.parametrize("scheme", [*H1, pytest.param("h2", id="h2-tls-after-preface")])
def test_a_silent_connection_is_closed_within_the_header_timeout(echo: Echo, pki: PKI, scheme: str) -> None:
    started = time.monotonic()
    if scheme == "h2":
        with h2_connection(echo, "https", pki) as wire:
            wire.read(timeout=TIMEOUT + SLACK + 1)
            assert wire.closed
            assert not [s for s in wire.streams.values() if s.headers]
    else:
        with raw_connection(echo, scheme, pki, timeout=TIMEOUT + SLACK + 1) as sock:
            assert read_until(sock, b"never") == b""
    assert time.monotonic() - started <= TIMEOUT + SLACK


@pytest.mark.parametrize("scheme", H1)
def test_a_paused_body_gets_408_on_http1(echo: Echo, pki: PKI, scheme: str) -> None:
    with raw_connection(echo, scheme, pki, timeout=TIMEOUT + 5) as sock:
        sock.sendall(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly part")
        started = time.monotonic()
        answer = read_answer(sock)
        elapsed = time.monotonic() - started
    document = _assert_error_document(answer, 408)
    assert "body" in document["error"]
    assert TIMEOUT - 0.1 <= elapsed <= TIMEOUT + SLACK
    _alive(echo)


@pytest.mark.parametrize("scheme", H2)
def test_a_paused_body_gets_408_on_its_http2_stream(echo: Echo, pki: PKI, scheme: str) -> None:
    with h2_connection(echo, scheme, pki) as wire:
        wire.request(1, b"/upload", method=b"POST", end_stream=False)
        wire.data(1, b"only part")
        wire.read(lambda w: w.streams[1].ended, timeout=TIMEOUT + SLACK + 1)
        stream = wire.streams[1]
        assert stream.headers.get(":status") == "408"
        assert stream.headers.get("x-echo-pod") == "echo-test-pod"
        assert "body" in json.loads(stream.body)["error"]
        # Other streams on the connection are not affected.
        wire.request(3, b"/after")
        wire.read(lambda w: w.streams[3].ended)
        assert wire.streams[3].headers.get(":status") == "200"


def test_the_connection_cap_closes_new_connections_at_once() -> None:
    with echo_server({"ECHO_MAX_CONNECTIONS": "3"}, https=False) as echo:
        held: list[socket.socket] = []
        try:
            for _ in range(3):  # hold the whole cap, each connection admitted and served
                held.append(_served_connection(echo.http))
            with socket.create_connection(("127.0.0.1", echo.http), timeout=5) as refused:
                refused.sendall(b"GET /over HTTP/1.1\r\nHost: x\r\n\r\n")
                assert read_until(refused, b"\r\n\r\n") == b""
            held.pop().close()
            wait_until(lambda: _one_request(echo.http) == 200, 5, "a freed slot to be usable")
        finally:
            for sock in held:
                sock.close()
        assert "ECHO_MAX_CONNECTIONS (3) reached" in echo.log()
        assert_no_traceback(echo)


def _served_connection(port: int) -> socket.socket:
    """A kept-alive connection that got an answer (retried while the readiness poll's last
    connection may still hold a slot)."""
    found: list[socket.socket] = []

    def attempt() -> bool:
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        sock.sendall(b"GET /held HTTP/1.1\r\nHost: x\r\n\r\n")
        if read_answer(sock) is None:
            sock.close()
            return False
        found.append(sock)
        return True

    wait_until(attempt, 5, "a connection under the cap")
    return found[0]


def _one_request(port: int) -> int | None:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"GET /one HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        answer = read_answer(sock)
    return answer.status if answer else None


# --- sizes: headers, trailers, one limit for HTTP/1.x and HTTP/2 (defects 1 and 6; issue 8) -----------


@pytest.mark.parametrize("scheme", H1)
@pytest.mark.parametrize(
    "path", [pytest.param("/echo", id="echo-path"), pytest.param("/_echo/livez", id="admin")]
)
@pytest.mark.parametrize("complete", [pytest.param(True, id="complete"), pytest.param(False, id="endless")])
def test_oversized_headers_get_the_431_document_before_the_close(
    echo: Echo, pki: PKI, scheme: str, path: str, complete: bool
) -> None:
    with raw_connection(echo, scheme, pki) as sock:
        send_tolerant(sock, f"GET {path} HTTP/1.1\r\nHost: x\r\nX-Big: ".encode())
        size = HEADER_LIMIT + 100 if complete else HEAD_BOUND + 65536
        sent = 0
        while sent < size and send_tolerant(sock, b"a" * min(16384, size - sent)):
            sent += 16384
        if complete:
            send_tolerant(sock, b"\r\n\r\n")
        answer = read_answer(sock)
    _assert_error_document(answer, 431)
    assert answer is not None
    assert answer.headers["connection"] == "close"
    _alive(echo)


@pytest.mark.parametrize("scheme", H1)
def test_trailers_count_against_the_header_limit(echo: Echo, pki: PKI, scheme: str) -> None:
    with raw_connection(echo, scheme, pki) as sock:
        sock.sendall(
            b"POST /trailers HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n"
        )
        sent = 0
        while sent < 4 * HEAD_BOUND and send_tolerant(sock, b"X-Trailer: " + b"t" * 8000 + b"\r\n"):
            sent += 8013
        answer = read_answer(sock)
    document = _assert_error_document(answer, 431)
    assert "trailers" in document["error"]
    _alive(echo)


@pytest.mark.parametrize("scheme", H1)
def test_small_trailers_are_fine(echo: Echo, pki: PKI, scheme: str) -> None:
    with raw_connection(echo, scheme, pki) as sock:
        sock.sendall(
            b"POST /trailers HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3\r\nabc\r\n0\r\nX-Checksum: 1\r\n\r\n"
        )
        answer = read_answer(sock)
    assert answer is not None
    assert answer.status == 200
    assert json.loads(answer.body)["body"] == "abc"


@pytest.mark.parametrize("scheme", H1)
def test_trailing_whitespace_is_not_part_of_a_value(echo: Echo, pki: PKI, scheme: str) -> None:
    # llhttp hands values over with their trailing spaces and tabs; RFC 9110 §5.5 excludes them,
    # and mendhak's Node strips them: `headers` shows the value without them, trailers alike.
    with raw_connection(echo, scheme, pki) as sock:
        sock.sendall(
            b"POST /ows HTTP/1.1\r\nHost: x\r\nX-Padded: a b \t \r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3\r\nabc\r\n0\r\nX-Checksum: 1\t\r\n\r\n"
        )
        answer = read_answer(sock)
    assert answer is not None
    assert answer.status == 200
    headers = json.loads(answer.body)["headers"]
    assert headers["x-padded"] == "a b"
    assert headers["x-checksum"] == "1"


@pytest.mark.parametrize("scheme", H2)
@pytest.mark.parametrize(
    ("size", "status", "goaway"),
    [
        pytest.param(HEADER_LIMIT - 200, 200, False, id="within-the-limit"),
        pytest.param(HEADER_LIMIT + 100, 431, False, id="over-the-limit"),
        pytest.param(HEAD_BOUND + 16384, 431, True, id="too-large-to-decode"),
    ],
)
def test_one_header_limit_on_http2(
    echo: Echo, pki: PKI, scheme: str, size: int, status: int, goaway: bool
) -> None:
    with h2_connection(echo, scheme, pki) as wire:
        wire.request(1, b"/big", extra=[(b"x-big", b"b" * size)])
        wire.read(lambda w: w.streams[1].ended)
        stream = wire.streams[1]
        assert stream.headers.get(":status") == str(status)
        assert stream.headers.get("x-echo-pod") == "echo-test-pod"
        if status == 431:
            assert "error" in json.loads(stream.body)
        if goaway:
            wire.read(lambda w: w.goaway is not None)
            assert wire.goaway is not None
            assert wire.goaway.error_code == ENHANCE_YOUR_CALM
        else:  # the connection goes on
            wire.request(3, b"/after")
            wire.read(lambda w: w.streams[3].ended)
            assert wire.streams[3].headers.get(":status") == "200"
    _alive(echo)


# --- HTTP/2 stream errors (defect 6) ------------------------------------------------------------------


@pytest.mark.parametrize("scheme", H2)
def test_streams_over_the_limit_are_refused_one_by_one(echo: Echo, pki: PKI, scheme: str) -> None:
    with h2_connection(echo, scheme, pki) as wire:
        # 150 requests whose bodies are still to come: the first 100 stay open.
        ids = [1 + 2 * n for n in range(150)]
        for stream_id in ids:
            wire.request(stream_id, b"/open", method=b"POST", end_stream=False)
        wire.read(lambda w: sum(w.streams[i].reset is not None for i in ids) >= 50, timeout=10)
        refused = [i for i in ids if wire.streams[i].reset is not None]
        assert refused == ids[100:]
        assert {wire.streams[i].reset for i in refused} == {REFUSED_STREAM}
        for stream_id in ids[:100]:
            wire.data(stream_id, b"x", end_stream=True)
        wire.read(lambda w: all(w.streams[i].ended for i in ids[:100]), timeout=20)
        assert [wire.streams[i].headers.get(":status") for i in ids[:100]] == ["200"] * 100
        assert wire.goaway is None
    _alive(echo)


@pytest.mark.parametrize("scheme", H2)
def test_rapid_reset_ends_the_connection_calmly(echo: Echo, pki: PKI, scheme: str) -> None:
    with h2_connection(echo, scheme, pki) as wire:
        for stream_id in range(1, 40_000, 2):  # 20,000 streams opened and reset at once
            if not (wire.request(stream_id, b"/reset") and wire.reset(stream_id)):
                break
        wire.read(lambda w: w.goaway is not None, timeout=20)
        assert wire.goaway is not None
        assert wire.goaway.error_code == ENHANCE_YOUR_CALM
    _alive(echo)
    assert_no_traceback(echo)


@pytest.mark.parametrize("scheme", H2)
def test_a_priority_flood_is_ignored(echo: Echo, pki: PKI, scheme: str) -> None:
    with h2_connection(echo, scheme, pki) as wire:
        flood = [PriorityFrame(stream_id, depends_on=0, stream_weight=16) for stream_id in range(1, 6001, 2)]
        wire.send(*flood)
        wire.request(6001, b"/after-priorities")
        wire.read(lambda w: w.streams[6001].ended, timeout=20)
        assert wire.streams[6001].headers.get(":status") == "200"
    assert_no_traceback(echo)


# --- strict parsing, raw bytes (defect 8) ----------------------------------------------------------------


@pytest.mark.parametrize("scheme", H1)
@pytest.mark.parametrize(
    ("head", "status"),
    [
        pytest.param(b"GET / HTTP/1.1\r\n\r\n", 400, id="no-host"),
        pytest.param(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400, id="two-hosts"),
        pytest.param(b"GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n", 400, id="two-hosts-same-value"),
        pytest.param(b"GET / HTTP/1.0\r\n\r\n", 200, id="http1.0-without-host"),
        pytest.param(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", 200, id="one-host"),
    ],
)
def test_host_rules_of_rfc_9112(echo: Echo, pki: PKI, scheme: str, head: bytes, status: int) -> None:
    with raw_connection(echo, scheme, pki) as sock:
        sock.sendall(head)
        answer = read_answer(sock)
    if status == 400:
        assert "Host" in _assert_error_document(answer, 400)["error"]
    else:
        assert answer is not None
        assert answer.status == status


@pytest.mark.parametrize("scheme", [*H1, *[pytest.param(f"{p.values[0]}-h2", id=f"{p.id}") for p in H2]])
def test_raw_bytes_in_the_target_are_escaped_in_the_document(echo: Echo, pki: PKI, scheme: str) -> None:
    target = b"/caf\xe9/%41/\xc3\xa9?q=\xff&r=%41"
    if scheme.endswith("-h2"):
        with h2_connection(echo, scheme.removesuffix("-h2"), pki) as wire:
            wire.request(1, target)
            wire.read(lambda w: w.streams[1].ended)
            status, body = wire.streams[1].headers.get(":status"), wire.streams[1].body
    else:
        with raw_connection(echo, scheme, pki) as sock:
            sock.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = read_answer(sock)
        assert answer is not None
        status, body = str(answer.status), answer.body
    assert status == "200"
    document = json.loads(body)
    assert document["path"] == "/caf\\xe9/A/é"
    assert document["query"] == {"q": "\\xff", "r": "A"}


@pytest.mark.parametrize("scheme", H1)
def test_413_with_connection_close_is_readable_while_the_upload_goes_on(
    echo: Echo, pki: PKI, scheme: str
) -> None:
    """The server answers 413 at once, but the client, like curl, sends its whole body before it
    reads: the upload must not be reset under it (a reset loses the answer in most clients)."""
    body_size, chunk = 4 * 1_048_576, b"u" * 65536
    uploaded = 0
    with raw_connection(echo, scheme, pki, timeout=10) as sock:
        sock.sendall(
            b"POST /up HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: %d\r\n\r\n" % body_size
        )
        while uploaded < body_size and send_tolerant(sock, chunk):
            uploaded += len(chunk)
        answer = read_answer(sock)
    assert uploaded == body_size, f"the upload was reset after {uploaded} bytes"
    assert answer is not None
    assert answer.status == 413
    assert answer.headers["x-echo-pod"] == "echo-test-pod"
    _alive(echo)


@pytest.mark.parametrize("scheme", H1)
def test_a_pipelined_upload_survives_the_answer_before_it(echo: Echo, pki: PKI, scheme: str) -> None:
    """The early-answer rule (a response complete while its body still arrives ends the connection)
    applies to that request only, not to the one pipelined behind an earlier answer."""
    with raw_connection(echo, scheme, pki) as sock:
        sock.sendall(
            b"GET /first HTTP/1.1\r\nHost: x\r\n\r\n"
            b"POST /second HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n\r\nhal"
        )
        first = read_answer(sock)
        sock.sendall(b"f!")
        sock.sendall(b"!")
        second = read_answer(sock)
    assert first is not None
    assert first.status == 200
    assert second is not None
    assert second.status == 200
    assert json.loads(second.body)["body"] == "half!!"


# --- h2c upgrade through the HTTP/1.1 protocol -----------------------------------------------------------


def test_an_h2c_upgrade_with_a_body_is_answered_over_http1(echo: Echo) -> None:
    with raw_connection(echo, "h2c") as sock:
        sock.sendall(
            b"POST /no-upgrade HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\n"
            b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\nContent-Length: 2\r\n\r\nhi"
        )
        answer = read_answer(sock)
    assert answer is not None
    assert answer.status == 200
    assert json.loads(answer.body)["http_version"] == "1.1"


def test_upgrade_h2c_on_the_plain_port_is_answered_over_http1(echo: Echo) -> None:
    with raw_connection(echo, "http") as sock:
        sock.sendall(
            b"GET /no-h2c-here HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\n"
            b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n"
        )
        answer = read_answer(sock)
    assert answer is not None
    assert answer.status == 200
    assert answer.headers["connection"] == "close"


# --- PRESERVE_HEADER_CASE: the names as received reach the app (issue 8) -----------------------------

SCOPE_APP = [sys.executable, "-m", "tests.echo.scope_app"]
WIRE_NAMES = ["host", "X-MiXeD-Case", "CONTENT-TYPE", "x-lower"]


@pytest.mark.parametrize("preserve", [pytest.param(True, id="on"), pytest.param(False, id="off")])
def test_wire_case_header_names_reach_the_scope(pki: PKI, preserve: bool) -> None:
    env = pki.env() | {"PRESERVE_HEADER_CASE": "true" if preserve else "false"}
    with echo_server(env, h2c=True, command=SCOPE_APP) as app:
        for scheme in ("http", "https", "h2c"):
            with raw_connection(app, scheme, pki) as sock:
                sock.sendall(
                    b"GET /case HTTP/1.1\r\nhost: x\r\nX-MiXeD-Case: 1\r\nCONTENT-TYPE: text/plain\r\n"
                    b"x-lower: 2\r\n\r\n"
                )
                answer = read_answer(sock)
            assert answer is not None
            assert answer.status == 200
            scope = json.loads(answer.body)
            assert [name for name, _ in scope["headers"]] == [name.lower() for name in WIRE_NAMES]
            if preserve:
                assert scope["raw_header_names"] == WIRE_NAMES, scheme
            else:
                assert scope["raw_header_names"] is None
                assert "echo.raw_header_names" not in scope["extensions"]
        assert_no_traceback(app)


def test_a_wss_websocket_gets_the_tls_facts(pki: PKI) -> None:
    with (
        echo_server(pki.env(), command=SCOPE_APP) as app,
        websockets.sync.client.connect(
            f"wss://127.0.0.1:{app.port('https')}/ws",
            ssl=pki.client_context(["http/1.1"]),
            server_hostname="localhost",
            open_timeout=5,
        ) as ws,
    ):
        tls = json.loads(ws.recv(timeout=5))["tls"]
    assert tls["alpn"] == "http/1.1"
    assert tls["sni"] == "localhost"
    assert tls["version"] in ("TLSv1.2", "TLSv1.3")


def test_serving_layer_answers_use_the_apps_error_document() -> None:
    with (
        echo_server({"MAX_HEADER_SIZE": "1024"}, https=False, command=SCOPE_APP) as app,
        raw_connection(app, "http") as sock,
    ):
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 2000 + b"\r\n\r\n")
        answer = read_answer(sock)
    assert answer is not None
    assert answer.status == 431
    assert json.loads(answer.body)["from"] == "scope_app"


def _in_flight(echo: Echo) -> int:
    for line in httpx.get(echo.url("/_echo/metrics"), timeout=2).text.splitlines():
        if line.startswith("echo_in_flight_requests"):
            return int(float(line.rsplit(" ", 1)[1]))
    raise AssertionError("no echo_in_flight_requests gauge in /_echo/metrics")


# --- Ctrl-C twice (issue 8) --------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_second_ctrl_c_stops_at_once() -> None:
    with echo_server({"ECHO_DRAIN_SECONDS": "60"}, https=False) as echo:
        outcome: dict[str, Any] = {}

        def slow() -> None:
            try:
                outcome["response"] = httpx.get(
                    echo.url("/slow"), headers={"x-set-response-delay-ms": "30000"}, timeout=40
                )
            except httpx.HTTPError as error:
                outcome["error"] = error

        thread = threading.Thread(target=slow, daemon=True)
        thread.start()
        wait_until(lambda: _in_flight(echo) == 1, 10, "the slow request to be in flight")
        echo.proc.send_signal(signal.SIGINT)
        wait_until(lambda: "Ctrl-C again to stop at once" in echo.log(), 5, "the drain message")
        signalled = time.monotonic()
        echo.proc.send_signal(signal.SIGINT)
        code = echo.proc.wait(10)
        stopped_in = time.monotonic() - signalled
        thread.join(10)
        log = echo.log()
    assert code == 130
    assert stopped_in < 3
    assert "SIGINT again: stopping at once" in log
    assert "Traceback" not in log
    assert "error" in outcome  # the request in flight was cut, as announced
