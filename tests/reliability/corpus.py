"""The bad-input corpus: every case of issue 9, the smuggling and malformed-request cases, HTTP/2
abuse, each with the answers it may get. Every allowed answer is a 2xx or a documented 4xx/5xx
(503 only from the in-flight memory budget), or an HTTP/2 stream/connection error the RFC names.

A case runs on one listener and returns what it observed: HTTP statuses, "closed" (no answer),
"goaway:CODE", "refused" (RST_STREAM REFUSED_STREAM) or "pending" (no answer yet, on purpose).
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    HeadersFrame,
    PingFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

from tests.echo.serving import (
    PKI,
    Echo,
    h2_connection,
    raw_connection,
    read_answer,
    read_until,
    send_tolerant,
)

Outcome = int | str
H1 = ("http", "https", "h2c")
H2 = ("h2-tls", "h2c-h2")
MIB = 1_048_576
DIGITS = "9" * 5000  # more digits than Python's int() accepts by default (4,300)


@dataclass(frozen=True)
class Target:
    echo: Echo
    pki: PKI


@dataclass(frozen=True)
class Case:
    name: str
    schemes: tuple[str, ...]
    run: Callable[[Target, str], list[Outcome]]
    expect: frozenset[Outcome]
    # Who made this case pass: "serving" (echo/http1.py, http2.py, connections.py) or "app".
    fixed_in: str = "serving"


CASES: list[Case] = []


def case(
    name: str, schemes: Iterable[str], expect: Iterable[Outcome], fixed_in: str = "serving"
) -> Callable[[Callable[[Target, str], list[Outcome]]], Callable[[Target, str], list[Outcome]]]:
    def register(run: Callable[[Target, str], list[Outcome]]) -> Callable[[Target, str], list[Outcome]]:
        CASES.append(Case(name, tuple(schemes), run, frozenset(expect), fixed_in))
        return run

    return register


# --- HTTP/1.x: one exchange ---------------------------------------------------------------------------


def exchange(target: Target, scheme: str, data: bytes, stream: Iterable[bytes] = ()) -> list[Outcome]:
    """Send `data` (and then `stream`, as long as the server takes it); read every answer."""
    outcomes: list[Outcome] = []
    with raw_connection(target.echo, scheme, target.pki, timeout=30) as sock:
        send_tolerant(sock, data)
        for chunk in stream:
            if not send_tolerant(sock, chunk):
                break
        while True:
            answer = read_answer(sock)
            if answer is None:
                break
            outcomes.append(answer.status)
            if answer.headers.get("connection") == "close":
                break
            sock.settimeout(1)  # pipelined answers follow at once; then stop waiting
    return outcomes or ["closed"]


def _raw_case(name: str, data: bytes, expect: Iterable[Outcome], schemes: Iterable[str] = H1) -> None:
    case(name, schemes, expect)(lambda target, scheme: exchange(target, scheme, data))


# Request smuggling and malformed requests: ambiguous framing is refused, never guessed.
POST = b"POST / HTTP/1.1\r\nHost: x\r\n"
GET = b"GET / HTTP/1.1\r\nHost: x\r\n"
CHUNKED = b"Transfer-Encoding: chunked\r\n"
LAST_CHUNK = b"0\r\n\r\n"
for _name, _data in {
    "content-length-and-chunked": POST + b"Content-Length: 4\r\n" + CHUNKED + b"\r\n" + LAST_CHUNK,
    "chunked-and-content-length": POST + CHUNKED + b"Content-Length: 4\r\n\r\n" + LAST_CHUNK,
    "two-content-lengths": POST + b"Content-Length: 4\r\nContent-Length: 5\r\n\r\nabcde",
    "content-length-list": POST + b"Content-Length: 4, 4\r\n\r\nabcd",
    "chunked-not-last": POST + b"Transfer-Encoding: chunked, identity\r\n\r\n" + LAST_CHUNK,
    "chunked-twice": POST + CHUNKED + CHUNKED + b"\r\n" + LAST_CHUNK,
    "space-before-colon": POST + b"Transfer-Encoding : chunked\r\n\r\n" + LAST_CHUNK,
    "obs-fold": POST + b"Transfer-Encoding:\r\n chunked\r\n\r\n" + LAST_CHUNK,
    "xchunked": POST + b"Transfer-Encoding: xchunked\r\n\r\n" + LAST_CHUNK,
    "transfer-encoding-gzip": POST + b"Transfer-Encoding: gzip\r\n\r\n",
    "chunk-size-not-hex": POST + CHUNKED + b"\r\nzz\r\nab\r\n" + LAST_CHUNK,
    "chunk-size-overflow": POST + CHUNKED + b"\r\nfffffffffffffffffff\r\nab\r\n" + LAST_CHUNK,
    "chunk-without-crlf": POST + CHUNKED + b"\r\n3\r\nabcX" + LAST_CHUNK,
    "negative-content-length": POST + b"Content-Length: -1\r\n\r\n",
    "signed-content-length": POST + b"Content-Length: +4\r\n\r\nabcd",
    "nul-in-a-value": GET + b"X-A: a\x00b\r\n\r\n",
    "bare-cr-in-a-value": GET + b"X-A: a\rb\r\n\r\n",
    "space-in-a-name": GET + b"X A: b\r\n\r\n",
    "bare-lf-lines": b"GET / HTTP/1.1\nHost: x\n\n",
    "lowercase-method": b"get / HTTP/1.1\r\nHost: x\r\n\r\n",
    "not-http": b"THIS IS NOT HTTP\x00\x01\r\n\r\n",
    "tls-on-a-plain-port": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40,
    "no-host": b"GET / HTTP/1.1\r\n\r\n",
    "two-hosts": GET + b"Host: b\r\n\r\n",
    "connect-method": b"CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\n\r\n",
}.items():
    _raw_case(_name, _data, {400}, ("http", "h2c") if _name == "tls-on-a-plain-port" else H1)

_raw_case("http2-preface-on-an-http1-port", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", {400}, ("http", "https"))
_raw_case("http-0.9", b"GET /\r\n\r\n", {505})
_raw_case("http-2.0-in-text", b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", {505})
_raw_case("unknown-version", b"GET / HTTP/1.7\r\nHost: x\r\n\r\n", {400})
_raw_case("absolute-form", b"GET http://elsewhere.example/x HTTP/1.1\r\nHost: x\r\n\r\n", {200})
_raw_case("http-1.0-without-host", b"GET / HTTP/1.0\r\n\r\n", {200})
_raw_case("pipelined", GET + b"\r\n" + GET + b"Connection: close\r\n\r\n", {200})
_raw_case("raw-bytes-in-the-target", b"GET /caf\xe9?q=\xff HTTP/1.1\r\nHost: x\r\n\r\n", {200})
_raw_case("many-small-headers", b"GET / HTTP/1.1\r\nHost: x\r\n" + b"a: b\r\n" * 20_000 + b"\r\n", {200})


@case("long-url", H1, {431})
def _long_url(target: Target, scheme: str) -> list[Outcome]:
    return exchange(target, scheme, b"GET /", [b"u" * 65536] * 48)  # 3 MiB of target, never ended


@case("headers-over-the-limit", H1, {431})
def _big_headers(target: Target, scheme: str) -> list[Outcome]:
    return exchange(
        target, scheme, b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"h" * (MIB + 1000) + b"\r\n\r\n"
    )


@case("endless-header", H1, {431})
def _endless_header(target: Target, scheme: str) -> list[Outcome]:
    return exchange(target, scheme, b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: ", [b"h" * 65536] * 64)


@case("admin-path-headers-over-the-limit", H1, {431})
def _admin_big_headers(target: Target, scheme: str) -> list[Outcome]:
    head = b"GET /_echo/livez HTTP/1.1\r\nHost: x\r\nX-Big: " + b"h" * (MIB + 1000) + b"\r\n\r\n"
    return exchange(target, scheme, head)


@case("64-mib-of-trailers", H1, {431})
def _trailers(target: Target, scheme: str) -> list[Outcome]:
    head = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n"
    return exchange(target, scheme, head, (b"X-T: " + b"t" * 65000 + b"\r\n" for _ in range(1024)))


@case("huge-content-length", H1, {413})
def _huge_length(target: Target, scheme: str) -> list[Outcome]:
    return exchange(
        target, scheme, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10737418240\r\n\r\n", [b"x" * 1024]
    )


@case("endless-chunked-body", H1, {413})
def _endless_body(target: Target, scheme: str) -> list[Outcome]:
    head = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    return exchange(target, scheme, head, (b"10000\r\n" + b"c" * 65536 + b"\r\n" for _ in range(200)))


@case("413-with-connection-close-read-after-the-upload", H1, {413})
def _close_upload(target: Target, scheme: str) -> list[Outcome]:
    head = b"POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 20971520\r\n\r\n"
    return exchange(target, scheme, head, [b"u" * 65536] * 320)


@case("chunk-extensions-without-end", H1, {431})
def _chunk_extension(target: Target, scheme: str) -> list[Outcome]:
    head = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1;ext="
    return exchange(target, scheme, head, [b"e" * 65536] * 64)


# --- the app's cases (issue 9 defects 3, 4, 5, 7) ----------------------------------------------------


def _get(target: Target, scheme: str, path: str = "/", headers: str = "") -> list[Outcome]:
    return exchange(target, scheme, f"GET {path} HTTP/1.1\r\nHost: x\r\n{headers}\r\n".encode())


def _long_number_in(control: str) -> Callable[[Target, str], list[Outcome]]:
    return lambda target, scheme: _get(target, scheme, headers=f"{control}: {DIGITS}\r\n")


for _control in ("x-set-response-status-code", "x-fail-attempts", "x-set-response-status-mix"):
    case(f"long-number-in-{_control}", H1, {400}, "app")(_long_number_in(_control))
case("long-number-in-x-envoy-attempt-count", H1, {200}, "app")(
    lambda target, scheme: _get(target, scheme, headers=f"x-envoy-attempt-count: {DIGITS}\r\n")
)
case("long-number-in-a-query-control", H1, {400}, "app")(
    lambda target, scheme: _get(target, scheme, path=f"/?x-set-response-status-code={DIGITS}")
)


@case("long-number-in-the-delay-is-capped", ("http",), {"pending"}, "app")
def _long_delay(target: Target, scheme: str) -> list[Outcome]:
    # Capped at ECHO_MAX_DELAY_MS (60 s): no answer soon, and leaving early must cost nothing.
    with raw_connection(target.echo, scheme, target.pki, timeout=1) as sock:
        sock.sendall(f"GET / HTTP/1.1\r\nHost: x\r\nx-set-response-delay-ms: {DIGITS}\r\n\r\n".encode())
        return ["pending"] if read_until(sock, b"\r\n\r\n") == b"" else ["answered"]


@case("readyz-flip-from-loopback", ("http",), {200}, "app")
def _readyz_flip(target: Target, scheme: str) -> list[Outcome]:
    # Loopback may flip readiness (the default ECHO_READYZ_CHANGE_FROM); a peer that is not is
    # tested in test_corpus.py::test_readyz_from_a_non_loopback_peer_is_refused.
    flips = exchange(
        target, scheme, b"POST /_echo/readyz?ready=true HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
    )
    return flips


def _upload(target: Target, scheme: str, body: bytes, content_type: str) -> Outcome:
    with raw_connection(target.echo, scheme, target.pki, timeout=60) as sock:
        sock.sendall(
            f"POST /big HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
        )
        send_tolerant(sock, body)
        answer = read_answer(sock)
    return answer.status if answer is not None else "closed"


JSON_10_MIB = json.dumps([1] * (5 * MIB - 1)).encode()[: 10 * MIB - 2] + b"1]"
BINARY_10_MIB = bytes(range(256)) * (10 * MIB // 256)


def _concurrently(count: int, work: Callable[[], Outcome]) -> list[Outcome]:
    results: list[Outcome] = []
    lock = threading.Lock()

    def one() -> None:
        outcome = work()
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=one) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    return results


case("10-mib-json-body", ("http",), {200, 413}, "app")(
    lambda target, scheme: [_upload(target, scheme, JSON_10_MIB, "application/json")]
)
case("8-concurrent-10-mib-json-bodies", ("http",), {200, 413, 503}, "app")(
    lambda target, scheme: _concurrently(8, lambda: _upload(target, scheme, JSON_10_MIB, "application/json"))
)
case("16-concurrent-10-mib-binary-bodies", ("http",), {200, 503}, "app")(
    lambda target, scheme: _concurrently(
        16, lambda: _upload(target, scheme, BINARY_10_MIB, "application/octet-stream")
    )
)


# --- HTTP/2 -----------------------------------------------------------------------------------------------


def _h2_scheme(scheme: str) -> str:
    return "https" if scheme == "h2-tls" else "h2c"


def _h2_outcomes(wire_streams: dict[int, object], ids: Iterable[int]) -> list[Outcome]:
    outcomes: list[Outcome] = []
    for stream_id in ids:
        stream = wire_streams.get(stream_id)
        status = getattr(stream, "headers", {}).get(":status")
        reset = getattr(stream, "reset", None)
        outcomes.append(int(status) if status else ("refused" if reset == 7 else f"reset:{reset}"))
    return outcomes


@case("h2-rapid-reset-20000-streams", H2, {"goaway:11"})
def _rapid_reset(target: Target, scheme: str) -> list[Outcome]:
    with h2_connection(target.echo, _h2_scheme(scheme), target.pki) as wire:
        for stream_id in range(1, 40_000, 2):
            if not (wire.request(stream_id, b"/reset") and wire.reset(stream_id)):
                break
            wire.streams.pop(stream_id, None)
        wire.read(lambda w: w.goaway is not None, timeout=30)
        return [f"goaway:{wire.goaway.error_code}" if wire.goaway else "closed"]


@case("h2-more-streams-than-allowed", H2, {200, "refused"})
def _stream_flood(target: Target, scheme: str) -> list[Outcome]:
    ids = [1 + 2 * n for n in range(300)]
    with h2_connection(target.echo, _h2_scheme(scheme), target.pki) as wire:
        for stream_id in ids:
            wire.request(stream_id, b"/open", method=b"POST", end_stream=False)
        wire.read(lambda w: sum(w.streams[i].reset is not None for i in ids) >= 200, timeout=20)
        for stream_id in ids[:100]:
            wire.data(stream_id, b"done", end_stream=True)
        wire.read(lambda w: all(w.streams[i].ended or w.streams[i].reset for i in ids), timeout=30)
        outcomes = _h2_outcomes(dict(wire.streams), ids)
    assert outcomes[:100] == [200] * 100, outcomes[:100]  # the accepted streams all complete
    return outcomes


def _h2_big_header(target: Target, scheme: str, size: int) -> list[Outcome]:
    with h2_connection(target.echo, _h2_scheme(scheme), target.pki) as wire:
        wire.request(1, b"/big", extra=[(b"x-big", b"h" * size)])
        wire.read(lambda w: w.streams[1].ended or w.closed, timeout=30)
        outcomes = _h2_outcomes(dict(wire.streams), [1])
        wire.read(lambda w: w.goaway is not None, timeout=0.5)
        if wire.goaway is not None:
            outcomes.append(f"goaway:{wire.goaway.error_code}")
        return outcomes


case("h2-100-kib-header-block", H2, {200})(lambda target, scheme: _h2_big_header(target, scheme, 100 * 1024))
case("h2-header-block-over-the-limit", H2, {431})(
    lambda target, scheme: _h2_big_header(target, scheme, MIB + 1000)
)
case("h2-header-block-too-large-to-decode", H2, {431, "goaway:11"})(
    lambda target, scheme: _h2_big_header(target, scheme, 3 * MIB)
)


@case("h2-continuation-flood", H2, {"goaway:11", 431})
def _continuation_flood(target: Target, scheme: str) -> list[Outcome]:
    with h2_connection(target.echo, _h2_scheme(scheme), target.pki) as wire:
        block = wire.encoder.encode([(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/")])
        wire.send(HeadersFrame(1, data=block))
        for _ in range(20):
            if not wire.send(*[ContinuationFrame(1, data=b"") for _ in range(500)]):
                break
        wire.read(lambda w: w.goaway is not None, timeout=10)
        return [f"goaway:{wire.goaway.error_code}" if wire.goaway else "closed"]


@case("h2-ping-and-settings-flood", H2, {200})
def _ping_flood(target: Target, scheme: str) -> list[Outcome]:
    with h2_connection(target.echo, _h2_scheme(scheme), target.pki) as wire:
        for _ in range(20):
            wire.send(*[PingFrame(0, opaque_data=b"12345678") for _ in range(250)])
            wire.send(*[SettingsFrame(0, settings={4: 65535}) for _ in range(250)])
        wire.request(1, b"/after-the-flood")
        wire.read(lambda w: w.streams[1].ended, timeout=20)
        return _h2_outcomes(dict(wire.streams), [1])


@case("h2-window-overflow", H2, {"goaway:3", "closed"})
def _window_overflow(target: Target, scheme: str) -> list[Outcome]:
    with h2_connection(target.echo, _h2_scheme(scheme), target.pki) as wire:
        wire.send(
            WindowUpdateFrame(0, window_increment=2**31 - 1), WindowUpdateFrame(0, window_increment=2**31 - 1)
        )
        wire.read(lambda w: w.goaway is not None, timeout=10)
        return [f"goaway:{wire.goaway.error_code}" if wire.goaway else "closed"]


@case("h2-data-on-stream-0", H2, {"goaway:1", "closed"})
def _data_on_zero(target: Target, scheme: str) -> list[Outcome]:
    with h2_connection(target.echo, _h2_scheme(scheme), target.pki) as wire:
        with contextlib.suppress(Exception):
            wire.send(DataFrame(0, data=b"x"))
        wire.read(lambda w: w.goaway is not None, timeout=10)
        return [f"goaway:{wire.goaway.error_code}" if wire.goaway else "closed"]


@case("h2-raw-bytes-in-path", H2, {200})
def _h2_raw_path(target: Target, scheme: str) -> list[Outcome]:
    with h2_connection(target.echo, _h2_scheme(scheme), target.pki) as wire:
        wire.request(1, b"/caf\xe9?q=\xff")
        wire.read(lambda w: w.streams[1].ended, timeout=10)
        return _h2_outcomes(dict(wire.streams), [1])


@case("h2-body-over-the-limit", H2, {413})
def _h2_413(target: Target, scheme: str) -> list[Outcome]:
    with h2_connection(target.echo, _h2_scheme(scheme), target.pki) as wire:
        wire.request(1, b"/up", method=b"POST", end_stream=False, extra=[(b"content-length", b"20971520")])
        for _ in range(4):
            wire.data(1, b"d" * 16384)
        wire.read(lambda w: w.streams[1].ended, timeout=10)
        return _h2_outcomes(dict(wire.streams), [1])
