"""Load models: open (paced schedule, in-flight cap, drops counted) and closed (N workers back to back).

The runner knows nothing about HTTP: it calls `probe(index) -> T` and hands each result with its
timing to `on_done`. Clock and sleep are injected (fake clock in tests).

- Latency is measured from the *intended* send time (open model), so a stalled target shows up as
  latency instead of silently lowering the rate (no coordinated omission).
- When `max_in_flight` requests are outstanding at a due time, that request is dropped and counted:
  the schedule is never stretched.
- `halt` (Ctrl-C) stops launching, cancels what is in flight and returns what was completed, with
  `interrupted=True`. `should_stop` (early stop) is asked after each completion.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

from netdebug.probe.rate import Clock, Sleep, pace

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Timing:
    index: int
    intended: float  # seconds after the start at which the request was due
    lateness: float  # how late it was launched
    latency: float  # from the intended time to the answer (open model) / from the send (closed)


@dataclass(frozen=True, slots=True)
class RunOutcome:
    launched: int
    completed: int
    dropped: int
    elapsed: float
    first_send: float | None  # seconds after start
    last_send: float | None
    interrupted: bool
    stopped_early: bool

    @property
    def achieved_rps(self) -> float:
        """Launch rate over the launch window: (launched − 1) / (last − first send)."""
        if self.first_send is None or self.last_send is None or self.launched < 2:
            return 0.0
        span = self.last_send - self.first_send
        return (self.launched - 1) / span if span > 0 else 0.0


@dataclass
class _State(Generic[T]):
    start: float
    launched: int = 0
    completed: int = 0
    dropped: int = 0
    first_send: float | None = None
    last_send: float | None = None
    stopped_early: bool = False


Probe = Callable[[int], Awaitable[T]]
OnDone = Callable[[Timing, T], None]


async def _supervise(body: Awaitable[None], halt: asyncio.Event) -> bool:
    """Run `body` until it ends or `halt` is set; True if it was halted."""
    body_task = asyncio.ensure_future(body)
    halt_task = asyncio.ensure_future(halt.wait())
    try:
        await asyncio.wait({body_task, halt_task}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        halt_task.cancel()
        if not body_task.done():
            body_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await body_task
    if body_task.done() and not body_task.cancelled():
        error = body_task.exception()
        if error is not None:
            raise error
    return halt.is_set()


async def run_open(
    probe: Probe[T],
    offsets: Iterator[float],
    on_done: OnDone[T],
    *,
    max_in_flight: int,
    clock: Clock,
    sleep: Sleep,
    halt: asyncio.Event | None = None,
    should_stop: Callable[[], bool] | None = None,
    drain_timeout: float = 30.0,
) -> RunOutcome:
    halt = halt or asyncio.Event()
    early = asyncio.Event()
    state: _State[T] = _State(start=clock())
    in_flight: set[asyncio.Task[None]] = set()
    loop = asyncio.get_running_loop()

    async def one(index: int, intended: float, lateness: float) -> None:
        result = await probe(index)
        state.completed += 1
        on_done(Timing(index, intended - state.start, lateness, clock() - intended), result)
        if should_stop is not None and not early.is_set() and should_stop():
            state.stopped_early = True
            early.set()

    async def launch_all() -> None:
        async for tick in pace(offsets, state.start, clock, sleep):
            if early.is_set():
                return
            if len(in_flight) >= max_in_flight:
                state.dropped += 1
                continue
            sent = tick.intended + tick.lateness - state.start
            if state.first_send is None:
                state.first_send = sent
            state.last_send = sent
            state.launched += 1
            task = loop.create_task(one(tick.index, tick.intended, tick.lateness))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)

    stop_any = asyncio.Event()
    watchers = [
        loop.create_task(_set_when(halt, stop_any)),
        loop.create_task(_set_when(early, stop_any)),
    ]
    try:
        await _supervise(launch_all(), stop_any)
        if not stop_any.is_set() and in_flight:
            drain = _gather_quietly(in_flight)
            with contextlib.suppress(TimeoutError):
                await _supervise(asyncio.wait_for(drain, drain_timeout), stop_any)
    finally:
        for w in watchers:
            w.cancel()
        for task in list(in_flight):
            task.cancel()
        if in_flight:
            await asyncio.gather(*in_flight, return_exceptions=True)
    return RunOutcome(
        launched=state.launched,
        completed=state.completed,
        dropped=state.dropped,
        elapsed=clock() - state.start,
        first_send=state.first_send,
        last_send=state.last_send,
        interrupted=halt.is_set(),
        stopped_early=state.stopped_early,
    )


async def _gather_quietly(tasks: set[asyncio.Task[None]]) -> None:
    await asyncio.gather(*tasks, return_exceptions=True)


async def _set_when(source: asyncio.Event, target: asyncio.Event) -> None:
    await source.wait()
    target.set()


async def run_closed(
    probe: Probe[T],
    on_done: OnDone[T],
    *,
    concurrency: int,
    max_requests: int | None,
    duration: float | None,
    clock: Clock,
    halt: asyncio.Event | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> RunOutcome:
    """`concurrency` workers, each sending its next request when the previous answer arrives."""
    halt = halt or asyncio.Event()
    state: _State[T] = _State(start=clock())
    counter = itertools.count()
    deadline = state.start + duration if duration is not None else None
    stop_any = asyncio.Event()

    async def worker() -> None:
        while not stop_any.is_set():
            index = next(counter)
            if max_requests is not None and index >= max_requests:
                return
            sent = clock()
            if deadline is not None and sent >= deadline:
                return
            if state.first_send is None:
                state.first_send = sent - state.start
            state.last_send = sent - state.start
            state.launched += 1
            result = await probe(index)
            state.completed += 1
            on_done(Timing(index, sent - state.start, 0.0, clock() - sent), result)
            if should_stop is not None and not state.stopped_early and should_stop():
                state.stopped_early = True
                stop_any.set()

    async def all_workers() -> None:
        await asyncio.gather(*(worker() for _ in range(concurrency)))

    watcher = asyncio.get_running_loop().create_task(_set_when(halt, stop_any))
    try:
        await _supervise(all_workers(), stop_any)
    finally:
        watcher.cancel()
    return RunOutcome(
        launched=state.launched,
        completed=state.completed,
        dropped=0,
        elapsed=clock() - state.start,
        first_send=state.first_send,
        last_send=state.last_send,
        interrupted=halt.is_set(),
        stopped_early=state.stopped_early,
    )
