"""Test helpers for tickwork users and its own tests.

``FakeClock`` replaces the real clock: time moves only when the test says so, so timing,
retries, misfires and DST are tested in milliseconds::

    clock = FakeClock(datetime(2026, 1, 1, tzinfo=UTC))
    sched = Scheduler(clock=clock, timezone="UTC")
    sched.add_task(Task(id="t", handler=fn, schedule=every(minutes=5)))
    with sched:
        run_until(sched, clock, clock.now() + timedelta(hours=1))   # 13 runs, no sleeping

``run_until`` steps the clock from one due time to the next and waits (in real time,
with a deadline) for the scheduler to finish what was due, so every occurrence runs on
time. ``settle`` waits for the scheduler to finish what is due at the current fake time.
``check_store`` is the conformance suite every store backend passes.
"""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import UTC, datetime, timedelta

from .._engine import Engine

__all__ = ["FakeClock", "arun_until", "asettle", "check_store", "run_until", "settle"]


class FakeClock:
    """A clock that moves only with :meth:`advance` and :meth:`set`."""

    def __init__(self, start: datetime | float | None = None) -> None:
        if start is None:
            start = datetime(2026, 1, 1, tzinfo=UTC)
        self._now = start.timestamp() if isinstance(start, datetime) else float(start)
        self._lock = threading.Lock()
        self._conds: set[threading.Condition] = set()
        self._events: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()

    def time(self) -> float:
        return self._now

    def now(self) -> datetime:
        """The current fake time as an aware UTC datetime."""
        return datetime.fromtimestamp(self._now, UTC)

    def advance(self, delta: timedelta | float) -> None:
        """Move time forward by ``delta`` (timedelta or seconds) and wake every waiter."""
        secs = delta.total_seconds() if isinstance(delta, timedelta) else float(delta)
        if secs < 0:
            raise ValueError(f"advance: negative delta {delta!r}")
        self.set(self._now + secs)

    def set(self, when: datetime | float) -> None:
        """Jump to ``when`` (may go backwards, like a real clock step) and wake every waiter."""
        with self._lock:
            self._now = when.timestamp() if isinstance(when, datetime) else float(when)
            conds = list(self._conds)
            events = list(self._events)
        for c in conds:
            with c:
                c.notify_all()
        for loop, ev in events:
            if not loop.is_closed():
                loop.call_soon_threadsafe(ev.set)

    def wait(self, cond: threading.Condition, until: float | None) -> None:
        # Check the time and register under the same lock that set() takes: checking first
        # and registering after lost wake-ups when set() ran in between (flaky hangs).
        with self._lock:
            if until is not None and self._now >= until:
                return
            self._conds.add(cond)
        try:
            cond.wait()  # the caller holds cond, so set()'s notify cannot come before this
        finally:
            with self._lock:
                self._conds.discard(cond)

    async def async_wait(self, event: asyncio.Event, until: float | None) -> None:
        item = (asyncio.get_running_loop(), event)
        with self._lock:
            if until is not None and self._now >= until:
                return
            self._events.add(item)
        try:
            await event.wait()
        finally:
            with self._lock:
                self._events.discard(item)


def _engine(sched: object) -> Engine:
    eng = getattr(sched, "_engine", None)
    if not isinstance(eng, Engine):
        raise TypeError(f"expected a Scheduler or AsyncScheduler, got {sched!r}")
    return eng


def _idle(eng: Engine) -> bool:
    """Nothing executing, nothing due now, nothing waiting for a free worker."""
    with eng.lock:
        p = eng.planner
        # A handler sleeping in ctx.wait() on the fake clock only moves on when time does:
        # it counts as idle, or run_until could never advance to its deadline.
        sleeping = sum(1 for r in p.runs.values()
                       if r.active and r.ctx is not None and r.ctx.sleeping)
        if eng.busy > sleeping:
            return False
        if any((r.active and not (r.ctx is not None and r.ctx.sleeping)) or r.done
               for r in p.runs.values()):
            return False
        if p.ready and eng.busy < eng.max_workers and not eng.stopping:
            return False
        nxt = p.next_wakeup()
        return nxt is None or nxt > eng.now() or not eng.started


def _next_time(eng: Engine) -> float | None:
    """The next instant anything waits for: a planner timer or a handler in ctx.wait()."""
    with eng.lock:
        times = [r.ctx._wait_until for r in eng.planner.runs.values()
                 if r.active and r.ctx is not None and r.ctx.sleeping]
        nxt = eng.planner.next_wakeup()
    if nxt is not None:
        times.append(nxt)
    return min((t for t in times if t is not None), default=None)


def _state(eng: Engine) -> str:
    """What the scheduler is busy with, for the error message of a settle that timed out."""
    with eng.lock:
        p = eng.planner
        runs = ", ".join(
            f"{r.entry.task_id}#{r.attempt}(active={r.active} done={r.done} "
            f"sleeping={r.ctx is not None and r.ctx.sleeping})" for r in p.runs.values())
        return (f"now={eng.now()} busy={eng.busy} ready={len(p.ready)} "
                f"next_wakeup={p.next_wakeup()} started={eng.started} runs=[{runs}]")


def settle(sched: object, timeout: float = 10.0) -> None:
    """Wait (real time, polling with a deadline) until the scheduler has done what is due."""
    eng = _engine(sched)
    deadline = time.monotonic() + timeout
    while not _idle(eng):
        if time.monotonic() > deadline:
            raise TimeoutError(f"scheduler did not settle within {timeout}s: {_state(eng)}")
        time.sleep(0.0002)


def run_until(sched: object, clock: FakeClock, until: datetime | float,
              *, timeout: float = 30.0) -> None:
    """Step ``clock`` through every due time up to ``until``, settling at each."""
    eng = _engine(sched)
    target = until.timestamp() if isinstance(until, datetime) else float(until)
    deadline = time.monotonic() + timeout
    settle(sched)
    while time.monotonic() < deadline:
        nxt = _next_time(eng)
        if nxt is None or nxt > target:
            break
        clock.set(max(nxt, clock.time()))
        settle(sched)
    else:
        raise TimeoutError(f"run_until did not reach the target within {timeout}s")
    clock.set(max(target, clock.time()))
    settle(sched)


async def asettle(sched: object, timeout: float = 10.0) -> None:
    """``settle`` for an ``AsyncScheduler`` (yields to the loop while waiting)."""
    eng = _engine(sched)
    deadline = time.monotonic() + timeout
    while not _idle(eng):
        if time.monotonic() > deadline:
            raise TimeoutError(f"scheduler did not settle within {timeout}s: {_state(eng)}")
        await asyncio.sleep(0.0002)


async def arun_until(sched: object, clock: FakeClock, until: datetime | float,
                     *, timeout: float = 30.0) -> None:
    """``run_until`` for an ``AsyncScheduler``."""
    eng = _engine(sched)
    target = until.timestamp() if isinstance(until, datetime) else float(until)
    deadline = time.monotonic() + timeout
    await asettle(sched)
    while time.monotonic() < deadline:
        nxt = _next_time(eng)
        if nxt is None or nxt > target:
            break
        clock.set(max(nxt, clock.time()))
        await asettle(sched)
    clock.set(max(target, clock.time()))
    await asettle(sched)


def check_store(*args: object, **kwargs: object) -> None:
    """The store conformance suite (see ``tickwork.testing.store_suite``)."""
    from .store_suite import check_store as _check

    _check(*args, **kwargs)  # type: ignore[arg-type]
