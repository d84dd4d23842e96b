"""HTTP/1.x responses: uvicorn's response cycle with its `send` replaced.

The HTTP/1.x protocol (echo/http1.py) builds an `EchoCycle` for every request where uvicorn would
build its `RequestResponseCycle`, whose `send` does two things this server does differently:

1. It lower-cases every response header name. mendhak's Express answers `Content-Type`,
   `Content-Length`, `Access-Control-Allow-Origin`, … and scripts grep `curl -i` output
   case-sensitively, so names go out exactly as the app gives them (the app uses Express's case on
   HTTP/1.x). HTTP field names are case-insensitive (RFC 9110 §5.1), so nothing else changes. The
   headers the server adds itself (`Date`, `Connection: close`, `Transfer-Encoding: chunked`) use
   the same case.
2. It writes the head at `http.response.start` and the body at `http.response.body`: two writes,
   two system calls per response. Here the head waits for the first body message and both go out
   in one write. The head is only ever held while the app runs between its two sends, which the
   echo app does back to back (an app that failed in between would leave a closed connection
   rather than a head without its body).

Everything else is uvicorn's behaviour, kept: header names and values are validated with its
patterns (a bad one is the app's bug: RuntimeError, and uvicorn answers 500), Content-Length is
tracked and enforced, `Connection: close` ends keep-alive, a response without a length is chunked,
HEAD, 204 and 304 have no body, and flow control (write paused → wait for the drain) applies.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.httptools_impl import (
    HEADER_RE,
    HEADER_VALUE_RE,
    STATUS_LINE,
    RequestResponseCycle,
)

# uvicorn's default headers (`date`, refreshed once a second) in the case Express sends them:
# converted once per new list, not per response.
_defaults_seen: tuple[object, list[tuple[bytes, bytes]]] = (None, [])
_DEFAULT_NAMES = {b"date": b"Date", b"server": b"Server"}
CONNECTION_CLOSE = b"Connection: close\r\n"
CHUNKED = b"Transfer-Encoding: chunked\r\n"


# The header names that frame the response, by how this cycle treats them; every name the app
# sends is classed once (the app's names are a handful of constants), the table bounded in size.
_CONTENT_LENGTH, _TRANSFER_ENCODING, _CONNECTION = 1, 2, 3
_FRAMING_NAMES = {
    b"content-length": _CONTENT_LENGTH,
    b"transfer-encoding": _TRANSFER_ENCODING,
    b"connection": _CONNECTION,
}
_FRAMING: dict[bytes, int] = {}
_FRAMING_TABLE_SIZE = 4096


def _framing_kind(name: bytes) -> int:
    kind = _FRAMING_NAMES.get(name.lower(), 0)
    if len(_FRAMING) < _FRAMING_TABLE_SIZE:
        _FRAMING[name] = kind
    return kind


def default_headers(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    global _defaults_seen
    if _defaults_seen[0] is not headers:
        _defaults_seen = (headers, [(_DEFAULT_NAMES.get(name, name), value) for name, value in headers])
    return _defaults_seen[1]


class EchoCycle(RequestResponseCycle):
    """The response cycle the HTTP/1.x protocol builds in place of uvicorn's."""

    def __init__(
        self,
        scope: Any,
        transport: asyncio.Transport,
        flow: FlowControl,
        logger: logging.Logger,
        default_headers: list[tuple[bytes, bytes]],
        keep_alive: bool,
        expect_100_continue: bool,
        on_response: Callable[..., None],
    ) -> None:
        # uvicorn's __init__, with positional arguments (one per request: every step counts); the
        # access log is off on every listener (the app writes the request log).
        self.scope = scope
        self.transport = transport
        self.flow = flow
        self.logger = logger
        self.access_logger = logger
        self.access_log = False
        self.default_headers = default_headers
        self.message_event = asyncio.Event()
        self.on_response = on_response
        self.disconnected = False
        self.keep_alive = keep_alive
        self.waiting_for_100_continue = expect_100_continue
        self.body = bytearray()
        self.more_body = True
        self.response_started = False
        self.response_complete = False
        self.chunked_encoding: bool | None = None
        self.expected_content_length = 0
        self._head: bytes | None = None  # written with the first body message

    async def send(self, message: Any) -> None:
        if self.flow.write_paused and not self.disconnected:
            await self.flow.drain()
        if self.disconnected:
            return
        if not self.response_started:
            if message["type"] != "http.response.start":
                raise RuntimeError(
                    f"Expected ASGI message 'http.response.start', but got '{message['type']}'."
                )
            self.response_started = True
            self.waiting_for_100_continue = False
            self._head = self._build_head(message["status"], message.get("headers", []))
            return
        if self.response_complete:
            raise RuntimeError(
                f"Unexpected ASGI message '{message['type']}' sent, after response already completed."
            )
        if message["type"] != "http.response.body":
            raise RuntimeError(f"Expected ASGI message 'http.response.body', but got '{message['type']}'.")
        body: bytes = message.get("body", b"")
        more_body: bool = message.get("more_body", False)
        if self.scope["method"] == "HEAD":
            self.expected_content_length = 0
            body = b""
        elif self.chunked_encoding:
            body = (b"%x\r\n%b\r\n" % (len(body), body) if body else b"") + (
                b"" if more_body else b"0\r\n\r\n"
            )
        else:
            if len(body) > self.expected_content_length:
                raise RuntimeError("Response content longer than Content-Length")
            self.expected_content_length -= len(body)
        head, self._head = self._head, None
        if head is not None:
            self.transport.write(head + body)
        elif body:
            self.transport.write(body)
        if not more_body:
            if self.expected_content_length != 0:
                raise RuntimeError("Response content shorter than Content-Length")
            self.response_complete = True
            self.message_event.set()
            if not self.keep_alive:
                self.transport.close()
            self.on_response()

    def _build_head(self, status: int, app_headers: Any) -> bytes:
        headers = [*default_headers(self.default_headers), *app_headers]
        # uvicorn's checks, one search over all names and one over all values: a character
        # class matches in the joined bytes exactly when it matches in one of the parts.
        if HEADER_RE.search(b"".join([name for name, _ in headers])):
            raise RuntimeError("Invalid HTTP header name.")
        if HEADER_VALUE_RE.search(b"".join([value for _, value in headers])):
            raise RuntimeError("Invalid HTTP header value.")
        content = [STATUS_LINE[status]]
        has_connection_close = False
        for name, value in headers:
            kind = _FRAMING.get(name)
            if kind is None:
                kind = _framing_kind(name)
            if kind:
                if kind == _CONTENT_LENGTH and self.chunked_encoding is None:
                    self.expected_content_length = int(value.decode())
                    self.chunked_encoding = False
                elif kind == _TRANSFER_ENCODING and value.lower() == b"chunked":
                    self.expected_content_length = 0
                    self.chunked_encoding = True
                elif kind == _CONNECTION and b"close" in [t.strip() for t in value.lower().split(b",")]:
                    self.keep_alive = False
                    has_connection_close = True
            content += (name, b": ", value, b"\r\n")
        if not self.keep_alive and not has_connection_close:
            content.append(CONNECTION_CLOSE)
        if self.chunked_encoding is None and self.scope["method"] != "HEAD" and status not in (204, 304):
            self.chunked_encoding = True
            content.append(CHUNKED)
        content.append(b"\r\n")
        return b"".join(content)
