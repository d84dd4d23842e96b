"""Serving: every listener of echo-server in one process, on one uvloop event loop.

- plain HTTP/1.1 (+ WebSocket) on HTTP_PORT: uvicorn with httptools (the fast path);
- HTTPS on HTTPS_PORT, ALPN h2 + http/1.1: after the handshake, h2 goes to hypercorn and HTTP/1.1 to
  the same uvicorn/httptools protocol as the plain port; TLS facts go into every request's scope;
- cleartext HTTP/2 on H2C_PORT (off by default): hypercorn, prior knowledge and `Upgrade: h2c`.
  httptools cannot speak HTTP/2, so h2c gets its own port rather than slowing the plain one.

Invariants:
- Sockets are bound here, before the loop starts, so a taken port is one error line and nothing runs.
- Signals are owned here (neither server installs handlers). First SIGTERM/SIGINT: the app turns
  not-ready, every listener keeps serving new and in-flight requests for `drain_seconds`, then the
  listeners close, in-flight requests get `grace_seconds` to finish, and `run` returns 0. A second
  signal ends the drain period early.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import errno
import functools
import logging
import signal
import socket
from collections.abc import Awaitable, Callable, Generator, Iterator, MutableMapping
from dataclasses import dataclass
from typing import Any, TextIO, cast

import h2.events
import hypercorn.protocol
import uvicorn
import uvloop
from hypercorn.app_wrappers import ASGIWrapper
from hypercorn.asyncio.tcp_server import TCPServer
from hypercorn.asyncio.worker_context import WorkerContext
from hypercorn.config import Config as HypercornConfig
from hypercorn.protocol.h2 import H2Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from echo.tls import ServerTLS, TLSOptions, TLSSetupError, server_certificate, server_context, tls_facts

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
# Loose on purpose: apps type their scope as dict or TypedDict, and Callable parameters are contravariant.
ASGIApp = Callable[[Any, Any, Any], Awaitable[None]]

TLS_EXTENSION = "meshecho.tls"
TLS_HANDSHAKE_TIMEOUT = 10.0


class ServeError(Exception):
    """A start-up failure (port taken, bad certificate), as one human-readable line."""


@dataclass(frozen=True)
class ServeOptions:
    bind: str
    http_port: int | None
    https_port: int | None
    h2c_port: int | None
    tls: TLSOptions
    drain_seconds: float = 5.0
    grace_seconds: float = 30.0
    # Total header name + value bytes (MAX_HEADER_SIZE); more gets 431 before much more is buffered.
    max_header_bytes: int = 16 * 1024
    # Longer than common proxy idle timeouts, so an idle upstream connection is rarely closed under a
    # proxy that is about to reuse it (Envoy then answers 503 "upstream connect error ... reset").
    keep_alive_seconds: int = 75
    backlog: int = 2048


@dataclass(frozen=True)
class Listener:
    kind: str  # "http", "https" or "h2c"
    sock: socket.socket

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])


@dataclass
class Hooks:
    """What the serving layer tells the app; the CLI wires these to the app's readiness switch."""

    on_ready: Callable[[], None]
    on_drain: Callable[[], None]


def run(app: ASGIApp, options: ServeOptions, hooks: Hooks, log: TextIO) -> int:
    """Serve until SIGTERM/SIGINT; 0 after a clean drain. Raises ServeError before serving anything."""
    tls: ServerTLS | None = None
    if options.https_port is not None:
        try:
            certificate = server_certificate(options.tls, datetime.datetime.now(datetime.UTC))
            tls = server_context(options.tls, certificate)
        except TLSSetupError as error:
            raise ServeError(str(error)) from None
    with bound_listeners(options) as listeners:
        return uvloop.run(_serve(app, options, listeners, tls, hooks, log))


@contextlib.contextmanager
def bound_listeners(options: ServeOptions) -> Iterator[list[Listener]]:
    """Bind every enabled listener or none: on any failure the ones already bound are closed."""
    wanted = [
        (kind, port)
        for kind, port in (
            ("http", options.http_port),
            ("https", options.https_port),
            ("h2c", options.h2c_port),
        )
        if port is not None
    ]
    if not wanted:
        raise ServeError("every listener is off: set HTTP_PORT, HTTPS_PORT or H2C_PORT")
    ports = [port for _, port in wanted if port != 0]
    if len(ports) != len(set(ports)):
        raise ServeError(
            "HTTP_PORT, HTTPS_PORT and H2C_PORT must differ: " + ", ".join(f"{k}={p}" for k, p in wanted)
        )
    listeners: list[Listener] = []
    try:
        for kind, port in wanted:
            listeners.append(Listener(kind, _bind(options.bind, port, kind, options.backlog)))
        yield listeners
    finally:
        for listener in listeners:
            listener.sock.close()


def _bind(host: str, port: int, kind: str, backlog: int) -> socket.socket:
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as error:
        raise ServeError(f"bind address {host!r}: {error.strerror}") from None
    family, _, _, _, address = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        # SO_REUSEADDR: a restart may bind while old connections sit in TIME_WAIT (not port sharing).
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind(address)
        sock.listen(backlog)
        sock.setblocking(False)
    except OSError as error:
        sock.close()
        reason = (
            "address already in use" if error.errno == errno.EADDRINUSE else (error.strerror or str(error))
        )
        raise ServeError(f"cannot listen for {kind} on {_host_port(host, port)}: {reason}") from None
    return sock


def describe(listeners: list[Listener], options: ServeOptions, tls: ServerTLS | None) -> str:
    parts = []
    for listener in listeners:
        where = _host_port(options.bind, listener.port)
        if listener.kind == "http":
            parts.append(f"http on {where} (HTTP/1.1, WebSocket)")
        elif listener.kind == "h2c":
            parts.append(f"h2c on {where} (HTTP/2 prior knowledge or Upgrade, HTTP/1.1)")
        elif tls is not None:
            cert = tls.certificate
            origin = "generated" if cert.source == "generated" else f"from {cert.source}"
            mtls = {"off": "", "verified": ", client certificates required and verified"}.get(
                tls.client_auth, ", client certificates requested and reported unverified"
            )
            parts.append(f"https on {where} (h2, http/1.1; {cert.key_type} certificate {origin}{mtls})")
    disabled = [kind for kind in ("http", "https", "h2c") if kind not in {x.kind for x in listeners}]
    suffix = f"; off: {', '.join(disabled)}" if disabled else ""
    return "listening: " + "; ".join(parts) + suffix


async def _serve(
    app: ASGIApp,
    options: ServeOptions,
    listeners: list[Listener],
    tls: ServerTLS | None,
    hooks: Hooks,
    log: TextIO,
) -> int:
    loop = asyncio.get_running_loop()
    signals = asyncio.Queue[int]()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, signals.put_nowait, signum)

    # uvicorn always runs, even with HTTP_PORT=off: it also serves HTTP/1.1-over-TLS connections
    # (handed over by _TLSDispatch), and its tick keeps their Date header and graceful shutdown.
    uvicorn_up = asyncio.Event()
    uvicorn_server = _UvicornServer(_uvicorn_config(app, options), uvicorn_up)
    http_sockets = [listener.sock for listener in listeners if listener.kind == "http"]
    uvicorn_task = asyncio.create_task(uvicorn_server.serve(sockets=http_sockets))
    up_wait = asyncio.create_task(uvicorn_up.wait())
    await asyncio.wait([up_wait, uvicorn_task], return_when=asyncio.FIRST_COMPLETED)
    if not uvicorn_up.is_set():
        up_wait.cancel()
        return await _abort(uvicorn_task, log)

    hyper = _HypercornConnections(app, options)
    servers: list[asyncio.AbstractServer] = []
    try:
        for listener in listeners:
            if listener.kind == "https" and tls is not None:
                dispatch = functools.partial(
                    _TLSDispatch, tls, uvicorn_server.config, uvicorn_server.server_state, hyper
                )
                servers.append(
                    await loop.create_server(
                        dispatch,
                        sock=listener.sock,
                        ssl=tls.context,
                        ssl_handshake_timeout=TLS_HANDSHAKE_TIMEOUT,
                        backlog=options.backlog,
                    )
                )
            elif listener.kind == "h2c":
                servers.append(
                    await asyncio.start_server(
                        hyper.serve_cleartext, sock=listener.sock, backlog=options.backlog
                    )
                )
    except OSError as error:
        print(f"echo-server: a listener failed to start: {error}", file=log, flush=True)
        for server in servers:
            server.close()
        return await _abort(uvicorn_task, log)
    print(f"echo-server: {describe(listeners, options, tls)}", file=log, flush=True)
    hooks.on_ready()

    signal_wait: asyncio.Task[Any] = asyncio.create_task(signals.get())
    await asyncio.wait([signal_wait, uvicorn_task], return_when=asyncio.FIRST_COMPLETED)
    if not signal_wait.done():
        signal_wait.cancel()
        for server in servers:
            server.close()
        return await _abort(uvicorn_task, log)
    hooks.on_drain()
    name = signal.Signals(signal_wait.result()).name
    print(
        f"echo-server: {name}: not ready; still serving for {options.drain_seconds:g}s, then closing",
        file=log,
        flush=True,
    )
    # Serve on through the drain period so clients and proxies still routing here are answered while
    # endpoint removal propagates; a second signal cuts it short.
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(signals.get(), options.drain_seconds)
    print("echo-server: closing listeners, finishing in-flight requests", file=log, flush=True)
    for server in servers:
        server.close()
    uvicorn_server.should_exit = True
    failures: list[BaseException] = []
    hyper_result, uvicorn_result = await asyncio.gather(
        hyper.close(options.grace_seconds), uvicorn_task, return_exceptions=True
    )
    for result in (hyper_result, uvicorn_result):
        if isinstance(result, BaseException):
            failures.append(result)
            print(f"echo-server: error while stopping: {result!r}", file=log, flush=True)
    print("echo-server: stopped", file=log, flush=True)
    return 1 if failures else 0


async def _abort(uvicorn_task: asyncio.Task[None], log: TextIO) -> int:
    if uvicorn_task.done():
        error = None if uvicorn_task.cancelled() else uvicorn_task.exception()
        print(f"echo-server: the HTTP server stopped unexpectedly: {error!r}", file=log, flush=True)
    uvicorn_task.cancel()
    with contextlib.suppress(BaseException):
        await uvicorn_task
    return 1


# --- HTTP/1.1 (plain and over TLS): uvicorn + httptools --------------------------------------------


class _UvicornServer(uvicorn.Server):
    """uvicorn without its own signal handlers (run() owns signals) and with a started event."""

    def __init__(self, config: uvicorn.Config, started: asyncio.Event) -> None:
        super().__init__(config)
        self._started_event = started

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started:
            self._started_event.set()


class _EchoUvicornConfig(uvicorn.Config):
    max_header_bytes: int = 16 * 1024


def _uvicorn_config(app: ASGIApp, options: ServeOptions) -> uvicorn.Config:
    config = _EchoUvicornConfig(
        app,
        http=_HeaderLimitedHttpTools,
        ws="websockets-sansio",
        lifespan="off",
        log_config=None,
        access_log=False,  # the app writes its own JSON request log
        proxy_headers=False,  # an echo reports the real peer; X-Forwarded-For is echoed, not applied
        server_header=False,
        date_header=True,
        timeout_keep_alive=options.keep_alive_seconds,
        timeout_graceful_shutdown=max(1, round(options.grace_seconds)),
        backlog=options.backlog,
    )
    config.max_header_bytes = options.max_header_bytes
    return config


class _HeaderLimitedHttpTools(HttpToolsProtocol):
    """httptools buffers request headers without any limit; this protocol answers 431 instead.

    While a request's headers are still arriving, the raw bytes received so far are counted, so at
    most one read beyond the limit is ever buffered. Headers that arrive complete are measured
    exactly (name + value bytes, the measure MAX_HEADER_SIZE is defined by) by the app, which
    answers 431 on every listener alike; doing that sum here as well would cost every request twice.
    """

    _awaiting_headers = True
    _header_bytes = 0

    def _limit(self) -> int:
        return cast(_EchoUvicornConfig, self.config).max_header_bytes

    def data_received(self, data: bytes) -> None:
        awaiting = self._awaiting_headers
        super().data_received(data)
        if awaiting and self._awaiting_headers and self.transport is not None:
            self._header_bytes += len(data)
            if self._header_bytes > self._limit() and not self.transport.is_closing():
                self._send_431()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._awaiting_headers = True
        self._header_bytes = 0

    def on_headers_complete(self) -> None:
        self._awaiting_headers = False
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._awaiting_headers = True
        self._header_bytes = 0

    def _send_431(self) -> None:
        body = b"Request Header Fields Too Large"
        self.transport.write(
            b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: text/plain; charset=utf-8\r\n"
            b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(body), body)
        )
        self.transport.close()


class _TLSHttpTools(_HeaderLimitedHttpTools):
    """HTTP/1.1 over TLS: the same fast protocol, plus the connection's TLS facts in every scope."""

    def __init__(self, *args: Any, tls_facts: dict[str, object], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._tls_facts = tls_facts

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.scope["extensions"] = {TLS_EXTENSION: cast(dict[object, object], self._tls_facts)}


# --- the HTTPS port: one TLS listener, two protocol stacks -----------------------------------------
# ALPN decides per connection, after the handshake: "h2" goes to hypercorn (the only HTTP/2 stack
# here), anything else to uvicorn's httptools protocol, which serves HTTP/1.1 several times faster
# than hypercorn's h11. Either way the TLS facts are read once per connection and put in each scope.


class _TLSDispatch(asyncio.Protocol):
    def __init__(
        self, tls: ServerTLS, h1_config: uvicorn.Config, state: Any, hyper: _HypercornConnections
    ) -> None:
        self._tls = tls
        self._h1_config = h1_config
        self._state = state
        self._hyper = hyper

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # asyncio calls this once the TLS handshake has completed, so ALPN and the peer are known.
        ssl_object = transport.get_extra_info("ssl_object")
        facts = tls_facts(ssl_object, self._tls.sni, self._tls.client_auth) if ssl_object is not None else {}
        protocol: asyncio.BaseProtocol
        if facts.get("alpn") == "h2":
            reader = asyncio.StreamReader(limit=2**16)
            protocol = asyncio.StreamReaderProtocol(
                reader, lambda reader, writer: self._hyper.serve_tls(reader, writer, facts)
            )
        else:
            protocol = _TLSHttpTools(
                config=self._h1_config, server_state=self._state, app_state={}, tls_facts=facts
            )
        transport.set_protocol(protocol)
        protocol.connection_made(cast(asyncio.Transport, transport))


# --- HTTP/2 (over TLS, and h2c): hypercorn ---------------------------------------------------------
# hypercorn.asyncio.serve() neither takes pre-bound sockets nor exposes the TLS connection to the
# app. This is its worker loop cut to what we need: the same TCPServer per connection, but with a
# per-connection app that adds the TLS facts to every request scope.


def _hypercorn_config(options: ServeOptions) -> HypercornConfig:
    config = HypercornConfig()
    config.accesslog = None
    # No handler is configured: warnings and errors (an app exception on HTTP/2) reach stderr through
    # logging's last-resort handler, as uvicorn's do.
    config.errorlog = logging.getLogger("echo.hypercorn")
    config.include_server_header = False
    config.keep_alive_timeout = options.keep_alive_seconds
    config.graceful_timeout = options.grace_seconds
    config.h11_max_incomplete_size = options.max_header_bytes
    config.h2_max_header_list_size = options.max_header_bytes
    return config


class _WithTLSFacts:
    """hypercorn app wrapper adding `scope["extensions"]["meshecho.tls"]` for one TLS connection."""

    def __init__(self, inner: Any, facts: dict[str, object]) -> None:
        self._inner = inner
        self._facts = facts

    async def __call__(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        sync_spawn: Callable[..., Any],
        call_soon: Callable[..., Any],
    ) -> None:
        extensions = scope.get("extensions")
        if extensions is None:
            extensions = scope["extensions"] = {}
        extensions[TLS_EXTENSION] = self._facts
        await self._inner(scope, receive, send, sync_spawn, call_soon)


class _H2Protocol(H2Protocol):
    """hypercorn's HTTP/2 protocol, tolerant of request data after a complete response.

    When the app answers before the request body has arrived (a 413, a redirect), hypercorn forgets
    the stream, and the client's next DATA frame raises KeyError, which drops the whole connection
    with every other stream on it. Here such data is discarded instead (never buffered) and its
    bytes are handed back to the connection's flow-control window so other streams keep flowing.
    """

    async def _handle_events(self, events: list[h2.events.Event]) -> None:
        for event in events:
            if isinstance(event, h2.events.DataReceived) and event.stream_id not in self.streams:
                self.connection.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                continue
            await super()._handle_events([event])


# hypercorn's ProtocolWrapper picks its HTTP/2 class from this module attribute; this process is
# the only user of hypercorn, so replacing it is the narrowest way to apply the fix above.
setattr(hypercorn.protocol, "H2Protocol", _H2Protocol)  # noqa: B010 - not re-exported for mypy


class _HypercornConnections:
    def __init__(self, app: ASGIApp, options: ServeOptions) -> None:
        self._config = _hypercorn_config(options)
        self._context = WorkerContext(None)
        self._app = ASGIWrapper(cast(Any, app))  # hypercorn's TypedDict scope types are stricter than ours
        self._connections: set[asyncio.Task[Any]] = set()

    async def serve_cleartext(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await self._serve(reader, writer, self._app)

    async def serve_tls(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, facts: dict[str, object]
    ) -> None:
        await self._serve(reader, writer, _WithTLSFacts(self._app, facts))

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, app: Any) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._connections.add(task)
            task.add_done_callback(self._connections.discard)
        await TCPServer(app, asyncio.get_running_loop(), self._config, self._context, {}, reader, writer)

    async def close(self, grace_seconds: float) -> None:
        # Idle connections close now; busy ones after their in-flight streams, or at the grace limit.
        await self._context.terminated.set()
        if self._connections:
            await asyncio.wait(set(self._connections), timeout=grace_seconds)
        for task in list(self._connections):
            task.cancel()


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
