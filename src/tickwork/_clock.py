"""Clocks. The scheduler never calls ``time.time()`` itself: it asks its clock.

A clock tells the time (epoch seconds) and knows how to wait until a time or until
something wakes the waiter. ``SystemClock`` waits on real conditions with a timeout;
``tickwork.testing.FakeClock`` waits until the test moves time on, so tests of timing,
retries and misfires run in milliseconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from typing import Protocol

# An upper bound on any single wait. Waits use the monotonic clock, which stops during a
# suspend and ignores wall-clock steps; re-reading the wall clock once a minute bounds how
# late a job can be after a resume, at a cost of one wake-up per minute (~0 CPU).
MAX_WAIT = 60.0


class Clock(Protocol):
    def time(self) -> float:
        """Now, as POSIX seconds."""
        ...

    def wait(self, cond: threading.Condition, until: float | None) -> None:
        """With ``cond`` held: release it and block until notified or until ``until``.

        May return early (spuriously); the caller re-checks its state.
        """
        ...

    async def async_wait(self, event: asyncio.Event, until: float | None) -> None:
        """Block until ``event`` is set or until ``until``; may return early."""
        ...


class SystemClock:
    """The real clock."""

    # The C function itself, not a method wrapping it: the engine reads the clock on
    # every add and every run (issue 7).
    time = staticmethod(time.time)

    def wait(self, cond: threading.Condition, until: float | None) -> None:
        timeout = MAX_WAIT if until is None else min(max(until - time.time(), 0.0), MAX_WAIT)
        if timeout > 0:
            cond.wait(timeout)

    async def async_wait(self, event: asyncio.Event, until: float | None) -> None:
        timeout = MAX_WAIT if until is None else min(max(until - time.time(), 0.0), MAX_WAIT)
        if timeout <= 0:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout)


SYSTEM_CLOCK = SystemClock()
