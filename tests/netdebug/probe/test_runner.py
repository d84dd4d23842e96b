from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from netdebug.probe.rate import bounded, fixed_offsets
from netdebug.probe.runner import RunOutcome, Timing, run_closed, run_open

pytestmark = pytest.mark.anyio


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.at: list[tuple[float, asyncio.Event]] = []  # events set once the clock reaches a time

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        # Let every ready task run "during" the sleep, then move time on.
        for _ in range(5):
            await asyncio.sleep(0)
        self.now += seconds
        for when, event in self.at:
            if self.now >= when:
                event.set()


def _collector() -> tuple[list[tuple[Timing, int]], Callable[[Timing, int], None]]:
    done: list[tuple[Timing, int]] = []

    def on_done(timing: Timing, result: int) -> None:
        done.append((timing, result))

    return done, on_done


async def instant(index: int) -> int:
    await asyncio.sleep(0)
    return index


async def test_open_model_follows_the_schedule() -> None:
    clock = FakeClock()
    done, on_done = _collector()
    outcome = await run_open(
        instant,
        bounded(fixed_offsets(4.0), 8, None),
        on_done,
        max_in_flight=10,
        clock=clock,
        sleep=clock.sleep,
    )
    assert (outcome.launched, outcome.completed, outcome.dropped) == (8, 8, 0)
    assert sorted(t.intended for t, _ in done) == [i / 4.0 for i in range(8)]
    assert all(t.lateness == 0.0 and t.latency == 0.0 for t, _ in done)
    assert outcome.achieved_rps == pytest.approx(4.0)
    assert not outcome.interrupted
    assert not outcome.stopped_early


async def test_open_model_drops_beyond_the_in_flight_cap_and_measures_from_intended_time() -> None:
    clock = FakeClock()
    gate = asyncio.Event()
    clock.at.append((4.0, gate))

    async def stuck(index: int) -> int:
        await gate.wait()
        return index

    done, on_done = _collector()
    outcome = await run_open(
        stuck,
        bounded(fixed_offsets(1.0), 5, None),
        on_done,
        max_in_flight=2,
        clock=clock,
        sleep=clock.sleep,
    )
    assert (outcome.launched, outcome.dropped, outcome.completed) == (2, 3, 2)
    # Both answered at t=4: latency counts from when each was due (no coordinated omission).
    assert sorted(t.latency for t, _ in done) == [3.0, 4.0]


async def test_halt_returns_a_partial_outcome() -> None:
    clock = FakeClock()
    halt = asyncio.Event()
    clock.at.append((2.0, halt))
    forever = asyncio.Event()

    async def hang(index: int) -> int:
        await forever.wait()
        return index

    done, on_done = _collector()
    outcome = await run_open(
        hang,
        bounded(fixed_offsets(1.0), 100, None),
        on_done,
        max_in_flight=100,
        clock=clock,
        sleep=clock.sleep,
        halt=halt,
    )
    assert outcome.interrupted
    assert 2 <= outcome.launched <= 3
    assert outcome.completed == 0
    assert done == []


async def test_early_stop() -> None:
    clock = FakeClock()
    done, on_done = _collector()
    outcome = await run_open(
        instant,
        bounded(fixed_offsets(10.0), 100, None),
        on_done,
        max_in_flight=10,
        clock=clock,
        sleep=clock.sleep,
        should_stop=lambda: len(done) >= 3,
    )
    assert outcome.stopped_early
    assert 3 <= outcome.completed <= 5
    assert outcome.launched < 100


async def test_closed_model_count() -> None:
    clock = FakeClock()
    done, on_done = _collector()
    outcome = await run_closed(
        instant,
        on_done,
        concurrency=3,
        max_requests=10,
        duration=None,
        clock=clock,
    )
    assert (outcome.launched, outcome.completed) == (10, 10)
    assert sorted(r for _, r in done) == list(range(10))


async def test_closed_model_duration() -> None:
    clock = FakeClock()

    async def one_second(index: int) -> int:
        await clock.sleep(1.0)
        return index

    done, on_done = _collector()
    outcome = await run_closed(
        one_second,
        on_done,
        concurrency=1,
        max_requests=None,
        duration=5.0,
        clock=clock,
    )
    assert outcome.completed == 5
    assert [t.latency for t, _ in done] == [1.0] * 5


async def test_closed_model_halt_and_early_stop() -> None:
    clock = FakeClock()
    halt = asyncio.Event()
    _done, on_done = _collector()

    async def slow(index: int) -> int:
        if index == 4:
            halt.set()
        await clock.sleep(1.0)
        return index

    outcome = await run_closed(
        slow,
        on_done,
        concurrency=1,
        max_requests=100,
        duration=None,
        clock=clock,
        halt=halt,
    )
    assert outcome.interrupted
    assert outcome.completed == 4

    done2, on_done2 = _collector()
    outcome2 = await run_closed(
        instant,
        on_done2,
        concurrency=2,
        max_requests=100,
        duration=None,
        clock=clock,
        should_stop=lambda: len(done2) >= 5,
    )
    assert outcome2.stopped_early
    assert 5 <= outcome2.completed <= 6


@pytest.mark.parametrize(
    ("launched", "first", "last", "rps"),
    [
        pytest.param(11, 0.0, 10.0, 1.0, id="ten-gaps"),
        pytest.param(1, 0.0, 0.0, 0.0, id="single"),
        pytest.param(0, None, None, 0.0, id="none"),
    ],
)
def test_achieved_rps(launched: int, first: float | None, last: float | None, rps: float) -> None:
    outcome = RunOutcome(launched, launched, 0, 10.0, first, last, False, False)
    assert outcome.achieved_rps == pytest.approx(rps)
