"""The HTML picture's size and render time, for the fixed reports of the tests (2 to 10 versions,
up to 20 pods, bypass, local replies, a mixed run) and a plan page of three probe steps.

Render time is the pure core only (report JSON -> page text: reading, graph, layout, SVG, HTML),
the median of --rounds renders after one warm-up, in one process. Prints a Markdown table for
BENCHMARKS.md with the date and the machine.
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
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
