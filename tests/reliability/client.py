"""The reliability tier's normal client, and what it measures: latency and peak memory."""

from __future__ import annotations

import contextlib
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO

from tests.echo.serving import Answer, read_answer
from tests.procs import running

# Acceptance of issue 9: peak RSS over the whole bad-input corpus, default settings.
PEAK_RSS_LIMIT_KIB = 150 * 1024


class NormalClient:
    """One kept-alive HTTP/1.1 connection sending small GETs one after another, as a health checker
    or a well-behaved client would."""

    def __init__(self, port: int) -> None:
        self._port = port
        self._sock: socket.socket | None = None

    def get(self, path: str = "/normal") -> Answer | None:
        for _ in range(2):  # a kept-alive connection the server closed is reopened once
            if self._sock is None:
                self._sock = socket.create_connection(("127.0.0.1", self._port), timeout=10)
            try:
                self._sock.sendall(f"GET {path} HTTP/1.1\r\nHost: normal\r\n\r\n".encode())
                answer = read_answer(self._sock)
            except OSError:
                answer = None
            if answer is not None:
                return answer
            self.close()
        return None

    def latencies(self, count: int) -> list[float]:
        """Seconds per request for `count` requests; every one must be answered 200."""
        measured = []
        for _ in range(count):
            started = time.perf_counter()
            answer = self.get()
            measured.append(time.perf_counter() - started)
            assert answer is not None, "the normal client got no answer"
            assert answer.status == 200, answer
        return measured

    def median_ms(self, count: int = 300) -> float:
        return statistics.median(self.latencies(count)) * 1000

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


@dataclass
class Attack:
    proc: subprocess.Popen[bytes]
    output: IO[bytes]

    def text(self) -> str:
        self.output.flush()
        self.output.seek(0)
        return self.output.read().decode("utf-8", "replace")

    def result(self, timeout: float) -> dict[str, object]:
        """Wait for the attack to end (it is bounded by its --hold) and return its result."""
        import json

        self.proc.wait(timeout)
        for line in self.text().splitlines():
            if line.startswith("result "):
                parsed: dict[str, object] = json.loads(line.removeprefix("result "))
                return parsed
        raise AssertionError(f"the attack printed no result:\n{self.text()[-3000:]}")


@contextlib.contextmanager
def attack(*args: str) -> Iterator[Attack]:
    """An attack from tests/reliability/attacks.py, in its own process, ready when this yields."""
    with tempfile.TemporaryFile(prefix="attack-") as output:
        holder: list[Attack] = []

        def is_ready() -> bool:
            output.flush()
            output.seek(0)
            return b"ready" in output.read()

        with running(
            [sys.executable, "-m", "tests.reliability.attacks", *args],
            ready=is_ready,
            ready_timeout=60,
            what=f"attack {args[0]}",
            output=output,
        ) as proc:
            holder.append(Attack(proc, output))
            yield holder[0]
