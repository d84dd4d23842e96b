from __future__ import annotations

import io

import orjson
import pytest

from netdebug.context import ExitStatus
from netdebug.probe.client import Sample
from netdebug.probe.config import ProbeConfig
from netdebug.probe.report import (
    BAR_WIDTH,
    ProbeSnapshot,
    Tally,
    build_report,
    live_view,
    render_json,
    render_rich,
    render_text,
    request_line,
    text_bar,
)
from netdebug.probe.runner import RunOutcome, Timing

CONTRACT_KEYS = {
    "verdict",
    "exit_code",
    "requests",
    "counts",
    "expected",
    "versions",
    "p_value",
    "fingerprints",
    "local_replies",
    "errors",
    "status_codes",
    "latency_ms",
    "achieved_rps",
    "lateness_ms",
    "warnings",
}


def ok(version: str, kind: str = "client-sidecar") -> Sample:
    return Sample(200, version, f"echo-{version}", kind, None, False, False, "HTTP/1.1")  # type: ignore[arg-type]


LOCAL = Sample(404, None, None, "local-reply", None, False, False, "HTTP/1.1")
REFUSED = Sample(None, None, None, None, None, False, False, None, "connect", "connection refused")
NO_VERSION = Sample(
    200, None, None, "bypass", None, False, False, "HTTP/1.1", "no-version", "names no version"
)


def tally_of(samples: list[Sample]) -> tuple[Tally, RunOutcome]:
    tally = Tally()
    for i, s in enumerate(samples):
        tally.record(Timing(i, i * 0.01, 0.0005 * (i % 3), 0.002 + 0.001 * (i % 10)), s)
    n = len(samples)
    return tally, RunOutcome(n, n, 0, n * 0.01, 0.0, (n - 1) * 0.01, False, False)


def cfg(**kw: object) -> ProbeConfig:
    return ProbeConfig(url="http://echo-service/echo", **kw)  # type: ignore[arg-type]


EXPECT = (("v1", 75.0), ("v2", 25.0))


@pytest.mark.parametrize(
    ("samples", "config", "verdict", "status"),
    [
        pytest.param(
            [ok("v1")] * 750 + [ok("v2")] * 250, cfg(expected=EXPECT), "pass", ExitStatus.OK, id="pass"
        ),
        pytest.param(
            [ok("v1")] * 500 + [ok("v2")] * 500,
            cfg(expected=EXPECT),
            "fail",
            ExitStatus.MISMATCH,
            id="mismatch",
        ),
        pytest.param(
            [ok("v1")] * 75 + [ok("v2")] * 25,
            cfg(expected=EXPECT),
            "inconclusive",
            ExitStatus.INCONCLUSIVE,
            id="inconclusive",
        ),
        pytest.param([ok("v1")] * 10, cfg(), "none", ExitStatus.OK, id="no-expectation"),
        pytest.param([REFUSED] * 10, cfg(expected=EXPECT), "fail", ExitStatus.UNREACHABLE, id="unreachable"),
        pytest.param(
            [ok("v1")] * 90 + [REFUSED] * 10, cfg(), "none", ExitStatus.UNREACHABLE, id="error-rate"
        ),
        pytest.param(
            [ok("v1")] * 90 + [REFUSED] * 10,
            cfg(max_error_rate=0.2),
            "none",
            ExitStatus.OK,
            id="error-rate-allowed",
        ),
        pytest.param([NO_VERSION] * 10, cfg(expected=EXPECT), "fail", ExitStatus.UNREACHABLE, id="non-json"),
        pytest.param([NO_VERSION] * 10, cfg(), "none", ExitStatus.OK, id="non-json-no-expectation"),
        pytest.param(
            [ok("v1")] * 750 + [ok("v2")] * 250,
            cfg(expected=EXPECT, require_path=("gateway",)),
            "fail",
            ExitStatus.MISMATCH,
            id="require-path",
        ),
        pytest.param([LOCAL] * 20, cfg(expected=EXPECT), "fail", ExitStatus.MISMATCH, id="all-local-replies"),
    ],
)
def test_verdict_and_exit_status(
    samples: list[Sample], config: ProbeConfig, verdict: str, status: ExitStatus
) -> None:
    tally, outcome = tally_of(samples)
    report = build_report(config, tally, outcome)
    assert (report.verdict, report.exit_status) == (verdict, status)
    assert report.to_json()["exit_code"] == int(status)


def test_interrupted_is_130_with_the_partial_counts() -> None:
    tally, outcome = tally_of([ok("v1")] * 30)
    outcome = RunOutcome(30, 30, 0, 1.0, 0.0, 0.29, True, False)
    report = build_report(cfg(expected=EXPECT), tally, outcome)
    assert report.exit_status == ExitStatus.INTERRUPTED
    assert report.requests == 30
    assert "interrupted" in (report.message or "")


def test_json_document_follows_the_contract() -> None:
    tally, outcome = tally_of([ok("v1")] * 300 + [ok("v2")] * 100 + [LOCAL] * 5)
    doc = build_report(cfg(expected=EXPECT), tally, outcome).to_json()
    assert set(doc) >= CONTRACT_KEYS
    assert doc["counts"] == {"v1": 300, "v2": 100}
    assert doc["expected"] == {"v1": 75.0, "v2": 25.0}
    assert doc["local_replies"] == 5
    assert doc["status_codes"] == {"200": 400, "404": 5}
    assert doc["fingerprints"] == {"client-sidecar": 400, "local-reply": 5}
    assert set(doc["latency_ms"]) == {"p50", "p90", "p99", "p999", "max"}  # type: ignore[call-overload]
    assert set(doc["lateness_ms"]) == {"p50", "p99", "max"}  # type: ignore[call-overload]
    v1 = doc["versions"][0]  # type: ignore[index]
    assert set(v1) == {"version", "count", "observed_pct", "expected_pct", "ci_low_pct", "ci_high_pct"}
    assert v1["observed_pct"] == 75.0
    out = io.StringIO()
    render_json(build_report(cfg(expected=EXPECT), tally, outcome), out)
    assert orjson.loads(out.getvalue())["verdict"] == doc["verdict"]


def test_bypass_under_a_split_is_said_loudly() -> None:
    tally, outcome = tally_of([ok("v1", "bypass")] * 300 + [ok("v2", "bypass")] * 100)
    report = build_report(cfg(expected=EXPECT), tally, outcome)
    assert any("NOT ROUTED BY THE MESH" in w and "bypass" in w for w in report.warnings)
    text = io.StringIO()
    render_text(report, text)
    assert "WARNING: NOT ROUTED BY THE MESH" in text.getvalue()
    assert "caller without a sidecar" in text.getvalue()
    assert "ztunnel" not in text.getvalue()


def test_ztunnel_under_a_split_says_the_route_was_not_applied() -> None:
    # Ambient mode without a waypoint: a passing-looking ratio still gets the loud warning.
    tally, outcome = tally_of([ok("v1", "ztunnel")] * 300 + [ok("v2", "ztunnel")] * 100)
    report = build_report(cfg(expected=EXPECT), tally, outcome)
    (warning,) = [w for w in report.warnings if "NOT ROUTED BY THE MESH" in w]
    assert warning.startswith("NOT ROUTED BY THE MESH: 400 ztunnel of 400 answers")
    assert "it did NOT do this split (ztunnel only: the route was not applied;" in warning
    assert "istio.io/use-waypoint" in warning
    assert "caller without a sidecar" not in warning  # only the cause that fits the kinds seen
    assert report.fingerprints == {"ztunnel": 400}


def test_waypoint_answers_are_routed() -> None:
    tally, outcome = tally_of([ok("v1", "waypoint")] * 300 + [ok("v2", "waypoint")] * 100)
    report = build_report(cfg(expected=EXPECT, require_path=("waypoint",)), tally, outcome)
    assert not any("NOT ROUTED" in w for w in report.warnings)
    assert not any("path not as required" in r for r in report.reasons)


def test_text_report_lines() -> None:
    tally, outcome = tally_of([ok("v1")] * 75 + [ok("v2")] * 25 + [LOCAL] * 2)
    report = build_report(cfg(expected=EXPECT), tally, outcome)
    text = io.StringIO()
    render_text(report, text)
    out = text.getvalue()
    assert "v1                    75     75.0%     75.0%" in out
    assert "paths: client-sidecar 100, local-reply 2" in out
    assert "2 Envoy local replies" in out
    assert "verdict: INCONCLUSIVE — you need about" in out
    assert "(exit 3)" in out
    assert report.summary_line().startswith("INCONCLUSIVE: 102 requests; v1 75.0% (exp 75)")


def test_rich_report_renders() -> None:
    tally, outcome = tally_of([ok("v1")] * 3 + [ok("v3")])
    report = build_report(cfg(expected=EXPECT), tally, outcome)
    out = io.StringIO()
    render_rich(report, out)
    assert "v3" in out.getvalue()
    assert "verdict: FAIL" in out.getvalue()


def test_request_line() -> None:
    line = request_line(Timing(7, 0.5, 0.001, 0.0123), ok("v2"))
    doc = orjson.loads(line)
    assert line.endswith(b"\n")
    assert doc == {
        "i": 7,
        "intended_ms": 500.0,
        "lateness_ms": 1.0,
        "latency_ms": 12.3,
        "status": 200,
        "version": "v2",
        "pod": "echo-v2",
        "path": "client-sidecar",
        "mtls_identity": None,
        "retried": False,
        "http_version": "HTTP/1.1",
        "error": None,
    }


def test_live_view_renders_the_latest_snapshot() -> None:
    from rich.console import Console

    snap = ProbeSnapshot(
        done=50,
        planned=100,
        elapsed=1.0,
        counts={"v1": 30, "v3": 10},
        expected={"v1": 75.0, "v2": 25.0},
        errors=2,
        local_replies=1,
        non_2xx=1,
        rate=50.0,
    )
    latest: list[ProbeSnapshot] = []
    view = live_view(lambda: latest[0] if latest else None)
    buffer = io.StringIO()
    console = Console(file=buffer, width=120)
    console.print(view)
    assert "starting" in buffer.getvalue()
    latest.append(snap)
    console.print(view)
    out = buffer.getvalue()
    assert "50/100 requests" in out
    assert "errors 2  local replies 1  non-2xx 1" in out
    assert "75.0% (expected 75.0%)" in out
    assert "v3" in out


def test_live_bars_differ_by_shape_without_colour() -> None:
    """0% and 100% must not look alike on a monochrome terminal (NO_COLOR, a screen reader's text)."""
    from rich.console import Console

    snap = ProbeSnapshot(
        done=10,
        planned=10,
        elapsed=1.0,
        counts={"v1": 10},
        expected={"v1": 50.0, "v2": 50.0},
        errors=0,
        local_replies=0,
        non_2xx=0,
        rate=10.0,
    )

    class Terminal(io.StringIO):
        def __init__(self, encoding: str) -> None:
            super().__init__()
            self.terminal_encoding = encoding

        @property
        def encoding(self) -> str:  # type: ignore[override]
            return self.terminal_encoding

    for encoding, full, empty, mark in (("utf-8", "█", "░", "┃"), ("ascii", "#", ".", "|")):
        buffer = Terminal(encoding)
        console = Console(file=buffer, width=120, color_system=None, no_color=True)
        console.print(live_view(lambda: snap))
        lines = {line.split()[0]: line for line in buffer.getvalue().splitlines() if line.strip()}
        assert "\x1b[" not in buffer.getvalue()  # no colour at all, and still readable:
        half = BAR_WIDTH // 2
        assert full * half + mark + full * (half - 1) in lines["v1"]  # 100%, mark at 50%
        assert empty * half + mark + empty * (half - 1) in lines["v2"]  # 0%, mark at 50%
        assert full * BAR_WIDTH in lines["progress"]


@pytest.mark.parametrize(
    ("pct", "expected", "bar"),
    [
        pytest.param(0.0, None, "░" * 10, id="empty"),
        pytest.param(100.0, None, "█" * 10, id="full"),
        pytest.param(75.0, 75.0, "█" * 7 + "┃" + "░" * 2, id="on-target"),
        pytest.param(30.0, 100.0, "█" * 3 + "░" * 6 + "┃", id="mark-at-the-end"),
    ],
)
def test_text_bar(pct: float, expected: float | None, bar: str) -> None:
    assert text_bar(pct, width=10, expected=expected) == bar
