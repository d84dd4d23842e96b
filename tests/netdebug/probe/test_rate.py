from __future__ import annotations

import random

import pytest

from netdebug.probe.rate import Tick, bounded, fixed_offsets, pace, poisson_offsets


class FakeClock:
    """now() and sleep(); `wake_delay` models a late wake-up of the event loop."""

    def __init__(self, start: float = 100.0, wake_delay: float = 0.0) -> None:
        self.now = start
        self.wake_delay = wake_delay
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds + self.wake_delay


@pytest.mark.parametrize(
    ("rate", "first"),
    [
        pytest.param(4.0, [0.0, 0.25, 0.5, 0.75, 1.0], id="4rps"),
        pytest.param(0.5, [0.0, 2.0, 4.0, 6.0, 8.0], id="fractional"),
        pytest.param(2000.0, [0.0, 0.0005, 0.001, 0.0015, 0.002], id="2000rps"),
    ],
)
def test_fixed_offsets(rate: float, first: list[float]) -> None:
    offsets = fixed_offsets(rate)
    assert [next(offsets) for _ in first] == pytest.approx(first)


def test_fixed_offsets_do_not_drift() -> None:
    offsets = list(bounded(fixed_offsets(3.0), 300_001, None))
    assert offsets[-1] == 100_000.0  # i / rate, not a running sum of 1/3


@pytest.mark.parametrize("rate", [0.0, -1.0, float("inf"), float("nan")])
def test_bad_rates(rate: float) -> None:
    with pytest.raises(ValueError, match="positive"):
        fixed_offsets(rate)
    with pytest.raises(ValueError, match="positive"):
        next(poisson_offsets(rate, random.Random(1)))


def test_poisson_mean_rate_seeded() -> None:
    offsets = list(bounded(poisson_offsets(100.0, random.Random(42)), 20_001, None))
    assert offsets[0] == 0.0
    assert offsets == sorted(offsets)
    # 20,000 exponential gaps: the mean is within 3% (seeded, so deterministic).
    assert 20_000 / offsets[-1] == pytest.approx(100.0, rel=0.03)
    again = list(bounded(poisson_offsets(100.0, random.Random(42)), 20_001, None))
    assert again == offsets


@pytest.mark.parametrize(
    ("n", "duration", "count"),
    [
        pytest.param(5, None, 5, id="count"),
        pytest.param(None, 1.0, 10, id="duration-excludes-end"),
        pytest.param(3, 1.0, 3, id="count-first"),
        pytest.param(100, 0.5, 5, id="duration-first"),
    ],
)
def test_bounded(n: int | None, duration: float | None, count: int) -> None:
    assert len(list(bounded(fixed_offsets(10.0), n, duration))) == count


async def _collect(clock: FakeClock, offsets: list[float], start: float = 100.0) -> list[Tick]:
    return [t async for t in pace(iter(offsets), start, clock, clock.sleep)]


@pytest.mark.anyio
async def test_pace_on_time() -> None:
    clock = FakeClock()
    ticks = await _collect(clock, [0.0, 0.5, 1.0, 1.5])
    assert [t.intended for t in ticks] == [100.0, 100.5, 101.0, 101.5]
    assert [t.lateness for t in ticks] == [0.0, 0.0, 0.0, 0.0]
    assert clock.sleeps == [0.5, 0.5, 0.5]


@pytest.mark.anyio
async def test_pace_late_wakeups_do_not_shift_the_schedule() -> None:
    clock = FakeClock(wake_delay=0.1)
    ticks = await _collect(clock, [0.0, 0.5, 1.0, 1.5])
    # Each wake-up is 0.1 s late, but the next sleep is shorter: intended times stay absolute.
    assert [t.intended for t in ticks] == [100.0, 100.5, 101.0, 101.5]
    assert [round(t.lateness, 9) for t in ticks] == [0.0, 0.1, 0.1, 0.1]
    assert clock.sleeps == pytest.approx([0.5, 0.4, 0.4])


@pytest.mark.anyio
async def test_pace_when_far_behind_releases_without_sleeping() -> None:
    clock = FakeClock()
    clock.now = 102.0  # the caller stalled for 2 s before pacing started
    ticks = await _collect(clock, [0.0, 0.5, 1.0, 2.5])
    assert [round(t.lateness, 9) for t in ticks] == [2.0, 1.5, 1.0, 0.0]
    assert clock.sleeps == [0.5]
