"""How many answers a split test needs: the advice behind "you need about N requests". Pure: no I/O.

The rule. N is the smallest n such that, if the true split equals the expected one, every run of n or
more answers gets the verdict PASS with probability at least `power` (90%), under the probe's own
verdict rule (stats.judge): each expected version's Wilson interval at the confidence level lies
within expected ± tolerance, and the chi-square p-value is not below alpha — with --early-stop, at the
levels the final look spends.

How it is computed:
- Versions expected at 0% or 100% are certain: their counts are 0 or n, and their interval condition
  holds from some n on (found by bisection).
- Two versions strictly between 0 and 100% (the usual v1/v2 split): exactly. The count of the first
  is Binomial(n, p); the counts that pass form an interval [L, U] (both Wilson bounds rise with the
  count, the chi-square p-value falls with the distance from n·p), found with the judge's own
  functions, so P(pass) = P(L ≤ X ≤ U) from the regularized incomplete beta function.
- Three or more such versions: a lower bound (Bonferroni), 1 − Σ P(version i misses its band) −
  alpha. Conservative: N may be somewhat larger than needed.
- --early-stop: the chance to pass by the end is at least the final look's minus the fail budget of
  the earlier looks, alpha·(looks − 1)/looks (approximately: the chi-square level is asymptotic).
- P(pass) zig-zags as n grows, by about a point near N: counts are whole numbers, so the edges of
  [L, U] jump by one. N is past the last dip. It is found by bisection on P, then a scan of about
  ±2·√n/σ answers around the crossing (the zig-zag spans at most 0.43·√n/σ), in O(1) per step: the
  binomial tails follow n by recurrences (P(X' ≤ k) = P(X ≤ k) − p·P(X = k) for X' = X + Bernoulli).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from statistics import NormalDist

from netdebug.probe.stats import (
    LookLevels,
    chi2_critical,
    chi_square_statistic,
    look_levels,
    wilson_interval,
)

PLAN_POWER = 0.90  # the stated probability of "you need about N requests"
MAX_REQUESTS = 100_000_000  # beyond this the advice is "more than" (days of probing at any rate)
# How far around the crossing the zig-zag is scanned, in units of √n/σ. Over splits 50/50…99/1 and
# tolerances 1…10 points the first n passing 90% and the last dip lie at most 0.43 units apart.
ZIGZAG_REACH = 2.0

_EPS = 1e-15
_TINY = 1e-300
_MAX_ITER = 100_000


# --- binomial distribution ----------------------------------------------------------------------


def _beta_fraction(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz; Numerical Recipes §6.4)."""
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c = 1.0
    d = 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) >= _TINY else _TINY)
    h = d
    for m in range(1, _MAX_ITER):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) >= _TINY else _TINY)
        c = 1.0 + aa / c
        c = c if abs(c) >= _TINY else _TINY
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) >= _TINY else _TINY)
        c = 1.0 + aa / c
        c = c if abs(c) >= _TINY else _TINY
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < _EPS:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """Regularized incomplete beta function I_x(a, b), for a, b > 0 and 0 <= x <= 1."""
    if a <= 0.0 or b <= 0.0:
        raise ValueError("a and b must be > 0")
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    if x < (a + 1.0) / (a + b + 2.0):
        return min(1.0, front * _beta_fraction(a, b, x) / a)
    return max(0.0, 1.0 - front * _beta_fraction(b, a, 1.0 - x) / b)


def binomial_pmf(k: int, n: int, p: float) -> float:
    if k < 0 or k > n:
        return 0.0
    if p <= 0.0 or p >= 1.0:
        return 1.0 if k == (n if p >= 1.0 else 0) else 0.0
    log = math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)
    return math.exp(log + k * math.log(p) + (n - k) * math.log1p(-p))


def binomial_cdf(k: int, n: int, p: float) -> float:
    """P(X <= k) for X ~ Binomial(n, p)."""
    if k < 0:
        return 0.0
    if k >= n:
        return 1.0
    return betainc(n - k, k + 1, 1.0 - p)


def binomial_sf(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p)."""
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    return betainc(k, n - k + 1, p)


# --- monotone thresholds ----------------------------------------------------------------------------

Predicate = Callable[[int], bool]


def _first_true(pred: Predicate, lo: int, hi: int) -> int:
    """The first k in [lo, hi] where a false…false true…true predicate holds; hi + 1 if none."""
    while lo <= hi:
        mid = (lo + hi) // 2
        if pred(mid):
            hi = mid - 1
        else:
            lo = mid + 1
    return lo


def _last_true(pred: Predicate, lo: int, hi: int) -> int:
    """The last k in [lo, hi] where a true…true false…false predicate holds; lo - 1 if none."""
    while lo <= hi:
        mid = (lo + hi) // 2
        if pred(mid):
            lo = mid + 1
        else:
            hi = mid - 1
    return hi


def _step_first_true(pred: Predicate, guess: int, lo: int, hi: int) -> int:
    """`_first_true` from a nearby previous answer: O(distance moved) instead of O(log n)."""
    k = min(max(guess, lo), hi + 1)
    while k > lo and pred(k - 1):
        k -= 1
    while k <= hi and not pred(k):
        k += 1
    return k


def _step_last_true(pred: Predicate, guess: int, lo: int, hi: int) -> int:
    k = min(max(guess, lo - 1), hi)
    while k < hi and pred(k + 1):
        k += 1
    while k >= lo and not pred(k):
        k -= 1
    return k


# --- the verdict rule, per number of answers ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Version:
    pct: float  # expected share in points
    p: float  # expected share as a proportion


class _Rule:
    """stats.judge's pass conditions as functions of the counts, at a given n."""

    def __init__(
        self,
        expected_pct: Mapping[str, float],
        tolerance_pct: float,
        alpha: float,
        confidence: float,
        looks: int,
    ) -> None:
        total = sum(expected_pct.values())
        if total <= 0:
            raise ValueError("expected shares must not all be zero")
        self.levels: LookLevels = look_levels(alpha, confidence, looks)
        self.tol = tolerance_pct
        self.looks = looks
        self.alpha = alpha
        versions = [_Version(pct, pct / total) for pct in expected_pct.values()]
        self.uncertain = [v for v in versions if 0.0 < v.p < 1.0]
        self.at_zero = [v for v in versions if v.p <= 0.0]
        self.at_all = [v for v in versions if v.p >= 1.0]
        # What judge gives chi_square_gof: the expected versions with a positive share, in order.
        positive = [v for v in versions if v.p > 0.0]
        self._chi_probs = [v.pct for v in positive]
        self._chi_total = sum(self._chi_probs)
        self._chi_critical = (
            chi2_critical(self.levels.alpha, len(positive) - 1) if len(positive) > 1 else math.inf
        )

    def low_ok(self, v: _Version, k: int, n: int) -> bool:
        low, _ = wilson_interval(k, n, self.levels.z_pass)
        return 100.0 * low >= v.pct - self.tol

    def high_ok(self, v: _Version, k: int, n: int) -> bool:
        _, high = wilson_interval(k, n, self.levels.z_pass)
        return 100.0 * high <= v.pct + self.tol

    def certain_ok(self, n: int) -> bool:
        """The versions at 0% (count 0) and 100% (count n) pass their band at n."""
        return all(self.low_ok(v, 0, n) and self.high_ok(v, 0, n) for v in self.at_zero) and all(
            self.low_ok(v, n, n) and self.high_ok(v, n, n) for v in self.at_all
        )

    def chi_ok(self, k: int, n: int) -> bool:
        """Two uncertain versions: the chi-square p-value of counts (k, n - k) is not below alpha
        (judge's test, as "statistic <= critical value": the p-value falls as the statistic grows)."""
        stat = chi_square_statistic([k, n - k], self._chi_probs, n, self._chi_total)
        return stat <= self._chi_critical

    @property
    def fail_budget(self) -> float:
        """Chance that an earlier look of --early-stop fails an on-target split (alpha spent there)."""
        return self.alpha * (self.looks - 1) / self.looks if self.uncertain else 0.0

    @property
    def ceiling(self) -> float:
        """What P(pass) tends to as n grows: only the chi-square test's false alarms remain."""
        return 1.0 - (self.levels.alpha if self.uncertain else 0.0) - self.fail_budget

    def sigma_min(self) -> float:
        return min((math.sqrt(v.p * (1.0 - v.p)) for v in self.uncertain), default=0.5)


class _Tails:
    """P(X < L) and P(X > U) for X ~ Binomial(n, p), followed from n to n + 1 in O(1)."""

    def __init__(self, p: float, n: int, low_edge: int, high_edge: int) -> None:
        self.p = p
        self.n = n
        self.low_edge = low_edge  # L
        self.high_edge = high_edge  # U
        self.below = binomial_cdf(low_edge - 1, n, p)
        self.above = binomial_sf(high_edge + 1, n, p)

    def advance(self, low_edge: int, high_edge: int) -> None:
        """n -> n + 1 with the same edges, then move the edges."""
        p, n = self.p, self.n
        self.below -= p * binomial_pmf(self.low_edge - 1, n, p)
        self.above += p * binomial_pmf(self.high_edge, n, p)
        self.n = n = n + 1
        while self.low_edge < low_edge:
            self.below += binomial_pmf(self.low_edge, n, p)
            self.low_edge += 1
        while self.low_edge > low_edge:
            self.low_edge -= 1
            self.below -= binomial_pmf(self.low_edge, n, p)
        while self.high_edge < high_edge:
            self.high_edge += 1
            self.above -= binomial_pmf(self.high_edge, n, p)
        while self.high_edge > high_edge:
            self.above += binomial_pmf(self.high_edge, n, p)
            self.high_edge -= 1
        self.below = min(1.0, max(0.0, self.below))
        self.above = min(1.0, max(0.0, self.above))

    @property
    def outside(self) -> float:
        return self.below + self.above


class _Edges:
    """The passing count interval(s) at n, moved along with n."""

    def __init__(self, rule: _Rule) -> None:
        self.rule = rule
        self.prev: dict[str, int] = {}

    def _first(self, key: str, pred: Predicate, lo: int, hi: int, step: bool) -> int:
        value = (
            _step_first_true(pred, self.prev[key], lo, hi)
            if step and key in self.prev
            else _first_true(pred, lo, hi)
        )
        self.prev[key] = value
        return value

    def _last(self, key: str, pred: Predicate, lo: int, hi: int, step: bool) -> int:
        value = (
            _step_last_true(pred, self.prev[key], lo, hi)
            if step and key in self.prev
            else _last_true(pred, lo, hi)
        )
        self.prev[key] = value
        return value

    def band(self, index: int, n: int, step: bool) -> tuple[int, int]:
        """Counts of uncertain version `index` whose interval lies within its band: [first, last]."""
        rule, v = self.rule, self.rule.uncertain[index]
        first = self._first(f"lo{index}", lambda k: rule.low_ok(v, k, n), 0, n, step)
        last = self._last(f"hi{index}", lambda k: rule.high_ok(v, k, n), 0, n, step)
        return first, last

    def pair(self, n: int, step: bool) -> tuple[int, int]:
        """Two uncertain versions: the counts k of the first such that (k, n - k) passes."""
        rule = self.rule
        first_lo, first_hi = self.band(0, n, step)
        second_lo, second_hi = self.band(1, n, step)
        centre = rule.uncertain[0].p * n
        chi_lo = self._first("chi_lo", lambda k: rule.chi_ok(k, n), 0, math.floor(centre), step)
        chi_hi = self._last("chi_hi", lambda k: rule.chi_ok(k, n), math.ceil(centre), n, step)
        return max(first_lo, n - second_hi, chi_lo), min(first_hi, n - second_lo, chi_hi)


class _Evaluator:
    """P(pass) at one n (exact), or along consecutive n (incremental)."""

    def __init__(self, rule: _Rule) -> None:
        self.rule = rule
        self.edges = _Edges(rule)
        self.tails: list[_Tails] = []

    def _intervals(self, n: int, step: bool) -> list[tuple[float, int, int]]:
        rule = self.rule
        if len(rule.uncertain) == 2:
            return [(rule.uncertain[0].p, *self.edges.pair(n, step))]
        return [(v.p, *self.edges.band(i, n, step)) for i, v in enumerate(rule.uncertain)]

    def _combine(self, n: int) -> float:
        rule = self.rule
        if not rule.certain_ok(n):
            return 0.0
        if not rule.uncertain:
            return 1.0
        missed = sum(t.outside for t in self.tails)
        if len(rule.uncertain) > 2:
            missed += rule.levels.alpha  # Bonferroni: the chi-square test's false alarms, at most alpha
        return max(0.0, 1.0 - missed - rule.fail_budget)

    def at(self, n: int) -> float:
        """Exact, from scratch."""
        if n <= 0:
            return 0.0
        self.tails = [_Tails(p, n, lo, hi) for p, lo, hi in self._intervals(n, step=False)]
        return self._combine(n)

    def next(self) -> float:
        """n + 1, from the state `at(n)` (or the previous `next`) left."""
        n = (self.tails[0].n if self.tails else 0) + 1
        if not self.tails:
            return self.at(n)
        for tails, (_, lo, hi) in zip(self.tails, self._intervals(n, step=True), strict=True):
            tails.advance(lo, hi)
        return self._combine(n)


# --- the advice ------------------------------------------------------------------------------------


def pass_probability(
    n: int,
    expected_pct: Mapping[str, float],
    *,
    tolerance_pct: float,
    alpha: float,
    confidence: float,
    looks: int = 1,
) -> float:
    """P(verdict PASS after n answers | the true split is the expected one); a lower bound for three
    or more versions between 0 and 100%, and for --early-stop (see the module header)."""
    rule = _Rule(expected_pct, tolerance_pct, alpha, confidence, looks)
    return _Evaluator(rule).at(n)


@dataclass(frozen=True, slots=True)
class Advice:
    requests: int | None  # N; None when no n up to MAX_REQUESTS reaches `power`
    power: float
    exact: bool  # False: a lower bound was used (three or more versions, or --early-stop)
    ceiling: float  # what P(pass) tends to for large n (below `power` means alpha is too large)


def required_requests(
    expected_pct: Mapping[str, float],
    *,
    tolerance_pct: float,
    alpha: float,
    confidence: float,
    looks: int = 1,
    power: float = PLAN_POWER,
    limit: int = MAX_REQUESTS,
) -> Advice:
    """N: the smallest n from which on an on-target split passes with probability >= power."""
    if not 0.0 < power < 1.0:
        raise ValueError("power must be in (0, 1)")
    rule = _Rule(expected_pct, tolerance_pct, alpha, confidence, looks)
    exact = len(rule.uncertain) <= 2 and (looks == 1 or not rule.uncertain)
    advice = Advice(None, power, exact, rule.ceiling)
    if rule.ceiling < power:
        return advice
    ev = _Evaluator(rule)

    def enough(n: int) -> bool:
        return ev.at(n) >= power

    # A first guess from the normal approximation, then doubling until P(pass) >= power.
    z_two_sided = NormalDist().inv_cdf((1.0 + power) / 2.0)
    sigma = max((math.sqrt(v.p * (1.0 - v.p)) for v in rule.uncertain), default=0.0)
    guess = (sigma * (rule.levels.z_pass + z_two_sided) / (tolerance_pct / 100.0)) ** 2
    hi = max(1, math.ceil(guess))
    while not enough(hi):
        if hi >= limit:
            return advice
        hi = min(limit, hi * 2)
    lo = 0  # P(pass) = 0 with no answer
    while hi - lo > 1:  # invariant: P(lo) < power <= P(hi)
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if enough(mid) else (mid, hi)
    if not rule.uncertain:
        return Advice(hi, power, exact, rule.ceiling)  # certain counts: P is 0, then 1 — no zig-zag
    # The zig-zag: scan around the crossing for the last n below power, in O(1) per step.
    reach = math.ceil(ZIGZAG_REACH * math.sqrt(hi) / rule.sigma_min()) + 16
    start = max(1, lo - reach)
    last_dip = lo
    n = start
    probability = ev.at(n)
    while n <= last_dip + reach and n < limit:
        if probability < power:
            last_dip = n
        n += 1
        probability = ev.next()
    if last_dip + 1 > limit:
        return advice
    return Advice(last_dip + 1, power, exact, rule.ceiling)
