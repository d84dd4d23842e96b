"""What the traffic picture needs beyond the verdict, recorded answer by answer as bounded aggregates.
Pure: no I/O, no clock.

- `answers`: joint counts of (path kind, version, pod, status, mtls, caller identity). The report's
  other counters are marginals (versions, pods, paths apart); the graph needs which pods answered for
  which version and along which path. Bounded: at most MAX_ANSWER_ROWS distinct rows; answers that
  would open a new row beyond that are only counted (`answers_unrecorded`).
- `latency_histograms`: per version, on a fixed logarithmic scale of BUCKETS_PER_DECADE buckets per
  decade from 1 µs to 1,000 s (a bucket's width is 12% of its bound), so memory does not grow with
  the run and saved reports can be compared bucket by bucket. Latency is the runner's: from the
  intended send time in the open model, from the actual send in the closed one.
- `parameters`: the run's settings, for the page and for anyone reading a saved report. Header values
  whose names suggest a secret are redacted; the request body is summarised by its size.

All of it goes into the JSON report as additive fields (docs/netdebug-probe.md lists them).
"""

from __future__ import annotations

import math
import re
from bisect import bisect_left
from dataclasses import dataclass, field
from typing import Final

from netdebug.probe.client import Sample
from netdebug.probe.config import ProbeConfig
from netdebug.probe.runner import Timing

MAX_ANSWER_ROWS: Final = 2000
BUCKETS_PER_DECADE: Final = 20
FIRST_BOUND_MS: Final = 0.001  # bucket 0 holds everything up to 1 µs
LAST_BUCKET: Final = 9 * BUCKETS_PER_DECADE  # 1,000 s; slower answers are counted in it
REDACTED: Final = "<redacted>"
_SECRET_HEADER = re.compile(r"auth|cookie|token|secret|key|password|session", re.IGNORECASE)

AnswerKey = tuple[str | None, str | None, str | None, int | None, bool, str | None]


def bucket_bound_ms(index: int) -> float:
    """Upper bound of bucket `index` in milliseconds, to 4 significant digits."""
    return float(f"{FIRST_BOUND_MS * 10.0 ** (index / BUCKETS_PER_DECADE):.4g}")


# Upper bounds in seconds, for bisect on the hot path; the last is open so slower answers land in it.
_BOUNDS_S: Final[tuple[float, ...]] = (
    *(FIRST_BOUND_MS / 1000.0 * 10.0 ** (k / BUCKETS_PER_DECADE) for k in range(LAST_BUCKET)),
    math.inf,
)


def bucket_index(latency_ms: float) -> int:
    """The bucket holding `latency_ms`: the smallest k with latency <= bound(k); NaN and negatives
    (a clock step) go to bucket 0, anything above 1,000 s to the last."""
    return bisect_left(_BOUNDS_S, latency_ms / 1000.0)


def _histogram_json(counts: list[int]) -> dict[str, list[float] | list[int]]:
    """Only non-empty buckets: `le_ms` their upper bounds (ascending), `count` their counts."""
    used = [k for k, n in enumerate(counts) if n]
    return {"le_ms": [bucket_bound_ms(k) for k in used], "count": [counts[k] for k in used]}


def _empty() -> list[int]:
    return [0] * (LAST_BUCKET + 1)


@dataclass
class TrafficTally:
    """Recorded by `Tally.record` for every answer; O(1) per answer, bounded memory."""

    answers: dict[AnswerKey, int] = field(default_factory=dict)
    unrecorded: int = 0
    by_version: dict[str, list[int]] = field(default_factory=dict)
    unversioned: list[int] = field(default_factory=_empty)

    def record(self, timing: Timing, sample: Sample) -> None:
        status = sample.status
        if status is None:
            return  # no answer: the report's `errors` count it
        key = (sample.kind, sample.version, sample.pod, status, sample.mtls, sample.identity)
        answers = self.answers
        seen = answers.get(key)
        if seen is not None:
            answers[key] = seen + 1
        elif len(answers) < MAX_ANSWER_ROWS:
            answers[key] = 1
        else:
            self.unrecorded += 1
        version = sample.version
        if version is None:
            counts = self.unversioned
        else:
            found = self.by_version.get(version)
            if found is None:
                if len(self.by_version) >= MAX_ANSWER_ROWS:
                    return
                found = self.by_version[version] = _empty()
            counts = found
        counts[bisect_left(_BOUNDS_S, timing.latency)] += 1

    def summary(self, config: ProbeConfig) -> TrafficSummary:
        rows: tuple[dict[str, object], ...] = tuple(
            {
                "path": kind,
                "version": version,
                "pod": pod,
                "status": status,
                "mtls": mtls,
                "identity": identity,
                "count": n,
            }
            for (kind, version, pod, status, mtls, identity), n in sorted(
                self.answers.items(), key=lambda item: (-item[1], str(item[0]))
            )
        )
        histograms: dict[str, object] = {
            "buckets_per_decade": BUCKETS_PER_DECADE,
            "versions": {v: _histogram_json(h) for v, h in self.by_version.items()},
            "unversioned": _histogram_json(self.unversioned),
        }
        return TrafficSummary(rows, self.unrecorded, histograms, run_parameters(config))


@dataclass(frozen=True)
class TrafficSummary:
    answers: tuple[dict[str, object], ...]
    unrecorded: int
    latency_histograms: dict[str, object]
    parameters: dict[str, object]

    def to_json(self) -> dict[str, object]:
        return {
            "answers": list(self.answers),
            "answers_unrecorded": self.unrecorded,
            "latency_histograms": self.latency_histograms,
            "parameters": self.parameters,
        }


def redact_header(name: str, value: str) -> str:
    return REDACTED if _SECRET_HEADER.search(name) else value


def run_parameters(config: ProbeConfig) -> dict[str, object]:
    """The settings a reader needs to judge the run; no secrets, no request body."""
    open_model = config.concurrency is None
    return {
        "model": "open" if open_model else "closed",
        "latency_from": "intended send time" if open_model else "actual send time",
        "rps": config.rps if open_model else None,
        "poisson": config.poisson if open_model else None,
        "seed": config.seed,
        "concurrency": config.concurrency,
        "requests": config.requests,
        "duration_s": config.duration,
        "max_in_flight": config.max_in_flight if open_model else None,
        "method": config.method,
        "headers": [[k, redact_header(k, v)] for k, v in config.headers],
        "body_bytes": len(config.body) if config.body is not None else None,
        "http2": config.http2,
        "new_connection": config.new_connection,
        "insecure": config.insecure,
        "timeout_s": config.timeout,
        "resolve": [f"{h}:{p}:{a}" for h, p, a in config.resolve],
        "connect_to": [
            f"{h1}:{'' if p1 is None else p1}:{h2}:{'' if p2 is None else p2}"
            for h1, p1, h2, p2 in config.connect_to
        ],
        "by": config.by.describe(),
        "expect_source": config.expect_source,
        "confidence": config.confidence,
        "early_stop": config.early_stop,
        "max_error_rate": config.max_error_rate,
        "require_path": list(config.require_path),
    }
