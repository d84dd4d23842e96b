"""echo-server throughput benchmark (a script, not a test): `make bench`, or `bench/echo_bench.py --quick`.

wrk (one thread, pinned to one core) drives each server (pinned to another core) on loopback:
echo-server with the request log on and off, a raw-ASGI echo on uvicorn (bench/raw_asgi_echo.py,
the baseline), and nginx `return 200` (the ceiling). Scenarios: GET with 8 typical headers and POST
with a 1 KiB JSON body, keep-alive and a new connection per request, HTTP and HTTPS. Runs are
interleaved (every target once per round) and the median round is reported, so the ratios compare
servers under the same background load. Every run is bounded (`--duration` seconds, loopback only).
With the log on, echo-server's stdout is /dev/null: the figure includes building and writing each JSON
line (one write syscall), not a log pipeline behind it.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from echo.tls import generate_self_signed  # noqa: E402 - after the path set-up above

TYPICAL_HEADERS = {
    "User-Agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0",
    "Accept": "application/json, text/plain, */*",
    "Accept-Encoding": "gzip, deflate, br",
    "Accept-Language": "en-US,en;q=0.9",
    "X-Request-Id": "4f8c2a1e-9b7d-4c3e-8a5f-1d2e3f4a5b6c",
    "Traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    "X-Forwarded-For": "10.0.0.1",
    "Cookie": "session=abc123; theme=dark",
}
POST_BODY = json.dumps(
    {"items": [{"id": i, "name": f"item-{i:04d}", "tags": ["a", "b"]} for i in range(20)]}
)[:1024].ljust(1024)


@dataclass(frozen=True)
class Scenario:
    name: str
    method: str
    tls: bool
    new_connection: bool


SCENARIOS = (
    Scenario("GET keep-alive", "GET", tls=False, new_connection=False),
    Scenario("POST 1KiB keep-alive", "POST", tls=False, new_connection=False),
    Scenario("GET new-conn", "GET", tls=False, new_connection=True),
    Scenario("HTTPS GET keep-alive", "GET", tls=True, new_connection=False),
    Scenario("HTTPS GET new-conn", "GET", tls=True, new_connection=True),
)


@dataclass
class Target:
    name: str
    http_port: int
    https_port: int | None
    proc: subprocess.Popen[bytes] | None = None


@dataclass
class Result:
    rps: list[float] = field(default_factory=list)
    p50_ms: list[float] = field(default_factory=list)
    p99_ms: list[float] = field(default_factory=list)
    errors: int = 0

    def median_index(self) -> int:
        ordered = sorted(range(len(self.rps)), key=lambda i: self.rps[i])
        return ordered[len(ordered) // 2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before listening on {port}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        time.sleep(0.05)  # polling interval of a readiness check
    raise RuntimeError(f"nothing listening on {port} after {timeout}s")


def pinned(cmd: Sequence[str], core: int | None) -> list[str]:
    return ["taskset", "-c", str(core), *cmd] if core is not None else list(cmd)


def rss_kib(pid: int) -> int:
    """Resident memory of a process and its children (nginx: master + worker)."""
    total = 0
    pids = [pid]
    with contextlib.suppress(OSError):
        pids += [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    for one in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{one}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total


def lua_script(scenario: Scenario) -> str:
    headers = dict(TYPICAL_HEADERS)
    if scenario.new_connection:
        headers["Connection"] = "close"
    lines = [f'wrk.method = "{scenario.method}"']
    if scenario.method == "POST":
        headers["Content-Type"] = "application/json"
        lines.append(f"wrk.body = {json.dumps(POST_BODY)}")
    lines += [f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}" for k, v in headers.items()]
    lines.append(
        "done = function(summary, latency, requests)\n"
        "  local e = summary.errors\n"
        '  io.write(string.format("BENCH_JSON {\\"requests\\":%d,\\"duration_us\\":%d,\\"errors\\":%d,'
        '\\"non2xx\\":%d,\\"p50_us\\":%d,\\"p99_us\\":%d}\\n", summary.requests, summary.duration,'
        " e.connect + e.read + e.write + e.timeout, e.status,"
        " latency:percentile(50), latency:percentile(99)))\n"
        "end"
    )
    return "\n".join(lines) + "\n"


def run_wrk(url: str, script: Path, duration: float, connections: int, core: int | None) -> dict[str, float]:
    cmd = pinned(
        [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{max(1, round(duration))}s",
            "--timeout",
            "5s",
            "-s",
            str(script),
            url,
        ],
        core,
    )
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 30, check=False).stdout
    for line in out.splitlines():
        if line.startswith("BENCH_JSON "):
            data: dict[str, float] = json.loads(line.removeprefix("BENCH_JSON "))
            return data
    raise RuntimeError(f"wrk printed no summary for {url}:\n{out[-2000:]}")


@contextlib.contextmanager
def started(cmd: list[str], env: dict[str, str], port: int) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_port(port, proc)
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()


def nginx_config(directory: Path, http_port: int, https_port: int, cert: Path, key: Path) -> Path:
    conf = directory / "nginx.conf"
    body = '{"ok":true}'
    conf.write_text(
        f"""worker_processes 1;
pid {directory}/nginx.pid;
error_log {directory}/error.log warn;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  client_body_temp_path {directory}/body;
  proxy_temp_path {directory}/proxy;
  fastcgi_temp_path {directory}/fastcgi;
  uwsgi_temp_path {directory}/uwsgi;
  scgi_temp_path {directory}/scgi;
  keepalive_requests 100000;
  server {{
    listen 127.0.0.1:{http_port};
    listen 127.0.0.1:{https_port} ssl;
    ssl_certificate {cert};
    ssl_certificate_key {key};
    location / {{ default_type application/json; return 200 '{body}'; }}
  }}
}}
"""
    )
    return conf


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="one round of 1 s runs (a smoke test)")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds; the median is reported")
    parser.add_argument("--duration", type=float, default=2.0, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections")
    parser.add_argument("--no-nginx", action="store_true", help="skip the nginx ceiling")
    parser.add_argument(
        "--compare",
        metavar="GIT_REF",
        help="also run echo-server (log on) as of this commit, from a temporary git worktree with this "
        "venv, interleaved with the rest: before/after figures from one run",
    )
    parser.add_argument(
        "--only", metavar="TEXT", help="run only the scenarios whose name contains TEXT (e.g. 'GET keep')"
    )
    args = parser.parse_args(argv)
    scenarios = [s for s in SCENARIOS if args.only is None or args.only in s.name]
    if args.quick:
        args.rounds, args.duration = 1, 1.0
    for tool in ("wrk", "taskset"):
        if shutil.which(tool) is None:
            print(f"echo_bench: {tool} not found (apt install {'wrk' if tool == 'wrk' else 'util-linux'})")
            return 2
    nginx = None if args.no_nginx else shutil.which("nginx")
    cores = os.cpu_count() or 1
    # wrk on core 0, the server under test on core 1; on a single-core machine nothing is pinned.
    wrk_core, server_core = (0, 1) if cores >= 2 else (None, None)
    echo_server = shutil.which("echo-server") or str(Path(sys.executable).parent / "echo-server")

    with tempfile.TemporaryDirectory(prefix="echo-bench-") as tmp:
        directory = Path(tmp)
        certificate = generate_self_signed(["localhost"], ["127.0.0.1"], datetime.datetime.now(datetime.UTC))
        cert, key = directory / "cert.pem", directory / "key.pem"
        cert.write_bytes(certificate.cert_pem)
        key.write_bytes(certificate.key_pem)
        key.chmod(0o600)
        scripts = {}
        for scenario in scenarios:
            scripts[scenario.name] = directory / f"{scenario.name.replace(' ', '_')}.lua"
            scripts[scenario.name].write_text(lua_script(scenario))

        targets: list[Target] = []
        with contextlib.ExitStack() as stack:
            base_env = {k: v for k, v in os.environ.items() if not k.startswith(("HTTP", "MTLS", "ECHO_"))}
            echoes: list[tuple[str, bool, list[str], dict[str, str]]] = [
                ("echo (log on)", False, [echo_server], {}),
                ("echo (log off)", True, [echo_server], {}),
            ]
            if args.compare:
                tree = directory / "compare"
                subprocess.run(
                    [
                        "git",
                        "-C",
                        str(REPO),
                        "worktree",
                        "add",
                        "--detach",
                        "--quiet",
                        str(tree),
                        args.compare,
                    ],
                    check=True,
                )
                stack.callback(
                    subprocess.run,
                    ["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)],
                    check=False,
                )
                echoes.append(
                    (
                        f"echo@{args.compare[:10]} (log on)",
                        False,
                        # -P: the repository the bench runs from must not shadow the worktree
                        [sys.executable, "-P", "-m", "echo"],
                        {"PYTHONPATH": str(tree)},
                    )
                )
            for name, logs_off, command, extra_env in echoes:
                target = Target(name, free_port(), free_port())
                env = (
                    base_env
                    | {
                        "HTTP_PORT": str(target.http_port),
                        "HTTPS_PORT": str(target.https_port),
                        "ECHO_BIND": "127.0.0.1",
                        "ECHO_DRAIN_SECONDS": "0",
                        "DISABLE_REQUEST_LOGS": "true" if logs_off else "false",
                        "HTTPS_CERT_FILE": str(cert),
                        "HTTPS_KEY_FILE": str(key),
                    }
                    | extra_env
                )
                target.proc = stack.enter_context(
                    started(pinned(command, server_core), env, target.http_port)
                )
                wait_port(target.https_port or 0, target.proc)
                targets.append(target)
            raw = Target("raw ASGI (uvicorn)", free_port(), None)
            raw.proc = stack.enter_context(
                started(
                    pinned(
                        [sys.executable, str(REPO / "bench" / "raw_asgi_echo.py"), str(raw.http_port)],
                        server_core,
                    ),
                    base_env,
                    raw.http_port,
                )
            )
            targets.append(raw)
            if nginx is not None:
                ngx = Target("nginx return 200", free_port(), free_port())
                conf = nginx_config(directory, ngx.http_port, ngx.https_port or 0, cert, key)
                cmd = [
                    nginx,
                    "-p",
                    str(directory),
                    "-c",
                    str(conf),
                    "-e",
                    str(directory / "error.log"),
                    "-g",
                    "daemon off;",
                ]
                ngx.proc = stack.enter_context(started(pinned(cmd, server_core), base_env, ngx.http_port))
                targets.append(ngx)

            results: dict[tuple[str, str], Result] = {}
            total = sum(1 for s in scenarios for t in targets if not s.tls or t.https_port is not None)
            done = 0
            for round_number in range(args.rounds):
                for scenario in scenarios:
                    for target in targets:
                        if scenario.tls and target.https_port is None:
                            continue
                        scheme, port = (
                            ("https", target.https_port) if scenario.tls else ("http", target.http_port)
                        )
                        url = f"{scheme}://127.0.0.1:{port}/bench/echo?x=1"
                        data = run_wrk(url, scripts[scenario.name], args.duration, args.connections, wrk_core)
                        result = results.setdefault((scenario.name, target.name), Result())
                        result.rps.append(data["requests"] / (data["duration_us"] / 1e6))
                        result.p50_ms.append(data["p50_us"] / 1000)
                        result.p99_ms.append(data["p99_us"] / 1000)
                        result.errors += int(data["errors"] + data["non2xx"])
                        done += 1
                        print(
                            f"\r  round {round_number + 1}/{args.rounds}: {done}/{total * args.rounds} runs",
                            end="",
                            file=sys.stderr,
                            flush=True,
                        )
            print(file=sys.stderr)
            rss = {t.name: rss_kib(t.proc.pid) for t in targets if t.proc is not None}

    print_report(results, targets, rss, args)
    return 0


def print_report(
    results: dict[tuple[str, str], Result],
    targets: list[Target],
    rss: dict[str, int],
    args: argparse.Namespace,
) -> None:
    model = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    print(f"echo-server benchmark, {now}, {model}, {os.cpu_count()} cores, {platform.python_version()}")
    print(
        f"wrk -t1 -c{args.connections}, {args.duration:g}s per run, {args.rounds} interleaved round(s), "
        "median round shown, ratio = median of same-round ratios; server and wrk pinned to different cores"
    )
    print()
    print(
        f"| {'scenario':<22} | {'server':<20} | {'req/s':>8} | {'p50 ms':>7} | {'p99 ms':>7} "
        f"| {'vs raw':>6} | errors |"
    )
    print(f"|{'-' * 24}|{'-' * 22}|{'-' * 10}|{'-' * 9}|{'-' * 9}|{'-' * 8}|--------|")
    medians: dict[tuple[str, str], float] = {}
    ratios: dict[tuple[str, str], float] = {}
    for scenario in SCENARIOS:
        raw = results.get((scenario.name, "raw ASGI (uvicorn)"))
        for target in targets:
            result = results.get((scenario.name, target.name))
            if result is None:
                continue
            i = result.median_index()
            medians[(scenario.name, target.name)] = result.rps[i]
            ratio = "-"
            if raw is not None:
                # Ratio of runs in the same round (adjacent in time), then the median over rounds:
                # background load changes between rounds more than within one.
                value = statistics.median(t / r for t, r in zip(result.rps, raw.rps, strict=True) if r > 0)
                ratios[(scenario.name, target.name)] = value
                ratio = f"{value:.2f}x"
            print(
                f"| {scenario.name:<22} | {target.name:<20} | {result.rps[i]:>8,.0f} "
                f"| {result.p50_ms[i]:>7.2f} | {result.p99_ms[i]:>7.2f} | {ratio:>6} | {result.errors:>6} |"
            )
    print()
    print("RSS after the runs: " + ", ".join(f"{name} {kib / 1024:.0f} MiB" for name, kib in rss.items()))
    if ("GET keep-alive", "raw ASGI (uvicorn)") in ratios:
        for name, goal in (("echo (log on)", 0.65), ("echo (log off)", 0.8)):
            got = ratios.get(("GET keep-alive", name), 0.0)
            verdict = "met" if got >= goal else "NOT met"
            print(f"target {name}: GET keep-alive >= {goal:.2f}x raw ASGI: {got:.2f}x ({verdict})")


if __name__ == "__main__":
    raise SystemExit(main())
