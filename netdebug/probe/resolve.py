"""Name resolution for the prober: bounded by the request timeout, never in the way of Ctrl-C.

Why not the event loop's getaddrinfo: it runs in the loop's default executor, whose threads cannot be
cancelled. A name that does not resolve (a cluster name outside the cluster, a resolver that does not
answer) then queues one blocked look-up per request, and closing the loop waits for every one of
them: the probe hangs for minutes and ignores Ctrl-C.

Here:
- each look-up runs in a daemon thread of its own, which never delays the process's exit;
- one look-up per (host, port) at a time: concurrent requests share it (single flight), so a resolver
  that hangs costs one thread, not one per request;
- callers wait at most their own timeout (the shared look-up goes on for the next caller);
- answers are kept 60 s, as curl keeps them; failures are not kept;
- IP literals are not looked up.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

Address = tuple[int, tuple[Any, ...]]  # (family, sockaddr)
Lookup = Callable[[str, int], list[Address]]

CACHE_SECONDS = 60.0


def system_lookup(host: str, port: int) -> list[Address]:
    """getaddrinfo for TCP, in the order the system prefers."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [(family, sockaddr) for family, _, _, _, sockaddr in infos]


def literal_address(host: str, port: int) -> list[Address] | None:
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None
    if ip.version == 6:
        return [(socket.AF_INET6, (str(ip), port, 0, 0))]
    return [(socket.AF_INET, (str(ip), port))]


class Resolver:
    def __init__(
        self,
        lookup: Lookup | None = None,
        clock: Callable[[], float] = time.monotonic,
        cache_seconds: float = CACHE_SECONDS,
    ) -> None:
        self._lookup = lookup or system_lookup
        self._clock = clock
        self._cache_seconds = cache_seconds
        self._cache: dict[tuple[str, int], tuple[float, list[Address]]] = {}
        self._pending: dict[tuple[str, int], asyncio.Future[list[Address]]] = {}

    async def resolve(self, host: str, port: int, *, within: float) -> list[Address]:
        """The addresses of host:port. Raises socket.gaierror, also after `within` seconds."""
        literal = literal_address(host, port)
        if literal is not None:
            return literal
        key = (host.lower(), port)
        cached = self._cache.get(key)
        if cached is not None and self._clock() < cached[0]:
            return cached[1]
        future = self._pending.get(key)
        if future is None:
            future = self._start(key)
        try:
            async with asyncio.timeout(within):
                return await asyncio.shield(future)
        except TimeoutError:
            raise socket.gaierror(
                socket.EAI_AGAIN, f"resolving {host} took more than {within:.2g}s (no answer from DNS)"
            ) from None

    def _start(self, key: tuple[str, int]) -> asyncio.Future[list[Address]]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Address]] = loop.create_future()
        # A failure nobody waits for any more (every caller timed out) is not an error to log.
        future.add_done_callback(lambda f: f.cancelled() or f.exception())
        self._pending[key] = future

        def finish(result: list[Address] | None, error: BaseException | None) -> None:
            self._pending.pop(key, None)
            if future.done():
                return
            if error is not None:
                future.set_exception(error)
                return
            assert result is not None
            self._cache[key] = (self._clock() + self._cache_seconds, result)
            future.set_result(result)

        def work() -> None:
            result: list[Address] | None = None
            error: BaseException | None = None
            try:
                result = self._lookup(*key)
                if not result:
                    error = socket.gaierror(socket.EAI_NONAME, f"{key[0]}: no address")
            except OSError as exc:
                error = exc
            with contextlib.suppress(RuntimeError):  # the loop is gone: nobody is waiting
                loop.call_soon_threadsafe(finish, result, error)

        threading.Thread(target=work, name=f"resolve {key[0]}", daemon=True).start()
        return future
