"""Sample-size advice benchmark (a script, not a test): `make bench`, or `bench/samplesize_bench.py`.

How long `netdebug probe` takes to compute "you need about N requests" at the end of an inconclusive
run (netdebug/probe/samplesize.py), for splits 50/50 to 100/0 and tolerances 1 to 10 points, single
look and --early-stop; and N itself, with what the old planner said for an on-target split
((z·√(p(1−p))/tol)², the size at which an on-target split passes about half the time). Each figure is
the median of several runs, in one process (the first run of each is a warm-up).
"""

from __future__ import annotations

import argparse
import datetime
import math
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from netdebug.probe.samplesize import Advice, pass_probability, required_requests
from netdebug.probe.stats import z_for_confidence

SPLITS = (50.0, 75.0, 80.0, 90.0, 99.0, 100.0)
TOLERANCES = (1.0, 2.0, 5.0, 10.0)


def old_planner(first: float, tol: float) -> int:
    p = first / 100.0
    variance = max(p * (1.0 - p), 0.25 / 100.0)
    return math.ceil((z_for_confidence(0.95) * math.sqrt(variance) / (tol / 100.0)) ** 2)


T = TypeVar("T")


def timed(function: Callable[[], T], runs: int) -> tuple[float, T]:
    """(median seconds over `runs`, result), after one warm-up call."""
    result = function()
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5, help="timed runs per case (default 5)")
    args = parser.parse_args()
    today, machine = datetime.date.today(), platform.node()
    print(f"# sample-size advice, {today}, {machine}, Python {platform.python_version()}")
    print("| split | ±points | before (on target) | N | P(pass) at N | at 500 | ms | N --early-stop | ms |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for first in SPLITS:
        expected = {"v1": first, "v2": 100.0 - first} if first < 100.0 else {"v1": 100.0}
        for tol in TOLERANCES:

            def advice(looks: int, tol: float = tol, expected: dict[str, float] = expected) -> Advice:
                return required_requests(
                    expected, tolerance_pct=tol, alpha=0.001, confidence=0.95, looks=looks
                )

            def probability(n: int, tol: float = tol, expected: dict[str, float] = expected) -> float:
                return pass_probability(n, expected, tolerance_pct=tol, alpha=0.001, confidence=0.95)

            single_s, single = timed(lambda: advice(1), args.runs)
            early_s, early = timed(lambda: advice(10), args.runs)
            n = single.requests or 0
            print(
                f"| {first:g}/{100 - first:g} | {tol:g} | {old_planner(first, tol)} | {n} |"
                f" {probability(n):.3f} | {probability(500):.3f} | {single_s * 1000:.1f} |"
                f" {early.requests} | {early_s * 1000:.1f} |"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
