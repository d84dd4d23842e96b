from __future__ import annotations

import random
from collections.abc import Callable

import pytest

from echo.controls import (
    DEFAULT_FAIL_STATUS,
    ControlError,
    Controls,
    parse_controls,
    parse_fail_attempts,
    parse_response_header,
    parse_status_mix,
    pick_status,
)

MAX_DELAY = 5_000


def fixed(value: float) -> Callable[[], float]:
    return lambda: value


def never_called() -> float:
    raise AssertionError("rng must only be used when a status mix is present")


def parse(
    headers: dict[str, list[str]] | None = None,
    query: dict[str, list[str]] | None = None,
    *,
    attempt: int | None = None,
    rng: Callable[[], float] = never_called,
) -> Controls:
    return parse_controls(headers or {}, query or {}, max_delay_ms=MAX_DELAY, attempt=attempt, rng=rng)


@pytest.mark.parametrize(
    ("headers", "query", "attempt", "draw", "expected"),
    [
        pytest.param({}, {}, None, None, Controls(), id="none"),
        pytest.param(
            {"x-set-response-status-code": ["401"]}, {}, None, None, Controls(status=401), id="status-header"
        ),
        pytest.param(
            {}, {"x-set-response-status-code": ["418"]}, None, None, Controls(status=418), id="status-query"
        ),
        pytest.param(
            {"x-set-response-status-code": ["401"]},
            {"x-set-response-status-code": ["500"]},
            None,
            None,
            Controls(status=401),
            id="header-beats-query",
        ),
        pytest.param(
            {"x-set-response-delay-ms": ["250"]}, {}, None, None, Controls(delay_ms=250), id="delay"
        ),
        pytest.param(
            {},
            {"x-set-response-delay-ms": ["999999"]},
            None,
            None,
            Controls(delay_ms=MAX_DELAY, delay_capped=True),
            id="capped",
        ),
        pytest.param({"x-set-response-delay-ms": ["0"]}, {}, None, None, Controls(), id="delay-zero"),
        pytest.param(
            {"x-set-response-content-type": [" text/plain; charset=utf-8 "]},
            {},
            None,
            None,
            Controls(content_type="text/plain; charset=utf-8"),
            id="content-type",
        ),
        pytest.param(
            {}, {"response_body_only": ["true"]}, None, None, Controls(body_only=True), id="body-only"
        ),
        pytest.param({}, {"response_body_only": ["false"]}, None, None, Controls(), id="body-only-false"),
        pytest.param(
            {"x-set-response-header": ["X-A: 1", "x-b:two words"]},
            {"x-set-response-header": ["X-C=3"]},
            None,
            None,
            Controls(headers=(("X-A", "1"), ("x-b", "two words"), ("X-C", "3"))),
            id="headers-header-and-query",
        ),
        pytest.param(
            {"x-set-response-status-mix": ["503:25,404:5"]},
            {},
            None,
            0.10,
            Controls(status=503),
            id="mix-first-band",
        ),
        pytest.param(
            {"x-set-response-status-mix": ["503:25,404:5"]},
            {},
            None,
            0.27,
            Controls(status=404),
            id="mix-second-band",
        ),
        pytest.param(
            {"x-set-response-status-mix": ["503:25,404:5"]}, {}, None, 0.30, Controls(), id="mix-rest"
        ),
        pytest.param(
            {"x-set-response-status-mix": ["503:25"], "x-set-response-status-code": ["201"]},
            {},
            None,
            0.99,
            Controls(status=201),
            id="mix-rest-keeps-fixed-status",
        ),
        pytest.param(
            {"x-set-response-status-mix": ["503:25"], "x-set-response-status-code": ["201"]},
            {},
            None,
            0.0,
            Controls(status=503),
            id="mix-beats-fixed-status",
        ),
        pytest.param(
            {"x-fail-attempts": ["2"]},
            {},
            None,
            None,
            Controls(status=DEFAULT_FAIL_STATUS),
            id="fail-no-count",
        ),
        pytest.param({"x-fail-attempts": ["2"]}, {}, 2, None, Controls(status=503), id="fail-attempt-2"),
        pytest.param({"x-fail-attempts": ["2"]}, {}, 3, None, Controls(), id="pass-attempt-3"),
        pytest.param(
            {"x-fail-attempts": ["1:500"]}, {}, 1, None, Controls(status=500), id="fail-chosen-status"
        ),
        pytest.param({"x-fail-attempts": ["0"]}, {}, 1, None, Controls(), id="fail-zero"),
        pytest.param(
            {"x-fail-attempts": ["1"], "x-set-response-status-mix": ["404:100"]},
            {},
            1,
            0.5,
            Controls(status=503),
            id="fail-beats-mix",
        ),
    ],
)
def test_parse_ok(
    headers: dict[str, list[str]],
    query: dict[str, list[str]],
    attempt: int | None,
    draw: float | None,
    expected: Controls,
) -> None:
    assert (
        parse(headers, query, attempt=attempt, rng=never_called if draw is None else fixed(draw)) == expected
    )


@pytest.mark.parametrize(
    ("headers", "query", "control", "message"),
    [
        pytest.param(
            {"x-set-response-status-code": ["abc"]},
            {},
            "x-set-response-status-code",
            "got 'abc'",
            id="status-word",
        ),
        pytest.param(
            {},
            {"x-set-response-status-code": ["99"]},
            "x-set-response-status-code",
            "200-599",
            id="status-low",
        ),
        pytest.param(
            {"x-set-response-status-code": ["101"]},
            {},
            "x-set-response-status-code",
            "200-599",
            id="status-1xx",
        ),
        pytest.param(
            {"x-set-response-status-code": ["600"]},
            {},
            "x-set-response-status-code",
            "200-599",
            id="status-high",
        ),
        pytest.param(
            {"x-set-response-status-code": ["-200"]},
            {},
            "x-set-response-status-code",
            "200-599",
            id="status-neg",
        ),
        pytest.param(
            {"x-set-response-delay-ms": ["1.5"]},
            {},
            "x-set-response-delay-ms",
            "whole milliseconds",
            id="delay-float",
        ),
        pytest.param(
            {}, {"x-set-response-delay-ms": ["-5"]}, "x-set-response-delay-ms", "whole", id="delay-negative"
        ),
        pytest.param(
            {"x-set-response-content-type": [" "]},
            {},
            "x-set-response-content-type",
            "not a media type",
            id="ct-empty",
        ),
        pytest.param(
            {"x-set-response-content-type": ["not a type"]},
            {},
            "x-set-response-content-type",
            "not a media type",
            id="ct-words",
        ),
        pytest.param(
            {"x-set-response-content-type": ["text/html; charset"]},
            {},
            "x-set-response-content-type",
            "not a media type",
            id="ct-parameter-without-value",
        ),
        pytest.param(
            {},
            {"x-set-response-content-type": ["a\nb"]},
            "x-set-response-content-type",
            "not a media type",
            id="ct-newline",
        ),
        pytest.param(
            {}, {"response_body_only": ["maybe"]}, "response_body_only", "true or false", id="body-only-word"
        ),
        pytest.param(
            {"x-set-response-header": ["novalue"]}, {}, "x-set-response-header", "Name: value", id="hdr-shape"
        ),
        pytest.param(
            {"x-set-response-header": [": v"]}, {}, "x-set-response-header", "Name: value", id="hdr-no-name"
        ),
        pytest.param(
            {"x-set-response-header": ["a b: v"]},
            {},
            "x-set-response-header",
            "not a header",
            id="hdr-bad-name",
        ),
        pytest.param(
            {"x-set-response-header": ["Content-Length: 5"]},
            {},
            "x-set-response-header",
            "cannot be set",
            id="hdr-framing",
        ),
        pytest.param(
            {},
            {"x-set-response-header": ["x-echo-pod=evil"]},
            "x-set-response-header",
            "cannot",
            id="hdr-ours",
        ),
        pytest.param(
            {}, {"x-set-response-header": ["x-a: b\rc"]}, "x-set-response-header", "control char", id="hdr-cr"
        ),
        pytest.param(
            {"x-set-response-status-mix": [""]},
            {},
            "x-set-response-status-mix",
            "got nothing",
            id="mix-empty",
        ),
        pytest.param(
            {"x-set-response-status-mix": ["503"]},
            {},
            "x-set-response-status-mix",
            "STATUS:PERCENT",
            id="mix-shape",
        ),
        pytest.param(
            {"x-set-response-status-mix": ["503:x"]},
            {},
            "x-set-response-status-mix",
            "percentage",
            id="mix-word",
        ),
        pytest.param(
            {"x-set-response-status-mix": ["503:101"]},
            {},
            "x-set-response-status-mix",
            "0-100",
            id="mix-over",
        ),
        pytest.param(
            {"x-set-response-status-mix": ["503:-1"]},
            {},
            "x-set-response-status-mix",
            "percentage",
            id="mix-neg",
        ),
        pytest.param(
            {"x-set-response-status-mix": ["503:60,500:50"]},
            {},
            "x-set-response-status-mix",
            "more than 100",
            id="mix-sum",
        ),
        pytest.param(
            {"x-set-response-status-mix": ["42:5"]},
            {},
            "x-set-response-status-mix",
            "200-599",
            id="mix-status",
        ),
        pytest.param({"x-fail-attempts": ["two"]}, {}, "x-fail-attempts", "or N:STATUS", id="fail-word"),
        pytest.param({"x-fail-attempts": ["-1"]}, {}, "x-fail-attempts", "or N:STATUS", id="fail-negative"),
        pytest.param({"x-fail-attempts": ["2:ok"]}, {}, "x-fail-attempts", "200-599", id="fail-status-word"),
    ],
)
def test_parse_errors(
    headers: dict[str, list[str]], query: dict[str, list[str]], control: str, message: str
) -> None:
    with pytest.raises(ControlError) as info:
        parse(headers, query, rng=fixed(0.5))
    assert info.value.control == control
    assert message in info.value.message
    assert info.value.to_json() == {"error": f"{control}: {info.value.message}", "control": control}


def test_status_mix_parsing() -> None:
    assert parse_status_mix(" 503:25 , 404:5.5,") == ((503, 25.0), (404, 5.5))
    assert parse_status_mix("500:100") == ((500, 100.0),)


@pytest.mark.parametrize(
    ("draw", "expected"),
    [
        pytest.param(0.0, 503, id="zero"),
        pytest.param(0.2499, 503, id="just-below-25"),
        pytest.param(0.25, 404, id="at-25"),
        pytest.param(0.2999, 404, id="just-below-30"),
        pytest.param(0.30, None, id="at-30"),
        pytest.param(0.9999, None, id="top"),
    ],
)
def test_pick_status_bands(draw: float, expected: int | None) -> None:
    assert pick_status(((503, 25.0), (404, 5.0)), draw) == expected


def test_status_mix_proportions_with_seeded_rng() -> None:
    # Seeded: deterministic. 20,000 draws put 25% within ±1.5 pp with overwhelming probability anyway.
    rng = random.Random(1234)
    mix = parse_status_mix("503:25,404:5")
    counts: dict[int | None, int] = {}
    for _ in range(20_000):
        status = pick_status(mix, rng.random())
        counts[status] = counts.get(status, 0) + 1
    assert abs(counts[503] / 20_000 - 0.25) < 0.015
    assert abs(counts[404] / 20_000 - 0.05) < 0.008
    assert abs(counts[None] / 20_000 - 0.70) < 0.015


def test_fail_attempts_and_header_parsing() -> None:
    assert parse_fail_attempts(" 3 ") == (3, 503)
    assert parse_fail_attempts("3:429") == (3, 429)
    assert parse_response_header("X-Thing: a: b") == ("X-Thing", "a: b")
    assert parse_response_header("x-eq=a=b") == ("x-eq", "a=b")
    assert parse_response_header("x-empty:") == ("x-empty", "")
