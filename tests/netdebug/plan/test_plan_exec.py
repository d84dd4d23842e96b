"""Plan executor: repeats, convergence, worst exit code, interruption, reports — with a fake clock and
scripted step runners (no sockets)."""

from __future__ import annotations

import asyncio
import json
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from datetime import UTC, datetime

import pytest

from netdebug.context import ExitStatus
from netdebug.plan.execute import SEVERITY, Outcome, PlanResult, Progress, execute, worst
from netdebug.plan.junit import junit_suite, render_junit
from netdebug.plan.model import DnsSpec, Plan, Repeat, Step
from netdebug.plan.report import final_line, result_json

OK, FAIL, INC, UNR, USE = (
    ExitStatus.OK,
    ExitStatus.MISMATCH,
    ExitStatus.INCONCLUSIVE,
    ExitStatus.UNREACHABLE,
    ExitStatus.USAGE,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class Script:
    """Each step name maps to the statuses its attempts return, in order; each attempt takes 2 s."""

    def __init__(self, clock: FakeClock, outcomes: dict[str, Sequence[ExitStatus]]) -> None:
        self.clock = clock
        self.outcomes = {name: list(statuses) for name, statuses in outcomes.items()}
        self.calls: list[str] = []

    async def __call__(self, step: Step, progress: Progress) -> Outcome:
        self.calls.append(step.name)
        progress(f"running {step.name}")
        self.clock.now += 2.0
        status = self.outcomes[step.name].pop(0)
        return Outcome(status, f"{step.name} {status.name.lower()}")


def make_plan(*steps: tuple[str, Repeat]) -> Plan:
    return Plan(
        "p.yaml",
        tuple(
            Step(i, name, "dns", DnsSpec("localhost"), repeat) for i, (name, repeat) in enumerate(steps, 1)
        ),
    )


def run(plan: Plan, outcomes: dict[str, Sequence[ExitStatus]]) -> tuple[PlanResult, Script, FakeClock]:
    clock = FakeClock()
    script = Script(clock, outcomes)
    fixed = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    result = asyncio.run(execute(plan, script, clock=clock, sleep=clock.sleep, now=lambda: fixed))
    return result, script, clock


REPEAT_CASES = [
    pytest.param(Repeat(1, 1), [OK], OK, 1, True, id="single-pass"),
    pytest.param(Repeat(1, 1), [FAIL], FAIL, 1, False, id="single-fail"),
    pytest.param(Repeat(3, 10), [OK, OK, OK], OK, 3, True, id="three-in-a-row-at-once"),
    pytest.param(Repeat(3, 10), [FAIL, OK, OK, FAIL, OK, OK, OK], OK, 7, True, id="converges-after-reset"),
    pytest.param(Repeat(1, 4), [UNR, UNR, OK], OK, 3, True, id="retry-until-first-pass"),
    pytest.param(Repeat(3, 4), [FAIL, FAIL], FAIL, 2, False, id="stops-once-convergence-impossible"),
    pytest.param(Repeat(3, 4), [FAIL, FAIL, OK, OK], FAIL, 2, False, id="never-wastes-attempts"),
    pytest.param(Repeat(2, 4), [OK, INC, OK, FAIL], FAIL, 4, False, id="latest-non-pass-status"),
    pytest.param(Repeat(2, 3), [OK, INC], INC, 2, False, id="inconclusive-then-hopeless"),
    pytest.param(Repeat(2, 3), [FAIL, OK, OK], OK, 3, True, id="converges-on-last-attempt"),
    pytest.param(Repeat(2, 2), [OK, OK], OK, 2, True, id="exactly-max"),
]


@pytest.mark.parametrize(("repeat", "statuses", "expected", "attempts", "converged"), REPEAT_CASES)
def test_repeat_until_n_passes(
    repeat: Repeat, statuses: list[ExitStatus], expected: ExitStatus, attempts: int, converged: bool
) -> None:
    result, script, clock = run(make_plan(("s", repeat)), {"s": statuses})
    (step,) = result.steps
    assert step.status == expected
    assert len(step.attempts) == attempts == len(script.calls)
    assert step.converged is converged
    assert result.status == expected
    # Attempts are `interval` apart (the default 1 s) and each attempt took 2 s on the fake clock.
    assert clock.sleeps == [repeat.interval] * (attempts - 1)
    assert step.duration_s == pytest.approx(2.0 * attempts + repeat.interval * (attempts - 1))
    assert [a.started_s for a in step.attempts] == pytest.approx([3.0 * i for i in range(attempts)])


def test_zero_interval_does_not_sleep() -> None:
    _, _, clock = run(make_plan(("s", Repeat(2, 3, 0.0))), {"s": [OK, OK]})
    assert clock.sleeps == []


def test_severity_order_is_documented_order() -> None:
    assert SEVERITY == (OK, INC, FAIL, UNR, USE, ExitStatus.INTERRUPTED)


WORST_CASES = [
    pytest.param([], OK, id="empty"),
    pytest.param([OK, OK], OK, id="all-pass"),
    pytest.param([OK, INC], INC, id="inconclusive"),
    pytest.param([INC, FAIL, OK], FAIL, id="fail-beats-inconclusive"),
    pytest.param([FAIL, UNR], UNR, id="unreachable-beats-fail"),
    pytest.param([UNR, USE], USE, id="usage-beats-unreachable"),
    pytest.param([USE, ExitStatus.INTERRUPTED], ExitStatus.INTERRUPTED, id="interrupted-beats-all"),
]


@pytest.mark.parametrize(("statuses", "expected"), WORST_CASES)
def test_worst(statuses: list[ExitStatus], expected: ExitStatus) -> None:
    assert worst(statuses) == expected


def test_all_steps_run_and_plan_exit_is_worst_step() -> None:
    plan = make_plan(("a", Repeat()), ("b", Repeat()), ("c", Repeat()), ("d", Repeat()))
    result, script, _ = run(plan, {"a": [INC], "b": [OK], "c": [FAIL], "d": [OK]})
    assert script.calls == ["a", "b", "c", "d"]
    assert [s.status for s in result.steps] == [INC, OK, FAIL, OK]
    assert result.status == FAIL
    assert result.duration_s == pytest.approx(8.0)
    assert final_line(result) == "plan p.yaml: fail (1 inconclusive, 2 pass, 1 fail) in 8.0s, exit 1"


def test_runner_exceptions_become_step_results() -> None:
    from netdebug.context import UsageError

    async def broken(step: Step, progress: Progress) -> Outcome:
        if step.name == "usage":
            raise UsageError("bad option")
        raise RuntimeError("boom")

    plan = make_plan(("usage", Repeat()), ("boom", Repeat()))
    result = asyncio.run(execute(plan, broken, sleep=FakeClock().sleep))
    assert [(s.status, s.attempts[0].outcome.summary) for s in result.steps] == [
        (USE, "bad option"),
        (UNR, "RuntimeError: boom"),
    ]
    assert result.status == USE


def test_interrupt_skips_the_rest_and_exits_130() -> None:
    async def interrupted(step: Step, progress: Progress) -> Outcome:
        if step.name == "b":
            raise asyncio.CancelledError
        return Outcome(OK, "fine")

    plan = make_plan(("a", Repeat()), ("b", Repeat()), ("c", Repeat()))
    result = asyncio.run(execute(plan, interrupted, sleep=FakeClock().sleep))
    assert result.interrupted
    assert result.status == ExitStatus.INTERRUPTED
    assert [s.word for s in result.steps] == ["pass", "interrupted", "skipped"]
    assert result.steps[1].summary == "interrupted during attempt 1"
    assert result.steps[2].summary == "not run (interrupted)"


def test_events_are_reported_in_order() -> None:
    seen: list[str] = []

    class Recorder:
        def step_started(self, step: Step, total: int) -> None:
            seen.append(f"start {step.name}/{total}")

        def attempt_started(self, step: Step, number: int) -> None:
            seen.append(f"attempt {step.name}#{number}")

        def progress(self, step: Step, text: str) -> None:
            seen.append(f"progress {text}")

        def attempt_finished(self, step: Step, attempt: object) -> None:
            seen.append(f"done {step.name}")

        def step_finished(self, result: object, total: int) -> None:
            seen.append("finished")

    clock = FakeClock()
    script = Script(clock, {"a": [FAIL, OK]})
    asyncio.run(
        execute(make_plan(("a", Repeat(1, 2))), script, clock=clock, sleep=clock.sleep, events=Recorder())
    )
    assert seen == [
        "start a/1",
        "attempt a#1",
        "progress running a",
        "done a",
        "attempt a#2",
        "progress running a",
        "done a",
        "finished",
    ]


def test_json_and_junit_reports() -> None:
    plan = make_plan(
        ("mesh split", Repeat(2, 3)), ("no route", Repeat()), ("gateway", Repeat()), ("dns", Repeat())
    )
    result, _, _ = run(
        plan, {"mesh split": [FAIL, OK, OK], "no route": [FAIL], "gateway": [INC], "dns": [UNR]}
    )
    doc = result_json(result, {"mode": "classic"})
    json.dumps(doc)  # serialisable as is
    assert doc["exit_code"] == 4
    assert doc["status"] == "error"
    assert doc["started_at"] == "2026-01-02T03:04:05+00:00"
    steps = doc["steps"]
    assert isinstance(steps, list)
    first = steps[0]
    assert first["status"] == "pass"
    assert first["converged"] is True
    assert first["passes_in_a_row"] == 2
    assert [a["status"] for a in first["attempts"]] == ["fail", "pass", "pass"]
    assert [s["status"] for s in steps] == ["pass", "fail", "inconclusive", "error"]

    root = ET.fromstring(render_junit([junit_suite(result)]))
    assert root.tag == "testsuites"
    assert (root.get("tests"), root.get("failures"), root.get("errors"), root.get("skipped")) == (
        "4",
        "2",
        "1",
        "0",
    )
    (suite,) = root.findall("testsuite")
    assert suite.get("name") == "netdebug plan p.yaml"
    cases = suite.findall("testcase")
    assert [c.get("name") for c in cases] == ["mesh split", "no route", "gateway", "dns"]
    assert cases[0].find("failure") is None
    assert cases[0].find("error") is None
    out = cases[0].findtext("system-out") or ""
    assert out.splitlines()[0].startswith("attempt 1: fail")
    failure = cases[2].find("failure")
    assert failure is not None
    assert failure.get("type") == "inconclusive"
    error = cases[3].find("error")
    assert error is not None
    assert "dns unreachable" in (error.get("message") or "")
    assert float(cases[0].get("time") or 0) == pytest.approx(2.0 * 3 + 2.0)
