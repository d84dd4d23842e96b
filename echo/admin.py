"""The admin endpoints under ``config.admin_prefix`` (default ``/_echo/``): livez, readyz (read it;
POST ``?ready=true|false`` to change it) and metrics. The readiness state lives here; the serving
layer turns it on at start and to draining on SIGTERM.

Admin requests are neither logged nor counted, so kubelet probes do not drown the demo traffic; a
readiness change is logged, allowed or not, with its peer.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from enum import StrEnum
from typing import Any, Protocol

import orjson

from echo.identity import Identity
from echo.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from echo.metrics import Metrics
from echo.reflect import parse_query, safe_text
from echo.requestlog import LogSink, format_time
from echo.trust import TrustedProxies

Scope = MutableMapping[str, Any]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class Respond(Protocol):
    """The app's one way to answer (EchoApp._respond): returns the body bytes sent."""

    def __call__(
        self,
        send: Send,
        scope: Scope,
        status: int,
        body: bytes,
        content_type: bytes = ...,
        extra: list[tuple[bytes, bytes]] | None = ...,
    ) -> Awaitable[int]: ...


class Readiness(StrEnum):
    READY = "ready"
    NOT_READY = "not-ready"
    DRAINING = "draining"


class AdminEndpoints:
    def __init__(
        self,
        *,
        prefix: str,
        identity: Identity,
        metrics: Metrics,
        readyz_change_from: tuple[Any, ...] | None,
        respond: Respond,
        log_sink: LogSink,
        wall_clock: Callable[[], float],
    ) -> None:
        self.readiness = Readiness.READY
        self._prefix = prefix
        self._identity = identity
        self._metrics = metrics
        self._readyz_change_from = readyz_change_from
        self._readyz_from = TrustedProxies(readyz_change_from) if readyz_change_from is not None else None
        self._respond = respond
        self._log_sink = log_sink
        self._wall_clock = wall_clock

    @property
    def ready(self) -> bool:
        return self.readiness is Readiness.READY

    def set_draining(self) -> None:
        """SIGTERM: readiness turns false for good; requests are still served."""
        self.readiness = Readiness.DRAINING

    def set_ready(self, ready: bool) -> None:
        if self.readiness is not Readiness.DRAINING:
            self.readiness = Readiness.READY if ready else Readiness.NOT_READY

    async def serve(self, scope: Scope, send: Send, name: str, in_flight: int) -> None:
        """Answer the admin request for endpoint ``name`` (the path after the prefix)."""
        method: str = scope["method"]
        read_only = method in ("GET", "HEAD")
        if name == "livez":
            if read_only:
                await self._respond(send, scope, 200, orjson.dumps({"status": "alive"}))
            else:
                await self._method_not_allowed(scope, send, "GET, HEAD")
        elif name == "readyz":
            if method == "POST":
                await self._flip_readiness(scope, send)
            elif read_only:
                state = self.readiness
                await self._respond(
                    send,
                    scope,
                    200 if state is Readiness.READY else 503,
                    orjson.dumps({"status": state.value}),
                )
            else:
                await self._method_not_allowed(scope, send, "GET, HEAD, POST")
        elif name == "metrics":
            if read_only:
                text = self._metrics.render(ready=self.ready, in_flight=in_flight)
                await self._respond(send, scope, 200, text, METRICS_CONTENT_TYPE)
            else:
                await self._method_not_allowed(scope, send, "GET, HEAD")
        else:
            endpoints = [self._prefix + endpoint for endpoint in ("livez", "readyz", "metrics")]
            body = orjson.dumps(
                {"error": f"no admin endpoint {safe_text(scope['path'])!r}", "endpoints": endpoints}
            )
            await self._respond(send, scope, 404, body)

    async def _method_not_allowed(self, scope: Scope, send: Send, allow: str) -> None:
        body = orjson.dumps({"error": f"method {scope['method']} not allowed here", "allow": allow})
        await self._respond(send, scope, 405, body, extra=[(b"Allow", allow.encode())])

    async def _flip_readiness(self, scope: Scope, send: Send) -> None:
        query = parse_query(scope.get("query_string", b""))
        value = query.get("ready")
        if not isinstance(value, str) or value.lower() not in ("true", "false"):
            body = orjson.dumps({"error": "ready: expected ?ready=true or ?ready=false", "control": "ready"})
            await self._respond(send, scope, 400, body)
            return
        client = scope.get("client")
        peer: str | None = client[0] if client else None
        allowed = self._readyz_from is None or (peer is not None and self._readyz_from.trusted(peer))
        wanted = value.lower() == "true"
        before = self.readiness
        if allowed:
            self.set_ready(wanted)
        # Every attempt is logged with its peer, allowed or not: a pod that turned unready says why.
        self._log_sink(
            orjson.dumps(
                {
                    "time": format_time(self._wall_clock()),
                    "pod": self._identity.name,
                    "event": "readiness",
                    "peer": peer,
                    "allowed": allowed,
                    "ready": wanted,
                    "before": before.value,
                    "after": self.readiness.value,
                },
                option=orjson.OPT_APPEND_NEWLINE,
            )
        )
        if not allowed:
            error = (
                f"readiness changes are allowed only from {self._readyz_who()} (ECHO_READYZ_CHANGE_FROM); "
                f"this request came from {peer}"
            )
            await self._respond(send, scope, 403, orjson.dumps({"error": error}))
            return
        await self._respond(send, scope, 200, orjson.dumps({"status": self.readiness.value}))

    def _readyz_who(self) -> str:
        networks = self._readyz_change_from or ()
        if networks == TrustedProxies.LOOPBACK:
            return "loopback"
        return ", ".join(str(network) for network in networks)
