"""Serving: every listener of echo-server in one process, on one uvloop event loop.

- plain HTTP/1.1 (+ WebSocket) on HTTP_PORT: uvicorn's httptools protocol (echo/http1.py);
- HTTPS on HTTPS_PORT, ALPN h2 + http/1.1: after the handshake, h2 goes to hypercorn (echo/http2.py)
  and HTTP/1.1 to the same httptools protocol as the plain port; TLS facts go into every scope;
- cleartext HTTP/2 on H2C_PORT (off by default): a preface sniffer sends HTTP/2 prior knowledge to
  hypercorn and everything else to the httptools protocol, which upgrades `Upgrade: h2c` requests.
  httptools cannot speak HTTP/2, so h2c gets its own port rather than slowing the plain one.
Every connection, whatever its listener, is counted and timed by one ConnectionGuard
(echo/connections.py).

Invariants:
- Sockets are bound here, before the loop starts, so a taken port is one error line and nothing runs.
- Signals are owned here (neither server installs handlers). First SIGTERM/SIGINT: the app turns
  not-ready, every listener keeps serving new and in-flight requests for `drain_seconds`, then the
  listeners close, in-flight requests get `grace_seconds` to finish, and `run` returns 0. A second
  SIGTERM ends the drain period early; a second SIGINT (Ctrl-C again) stops at once (exit 130).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import errno
import functools
import logging
import resource
import signal
import socket
from collections.abc import Awaitable, Callable, Generator, Iterator
from dataclasses import dataclass
from typing import Any, TextIO, cast

import uvicorn
import uvloop

from echo.connections import ConnectionGuard, ErrorResponse, Limits, Notices
from echo.http1 import EchoHttpTools, H1Context, H2CUpgrade, protocol_class
from echo.http2 import H2Context, Http2Connections, handed_over, hypercorn_config
from echo.tls import ServerTLS, TLSOptions, TLSSetupError, server_certificate, server_context, tls_facts

# Loose on purpose: apps type their scope as dict or TypedDict, and Callable parameters are contravariant.
ASGIApp = Callable[[Any, Any, Any], Awaitable[None]]

TLS_HANDSHAKE_TIMEOUT = 10.0
EXIT_STOPPED_AT_ONCE = 130  # 128 + SIGINT, as a shell reports a Ctrl-C
H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
# Descriptors kept free beyond the connection cap: listeners, logs, certificate files.
_SPARE_DESCRIPTORS = 64


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
    # Total header name + value bytes (MAX_HEADER_SIZE), for HTTP/1.x and HTTP/2 alike.
    max_header_bytes: int = 16 * 1024
    header_timeout_seconds: float = 10.0
    body_timeout_seconds: float = 30.0
    max_connections: int = 10_000
    preserve_header_case: bool = False
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
    """What the serving layer and the app tell each other; the CLI wires these to the app."""

    on_ready: Callable[[], None]
    on_drain: Callable[[], None]
    # The app's error document, for the answers the serving layer gives itself (400, 408, 431).
    error_response: ErrorResponse


def run(app: ASGIApp, options: ServeOptions, hooks: Hooks, log: TextIO) -> int:
    """Serve until SIGTERM/SIGINT; 0 after a clean drain. Raises ServeError before serving anything."""
    tls: ServerTLS | None = None
    if options.https_port is not None:
        try:
            certificate = server_certificate(options.tls, datetime.datetime.now(datetime.UTC))
            tls = server_context(options.tls, certificate)
        except TLSSetupError as error:
            raise ServeError(str(error)) from None
    max_connections = fit_descriptor_limit(options.max_connections)
    if max_connections < options.max_connections:
        print(
            f"echo-server: the open-files limit allows {max_connections} connections, "
            f"not ECHO_MAX_CONNECTIONS={options.max_connections}",
            file=log,
            flush=True,
        )
    limits = Limits(
        max_header_bytes=options.max_header_bytes,
        header_timeout=options.header_timeout_seconds,
        body_timeout=options.body_timeout_seconds,
        keep_alive=options.keep_alive_seconds,
        max_connections=max_connections,
    )
    with bound_listeners(options) as listeners:
        return uvloop.run(_serve(app, options, limits, listeners, tls, hooks, log))


def fit_descriptor_limit(max_connections: int) -> int:
    """Raise the soft open-files limit for the cap if the hard one allows; the cap that fits."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = max_connections + _SPARE_DESCRIPTORS
    if soft != resource.RLIM_INFINITY and soft < wanted:
        raised = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
            soft = raised
    if soft == resource.RLIM_INFINITY:
        return max_connections
    return max(1, min(max_connections, soft - _SPARE_DESCRIPTORS))


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
    limits: Limits,
    listeners: list[Listener],
    tls: ServerTLS | None,
    hooks: Hooks,
    log: TextIO,
) -> int:
    loop = asyncio.get_running_loop()
    signals = asyncio.Queue[int]()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, signals.put_nowait, signum)

    notices = Notices(log)
    guard = ConnectionGuard(limits, notices)
    sweeper = asyncio.create_task(guard.sweep())
    hyper = Http2Connections(
        app,
        H2Context(limits, guard, hooks.error_response, notices),
        hypercorn_config(limits, options.grace_seconds),
    )
    # uvicorn always runs, even with HTTP_PORT=off: it also serves HTTP/1.1 on the other listeners
    # (handed over after the TLS handshake or the preface sniff), and its tick keeps their Date
    # header and graceful shutdown.
    uvicorn_up = asyncio.Event()
    h1_class = protocol_class(H1Context(limits, guard, hooks.error_response, options.preserve_header_case))
    uvicorn_server = _UvicornServer(_uvicorn_config(app, options, h1_class), uvicorn_up)
    http_sockets = [listener.sock for listener in listeners if listener.kind == "http"]
    uvicorn_task = asyncio.create_task(uvicorn_server.serve(sockets=http_sockets))
    up_wait = asyncio.create_task(uvicorn_up.wait())
    await asyncio.wait([up_wait, uvicorn_task], return_when=asyncio.FIRST_COMPLETED)
    if not uvicorn_up.is_set():
        up_wait.cancel()
        sweeper.cancel()
        return await _abort(uvicorn_task, log)

    def h1_protocol(
        tls_facts: dict[str, object] | None = None, h2c_upgrade: H2CUpgrade | None = None
    ) -> EchoHttpTools:
        protocol = h1_class(
            config=uvicorn_server.config, server_state=uvicorn_server.server_state, app_state={}
        )
        protocol.tls_facts = tls_facts
        protocol.h2c_upgrade = h2c_upgrade
        return protocol

    servers: list[asyncio.AbstractServer] = []
    try:
        for listener in listeners:
            if listener.kind == "https" and tls is not None:
                servers.append(
                    await loop.create_server(
                        functools.partial(_TLSDispatch, tls, h1_protocol, hyper),
                        sock=listener.sock,
                        ssl=tls.context,
                        ssl_handshake_timeout=TLS_HANDSHAKE_TIMEOUT,
                        backlog=options.backlog,
                    )
                )
            elif listener.kind == "h2c":
                servers.append(
                    await loop.create_server(
                        functools.partial(_H2CSniffer, guard, h1_protocol, hyper),
                        sock=listener.sock,
                        backlog=options.backlog,
                    )
                )
    except OSError as error:
        print(f"echo-server: a listener failed to start: {error}", file=log, flush=True)
        for server in servers:
            server.close()
        sweeper.cancel()
        return await _abort(uvicorn_task, log)
    print(f"echo-server: {describe(listeners, options, tls)}", file=log, flush=True)
    hooks.on_ready()

    try:
        signal_wait: asyncio.Task[Any] = asyncio.create_task(signals.get())
        await asyncio.wait([signal_wait, uvicorn_task], return_when=asyncio.FIRST_COMPLETED)
        if not signal_wait.done():
            signal_wait.cancel()
            for server in servers:
                server.close()
            return await _abort(uvicorn_task, log)
        hooks.on_drain()
        first = signal.Signals(signal_wait.result())
        again = " (Ctrl-C again to stop at once)" if first is signal.SIGINT else ""
        print(
            f"echo-server: {first.name}: not ready; still serving for {options.drain_seconds:g}s, "
            f"then closing{again}",
            file=log,
            flush=True,
        )
        # Serve on through the drain period so clients and proxies still routing here are answered
        # while endpoint removal propagates; a second SIGTERM cuts it short, a second SIGINT stops.
        with contextlib.suppress(TimeoutError):
            if await asyncio.wait_for(signals.get(), options.drain_seconds) == signal.SIGINT:
                return await _stop_at_once(uvicorn_server, uvicorn_task, hyper, log)
        print("echo-server: closing listeners, finishing in-flight requests", file=log, flush=True)
        for server in servers:
            server.close()
        uvicorn_server.should_exit = True
        closing = asyncio.gather(hyper.close(options.grace_seconds), uvicorn_task, return_exceptions=True)
        while not closing.done():
            signal_wait = asyncio.create_task(signals.get())
            await asyncio.wait([signal_wait, closing], return_when=asyncio.FIRST_COMPLETED)
            if signal_wait.done() and signal_wait.result() == signal.SIGINT:
                closing.cancel()
                return await _stop_at_once(uvicorn_server, uvicorn_task, hyper, log)
            signal_wait.cancel()
        failures = [result for result in closing.result() if isinstance(result, BaseException)]
        for failure in failures:
            print(f"echo-server: error while stopping: {failure!r}", file=log, flush=True)
        print("echo-server: stopped", file=log, flush=True)
        return 1 if failures else 0
    finally:
        sweeper.cancel()


async def _stop_at_once(
    uvicorn_server: uvicorn.Server,
    uvicorn_task: asyncio.Task[None],
    hyper: Http2Connections,
    log: TextIO,
) -> int:
    print("echo-server: SIGINT again: stopping at once, requests in flight are cut", file=log, flush=True)
    # Cutting them is the point: uvicorn would log each cancelled request as an application error.
    logging.getLogger("uvicorn.error").disabled = True
    # Drop the connections first, so their requests end without an answer rather than with a 500.
    for connection in list(uvicorn_server.server_state.connections):
        connection.transport.abort()
    uvicorn_server.should_exit = uvicorn_server.force_exit = True
    uvicorn_task.cancel()
    with contextlib.suppress(BaseException):
        await uvicorn_task
    await hyper.close(0)
    print("echo-server: stopped", file=log, flush=True)
    return EXIT_STOPPED_AT_ONCE


async def _abort(uvicorn_task: asyncio.Task[None], log: TextIO) -> int:
    if uvicorn_task.done():
        error = None if uvicorn_task.cancelled() else uvicorn_task.exception()
        print(f"echo-server: the HTTP server stopped unexpectedly: {error!r}", file=log, flush=True)
    uvicorn_task.cancel()
    with contextlib.suppress(BaseException):
        await uvicorn_task
    return 1


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


def _uvicorn_config(app: ASGIApp, options: ServeOptions, h1_class: type[EchoHttpTools]) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        http=h1_class,
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


# --- the HTTPS port: one TLS listener, two protocol stacks -----------------------------------------
# ALPN decides per connection, after the handshake: "h2" goes to hypercorn (the only HTTP/2 stack
# here), anything else to the httptools protocol, which serves HTTP/1.1 several times faster than
# hypercorn's h11. Either way the TLS facts are read once per connection and put in each scope.


class _TLSDispatch(asyncio.Protocol):
    def __init__(
        self, tls: ServerTLS, h1_protocol: Callable[..., EchoHttpTools], hyper: Http2Connections
    ) -> None:
        self._tls = tls
        self._h1_protocol = h1_protocol
        self._hyper = hyper

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # asyncio calls this once the TLS handshake has completed, so ALPN and the peer are known.
        ssl_object = transport.get_extra_info("ssl_object")
        facts = tls_facts(ssl_object, self._tls.sni, self._tls.client_auth) if ssl_object is not None else {}
        tcp = cast(asyncio.Transport, transport)  # uvloop's TLS transport is not an asyncio.Transport
        if facts.get("alpn") == "h2":
            handed_over(tcp, functools.partial(self._hyper.serve, facts=facts))
            return
        protocol = self._h1_protocol(tls_facts=facts)
        tcp.set_protocol(protocol)
        protocol.connection_made(tcp)


# --- the h2c port: HTTP/2 prior knowledge or HTTP/1.1 (with Upgrade: h2c) --------------------------


class _H2CSniffer(asyncio.Protocol):
    """Reads until the first bytes tell an HTTP/2 preface from anything else, then hands over."""

    def __init__(
        self, guard: ConnectionGuard, h1_protocol: Callable[..., EchoHttpTools], hyper: Http2Connections
    ) -> None:
        self._guard = guard
        self._h1_protocol = h1_protocol
        self._hyper = hyper
        self._buffer = b""
        self._refused = False
        self.deadline = 0.0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if not self._guard.admit(self):
            self._refused = True
            transport.close()
            return
        self.transport = cast(asyncio.Transport, transport)
        self.deadline = asyncio.get_running_loop().time() + self._guard.limits.header_timeout

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if len(self._buffer) < len(H2_PREFACE) and H2_PREFACE.startswith(self._buffer):
            return
        assert self.transport is not None
        self._guard.release(self)
        self.deadline = 0.0
        if self._buffer.startswith(H2_PREFACE):
            handed_over(self.transport, self._hyper.serve, self._buffer)
            return
        protocol = self._h1_protocol(h2c_upgrade=self._upgrade)
        self.transport.set_protocol(protocol)
        protocol.connection_made(self.transport)
        protocol.data_received(self._buffer)

    def _upgrade(
        self, transport: asyncio.Transport, request: list[tuple[bytes, bytes]], settings: bytes, rest: bytes
    ) -> None:
        handed_over(transport, functools.partial(self._hyper.serve, upgrade=(request, settings)), rest)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._refused:
            self._guard.release(self)

    def expire(self) -> None:
        self.deadline = 0.0
        if self.transport is not None:
            self.transport.close()


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
