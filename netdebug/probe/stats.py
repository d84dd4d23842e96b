"""Statistics for testing an observed traffic split against the configured weights. Pure: no I/O.

Invariants:
- Percentages are in points (0..100) at the edges (report, flags); proportions (0..1) inside.
- The chi-square p-value is computed here, without scipy: the upper regularized incomplete gamma
  function Q(k/2, x/2) (series below a+1, Lentz continued fraction above; Numerical Recipes §6.2).
- Verdict rule (one place, `judge`):
    fail          chi-square p < alpha, or some version's (1 - alpha) Wilson interval lies wholly
                  outside expected ± tolerance, or an answer came from a version that was not expected;
    pass          every version's `confidence` Wilson interval lies within expected ± tolerance;
    inconclusive  anything else. "You need about N requests" comes from netdebug/probe/samplesize.py,
                  which computes, under this very rule, how many answers an on-target split needs.
  The fail side uses the alpha-level interval so that "fail" is a rejection at level alpha (as the
  chi-square test is), while "pass" is an equivalence claim at the confidence level.
- Sequential early stop: `looks` pre-planned interim looks share alpha and 1 - confidence equally
  (Bonferroni alpha-spending). Whatever the look at which the run stops, the overall error rates stay
  below alpha (false fail) and 1 - confidence (false pass): a union bound over the looks.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Literal

Verdict = Literal["pass", "fail", "inconclusive", "none"]

_EPS = 1e-15
_TINY = 1e-300
_MAX_ITER = 10_000


def z_for_confidence(confidence: float) -> float:
    """Two-sided normal quantile: 0.95 -> 1.95996..."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    return NormalDist().inv_cdf(0.5 + confidence / 2.0)


@dataclass(frozen=True, slots=True)
class LookLevels:
    """The thresholds of one look: chi-square alpha and the two interval z values."""

    alpha: float  # chi-square alarm level of this look
    z_pass: float  # interval that must lie within the band for "pass"
    z_fail: float  # interval that must lie wholly outside the band for "fail"


def look_levels(alpha: float, confidence: float, looks: int = 1) -> LookLevels:
    """Bonferroni spending over `looks` planned looks: alpha/looks and (1 - confidence)/looks each."""
    if looks < 1:
        raise ValueError("looks must be >= 1")
    alpha_look = alpha / looks
    return LookLevels(
        alpha=alpha_look,
        z_pass=z_for_confidence(1.0 - (1.0 - confidence) / looks),
        z_fail=z_for_confidence(1.0 - alpha_look),
    )


def within_band(low_pct: float, high_pct: float, expected_pct: float, tolerance_pct: float) -> bool:
    """The pass test of one version: its interval lies within expected ± tolerance (points)."""
    return low_pct >= expected_pct - tolerance_pct and high_pct <= expected_pct + tolerance_pct


def wilson_interval(successes: int, trials: int, z: float) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion, as proportions. (0, 1) when trials == 0."""
    if trials <= 0:
        return 0.0, 1.0
    p = successes / trials
    z2 = z * z
    denom = 1.0 + z2 / trials
    centre = (p + z2 / (2.0 * trials)) / denom
    half = z * math.sqrt(p * (1.0 - p) / trials + z2 / (4.0 * trials * trials)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def _lower_gamma_series(a: float, x: float) -> float:
    """P(a, x) by its power series; converges fast for x < a + 1."""
    term = 1.0 / a
    total = term
    ap = a
    for _ in range(_MAX_ITER):
        ap += 1.0
        term *= x / ap
        total += term
        if abs(term) < abs(total) * _EPS:
            break
    return total * math.exp(-x + a * math.log(x) - math.lgamma(a))


def _upper_gamma_fraction(a: float, x: float) -> float:
    """Q(a, x) by its continued fraction (modified Lentz); converges fast for x >= a + 1."""
    b = x + 1.0 - a
    c = 1.0 / _TINY
    d = 1.0 / b
    h = d
    for i in range(1, _MAX_ITER):
        an = -i * (i - a)
        b += 2.0
        d = an * d + b
        if abs(d) < _TINY:
            d = _TINY
        c = b + an / c
        if abs(c) < _TINY:
            c = _TINY
        d = 1.0 / d
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < _EPS:
            break
    return math.exp(-x + a * math.log(x) - math.lgamma(a)) * h


def gammaincc(a: float, x: float) -> float:
    """Upper regularized incomplete gamma Q(a, x) = Γ(a, x) / Γ(a), for a > 0, x >= 0."""
    if a <= 0.0:
        raise ValueError("a must be > 0")
    if x <= 0.0:
        return 1.0
    if x < a + 1.0:
        return max(0.0, 1.0 - _lower_gamma_series(a, x))
    return min(1.0, _upper_gamma_fraction(a, x))


def chi2_sf(statistic: float, dof: int) -> float:
    """Survival function of the chi-square distribution: P(X >= statistic)."""
    if dof <= 0:
        return 1.0
    return gammaincc(dof / 2.0, statistic / 2.0)


@dataclass(frozen=True, slots=True)
class ChiSquare:
    statistic: float
    dof: int
    p_value: float


def chi_square_gof(observed: Sequence[int], expected_probs: Sequence[float]) -> ChiSquare:
    """Pearson goodness-of-fit of counts against probabilities (normalised here; all must be > 0)."""
    if len(observed) != len(expected_probs):
        raise ValueError("observed and expected differ in length")
    total_p = sum(expected_probs)
    if total_p <= 0 or any(p <= 0 for p in expected_probs):
        raise ValueError("expected probabilities must be positive")
    n = sum(observed)
    dof = len(observed) - 1
    if n == 0 or dof == 0:
        return ChiSquare(0.0, max(dof, 0), 1.0)
    stat = chi_square_statistic(observed, expected_probs, n, total_p)
    return ChiSquare(stat, dof, chi2_sf(stat, dof))


def chi_square_statistic(
    observed: Sequence[int], expected_probs: Sequence[float], n: int, total_p: float
) -> float:
    """Pearson's statistic Σ (o − e)² / e, with e = n·p/Σp (inputs checked by chi_square_gof)."""
    stat = 0.0
    for o, p in zip(observed, expected_probs, strict=True):
        e = n * p / total_p
        stat += (o - e) * (o - e) / e
    return stat


def chi2_critical(alpha: float, dof: int) -> float:
    """The largest statistic whose chi2_sf p-value is still >= alpha (bisection on chi2_sf itself,
    so "p >= alpha" and "statistic <= chi2_critical(alpha)" agree with this module's p-values)."""
    if not 0.0 < alpha < 1.0 or dof < 1:
        raise ValueError("alpha must be in (0, 1) and dof >= 1")
    lo, hi = 0.0, 1.0
    while chi2_sf(hi, dof) >= alpha:
        lo, hi = hi, hi * 2.0
    for _ in range(200):
        mid = (lo + hi) / 2.0
        if mid in (lo, hi):
            break
        lo, hi = (mid, hi) if chi2_sf(mid, dof) >= alpha else (lo, mid)
    return lo


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default); q in [0, 100]. NaN when empty."""
    if not sorted_values:
        return math.nan
    if not 0.0 <= q <= 100.0:
        raise ValueError("q must be within [0, 100]")
    pos = (len(sorted_values) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    frac = pos - lo
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * frac


@dataclass(frozen=True, slots=True)
class VersionResult:
    version: str
    count: int
    observed_pct: float
    expected_pct: float | None  # None: an answer from a version nobody expected
    ci_low_pct: float
    ci_high_pct: float


@dataclass(frozen=True, slots=True)
class SplitJudgement:
    verdict: Verdict
    versions: tuple[VersionResult, ...]
    p_value: float | None
    needed_requests: int | None  # set when inconclusive
    reasons: tuple[str, ...]
    unexpected: tuple[str, ...]


def normalise_weights(weights: Mapping[str, float]) -> dict[str, float]:
    """Relative weights -> percentages summing to 100 (Istio weights need not sum to 100)."""
    total = sum(weights.values())
    if total <= 0:
        raise ValueError("weights must not all be zero")
    return {k: 100.0 * v / total for k, v in weights.items()}


def judge(
    counts: Mapping[str, int],
    expected_pct: Mapping[str, float] | None,
    *,
    tolerance_pct: float,
    alpha: float,
    confidence: float,
    looks: int = 1,
) -> SplitJudgement:
    """The split verdict; see the module header for the rule. `looks` > 1 spends alpha over looks."""
    levels = look_levels(alpha, confidence, looks)
    alpha_look, z_pass, z_fail = levels.alpha, levels.z_pass, levels.z_fail
    n = sum(counts.values())
    names = list(expected_pct) if expected_pct else []
    names += sorted(v for v in counts if v not in (expected_pct or {}))

    versions: list[VersionResult] = []
    for name in names:
        k = counts.get(name, 0)
        lo, hi = wilson_interval(k, n, z_pass)
        versions.append(
            VersionResult(
                version=name,
                count=k,
                observed_pct=100.0 * k / n if n else 0.0,
                expected_pct=expected_pct.get(name) if expected_pct else None,
                ci_low_pct=100.0 * lo,
                ci_high_pct=100.0 * hi,
            )
        )
    if not expected_pct:
        return SplitJudgement("none", tuple(versions), None, None, (), ())

    unexpected = tuple(
        v.version for v in versions if v.count > 0 and (v.expected_pct is None or v.expected_pct == 0.0)
    )
    if n == 0:
        return SplitJudgement(
            "fail", tuple(versions), None, None, ("no upstream answer carried a version",), ()
        )

    positive = [name for name in expected_pct if expected_pct[name] > 0]
    p_value: float | None = None
    if len(positive) >= 2:
        p_value = chi_square_gof(
            [counts.get(name, 0) for name in positive], [expected_pct[name] for name in positive]
        ).p_value
    elif positive and not unexpected:
        p_value = 1.0  # a single expected version and nothing else: the fit is exact

    reasons: list[str] = []
    if unexpected:
        reasons.append(
            "answers from unexpected version(s): " + ", ".join(f"{v} ({counts[v]})" for v in unexpected)
        )
    if p_value is not None and p_value < alpha_look:
        reasons.append(f"chi-square p = {p_value:.3g} < alpha {alpha_look:.3g}")
    tol = tolerance_pct
    for v in versions:
        if v.expected_pct is None:
            continue
        lo_f, hi_f = wilson_interval(v.count, n, z_fail)
        if 100.0 * hi_f < v.expected_pct - tol or 100.0 * lo_f > v.expected_pct + tol:
            reasons.append(
                f"{v.version}: {v.observed_pct:.1f}% is outside {v.expected_pct:.1f} ± {tol:g} points"
            )
    if reasons:
        return SplitJudgement("fail", tuple(versions), p_value, None, tuple(reasons), unexpected)

    if all(
        v.expected_pct is not None and within_band(v.ci_low_pct, v.ci_high_pct, v.expected_pct, tol)
        for v in versions
    ):
        return SplitJudgement("pass", tuple(versions), p_value, None, (), ())

    widest = max(versions, key=lambda v: v.ci_high_pct - v.ci_low_pct)
    reason = (
        f"intervals too wide for ±{tol:g} points (e.g. {widest.version}: "
        f"{widest.ci_low_pct:.1f}–{widest.ci_high_pct:.1f}%)"
    )
    # How many answers would do is computed once per report (samplesize.py), not at every look.
    return SplitJudgement("inconclusive", tuple(versions), p_value, None, (reason,), ())
