"""Name resolution never hangs the prober: a look-up honours the request timeout, concurrent requests
share one look-up, and Ctrl-C stops a probe stuck in DNS at once with the partial report (exit 130).

The end-to-end tests run `netdebug probe` in a network and mount namespace of their own (root,
`unshare`), whose resolver is a local server that never answers: a name that cannot resolve offline,
and the slow kind of failure a cluster name outside its cluster gives.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from netdebug.cli import main_impl
from netdebug.probe import resolve
from netdebug.probe.resolve import Address, Resolver

CLUSTER_NAME = "echo-service.echo.svc.cluster.local"


class Blocking:
    """A look-up that blocks until released, counting its calls."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.calls = 0
        self.entered = threading.Event()

    def __call__(self, host: str, port: int) -> list[Address]:
        self.calls += 1
        self.entered.set()
        self.release.wait(30)
        raise socket.gaierror(socket.EAI_NONAME, "released")


@pytest.fixture
def blocking() -> Iterator[Blocking]:
    lookup = Blocking()
    yield lookup
    lookup.release.set()


def test_a_hanging_lookup_costs_the_timeout_and_one_thread(blocking: Blocking) -> None:
    async def main() -> list[BaseException | list[Address]]:
        resolver = Resolver(blocking)
        return await asyncio.gather(
            *(resolver.resolve("slow.test", 80, within=0.2) for _ in range(20)), return_exceptions=True
        )

    started = time.monotonic()
    results = asyncio.run(main())
    assert time.monotonic() - started < 5.0
    assert blocking.calls == 1  # single flight: twenty callers, one look-up
    assert all(isinstance(r, socket.gaierror) for r in results)
    assert "resolving slow.test took more than 0.2s" in str(results[0])


def test_answers_are_cached_and_literals_not_looked_up() -> None:
    calls: list[str] = []

    def lookup(host: str, port: int) -> list[Address]:
        calls.append(host)
        return [(socket.AF_INET, ("127.0.0.1", port))]

    now = [0.0]

    async def main() -> None:
        resolver = Resolver(lookup, clock=lambda: now[0])
        assert await resolver.resolve("svc.test", 80, within=1) == [(socket.AF_INET, ("127.0.0.1", 80))]
        await resolver.resolve("SVC.test", 80, within=1)
        now[0] = 61.0  # curl keeps answers 60 s
        await resolver.resolve("svc.test", 80, within=1)
        assert await resolver.resolve("::1", 8080, within=1) == [(socket.AF_INET6, ("::1", 8080, 0, 0))]
        assert await resolver.resolve("10.0.0.1", 80, within=1) == [(socket.AF_INET, ("10.0.0.1", 80))]

    asyncio.run(main())
    assert calls == ["svc.test", "svc.test"]


def test_ctrl_c_stops_a_probe_stuck_in_dns(blocking: Blocking, monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process: the look-up itself sends SIGINT once it is entered (readiness, not a delay)."""

    def lookup(host: str, port: int) -> list[Address]:
        os.kill(os.getpid(), signal.SIGINT)
        return blocking(host, port)

    monkeypatch.setattr(resolve, "system_lookup", lookup)
    out, err = io.StringIO(), io.StringIO()
    started = time.monotonic()
    code = main_impl(
        ["probe", f"http://{CLUSTER_NAME}/echo", "-d", "60s", "--timeout", "30"],
        {"NETDEBUG_WAIT_SIDECAR": "never"},
        out,
        err,
    )
    assert time.monotonic() - started < 10.0
    assert code == 130
    assert "interrupted: partial report" in out.getvalue()


# --- end to end, in a namespace whose DNS never answers ---------------------------------------------


def _namespace_reason() -> str | None:
    if sys.platform != "linux" or os.geteuid() != 0:
        return "needs root on Linux (a network and mount namespace of its own)"
    for tool in ("unshare", "ip", "mount"):
        if shutil.which(tool) is None:
            return f"{tool} not installed"
    return None


@pytest.fixture
def silent_dns(tmp_path: Path) -> list[str]:
    """The command prefix that runs a command with a resolver that never answers."""
    reason = _namespace_reason()
    if reason is not None:
        pytest.skip(f"DNS namespace test skipped: {reason}")
    resolv = tmp_path / "resolv.conf"
    # glibc's own retries would take 5 s x 3 attempts per name: far beyond the probe's --timeout.
    resolv.write_text("nameserver 127.0.0.1\noptions timeout:5 attempts:3\n")
    script = f'ip link set lo up && mount --bind "{resolv}" /etc/resolv.conf && exec "$0" "$@"'
    harness = Path(__file__).with_name("dns_blackhole.py")
    return ["unshare", "--net", "--mount", "sh", "-c", script, sys.executable, str(harness)]


def _start(prefix: list[str], output: Path, *probe_args: str) -> subprocess.Popen[str]:
    command = [*prefix, str(output), sys.executable, "-m", "netdebug", "probe", *probe_args]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _end(proc: subprocess.Popen[str], pid: int | None) -> None:
    """Stop what this test started: the probe (by its PID, if it still runs), then the harness."""
    if pid is not None and proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    proc.kill()
    proc.communicate(timeout=30)


def _line(proc: subprocess.Popen[str], prefix: str) -> str:
    """The harness's next line starting with `prefix` (it prints three; the read ends with it)."""
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith(prefix):
            return line.strip()
    raise AssertionError(f"the harness ended without a '{prefix}' line")


def test_unresolvable_name_is_bounded_by_the_timeout(silent_dns: list[str], tmp_path: Path) -> None:
    output = tmp_path / "probe.out"
    started = time.monotonic()
    proc = _start(
        silent_dns, output, f"http://{CLUSTER_NAME}/echo", "-n", "20", "--rps", "20", "--timeout", "1"
    )
    pid: int | None = None
    try:
        pid = int(_line(proc, "pid ").split()[1])
        exit_line = _line(proc, "exit ")
        elapsed = time.monotonic() - started
    finally:
        _end(proc, pid)
    report = output.read_text()
    assert exit_line == "exit 4", report
    # 20 requests over 1 s, the last one given up 1 s later; unbounded look-ups took minutes.
    assert elapsed < 15.0, report
    assert "errors: dns 20" in report
    assert f"resolving {CLUSTER_NAME} took more than 1s" in report


def test_sigint_during_dns_stops_at_once(silent_dns: list[str], tmp_path: Path) -> None:
    output = tmp_path / "probe.out"
    proc = _start(
        silent_dns, output, f"http://{CLUSTER_NAME}/echo", "-d", "60s", "--rps", "20", "--timeout", "30"
    )
    pid: int | None = None
    try:
        pid = int(_line(proc, "pid ").split()[1])
        _line(proc, "dns-query")  # the probe is now waiting on a look-up that never ends
        os.kill(pid, signal.SIGINT)  # the probe this test started (same PID namespace)
        sent = time.monotonic()
        exit_line = _line(proc, "exit ")
        elapsed = time.monotonic() - sent
    finally:
        _end(proc, pid)
    report = output.read_text()
    assert exit_line == "exit 130", report
    assert elapsed < 5.0, report
    assert "interrupted: partial report" in report
