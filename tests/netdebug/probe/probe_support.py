"""Test support for the prober: a tiny scripted HTTP/1.1 server on a free loopback port, run in a
background thread. Answers cycle deterministically through a list per path, so split tests are
exact (3 x v1 then 1 x v2 is exactly 75/25), not random.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import ssl
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Answer:
    status: int = 200
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
    chunked: bool = False
    close: bool = False  # answer without content-length and close (read-until-close body)


def echo_answer(
    version: str,
    *,
    header: bool = True,
    mesh: Mapping[str, object] | None = None,
    server: str | None = None,
    upstream_time: bool = False,
    status: int = 200,
) -> Answer:
    """What echo-server answers (subset): x-echo-version/x-echo-pod headers and the JSON body."""
    doc = {"pod": {"name": f"echo-{version}-0", "version": version}, "mesh": dict(mesh or {})}
    headers = {"content-type": "application/json", "x-echo-pod": f"echo-{version}-0"}
    if header:
        headers["x-echo-version"] = version
    if server:
        headers["server"] = server
    if upstream_time:
        headers["x-envoy-upstream-service-time"] = "1"
    return Answer(status, headers, json.dumps(doc).encode())


def split(weights: Mapping[str, int], **kwargs: object) -> list[Answer]:
    """Round-robin script: {'v1': 3, 'v2': 1} -> v1, v1, v1, v2 (exactly 75/25 over each 4)."""
    return [echo_answer(v, **kwargs) for v, n in weights.items() for _ in range(n)]  # type: ignore[arg-type]


class ScriptedServer:
    def __init__(self, routes: Mapping[str, Sequence[Answer]], tls: ssl.SSLContext | None = None) -> None:
        self._tls = tls
        self._cycles = {path: itertools.cycle(list(answers)) for path, answers in routes.items()}
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.base_events.Server | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self.port = 0
        self.requests: list[bytes] = []
        self.connections = 0
        self._handlers: set[asyncio.Task[None]] = set()

    def _next(self, path: str) -> Answer:
        cycle = self._cycles.get(path) or self._cycles.get("*")
        if cycle is None:
            return Answer(404, {"content-type": "text/plain"}, b"no such path")
        return next(cycle)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                self.requests.append(head)
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                if length:
                    await reader.readexactly(length)
                path = head.split(b" ")[1].decode().split("?")[0]
                answer = self._next(path)
                lines = [f"HTTP/1.1 {answer.status} X"] + [f"{k}: {v}" for k, v in answer.headers.items()]
                if answer.chunked:
                    lines.append("transfer-encoding: chunked")
                    half = len(answer.body) // 2
                    parts = [answer.body[:half], answer.body[half:]]
                    body = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts if p) + b"0\r\n\r\n"
                elif answer.close:
                    lines.append("connection: close")
                    body = answer.body
                else:
                    lines.append(f"content-length: {len(answer.body)}")
                    body = answer.body
                writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
                await writer.drain()
                if answer.close or b"connection: close" in head.lower():
                    break
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError, ssl.SSLError):
            pass
        finally:
            writer.close()
            self._handlers.discard(task)

    def __enter__(self) -> ScriptedServer:
        self._thread.start()
        fut = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._handle, "127.0.0.1", 0, backlog=1024, ssl=self._tls), self._loop
        )
        self._server = fut.result(10)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def __exit__(self, *exc: object) -> None:
        async def shutdown() -> None:
            assert self._server is not None
            self._server.close()
            for handler in list(self._handlers):
                handler.cancel()
            await asyncio.gather(*self._handlers, return_exceptions=True)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def url(self, path: str = "/echo") -> str:
        scheme = "https" if self._tls else "http"
        return f"{scheme}://127.0.0.1:{self.port}{path}"


@contextlib.contextmanager
def scripted(
    routes: Mapping[str, Sequence[Answer]], tls: ssl.SSLContext | None = None
) -> Iterator[ScriptedServer]:
    with ScriptedServer(routes, tls) as server:
        yield server
