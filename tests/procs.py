"""Real-process helpers shared by the socket tier: free loopback ports, readiness waits, children.

Rules: never fixed ports, never sleeps as synchronisation (poll a readiness condition with a
deadline), and every child started here is ended by PID.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO

import httpx

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
VENV_BIN = Path(sys.executable).parent


def free_port(host: str = "127.0.0.1") -> int:
    """A port the kernel just handed out on loopback (bound then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def wait_until(condition: Callable[[], bool], timeout: float, what: str, poll: float = 0.02) -> None:
    """Poll `condition` until it is true; raise TimeoutError naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(poll)  # polling interval of a readiness check, not synchronisation by delay


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.2):
        return True
    return False


def http_ok(url: str) -> bool:
    """True once `url` answers below 500 (a 503 from a readiness endpoint means not yet)."""
    try:
        return httpx.get(url, timeout=0.5).status_code < 500
    except httpx.HTTPError:
        return False


def tool(name: str) -> str | None:
    """A command from this venv first (envoy, kubectl, hadolint come from PyPI wheels), else PATH."""
    candidate = VENV_BIN / name
    if candidate.exists():
        return str(candidate)
    return shutil.which(name)


@contextlib.contextmanager
def running(
    cmd: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    ready: Callable[[], bool] | None = None,
    ready_timeout: float = 20.0,
    what: str | None = None,
    cwd: Path | None = None,
    output: IO[bytes] | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """Start a child, wait for `ready`, yield it; on exit SIGTERM it by PID (SIGKILL after 10 s).

    stdout/stderr go to `output` if given (the caller reads it), else to a temporary file, so a
    failed start can show what the child said.
    """
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    log = output or tempfile.TemporaryFile(prefix=f"meshecho-{Path(cmd[0]).name}-")  # noqa: SIM115
    proc = subprocess.Popen(list(cmd), env=full_env, stdout=log, stderr=subprocess.STDOUT, cwd=cwd)
    try:
        if ready is not None:
            try:
                wait_until(lambda: proc.poll() is not None or ready(), ready_timeout, what or cmd[0])
            except TimeoutError:
                raise TimeoutError(f"{what or cmd[0]} not ready; output:\n{_tail(log)}") from None
            if proc.poll() is not None:
                raise RuntimeError(f"{what or cmd[0]} exited {proc.returncode}; output:\n{_tail(log)}")
        yield proc
    finally:
        stop(proc)
        if output is None:
            log.close()


def stop(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def _tail(log: IO[bytes], limit: int = 4000) -> str:
    log.flush()
    log.seek(0)
    return log.read()[-limit:].decode("utf-8", "replace")
