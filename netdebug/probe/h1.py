"""A small HTTP/1.1 client on asyncio protocols: the prober's hot path for http:// and https://
without --http2.

Why not httpx here: measured on this project's 2-core machine, httpx/httpcore spends ~4,000 Python
function calls per request and scans its whole pool on every request, so it tops out at a few hundred
requests per second with 16 connections; the prober must pace 2,000 rps on one core. This client
writes a request prebuilt once as bytes, parses only the status line and the few headers the prober
reads, and keeps idle connections in a LIFO list. httpx stays in use for HTTP/2.

Scope (deliberately small): one request at a time per connection, Content-Length, chunked, or
read-until-close bodies, 1xx interim answers skipped, keep-alive unless the server says close.

Through an HTTP proxy: for http:// URLs the caller builds an absolute-form request (`GET http://host/path`)
and the connection goes to the proxy; for https:// URLs each new connection first asks the proxy for
a tunnel (`CONNECT host:port`), then starts TLS inside it. Names are resolved by `Resolver` (bounded by
the request timeout, see resolve.py), never by the event loop's blocking executor.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from dataclasses import dataclass
from typing import cast

from netdebug.probe.resolve import Address, Resolver

MAX_HEAD = 64 * 1024
# Response headers copied out (lower-case); everything else is skipped while parsing.
WANTED = frozenset(
    {
        b"server",
        b"x-envoy-upstream-service-time",
        b"x-echo-version",
        b"x-echo-pod",
        b"content-type",
        b"content-length",
        b"transfer-encoding",
        b"connection",
    }
)


class ResponseError(Exception):
    """The server broke HTTP/1.1 framing or closed the connection mid-answer."""


class TunnelRefused(ConnectionError):
    """The proxy answered CONNECT with something other than 2xx."""


@dataclass(frozen=True, slots=True)
class Tunnel:
    """CONNECT through an HTTP proxy: the target's host and port, and the proxy's credentials."""

    host: str
    port: int
    authorization: str | None = None

    def request(self) -> bytes:
        authority = f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"
        lines = [f"CONNECT {authority} HTTP/1.1", f"host: {authority}"]
        if self.authorization:
            lines.append(f"proxy-authorization: {self.authorization}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    headers: dict[str, str]
    body: bytes
    http_version: str


_LENGTH, _CHUNKED, _UNTIL_CLOSE, _NONE = range(4)


class _Connection(asyncio.Protocol):
    def __init__(self, head_only: bool, all_headers: bool = False) -> None:
        self.all_headers = all_headers  # keep every header (a plan's http step), not only WANTED
        self.transport: asyncio.Transport | None = None
        # Inside a CONNECT tunnel: the proxy connection that carries `transport` (the TLS one).
        self.tunnel_transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.waiter: asyncio.Future[Response] | None = None
        self.closed = False
        self.received_any = False
        self.head_only = head_only
        self._reset()

    def _reset(self) -> None:
        self.status = 0
        self.version = ""
        self.headers: dict[str, str] | None = None
        self.mode = _NONE
        self.need = 0
        self.body = bytearray()
        self.keep_alive = True
        self.received_any = False

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.received_any = True
        self.buf += data
        if self.waiter is not None:
            try:
                self._parse()
            except (ResponseError, ValueError) as exc:
                self._fail(ResponseError(f"malformed response: {exc}"))

    def eof_received(self) -> bool:
        return False  # let the transport close; connection_lost finishes an until-close body

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is None or self.waiter.done():
            return
        if self.headers is not None and self.mode == _UNTIL_CLOSE:
            self.body += self.buf
            self._finish()
            return
        self._fail(ResponseError("server closed the connection before a complete response"))

    # request/response
    def request(self, data: bytes) -> asyncio.Future[Response]:
        if self.transport is None or self.closed:
            raise ResponseError("connection already closed")
        self._reset()
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        return self.waiter

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()
        if self.tunnel_transport is not None:
            # The TLS layer would close it only after a close_notify exchange the prober does not need
            # (and that would outlive the event loop).
            self.tunnel_transport.close()

    def _fail(self, exc: Exception) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc)
        self.close()

    def _finish(self) -> None:
        assert self.headers is not None
        response = Response(self.status, self.headers, bytes(self.body), self.version)
        if not self.keep_alive or self.mode == _UNTIL_CLOSE:
            self.close()
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(response)

    def _parse(self) -> None:
        while self.headers is None:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buf) > MAX_HEAD:
                    raise ResponseError("response head larger than 64 KiB")
                return
            head = bytes(self.buf[:end])
            del self.buf[: end + 4]
            lines = head.split(b"\r\n")
            parts = lines[0].split(b" ", 2)
            if len(parts) < 2 or not parts[0].startswith(b"HTTP/"):
                raise ResponseError(f"bad status line {lines[0][:60]!r}")
            status = int(parts[1])
            if 100 <= status < 200 and status != 101:
                continue  # interim answer (100 Continue, 103 Early Hints): the real one follows
            headers: dict[str, str] = {}
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                key = name.strip().lower()
                if key in WANTED or self.all_headers:
                    field, text = key.decode("latin-1"), value.strip().decode("latin-1")
                    # Repeated fields are joined (RFC 9110 §5.3) for the full view; the prober keeps the last.
                    joined = self.all_headers and field in headers
                    headers[field] = f"{headers[field]}, {text}" if joined else text
            self.status = status
            self.version = parts[0][5:].decode("latin-1")
            conn = headers.get("connection", "").lower()
            self.keep_alive = "close" not in conn and (self.version != "1.0" or "keep-alive" in conn)
            if self.head_only or status in (204, 304):
                self.mode = _NONE
            elif "chunked" in headers.get("transfer-encoding", "").lower():
                self.mode = _CHUNKED
                self.need = -1
            elif "content-length" in headers:
                self.mode = _LENGTH
                self.need = int(headers["content-length"])
            else:
                self.mode = _UNTIL_CLOSE
            self.headers = headers
        if self.mode == _NONE:
            self._finish()
        elif self.mode == _LENGTH:
            if len(self.buf) >= self.need:
                self.body = self.buf[: self.need]
                del self.buf[: self.need]
                self._finish()
        elif self.mode == _CHUNKED:
            self._parse_chunks()
        # _UNTIL_CLOSE: connection_lost finishes it

    def _parse_chunks(self) -> None:
        while True:
            if self.need == -1:  # expecting a chunk-size line
                end = self.buf.find(b"\r\n")
                if end < 0:
                    return
                size = int(bytes(self.buf[:end]).split(b";", 1)[0].strip() or b"x", 16)
                del self.buf[: end + 2]
                self.need = size if size > 0 else -2
            elif self.need == -2:  # after the last chunk: optional trailers, then an empty line
                end = self.buf.find(b"\r\n")
                if end < 0:
                    return
                del self.buf[: end + 2]
                if end == 0:
                    self._finish()
                    return
            else:
                if len(self.buf) < self.need + 2:
                    return
                self.body += self.buf[: self.need]
                del self.buf[: self.need + 2]
                self.need = -1


class H1Client:
    """Sends one prebuilt request again and again; pools keep-alive connections (LIFO).

    `host`/`port` is where connections go: the server, or the HTTP proxy (then `tunnel` is set for
    https:// targets, and http:// requests must be in absolute form).
    """

    def __init__(
        self,
        host: str,
        port: int,
        request: bytes,
        *,
        ssl_context: ssl.SSLContext | None,
        server_hostname: str | None,
        timeout: float,
        new_connection: bool,
        head_only: bool = False,
        resolver: Resolver | None = None,
        tunnel: Tunnel | None = None,
        all_headers: bool = False,
    ) -> None:
        self._host = host
        self._port = port
        self._request = request
        self._ssl = ssl_context
        self._server_hostname = server_hostname if ssl_context is not None else None
        self._timeout = timeout
        self._new_connection = new_connection
        self._head_only = head_only
        self._resolver = resolver or Resolver()
        self._tunnel = tunnel
        self._all_headers = all_headers
        self._idle: list[_Connection] = []
        self._all: set[_Connection] = set()

    async def _connect(self, addresses: list[Address]) -> _Connection:
        loop = asyncio.get_running_loop()
        sock: socket.socket | None = None
        error: OSError | None = None
        for family, sockaddr in addresses:  # in the resolver's order, as curl and browsers try them
            candidate = socket.socket(family, socket.SOCK_STREAM)
            candidate.setblocking(False)
            try:
                await loop.sock_connect(candidate, sockaddr)
            except OSError as exc:
                candidate.close()
                error = exc
                continue
            except BaseException:
                candidate.close()
                raise
            sock = candidate
            break
        if sock is None:
            raise error or OSError(f"no address for {self._host}")
        direct_tls = self._ssl if self._tunnel is None else None
        try:
            _, protocol = await loop.create_connection(
                lambda: _Connection(self._head_only, self._all_headers),
                sock=sock,
                ssl=direct_tls,
                server_hostname=self._server_hostname if direct_tls is not None else None,
            )
        except BaseException:
            sock.close()
            raise
        self._all.add(protocol)
        if self._tunnel is not None:
            try:
                await self._open_tunnel(protocol, self._tunnel)
            except BaseException:
                protocol.close()
                self._all.discard(protocol)
                raise
        return protocol

    async def _open_tunnel(self, conn: _Connection, tunnel: Tunnel) -> None:
        """CONNECT, then TLS to the target inside the tunnel (https:// through an HTTP proxy)."""
        conn.head_only = True  # a 2xx answer to CONNECT has no body: the tunnel follows
        answer = await conn.request(tunnel.request())
        conn.head_only = self._head_only
        if not 200 <= answer.status < 300:
            target = f"{tunnel.host}:{tunnel.port}"
            raise TunnelRefused(f"proxy {self._host}:{self._port} refused CONNECT {target}: {answer.status}")
        if self._ssl is not None:
            assert conn.transport is not None
            transport = await asyncio.get_running_loop().start_tls(
                conn.transport, conn, self._ssl, server_hostname=self._server_hostname
            )
            if transport is None:
                raise ResponseError("the proxy closed the tunnel during the TLS handshake")
            conn.tunnel_transport, conn.transport = conn.transport, transport

    async def open(self) -> None:
        """Resolve and connect (tunnel and TLS included) ahead of `send`, which then finds the connection
        idle: a caller can time the set-up and the request apart."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout
        addresses = await self._resolver.resolve(self._host, self._port, within=self._timeout)
        async with asyncio.timeout_at(deadline):
            self._idle.append(await self._connect(addresses))

    async def send(self) -> Response:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout
        async with asyncio.timeout_at(deadline):
            while self._idle:
                conn = self._idle.pop()
                if conn.closed:
                    self._all.discard(conn)
                    continue
                try:
                    return await self._exchange(conn)
                except ResponseError:
                    # A keep-alive connection the server closed while idle fails before any byte
                    # arrives: retry once on a fresh one, as browsers and httpcore do.
                    if conn.received_any:
                        raise
                    break
        # A new connection. The look-up has the rest of the request's time, and running out of it
        # there is a DNS failure (socket.gaierror), not a timeout of the server.
        remaining = max(0.0, deadline - loop.time())
        addresses = await self._resolver.resolve(self._host, self._port, within=remaining)
        async with asyncio.timeout_at(deadline):
            return await self._exchange(await self._connect(addresses))

    async def _exchange(self, conn: _Connection) -> Response:
        try:
            response = await conn.request(self._request)
        except BaseException:
            conn.close()
            self._all.discard(conn)
            raise
        if self._new_connection or conn.closed:
            conn.close()
            self._all.discard(conn)
        else:
            self._idle.append(conn)
        return response

    async def aclose(self) -> None:
        for conn in list(self._all):
            conn.close()
        self._all.clear()
        self._idle.clear()


def build_request(
    method: str, target: str, host: str, headers: tuple[tuple[str, str], ...], body: bytes | None, close: bool
) -> bytes:
    """The request bytes, built once. User headers override the defaults (host, user-agent, accept)."""
    from netdebug import __version__

    defaults = {"host": host, "user-agent": f"netdebug/{__version__}", "accept": "*/*"}
    given = {name.lower() for name, _ in headers}
    lines = [f"{method} {target} HTTP/1.1"]
    lines += [f"{k}: {v}" for k, v in defaults.items() if k not in given]
    lines += [f"{k}: {v}" for k, v in headers]
    if body is not None and "content-length" not in given:
        lines.append(f"content-length: {len(body)}")
    if close and "connection" not in given:
        lines.append("connection: close")
    for line in lines:
        if "\r" in line or "\n" in line:
            raise ValueError("header values must not contain line breaks")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")
