"""JUnit XML rendering (pure): counts, one element per outcome, escaping, invalid XML characters."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from netdebug.plan.junit import CaseOutcome, JUnitCase, JUnitSuite, render_junit

TIMESTAMP = "2026-01-02T03:04:05+00:00"


def case(name: str, outcome: CaseOutcome, message: str = "", output: str = "") -> JUnitCase:
    return JUnitCase(name, "netdebug.plan.http", 1.25, outcome, message, "fail" if message else "", output)


def parse(suites: list[JUnitSuite]) -> ET.Element:
    text = render_junit(suites)
    assert text.startswith('<?xml version="1.0" encoding="UTF-8"?>\n')
    return ET.fromstring(text.encode("utf-8"))


def test_counts_and_elements() -> None:
    cases = [
        case("ok", "passed"),
        case("mismatch", "failure", "status 503, expected 200"),
        case("unreachable", "error", "ConnectError"),
        case("later", "skipped", "not run (interrupted)"),
    ]
    root = parse([JUnitSuite("netdebug plan p.yaml", cases, 5.0, TIMESTAMP)])
    expected_totals = {"tests": "4", "failures": "1", "errors": "1", "skipped": "1", "time": "5.000"}
    assert {k: root.get(k) for k in expected_totals} == expected_totals
    (suite,) = root
    assert suite.tag == "testsuite"
    assert (suite.get("name"), suite.get("timestamp"), suite.get("tests")) == (
        "netdebug plan p.yaml",
        TIMESTAMP,
        "4",
    )
    elements = [(c.get("name"), [child.tag for child in c]) for c in suite]
    assert elements == [
        ("ok", []),
        ("mismatch", ["failure"]),
        ("unreachable", ["error"]),
        ("later", ["skipped"]),
    ]
    failure = suite[1].find("failure")
    assert failure is not None
    assert (failure.get("message"), failure.get("type"), failure.text) == (
        "status 503, expected 200",
        "fail",
        "status 503, expected 200",
    )
    assert suite[0].get("time") == "1.250"
    assert suite[0].get("classname") == "netdebug.plan.http"


def test_totals_add_up_over_suites() -> None:
    a = JUnitSuite("a", [case("1", "passed"), case("2", "failure", "x")], 1.0, TIMESTAMP)
    b = JUnitSuite("b", [case("3", "error", "y")], 2.5, TIMESTAMP)
    root = parse([a, b])
    assert (root.get("tests"), root.get("failures"), root.get("errors"), root.get("time")) == (
        "3",
        "1",
        "1",
        "3.500",
    )
    assert [s.get("tests") for s in root] == ["2", "1"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("<&>\"'", "<&>\"'", id="markup-escaped"),
        pytest.param("bell\x07 nul\x00", "bell\ufffd nul\ufffd", id="control-characters-replaced"),
        pytest.param("tab\tline\nfeed", "tab\tline\nfeed", id="whitespace-kept"),
        pytest.param("ünïcødé ✓", "ünïcødé ✓", id="unicode"),
    ],
)
def test_text_survives_a_round_trip(text: str, expected: str) -> None:
    root = parse([JUnitSuite(text, [case(text, "failure", text, output=text)], 0.0, TIMESTAMP)])
    suite = root[0]
    testcase = suite[0]
    failure = testcase.find("failure")
    assert failure is not None
    assert suite.get("name") == expected  # ElementTree writes tabs/newlines in attributes as references
    assert failure.text == expected
    assert testcase.findtext("system-out") == expected


def test_negative_time_is_clamped() -> None:
    root = parse([JUnitSuite("s", [JUnitCase("c", "k", -0.5, "passed")], -1.0, TIMESTAMP)])
    assert root.get("time") == "0.000"
    assert root[0][0].get("time") == "0.000"
