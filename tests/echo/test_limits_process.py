"""Memory and disconnect limits on a real echo-server process (free loopback port, readiness wait).

Peak memory is read from /proc/PID/status (VmHWM), the kernel's high-water mark of the process.
"""

from __future__ import annotations

import asyncio
import gzip
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.procs import free_port, http_ok, running, wait_until

ECHO = str(Path(sys.executable).parent / "echo-server")


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


@pytest.fixture
def server() -> Iterator[tuple[int, int]]:
    port = free_port()
    with running(
        [ECHO, "--http-port", str(port), "--https-port", "off", "--no-request-logs"],
        ready=lambda: http_ok(f"http://127.0.0.1:{port}/_echo/readyz"),
        what="echo-server",
    ) as proc:
        yield port, proc.pid


@pytest.mark.slow
def test_concurrent_large_json_bodies_stay_within_150_mb(server: tuple[int, int]) -> None:
    port, pid = server
    size = 10 * 1_048_576
    body = b"[" + b",".join([b'{"a":1}'] * (size // 8 - 1)) + b"]"
    url = f"http://127.0.0.1:{port}/"

    async def round_of(count: int) -> list[int]:
        async with httpx.AsyncClient(timeout=120) as client:
            responses = await asyncio.gather(
                *(
                    client.post(url, content=body, headers={"content-type": "application/json"})
                    for _ in range(count)
                )
            )
        for response in responses:
            if response.status_code == 503:
                assert response.headers["retry-after"] == "1"
        return [response.status_code for response in responses]

    statuses = [status for _ in range(3) for status in asyncio.run(round_of(8))]
    assert set(statuses) <= {200, 503}
    assert 200 in statuses
    peak = peak_rss_mb(pid)
    assert peak <= 150, f"peak RSS {peak:.0f} MB"
    # A decompression bomb (64 MiB of zeros, ~64 KiB gzipped) costs no more than the limit.
    bomb = gzip.compress(b"\0" * (64 * 1_048_576))
    response = httpx.post(url, content=bomb, headers={"content-encoding": "gzip"}, timeout=60)
    assert response.status_code == 413
    assert peak_rss_mb(pid) <= 150


def test_disconnect_during_delay_releases_the_request(server: tuple[int, int]) -> None:
    port, _ = server
    metrics = f"http://127.0.0.1:{port}/_echo/metrics"

    def in_flight() -> int:
        text = httpx.get(metrics).text
        line = next(line for line in text.splitlines() if line.startswith("echo_in_flight_requests"))
        return int(line.rsplit(" ", 1)[1])

    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"GET /slow HTTP/1.1\r\nHost: e\r\nx-set-response-delay-ms: 60000\r\n\r\n")
        wait_until(lambda: in_flight() == 1, 10, "the delayed request to start")
    # The client is gone: the request ends now, not after 60 s, and is counted as 499.
    wait_until(lambda: in_flight() == 0, 10, "the in-flight gauge to drop")
    assert 'echo_requests_total{method="GET",status="499"' in httpx.get(metrics).text
