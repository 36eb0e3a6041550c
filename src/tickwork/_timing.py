"""Schedules as functions of time, on POSIX seconds.

A ``Timing`` is a compiled ``Schedule`` (zone resolved, naive datetimes localised). It has
no state: every answer is a function of its arguments (robfig/cron's ``Schedule.Next``).
``anchor`` is a previous nominal occurrence: interval grids are anchored on it so that a
weekly task keeps its weekday across restarts instead of restarting the week.
"""

from __future__ import annotations

import bisect
import math
from datetime import datetime, timedelta, tzinfo
from typing import Protocol

from ._model import Schedule, ScheduleType
from ._tz import to_ts, zone


class Timing(Protocol):
    # True for fixed-delay intervals: the next occurrence is planned when a run finishes.
    fixed_delay: bool
    # True when the schedule has finitely many occurrences (once).
    finite: bool
    # The schedule's jitter in seconds (0.0: none). Here rather than in each task's entry:
    # timings are shared by equal schedules, so it costs no slot per task (issue 7).
    jitter: float

    def first(self, now: float) -> float | None:
        """The first occurrence for a task added or enabled at ``now``."""
        ...

    def next_after(self, t: float, anchor: float) -> float | None:
        """The first occurrence strictly after ``t``."""
        ...

    def last_at_or_before(self, t: float, anchor: float) -> float | None:
        """The latest occurrence in ``[anchor, t]`` (``anchor`` itself is one), or None."""
        ...

    def after_finish(self, finished: float) -> float | None:
        """Fixed delay only: the next occurrence after a run that ended at ``finished``."""
        ...


class IntervalTiming:
    __slots__ = ("finite", "fixed_delay", "interval", "jitter", "start_at")

    def __init__(self, interval: timedelta, start_at: float | None, fixed_rate: bool) -> None:
        self.interval = interval.total_seconds()
        self.start_at = start_at
        self.fixed_delay = not fixed_rate
        self.finite = False
        self.jitter = 0.0

    def first(self, now: float) -> float:
        s = self.start_at
        if s is None or s >= now:
            return now if s is None else s
        # A start in the past: fixed rate keeps the grid, fixed delay simply starts now.
        if self.fixed_delay:
            return now
        k = math.ceil((now - s) / self.interval)
        return s + k * self.interval

    def next_after(self, t: float, anchor: float) -> float:
        iv = self.interval
        if t < anchor:
            return anchor
        k = math.floor((t - anchor) / iv) + 1
        nxt = anchor + k * iv
        return nxt if nxt > t else nxt + iv

    def last_at_or_before(self, t: float, anchor: float) -> float | None:
        if t < anchor:
            return None
        return anchor + math.floor((t - anchor) / self.interval) * self.interval

    def after_finish(self, finished: float) -> float:
        return finished + self.interval


class OnceTiming:
    __slots__ = ("finite", "fixed_delay", "jitter", "times")

    def __init__(self, times: list[float]) -> None:
        self.times = sorted(set(times))
        self.fixed_delay = False
        self.finite = True
        self.jitter = 0.0

    def first(self, now: float) -> float | None:
        # Instants already past when the task is added count as missed occurrences:
        # they run once (coalesced) or are recorded missed, per misfire_grace.
        return self.times[0] if self.times else None

    def next_after(self, t: float, anchor: float) -> float | None:
        i = bisect.bisect_right(self.times, t)
        return self.times[i] if i < len(self.times) else None

    def last_at_or_before(self, t: float, anchor: float) -> float | None:
        i = bisect.bisect_right(self.times, t)
        if i == 0:
            return None
        v = self.times[i - 1]
        return v if v >= anchor else None

    def after_finish(self, finished: float) -> None:
        return None


class CronTiming:
    __slots__ = ("expr", "finite", "fixed_delay", "jitter", "tz")

    def __init__(self, expr: str, tz: tzinfo, seconds: bool, hash_key: str) -> None:
        from .schedules.cron import CronExpression

        self.expr = CronExpression(expr, timezone=tz, seconds=seconds, hash_key=hash_key)
        self.tz = tz
        self.fixed_delay = False
        self.finite = False
        self.jitter = 0.0

    def _next(self, t: float) -> float | None:
        nxt = self.expr.next(datetime.fromtimestamp(t, self.tz))
        return None if nxt is None else nxt.timestamp()

    def first(self, now: float) -> float | None:
        return self._next(now)

    def next_after(self, t: float, anchor: float) -> float | None:
        return self._next(t)

    def last_at_or_before(self, t: float, anchor: float) -> float | None:
        if t < anchor:
            return None
        # prev() is strictly-before; fire times are whole seconds, so one microsecond past
        # t makes it "at or before t" (a whole second past t would overshoot for t=…:09.005).
        prev = self.expr.prev(datetime.fromtimestamp(t, self.tz) + timedelta(microseconds=1))
        if prev is None:
            return None
        p = prev.timestamp()
        return p if p >= anchor else None

    def after_finish(self, finished: float) -> None:
        return None


def compile_schedule(schedule: Schedule, tz: tzinfo, task_id: str) -> Timing:
    """Resolve zones and naive datetimes; raises ``InvalidScheduleError``."""
    start = None if schedule.start_at is None else to_ts(schedule.start_at, tz)
    timing: Timing
    if schedule.type is ScheduleType.INTERVAL:
        assert schedule.interval is not None
        timing = IntervalTiming(schedule.interval, start, schedule.fixed_rate)
    elif schedule.type is ScheduleType.ONCE:
        timing = OnceTiming([to_ts(t, tz) for t in schedule.times])
    else:
        assert schedule.cron is not None
        ctz = zone(schedule.timezone, field="schedule.timezone") if schedule.timezone else tz
        timing = CronTiming(schedule.cron, ctz, schedule.seconds, task_id)
    j = schedule.jitter
    timing.jitter = 0.0 if j is None else j.total_seconds()
    return timing
