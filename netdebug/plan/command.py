"""`netdebug plan FILE.yaml`: load the plan, wait for the sidecar, run the steps, write text, JSON
and JUnit, quit the sidecar.

The exit code is the worst step's (severity order in plan/execute.py); a bad plan exits 2 before any
step runs. The sidecar quit at the end never changes the exit code.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, TextIO

from netdebug import diag, sidecar
from netdebug.context import Context, ExitStatus, UsageError
from netdebug.picture.command import prepare_report, write_report
from netdebug.plan.execute import (
    PlanResult,
    Prepared,
    ProbeBackend,
    StepRunner,
    default_probe_backend,
    execute,
    prepare,
    skipped_result,
)
from netdebug.plan.junit import junit_suite, render_junit
from netdebug.plan.model import Plan, PlanError
from netdebug.plan.parse import parse_plan, parse_var_flags
from netdebug.plan.report import LiveEvents, PlainEvents, final_line, result_json
from netdebug.sidecar import POLICIES, Policy


@dataclass(frozen=True)
class PlanConfig:
    path: str
    overrides: Mapping[str, str]
    output: Literal["text", "json"]
    junit: str | None
    report: str | None  # --report FILE.html: the HTML picture of every probe step
    wait_sidecar: Policy
    quit_sidecar: Policy
    sidecar_timeout: float
    in_job: bool
    endpoints: sidecar.SidecarEndpoints
    proxy: str | None = None  # --proxy; None: from the environment, as curl reads it
    noproxy: str | None = None


PLAN_EPILOG = """the plan's exit code is the worst step's, by severity (least to most):
  0 pass < 3 inconclusive < 1 fail < 4 unreachable/error < 2 usage < 130 interrupted
a bad plan (missing file, bad YAML, unknown step kind, undefined variable) exits 2 before any step runs;
the sidecar quit at the end never changes the exit code.

"""


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    parser.epilog = PLAN_EPILOG + (parser.epilog or "")
    parser.add_argument("file", metavar="FILE.yaml", help="the plan (see docs/netdebug-plan.md)")
    parser.add_argument(
        "--var",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="set a plan variable (repeatable); beats env NETDEBUG_VAR_<NAME>, which beats the plan's "
        "vars: (the default)",
    )
    parser.add_argument(
        "--output",
        choices=["text", "json"],
        default=None,
        help="report format (env NETDEBUG_OUTPUT; default text)",
    )
    parser.add_argument(
        "--junit", metavar="FILE", help="also write a JUnit XML report (env NETDEBUG_JUNIT; default none)"
    )
    choices = "{" + ",".join(POLICIES) + "}"
    parser.add_argument(
        "--report",
        metavar="FILE.html",
        help="also write the HTML picture of every probe step (env NETDEBUG_REPORT; default none)",
    )
    parser.add_argument(
        "--wait-sidecar",
        default=None,
        metavar=choices,
        help="wait for the sidecar before the first step: auto = when one answers or the pod's "
        "annotations say it is injected (env NETDEBUG_WAIT_SIDECAR, default auto; yes/no still work)",
    )
    parser.add_argument(
        "--quit-sidecar",
        default=None,
        metavar=choices,
        help="ask the sidecar to exit at the very end: auto = in a Job, when a sidecar was seen and it "
        "is not a native sidecar (env NETDEBUG_QUIT_SIDECAR, default auto; yes/no still work)",
    )
    parser.add_argument(
        "--proxy",
        default=None,
        metavar="URL",
        help="HTTP proxy for the probe and http steps ('' = none); default: http_proxy/https_proxy/"
        "all_proxy as curl reads them (env NETDEBUG_PROXY)",
    )
    parser.add_argument(
        "--noproxy",
        default=None,
        metavar="LIST",
        help="hosts, domains, IPs/CIDRs that bypass the proxy, '*' for all "
        "(env NETDEBUG_NOPROXY; default: no_proxy/NO_PROXY)",
    )
    parser.add_argument(
        "--sidecar-timeout",
        default=None,
        help="seconds to wait for the sidecar "
        f"(env NETDEBUG_SIDECAR_TIMEOUT, default {sidecar.DEFAULT_WAIT_TIMEOUT:g})",
    )
    parser.add_argument(
        "--job",
        action="store_true",
        default=None,
        help="we run as a Kubernetes Job: enables the auto sidecar quit (env NETDEBUG_IN_JOB=1; default off)",
    )


def _policy(flag: str | None, env: Mapping[str, str], name: str, flag_name: str) -> Policy:
    value = flag if flag is not None else env.get(name) or "auto"
    try:
        return sidecar.parse_policy(value, name if flag is None else flag_name)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def config_from_args(args: argparse.Namespace, env: Mapping[str, str]) -> PlanConfig:
    output = args.output or env.get("NETDEBUG_OUTPUT") or "text"
    if output not in ("text", "json"):
        raise UsageError(f"NETDEBUG_OUTPUT={output!r}: expected text or json")
    timeout_text = args.sidecar_timeout or env.get("NETDEBUG_SIDECAR_TIMEOUT")
    timeout = (
        sidecar.DEFAULT_WAIT_TIMEOUT
        if timeout_text is None
        else diag.parse_seconds(timeout_text, "--sidecar-timeout")
    )
    in_job = bool(args.job) or sidecar.in_job_from_env(env)
    return PlanConfig(
        path=args.file,
        overrides=parse_var_flags(args.var),
        output="json" if output == "json" else "text",
        junit=args.junit or env.get("NETDEBUG_JUNIT") or None,
        report=args.report or env.get("NETDEBUG_REPORT") or None,
        wait_sidecar=_policy(args.wait_sidecar, env, "NETDEBUG_WAIT_SIDECAR", "--wait-sidecar"),
        quit_sidecar=_policy(args.quit_sidecar, env, "NETDEBUG_QUIT_SIDECAR", "--quit-sidecar"),
        proxy=args.proxy if args.proxy is not None else env.get("NETDEBUG_PROXY"),
        noproxy=args.noproxy if args.noproxy is not None else env.get("NETDEBUG_NOPROXY"),
        sidecar_timeout=timeout,
        in_job=in_job,
        endpoints=sidecar.SidecarEndpoints.from_env(env),
    )


def load_plan(config: PlanConfig, env: Mapping[str, str]) -> Plan:
    path = Path(config.path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PlanError(f"{config.path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PlanError(f"{config.path}: cannot read: {exc}") from None
    return parse_plan(text, config.path, config.overrides, env)


@dataclass
class SidecarLog:
    mode: sidecar.SidecarMode = "unknown"
    detected: bool = False
    waited: bool = False
    ready: bool | None = None
    wait_message: str = ""
    quit: bool = False
    quit_message: str = ""

    def to_json(self) -> dict[str, object]:
        return {
            "mode": self.mode,
            "detected": self.detected,
            "waited": self.waited,
            "ready": self.ready,
            "wait": self.wait_message,
            "quit": self.quit,
            "quit_message": self.quit_message,
        }


async def wait_for_sidecar(config: PlanConfig, env: Mapping[str, str], log: SidecarLog) -> bool:
    """False when the plan must not run because the sidecar never became ready."""
    log.mode, _ = sidecar.mode_from_env(env)
    if config.wait_sidecar == "never":
        log.wait_message = "not waiting for a sidecar (--wait-sidecar never)"
        return True
    log.detected = await sidecar.detect(config.endpoints)
    # Classic sidecars may start after us; the injector's annotation tells us one is coming.
    if not sidecar.should_wait(config.wait_sidecar, log.detected, log.mode):
        log.wait_message = "no sidecar detected; not waiting"
        return True
    log.waited = True
    started = time.monotonic()
    log.ready = await sidecar.wait_ready(config.endpoints, config.sidecar_timeout)
    if log.ready:
        log.detected = True
        log.wait_message = f"sidecar ready after {time.monotonic() - started:.1f}s"
        return True
    where = config.endpoints.health_url
    log.wait_message = f"sidecar not ready after {config.sidecar_timeout:g}s ({where}); no step was run"
    return False


def should_quit(config: PlanConfig, log: SidecarLog) -> tuple[bool, str]:
    """Decide the quit at the end, with the reason (pure)."""
    return sidecar.should_quit(
        config.quit_sidecar, in_job=config.in_job, detected=log.detected, mode=log.mode
    )


async def quit_at_end(config: PlanConfig, log: SidecarLog) -> None:
    if config.quit_sidecar == "auto" and not log.detected and config.in_job and log.mode != "native":
        log.detected = await sidecar.detect(config.endpoints)
    decision, reason = should_quit(config, log)
    if decision:
        log.quit = True
        log.quit_message = await sidecar.quit_sidecar(config.endpoints)
    else:
        log.quit_message = reason


async def run_with_sidecar(
    plan: Plan,
    prepared: Prepared,
    config: PlanConfig,
    ctx: Context,
    probe_backend: Callable[[], ProbeBackend],
    log: SidecarLog,
) -> PlanResult:
    """Wait for the sidecar, run the plan, quit the sidecar (even after Ctrl-C)."""
    text = config.output == "text"
    try:
        ready = await wait_for_sidecar(config, ctx.env, log)
        if text and (log.waited or not ready):
            ctx.out.write(log.wait_message + "\n")
        if not ready:
            skipped = tuple(skipped_result(step, "sidecar not ready") for step in plan.steps)
            return PlanResult(plan, skipped, ExitStatus.UNREACHABLE, 0.0, datetime.now(UTC).isoformat())
        runner = StepRunner(prepared, probe_backend)
        if text and ctx.out_is_tty:
            with LiveEvents(ctx.out) as events:
                return await execute(plan, runner, events=events)
        return await execute(plan, runner, events=PlainEvents(ctx.out) if text else None)
    finally:
        # The quit never changes the exit status, whatever happens to it.
        with contextlib.suppress(Exception):
            await quit_at_end(config, log)


def run_plan(
    config: PlanConfig,
    ctx: Context,
    probe_backend: Callable[[], ProbeBackend] = default_probe_backend,
) -> int:
    plan = load_plan(config, ctx.env)
    # --proxy/--noproxy reach the probe steps as the prober's own environment variables (a step's
    # `proxy:` still wins) and the http steps through prepare().
    env = dict(ctx.env)
    if config.proxy is not None:
        env["NETDEBUG_PROXY"] = config.proxy
    if config.noproxy is not None:
        env["NETDEBUG_NOPROXY"] = config.noproxy
    prepared = prepare(plan, env, probe_backend)
    html_report = prepare_report(config.report)
    log = SidecarLog()
    result = asyncio.run(run_with_sidecar(plan, prepared, config, ctx, probe_backend, log))
    if config.junit:
        try:
            Path(config.junit).write_text(render_junit([junit_suite(result)]), encoding="utf-8")
        except OSError as exc:
            ctx.err.write(f"netdebug plan: cannot write --junit {config.junit}: {exc}\n")
    write_report(html_report, result_json(result, log.to_json()), ctx.err, "plan")
    if config.output == "text":
        if log.quit or config.in_job:
            ctx.out.write(log.quit_message + "\n")
        ctx.out.write(final_line(result) + "\n")
    else:
        ctx.out.write(json.dumps(result_json(result, log.to_json()), default=str) + "\n")
    return result.status


def run(args: argparse.Namespace, ctx: Context) -> int:
    return run_plan(config_from_args(args, ctx.env), ctx)


def main_impl(
    argv: Sequence[str],
    env: Mapping[str, str],
    out: TextIO,
    err: TextIO,
    probe_backend: Callable[[], ProbeBackend] = default_probe_backend,
) -> int:
    """The command with an injectable prober, for tests; errors are mapped as netdebug.cli does."""
    parser = argparse.ArgumentParser(prog="netdebug plan")
    add_arguments(parser, "plan")
    try:
        args = parser.parse_args(list(argv))
    except SystemExit as exc:
        return int(exc.code) if isinstance(exc.code, int) else ExitStatus.USAGE
    ctx = Context(env=env, out=out, err=err, out_is_tty=out.isatty())
    try:
        return run_plan(config_from_args(args, env), ctx, probe_backend)
    except UsageError as exc:
        err.write(f"netdebug plan: error: {exc}\n")
        return ExitStatus.USAGE
