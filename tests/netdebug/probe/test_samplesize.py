"""The sample-size advice ("you need about N requests"): exact against an enumeration of the judge's
verdicts, and against seeded simulations of the probe's own verdict rule (including --early-stop's
sequential looks and three versions)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from functools import cache

import numpy as np
import pytest
from scipy import special, stats

from netdebug.probe.samplesize import (
    PLAN_POWER,
    _Evaluator,
    _Rule,
    betainc,
    binomial_cdf,
    binomial_pmf,
    binomial_sf,
    pass_probability,
    required_requests,
)
from netdebug.probe.stats import chi2_critical, chi2_sf, judge

ALPHA = 0.001
CONFIDENCE = 0.95


def split(first: float) -> dict[str, float]:
    return {"v1": first, "v2": 100.0 - first} if first < 100.0 else {"v1": 100.0}


@pytest.mark.parametrize(
    ("a", "b", "x"),
    [
        pytest.param(0.5, 0.5, 0.3, id="small"),
        pytest.param(5.0, 3.0, 0.2, id="left"),
        pytest.param(5.0, 3.0, 0.9, id="right"),
        pytest.param(750.0, 251.0, 0.74, id="binomial-1000"),
        pytest.param(24_000.0, 8_000.0, 0.752, id="binomial-32000"),
        pytest.param(1.0, 1.0, 0.5, id="uniform"),
    ],
)
def test_betainc_matches_scipy(a: float, b: float, x: float) -> None:
    assert betainc(a, b, x) == pytest.approx(float(special.betainc(a, b, x)), rel=1e-9, abs=1e-14)


@pytest.mark.parametrize(("n", "p"), [(1, 0.5), (50, 0.75), (1000, 0.25), (20_000, 0.99)])
def test_binomial_matches_scipy(n: int, p: float) -> None:
    dist = stats.binom(n, p)
    for k in {0, 1, round(n * p) - 1, round(n * p), n - 1, n}:
        assert binomial_pmf(k, n, p) == pytest.approx(float(dist.pmf(k)), rel=1e-9, abs=1e-300)
        assert binomial_cdf(k, n, p) == pytest.approx(float(dist.cdf(k)), rel=1e-8, abs=1e-14)
        assert binomial_sf(k, n, p) == pytest.approx(float(dist.sf(k - 1)), rel=1e-8, abs=1e-14)


def test_chi2_critical_is_where_the_p_value_crosses_alpha() -> None:
    critical = chi2_critical(ALPHA, 1)
    assert critical == pytest.approx(float(stats.chi2.isf(ALPHA, 1)), rel=1e-9)
    assert chi2_sf(critical, 1) >= ALPHA > chi2_sf(math.nextafter(critical, math.inf) * (1 + 1e-12), 1)


def _enumerated(n: int, expected: Mapping[str, float], tol: float, looks: int = 1) -> float:
    """P(pass) by running judge on every count k of the first version, weighted by its pmf."""
    names = list(expected)
    if len(names) == 1:
        verdict = judge({names[0]: n}, expected, tolerance_pct=tol, alpha=ALPHA, confidence=CONFIDENCE)
        return 1.0 if verdict.verdict == "pass" else 0.0
    pmf = stats.binom(n, expected[names[0]] / 100.0).pmf(np.arange(n + 1))
    total = 0.0
    for k in range(n + 1):
        counts = {names[0]: k, names[1]: n - k}
        verdict = judge(counts, expected, tolerance_pct=tol, alpha=ALPHA, confidence=CONFIDENCE, looks=looks)
        total += float(pmf[k]) if verdict.verdict == "pass" else 0.0
    return total


@pytest.mark.parametrize(
    ("first", "tol", "n"),
    [
        pytest.param(75.0, 5.0, 500, id="75-25-tol5-n500"),
        pytest.param(75.0, 5.0, 988, id="75-25-tol5-n988"),
        pytest.param(50.0, 1.0, 3000, id="50-50-tol1"),
        pytest.param(80.0, 5.0, 50, id="80-20-n50"),
        pytest.param(99.0, 1.0, 1719, id="99-1-tol1"),
        pytest.param(100.0, 5.0, 72, id="100-0-n72"),
        pytest.param(100.0, 5.0, 73, id="100-0-n73"),
    ],
)
def test_pass_probability_is_the_judge_enumerated(first: float, tol: float, n: int) -> None:
    expected = split(first)
    got = pass_probability(n, expected, tolerance_pct=tol, alpha=ALPHA, confidence=CONFIDENCE)
    assert got == pytest.approx(_enumerated(n, expected, tol), abs=1e-9)


def test_zero_weight_versions_are_certain() -> None:
    expected = {"v1": 100.0, "v2": 0.0}
    for n in (72, 73, 500):
        counts = {"v1": n, "v2": 0}
        verdict = judge(counts, expected, tolerance_pct=5.0, alpha=ALPHA, confidence=CONFIDENCE).verdict
        passes = verdict == "pass"
        probability = pass_probability(n, expected, tolerance_pct=5.0, alpha=ALPHA, confidence=CONFIDENCE)
        assert probability == (1.0 if passes else 0.0)


@pytest.mark.parametrize(("first", "tol"), [(75.0, 5.0), (50.0, 2.0), (95.0, 10.0)])
def test_incremental_steps_equal_exact_evaluation(first: float, tol: float) -> None:
    rule = _Rule(split(first), tol, ALPHA, CONFIDENCE, 1)
    stepping, fresh = _Evaluator(rule), _Evaluator(rule)
    stepping.at(100)
    for n in range(101, 1_200):
        assert stepping.next() == pytest.approx(fresh.at(n), abs=1e-10), n


def test_the_figures_the_issue_reported_wrong() -> None:
    """All answers v2 with --expect v2=1 needs 73 (the 95% Wilson lower bound of 73/73 is 95.0%);
    80/20 needs far fewer than 3,934; 75/25 at the default -n 500 passes less than half the time."""

    def needed(expected: dict[str, float]) -> int | None:
        return required_requests(expected, tolerance_pct=5.0, alpha=ALPHA, confidence=CONFIDENCE).requests

    def probability(n: int, expected: dict[str, float]) -> float:
        return pass_probability(n, expected, tolerance_pct=5.0, alpha=ALPHA, confidence=CONFIDENCE)

    assert needed({"v2": 100.0}) == 73
    assert needed({"v1": 80.0, "v2": 20.0}) == 852
    assert needed({"v1": 75.0, "v2": 25.0}) == 988
    assert probability(500, {"v1": 75.0, "v2": 25.0}) == pytest.approx(0.461, abs=0.001)
    assert probability(1000, {"v1": 80.0, "v2": 20.0}) > 0.95


def test_unreachable_power_says_so() -> None:
    # alpha 0.2: the chi-square test alone fails 20% of on-target runs, so 90% is out of reach.
    advice = required_requests({"v1": 75.0, "v2": 25.0}, tolerance_pct=5.0, alpha=0.2, confidence=0.95)
    assert advice.requests is None
    assert advice.ceiling == pytest.approx(0.8)


# --- against simulation -----------------------------------------------------------------------------

RUNS = 4_000  # simulated probe runs per sample size: standard error ≤ 0.5 points at 90%


@cache
def _verdict(k: int, n: int, first: float, tol: float, looks: int) -> str:
    expected = split(first)
    counts = {"v1": k, "v2": n - k} if first < 100.0 else {"v1": n}
    return judge(counts, expected, tolerance_pct=tol, alpha=ALPHA, confidence=CONFIDENCE, looks=looks).verdict


def _simulated_pass_rate(n: int, first: float, tol: float, seed: int, looks: int = 1) -> float:
    """Seeded runs of n answers from the expected split, judged as the probe judges them; with
    looks > 1, --early-stop's looks at every tenth of n, stopping at the first pass or fail."""
    rng = np.random.default_rng(seed)
    p = first / 100.0
    if looks == 1:
        ks = rng.binomial(n, p, size=RUNS)
        return float(np.mean([_verdict(int(k), n, first, tol, 1) == "pass" for k in ks]))
    step = max(1, math.ceil(n / looks))
    edges = [*range(step, n, step), n]
    increments = rng.binomial(np.diff([0, *edges]), p, size=(RUNS, len(edges)))
    passes = 0
    for row in np.cumsum(increments, axis=1):
        for seen, k in zip(edges, row, strict=True):
            verdict = _verdict(int(k), seen, first, tol, looks)
            if verdict in ("pass", "fail") or seen == n:
                passes += verdict == "pass"
                break
    return passes / RUNS


SPLITS = [50.0, 60.0, 75.0, 80.0, 90.0, 99.0, 100.0]
TOLERANCES = [1.0, 2.0, 5.0, 10.0]


@pytest.mark.parametrize("tol", TOLERANCES, ids=lambda t: f"tol{t:g}")
@pytest.mark.parametrize("first", SPLITS, ids=lambda f: f"{f:g}-{100 - f:g}")
def test_n_passes_90_percent_in_simulation(first: float, tol: float) -> None:
    def probability(n: int) -> float:
        return pass_probability(n, split(first), tolerance_pct=tol, alpha=ALPHA, confidence=CONFIDENCE)

    needed = required_requests(split(first), tolerance_pct=tol, alpha=ALPHA, confidence=CONFIDENCE).requests
    assert needed is not None
    seed = int(first * 100 + tol)
    standard_error = math.sqrt(PLAN_POWER * (1 - PLAN_POWER) / RUNS)
    at_n = _simulated_pass_rate(needed, first, tol, seed)
    assert at_n >= PLAN_POWER - 4 * standard_error, (needed, at_n)
    # The computation is the simulation's expectation, also with fewer answers.
    fewer = max(1, round(needed * 0.8))
    exact_fewer = probability(fewer)
    assert _simulated_pass_rate(fewer, first, tol, seed + 1) == pytest.approx(exact_fewer, abs=0.03)
    # N is the smallest such n: one answer less is a dip below 90% (the last one).
    assert probability(needed - 1) < PLAN_POWER


@pytest.mark.parametrize(("first", "tol"), [(75.0, 5.0), (50.0, 10.0), (90.0, 2.0)])
def test_no_dip_below_90_percent_after_n(first: float, tol: float) -> None:
    """N is past the last dip of the zig-zag: every n up to 2N still passes at least 90%."""
    rule = _Rule(split(first), tol, ALPHA, CONFIDENCE, 1)
    needed = required_requests(split(first), tolerance_pct=tol, alpha=ALPHA, confidence=CONFIDENCE).requests
    assert needed is not None
    evaluator = _Evaluator(rule)
    assert evaluator.at(needed) >= PLAN_POWER
    for n in range(needed + 1, 2 * needed):
        assert evaluator.next() >= PLAN_POWER, n


@pytest.mark.parametrize(("first", "tol"), [(75.0, 5.0), (50.0, 2.0), (100.0, 5.0)])
def test_early_stop_n_passes_90_percent_in_simulation(first: float, tol: float) -> None:
    advice = required_requests(split(first), tolerance_pct=tol, alpha=ALPHA, confidence=CONFIDENCE, looks=10)
    assert advice.requests is not None
    single = required_requests(split(first), tolerance_pct=tol, alpha=ALPHA, confidence=CONFIDENCE)
    assert single.requests is not None
    assert advice.requests > single.requests  # the spent levels cost answers
    rate = _simulated_pass_rate(advice.requests, first, tol, seed=7, looks=10)
    assert rate >= PLAN_POWER - 4 * math.sqrt(PLAN_POWER * (1 - PLAN_POWER) / RUNS)


def test_three_versions_bound_is_safe_and_close() -> None:
    """Three versions: the Bonferroni bound's N passes at least 90% in a multinomial simulation, and
    is not wasteful: with 20% fewer answers fewer than 90% of runs pass."""
    expected = {"v1": 50.0, "v2": 30.0, "v3": 20.0}
    advice = required_requests(expected, tolerance_pct=5.0, alpha=ALPHA, confidence=CONFIDENCE)
    assert advice.requests is not None
    assert not advice.exact

    def rate(n: int, seed: int) -> float:
        rng = np.random.default_rng(seed)
        draws = rng.multinomial(n, [0.5, 0.3, 0.2], size=RUNS)
        passed = 0
        for a, b, c in draws:
            counts = {"v1": int(a), "v2": int(b), "v3": int(c)}
            verdict = judge(counts, expected, tolerance_pct=5.0, alpha=ALPHA, confidence=CONFIDENCE)
            passed += verdict.verdict == "pass"
        return passed / RUNS

    assert rate(advice.requests, seed=11) >= PLAN_POWER
    assert rate(round(advice.requests * 0.8), seed=12) < PLAN_POWER
