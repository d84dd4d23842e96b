"""Prometheus counters for the echo app, kept deliberately small: one dict increment per request.

Exposition format 0.0.4 (text). Methods outside the standard set are counted as ``other`` so a client
cannot blow up the label cardinality.
"""

from __future__ import annotations

from bisect import bisect_left

_KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT"})
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class Metrics:
    def __init__(self, version: str, pod: str) -> None:
        self._version = _escape(version)
        self._pod = _escape(pod)
        self._requests: dict[tuple[str, int], int] = {}
        self._bucket_counts = [0] * (len(BUCKETS) + 1)
        self._duration_sum = 0.0
        self.websocket_sessions = 0
        self.websocket_messages = 0

    def observe(self, method: str, status: int, seconds: float) -> None:
        key = (method if method in _KNOWN_METHODS else "other", status)
        self._requests[key] = self._requests.get(key, 0) + 1
        self._bucket_counts[bisect_left(BUCKETS, seconds)] += 1
        self._duration_sum += seconds

    def count(self, method: str, status: int) -> int:
        return self._requests.get((method, status), 0)

    def render(self, *, ready: bool, in_flight: int) -> bytes:
        labels = f'version="{self._version}",pod="{self._pod}"'
        lines = [
            "# HELP echo_requests_total Echoed HTTP requests by method, status and version.",
            "# TYPE echo_requests_total counter",
        ]
        for (method, status), count in sorted(self._requests.items()):
            lines.append(f'echo_requests_total{{method="{method}",status="{status}",{labels}}} {count}')
        lines += [
            "# HELP echo_request_duration_seconds Time from request start to response sent.",
            "# TYPE echo_request_duration_seconds histogram",
        ]
        cumulative = 0
        for bound, count in zip(BUCKETS, self._bucket_counts, strict=False):
            cumulative += count
            lines.append(f'echo_request_duration_seconds_bucket{{le="{bound:g}",{labels}}} {cumulative}')
        cumulative += self._bucket_counts[-1]
        lines += [
            f'echo_request_duration_seconds_bucket{{le="+Inf",{labels}}} {cumulative}',
            f"echo_request_duration_seconds_sum{{{labels}}} {self._duration_sum:.6f}",
            f"echo_request_duration_seconds_count{{{labels}}} {cumulative}",
            "# HELP echo_websocket_sessions_total WebSocket sessions accepted.",
            "# TYPE echo_websocket_sessions_total counter",
            f"echo_websocket_sessions_total{{{labels}}} {self.websocket_sessions}",
            "# HELP echo_websocket_messages_total WebSocket messages echoed.",
            "# TYPE echo_websocket_messages_total counter",
            f"echo_websocket_messages_total{{{labels}}} {self.websocket_messages}",
            "# HELP echo_in_flight_requests Requests being served now.",
            "# TYPE echo_in_flight_requests gauge",
            f"echo_in_flight_requests{{{labels}}} {in_flight}",
            "# HELP echo_ready 1 when /readyz answers 200.",
            "# TYPE echo_ready gauge",
            f"echo_ready{{{labels}}} {1 if ready else 0}",
        ]
        return ("\n".join(lines) + "\n").encode()
