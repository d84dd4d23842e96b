"""Running a plan: `execute` drives the steps and their repeats, `StepRunner` runs one step for real.

Layers, so each can be tested alone:
- `execute(plan, run_step, clock=, sleep=, events=)` drives steps and repeats; the step runner, clock
  and sleep are injected (tests use fakes). It never touches the network itself.
- `StepRunner` is the production runner: probe via netdebug.probe.command (injectable), http via
  httpx, dns/tcp/tls via netdebug.diag.

Exit code: the worst step's, in this order of severity (least to most):
    0 pass < 3 inconclusive < 1 fail < 4 unreachable/error < 2 usage < 130 interrupted
A definite failure outranks "not enough data"; a check that could not run at all outranks a check
that ran and failed (its environment is broken, so other results are suspect).
"""

from __future__ import annotations

import asyncio
import importlib
import ssl
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from netdebug import diag
from netdebug.context import ExitStatus, UsageError
from netdebug.plan.model import (
    DnsSpec,
    HttpSpec,
    Plan,
    PlanError,
    ProbeSpec,
    Step,
    TcpSpec,
    TlsSpec,
    check_http,
)
from netdebug.probe.fingerprint import is_local_reply
from netdebug.proxy import Proxy, ProxyError, select_proxy

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
PROBE_DEFAULTS: Mapping[str, object] = {"wait_sidecar": "never", "quit_sidecar": "never", "live": "never"}


@dataclass
class Prepared:
    """Per-step objects built (and validated) before any step runs."""

    probe_configs: dict[int, object] = field(default_factory=dict)
    ssl_contexts: dict[int, ssl.SSLContext] = field(default_factory=dict)
    http_verify: dict[int, ssl.SSLContext | bool] = field(default_factory=dict)
    http_proxies: dict[int, Proxy] = field(default_factory=dict)


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
            elif isinstance(spec, HttpSpec):
                proxy = select_proxy(spec.url, env, env.get("NETDEBUG_PROXY"), env.get("NETDEBUG_NOPROXY"))
                if proxy is not None:
                    prepared.http_proxies[step.number] = proxy
                if spec.url.startswith("https://"):
                    if spec.insecure:
                        prepared.http_verify[step.number] = False
                    else:
                        options = diag.TlsOptions(alpn=(), ca=spec.ca)
                        prepared.http_verify[step.number] = diag.make_ssl_context(options)
        except (UsageError, ProxyError) as exc:
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
        proxy = self.prepared.http_proxies.get(step.number)
        try:
            answer = await (self._http2(step, spec, proxy) if spec.http2 else self._http1(spec, proxy))
        except HttpStepError as exc:
            return Outcome(ExitStatus.UNREACHABLE, str(exc), (str(exc),))
        failures = tuple(check_http(spec.expect, answer.status, answer.headers, answer.body))
        local = is_local_reply(answer.headers)
        summary = (
            f"{answer.status} in {answer.elapsed_ms:.1f} ms"
            + (f", server {answer.headers['server']}" if "server" in answer.headers else "")
            + (", Envoy local reply" if local else "")
            + (f", via proxy {proxy.url}" if proxy is not None else "")
        )
        if failures:
            summary += "; " + "; ".join(failures)
        details: dict[str, object] = {
            "status": answer.status,
            "http_version": answer.http_version,
            "elapsed_ms": round(answer.elapsed_ms, 3),
            "connect_ms": None if answer.connect_ms is None else round(answer.connect_ms, 3),
            "local_reply": local,
            "headers": answer.headers,
            "proxy": proxy.url if proxy is not None else None,
        }
        return Outcome(ExitStatus.MISMATCH if failures else ExitStatus.OK, summary, failures, details)

    async def _http1(self, spec: HttpSpec, proxy: Proxy | None) -> HttpAnswer:
        """HTTP/1.1 on the prober's own client. The connection (DNS, TCP, proxy tunnel, TLS) is opened
        first and timed apart; the latency is the request on it, as the prober's keep-alive answers are."""
        from netdebug.probe.attribution import By
        from netdebug.probe.client import ClientOptions, classify_error, h1_client_for
        from netdebug.probe.h1 import ResponseError
        from netdebug.probe.resolve import Resolver

        options = ClientOptions(
            url=spec.url,
            method=spec.method,
            headers=tuple(spec.headers),
            body=spec.body.encode("utf-8") if spec.body is not None else None,
            http2=False,
            insecure=spec.insecure,
            cacert=spec.ca,
            cert=None,
            key=None,
            timeout=spec.timeout,
            new_connection=True,
            resolve=(),
            connect_to=(),
            max_connections=1,
            by=By("auto"),
            proxy=proxy,
        )
        client = h1_client_for(options, Resolver(), all_headers=True)
        try:
            started = time.perf_counter()
            await client.open()
            opened = time.perf_counter()
            response = await client.send()
            done = time.perf_counter()
        except (OSError, ResponseError, ValueError) as exc:
            kind, detail = classify_error(exc)
            raise HttpStepError(f"{spec.method} {spec.url}: {kind}: {detail}") from None
        finally:
            await client.aclose()
        return HttpAnswer(
            status=response.status,
            headers=response.headers,
            body=response.body.decode("utf-8", "replace"),
            http_version=f"HTTP/{response.http_version}",
            elapsed_ms=(done - opened) * 1000.0,
            connect_ms=(opened - started) * 1000.0,
        )

    async def _http2(self, step: Step, spec: HttpSpec, proxy: Proxy | None) -> HttpAnswer:
        """HTTP/2 through httpx, built before the clock starts (its SSL context and pool are set-up);
        httpx connects inside the request, so the time includes the connection."""
        import httpx

        verify = self.prepared.http_verify.get(step.number, True)
        proxy_arg = None
        if proxy is not None:
            auth = {"proxy-authorization": proxy.authorization} if proxy.authorization else None
            proxy_arg = httpx.Proxy(proxy.url, headers=auth)
        client = httpx.AsyncClient(
            http2=True, verify=verify, timeout=spec.timeout, trust_env=False, proxy=proxy_arg
        )
        try:
            started = time.perf_counter()
            response = await client.request(
                spec.method, spec.url, headers=list(spec.headers), content=spec.body
            )
            elapsed_ms = (time.perf_counter() - started) * 1000.0
        except httpx.HTTPError as exc:
            raise HttpStepError(
                f"{spec.method} {spec.url}: {type(exc).__name__}: {exc or 'no detail'}"
            ) from None
        finally:
            await client.aclose()
        return HttpAnswer(
            status=response.status_code,
            headers={k.lower(): v for k, v in response.headers.items()},
            body=response.text,
            http_version=response.http_version,
            elapsed_ms=elapsed_ms,
            connect_ms=None,
        )


class HttpStepError(Exception):
    """No answer (refused, timeout, DNS, TLS, proxy): the http step is unreachable."""


@dataclass(frozen=True)
class HttpAnswer:
    status: int
    headers: Mapping[str, str]  # lower-case names
    body: str
    http_version: str
    elapsed_ms: float  # the request (on an open connection for HTTP/1.1)
    connect_ms: float | None  # the set-up: DNS, TCP, proxy tunnel, TLS (HTTP/1.1 only)


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
