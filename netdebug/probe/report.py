"""Aggregation (a `Tally` recorded per answer), the verdict and exit status, and rendering: plain text,
a rich table and live view on a terminal, the `--output json` document, and request JSON lines.

Aggregation and verdict are pure; rendering writes to the stream it is given.
"""

from __future__ import annotations

import dataclasses
import io
import math
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TextIO

import orjson

from netdebug.context import ExitStatus
from netdebug.probe.client import Sample
from netdebug.probe.config import ProbeConfig
from netdebug.probe.fingerprint import KINDS, UNROUTED_KINDS
from netdebug.probe.runner import RunOutcome, Timing
from netdebug.probe.samplesize import Advice, pass_probability, required_requests
from netdebug.probe.stats import SplitJudgement, judge, percentile
from netdebug.probe.traffic import TrafficSummary, TrafficTally

TRANSPORT_ERRORS = frozenset({"connect", "dns", "tls", "timeout", "protocol", "read", "other"})


@dataclass(frozen=True, slots=True)
class ProbeSnapshot:
    """What the live view shows; produced a few times a second, never per request."""

    done: int
    planned: int | None
    elapsed: float
    counts: Mapping[str, int]
    expected: Mapping[str, float] | None
    errors: int
    local_replies: int
    non_2xx: int
    rate: float


@dataclass
class Tally:
    """Everything the report needs, recorded answer by answer (O(1) each, no per-request objects
    kept except two float lists for the percentiles)."""

    count_no_version_as_error: bool = True
    completed: int = 0
    counts: Counter[str] = field(default_factory=Counter)
    status_codes: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    error_details: dict[str, str] = field(default_factory=dict)
    fingerprints: Counter[str] = field(default_factory=Counter)
    identities: Counter[str] = field(default_factory=Counter)
    pods: Counter[str] = field(default_factory=Counter)
    http_versions: Counter[str] = field(default_factory=Counter)
    retried: int = 0
    mtls: int = 0
    non_2xx: int = 0
    latencies: list[float] = field(default_factory=list)
    lateness: list[float] = field(default_factory=list)
    traffic: TrafficTally = field(default_factory=TrafficTally)  # what the HTML picture needs

    def record(self, timing: Timing, sample: Sample) -> None:
        self.completed += 1
        self.traffic.record(timing, sample)
        self.lateness.append(timing.lateness)
        if sample.status is not None:
            self.status_codes[str(sample.status)] += 1
            self.latencies.append(timing.latency)
            if not 200 <= sample.status < 300:
                self.non_2xx += 1
        if sample.error is not None:
            self.errors[sample.error] += 1
            self.error_details.setdefault(sample.error, sample.detail or sample.error)
        if sample.kind is not None:
            self.fingerprints[sample.kind] += 1
        if sample.version is not None:
            self.counts[sample.version] += 1
        if sample.pod is not None:
            self.pods[sample.pod] += 1
        if sample.http_version is not None:
            self.http_versions[sample.http_version] += 1
        if sample.identity is not None:
            self.identities[sample.identity] += 1
        self.retried += sample.retried
        self.mtls += sample.mtls

    @property
    def local_replies(self) -> int:
        return self.fingerprints["local-reply"]

    def failed(self, include_no_version: bool) -> int:
        return sum(n for k, n in self.errors.items() if k in TRANSPORT_ERRORS or include_no_version)

    def snapshot(
        self, elapsed: float, planned: int | None, expected: Mapping[str, float] | None
    ) -> ProbeSnapshot:
        return ProbeSnapshot(
            done=self.completed,
            planned=planned,
            elapsed=elapsed,
            counts=dict(self.counts),
            expected=expected,
            errors=sum(self.errors.values()),
            local_replies=self.local_replies,
            non_2xx=self.non_2xx,
            rate=self.completed / elapsed if elapsed > 0 else 0.0,
        )


def _ms(values: list[float], qs: tuple[tuple[str, float], ...]) -> dict[str, float | None]:
    ordered = sorted(values)
    out: dict[str, float | None] = {}
    for name, q in qs:
        v = percentile(ordered, q)
        out[name] = None if math.isnan(v) else round(v * 1000.0, 3)
    return out


LATENCY_QS = (("p50", 50.0), ("p90", 90.0), ("p99", 99.0), ("p999", 99.9), ("max", 100.0))
LATENESS_QS = (("p50", 50.0), ("p99", 99.0), ("max", 100.0))


@dataclass(frozen=True)
class ProbeReport:
    url: str
    verdict: str
    exit_status: ExitStatus
    requests: int
    launched: int
    dropped: int
    counts: dict[str, int]
    expected: dict[str, float] | None
    judgement: SplitJudgement
    fingerprints: dict[str, int]
    errors: dict[str, int]
    error_details: dict[str, str]
    status_codes: dict[str, int]
    latency_ms: dict[str, float | None]
    achieved_rps: float
    lateness_ms: dict[str, float | None]
    warnings: tuple[str, ...]
    reasons: tuple[str, ...]
    identities: dict[str, int]
    pods: dict[str, int]
    http_versions: dict[str, int]
    retried: int
    mtls: int
    elapsed_s: float
    interrupted: bool
    stopped_early: bool
    tolerance: float
    alpha: float
    message: str | None  # the one-line explanation for exit 4 and for unusual endings
    traffic: TrafficSummary | None = None  # additive JSON fields for the picture (probe/traffic.py)
    # When inconclusive: how many answers an on-target split needs (samplesize.py), and how often it
    # would pass with as many answers as this run counted.
    advice: Advice | None = None
    pass_probability: float | None = None
    proxy: str | None = None  # the HTTP proxy the requests went through, and where it came from

    @property
    def local_replies(self) -> int:
        return self.fingerprints.get("local-reply", 0)

    def advice_line(self) -> str | None:
        """What the sample-size advice means for this run, in one line (None when there is none)."""
        advice = self.advice
        if advice is None:
            return None
        power = f"{advice.power:.0%}"
        counted = sum(self.counts.values())
        now = (
            f"; with this run's {counted} answers, {self.pass_probability:.0%}"
            if self.pass_probability is not None
            else ""
        )
        if advice.requests is None:
            return (
                f"no number of requests makes an on-target split pass {power} of the time at alpha "
                f"{self.alpha:g} (at most {advice.ceiling:.1%}): lower --alpha"
            )
        bound = "" if advice.exact else " (at least: a conservative bound)"
        line = f"an on-target split passes {power} of the time{bound} from {advice.requests} answers on"
        if advice.requests <= counted:
            return line + f"; this run counted {counted}: the split may be off target, or re-run"
        return line + now

    def to_json(self) -> dict[str, object]:
        return {
            "url": self.url,
            "verdict": self.verdict,
            "exit_code": int(self.exit_status),
            "requests": self.requests,
            "launched": self.launched,
            "dropped": self.dropped,
            "counts": self.counts,
            "expected": self.expected or {},
            "versions": [
                {
                    "version": v.version,
                    "count": v.count,
                    "observed_pct": round(v.observed_pct, 3),
                    "expected_pct": None if v.expected_pct is None else round(v.expected_pct, 3),
                    "ci_low_pct": round(v.ci_low_pct, 3),
                    "ci_high_pct": round(v.ci_high_pct, 3),
                }
                for v in self.judgement.versions
            ],
            "p_value": self.judgement.p_value,
            "tolerance_pct": self.tolerance,
            "alpha": self.alpha,
            "needed_requests": self.judgement.needed_requests,
            "needed_power": self.advice.power if self.advice is not None else None,
            "pass_probability": (None if self.pass_probability is None else round(self.pass_probability, 4)),
            "reasons": list(self.reasons),
            "fingerprints": self.fingerprints,
            "mtls": {"answers": self.mtls, "identities": self.identities},
            "retried": self.retried,
            "pods": self.pods,
            "http_versions": self.http_versions,
            "local_replies": self.local_replies,
            "errors": self.errors,
            "error_details": self.error_details,
            "status_codes": self.status_codes,
            "latency_ms": self.latency_ms,
            "achieved_rps": round(self.achieved_rps, 3),
            "lateness_ms": self.lateness_ms,
            "elapsed_s": round(self.elapsed_s, 3),
            "interrupted": self.interrupted,
            "stopped_early": self.stopped_early,
            "message": self.message,
            "warnings": list(self.warnings),
            **(self.traffic.to_json() if self.traffic is not None else {}),
            "proxy": self.proxy,
        }

    def summary_line(self) -> str:
        split = ", ".join(
            f"{v.version} {v.observed_pct:.1f}%"
            + (f" (exp {v.expected_pct:.0f})" if v.expected_pct is not None else "")
            for v in self.judgement.versions
        )
        paths = ", ".join(f"{k} {n}" for k, n in self.fingerprints.items())
        parts = [f"{self.verdict.upper()}: {self.requests} requests", split or "no versions"]
        if self.judgement.p_value is not None:
            parts.append(f"p={self.judgement.p_value:.3g}")
        if paths:
            parts.append(f"paths: {paths}")
        if self.errors:
            parts.append("errors: " + ", ".join(f"{k} {n}" for k, n in self.errors.items()))
        needed = self.judgement.needed_requests
        if needed and needed > sum(self.counts.values()):
            parts.append(f"you need about {needed} requests")
        if self.message:
            parts.append(self.message)
        return "; ".join(parts)


def judge_tally(config: ProbeConfig, tally: Tally, looks: int = 1) -> SplitJudgement:
    """The split judgement of the tally so far, with the config's expectation and thresholds.

    Used for the final report and for each interim look of --early-stop (`looks` > 1).
    """
    return judge(
        tally.counts,
        config.expected_map,
        tolerance_pct=config.tolerance,
        alpha=config.alpha,
        confidence=config.confidence,
        looks=looks,
    )


def build_report(config: ProbeConfig, tally: Tally, outcome: RunOutcome, looks: int = 1) -> ProbeReport:
    """Pure: tally + run outcome + config -> verdict, exit status, warnings."""
    expected = config.expected_map
    judgement = judge_tally(config, tally, looks)
    reasons = list(judgement.reasons)
    verdict = judgement.verdict
    warnings: list[str] = []

    answered = sum(tally.fingerprints.values())
    unrouted = {k: tally.fingerprints[k] for k in UNROUTED_KINDS if tally.fingerprints[k]}
    if unrouted:
        kinds = ", ".join(f"{n} {k}" for k, n in sorted(unrouted.items()))
        split_note = ": it did NOT do this split" if expected else ""
        causes = []
        if "ztunnel" in unrouted:
            # Ambient mode without a waypoint: the way a split is lost there.
            causes.append(
                "ztunnel only: the route was not applied; in ambient mode a route whose parent is a "
                "Service needs a waypoint, istio.io/use-waypoint on the Service or its namespace"
            )
        if set(unrouted) - {"ztunnel"}:
            causes.append("caller without a sidecar, or a direct pod/Service call")
        warnings.append(
            f"NOT ROUTED BY THE MESH: {kinds} of {answered} answers carry no evidence of a routing proxy "
            f"(client sidecar, gateway or waypoint), so no VirtualService or HTTPRoute routed them"
            f"{split_note} ({'; '.join(causes)}); any ratio seen may come from connection balancing"
        )
    if config.require_path:
        wrong = {
            k: n for k, n in tally.fingerprints.items() if k not in config.require_path and k != "local-reply"
        }
        if wrong:
            reasons.append(
                "path not as required ("
                + ", ".join(config.require_path)
                + "): "
                + ", ".join(f"{k} {n}" for k, n in sorted(wrong.items()))
            )
            verdict = "fail"
        elif answered - tally.local_replies == 0:
            reasons.append("no upstream answer to check the required path against")
            verdict = "fail"
    if tally.local_replies:
        warnings.append(
            f"{tally.local_replies} Envoy local replies (no route, overflow or fault; "
            "not counted as a version)"
        )
    if outcome.dropped:
        warnings.append(f"{outcome.dropped} requests dropped: {config.max_in_flight} already in flight")
    if tally.retried:
        warnings.append(f"{tally.retried} answers were retried by Envoy (attempt > 1)")
    if expected is not None and tally.errors.get("no-version"):
        warnings.append(
            f"{tally.errors['no-version']} 2xx answers named no version: {tally.error_details['no-version']}"
        )

    advice: Advice | None = None
    now: float | None = None
    if verdict == "inconclusive" and expected is not None:
        tol, alpha, confidence = config.tolerance, config.alpha, config.confidence
        advice = required_requests(
            expected, tolerance_pct=tol, alpha=alpha, confidence=confidence, looks=looks
        )
        counted = sum(tally.counts.values())
        if counted:
            now = pass_probability(
                counted, expected, tolerance_pct=tol, alpha=alpha, confidence=confidence, looks=looks
            )
        judgement = dataclasses.replace(judgement, needed_requests=advice.requests)

    failed = tally.failed(include_no_version=expected is not None)
    error_rate = failed / outcome.launched if outcome.launched else 1.0
    message: str | None = None
    status: ExitStatus
    if outcome.launched == 0:
        status = ExitStatus.UNREACHABLE
        message = "no request was sent"
    elif error_rate > config.max_error_rate:
        status = ExitStatus.UNREACHABLE
        top = max(
            (k for k in tally.errors if k in TRANSPORT_ERRORS or expected is not None),
            key=lambda k: tally.errors[k],
        )
        label = "unreachable" if failed == outcome.launched and top in TRANSPORT_ERRORS else "too many errors"
        message = (
            f"{label}: {failed}/{outcome.launched} requests failed "
            f"(> {config.max_error_rate:.0%}); {top}: {tally.error_details[top]}"
        )
    else:
        status = {
            "pass": ExitStatus.OK,
            "none": ExitStatus.OK,
            "fail": ExitStatus.MISMATCH,
            "inconclusive": ExitStatus.INCONCLUSIVE,
        }[verdict]
    if outcome.interrupted:
        status = ExitStatus.INTERRUPTED
        message = "interrupted: partial report"

    return ProbeReport(
        url=config.url,
        verdict=verdict,
        exit_status=status,
        requests=tally.completed,
        launched=outcome.launched,
        dropped=outcome.dropped,
        counts=dict(tally.counts),
        expected=expected,
        judgement=judgement,
        fingerprints={k: tally.fingerprints[k] for k in KINDS if tally.fingerprints[k]},
        errors=dict(tally.errors),
        error_details=dict(tally.error_details),
        status_codes=dict(sorted(tally.status_codes.items())),
        latency_ms=_ms(tally.latencies, LATENCY_QS),
        achieved_rps=outcome.achieved_rps,
        lateness_ms=_ms(tally.lateness, LATENESS_QS),
        warnings=tuple(warnings),
        reasons=tuple(reasons),
        identities=dict(tally.identities),
        pods=dict(tally.pods),
        http_versions=dict(tally.http_versions),
        retried=tally.retried,
        mtls=tally.mtls,
        elapsed_s=outcome.elapsed,
        interrupted=outcome.interrupted,
        stopped_early=outcome.stopped_early,
        tolerance=config.tolerance,
        alpha=config.alpha,
        message=message,
        traffic=tally.traffic.summary(config),
        advice=advice,
        pass_probability=now,
        proxy=config.proxy.describe() if config.proxy is not None else None,
    )


def _fmt_ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def render_text(report: ProbeReport, out: TextIO) -> None:
    """Plain text for pipes and logs: stable, no colour, one fact per line."""
    w = out.write
    w(f"netdebug probe {report.url}\n")
    w(
        f"requests {report.requests} (launched {report.launched}, dropped {report.dropped}) in "
        f"{report.elapsed_s:.2f}s, {report.achieved_rps:.1f} req/s\n"
    )
    if report.proxy:
        w(f"proxy: {report.proxy}\n")
    if report.judgement.versions:
        w(f"{'version':<16} {'count':>7} {'observed':>9} {'expected':>9} {'95% interval':>17}\n")
        for v in report.judgement.versions:
            exp = "-" if v.expected_pct is None else f"{v.expected_pct:.1f}%"
            w(
                f"{v.version:<16} {v.count:>7} {v.observed_pct:>8.1f}% {exp:>9} "
                f"{v.ci_low_pct:>7.1f}–{v.ci_high_pct:.1f}%\n"
            )
    if report.judgement.p_value is not None:
        w(
            f"chi-square p-value {report.judgement.p_value:.4g} "
            f"(alpha {report.alpha:g}, tolerance ±{report.tolerance:g} points)\n"
        )
    if report.fingerprints:
        w("paths: " + ", ".join(f"{k} {n}" for k, n in report.fingerprints.items()) + "\n")
    if report.mtls:
        ids = ", ".join(f"{k} ({n})" for k, n in report.identities.items()) or "identity not named"
        w(f"mtls: {report.mtls} answers; caller {ids}\n")
    if report.http_versions:
        w("protocol: " + ", ".join(f"{k} {n}" for k, n in report.http_versions.items()) + "\n")
    if report.status_codes:
        w("status: " + ", ".join(f"{k} {n}" for k, n in report.status_codes.items()) + "\n")
    if report.errors:
        w("errors: " + ", ".join(f"{k} {n}" for k, n in report.errors.items()) + "\n")
        for k, detail in report.error_details.items():
            w(f"  {k}: {detail}\n")
    lat = report.latency_ms
    w(
        f"latency ms: p50 {_fmt_ms(lat['p50'])} p90 {_fmt_ms(lat['p90'])} p99 {_fmt_ms(lat['p99'])} "
        f"p99.9 {_fmt_ms(lat['p999'])} max {_fmt_ms(lat['max'])}\n"
    )
    late = report.lateness_ms
    w(f"lateness ms: p50 {_fmt_ms(late['p50'])} p99 {_fmt_ms(late['p99'])} max {_fmt_ms(late['max'])}\n")
    for warning in report.warnings:
        w(f"WARNING: {warning}\n")
    for reason in report.reasons:
        w(f"  - {reason}\n")
    if report.stopped_early:
        w("stopped early: the verdict was already clear (sequential looks, Bonferroni-spent alpha)\n")
    line = f"verdict: {report.verdict.upper()}"
    needed = report.judgement.needed_requests
    if needed and needed > sum(report.counts.values()):
        line += f" — you need about {needed} requests for ±{report.tolerance:g} points"
    w(line + f" (exit {int(report.exit_status)})\n")
    advice = report.advice_line()
    if advice:
        w(f"  {advice}\n")
    if report.message:
        w(f"{_without_details(report.message, report.error_details)}\n")


def _without_details(message: str, details: Mapping[str, str]) -> str:
    """The message without the error detail the `errors:` lines above already show (once is enough)."""
    for kind, detail in details.items():
        suffix = f"; {kind}: {detail}"
        if message.endswith(suffix):
            return message[: -len(suffix)]
    return message


def render_rich(report: ProbeReport, out: TextIO) -> None:
    """The same facts as a table, for a terminal."""
    from rich.console import Console
    from rich.table import Table

    console = Console(file=out)
    table = Table(title=f"netdebug probe {report.url}")
    for col in ("version", "count", "observed", "expected", "95% interval"):
        table.add_column(col, justify="left" if col == "version" else "right")
    for v in report.judgement.versions:
        exp = "-" if v.expected_pct is None else f"{v.expected_pct:.1f}%"
        style = "red" if v.expected_pct is None else None
        table.add_row(
            v.version,
            str(v.count),
            f"{v.observed_pct:.1f}%",
            exp,
            f"{v.ci_low_pct:.1f}–{v.ci_high_pct:.1f}%",
            style=style,
        )
    if report.judgement.versions:
        console.print(table)
    rest = io.StringIO()
    render_text(report, rest)
    lines = [ln for ln in rest.getvalue().splitlines() if not ln.startswith(("version ", "netdebug probe"))]
    lines = [ln for ln in lines if not any(ln.startswith(f"{v.version} ") for v in report.judgement.versions)]
    colour = {"pass": "green", "fail": "red", "inconclusive": "yellow"}.get(report.verdict, "white")
    for ln in lines:
        if ln.startswith("WARNING"):
            console.print(ln, style="bold red", markup=False, highlight=False)
        elif ln.startswith("verdict"):
            console.print(ln, style=f"bold {colour}", markup=False, highlight=False)
        else:
            console.print(ln, markup=False, highlight=False)


def render_json(report: ProbeReport, out: TextIO) -> None:
    out.write(orjson.dumps(report.to_json(), option=orjson.OPT_INDENT_2).decode() + "\n")


def request_line(timing: Timing, sample: Sample) -> bytes:
    """One `--output-requests` JSON line."""
    doc: dict[str, Any] = {
        "i": timing.index,
        "intended_ms": round(timing.intended * 1000.0, 3),
        "lateness_ms": round(timing.lateness * 1000.0, 3),
        "latency_ms": round(timing.latency * 1000.0, 3),
        "status": sample.status,
        "version": sample.version,
        "pod": sample.pod,
        "path": sample.kind,
        "mtls_identity": sample.identity,
        "retried": sample.retried,
        "http_version": sample.http_version,
        "error": sample.error,
    }
    if sample.detail:
        doc["detail"] = sample.detail
    return orjson.dumps(doc) + b"\n"


BAR_WIDTH = 40
# Bars must read without colour (NO_COLOR, a monochrome terminal, a screen reader's text): filled and
# empty cells differ by shape, and the expected share is a mark of its own.
UNICODE_CELLS = ("█", "░", "┃")
ASCII_CELLS = ("#", ".", "|")


def text_bar(
    pct: float, width: int = BAR_WIDTH, expected: float | None = None, ascii_only: bool = False
) -> str:
    """A bar `width` cells long, `pct` of them filled; the cell of `expected` (percent) is marked."""
    full, empty, mark = ASCII_CELLS if ascii_only else UNICODE_CELLS
    filled = round(min(max(pct, 0.0), 100.0) / 100.0 * width)
    cells = [full] * filled + [empty] * (width - filled)
    if expected is not None:
        cells[min(width - 1, int(min(max(expected, 0.0), 100.0) / 100.0 * width))] = mark
    return "".join(cells)


def live_view(get: Callable[[], ProbeSnapshot | None]) -> Any:
    """A rich renderable built from the latest snapshot at refresh time (4 Hz), not per request."""
    from rich.console import Console, ConsoleOptions, Group, RenderResult
    from rich.table import Table
    from rich.text import Text

    class _View:
        def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
            snap = get()
            if snap is None:
                yield Text("starting…" if console.encoding.startswith("utf") else "starting...")
                return
            ascii_only = not console.encoding.startswith("utf")
            head = Text(
                f"{snap.done}"
                + (f"/{snap.planned}" if snap.planned else "")
                + f" requests  {snap.elapsed:5.1f}s  {snap.rate:7.1f} req/s  "
                f"errors {snap.errors}  local replies {snap.local_replies}  non-2xx {snap.non_2xx}"
            )
            total = sum(snap.counts.values())
            grid = Table.grid(padding=(0, 1))
            if snap.planned:
                done_pct = 100.0 * snap.done / snap.planned
                bar = Text(text_bar(done_pct, ascii_only=ascii_only), style="cyan")
                grid.add_row("progress", bar, f"{done_pct:5.1f}%", "")
            names = list(snap.expected or {}) + sorted(set(snap.counts) - set(snap.expected or {}))
            for name in names:
                n = snap.counts.get(name, 0)
                pct = 100.0 * n / total if total else 0.0
                exp = (snap.expected or {}).get(name)
                bar = Text(
                    text_bar(pct, expected=exp, ascii_only=ascii_only), style="green" if exp else "red"
                )
                grid.add_row(name, bar, f"{pct:5.1f}%", "" if exp is None else f"(expected {exp:.1f}%)")
            yield Group(head, grid)

    return _View()
