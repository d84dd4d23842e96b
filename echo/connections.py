"""Bounds every connection shares, whatever its listener: the cap, read deadlines, lingering close.

Invariants:
- Every accepted connection is admitted by the `ConnectionGuard` or closed at once: at most
  `Limits.max_connections` are open over all listeners together (ECHO_MAX_CONNECTIONS).
- A connection waiting on its client has a read deadline (`deadline`, loop time; 0 = none). One
  sweeping task expires the connections past it, so arming a deadline costs an attribute store,
  not a timer per request.
- A connection that is closed while its client may still be sending is closed lingeringly (RFC 9112
  §9.6, as nginx's lingering close): our side of the stream is shut after the answer (FIN), and what
  still arrives is read and thrown away for a bounded time. Closing at once would make the kernel
  answer the unread upload with a reset, and the client would lose the answer it had not read yet.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, TextIO

# The app's error document for answers the serving layer gives itself: (headers, body) for a status
# and a message (echo.app.EchoApp.error_response).
ErrorResponse = Callable[[int, str], tuple[list[tuple[bytes, bytes]], bytes]]

# A closing connection keeps reading (and discarding) while its client sends, for at most this long
# in all and this long without any data.
LINGER_TOTAL_SECONDS = 10.0
LINGER_IDLE_SECONDS = 2.0


@dataclass(frozen=True)
class Limits:
    max_header_bytes: int
    header_timeout: float
    body_timeout: float
    keep_alive: float
    max_connections: int

    @property
    def head_bound(self) -> int:
        """Raw bytes a head (or an HTTP/2 header block) may reach before it is refused unmeasured.

        MAX_HEADER_SIZE counts name + value bytes, measured exactly once a head is complete; the raw
        form also holds the request line, separators and (HPACK) 32 bytes per field, so the bound
        on bytes still arriving is twice the limit plus room for that overhead.
        """
        return 2 * self.max_header_bytes + 65536

    @property
    def sweep_interval(self) -> float:
        return min(0.5, max(0.05, min(self.header_timeout, self.body_timeout) / 10))


class Guarded(Protocol):
    """A connection the guard can expire: its read deadline (loop time, 0 = none) and what to do then."""

    deadline: float

    def expire(self) -> None: ...


class Notices:
    """One stderr line per kind of event at most every `interval` seconds, with the count in between,
    so an attack cannot flood the log."""

    def __init__(self, log: TextIO, interval: float = 10.0) -> None:
        self._log = log
        self._interval = interval
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def notice(self, kind: str, text: str) -> None:
        now = time.monotonic()
        last = self._last.get(kind)
        if last is not None and now - last < self._interval:
            self._suppressed[kind] = self._suppressed.get(kind, 0) + 1
            return
        self._last[kind] = now
        more = self._suppressed.pop(kind, 0)
        suffix = f" (and {more} more like it in the last {self._interval:g}s)" if more else ""
        print(f"echo-server: {text}{suffix}", file=self._log, flush=True)


class ConnectionGuard:
    def __init__(self, limits: Limits, notices: Notices) -> None:
        self.limits = limits
        self.notices = notices
        self.open: set[Guarded] = set()
        self.refused = 0

    def admit(self, connection: Guarded) -> bool:
        if len(self.open) >= self.limits.max_connections:
            self.refused += 1
            self.notices.notice(
                "cap",
                f"ECHO_MAX_CONNECTIONS ({self.limits.max_connections}) reached: closing new connections "
                f"({self.refused} so far)",
            )
            return False
        self.open.add(connection)
        return True

    def adopt(self, connection: Guarded) -> None:
        """Track a connection that was already admitted under another protocol object."""
        self.open.add(connection)

    def release(self, connection: Guarded) -> None:
        self.open.discard(connection)

    async def sweep(self) -> None:
        """Expire every connection past its read deadline; runs until cancelled."""
        loop = asyncio.get_running_loop()
        interval = self.limits.sweep_interval
        while True:
            await asyncio.sleep(interval)
            now = loop.time()
            for connection in [c for c in self.open if 0 < c.deadline <= now]:
                connection.expire()


class LingeringClose(asyncio.Protocol):
    """Takes over a transport whose answer is written: shuts our side, discards input, then closes."""

    def __init__(self, transport: asyncio.Transport, guard: ConnectionGuard) -> None:
        self.transport = transport
        self._guard = guard
        self._loop = asyncio.get_running_loop()
        now = self._loop.time()
        self._end = now + LINGER_TOTAL_SECONDS
        self.deadline = min(now + LINGER_IDLE_SECONDS, self._end)

    @classmethod
    def take_over(cls, transport: asyncio.Transport, guard: ConnectionGuard) -> None:
        if transport.is_closing():
            return
        protocol = cls(transport, guard)
        transport.set_protocol(protocol)
        guard.adopt(protocol)
        # TLS cannot half-close (close_notify ends both directions): there the answer is simply
        # followed by silence until the client closes or the linger time is up.
        if transport.can_write_eof():
            transport.write_eof()
        transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        self.deadline = min(self._loop.time() + LINGER_IDLE_SECONDS, self._end)

    def eof_received(self) -> bool:
        self.transport.close()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._guard.release(self)

    def expire(self) -> None:
        self.deadline = 0.0
        self.transport.close()
