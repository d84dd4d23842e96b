"""HTTP/1.x on every listener: uvicorn's httptools protocol, bounded in size and time.

One protocol class serves the plain HTTP port, HTTP/1.1 over TLS (handed over after the handshake)
and HTTP/1.1 on the h2c port (handed over by the preface sniffer, which also upgrades `Upgrade: h2c`
requests to HTTP/2). So every rule below holds on every HTTP/1.x listener alike.

Rules, each in addition to what httptools/llhttp already enforce:
1. Size. A head still arriving is refused (431) once its raw bytes pass `Limits.head_bound`; a
   complete head is measured exactly (name + value bytes, MAX_HEADER_SIZE) before the app sees it,
   so admin paths get the same limit as echo paths. Trailer fields count like header fields, and so
   does everything else a chunked body sends that is not body data (RFC 9112 §7.1).
2. Time. A head must arrive within the header timeout (counted from the connection's start for its
   first request, from the first byte for later ones) — else 408, or a silent close if nothing came;
   a body may pause at most the body timeout — else 408. Between requests uvicorn's keep-alive
   timeout applies.
3. Host. An HTTP/1.1 request without exactly one Host header gets 400 (RFC 9112 §3.2).
4. Raw bytes in the target. llhttp refuses bytes >= 0x80 in the request line, but clients (and
   mendhak's Node) send them; they are percent-escaped for the parser only, and the scope gets the
   original bytes: `raw_path`/`query_string` as received, `path` decoded as UTF-8 with
   `surrogateescape` (the app shows undecodable bytes as `\\xNN`).
5. Every answer the serving layer gives itself (400, 408, 431) is the app's JSON error document with
   its identity headers, followed by a lingering close, so the client reads it before the connection
   ends. A response that completes while the request body is still arriving also ends in a
   lingering close (bounded), instead of reading an unbounded rest.
6. PRESERVE_HEADER_CASE: the header names as received go to `scope["extensions"]
   ["echo.raw_header_names"]` (same order and length as `scope["headers"]`); off, nothing extra runs.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import unquote

import httptools
from uvicorn.protocols.http.flow_control import service_unavailable
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from echo.connections import ConnectionGuard, ErrorResponse, Limits, LingeringClose
from echo.h1response import CONNECTION_CLOSE, EchoCycle, default_headers

TLS_EXTENSION = "meshecho.tls"
RAW_HEADER_NAMES_EXTENSION = "echo.raw_header_names"

# Hands a connection that asked for `Upgrade: h2c` to HTTP/2: (transport, request headers with
# pseudo-headers, the HTTP2-Settings value, bytes that followed the request).
H2CUpgrade = Callable[[asyncio.Transport, list[tuple[bytes, bytes]], bytes, bytes], None]

# Hop-by-hop fields of an upgrade request that have no place in its HTTP/2 form (RFC 9113 §8.2.2).
_NOT_FORWARDED_ON_UPGRADE = frozenset(
    {b"connection", b"upgrade", b"http2-settings", b"host", b"keep-alive", b"proxy-connection", b"te"}
)
_HIGH_BYTE = re.compile(rb"[\x80-\xff]")
# A request line starts with a method token and a space (RFC 9110 §5.6.2 token characters).
_METHOD_THEN_SPACE = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+ ")
SWITCHING_TO_H2C = b"HTTP/1.1 101 Switching Protocols\r\nconnection: Upgrade\r\nupgrade: h2c\r\n\r\n"


@dataclass(frozen=True)
class H1Context:
    """What every HTTP/1.x connection of the process shares."""

    limits: Limits
    guard: ConnectionGuard
    error_response: ErrorResponse
    preserve_header_case: bool


class _Rejected(Exception):
    """Raised from a parser callback once the serving layer has answered: stops the parser."""


class EchoHttpTools(HttpToolsProtocol):
    # Per-connection state; class defaults keep __init__ cheap.
    deadline = 0.0
    _refused = False
    _rejected = False
    _in_head = False
    _in_body = False
    _head_bytes = 0
    _feed_len = 0
    _overhead = 0
    _body_seen = False
    _hosts = 0
    _fields_total = 0
    _line_done = False
    _line_prefix = b""
    _raw_line: bytes | None = None
    _held = b""
    _raw_names: list[bytes] | None = None
    # Set by protocol_class() for every connection of a process, and by the TLS and h2c
    # dispatchers for one connection, right after construction (no __init__ of our own: per
    # connection, every Python-level step counts).
    _ctx: H1Context
    tls_facts: dict[str, object] | None = None
    h2c_upgrade: H2CUpgrade | None = None

    # -- connection ----------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        guard = self._ctx.guard
        if len(guard.open) < guard.limits.max_connections:
            guard.open.add(self)
        elif not guard.admit(self):  # over the cap: refused (and counted, and said)
            self._refused = True
            transport.close()
            return
        super().connection_made(transport)
        # The first request must arrive within the header timeout: silent connections are closed.
        self.deadline = self.loop.time() + self._ctx.limits.header_timeout

    def connection_lost(self, exc: Exception | None) -> None:
        if self._refused:
            return
        self._ctx.guard.open.discard(self)  # ConnectionGuard.release, inlined: once per connection
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self._unset_keepalive_if_required()
        if self._rejected:
            return
        original = data
        if not self._in_body and (self._held or not data.isascii()):
            escaped = self._escape_request_line(data)
            if escaped is None:  # the request line is not complete yet: hold it back
                self._track_head(data, held=True)
                return
            data = escaped
        self._feed_len = len(data)
        self._body_seen = False
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            self._upgrade(data[upgrade.args[0] :] if upgrade.args else b"")
            return
        except httptools.HttpParserError as error:
            if not self._rejected:
                self._answer_and_close(400, _parser_reason(error, data))
            return
        if self._in_head:
            self._track_head(original)
        elif self._in_body:
            self._track_body(data)

    def _track_head(self, data: bytes, *, held: bool = False) -> None:
        """A head still incomplete after this read: bound it in time and in size (rule 1, 2)."""
        if self._head_bytes == 0 and self.deadline == 0.0:
            self.deadline = self.loop.time() + self._ctx.limits.header_timeout
        self._head_bytes += len(data)
        if not held and not self._line_done:
            # Keep the request line's bytes while it spans reads (rule 4 needs them if a later
            # read brings raw bytes into it).
            if not self._line_prefix:
                data = data.lstrip(b"\r\n")
            line_end = data.find(b"\n")
            self._line_prefix += data if line_end < 0 else data[:line_end]
            self._line_done = line_end >= 0
        if self._head_bytes > self._ctx.limits.head_bound:
            self._answer_and_close(
                431, f"request headers larger than {self._ctx.limits.max_header_bytes} bytes"
            )

    def _track_body(self, data: bytes) -> None:
        self.deadline = self.loop.time() + self._ctx.limits.body_timeout
        cycle = self.cycle
        if cycle is not None and cycle.scope is self.scope and not getattr(cycle, "echo_watched", False):
            self._watch_early_answer(cycle)
        if self._body_seen:
            self._overhead = 0
            return
        # Nothing of this read was body data: chunk framing or trailer fields, bounded like a head.
        self._overhead += len(data)
        if self._overhead > self._ctx.limits.head_bound:
            self._answer_and_close(
                431, f"request trailers larger than {self._ctx.limits.max_header_bytes} bytes"
            )

    def expire(self) -> None:
        """The sweeper found this connection past its read deadline (rule 2)."""
        limits = self._ctx.limits
        cycle = self.cycle
        busy = cycle is not None and not cycle.response_complete
        if self._in_head or self._held:
            if busy:  # a pipelined head waits while an answer is still being made
                self.deadline = self.loop.time() + limits.header_timeout
            else:
                message = f"request headers not received within {limits.header_timeout:g}s"
                self._answer_and_close(408, message, linger=False)
        elif self._in_body:
            if self.flow.read_paused:  # the app is not reading: the client is not the slow one
                self.deadline = self.loop.time() + limits.body_timeout
            elif cycle is not None and not cycle.response_started:
                message = f"request body paused for more than {limits.body_timeout:g}s"
                self._answer_and_close(408, message, linger=False)
            else:
                self._linger()
        else:  # a connection that never sent a request
            self.deadline = 0.0
            self.transport.close()

    # -- answers of the serving layer ------------------------------------------------------------

    def _answer_and_close(self, status: int, message: str, *, linger: bool = True) -> None:
        headers, body = self._ctx.error_response(status, message)
        parts = [STATUS_LINE[status]]
        for name, value in (*default_headers(self.server_state.default_headers), *headers):
            parts += [name, b": ", value, b"\r\n"]
        parts += [CONNECTION_CLOSE, b"\r\n", body]
        if not self.transport.is_closing():
            self.transport.write(b"".join(parts))
        self._linger(at_once=not linger)

    def _linger(self, *, at_once: bool = False) -> None:
        """Leave the connection to a lingering close (or close it now): this protocol is done with it."""
        self._rejected = True
        self.deadline = 0.0
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            cycle.disconnected = True  # the app sees http.disconnect; what it sends is dropped
            cycle.message_event.set()
        self.pipeline.clear()
        self._unset_keepalive_if_required()
        self.connections.discard(self)
        self._ctx.guard.release(self)
        if at_once:
            self.transport.close()
        else:
            LingeringClose.take_over(self.transport, self._ctx.guard)

    def _reject(self, status: int, message: str) -> None:
        """From a parser callback: answer, then stop the parser."""
        self._answer_and_close(status, message)
        raise _Rejected

    def _watch_early_answer(self, cycle: Any) -> None:
        """This request's body spans reads, so its answer may come before the body ends (rule 5):
        hook its completion, and its close if it is `connection: close`. Requests read in one go,
        the usual ones, never come here."""
        cycle.echo_watched = True
        cycle.on_response = functools.partial(self._answered, cycle)
        if not cycle.keep_alive:
            cycle.transport = _CloseGate(self)

    def close_after_response(self) -> None:
        """A response cycle with `connection: close` is done (see _CloseGate)."""
        if self._in_body and not self._rejected:
            self._linger()
        else:
            self.transport.close()

    # -- parser callbacks ------------------------------------------------------------------------

    def on_message_begin(self) -> None:
        # uvicorn's on_message_begin, inlined (it runs for every request), then this protocol's state.
        self.url = b""
        self.expect_100_continue = False
        self.headers = []
        self.scope = {  # type: ignore[typeddict-item]
            "type": "http",
            "asgi": {"version": self.asgi_version, "spec_version": "2.3"},
            "http_version": "1.1",
            "server": self.server,
            "client": self.client,
            "scheme": self.scheme,  # type: ignore[typeddict-item]
            "root_path": self.root_path,
            "headers": self.headers,
            "state": self.app_state.copy(),
        }
        self._in_head = True
        self._hosts = 0
        self._fields_total = 0
        if self.tls_facts is not None:
            self.scope["extensions"] = {TLS_EXTENSION: cast(dict[object, object], self.tls_facts)}
        if self._ctx.preserve_header_case:
            self._raw_names = []
            extensions = self.scope.setdefault("extensions", {})
            extensions[RAW_HEADER_NAMES_EXTENSION] = cast(dict[object, object], self._raw_names)

    def on_header(self, name: bytes, value: bytes) -> None:
        # uvicorn's on_header, plus the Host count; after the head, a trailer field (rule 1).
        if self._in_head:
            name = name.lower()
            # llhttp keeps trailing whitespace, which is not part of the value (RFC 9110 §5.5).
            value = value.rstrip(b" \t")
            if name == b"host":
                self._hosts += 1
            elif name == b"expect" and value.lower() == b"100-continue":
                self.expect_100_continue = True
        else:
            self._trailer_field(name, value)
            return
        self.headers.append((name, value))

    def _trailer_field(self, name: bytes, value: bytes) -> None:
        # RFC 9112 §7.1.2: trailer fields are held to MAX_HEADER_SIZE together with the header
        # fields (the scope's headers list gets both, as uvicorn gives them).
        if not self._fields_total:
            self._fields_total = sum(len(field) + len(content) for field, content in self.headers)
        self._fields_total += len(name) + len(value)
        self._overhead += len(name) + len(value)
        self.headers.append((name.lower(), value.rstrip(b" \t")))
        limit = self._ctx.limits.max_header_bytes
        if self._fields_total > limit:
            self._reject(
                431, f"request headers and trailers total {self._fields_total} bytes, more than {limit}"
            )

    def _on_header_keeping_case(self, name: bytes, value: bytes) -> None:
        if self._raw_names is not None:
            self._raw_names.append(name)
        EchoHttpTools.on_header(self, name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._in_body = True
        self.deadline = 0.0
        limit = self._ctx.limits.max_header_bytes
        # Only a head that may be over the limit is summed: the common small one costs nothing.
        if self._head_bytes + self._feed_len > limit:
            size = sum(len(name) + len(value) for name, value in self.headers)
            if size > limit:
                self._reject(431, f"request headers total {size} bytes, more than {limit}")
        version = self.parser.get_http_version()
        if version != "1.1":
            if version != "1.0":  # llhttp also takes 0.9 and 2.0 request lines
                self._reject(
                    505,
                    f"HTTP/{version} is not spoken here: HTTP/1.0 and 1.1 (HTTP/2 by ALPN or on H2C_PORT)",
                )
        elif self._hosts != 1:
            problem = "without a Host header" if self._hosts == 0 else "with more than one Host header"
            self._reject(400, f"HTTP/1.1 request {problem} (RFC 9112 section 3.2)")
        self._head_bytes = 0
        self._line_prefix = b""
        self._line_done = False
        # uvicorn's on_headers_complete, inlined: it builds its own response cycle class, and this
        # protocol's is EchoCycle (echo/h1response.py), which sends the head as the app gives it,
        # with the body. (Swapping the class of uvicorn's cycle afterwards would cost every later
        # attribute access on it its fast path.)
        parser = self.parser
        scope = self.scope
        raw_line, self._raw_line = self._raw_line, None
        scope["method"] = parser.get_method().decode("ascii")
        if version != "1.1":
            scope["http_version"] = version
        if parser.should_upgrade() and self._should_upgrade():
            return
        url = httptools.parse_url(self.url)
        raw_path: bytes = url.path
        path = raw_path.decode("ascii")
        if "%" in path:
            path = unquote(path)
        scope["path"] = self.root_path + path
        scope["raw_path"] = self.root_path.encode("ascii") + raw_path
        scope["query_string"] = url.query or b""
        if raw_line is not None:
            self._restore_raw_target(raw_line)
        app = self.app
        if self.limit_concurrency is not None and (
            len(self.connections) >= self.limit_concurrency or len(self.tasks) >= self.limit_concurrency
        ):
            app = service_unavailable
            self.logger.warning("Exceeded concurrency limit.")
        existing = self.cycle
        self.cycle = cycle = EchoCycle(
            scope,
            self.transport,
            self.flow,
            self.logger,
            self.server_state.default_headers,
            version != "1.0" and parser.should_keep_alive(),
            self.expect_100_continue,
            self.on_response_complete,
        )
        if existing is None or existing.response_complete:
            self._start_asgi_task(cycle, app)
        else:  # pipelined: queued until the response before it completes
            self.flow.pause_reading()
            self.pipeline.appendleft((cycle, app))

    def on_body(self, body: bytes) -> None:
        self._body_seen = True
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._in_body = False
        self._overhead = 0
        self.deadline = 0.0
        # uvicorn's on_message_complete, inlined.
        cycle = self.cycle
        if (self.parser.should_upgrade() and self._should_upgrade()) or cycle.response_complete:
            return
        cycle.more_body = False
        cycle.message_event.set()

    def _answered(self, cycle: Any) -> None:
        """on_response of a request whose body spans reads (see _watch_early_answer)."""
        if self._in_body and cycle is self.cycle and not self.transport.is_closing():
            # Answered before its body was read to its end: do not read an unbounded rest.
            self.server_state.total_requests += 1
            self._linger()
            return
        self.on_response_complete()

    # -- raw bytes in the request target (rule 4) ------------------------------------------------

    def _escape_request_line(self, data: bytes) -> bytes | None:
        """Escape bytes >= 0x80 of the request line for llhttp; None while the line is incomplete."""
        if self._in_head and self._line_done:
            if self._held:
                data, self._held = self._held + data, b""
            return data  # only header values are non-ASCII, which llhttp accepts as obs-text
        pending = self._held + data
        # RFC 9112 §2.2: empty lines before a request line are ignored.
        start = 0 if self._in_head else len(pending) - len(pending.lstrip(b"\r\n"))
        if not self._in_head and not _METHOD_THEN_SPACE.match(pending, start):
            return pending  # not a request line (TLS on the plain port, garbage): llhttp refuses it
        line_end = pending.find(b"\n", start)
        if line_end < 0:
            self._held = pending
            return None
        self._held = b""
        self._line_done = True
        line = pending[start:line_end]
        if line.isascii():
            return pending
        self._raw_line = self._line_prefix + line
        return pending[:start] + escape_high_bytes(line) + pending[line_end:]

    def _restore_raw_target(self, raw_line: bytes) -> None:
        parts = raw_line.strip(b"\r\n").split(b" ")
        if len(parts) < 3:
            return
        path, query = split_target(parts[1])
        self.scope["raw_path"] = path
        self.scope["path"] = self.root_path + unquote(path.decode("utf-8", "surrogateescape"))
        self.scope["query_string"] = query

    # -- upgrades ----------------------------------------------------------------------------------

    def _should_upgrade(self) -> bool:
        upgrade = self._get_upgrade()
        if upgrade == b"websocket":
            return self.ws_protocol_class is not None
        return upgrade == b"h2c" and self.h2c_upgrade is not None and self._h2c_request_ok()

    def _h2c_request_ok(self) -> bool:
        # RFC 7540 §3.2: exactly one HTTP2-Settings; like hypercorn, a request with a body is
        # answered over HTTP/1.1 instead (its body would have to be read before switching).
        names = [name for name, _ in self.headers]
        return (
            names.count(b"http2-settings") == 1
            and b"content-length" not in names
            and b"transfer-encoding" not in names
        )

    def handle_websocket_upgrade(self) -> None:
        super().handle_websocket_upgrade()
        # The WebSocket protocol now owns the transport; this connection stays counted under the
        # cap until that protocol loses it.
        self.deadline = 0.0
        websocket = self.transport.get_protocol()
        scope = getattr(websocket, "scope", None)
        if self.tls_facts is not None and scope is not None:
            # uvicorn built the WebSocket scope itself; its app task has not run yet.
            scope.setdefault("extensions", {})[TLS_EXTENSION] = self.tls_facts
        lost = websocket.connection_lost
        guard, entry = self._ctx.guard, self

        def connection_lost(exc: Exception | None) -> None:
            guard.release(entry)
            lost(exc)

        websocket.connection_lost = connection_lost  # type: ignore[method-assign]

    def _upgrade(self, rest: bytes) -> None:
        upgrade = self._get_upgrade()
        if upgrade == b"websocket" and self.ws_protocol_class is not None:
            self.handle_websocket_upgrade()
            return
        if upgrade == b"h2c" and self.h2c_upgrade is not None and self._h2c_request_ok():
            self._switch_to_h2c(rest)
            return
        # Not upgraded: the request is answered over HTTP/1.1, but the parser cannot go on after an
        # upgrade request, so the connection closes after that answer.
        cycle = self.cycle
        if cycle is not None and cycle.scope is self.scope and not cycle.response_complete:
            cycle.keep_alive = False
            cycle.transport = _CloseGate(self)  # type: ignore[assignment]
        else:
            self.transport.close()

    def _switch_to_h2c(self, rest: bytes) -> None:
        assert self.h2c_upgrade is not None
        settings = b""
        authority = b""
        forwarded: list[tuple[bytes, bytes]] = []
        for name, value in self.headers:
            if name == b"http2-settings":
                settings = value
            elif name == b"host":
                authority = value
            if name not in _NOT_FORWARDED_ON_UPGRADE:
                forwarded.append((name, value))
        try:
            base64.urlsafe_b64decode(settings + b"=" * (-len(settings) % 4))
        except (binascii.Error, ValueError):
            self._answer_and_close(400, "HTTP2-Settings is not base64url")
            return
        request = [
            (b":method", self.scope["method"].encode("ascii")),
            (b":scheme", b"http"),
            (b":authority", authority),
            (b":path", self.url),
            *forwarded,
        ]
        self.transport.write(SWITCHING_TO_H2C)
        self._rejected = True  # this protocol is done; HTTP/2 takes the transport over
        self.deadline = 0.0
        self._unset_keepalive_if_required()
        self.connections.discard(self)
        self._ctx.guard.release(self)
        self.h2c_upgrade(self.transport, request, settings, rest)


def protocol_class(context: H1Context) -> type[EchoHttpTools]:
    """The protocol class for one process: its context as a class attribute, and with
    PRESERVE_HEADER_CASE the header callback that keeps the names as received (httptools looks its
    callbacks up once per parser, so the choice costs nothing per header when it is off)."""
    namespace: dict[str, Any] = {"_ctx": context}
    if context.preserve_header_case:
        namespace["on_header"] = EchoHttpTools._on_header_keeping_case
    return type("EchoHttpTools", (EchoHttpTools,), namespace)


class _CloseGate:
    """The transport as a `connection: close` response cycle sees it: its close() goes through
    `close_after_response`, which closes lingeringly while the request body is still arriving."""

    __slots__ = ("_protocol", "_transport")

    def __init__(self, protocol: EchoHttpTools) -> None:
        self._protocol = protocol
        self._transport = protocol.transport

    def write(self, data: bytes) -> None:
        self._transport.write(data)

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def close(self) -> None:
        self._protocol.close_after_response()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def split_target(target: bytes) -> tuple[bytes, bytes]:
    """A request target (origin or absolute form) → (path, query), both as raw bytes."""
    if not target.startswith(b"/"):
        scheme_end = target.find(b"://")
        if scheme_end >= 0:
            slash = target.find(b"/", scheme_end + 3)
            target = target[slash:] if slash >= 0 else b"/"
    target = target.partition(b"#")[0]
    path, _, query = target.partition(b"?")
    return path, query


def escape_high_bytes(raw: bytes) -> bytes:
    return _HIGH_BYTE.sub(lambda match: b"%%%02X" % match[0][0], raw)


def _parser_reason(error: Exception, data: bytes) -> str:
    if data.startswith(b"PRI * HTTP/2.0"):
        return "an HTTP/2 preface on an HTTP/1.x connection: use H2C_PORT, or ALPN h2 on HTTPS_PORT"
    if isinstance(error.__context__, httptools.HttpParserInvalidURLError):
        return "malformed HTTP request: the request target cannot be parsed"
    text = str(error) or type(error).__name__
    return "malformed HTTP request: " + text.rstrip(".").lower()
