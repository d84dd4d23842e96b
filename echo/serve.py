"""Serving: every listener of echo-server in one process, on one uvloop event loop.

- plain HTTP/1.1 (+ WebSocket) on HTTP_PORT: uvicorn with httptools (the fast path);
- HTTPS on HTTPS_PORT: hypercorn, ALPN h2 + http/1.1, TLS facts put into each request's scope;
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
import signal
import socket
from collections.abc import Awaitable, Callable, Generator, Iterator, MutableMapping
from dataclasses import dataclass
from typing import Any, TextIO, cast

import uvicorn
import uvloop
from hypercorn.app_wrappers import ASGIWrapper
from hypercorn.asyncio.tcp_server import TCPServer
from hypercorn.asyncio.worker_context import WorkerContext
from hypercorn.config import Config as HypercornConfig
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from echo.tls import ServerTLS, TLSOptions, TLSSetupError, server_certificate, server_context, tls_facts

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
# Loose on purpose: apps type their scope as dict or TypedDict, and Callable parameters are contravariant.
ASGIApp = Callable[[Any, Any, Any], Awaitable[None]]

TLS_EXTENSION = "meshecho.tls"


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
    stop = asyncio.Event()
    started: list[asyncio.Event] = []
    tasks: list[asyncio.Task[None]] = []
    uvicorn_server: _UvicornServer | None = None
    for listener in listeners:
        up = asyncio.Event()
        started.append(up)
        if listener.kind == "http":
            uvicorn_server = _UvicornServer(_uvicorn_config(app, options), up)
            tasks.append(asyncio.create_task(uvicorn_server.serve(sockets=[listener.sock])))
        else:
            context = tls.context if listener.kind == "https" and tls is not None else None
            tasks.append(
                asyncio.create_task(_serve_hypercorn(app, options, listener.sock, context, tls, up, stop))
            )

    async def _all_up() -> None:
        await asyncio.gather(*(event.wait() for event in started))

    startup = asyncio.ensure_future(_all_up())
    done, _ = await asyncio.wait([startup, *tasks], return_when=asyncio.FIRST_COMPLETED)
    if startup not in done:
        startup.cancel()
        return await _abort(tasks, log)
    print(f"echo-server: {describe(listeners, options, tls)}", file=log, flush=True)
    hooks.on_ready()

    signal_wait: asyncio.Task[Any] = asyncio.create_task(signals.get())
    watched: list[asyncio.Task[Any]] = [signal_wait, *tasks]
    done, _ = await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
    if signal_wait not in done:
        signal_wait.cancel()
        return await _abort(tasks, log)
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
    if uvicorn_server is not None:
        uvicorn_server.should_exit = True
    stop.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    failures = [r for r in results if isinstance(r, BaseException)]
    for failure in failures:
        print(f"echo-server: error while stopping: {failure!r}", file=log, flush=True)
    print("echo-server: stopped", file=log, flush=True)
    return 1 if failures else 0


async def _abort(tasks: list[asyncio.Task[None]], log: TextIO) -> int:
    for task in tasks:
        if task.done() and not task.cancelled() and task.exception() is not None:
            print(f"echo-server: a listener failed: {task.exception()!r}", file=log, flush=True)
        elif task.done():
            print("echo-server: a listener stopped unexpectedly", file=log, flush=True)
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return 1


# --- plain HTTP: uvicorn -------------------------------------------------------------------------


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


def _uvicorn_config(app: ASGIApp, options: ServeOptions) -> uvicorn.Config:
    config = uvicorn.Config(
        app,
        http=_httptools_with_header_limit(options.max_header_bytes),
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
    return config


def _httptools_with_header_limit(max_header_bytes: int) -> type[HttpToolsProtocol]:
    """httptools buffers request headers without any limit; this protocol answers 431 instead.

    Two checks: while a request's headers are still arriving, the raw bytes received so far (so at
    most one read beyond the limit is ever buffered); once they are complete, the exact total of
    header name + value bytes, the measure MAX_HEADER_SIZE is defined by.
    """

    class HeaderLimitedHttpTools(HttpToolsProtocol):
        _awaiting_headers = True
        _header_bytes = 0

        def data_received(self, data: bytes) -> None:
            awaiting = self._awaiting_headers
            super().data_received(data)
            if awaiting and self._awaiting_headers and self.transport is not None:
                self._header_bytes += len(data)
                if self._header_bytes > max_header_bytes and not self.transport.is_closing():
                    self._send_431()

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._awaiting_headers = True
            self._header_bytes = 0

        def on_headers_complete(self) -> None:
            self._awaiting_headers = False
            size = sum(len(name) + len(value) for name, value in self.headers)
            if size <= max_header_bytes:
                super().on_headers_complete()
                return
            # Route this one request to a 431 responder; the connection closes after it.
            app, self.app = self.app, _reject_431
            try:
                super().on_headers_complete()
            finally:
                self.app = app

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

    return HeaderLimitedHttpTools


async def _reject_431(scope: Scope, receive: Receive, send: Send) -> None:
    body = b"Request Header Fields Too Large"
    await send(
        {
            "type": "http.response.start",
            "status": 431,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


# --- HTTPS and h2c: hypercorn --------------------------------------------------------------------
# hypercorn.asyncio.serve() neither takes pre-bound sockets nor exposes the TLS connection to the
# app. This is its worker loop cut to what we need: the same TCPServer per connection, but with a
# per-connection app that adds the TLS facts (read once, after the handshake) to every request scope.


def _hypercorn_config(options: ServeOptions) -> HypercornConfig:
    config = HypercornConfig()
    config.accesslog = None
    config.errorlog = None
    config.include_server_header = False
    config.keep_alive_timeout = options.keep_alive_seconds
    config.graceful_timeout = options.grace_seconds
    config.h11_max_incomplete_size = options.max_header_bytes
    config.h2_max_header_list_size = options.max_header_bytes
    config.ssl_handshake_timeout = 10
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


async def _serve_hypercorn(
    app: ASGIApp,
    options: ServeOptions,
    sock: socket.socket,
    ssl_context: Any,
    tls: ServerTLS | None,
    started: asyncio.Event,
    stop: asyncio.Event,
) -> None:
    loop = asyncio.get_running_loop()
    config = _hypercorn_config(options)
    context = WorkerContext(None)
    wrapped = ASGIWrapper(cast(Any, app))  # hypercorn's TypedDict scope types are stricter than ours
    connections: set[asyncio.Task[Any]] = set()

    async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            connections.add(task)
            task.add_done_callback(connections.discard)
        connection_app: Any = wrapped
        ssl_object = writer.get_extra_info("ssl_object")
        if ssl_object is not None and tls is not None:
            connection_app = _WithTLSFacts(wrapped, tls_facts(ssl_object, tls.sni, tls.client_auth))
        await TCPServer(connection_app, loop, config, context, {}, reader, writer)

    server = await asyncio.start_server(
        on_connection,
        sock=sock,
        ssl=ssl_context,
        ssl_handshake_timeout=config.ssl_handshake_timeout if ssl_context is not None else None,
        backlog=options.backlog,
    )
    started.set()
    try:
        await stop.wait()
    finally:
        # Idle keep-alive connections close now; busy ones close after their current response.
        await context.terminated.set()
        server.close()
        if connections:
            await asyncio.wait(set(connections), timeout=options.grace_seconds)
        for task in list(connections):
            task.cancel()
        await server.wait_closed()


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
