"""The echo ASGI application: a plain ASGI callable, no framework on the hot path.

Measured: Starlette's ``Request`` halves throughput against a raw ASGI callable, so everything here
works on the scope directly. Work that does not depend on the request (identity headers, CORS headers,
the ``pod`` document, the redacted environment, the override body) is done once in ``create_app``.

Admin endpoints live under ``config.admin_prefix`` (default ``/_echo/``); every other path is echoed.
Admin requests are neither logged nor counted, so kubelet probes do not drown the demo traffic.
"""

from __future__ import annotations

import asyncio
import mimetypes
import random
import socket
import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from enum import StrEnum
from itertools import chain
from typing import Any

import orjson

from echo import controls as ctl
from echo.config import EchoConfig
from echo.identity import Identity
from echo.mesh import parse_attempt
from echo.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from echo.metrics import Metrics
from echo.reflect import (
    ReflectOptions,
    decode_header_value,
    headers_dict,
    parse_query,
    redact_environ,
    reflect,
    safe_text,
)
from echo.requestlog import FdSink, LogSink, log_line

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

JSON_CONTENT_TYPE = b"application/json; charset=utf-8"
_NO_BODY_STATUSES = frozenset({204, 304})
_JSON_OPTIONS = orjson.OPT_INDENT_2  # mendhak (Express 'json spaces' 2) pretty-prints; keep it


class Readiness(StrEnum):
    READY = "ready"
    NOT_READY = "not-ready"
    DRAINING = "draining"


def _header_value(text: str) -> bytes:
    """A header-safe rendering of an identity value: control characters (CR/LF!) become '?'."""
    cleaned = "".join("?" if ord(char) < 0x20 or ord(char) == 0x7F else char for char in text)
    return cleaned.encode("latin-1", "replace")


def _json(value: object) -> bytes:
    return orjson.dumps(value)


class EchoApp:
    def __init__(
        self,
        config: EchoConfig,
        identity: Identity,
        *,
        rng: Callable[[], float],
        clock: Callable[[], float],
        wall_clock: Callable[[], float],
        environ: Mapping[str, str],
        log_sink: LogSink,
        sleep: Callable[[float], Awaitable[None]],
        override_body: bytes | None,
    ) -> None:
        self.config = config
        self.identity = identity
        self.metrics = Metrics(identity.version, identity.name)
        self.readiness = Readiness.READY
        self.in_flight = 0
        self._rng = rng
        self._clock = clock
        self._wall_clock = wall_clock
        self._log_sink = log_sink
        self._sleep = sleep
        self._prefix = config.admin_prefix
        self._log_enabled = not config.disable_request_logs
        self._log_ignore = config.log_ignore_path
        self._max_header_size = config.max_header_size
        self._max_body = config.max_body_bytes
        self._max_delay_ms = config.max_delay_ms
        self._identity_headers: list[tuple[bytes, bytes]] = [
            (b"x-echo-pod", _header_value(identity.name)),
            (b"x-echo-version", _header_value(identity.version)),
        ]
        self._cors_headers: list[tuple[bytes, bytes]] = []
        if config.cors_allow_origin is not None:
            self._cors_headers.append((b"access-control-allow-origin", config.cors_allow_origin.encode()))
            if config.cors_allow_methods:
                self._cors_headers.append(
                    (b"access-control-allow-methods", config.cors_allow_methods.encode())
                )
            if config.cors_allow_headers:
                self._cors_headers.append(
                    (b"access-control-allow-headers", config.cors_allow_headers.encode())
                )
            if config.cors_allow_credentials:
                self._cors_headers.append((b"access-control-allow-credentials", b"true"))
        self._base_headers = self._identity_headers + self._cors_headers
        self._options = ReflectOptions(
            hostname=identity.hostname,
            pod=identity.to_json(),
            jwt_header=config.jwt_header.lower() if config.jwt_header else None,
            preserve_header_case=config.preserve_header_case,
            env=redact_environ(environ) if config.echo_include_env_vars else None,
        )
        self._override_body = override_body
        self._override_type = b"application/octet-stream"
        if config.override_response_body_file_path is not None:
            guessed, _ = mimetypes.guess_type(config.override_response_body_file_path.name)
            if guessed:
                self._override_type = guessed.encode()

    # -- readiness, for the serving layer and the admin endpoint --------------------------------

    @property
    def ready(self) -> bool:
        return self.readiness is Readiness.READY

    def set_draining(self) -> None:
        """SIGTERM: readiness turns false for good; requests are still served."""
        self.readiness = Readiness.DRAINING

    def set_ready(self, ready: bool) -> None:
        if self.readiness is not Readiness.DRAINING:
            self.readiness = Readiness.READY if ready else Readiness.NOT_READY

    def error_response(self, status: int, error: str) -> tuple[list[tuple[bytes, bytes]], bytes]:
        """The app's error document, for answers the serving layer gives before a request reaches
        the app (400, 408, 431): `{"error": …}` as JSON, with the identity (and CORS) headers."""
        body = _json({"error": error})
        headers = [
            (b"content-type", JSON_CONTENT_TYPE),
            (b"content-length", str(len(body)).encode()),
            *self._base_headers,
        ]
        return headers, body

    # -- ASGI -------------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "websocket":
            await self._websocket(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                flush = getattr(self._log_sink, "flush", None)
                if flush is not None:
                    flush()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _respond(
        self,
        send: Send,
        scope: Scope,
        status: int,
        body: bytes,
        content_type: bytes = JSON_CONTENT_TYPE,
        extra: list[tuple[bytes, bytes]] | None = None,
    ) -> int:
        """Send one response; returns the body bytes actually sent (for the log)."""
        if status in _NO_BODY_STATUSES:
            # RFC 9110: 204 and 304 have no content, and a stray body would corrupt the next
            # response on a kept-alive connection. Express drops it the same way.
            headers = [*self._base_headers]
            body = b""
        else:
            headers = [
                (b"content-type", content_type),
                (b"content-length", str(len(body)).encode()),
                *self._base_headers,
            ]
        if extra:
            headers += extra
        if scope["method"] == "HEAD":
            body = b""
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        return len(body)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        if path.startswith(self._prefix):
            await self._admin(scope, receive, send, path[len(self._prefix) :])
            return
        start = self._clock()
        self.in_flight += 1
        try:
            status, sent = await self._echo(scope, receive, send)
        finally:
            self.in_flight -= 1
        elapsed = self._clock() - start
        method: str = scope["method"]
        self.metrics.observe(method, status, elapsed)
        if self._log_enabled and (self._log_ignore is None or not self._log_ignore.fullmatch(path)):
            client = scope.get("client")
            self._log_sink(
                log_line(
                    time=self._wall_clock(),
                    pod=self.identity.name,
                    version=self.identity.version,
                    status=status,
                    latency_s=elapsed,
                    method=method,
                    path=safe_text(path),
                    http_version=scope.get("http_version", "1.1"),
                    client=client[0] if client else None,
                    headers=sent[0],
                    bytes_in=sent[1],
                    bytes_out=sent[2],
                )
            )

    async def _echo(
        self, scope: Scope, receive: Receive, send: Send
    ) -> tuple[int, tuple[Mapping[str, str], int, int]]:
        """Serve one echo request; returns (status, (headers, bytes in, bytes out)) for the log."""
        raw_headers: list[tuple[bytes, bytes]] = scope["headers"]
        # ASGI servers hand us lower-case names. Fast path: one C-level pass; repeated names or
        # non-UTF-8 values fall back to the careful loop.
        try:
            headers = {name.decode("latin-1"): value.decode("utf-8") for name, value in raw_headers}
        except UnicodeDecodeError:
            headers = {}
        if len(headers) != len(raw_headers):
            headers = headers_dict(raw_headers)
        header_bytes = sum(map(len, chain.from_iterable(raw_headers)))
        control_values: dict[str, list[str]] | None = None
        if not ctl.CONTROL_HEADERS.isdisjoint(headers):
            control_values = {}
            for name_bytes, value_bytes in raw_headers:
                name = name_bytes.decode("latin-1").lower()
                if name in ctl.CONTROL_HEADERS:
                    control_values.setdefault(name, []).append(decode_header_value(value_bytes))

        if header_bytes > self._max_header_size:
            body = _json(
                {"error": f"request headers total {header_bytes} bytes, more than {self._max_header_size}"}
            )
            sent = await self._respond(send, scope, 431, body, extra=self._close(scope))
            return 431, (headers, 0, sent)

        declared = headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self._max_body:
            return await self._too_large(scope, send, headers, 0)
        chunks: list[bytes] = []
        received = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return 499, (headers, received, 0)
            chunk = message.get("body", b"")
            if chunk:
                received += len(chunk)
                if received > self._max_body:
                    # Stop reading here: the excess is never buffered.
                    return await self._too_large(scope, send, headers, received)
                chunks.append(chunk)
            more = message.get("more_body", False)
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)

        query_string: bytes = scope.get("query_string", b"")
        query = parse_query(query_string) if query_string else {}
        controls = ctl.NO_CONTROLS
        if control_values is not None or query:
            query_controls = {
                name: (value if isinstance(value, list) else [value])
                for name, value in query.items()
                if name in ctl.CONTROL_HEADERS
            }
            if control_values is not None or query_controls:
                try:
                    controls = ctl.parse_controls(
                        control_values or {},
                        query_controls,
                        max_delay_ms=self._max_delay_ms,
                        attempt=parse_attempt(headers.get("x-envoy-attempt-count")),
                        rng=self._rng,
                    )
                except ctl.ControlError as exc:
                    error = _json(exc.to_json())
                    sent = await self._respond(send, scope, 400, error)
                    return 400, (headers, received, sent)

        status = controls.status or 200
        extra: list[tuple[bytes, bytes]] = []
        if (
            self._cors_headers
            and scope["method"] == "OPTIONS"
            and "access-control-request-method" in headers
            and controls.status is None
        ):
            status = 204  # CORS preflight: the allow-headers are all the browser needs
            response_body = b""
            content_type = JSON_CONTENT_TYPE
        elif controls.body_only:
            response_body = body
            content_type = (headers.get("content-type") or "text/plain").encode("utf-8", "replace")
        elif self._override_body is not None:
            response_body = self._override_body
            content_type = self._override_type
        elif not self.config.echo_back_to_client:
            response_body = b""
            content_type = JSON_CONTENT_TYPE
        else:
            doc = reflect(scope, headers, body, self._options, query=query)
            response_body = orjson.dumps(doc, option=_JSON_OPTIONS)
            content_type = JSON_CONTENT_TYPE
        if controls.content_type is not None:
            content_type = controls.content_type.encode("utf-8", "replace")
        if controls.delay_ms:
            extra.append((b"x-echo-delay-ms", str(controls.delay_ms).encode()))
            if controls.delay_capped:
                extra.append((b"x-echo-delay-capped", b"true"))
            await self._sleep(controls.delay_ms / 1000)
        for name, value in controls.headers:
            extra.append((name.lower().encode("latin-1"), value.encode("utf-8", "replace")))
        sent = await self._respond(send, scope, status, response_body, content_type, extra)
        return status, (headers, received, sent)

    @staticmethod
    def _close(scope: Scope) -> list[tuple[bytes, bytes]]:
        # HTTP/2 forbids connection-specific headers; there the stream reset does the same job.
        return [(b"connection", b"close")] if scope.get("http_version", "1.1") in ("1.0", "1.1") else []

    async def _too_large(
        self, scope: Scope, send: Send, headers: Mapping[str, str], received: int
    ) -> tuple[int, tuple[Mapping[str, str], int, int]]:
        body = _json({"error": f"request body larger than {self._max_body} bytes", "limit": self._max_body})
        sent = await self._respond(send, scope, 413, body)
        return 413, (headers, received, sent)

    # -- admin ------------------------------------------------------------------------------------

    async def _admin(self, scope: Scope, receive: Receive, send: Send, name: str) -> None:
        method: str = scope["method"]
        read_only = method in ("GET", "HEAD")
        if name == "livez":
            if read_only:
                await self._respond(send, scope, 200, _json({"status": "alive"}))
            else:
                await self._method_not_allowed(scope, send, "GET, HEAD")
        elif name == "readyz":
            if method == "POST":
                await self._flip_readiness(scope, send)
            elif read_only:
                state = self.readiness
                await self._respond(
                    send, scope, 200 if state is Readiness.READY else 503, _json({"status": state.value})
                )
            else:
                await self._method_not_allowed(scope, send, "GET, HEAD, POST")
        elif name == "metrics":
            if read_only:
                text = self.metrics.render(ready=self.ready, in_flight=self.in_flight)
                await self._respond(send, scope, 200, text, METRICS_CONTENT_TYPE)
            else:
                await self._method_not_allowed(scope, send, "GET, HEAD")
        else:
            endpoints = [self._prefix + endpoint for endpoint in ("livez", "readyz", "metrics")]
            body = _json({"error": f"no admin endpoint {safe_text(scope['path'])!r}", "endpoints": endpoints})
            await self._respond(send, scope, 404, body)

    async def _method_not_allowed(self, scope: Scope, send: Send, allow: str) -> None:
        body = _json({"error": f"method {scope['method']} not allowed here", "allow": allow})
        await self._respond(send, scope, 405, body, extra=[(b"allow", allow.encode())])

    async def _flip_readiness(self, scope: Scope, send: Send) -> None:
        query = parse_query(scope.get("query_string", b""))
        value = query.get("ready")
        if not isinstance(value, str) or value.lower() not in ("true", "false"):
            body = _json({"error": "ready: expected ?ready=true or ?ready=false", "control": "ready"})
            await self._respond(send, scope, 400, body)
            return
        self.set_ready(value.lower() == "true")
        await self._respond(send, scope, 200, _json({"status": self.readiness.value}))

    # -- websocket --------------------------------------------------------------------------------

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Echo every text/binary frame back on any path; identity is in the handshake headers."""
        message = await receive()
        if message["type"] != "websocket.connect":
            return
        await send({"type": "websocket.accept", "headers": list(self._identity_headers)})
        self.metrics.websocket_sessions += 1
        while True:
            message = await receive()
            kind = message["type"]
            if kind == "websocket.receive":
                self.metrics.websocket_messages += 1
                if message.get("text") is not None:
                    await send({"type": "websocket.send", "text": message["text"]})
                else:
                    await send({"type": "websocket.send", "bytes": message.get("bytes") or b""})
            elif kind == "websocket.disconnect":
                return


def read_override_body(config: EchoConfig) -> bytes | None:
    path = config.override_response_body_file_path
    return path.read_bytes() if path is not None else None


def create_app(
    config: EchoConfig,
    identity: Identity,
    *,
    rng: Callable[[], float] | None = None,
    clock: Callable[[], float] = time.perf_counter,
    wall_clock: Callable[[], float] = time.time,
    environ: Mapping[str, str] | None = None,
    log_sink: LogSink | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    override_body: bytes | None = None,
) -> EchoApp:
    """Build the app. Edges pass real clocks/sinks; tests pass fakes.

    ``environ`` only feeds the ``env`` field (ECHO_INCLUDE_ENV_VARS); ``override_body`` defaults to the
    bytes of OVERRIDE_RESPONSE_BODY_FILE_PATH, read once here.
    """
    return EchoApp(
        config,
        identity,
        rng=rng if rng is not None else random.Random().random,
        clock=clock,
        wall_clock=wall_clock,
        environ=environ if environ is not None else {},
        log_sink=log_sink if log_sink is not None else FdSink(1),
        sleep=sleep,
        override_body=override_body if override_body is not None else read_override_body(config),
    )


def default_hostname() -> str:
    return socket.gethostname()
