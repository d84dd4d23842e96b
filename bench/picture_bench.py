"""The HTML picture's size and render time, for the fixed reports of the tests (2 to 10 versions,
up to 20 pods, bypass, local replies, a mixed run) and a plan page of three probe steps; and what
recording the picture's data costs the prober per answer.

Render time is the pure core only (report JSON -> page text: reading, graph, layout, SVG, HTML),
the median of --rounds renders after one warm-up, in one process. The recording cost is
`Tally.record` over 100,000 answers with and without `TrafficTally.record` (replaced by a no-op),
interleaved, median of 7 rounds each. Prints Markdown for BENCHMARKS.md with the date and machine.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from netdebug.picture.render import render_page
from netdebug.probe.client import Sample
from netdebug.probe.report import Tally
from netdebug.probe.runner import Timing
from netdebug.probe.traffic import TrafficTally
from tests.netdebug.picture import reports


def plan_doc() -> dict[str, object]:
    steps = []
    for i, (name, make) in enumerate(
        [
            ("mesh split", reports.pass_report),
            ("gateway", reports.gateway_report),
            ("direct", reports.bypass_report),
        ]
    ):
        details = make()
        attempt = {"attempt": 1, "status": details["verdict"], "summary": "", "details": details}
        steps.append(
            {
                "number": i + 1,
                "name": name,
                "kind": "probe",
                "status": details["verdict"],
                "attempts": [attempt],
            }
        )
    return {"plan": "plan.yaml", "status": "fail", "exit_code": 1, "steps": steps}


CASES: dict[str, Callable[[], dict[str, object]]] = {
    "2 versions, 6 pods (pass)": reports.pass_report,
    "bypass": reports.bypass_report,
    "local replies": reports.local_reply_report,
    "mixed paths": reports.mixed_report,
    "6 versions, 12 pods": lambda: reports.versions_report(6),
    "10 versions, 20 pods": lambda: reports.versions_report(10, 2),
    "2 versions, 20 pods": lambda: reports.pods_report(20),
    "plan, 3 probe steps": plan_doc,
}


def record_cost(answers: int = 100_000, rounds: int = 7) -> tuple[float, float]:
    """Microseconds per answer of Tally.record without and with the picture's recording."""
    samples = [
        Sample(
            200,
            f"v{i % 2 + 1}",
            f"echo-v{i % 2 + 1}-{i % 3}",
            "client-sidecar",
            reports.MESH_ID,
            True,
            False,
            "1.1",
        )
        for i in range(12)
    ]
    timings = [Timing(i, i * 0.001, 0.0001, 0.002 + (i % 17) * 0.0003) for i in range(answers)]
    real = TrafficTally.record

    def one(with_traffic: bool) -> float:
        TrafficTally.record = real if with_traffic else (lambda self, timing, sample: None)  # type: ignore[method-assign]
        tally = Tally()
        start = time.perf_counter()
        for i, timing in enumerate(timings):
            tally.record(timing, samples[i % 12])
        return (time.perf_counter() - start) / answers * 1e6

    results: dict[bool, list[float]] = {False: [], True: []}
    try:
        for _ in range(rounds):
            for with_traffic in (False, True):
                results[with_traffic].append(one(with_traffic))
    finally:
        TrafficTally.record = real  # type: ignore[method-assign]
    return statistics.median(results[False]), statistics.median(results[True])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=50)
    args = parser.parse_args()
    load = os.getloadavg()[0]
    print(
        f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, {platform.machine()}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}, load average {load:.2f}, "
        f"median of {args.rounds} renders"
    )
    print()
    print("| report | page KiB | render ms |")
    print("|---|---:|---:|")
    for name, make in CASES.items():
        doc = make()
        page = render_page(doc)
        times = []
        for _ in range(args.rounds):
            start = time.perf_counter()
            render_page(doc)
            times.append(time.perf_counter() - start)
        print(f"| {name} | {len(page.encode()) / 1024:.1f} | {statistics.median(times) * 1000:.1f} |")
    without, with_traffic = record_cost()
    print()
    print(
        f"Tally.record per answer: {without:.2f} µs without the picture's recording, {with_traffic:.2f} µs "
        f"with it (+{with_traffic - without:.2f} µs)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
