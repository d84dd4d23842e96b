"""Instructions per request of a real echo-server, counted by callgrind: `python bench/echo_instructions.py`.

Wall-clock throughput on a shared machine moves by tens of percent between runs; the instruction
count of the same work does not (it moves by a few hundred per request: timers that fire once a
second). So this is the figure for before/after comparisons of the serving path and the app.

echo-server (request log on, stdout /dev/null) runs under `valgrind --tool=callgrind`; this script,
not measured, is the client: one keep-alive connection, N requests one after the other (GET with
echo_bench's 8 typical headers, or POST with its 1 KiB JSON body). The process's instruction totals
for N = 1,000 and N = 2,000 give one request's cost, start-up and shutdown cancelled out:
(I(2000) - I(1000)) / 1000. `--compare GIT_REF` measures echo-server as of that commit too (a
temporary git worktree, same venv). Loopback only; about a minute per measurement. Needs valgrind.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))

from echo_bench import POST_BODY, TYPICAL_HEADERS, free_port, wait_port  # noqa: E402 - after the path set-up above

COUNTS = (1000, 2000)
START_TIMEOUT = 180.0  # echo-server's start under valgrind on a loaded machine
REQUEST_TIMEOUT = 30.0


def request_bytes(method: str, port: int) -> bytes:
    lines = [f"{method} / HTTP/1.1", f"Host: 127.0.0.1:{port}"]
    lines += [f"{name}: {value}" for name, value in TYPICAL_HEADERS.items()]
    body = POST_BODY.encode() if method == "POST" else b""
    if body:
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def read_answer(sock: socket.socket, pending: bytes) -> bytes:
    """Read one answer with a Content-Length; returns what followed it."""
    while True:
        head, separator, rest = pending.partition(b"\r\n\r\n")
        if separator:
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            if not head.startswith(b"HTTP/1.1 200 "):
                raise RuntimeError(f"unexpected answer: {head[:200]!r}")
            if len(rest) >= length:
                return rest[length:]
        chunk = sock.recv(65536)
        if not chunk:
            raise RuntimeError("echo-server closed the connection")
        pending += chunk


def instructions(tree: Path, method: str, count: int, directory: Path) -> int:
    """callgrind's instruction total of one echo-server process that served ``count`` requests."""
    port = free_port()
    out = directory / f"callgrind.{port}.out"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HTTP", "MTLS", "ECHO_"))} | {
        "PYTHONPATH": str(tree),
        "HTTP_PORT": str(port),
        "HTTPS_PORT": "off",
        "ECHO_BIND": "127.0.0.1",
        "ECHO_DRAIN_SECONDS": "0",
        "DISABLE_REQUEST_LOGS": "false",
    }
    command = [
        "valgrind",
        "--tool=callgrind",
        f"--callgrind-out-file={out}",
        sys.executable,
        "-P",
        "-m",
        "echo",
    ]
    proc = subprocess.Popen(
        command, env=env, cwd=directory, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_port(port, proc, START_TIMEOUT)
        request = request_bytes(method, port)
        with socket.create_connection(("127.0.0.1", port), timeout=REQUEST_TIMEOUT) as sock:
            pending = b""
            for _ in range(count):
                sock.sendall(request)
                pending = read_answer(sock, pending)
        proc.send_signal(signal.SIGINT)
        proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    for line in out.read_text().splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    raise RuntimeError(f"no instruction total in {out}")


def per_request(tree: Path, method: str, directory: Path) -> float:
    low, high = (instructions(tree, method, count, directory) for count in COUNTS)
    return (high - low) / (COUNTS[1] - COUNTS[0])


@contextlib.contextmanager
def worktree(ref: str, directory: Path) -> Iterator[Path]:
    tree = directory / "compare"
    subprocess.run(
        ["git", "-C", str(REPO), "worktree", "add", "--detach", str(tree), ref],
        check=True,
        capture_output=True,
    )
    try:
        yield tree
    finally:
        subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)], check=False)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--compare", metavar="GIT_REF", help="also measure echo-server as of this commit")
    parser.add_argument(
        "--method", choices=("GET", "POST", "both"), default="both", help="which request (default both)"
    )
    args = parser.parse_args(argv)
    if shutil.which("valgrind") is None:
        print("echo_instructions: valgrind not found (apt install valgrind)")
        return 2
    methods = ("GET", "POST") if args.method == "both" else (args.method,)
    with tempfile.TemporaryDirectory(prefix="echo-instructions-") as tmp, contextlib.ExitStack() as stack:
        directory = Path(tmp)
        trees = [("echo-server", REPO)]
        if args.compare:
            trees.append(
                (f"echo-server@{args.compare[:10]}", stack.enter_context(worktree(args.compare, directory)))
            )
        python = sys.version.split()[0]
        print(f"instructions per request (callgrind), keep-alive, request log on, python {python}")
        results: dict[tuple[str, str], float] = {}
        for method in methods:
            for name, tree in trees:
                print(f"  measuring {name} {method} …", file=sys.stderr, flush=True)
                results[name, method] = per_request(tree, method, directory)
        print()
        print("| request | server | instructions/request | vs first |")
        print("|---|---|---:|---:|")
        for method in methods:
            first = results[trees[0][0], method]
            for name, _ in trees:
                value = results[name, method]
                print(f"| {method} | {name} | {value / 1000:,.1f}k | {value / first:.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
