"""A small HTTP proxy on a free loopback port, in a background thread, for the proxy tests: absolute-form
requests (`GET http://name/path`) and CONNECT tunnels, one request per client connection.

It resolves names itself, from a table (name -> loopback port), so a test can use names that no DNS
knows: a probe that reaches the target through it proves the proxy, not the client, resolved the name.
It records what it saw (request lines, CONNECT targets, Proxy-Authorization values).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field


@dataclass
class Seen:
    request_lines: list[str] = field(default_factory=list)
    connects: list[str] = field(default_factory=list)
    authorizations: list[str | None] = field(default_factory=list)


class LoopbackProxy:
    def __init__(self, names: Mapping[str, int]) -> None:
        self._names = {k.lower(): v for k, v in names.items()}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.base_events.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.seen = Seen()
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _upstream(self, authority: str) -> tuple[str, int] | None:
        host, _, port = authority.rpartition(":")
        host = host.strip("[]").lower()
        if host in self._names:
            return "127.0.0.1", self._names[host]
        if host in ("127.0.0.1", "localhost"):
            return "127.0.0.1", int(port)
        return None  # nothing else is reachable from here (loopback only)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, target, version = lines[0].split(" ", 2)
            headers = [line for line in lines[1:] if line]
            auth = next(
                (h.split(":", 1)[1].strip() for h in headers if h.lower().startswith("proxy-authorization:")),
                None,
            )
            self.seen.request_lines.append(lines[0])
            self.seen.authorizations.append(auth)
            if method == "CONNECT":
                self.seen.connects.append(target)
                await self._tunnel(target, reader, writer)
            else:
                await self._forward(method, target, version, headers, reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()
            self._tasks.discard(task)

    async def _tunnel(self, target: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream = self._upstream(target)
        if upstream is None:
            writer.write(b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n")
            await writer.drain()
            return
        up_reader, up_writer = await asyncio.open_connection(*upstream)
        try:
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            await writer.drain()

            async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
                with contextlib.suppress(ConnectionError):
                    while data := await src.read(65536):
                        dst.write(data)
                        await dst.drain()
                dst.close()

            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        finally:
            up_writer.close()

    async def _forward(
        self,
        method: str,
        target: str,
        version: str,
        headers: list[str],
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        if not target.startswith("http://"):
            writer.write(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
            return
        authority, _, path = target[len("http://") :].partition("/")
        upstream = self._upstream(authority if ":" in authority else authority + ":80")
        if upstream is None:
            writer.write(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n\r\n")
            return
        length = next(
            (int(h.split(":", 1)[1]) for h in headers if h.lower().startswith("content-length:")), 0
        )
        body = await reader.readexactly(length) if length else b""
        kept = [h for h in headers if not h.lower().startswith(("proxy-authorization:", "connection:"))]
        request = "\r\n".join([f"{method} /{path} {version}", *kept, "connection: close"]) + "\r\n\r\n"
        up_reader, up_writer = await asyncio.open_connection(*upstream)
        try:
            up_writer.write(request.encode("latin-1") + body)
            await up_writer.drain()
            while data := await up_reader.read(65536):
                writer.write(data)
            await writer.drain()
        finally:
            up_writer.close()

    def __enter__(self) -> LoopbackProxy:
        self._thread.start()
        started = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._handle, "127.0.0.1", 0), self._loop
        )
        self._server = started.result(10)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def __exit__(self, *exc: object) -> None:
        async def shutdown() -> None:
            assert self._server is not None
            self._server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


@contextlib.contextmanager
def http_proxy(names: Mapping[str, int]) -> Iterator[LoopbackProxy]:
    with LoopbackProxy(names) as proxy:
        yield proxy
