"""Run inside a network namespace of its own (`unshare --net python -m tests.reliability.netns_readyz`):
give that namespace's loopback device a private (non-loopback) address too, start echo-server there
with its default ECHO_READYZ_CHANGE_FROM, and try to flip readiness from that address and from
127.0.0.1.

Loopback is the only network a test may use on this machine; a namespace made here is the one way to
have a peer that is not loopback. Prints one JSON line with what each attempt got.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys

from tests.echo.serving import read_answer
from tests.procs import free_port, running, wait_until

ADDRESS = "10.213.0.1"


def _post(port: int, source: str) -> int | None:
    with socket.socket() as sock:
        sock.bind((source, 0))
        sock.settimeout(5)
        sock.connect((ADDRESS if source == ADDRESS else "127.0.0.1", port))
        sock.sendall(b"POST /_echo/readyz?ready=false HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
        answer = read_answer(sock)
    return answer.status if answer else None


def _ready_status(port: int) -> int | None:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"GET /_echo/readyz HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = read_answer(sock)
    except OSError:
        return None
    return answer.status if answer else None


def main() -> int:
    for command in (
        ["ip", "addr", "add", f"{ADDRESS}/32", "dev", "lo"],
        ["ip", "link", "set", "lo", "up"],
    ):
        subprocess.run(command, check=True, capture_output=True)
    port = free_port()
    env = {"HTTP_PORT": str(port), "HTTPS_PORT": "off", "ECHO_BIND": "0.0.0.0", "ECHO_DRAIN_SECONDS": "0"}
    result: dict[str, object] = {}
    with running([sys.executable, "-m", "echo"], env=env, ready=lambda: _ready_status(port) == 200):
        result["from_private_address"] = _post(port, ADDRESS)
        result["ready_after_refused_flip"] = _ready_status(port)
        result["from_loopback"] = _post(port, "127.0.0.1")
        wait_until(lambda: _ready_status(port) == 503, 5, "the loopback flip to take")
        result["ready_after_loopback_flip"] = _ready_status(port)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
