"""`netdebug probe URL`: paced requests, versions tallied, the split tested, the path fingerprinted.

The API used by `netdebug plan` (a cross-team contract):
    probe_config_from_mapping(options, env) -> ProbeConfig      (raises UsageError)
    await run_probe(config, progress=None) -> ProbeReport       (.exit_status, .to_json(), .summary_line())
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import random
import signal
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

import httpx

from netdebug import sidecar
from netdebug.context import Context, ExitStatus, UsageError
from netdebug.picture.command import prepare_report, write_report
from netdebug.probe.client import ClientOptions, Prober, Sample
from netdebug.probe.config import ENV_VARS, ProbeConfig, build_probe_config
from netdebug.probe.fingerprint import KINDS
from netdebug.probe.rate import bounded, fixed_offsets, poisson_offsets
from netdebug.probe.report import (
    ProbeReport,
    ProbeSnapshot,
    Tally,
    build_report,
    judge_tally,
    live_view,
    render_json,
    render_rich,
    render_text,
    request_line,
)
from netdebug.probe.runner import RunOutcome, Timing, run_closed, run_open

__all__ = [
    "ProbeConfig",
    "ProbeReport",
    "ProbeSnapshot",
    "add_arguments",
    "probe_config_from_mapping",
    "run",
    "run_probe",
]

# Interim looks for --early-stop: at every tenth of -n (alpha is split over them; see stats.py).
EARLY_STOP_LOOKS = 10
PROGRESS_INTERVAL = 0.25  # 4 Hz: the live view never re-renders per request


def probe_config_from_mapping(options: Mapping[str, object], env: Mapping[str, str]) -> ProbeConfig:
    """A plan step's `probe:` mapping (long flag names with `_`) -> ProbeConfig; raises UsageError."""
    known = set(ENV_VARS) | {"expect_from"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise UsageError(f"unknown probe option(s): {', '.join(unknown)}")
    values = dict(options)
    # Plans run unattended: no live view unless asked for.
    values.setdefault("live", "never")
    return build_probe_config(values, env)


def _client_options(config: ProbeConfig) -> ClientOptions:
    in_flight = config.concurrency if config.concurrency is not None else config.max_in_flight
    return ClientOptions(
        url=config.url,
        method=config.method,
        headers=config.headers,
        body=config.body,
        http2=config.http2,
        insecure=config.insecure,
        cacert=config.cacert,
        cert=config.cert,
        key=config.key,
        timeout=config.timeout,
        new_connection=config.new_connection,
        resolve=config.resolve,
        connect_to=config.connect_to,
        max_connections=max(1, in_flight),
        by=config.by,
        proxy=config.proxy,
    )


def _early_stopper(config: ProbeConfig, tally: Tally) -> Callable[[], bool] | None:
    if not config.early_stop or config.expected is None or config.requests is None:
        return None
    total = config.requests
    step = max(1, math.ceil(total / EARLY_STOP_LOOKS))

    def should_stop() -> bool:
        if tally.completed % step != 0 or tally.completed >= total:
            return False
        return judge_tally(config, tally, looks=EARLY_STOP_LOOKS).verdict in ("pass", "fail")

    return should_stop


async def run_probe(
    config: ProbeConfig,
    progress: Callable[[ProbeSnapshot], None] | None = None,
    *,
    halt: asyncio.Event | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    requests_out: IO[bytes] | None = None,
    notes: Callable[[str], None] | None = None,
) -> ProbeReport:
    """Run one probe and judge it. `halt` set (Ctrl-C) -> partial report with exit status 130."""
    if config.wait_sidecar != "never" and transport is None:
        detected = await sidecar.detect(config.sidecar)
        mode = sidecar.mode_from_file(config.pod_annotations_file)
        if sidecar.should_wait(config.wait_sidecar, detected, mode):
            ready = await sidecar.wait_ready(config.sidecar, config.sidecar_timeout)
            if notes is not None:
                notes(
                    "sidecar ready"
                    if ready
                    else f"sidecar not ready after {config.sidecar_timeout:g}s; probing anyway"
                )

    try:
        prober = Prober(_client_options(config), transport=transport)
    except (OSError, ValueError) as exc:
        raise UsageError(f"TLS files: {exc}") from None
    tally = Tally()
    lines: list[bytes] = []
    flush_every = 1000

    def on_done(timing: Timing, sample: Sample) -> None:
        tally.record(timing, sample)
        if requests_out is not None:
            lines.append(request_line(timing, sample))
            if len(lines) >= flush_every:
                requests_out.write(b"".join(lines))
                lines.clear()

    loop = asyncio.get_running_loop()
    clock = time.perf_counter
    start = clock()
    expected = config.expected_map
    ticker: asyncio.Task[None] | None = None
    if progress is not None:

        async def tick() -> None:
            while True:
                progress(tally.snapshot(clock() - start, config.requests, expected))
                await asyncio.sleep(PROGRESS_INTERVAL)

        ticker = loop.create_task(tick())

    should_stop = _early_stopper(config, tally)
    outcome: RunOutcome
    try:
        if config.concurrency is not None:
            outcome = await run_closed(
                prober,
                on_done,
                concurrency=config.concurrency,
                max_requests=config.requests,
                duration=config.duration,
                clock=clock,
                halt=halt,
                should_stop=should_stop,
            )
        else:
            assert config.rps is not None
            rng = random.Random(config.seed)
            offsets = poisson_offsets(config.rps, rng) if config.poisson else fixed_offsets(config.rps)
            outcome = await run_open(
                prober,
                bounded(offsets, config.requests, config.duration),
                on_done,
                max_in_flight=config.max_in_flight,
                clock=clock,
                sleep=asyncio.sleep,
                halt=halt,
                should_stop=should_stop,
                drain_timeout=config.timeout + 1.0,
            )
    finally:
        if ticker is not None:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker
        await prober.aclose()
        if requests_out is not None and lines:
            requests_out.write(b"".join(lines))
    if progress is not None:
        progress(tally.snapshot(clock() - start, config.requests, expected))
    looks = EARLY_STOP_LOOKS if should_stop is not None else 1
    return build_report(config, tally, outcome, looks=looks)


# ---------------------------------------------------------------------------------------------
# CLI edge


POLICY_CHOICES = "{auto,always,never}"


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    parser.description = (
        "Send paced requests to URL, tally which version answered, test the split against --expect, "
        "and fingerprint the path (client sidecar, gateway, bypass, local reply). Every flag can also "
        "be set by NETDEBUG_<FLAG> (e.g. NETDEBUG_RPS=20); a flag wins over the environment."
    )
    a = parser.add_argument
    a(
        "url",
        nargs="?",
        metavar="URL",
        help="target, e.g. http://echo-service/echo (env NETDEBUG_URL; required)",
    )
    load = parser.add_argument_group("load")
    load.add_argument("-n", "--requests", type=str, help="stop after N requests (default 500 unless -d)")
    load.add_argument(
        "-d", "--duration", type=str, help="stop after this long: 10, 10s, 2m, 500ms (default none)"
    )
    load.add_argument("--rps", type=str, help="open model: requests per second, fractional ok (default 50)")
    load.add_argument(
        "--poisson", action="store_const", const=True, help="Poisson arrivals at --rps (default off)"
    )
    load.add_argument("--seed", type=str, help="random seed for --poisson (default random)")
    load.add_argument(
        "-c", "--concurrency", type=str, help="closed model: N requests back to back (default off)"
    )
    load.add_argument(
        "--max-in-flight", type=str, help="open model: drop (and count) beyond this (default 1000)"
    )
    req = parser.add_argument_group("request")
    req.add_argument("-X", "--method", type=str, help="HTTP method (default GET; POST with --data)")
    req.add_argument("--data", type=str, help="request body (default none)")
    req.add_argument(
        "-H",
        "--header",
        dest="headers",
        action="append",
        metavar="'NAME: VALUE'",
        help="extra header, repeatable (e.g. -H 'host: echo.local'; default: host, user-agent, accept)",
    )
    req.add_argument(
        "--http2",
        action="store_const",
        const=True,
        help="HTTP/2: ALPN h2, h2c prior knowledge on http:// (default HTTP/1.1)",
    )
    req.add_argument(
        "-k",
        "--insecure",
        action="store_const",
        const=True,
        help="do not verify the server certificate (default: verify)",
    )
    req.add_argument("--cacert", type=str, help="CA bundle to verify the server (default the system's)")
    req.add_argument("--cert", type=str, help="client certificate (PEM; may include the key; default none)")
    req.add_argument("--key", type=str, help="client key (PEM; default: in --cert)")
    req.add_argument("--timeout", type=str, help="per request, name resolution included (default 5s)")
    req.add_argument(
        "--new-connection",
        action="store_const",
        const=True,
        help="a new connection per request (kube-proxy balances per connection; default keep-alive)",
    )
    req.add_argument(
        "--resolve",
        action="append",
        metavar="HOST:PORT:ADDR",
        help="connect HOST:PORT to ADDR, as curl (repeatable; default: DNS)",
    )
    req.add_argument(
        "--connect-to",
        action="append",
        metavar="H1:P1:H2:P2",
        help="connect H1:P1 to H2:P2, as curl (repeatable; default: the URL's)",
    )
    req.add_argument(
        "--proxy",
        type=str,
        metavar="URL",
        help="HTTP proxy, e.g. http://127.0.0.1:15001 ('' = none). Default: http_proxy for http://, "
        "https_proxy/HTTPS_PROXY for https://, then all_proxy/ALL_PROXY, as curl (not HTTP_PROXY)",
    )
    req.add_argument(
        "--noproxy",
        type=str,
        metavar="LIST",
        help="hosts/domains/IPs/CIDRs that bypass the proxy, '*' for all (default no_proxy/NO_PROXY)",
    )
    verdict = parser.add_argument_group("verdict")
    verdict.add_argument(
        "--expect", type=str, help="expected relative weights, e.g. v1=75,v2=25 (default none)"
    )
    verdict.add_argument(
        "--expect-from",
        type=str,
        metavar="YAML|DIR",
        help="weights of the VirtualService/HTTPRoute rule matching the URL's host and path, from a YAML "
        "file, a directory of them, or a kustomization (rendered with kubectl kustomize; default none)",
    )
    verdict.add_argument(
        "--by",
        type=str,
        help="attribution: header:NAME | json:PATH | regex:PATTERN | pod "
        "(default x-echo-version, else the echo JSON's pod.version)",
    )
    verdict.add_argument("--tolerance", type=str, help="allowed deviation in percentage points (default 5)")
    verdict.add_argument(
        "--alpha", type=str, help="fail when the chi-square p-value is below (default 0.001)"
    )
    verdict.add_argument("--confidence", type=str, help="interval confidence for pass (default 0.95)")
    verdict.add_argument(
        "--early-stop",
        action="store_const",
        const=True,
        help="stop at a tenth-of-n look once pass/fail is clear (sequentially valid; default off)",
    )
    verdict.add_argument(
        "--max-error-rate", type=str, help="exit 4 above this failed fraction (default 0.05)"
    )
    verdict.add_argument(
        "--require-path",
        action="append",
        metavar="KIND",
        help=f"fail unless every upstream answer took this path: {', '.join(KINDS)} (default any)",
    )
    out = parser.add_argument_group("output")
    out.add_argument("-o", "--output", type=str, metavar="{text,json}", help="report format (default text)")
    out.add_argument(
        "--output-requests", type=str, metavar="FILE", help="one JSON line per request (default none)"
    )
    out.add_argument(
        "--live",
        type=str,
        metavar=POLICY_CHOICES,
        help="live view: auto = on a terminal with text output (default auto)",
    )
    out.add_argument(
        "--report", type=str, metavar="FILE.html", help="also write the HTML traffic picture (default none)"
    )
    side = parser.add_argument_group("sidecar (yes/no are deprecated spellings of always/never)")
    side.add_argument(
        "--wait-sidecar",
        type=str,
        metavar=POLICY_CHOICES,
        help="wait for the sidecar before the first request: auto = when one answers or the pod's "
        "annotations say it is injected (default auto)",
    )
    side.add_argument("--sidecar-timeout", type=str, help="wait this long for the sidecar (default 60s)")
    side.add_argument(
        "--quit-sidecar",
        type=str,
        metavar=POLICY_CHOICES,
        help="POST quitquitquit at the end: auto = in a Job (--job), when a sidecar was seen and it is "
        "not a native sidecar (default auto)",
    )
    side.add_argument(
        "--job",
        action="store_const",
        const=True,
        help="we run as a Kubernetes Job: enables the auto quit (env NETDEBUG_IN_JOB=1; default off)",
    )


def _values(args: argparse.Namespace) -> dict[str, object]:
    values = {k: v for k, v in vars(args).items() if k not in ("command", "traceback")}
    if values.get("require_path"):
        items = values["require_path"]
        assert isinstance(items, list)
        values["require_path"] = [k for item in items for k in str(item).split(",")]
    return values


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:  # uvloop is optional: the pacer is exact on the stock loop too, only slower
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def run(args: argparse.Namespace, ctx: Context) -> int:
    config = build_probe_config(_values(args), ctx.env)
    live = config.live == "always" or (config.live == "auto" and ctx.out_is_tty and config.output == "text")
    html_report = prepare_report(config.report)
    requests_file: IO[bytes] | None = None
    if config.output_requests:
        try:
            requests_file = Path(config.output_requests).open("wb")  # noqa: SIM115 - closed below
        except OSError as exc:
            raise UsageError(
                f"--output-requests: cannot write {config.output_requests}: {exc.strerror}"
            ) from None
    try:
        report = _run_in_loop(config, ctx, live, requests_file)
    finally:
        if requests_file is not None:
            requests_file.close()
    if config.output == "json":
        render_json(report, ctx.out)
    elif ctx.out_is_tty:
        render_rich(report, ctx.out)
    else:
        render_text(report, ctx.out)
    # Once per reader: a text report on a terminal already shows the error; otherwise (JSON, or a
    # report going to a file or a pipe) one line on stderr says why the exit code is 4.
    shown = ctx.out_is_tty and config.output == "text"
    if report.exit_status == ExitStatus.UNREACHABLE and report.message and not shown:
        ctx.err.write(f"netdebug probe: {report.message}\n")
    write_report(html_report, report.to_json(), ctx.err, "probe")
    _quit_at_end(config, ctx)
    return int(report.exit_status)


def _quit_at_end(config: ProbeConfig, ctx: Context) -> None:
    """--quit-sidecar, as `netdebug plan` decides it. It never changes the exit code."""
    mode = sidecar.mode_from_file(config.pod_annotations_file)
    detected = False
    if config.quit_sidecar == "auto" and config.in_job and mode != "native":
        detected = _run_quietly(sidecar.detect(config.sidecar))
    decision, reason = sidecar.should_quit(
        config.quit_sidecar, in_job=config.in_job, detected=detected, mode=mode
    )
    if decision:
        ctx.err.write(_run_quietly(sidecar.quit_sidecar(config.sidecar)) + "\n")
    elif config.in_job:
        ctx.err.write(reason + "\n")


def _run_quietly(coro: Any) -> Any:
    with asyncio.Runner(loop_factory=_new_loop) as runner:
        return runner.run(coro)


def _run_in_loop(
    config: ProbeConfig, ctx: Context, live: bool, requests_file: IO[bytes] | None
) -> ProbeReport:
    latest: list[ProbeSnapshot] = []

    def progress(snap: ProbeSnapshot) -> None:
        latest[:] = [snap]

    async def main() -> ProbeReport:
        halt = asyncio.Event()
        loop = asyncio.get_running_loop()
        installed = False
        # Signal handlers can only be installed from the main thread of a Unix event loop; elsewhere
        # (in-process callers, other loops) Ctrl-C still arrives as KeyboardInterrupt, handled below.
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            # Ctrl-C: stop launching, cancel what is in flight, print the partial report, exit 130.
            loop.add_signal_handler(signal.SIGINT, halt.set)
            installed = True
        try:
            return await run_probe(
                config,
                progress if live else None,
                halt=halt,
                requests_out=requests_file,
                notes=lambda msg: print(f"netdebug probe: {msg}", file=ctx.err),
            )
        finally:
            if installed:
                loop.remove_signal_handler(signal.SIGINT)

    if not live:
        with asyncio.Runner(loop_factory=_new_loop) as runner:
            return runner.run(main())
    from rich.console import Console
    from rich.live import Live

    console = Console(file=ctx.err if ctx.err.isatty() else ctx.out)
    with (
        Live(
            live_view(lambda: latest[0] if latest else None),
            console=console,
            refresh_per_second=4,
            transient=True,
        ),
        asyncio.Runner(loop_factory=_new_loop) as runner,
    ):
        return runner.run(main())


if __name__ == "__main__":  # pragma: no cover - `python -m netdebug probe` is the supported way
    sys.exit(2)
    _ = time
