"""Open-model schedule: when each request is due, and a pacer that waits for it. Pure core; the clock
and sleep are injected so tests run on a fake clock.

Invariants (the reason a prober can be trusted with latency numbers):
- Send times come from an absolute schedule (start + offset_i), never from "sleep 1/rate after the
  last one": a slow answer or a late wake-up does not shift later requests (no drift), and latency is
  measured from the intended time (no coordinated omission).
- The pacer never sleeps when it is already late, never releases early; it reports how late each
  launch was.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


def fixed_offsets(rate: float) -> Iterator[float]:
    """0, 1/rate, 2/rate, ... (computed as i/rate, so no floating-point drift accumulates)."""
    if not (rate > 0 and math.isfinite(rate)):
        raise ValueError("rate must be a positive number")
    return (i / rate for i in itertools.count())


def poisson_offsets(rate: float, rng: random.Random) -> Iterator[float]:
    """Poisson arrivals: exponential gaps with mean 1/rate, the first request at 0."""
    if not (rate > 0 and math.isfinite(rate)):
        raise ValueError("rate must be a positive number")
    t = 0.0
    while True:
        yield t
        t += rng.expovariate(rate)


def bounded(offsets: Iterator[float], max_requests: int | None, duration: float | None) -> Iterator[float]:
    """Cut a schedule at a request count and/or a duration (offsets strictly below it)."""
    for i, offset in enumerate(offsets):
        if max_requests is not None and i >= max_requests:
            return
        if duration is not None and offset >= duration:
            return
        yield offset


@dataclass(frozen=True, slots=True)
class Tick:
    index: int
    intended: float  # absolute clock time the request was due
    lateness: float  # how late the pacer released it (>= 0)


async def pace(offsets: Iterator[float], start: float, clock: Clock, sleep: Sleep) -> AsyncIterator[Tick]:
    """Release each scheduled offset at start + offset; yields immediately when already late."""
    for index, offset in enumerate(offsets):
        intended = start + offset
        now = clock()
        # Event-loop timers may fire early (uvloop rounds to whole milliseconds): never release
        # a request before its time, sleep again for the remainder.
        while now < intended:
            await sleep(intended - now)
            now = clock()
        yield Tick(index, intended, now - intended)
