"""JUnit XML for CI systems (pure): one <testsuite> per plan, one <testcase> per step (`junit_suite`
maps a plan's result onto them; `render_junit` writes the XML).

The dialect is the common one (Jenkins, GitLab, GitHub test reporters): `<testsuites>` with
`tests`/`failures`/`errors`/`skipped`/`time`, and in each `<testcase>` at most one of `<failure>`
(the check ran and did not hold), `<error>` (the check could not run: unreachable, bad input) or
`<skipped>`, plus `<system-out>` with the attempt log. ElementTree does the escaping.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from netdebug.context import ExitStatus
from netdebug.plan.execute import STATUS_WORDS, PlanResult

CaseOutcome = Literal["passed", "failure", "error", "skipped"]


@dataclass(frozen=True)
class JUnitCase:
    name: str
    classname: str
    time_s: float
    outcome: CaseOutcome
    message: str = ""
    failure_type: str = ""
    output: str = ""


@dataclass(frozen=True)
class JUnitSuite:
    name: str
    cases: Sequence[JUnitCase]
    time_s: float
    timestamp: str  # ISO 8601, UTC


# XML 1.0 cannot carry most control characters, even escaped; a response body may hold them.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _clean(text: str) -> str:
    return _NOT_XML.sub("\ufffd", text)


def _seconds(value: float) -> str:
    return f"{max(value, 0.0):.3f}"


def _count(cases: Sequence[JUnitCase], outcome: CaseOutcome) -> int:
    return sum(1 for case in cases if case.outcome == outcome)


def _totals(element: ET.Element, cases: Sequence[JUnitCase], time_s: float) -> None:
    element.set("tests", str(len(cases)))
    element.set("failures", str(_count(cases, "failure")))
    element.set("errors", str(_count(cases, "error")))
    element.set("skipped", str(_count(cases, "skipped")))
    element.set("time", _seconds(time_s))


def render_junit(suites: Sequence[JUnitSuite]) -> str:
    """The XML document, with declaration, as text."""
    root = ET.Element("testsuites", {"name": "netdebug"})
    all_cases = [case for suite in suites for case in suite.cases]
    _totals(root, all_cases, sum(suite.time_s for suite in suites))
    for suite in suites:
        suite_el = ET.SubElement(
            root, "testsuite", {"name": _clean(suite.name), "timestamp": suite.timestamp}
        )
        _totals(suite_el, suite.cases, suite.time_s)
        for case in suite.cases:
            case_el = ET.SubElement(
                suite_el,
                "testcase",
                {
                    "name": _clean(case.name),
                    "classname": _clean(case.classname),
                    "time": _seconds(case.time_s),
                },
            )
            if case.outcome in ("failure", "error"):
                detail = ET.SubElement(case_el, case.outcome, {"message": _clean(case.message)})
                if case.failure_type:
                    detail.set("type", case.failure_type)
                detail.text = _clean(case.message)
            elif case.outcome == "skipped":
                ET.SubElement(case_el, "skipped", {"message": _clean(case.message)} if case.message else {})
            if case.output:
                ET.SubElement(case_el, "system-out").text = _clean(case.output)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


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
