"""One JSON line per request (pure formatting; the app owns the sink that writes it).

Credentials never reach the log: the values of ``authorization``, ``proxy-authorization``,
``cookie`` and of every header whose name says it carries a secret (``x-api-key``, ``x-auth-token``,
``x-amz-security-token``, ``x-csrf-token``, …: the words in ``_SECRET_PARTS``) are replaced.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import orjson

REDACTED_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie"})
_SECRET_PARTS = (
    "auth",
    "token",
    "secret",
    "passw",
    "api-key",
    "apikey",
    "api_key",
    "credential",
    "cookie",
    "session",
    "signature",
    "private",
    "csrf",
    "xsrf",
)
REDACTED = "[redacted]"

LogSink = Callable[[bytes], None]

# Header name → is it a secret. Names repeat across requests, so the substring test runs once per
# name; the cache stops growing at _CACHE_LIMIT names (a client can invent endless names).
_secret_names: dict[str, bool] = dict.fromkeys(REDACTED_HEADERS, True)
_CACHE_LIMIT = 4096


def is_secret_header(name: str) -> bool:
    known = _secret_names.get(name)
    if known is not None:
        return known
    secret = any(part in name for part in _SECRET_PARTS)
    if len(_secret_names) < _CACHE_LIMIT:
        _secret_names[name] = secret
    return secret


# Header names as given (any case), sorted once into secret and not: a request whose names are all
# known costs two C-level set operations, as a fixed list would; only new names are looked at, and
# the sets stop growing at _CACHE_LIMIT names (a client can invent endless names).
_known_names: set[str] = set(REDACTED_HEADERS)
_secret_set: set[str] = set(REDACTED_HEADERS)


def redact_headers(headers: Mapping[str, str]) -> Mapping[str, str]:
    """Headers with secret values replaced (names compared lower-case); unchanged when none is secret."""
    if not headers.keys() <= _known_names:  # a keys view compares without building a set
        for name in headers:
            if name not in _known_names and len(_known_names) < _CACHE_LIMIT:
                _known_names.add(name)
                if is_secret_header(name.lower()):
                    _secret_set.add(name)
        if not headers.keys() <= _known_names:  # over the limit: decide name by name
            present = [name for name in headers if is_secret_header(name.lower())]
            return _redacted(headers, present) if present else headers
    present_set = _secret_set.intersection(headers)
    return _redacted(headers, present_set) if present_set else headers


def _redacted(headers: Mapping[str, str], present: Iterable[str]) -> Mapping[str, str]:
    redacted = dict(headers)
    for name in present:
        redacted[name] = REDACTED
    return redacted


def redact_document(doc: Mapping[str, Any]) -> dict[str, Any]:
    """LOG_FORMAT=full: the echo document with the same redaction as the summary line.

    Secret headers, every cookie value (the Cookie header is a secret), secret-looking query values
    and a JWT's signature are replaced; the body is logged as received.
    """
    out = dict(doc)
    out["headers"] = redact_headers(doc["headers"])
    for field in ("cookies", "signedCookies"):
        if doc.get(field):
            out[field] = dict.fromkeys(doc[field], REDACTED)
    query = doc.get("query")
    if query:
        out["query"] = {
            key: REDACTED if is_secret_header(key.lower()) else value for key, value in query.items()
        }
    jwt = doc.get("jwt")
    if isinstance(jwt, dict) and "signature" in jwt:
        out["jwt"] = {**jwt, "signature": REDACTED}
    return out


_second_cache: tuple[int, str] = (-1, "")
_milli_cache: tuple[int, str] = (-1, "")


def format_time(epoch_seconds: float) -> str:
    """ISO 8601 UTC with milliseconds; formatted once per millisecond (a busy server logs many per ms)."""
    global _second_cache, _milli_cache
    millis = int(epoch_seconds * 1000)
    if _milli_cache[0] == millis:
        return _milli_cache[1]
    whole, fraction = divmod(millis, 1000)
    if _second_cache[0] != whole:
        _second_cache = (whole, datetime.fromtimestamp(whole, UTC).strftime("%Y-%m-%dT%H:%M:%S"))
    _milli_cache = (millis, f"{_second_cache[1]}.{fraction:03d}Z")
    return _milli_cache[1]


def log_line(
    *,
    time: float,
    pod: str,
    version: str,
    status: int,
    latency_s: float,
    method: str,
    path: str,
    http_version: str,
    client: str | None,
    headers: Mapping[str, str],
    bytes_in: int,
    bytes_out: int,
    request: Mapping[str, Any] | None = None,
) -> bytes:
    """One JSON line; ``request`` (LOG_FORMAT=full) adds the redacted echo document as ``request``."""
    record: dict[str, Any] = {
        "time": format_time(time),
        "pod": pod,
        "version": version,
        "status": status,
        "latency_ms": int(latency_s * 1_000_000 + 0.5) / 1000,  # µs resolution; cheaper than round()
        "request_id": headers.get("x-request-id"),
        "method": method,
        "path": path,
        "http_version": http_version,
        "client": client,
        "bytes_in": bytes_in,
        "bytes_out": bytes_out,
        "headers": redact_headers(headers),
    }
    if request is not None:
        record["request"] = redact_document(request)
    return orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE)


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


class FdSink:
    """Writes log lines to a file descriptor (1 = stdout), bypassing Python's buffered stdout.

    Inside an event loop, lines are gathered and written with one syscall at the end of the current
    loop iteration (``call_soon``), so a busy server does one write per batch, not per request, and a
    line is never delayed by more than that iteration. Outside a loop each line is written at once.
    A closed or broken stdout drops lines instead of failing requests.
    """

    def __init__(self, fd: int = 1) -> None:
        self._fd = fd
        self._pending: list[bytes] = []
        self._scheduled = False

    def __call__(self, line: bytes) -> None:
        self._pending.append(line)
        if self._scheduled:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.flush()
            return
        self._scheduled = True
        loop.call_soon(self.flush)

    def flush(self) -> None:
        self._scheduled = False
        if not self._pending:
            return
        data = self._pending[0] if len(self._pending) == 1 else b"".join(self._pending)
        self._pending.clear()
        with contextlib.suppress(OSError):  # a closed stdout must not fail requests
            write_all(self._fd, data)
