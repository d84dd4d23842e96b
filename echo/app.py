"""The echo ASGI application: a plain ASGI callable, no framework on the hot path.

Measured: Starlette's ``Request`` halves throughput against a raw ASGI callable, so everything here
works on the scope directly. Work that does not depend on the request (identity headers, CORS headers,
the ``pod`` document, the redacted environment, the override body) is done once in ``create_app``.

Admin endpoints (echo/admin.py) live under ``config.admin_prefix`` (default ``/_echo/``); every
other path is echoed. The request's memory is charged to a shared budget (echo/budget.py).
"""

from __future__ import annotations

import asyncio
import json
import mimetypes
import random
import socket
import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from itertools import chain
from typing import Any

import orjson

from echo import controls as ctl
from echo.admin import AdminEndpoints
from echo.budget import (
    COST_PER_BODY_BYTE,
    MemoryBudget,
    Refused,
    RequestShare,
    document_estimate,
    upfront_cost,
)
from echo.config import EchoConfig
from echo.controls import express_content_type
from echo.encoding import (
    BodyDecoder,
    DecodedTooLarge,
    DecodeError,
    UnsupportedEncoding,
    parse_content_encoding,
)
from echo.identity import Identity
from echo.mesh import mesh_info, parse_attempt
from echo.metrics import Metrics
from echo.prometheus import CONTENT_TYPE as PROMETHEUS_CONTENT_TYPE
from echo.prometheus import PromBundle
from echo.reflect import (
    ReflectOptions,
    decode_header_value,
    headers_dict,
    is_json_content_type,
    parse_query,
    redact_environ,
    reflect,
    safe_text,
)
from echo.requestlog import FdSink, LogSink, log_line
from echo.trust import TrustedProxies

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

JSON_CONTENT_TYPE = b"application/json; charset=utf-8"
_NO_BODY_STATUSES = frozenset({204, 304})
_JSON_OPTIONS = orjson.OPT_INDENT_2  # mendhak (Express 'json spaces' 2) pretty-prints; keep it
# Larger bodies go out in pieces, so the server's flow control holds the request (and its share of
# the memory budget) until the client has read most of the answer.
_SEND_CHUNK = 256 * 1024

# Response header names as Express writes them on HTTP/1.x (curl -i shows them; scripts grep them).
# HTTP/2 requires lower-case names (RFC 9113 §8.2.1): there every name is lower-cased.
CONTENT_TYPE = b"Content-Type"
CONTENT_LENGTH = b"Content-Length"


def _header_value(text: str) -> bytes:
    """A header-safe rendering of an identity value: control characters (CR/LF!) become '?'."""
    cleaned = "".join("?" if ord(char) < 0x20 or ord(char) == 0x7F else char for char in text)
    return cleaned.encode("latin-1", "replace")


def _json(value: object) -> bytes:
    return orjson.dumps(value)


def _lower(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    return [(name.lower(), value) for name, value in headers]


class _Outcome:
    """What the request log needs from one echo request."""

    __slots__ = ("bytes_in", "bytes_out", "document", "headers")

    def __init__(self, headers: Mapping[str, str]) -> None:
        self.headers = headers
        self.bytes_in = 0
        self.bytes_out = 0
        self.document: dict[str, Any] | None = None


def _original_url(scope: Scope) -> str:
    """Express's req.originalUrl: the request target as received, query included."""
    raw: bytes | None = scope.get("raw_path")
    path = raw.decode("latin-1") if raw else scope["path"]
    query: bytes = scope.get("query_string", b"")
    return f"{path}?{query.decode('latin-1')}" if query else path


def _raw_path(scope: Scope) -> str:
    raw: bytes | None = scope.get("raw_path")
    return raw.decode("latin-1") if raw else str(scope["path"])


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
        self.budget = MemoryBudget(config.max_inflight_bytes)
        self.prometheus = (
            PromBundle(
                metrics_path=config.prometheus_metrics_path,
                with_path=config.prometheus_with_path,
                with_method=config.prometheus_with_method,
                with_status=config.prometheus_with_status,
                metric_type=config.prometheus_metric_type,
            )
            if config.prometheus_enabled
            else None
        )
        self.in_flight = 0
        self._rng = rng
        self._clock = clock
        self._wall_clock = wall_clock
        self._log_sink = log_sink
        self._sleep = sleep
        self._prefix = config.admin_prefix
        self._log_enabled = not config.disable_request_logs
        self._log_full = config.log_format == "full"
        self._log_ignore = config.log_ignore_path
        self._max_header_size = config.max_header_size
        self._max_body = config.max_body_bytes
        self._max_delay_ms = config.max_delay_ms
        self._max_json = config.max_json_bytes
        self._identity_headers: list[tuple[bytes, bytes]] = [
            (b"x-echo-pod", _header_value(identity.name)),
            (b"x-echo-version", _header_value(identity.version)),
        ]
        self._cors_headers: list[tuple[bytes, bytes]] = []
        if config.cors_allow_origin is not None:
            self._cors_headers.append((b"Access-Control-Allow-Origin", config.cors_allow_origin.encode()))
            if config.cors_allow_methods:
                self._cors_headers.append(
                    (b"Access-Control-Allow-Methods", config.cors_allow_methods.encode())
                )
            if config.cors_allow_headers:
                self._cors_headers.append(
                    (b"Access-Control-Allow-Headers", config.cors_allow_headers.encode())
                )
            if config.cors_allow_credentials:
                self._cors_headers.append((b"Access-Control-Allow-Credentials", b"true"))
        self._base_headers = self._identity_headers + self._cors_headers
        self._base_headers_h2 = _lower(self._base_headers)
        self._options = ReflectOptions(
            hostname=identity.hostname,
            pod=identity.to_json(),
            jwt_header=config.jwt_header.lower() if config.jwt_header else None,
            preserve_header_case=config.preserve_header_case,
            env=redact_environ(environ) if config.echo_include_env_vars else None,
            trust=TrustedProxies(TrustedProxies.MENDHAK_DEFAULT + config.additional_trusted_proxies),
            cookie_secret=config.cookie_secret,
            max_json_bytes=config.max_json_bytes,
            mesh_pod=identity.mesh,
        )
        self._override_body = override_body
        self._override_type = b"application/octet-stream"
        if config.override_response_body_file_path is not None:
            guessed, _ = mimetypes.guess_type(config.override_response_body_file_path.name)
            if guessed:
                self._override_type = express_content_type(guessed).encode()
        self.admin = AdminEndpoints(
            prefix=config.admin_prefix,
            identity=identity,
            metrics=self.metrics,
            readyz_change_from=config.readyz_change_from,
            respond=self._respond,
            log_sink=log_sink,
            wall_clock=wall_clock,
        )

    # -- readiness, for the serving layer ----------------------------------------------------------

    @property
    def ready(self) -> bool:
        return self.admin.ready

    def set_draining(self) -> None:
        """SIGTERM: readiness turns false for good; requests are still served."""
        self.admin.set_draining()

    def set_ready(self, ready: bool) -> None:
        self.admin.set_ready(ready)

    def error_response(self, status: int, error: str) -> tuple[list[tuple[bytes, bytes]], bytes]:
        """The app's error document, for answers the serving layer gives before a request reaches
        the app (400, 408, 431): `{"error": …}` as JSON, with the identity (and CORS) headers."""
        body = _json({"error": error})
        headers = [
            (CONTENT_TYPE, JSON_CONTENT_TYPE),
            (CONTENT_LENGTH, str(len(body)).encode()),
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
        """Send one response; returns the body bytes actually sent (for the log).

        Header names are given in the case Express sends on HTTP/1.x; HTTP/2 gets them lower-cased.
        """
        h2 = scope.get("http_version") == "2"
        base = self._base_headers_h2 if h2 else self._base_headers
        if status in _NO_BODY_STATUSES:
            # RFC 9110: 204 and 304 have no content, and a stray body would corrupt the next
            # response on a kept-alive connection. Express drops it the same way.
            headers = [*base]
            body = b""
        elif h2:
            headers = [(b"content-type", content_type), (b"content-length", b"%d" % len(body)), *base]
        else:
            headers = [(CONTENT_TYPE, content_type), (CONTENT_LENGTH, b"%d" % len(body)), *base]
        if extra:
            headers += _lower(extra) if h2 else extra
        if scope["method"] == "HEAD":
            body = b""
        await send({"type": "http.response.start", "status": status, "headers": headers})
        if len(body) <= _SEND_CHUNK:
            await send({"type": "http.response.body", "body": body})
        else:
            view = memoryview(body)
            for offset in range(0, len(body), _SEND_CHUNK):
                piece = view[offset : offset + _SEND_CHUNK]
                more = offset + _SEND_CHUNK < len(body)
                await send({"type": "http.response.body", "body": bytes(piece), "more_body": more})
        return len(body)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        prometheus = self.prometheus
        if prometheus is not None and prometheus.matches(_original_url(scope)):
            # express-prom-bundle answers its path for any method, before anything else runs.
            await self._respond(send, scope, 200, prometheus.render(), PROMETHEUS_CONTENT_TYPE)
            return
        if path.startswith(self._prefix):
            await self.admin.serve(scope, send, path[len(self._prefix) :], self.in_flight)
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
        if prometheus is not None:
            prometheus.observe(method, status, _raw_path(scope), elapsed)
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
                    headers=sent.headers,
                    bytes_in=sent.bytes_in,
                    bytes_out=sent.bytes_out,
                    request=sent.document if self._log_full else None,
                )
            )

    async def _echo(self, scope: Scope, receive: Receive, send: Send) -> tuple[int, _Outcome]:
        """Serve one echo request; returns (status, what the log needs)."""
        raw_headers: list[tuple[bytes, bytes]] = scope["headers"]
        # ASGI servers hand us lower-case names. Fast path: one C-level pass; repeated names or
        # non-UTF-8 values fall back to the careful loop.
        try:
            headers = {name.decode("latin-1"): value.decode("utf-8") for name, value in raw_headers}
        except UnicodeDecodeError:
            headers = {}
        if len(headers) != len(raw_headers):
            headers = headers_dict(raw_headers)
        outcome = _Outcome(headers)
        header_bytes = sum(map(len, chain.from_iterable(raw_headers)))
        if header_bytes > self._max_header_size:
            body = _json(
                {"error": f"request headers total {header_bytes} bytes, more than {self._max_header_size}"}
            )
            outcome.bytes_out = await self._respond(send, scope, 431, body, extra=self._close(scope))
            return 431, outcome

        held = RequestShare(self.budget)
        try:
            declared = headers.get("content-length")
            encoding = headers.get("content-encoding")
            upfront = False
            if declared is not None and declared.isascii() and declared.isdigit():
                if len(declared) > 15 or int(declared) > self._max_body:
                    raise Refused(413, self._too_large_error())
                if encoding is None and declared != "0":
                    # Fail fast, before reading anything, when the budget cannot take this body.
                    size = int(declared)
                    held.take(upfront_cost(size, self._parses_json(size, headers)))
                    upfront = True
            if declared is None and encoding is None and "transfer-encoding" not in headers:
                # No body announced (GET and most requests): the server sends one empty message;
                # read it here rather than through _read_body's loop (the hot path).
                message = await receive()
                if message["type"] == "http.disconnect":
                    return 499, outcome
                first_body = message.get("body", b"")
                if first_body or message.get("more_body", False):
                    body, content_encoding, complete = await self._read_body(
                        receive, encoding, outcome, held, upfront, first=message
                    )
                else:
                    body, content_encoding, complete = b"", None, True
            else:
                body, content_encoding, complete = await self._read_body(
                    receive, encoding, outcome, held, upfront
                )
            if not complete:
                return 499, outcome
            return await self._answer(scope, receive, send, headers, body, content_encoding, outcome, held)
        except Refused as refused:
            if refused.status == 415:
                refused.headers.append((b"Accept-Encoding", b"gzip, deflate"))
            outcome.bytes_out = await self._respond(
                send, scope, refused.status, _json(refused.error), extra=refused.headers
            )
            return refused.status, outcome
        finally:
            held.release()

    def _parses_json(self, size: int, headers: Mapping[str, str]) -> bool:
        """Whether a body of ``size`` bytes gets a parsed `json` field (ECHO_MAX_JSON_BYTES)."""
        return size <= self._max_json and is_json_content_type(headers.get("content-type"))

    def _too_large_error(self) -> dict[str, object]:
        return {"error": f"request body larger than {self._max_body} bytes", "limit": self._max_body}

    async def _read_body(
        self,
        receive: Receive,
        encoding: str | None,
        outcome: _Outcome,
        held: RequestShare,
        upfront: bool,
        first: Message | None = None,
    ) -> tuple[bytes, dict[str, object] | None, bool]:
        """(body, Content-Encoding description, complete); complete is False when the client left.
        ``first``: a message already received."""
        decoder: BodyDecoder | None = None
        codings: tuple[str, ...] = ()
        if encoding is not None:
            try:
                codings = parse_content_encoding(encoding)
            except UnsupportedEncoding as exc:
                raise Refused(415, {"error": str(exc)}) from None
        chunks: list[bytes] = []
        received = 0
        more = True
        while more:
            message, first = (first, None) if first is not None else (await receive(), None)
            if message["type"] == "http.disconnect":
                outcome.bytes_in = received
                return b"", None, False
            chunk = message.get("body", b"")
            more = message.get("more_body", False)
            if not chunk:
                continue
            received += len(chunk)
            outcome.bytes_in = received
            if received > self._max_body:
                # Stop reading here: the excess is never buffered.
                raise Refused(413, self._too_large_error())
            if codings:
                if decoder is None:
                    decoder = BodyDecoder(
                        codings, self._max_body, lambda size: held.take(COST_PER_BODY_BYTE * size)
                    )
                self._decode(decoder, chunk)
                continue
            if not upfront:  # a body of unknown length: counted as it arrives
                held.take(COST_PER_BODY_BYTE * len(chunk))
            chunks.append(chunk)
        if decoder is not None:
            try:
                body = decoder.finish()
            except DecodeError as exc:
                raise Refused(400, {"error": f"Content-Encoding: {exc}"}) from None
            return body, {"decoded": list(codings), "encoded_bytes": received}, True
        return (chunks[0] if len(chunks) == 1 else b"".join(chunks)), None, True

    def _decode(self, decoder: BodyDecoder, chunk: bytes) -> None:
        try:
            decoder.feed(chunk)
        except DecodedTooLarge:
            raise Refused(413, self._too_large_error()) from None
        except DecodeError as exc:
            raise Refused(400, {"error": f"Content-Encoding: {exc}"}) from None

    async def _answer(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        headers: Mapping[str, str],
        body: bytes,
        content_encoding: dict[str, object] | None,
        outcome: _Outcome,
        held: RequestShare,
    ) -> tuple[int, _Outcome]:
        raw_headers: list[tuple[bytes, bytes]] = scope["headers"]
        query_string: bytes = scope.get("query_string", b"")
        query = parse_query(query_string) if query_string else {}
        controls = ctl.NO_CONTROLS
        has_control_header = not ctl.CONTROL_HEADERS.isdisjoint(headers)
        if has_control_header or query:
            control_values: dict[str, list[str]] = {}
            if has_control_header:
                for name_bytes, value_bytes in raw_headers:
                    name = name_bytes.decode("latin-1").lower()
                    if name in ctl.CONTROL_HEADERS:
                        control_values.setdefault(name, []).append(decode_header_value(value_bytes))
            query_controls = {
                name: (value if isinstance(value, list) else [value])
                for name, value in query.items()
                if name in ctl.CONTROL_HEADERS
            }
            if control_values or query_controls:
                try:
                    controls = ctl.parse_controls(
                        control_values,
                        query_controls,
                        max_delay_ms=self._max_delay_ms,
                        attempt=parse_attempt(headers.get("x-envoy-attempt-count")),
                        rng=self._rng,
                    )
                except ctl.ControlError as exc:
                    if self._log_full:
                        outcome.document = self._document(scope, headers, body, query, content_encoding, held)
                    outcome.bytes_out = await self._respond(send, scope, 400, _json(exc.to_json()))
                    return 400, outcome

        status = controls.status or 200
        extra: list[tuple[bytes, bytes]] = []
        document: dict[str, Any] | None = None
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
            document = self._document(scope, headers, body, query, content_encoding, held)
            response_body = orjson.dumps(document, option=_JSON_OPTIONS)
            content_type = JSON_CONTENT_TYPE
        if self._log_full and document is None:
            document = self._document(scope, headers, body, query, content_encoding, held)
        outcome.document = document
        if controls.content_type is not None:
            content_type = controls.content_type.encode("utf-8", "replace")
        if controls.delay_ms:
            extra.append((b"x-echo-delay-ms", str(controls.delay_ms).encode()))
            if controls.delay_capped:
                extra.append((b"x-echo-delay-capped", b"true"))
            if not await self._delay(receive, controls.delay_ms / 1000):
                return 499, outcome
        for name, value in controls.headers:
            extra.append((name.encode("latin-1"), value.encode("utf-8", "replace")))
        outcome.bytes_out = await self._respond(send, scope, status, response_body, content_type, extra)
        return status, outcome

    def _document(
        self,
        scope: Scope,
        headers: Mapping[str, str],
        body: bytes,
        query: Mapping[str, object],
        content_encoding: dict[str, object] | None,
        held: RequestShare,
    ) -> dict[str, Any]:
        if body:
            estimate = document_estimate(body, self._parses_json(len(body), headers))
            if estimate > self.config.max_response_bytes:
                raise Refused(
                    413,
                    {
                        "error": f"the echo document of this body would be about {estimate} bytes, more than "
                        f"ECHO_MAX_RESPONSE_BYTES ({self.config.max_response_bytes})",
                        "limit": self.config.max_response_bytes,
                    },
                )
            # Held so far: the body (and its up-front share); needed: the body plus the document.
            held.take(len(body) + estimate - held.held)
        return reflect(scope, headers, body, self._options, query=query, content_encoding=content_encoding)

    async def _delay(self, receive: Receive, seconds: float) -> bool:
        """Wait ``seconds``; False as soon as the client disconnects (the request ends there)."""
        sleeping = asyncio.ensure_future(self._sleep(seconds))
        while True:
            # The body has been read, so the next message is the disconnect, whenever it comes.
            listening = asyncio.ensure_future(receive())
            await asyncio.wait({sleeping, listening}, return_when=asyncio.FIRST_COMPLETED)
            if sleeping.done():
                listening.cancel()
                return True
            if listening.result().get("type") == "http.disconnect":
                sleeping.cancel()
                return False

    @staticmethod
    def _close(scope: Scope) -> list[tuple[bytes, bytes]]:
        # HTTP/2 forbids connection-specific headers; there the stream reset does the same job.
        return [(b"Connection", b"close")] if scope.get("http_version", "1.1") in ("1.0", "1.1") else []

    # -- websocket --------------------------------------------------------------------------------

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Echo every text/binary frame back on any path; identity is in the handshake headers."""
        message = await receive()
        if message["type"] != "websocket.connect":
            return
        # The handshake is a WebSocket session's one HTTP request: report what the mesh did to it
        # (the JSON answer's `mesh` object) in a header, as ASCII JSON.
        mesh = json.dumps(
            mesh_info(headers_dict(scope.get("headers", [])), self.identity.mesh), separators=(",", ":")
        )
        headers = [*self._identity_headers, (b"x-echo-mesh", mesh.encode("ascii"))]
        await send({"type": "websocket.accept", "headers": headers})
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
