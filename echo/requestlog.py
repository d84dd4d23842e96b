"""One JSON line per request (pure formatting; the app owns the sink that writes it).

Credentials never reach the log: ``authorization``, ``proxy-authorization`` and ``cookie`` values are
replaced, whatever else the request carried.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

import orjson

REDACTED_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie"})
REDACTED = "[redacted]"

LogSink = Callable[[bytes], None]


def redact_headers(headers: Mapping[str, str]) -> Mapping[str, str]:
    if REDACTED_HEADERS.isdisjoint(headers):
        return headers
    return {name: (REDACTED if name in REDACTED_HEADERS else value) for name, value in headers.items()}


_second_cache: tuple[int, str] = (-1, "")


def format_time(epoch_seconds: float) -> str:
    """ISO 8601 UTC with milliseconds; the date-time part is formatted once per second."""
    global _second_cache
    whole = int(epoch_seconds)
    if _second_cache[0] != whole:
        _second_cache = (whole, datetime.fromtimestamp(whole, UTC).strftime("%Y-%m-%dT%H:%M:%S"))
    millis = int((epoch_seconds - whole) * 1000)
    return f"{_second_cache[1]}.{millis:03d}Z"


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
) -> bytes:
    record = {
        "time": format_time(time),
        "pod": pod,
        "version": version,
        "status": status,
        "latency_ms": round(latency_s * 1000, 3),
        "request_id": headers.get("x-request-id"),
        "method": method,
        "path": path,
        "http_version": http_version,
        "client": client,
        "bytes_in": bytes_in,
        "bytes_out": bytes_out,
        "headers": redact_headers(headers),
    }
    return orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE)


def stdout_sink(line: bytes) -> None:
    """Unbuffered write to fd 1: one syscall per line, no lost lines on a crash, no interleaving."""
    view = memoryview(line)
    while view:
        written = os.write(1, view)
        view = view[written:]
