"""Prober benchmark (a script, not a test): `make bench`, or `bench/prober_bench.py --quick`.

1. Maximum closed-loop throughput, one client core: `netdebug probe -c C` vs `wrk -t1`, `loadtest`
   (npm) and `autocannon` (npm), each pinned to core 0 with taskset, against nginx `return 200`
   pinned to core 1 (so the target is never the bottleneck; echo-server would cap every client at its
   own ~2-10k req/s). Runs are interleaved (every tool once per round) and the median round is reported.
2. Pacing accuracy of the open model: `netdebug probe --rps R -d D` at 500, 1,000 and 2,000 req/s:
   achieved launch rate, its error, lateness percentiles and drops.

Every run is bounded (`--duration` seconds, loopback only). The npm tools are taken from PATH, else
installed once into a cache folder under the temp dir (`npm install --prefix`); missing tools are
reported as such, never faked.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
NPM_CACHE = Path(tempfile.gettempdir()) / "meshecho-bench-npm"
NPM_PACKAGES = ("loadtest@8", "autocannon@7")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        time.sleep(0.05)  # readiness polling interval
    raise TimeoutError(f"nothing listening on {port}")


def pin(core: int) -> list[str]:
    """taskset prefix for one core, when there are at least two cores and taskset exists."""
    if shutil.which("taskset") and (os.cpu_count() or 1) >= 2:
        return ["taskset", "-c", str(core)]
    return []


NGINX_CONF = """daemon off;
master_process off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {d}/body; proxy_temp_path {d}/proxy; fastcgi_temp_path {d}/fcgi;
  uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;
  keepalive_requests 1000000;
  server {{
    listen 127.0.0.1:{port};
    location / {{ add_header x-echo-version v1; return 200 '{{"pod":{{"version":"v1"}}}}'; }}
  }}
}}
"""


@contextlib.contextmanager
def target() -> Iterator[tuple[str, str]]:
    """(url, description): nginx `return 200` on core 1, else echo-server."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="prober-bench-") as d:
        nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
        if nginx:
            (Path(d) / "nginx.conf").write_text(NGINX_CONF.format(d=d, port=port))
            cmd = [*pin(1), nginx, "-p", d, "-c", f"{d}/nginx.conf"]
            what = "nginx `return 200` (1 worker, core 1)"
        else:
            echo = shutil.which("echo-server") or str(Path(sys.executable).parent / "echo-server")
            cmd = [*pin(1), echo]
            what = "echo-server (nginx not found)"
        env = dict(
            os.environ,
            HTTP_PORT=str(port),
            HTTPS_PORT="off",
            ECHO_BIND="127.0.0.1",
            SERVICE_VERSION="v1",
            DISABLE_REQUEST_LOGS="true",
        )
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_port(port)
            yield f"http://127.0.0.1:{port}/echo", what
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def npm_tool(name: str, install: bool) -> str | None:
    found = shutil.which(name) or (
        str(NPM_CACHE / "node_modules/.bin" / name)
        if (NPM_CACHE / "node_modules/.bin" / name).exists()
        else None
    )
    if found or not install or not shutil.which("npm"):
        return found
    NPM_CACHE.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["npm", "install", "--prefix", str(NPM_CACHE), "--no-audit", "--no-fund", "--silent", *NPM_PACKAGES],
        check=False,
        timeout=600,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    path = NPM_CACHE / "node_modules/.bin" / name
    return str(path) if path.exists() else None


def run(cmd: list[str], timeout: float) -> str:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    return done.stdout + "\n" + done.stderr


def netdebug_cmd() -> list[str]:
    return [sys.executable, "-m", "netdebug", "probe"]


@dataclass(frozen=True)
class Tool:
    name: str
    measure: Callable[[str, int, float], float | None]  # (url, concurrency, seconds) -> req/s


def measure_netdebug(url: str, c: int, seconds: float) -> float | None:
    out = run(
        [
            *pin(0),
            *netdebug_cmd(),
            url,
            "-c",
            str(c),
            "-d",
            f"{seconds}s",
            "-o",
            "json",
            "--wait-sidecar",
            "no",
            "--max-error-rate",
            "1",
        ],
        seconds + 60,
    )
    try:
        doc = json.loads(out[: out.rindex("}") + 1])
    except ValueError:
        return None
    return float(doc["requests"]) / float(doc["elapsed_s"]) if doc["elapsed_s"] else None


def measure_wrk(url: str, c: int, seconds: float) -> float | None:
    if not shutil.which("wrk"):
        return None
    m = re.search(
        r"Requests/sec:\s+([\d.]+)",
        run([*pin(0), "wrk", "-t1", f"-c{c}", f"-d{max(1, round(seconds))}s", url], seconds + 60),
    )
    return float(m.group(1)) if m else None


def make_loadtest(path: str | None) -> Callable[[str, int, float], float | None]:
    def measure(url: str, c: int, seconds: float) -> float | None:
        if path is None:
            return None
        out = run(
            [*pin(0), path, "-c", str(c), "-k", "--cores", "1", "-t", str(int(seconds)), url], seconds + 60
        )
        m = re.search(r"Effective rps:\s+([\d.]+)", out) or re.search(r"Requests per second:\s+([\d.]+)", out)
        return float(m.group(1)) if m else None

    return measure


def make_autocannon(path: str | None) -> Callable[[str, int, float], float | None]:
    def measure(url: str, c: int, seconds: float) -> float | None:
        if path is None:
            return None
        out = run([*pin(0), path, "-c", str(c), "-d", str(int(seconds)), "-j", url], seconds + 60)
        with contextlib.suppress(ValueError, KeyError):
            doc = json.loads(out[out.index("{") : out.rindex("}") + 1])
            return float(doc["requests"]["total"]) / float(doc["duration"])
        return None

    return measure


def pacing(url: str, rate: int, seconds: float) -> dict[str, object]:
    out = run(
        [
            *pin(0),
            *netdebug_cmd(),
            url,
            "--rps",
            str(rate),
            "-d",
            f"{seconds}s",
            "-o",
            "json",
            "--wait-sidecar",
            "no",
            "--max-error-rate",
            "1",
        ],
        seconds + 60,
    )
    doc = json.loads(out[: out.rindex("}") + 1])
    achieved = float(doc["achieved_rps"])
    return {
        "target_rps": rate,
        "achieved_rps": round(achieved, 1),
        "error_pct": round(100.0 * (achieved - rate) / rate, 2),
        "lateness_ms": doc["lateness_ms"],
        "dropped": doc["dropped"],
        "errors": doc["errors"],
    }


def machine() -> str:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    cpu = model or platform.machine()
    return f"{platform.node()}: {os.cpu_count()} cores, {cpu}, Python {platform.python_version()}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="3 s runs, one round (about 40 s in all)")
    parser.add_argument("--duration", type=float, help="seconds per run (default 10, quick 3)")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 3, quick 1)")
    parser.add_argument("--concurrency", type=int, default=32, help="closed-loop connections (32)")
    parser.add_argument("--rates", default="500,1000,2000", help="pacing rates, req/s")
    parser.add_argument("--no-install", action="store_true", help="do not npm-install loadtest/autocannon")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    seconds = args.duration or (3.0 if args.quick else 10.0)
    rounds = args.rounds or (1 if args.quick else 3)
    tools = [
        Tool("netdebug", measure_netdebug),
        Tool("wrk", measure_wrk),
        Tool("loadtest", make_loadtest(npm_tool("loadtest", not args.no_install))),
        Tool("autocannon", make_autocannon(npm_tool("autocannon", not args.no_install))),
    ]
    started = datetime.datetime.now(datetime.UTC)
    load_before = os.getloadavg()
    results: dict[str, list[float]] = {t.name: [] for t in tools}
    with target() as (url, what):
        for _ in range(rounds):
            for tool in tools:
                value = tool.measure(url, args.concurrency, seconds)
                if value is not None:
                    results[tool.name].append(value)
        pace = [pacing(url, int(r), seconds) for r in args.rates.split(",")]
    load_after = os.getloadavg()

    medians = {k: statistics.median(v) if v else None for k, v in results.items()}
    base = medians["netdebug"]
    print(f"### Prober benchmark — {started:%Y-%m-%d %H:%M} UTC")
    print(f"\nMachine: {machine()}; load average {load_before[0]:.2f} before, {load_after[0]:.2f} after.")
    print(
        f"Target: {what}; clients pinned to core 0; {rounds} interleaved round(s) of {seconds:g} s; "
        f"{args.concurrency} connections.\n"
    )
    print("| client (one core, closed loop) | req/s (median) | rounds | vs netdebug |")
    print("|---|---:|---|---:|")
    for name, value in medians.items():
        rel = f"{value / base:.2f}x" if value and base else "-"
        shown = f"{value:,.0f}" if value else "not available"
        rounds_txt = ", ".join(f"{v:,.0f}" for v in results[name]) or "-"
        print(f"| {name} | {shown} | {rounds_txt} | {rel} |")
    print("\n| netdebug --rps | achieved req/s | error | lateness p50 / p99 / max (ms) | dropped |")
    print("|---:|---:|---:|---|---:|")
    for p in pace:
        late = p["lateness_ms"]
        assert isinstance(late, dict)
        print(
            f"| {p['target_rps']:,} | {p['achieved_rps']:,} | {p['error_pct']:+.2f}% | "
            f"{late['p50']} / {late['p99']} / {late['max']} | {p['dropped']} |"
        )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "started": started.isoformat(),
                    "machine": machine(),
                    "target": what,
                    "throughput": results,
                    "pacing": pace,
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
