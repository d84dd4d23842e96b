"""Attack clients for the reliability tier, run as their own process so that their CPU use does not
slow the test's own normal client: `python -m tests.reliability.attacks KIND --port N …`.

Each prints `ready` once its load is in place, then one `result {json}` line when it ends. Every
load is bounded in count and in time (--hold), and goes to loopback only.
"""

from __future__ import annotations

import argparse
import json
import selectors
import socket
import ssl
import sys
import time
from dataclasses import dataclass, field

from hyperframe.frame import SettingsFrame

from tests.echo.serving import H2_PREFACE, H2Wire


@dataclass
class Held:
    sock: socket.socket
    kind: str  # "slow" or "silent"
    opened: float
    pending: bytes = b""
    closed: float | None = None
    answer: bytes = b""
    sent: int = 0


@dataclass
class Tally:
    lifetimes: dict[str, list[float]] = field(default_factory=lambda: {"slow": [], "silent": []})
    answers: dict[str, dict[str, int]] = field(default_factory=lambda: {"slow": {}, "silent": {}})
    still_open: dict[str, int] = field(default_factory=lambda: {"slow": 0, "silent": 0})


def _connect(port: int, alpn: str | None) -> socket.socket:
    """A connection to the port, over TLS offering `alpn` when one is given (any certificate)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    if alpn is None:
        return sock
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols([alpn])
    return context.wrap_socket(sock, server_hostname="localhost")


def slowloris(
    port: int, tls: bool, slow: int, silent: int, interval: float, hold: float
) -> dict[str, object]:
    """`slow` connections send a request head one byte every `interval` seconds; `silent` ones send
    nothing. Records when the server closes each one and the first bytes it answered."""
    selector = selectors.DefaultSelector()
    held: list[Held] = []
    head = b"GET /slowloris HTTP/1.1\r\nHost: x\r\n" + b"X-Slow: " + b"s" * 4096
    for index in range(slow + silent):
        kind = "slow" if index < slow else "silent"
        sock = _connect(port, "http/1.1" if tls else None)
        sock.setblocking(False)
        entry = Held(sock, kind, time.monotonic(), pending=head if kind == "slow" else b"")
        held.append(entry)
        selector.register(sock, selectors.EVENT_READ, entry)
    print("ready", flush=True)
    started = time.monotonic()
    next_drip = started
    while time.monotonic() - started < hold and any(h.closed is None for h in held):
        now = time.monotonic()
        if now >= next_drip:
            for entry in held:
                if entry.closed is None and entry.pending:
                    try:
                        entry.sock.send(entry.pending[:1])
                        entry.pending = entry.pending[1:]
                        entry.sent += 1
                    except (BlockingIOError, ssl.SSLWantWriteError):
                        pass
                    except OSError:
                        entry.closed = now
            next_drip = now + interval
        for key, _ in selector.select(timeout=max(0.0, min(0.2, next_drip - time.monotonic()))):
            entry = key.data
            try:
                data = entry.sock.recv(65536)
            except (BlockingIOError, ssl.SSLWantReadError):
                continue
            except OSError:
                data = b""
            if data:
                entry.answer += data
                continue
            entry.closed = time.monotonic()
            selector.unregister(entry.sock)
            entry.sock.close()
    tally = Tally()
    for entry in held:
        if entry.closed is None:
            tally.still_open[entry.kind] += 1
            entry.sock.close()
            continue
        tally.lifetimes[entry.kind].append(entry.closed - entry.opened)
        status = entry.answer.split(b" ", 2)[1].decode() if entry.answer.startswith(b"HTTP/1.1 ") else "none"
        counts = tally.answers[entry.kind]
        counts[status] = counts.get(status, 0) + 1
    return {
        "lifetimes": tally.lifetimes,
        "answers": tally.answers,
        "still_open": tally.still_open,
        "bytes_dripped": sum(h.sent for h in held),
    }


def rapid_reset(port: int, tls: bool, streams: int, hold: float) -> dict[str, object]:
    """Open and reset `streams` streams per connection until the server sends GOAWAY; repeat on new
    connections for `hold` seconds. Reports how each connection ended."""
    goaways: dict[str, int] = {}
    started = time.monotonic()
    connections = 0
    announced = False
    while time.monotonic() - started < hold:
        with _connect(port, "h2" if tls else None) as sock:
            wire = H2Wire(sock)
            sock.sendall(H2_PREFACE + SettingsFrame(0, settings={}).serialize())
            if not announced:
                print("ready", flush=True)
                announced = True
            connections += 1
            for stream_id in range(1, 2 * streams, 2):
                if not (wire.request(stream_id, b"/reset") and wire.reset(stream_id)):
                    break
                wire.streams.pop(stream_id, None)
            wire.read(lambda w: w.goaway is not None, timeout=10)
            code = str(wire.goaway.error_code) if wire.goaway is not None else "none"
            goaways[code] = goaways.get(code, 0) + 1
    return {"connections": connections, "goaway_codes": goaways}


def main() -> int:
    parser = argparse.ArgumentParser(prog="attacks")
    parser.add_argument("kind", choices=["slowloris", "rapid-reset"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--tls", action="store_true")
    parser.add_argument("--slow", type=int, default=500)
    parser.add_argument("--silent", type=int, default=200)
    parser.add_argument("--interval", type=float, default=4.0)
    parser.add_argument("--streams", type=int, default=20_000)
    parser.add_argument("--hold", type=float, default=30.0)
    args = parser.parse_args()
    if args.kind == "slowloris":
        result = slowloris(args.port, args.tls, args.slow, args.silent, args.interval, args.hold)
    else:
        result = rapid_reset(args.port, args.tls, args.streams, args.hold)
    print("result " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
