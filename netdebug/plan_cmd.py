"""`netdebug plan FILE.yaml`: run a plan's steps in order, with repeats, and report.

Layers, so each can be tested alone:
- `execute(plan, run_step, clock=, sleep=, events=)` drives steps and repeats; the step runner, clock
  and sleep are injected (tests use fakes). It never touches the network itself.
- `StepRunner` is the production runner: probe via netdebug.probe.command (injectable), http via httpx,
  dns/tcp/tls via netdebug.diag.
- `run_command` adds the sidecar lifecycle around the plan and writes text, JSON and JUnit.

Exit code: the worst step's, in this order of severity (least to most):
    0 pass < 3 inconclusive < 1 fail < 4 unreachable/error < 2 usage < 130 interrupted
A definite failure outranks "not enough data"; a check that could not run at all outranks a check
that ran and failed (its environment is broken, so other results are suspect). The sidecar quit at
the end never changes the exit code.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import json
import ssl
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Protocol, TextIO

from netdebug import diag, sidecar
from netdebug.context import Context, ExitStatus, UsageError
from netdebug.junit import JUnitCase, JUnitSuite, render_junit
from netdebug.plan import (
    DnsSpec,
    HttpSpec,
    Plan,
    PlanError,
    ProbeSpec,
    Step,
    TcpSpec,
    TlsSpec,
    check_http,
    parse_plan,
    parse_var_flags,
)
from netdebug.probe.fingerprint import is_local_reply

SEVERITY: tuple[ExitStatus, ...] = (
    ExitStatus.OK,
    ExitStatus.INCONCLUSIVE,
    ExitStatus.MISMATCH,
    ExitStatus.UNREACHABLE,
    ExitStatus.USAGE,
    ExitStatus.INTERRUPTED,
)
STATUS_WORDS: dict[ExitStatus, str] = {
    ExitStatus.OK: "pass",
    ExitStatus.INCONCLUSIVE: "inconclusive",
    ExitStatus.MISMATCH: "fail",
    ExitStatus.UNREACHABLE: "error",
    ExitStatus.USAGE: "error",
    ExitStatus.INTERRUPTED: "interrupted",
}
Policy = Literal["auto", "always", "never"]
POLICIES: tuple[Policy, ...] = ("auto", "always", "never")
# `netdebug probe` spells the same choices auto/yes/no, and both read NETDEBUG_*_SIDECAR.
POLICY_SYNONYMS: Mapping[str, Policy] = {"yes": "always", "no": "never"}
TRUE_WORDS = {"1", "true", "yes", "on"}


def worst(statuses: Iterable[ExitStatus]) -> ExitStatus:
    return max(statuses, key=SEVERITY.index, default=ExitStatus.OK)


# ---------------------------------------------------------------------------------------------
# Executor


@dataclass(frozen=True)
class Outcome:
    """What one attempt of one step found."""

    status: ExitStatus
    summary: str
    failures: tuple[str, ...] = ()
    details: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class Attempt:
    number: int
    outcome: Outcome
    started_s: float  # from the start of the plan
    duration_s: float


@dataclass(frozen=True)
class StepResult:
    step: Step
    status: ExitStatus
    attempts: tuple[Attempt, ...]
    converged: bool
    passes_in_a_row: int
    duration_s: float
    skipped: bool = False
    skip_reason: str = ""

    @property
    def word(self) -> str:
        return "skipped" if self.skipped else STATUS_WORDS[self.status]

    @property
    def summary(self) -> str:
        if self.skipped:
            return f"not run ({self.skip_reason})"
        if self.status == ExitStatus.INTERRUPTED:
            return f"interrupted during attempt {len(self.attempts) + 1}"
        last = self.attempts[-1].outcome.summary if self.attempts else ""
        repeat = self.step.repeat
        if repeat.until_passes == 1 and repeat.max_attempts == 1:
            return last
        verdict = "converged" if self.converged else "did not converge"
        return (
            f"{verdict}: {self.passes_in_a_row}/{repeat.until_passes} passes in a row after "
            f"{len(self.attempts)}/{repeat.max_attempts} attempts; last: {last}"
        )


@dataclass(frozen=True)
class PlanResult:
    plan: Plan
    steps: tuple[StepResult, ...]
    status: ExitStatus
    duration_s: float
    started_at: str
    interrupted: bool = False


Progress = Callable[[str], None]
RunStep = Callable[[Step, Progress], Awaitable[Outcome]]


class Events(Protocol):
    def step_started(self, step: Step, total: int) -> None: ...

    def attempt_started(self, step: Step, number: int) -> None: ...

    def progress(self, step: Step, text: str) -> None: ...

    def attempt_finished(self, step: Step, attempt: Attempt) -> None: ...

    def step_finished(self, result: StepResult, total: int) -> None: ...


class NoEvents:
    def step_started(self, step: Step, total: int) -> None:
        pass

    def attempt_started(self, step: Step, number: int) -> None:
        pass

    def progress(self, step: Step, text: str) -> None:
        pass

    def attempt_finished(self, step: Step, attempt: Attempt) -> None:
        pass

    def step_finished(self, result: StepResult, total: int) -> None:
        pass


def skipped_result(step: Step, reason: str) -> StepResult:
    return StepResult(step, ExitStatus.OK, (), False, 0, 0.0, skipped=True, skip_reason=reason)


def _progress_of(events: Events, step: Step) -> Progress:
    def progress(text: str) -> None:
        events.progress(step, text)

    return progress


async def _attempt(run_step: RunStep, step: Step, progress: Progress) -> Outcome:
    try:
        return await run_step(step, progress)
    except UsageError as exc:
        return Outcome(ExitStatus.USAGE, str(exc), (str(exc),))
    except Exception as exc:  # one broken step must not hide the others' results
        message = f"{type(exc).__name__}: {exc}"
        return Outcome(ExitStatus.UNREACHABLE, message, (message,))


async def execute(
    plan: Plan,
    run_step: RunStep,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    events: Events | None = None,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> PlanResult:
    """Run every step (a failing step does not stop the plan); Ctrl-C stops it with a partial result.

    Repeat: attempts run `interval` s apart until `until_passes` attempts in a row pass, or until
    `max_attempts`, or as soon as the remaining attempts cannot reach `until_passes` any more.
    A step that did not converge gets the status of its latest non-passing attempt.
    """
    ev = events or NoEvents()
    started_at = now().isoformat()
    plan_start = clock()
    results: list[StepResult] = []
    interrupted = False
    total = len(plan.steps)
    for step in plan.steps:
        if interrupted:
            results.append(skipped_result(step, "interrupted"))
            continue
        ev.step_started(step, total)
        step_start = clock()
        attempts: list[Attempt] = []
        in_a_row = 0
        last_failure = ExitStatus.OK
        repeat = step.repeat
        for number in range(1, repeat.max_attempts + 1):
            try:
                if number > 1 and repeat.interval > 0:
                    await sleep(repeat.interval)
                ev.attempt_started(step, number)
                attempt_start = clock()
                outcome = await _attempt(run_step, step, _progress_of(ev, step))
            except asyncio.CancelledError:
                interrupted = True
                break
            attempt = Attempt(number, outcome, attempt_start - plan_start, clock() - attempt_start)
            attempts.append(attempt)
            ev.attempt_finished(step, attempt)
            if outcome.status == ExitStatus.OK:
                in_a_row += 1
            else:
                in_a_row = 0
                last_failure = outcome.status
            if in_a_row >= repeat.until_passes:
                break
            if in_a_row + (repeat.max_attempts - number) < repeat.until_passes:
                break  # cannot converge any more: do not waste the remaining attempts
        converged = in_a_row >= repeat.until_passes
        if interrupted:
            status = ExitStatus.INTERRUPTED
        else:
            status = ExitStatus.OK if converged else (last_failure if attempts else ExitStatus.UNREACHABLE)
        result = StepResult(step, status, tuple(attempts), converged, in_a_row, clock() - step_start)
        results.append(result)
        ev.step_finished(result, total)
    status = worst(r.status for r in results if not r.skipped)
    return PlanResult(plan, tuple(results), status, clock() - plan_start, started_at, interrupted)


# ---------------------------------------------------------------------------------------------
# Production step runners


class ProbeReportLike(Protocol):
    @property
    def exit_status(self) -> ExitStatus: ...

    def to_json(self) -> dict[str, object]: ...

    def summary_line(self) -> str: ...


@dataclass(frozen=True)
class ProbeBackend:
    """The prober's plan API (netdebug.probe.command), injectable for tests."""

    config_from_mapping: Callable[[Mapping[str, object], Mapping[str, str]], object]
    run: Callable[[Any, Callable[[Any], None] | None], Awaitable[ProbeReportLike]]


def default_probe_backend() -> ProbeBackend:
    module: Any = importlib.import_module("netdebug.probe.command")
    return ProbeBackend(config_from_mapping=module.probe_config_from_mapping, run=module.run_probe)


def snapshot_text(snapshot: object) -> str:
    """One line of the prober's progress snapshot (done/planned, rate, running split, errors)."""
    done = getattr(snapshot, "done", None)
    if not isinstance(done, int):
        return ""
    planned = getattr(snapshot, "planned", None)
    parts = [f"{done}/{planned} requests" if planned else f"{done} requests"]
    rate = getattr(snapshot, "rate", None)
    if isinstance(rate, int | float):
        parts.append(f"{rate:.0f}/s")
    counts = getattr(snapshot, "counts", None)
    if isinstance(counts, Mapping) and counts:
        total = sum(counts.values()) or 1
        parts.append(" ".join(f"{v} {100.0 * n / total:.1f}%" for v, n in sorted(counts.items())))
    for name in ("errors", "local_replies"):
        value = getattr(snapshot, name, None)
        if isinstance(value, int) and value:
            parts.append(f"{name.replace('_', ' ')} {value}")
    return ", ".join(parts)


# The plan owns the sidecar lifecycle: its probes neither wait for nor quit the sidecar themselves
# (unless a step asks), and they never draw a live view of their own.
PROBE_DEFAULTS: Mapping[str, object] = {"wait_sidecar": "no", "quit_sidecar": "no", "live": "no"}


@dataclass
class Prepared:
    """Per-step objects built (and validated) before any step runs."""

    probe_configs: dict[int, object] = field(default_factory=dict)
    ssl_contexts: dict[int, ssl.SSLContext] = field(default_factory=dict)
    http_verify: dict[int, ssl.SSLContext | bool] = field(default_factory=dict)


def prepare(plan: Plan, env: Mapping[str, str], probe_backend: Callable[[], ProbeBackend]) -> Prepared:
    """Validate what the parser leaves to others (probe options, CA files) so a bad plan runs nothing."""
    prepared = Prepared()
    backend: ProbeBackend | None = None
    for step in plan.steps:
        spec = step.spec
        try:
            if isinstance(spec, ProbeSpec):
                backend = backend or probe_backend()
                probe_options = {**PROBE_DEFAULTS, **spec.options}
                prepared.probe_configs[step.number] = backend.config_from_mapping(probe_options, env)
            elif isinstance(spec, TlsSpec):
                options = diag.TlsOptions(spec.sni, spec.alpn, spec.insecure, spec.ca, spec.timeout)
                prepared.ssl_contexts[step.number] = diag.make_ssl_context(options)
            elif isinstance(spec, HttpSpec) and spec.url.startswith("https://"):
                if spec.insecure:
                    prepared.http_verify[step.number] = False
                else:
                    options = diag.TlsOptions(alpn=(), ca=spec.ca)
                    prepared.http_verify[step.number] = diag.make_ssl_context(options)
        except UsageError as exc:
            raise PlanError(f"{plan.source}: {step.label}: field {step.kind}: {exc}") from None
    return prepared


class StepRunner:
    def __init__(self, prepared: Prepared, probe_backend: Callable[[], ProbeBackend]) -> None:
        self.prepared = prepared
        self._backend_factory = probe_backend
        self._backend: ProbeBackend | None = None

    async def __call__(self, step: Step, progress: Progress) -> Outcome:
        spec = step.spec
        if isinstance(spec, ProbeSpec):
            return await self.probe(step, progress)
        if isinstance(spec, HttpSpec):
            return await self.http(step, spec)
        if isinstance(spec, DnsSpec):
            return await run_dns(spec)
        if isinstance(spec, TcpSpec):
            return await run_tcp(spec)
        return await run_tls(spec, self.prepared.ssl_contexts.get(step.number))

    async def probe(self, step: Step, progress: Progress) -> Outcome:
        self._backend = self._backend or self._backend_factory()
        config = self.prepared.probe_configs[step.number]
        report = await self._backend.run(config, lambda snapshot: progress(snapshot_text(snapshot)))
        status = ExitStatus(report.exit_status)
        summary = report.summary_line()
        return Outcome(status, summary, () if status == ExitStatus.OK else (summary,), report.to_json())

    async def http(self, step: Step, spec: HttpSpec) -> Outcome:
        import httpx

        verify = self.prepared.http_verify.get(step.number, True)
        started = time.perf_counter()
        try:
            async with httpx.AsyncClient(
                http2=spec.http2, verify=verify, timeout=spec.timeout, trust_env=False
            ) as client:
                response = await client.request(
                    spec.method, spec.url, headers=list(spec.headers), content=spec.body
                )
        except httpx.HTTPError as exc:
            message = f"{spec.method} {spec.url}: {type(exc).__name__}: {exc or 'no detail'}"
            return Outcome(ExitStatus.UNREACHABLE, message, (message,))
        elapsed_ms = (time.perf_counter() - started) * 1000.0
        headers = {k.lower(): v for k, v in response.headers.items()}
        body = response.text
        failures = tuple(check_http(spec.expect, response.status_code, headers, body))
        local = is_local_reply(headers)
        summary = (
            f"{response.status_code} in {elapsed_ms:.1f} ms"
            + (f", server {headers['server']}" if "server" in headers else "")
            + (", Envoy local reply" if local else "")
        )
        if failures:
            summary += "; " + "; ".join(failures)
        details: dict[str, object] = {
            "status": response.status_code,
            "http_version": response.http_version,
            "elapsed_ms": round(elapsed_ms, 3),
            "local_reply": local,
            "headers": headers,
        }
        return Outcome(ExitStatus.MISMATCH if failures else ExitStatus.OK, summary, failures, details)


def _diag_outcome(
    ok: bool, expected_ok: bool, failures: list[str], text: str, doc: dict[str, object]
) -> Outcome:
    # A check that was meant to work and could not is "unreachable"; every other miss is a failure.
    if not failures:
        status = ExitStatus.OK
    elif expected_ok and not ok:
        status = ExitStatus.UNREACHABLE
    else:
        status = ExitStatus.MISMATCH
    summary = text
    if not ok and not expected_ok and not failures:
        summary += " (as expected)"
    if failures and ok:
        summary += "; " + "; ".join(failures)
    return Outcome(status, summary, tuple(failures), doc)


async def run_dns(spec: DnsSpec) -> Outcome:
    result = await diag.resolve(spec.name, spec.timeout)
    failures = diag.check_dns(result, spec.resolves, spec.addresses)
    if result.ok:
        text = f"{spec.name} -> {', '.join(result.addresses)} in {result.duration_ms:.1f} ms"
    else:
        text = f"{spec.name} did not resolve in {result.duration_ms:.1f} ms: {result.error}"
    return _diag_outcome(result.ok, spec.resolves, failures, text, result.to_json())


async def run_tcp(spec: TcpSpec) -> Outcome:
    result = await diag.tcp_connect(diag.parse_address(spec.address), spec.timeout)
    failures = diag.check_tcp(result, spec.connects)
    if result.ok:
        text = f"connected to {result.peer} in {result.connect_ms or 0.0:.1f} ms"
    else:
        text = result.error or "connect failed"
    return _diag_outcome(result.ok, spec.connects, failures, text, result.to_json())


async def run_tls(spec: TlsSpec, ctx: ssl.SSLContext | None) -> Outcome:
    options = diag.TlsOptions(spec.sni, spec.alpn, spec.insecure, spec.ca, spec.timeout)
    result = await diag.tls_handshake(diag.parse_address(spec.address, 443), options, ctx)
    failures = diag.check_tls(result, spec.expect_alpn, spec.expect_version, spec.expect_san)
    if result.ok:
        cert = f", cert {result.cert.subject or '-'}" if result.cert else ""
        text = f"{result.version}, ALPN {result.alpn or '(none)'}, SNI {result.sni or '-'}{cert}"
        text += f", handshake {result.handshake_ms:.1f} ms"
    else:
        text = result.error or "handshake failed"
    return _diag_outcome(result.ok, True, failures, text, result.to_json())


# ---------------------------------------------------------------------------------------------
# Reports


def result_json(result: PlanResult, sidecar_log: Mapping[str, object]) -> dict[str, object]:
    return {
        "plan": result.plan.source,
        "status": STATUS_WORDS[result.status],
        "exit_code": int(result.status),
        "started_at": result.started_at,
        "duration_s": round(result.duration_s, 3),
        "interrupted": result.interrupted,
        "vars": dict(result.plan.vars),
        "sidecar": dict(sidecar_log),
        "steps": [
            {
                "number": r.step.number,
                "name": r.step.name,
                "kind": r.step.kind,
                "status": r.word,
                "exit_code": None if r.skipped else int(r.status),
                "summary": r.summary,
                "converged": r.converged,
                "passes_in_a_row": r.passes_in_a_row,
                "until_passes": r.step.repeat.until_passes,
                "max_attempts": r.step.repeat.max_attempts,
                "duration_s": round(r.duration_s, 3),
                "attempts": [
                    {
                        "attempt": a.number,
                        "status": STATUS_WORDS[a.outcome.status],
                        "exit_code": int(a.outcome.status),
                        "summary": a.outcome.summary,
                        "failures": list(a.outcome.failures),
                        "started_s": round(a.started_s, 3),
                        "duration_s": round(a.duration_s, 3),
                        "details": dict(a.outcome.details),
                    }
                    for a in r.attempts
                ],
            }
            for r in result.steps
        ],
    }


def junit_suite(result: PlanResult) -> JUnitSuite:
    cases = []
    for r in result.steps:
        log = "\n".join(
            f"attempt {a.number}: {STATUS_WORDS[a.outcome.status]} ({a.duration_s:.3f}s): {a.outcome.summary}"
            for a in r.attempts
        )
        if r.skipped:
            outcome: Literal["passed", "failure", "error", "skipped"] = "skipped"
        elif r.status == ExitStatus.OK:
            outcome = "passed"
        elif r.status in (ExitStatus.MISMATCH, ExitStatus.INCONCLUSIVE):
            outcome = "failure"
        else:
            outcome = "error"
        cases.append(
            JUnitCase(
                name=r.step.name,
                classname=f"netdebug.plan.{r.step.kind}",
                time_s=r.duration_s,
                outcome=outcome,
                message="" if outcome == "passed" else r.summary,
                failure_type="" if r.skipped else STATUS_WORDS[r.status],
                output=log,
            )
        )
    return JUnitSuite(
        name=f"netdebug plan {result.plan.source}",
        cases=cases,
        time_s=result.duration_s,
        timestamp=result.started_at,
    )


def step_line(result: StepResult, total: int) -> str:
    return f"[{result.step.number}/{total}] {result.word.upper():<12} {result.step.name}: {result.summary}"


class PlainEvents(NoEvents):
    """Plain text, one line per finished attempt of a repeated step and per finished step."""

    def __init__(self, out: TextIO) -> None:
        self.out = out

    def attempt_finished(self, step: Step, attempt: Attempt) -> None:
        if step.repeat.max_attempts > 1:
            word = STATUS_WORDS[attempt.outcome.status]
            of = f"{attempt.number}/{step.repeat.max_attempts}"
            self.out.write(f"      attempt {of} {word}: {attempt.outcome.summary}\n")
            self.out.flush()

    def step_finished(self, result: StepResult, total: int) -> None:
        self.out.write(step_line(result, total) + "\n")
        self.out.flush()


class LiveEvents(PlainEvents):
    """On a terminal: a spinner line for the running step (with the prober's progress) above which
    finished attempts and steps are printed."""

    def __init__(self, out: TextIO) -> None:
        super().__init__(out)
        from rich.console import Console

        self.console = Console(file=out, highlight=False)
        self.status = self.console.status("starting")
        self.current = ""

    def __enter__(self) -> LiveEvents:
        self.status.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.status.stop()

    def step_started(self, step: Step, total: int) -> None:
        self.current = f"[{step.number}/{total}] {step.name}"
        self.status.update(self.current)

    def attempt_started(self, step: Step, number: int) -> None:
        if step.repeat.max_attempts > 1:
            self.status.update(f"{self.current} (attempt {number}/{step.repeat.max_attempts})")

    def progress(self, step: Step, text: str) -> None:
        if text:
            self.status.update(f"{self.current}: {text}")

    def attempt_finished(self, step: Step, attempt: Attempt) -> None:
        if step.repeat.max_attempts > 1:
            word = STATUS_WORDS[attempt.outcome.status]
            self.console.print(
                f"      attempt {attempt.number} {word}: {attempt.outcome.summary}", markup=False
            )

    def step_finished(self, result: StepResult, total: int) -> None:
        from rich.text import Text

        style = {"pass": "green", "inconclusive": "yellow", "fail": "red"}.get(result.word, "bold red")
        rest = f" [{result.step.number}/{total}] {result.step.name}: {result.summary}"
        self.console.print(Text.assemble((f"{result.word.upper():<12}", style), rest))


def final_line(result: PlanResult) -> str:
    counts: dict[str, int] = {}
    for r in result.steps:
        counts[r.word] = counts.get(r.word, 0) + 1
    parts = ", ".join(f"{n} {word}" for word, n in counts.items())
    return (
        f"plan {result.plan.source}: {STATUS_WORDS[result.status]} "
        f"({parts}) in {result.duration_s:.1f}s, exit {int(result.status)}"
    )


# ---------------------------------------------------------------------------------------------
# Command


@dataclass(frozen=True)
class PlanConfig:
    path: str
    overrides: Mapping[str, str]
    output: Literal["text", "json"]
    junit: str | None
    wait_sidecar: Policy
    quit_sidecar: Policy
    sidecar_timeout: float
    in_job: bool
    endpoints: sidecar.SidecarEndpoints


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
        help="set a plan variable (repeatable); beats env NETDEBUG_VAR_<NAME> and the plan's vars:",
    )
    parser.add_argument("--output", choices=["text", "json"], default=None, help="env NETDEBUG_OUTPUT")
    parser.add_argument("--junit", metavar="FILE", help="also write a JUnit XML report (env NETDEBUG_JUNIT)")
    parser.add_argument(
        "--wait-sidecar",
        choices=[*POLICIES, *POLICY_SYNONYMS],
        default=None,
        help="wait for the sidecar before the first step: auto = when one is detected or the pod's "
        "annotations say it is injected (env NETDEBUG_WAIT_SIDECAR, default auto)",
    )
    parser.add_argument(
        "--quit-sidecar",
        choices=[*POLICIES, *POLICY_SYNONYMS],
        default=None,
        help="ask the sidecar to exit at the very end: auto = in a Job, when a sidecar was seen and it "
        "is not a native sidecar (env NETDEBUG_QUIT_SIDECAR, default auto)",
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
        help="we run as a Kubernetes Job: enables the auto sidecar quit (env NETDEBUG_IN_JOB=1)",
    )


def _policy(flag: str | None, env: Mapping[str, str], name: str) -> Policy:
    value = (flag or env.get(name) or "auto").strip().lower()
    if value in POLICY_SYNONYMS:
        return POLICY_SYNONYMS[value]
    for policy in POLICIES:
        if value == policy:
            return policy
    raise UsageError(f"{name}={value!r}: expected one of {', '.join(POLICIES)} (or yes/no)")


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
    in_job = bool(args.job) or env.get("NETDEBUG_IN_JOB", "").strip().lower() in TRUE_WORDS
    return PlanConfig(
        path=args.file,
        overrides=parse_var_flags(args.var),
        output="json" if output == "json" else "text",
        junit=args.junit or env.get("NETDEBUG_JUNIT") or None,
        wait_sidecar=_policy(args.wait_sidecar, env, "NETDEBUG_WAIT_SIDECAR"),
        quit_sidecar=_policy(args.quit_sidecar, env, "NETDEBUG_QUIT_SIDECAR"),
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
    mode: str = "unknown"
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
    expected = log.detected or log.mode in ("classic", "native")
    if config.wait_sidecar == "auto" and not expected:
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
    if config.quit_sidecar == "never":
        return False, "not quitting the sidecar (--quit-sidecar never)"
    if config.quit_sidecar == "always":
        return True, ""
    if not config.in_job:
        return False, "not quitting the sidecar: not a Job (--job / NETDEBUG_IN_JOB=1)"
    if log.mode == "native":
        return False, "not quitting the sidecar: native sidecar (Kubernetes stops it)"
    if log.mode == "none":
        return False, "not quitting the sidecar: the pod has none"
    if not log.detected:
        return False, "not quitting the sidecar: none detected"
    return True, ""


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
    prepared = prepare(plan, ctx.env, probe_backend)
    log = SidecarLog()
    result = asyncio.run(run_with_sidecar(plan, prepared, config, ctx, probe_backend, log))
    if config.junit:
        try:
            Path(config.junit).write_text(render_junit([junit_suite(result)]), encoding="utf-8")
        except OSError as exc:
            ctx.err.write(f"netdebug plan: cannot write --junit {config.junit}: {exc}\n")
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
