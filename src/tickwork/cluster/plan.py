"""Which occurrences a due task materialises: pure, no clock, no database.

The input is the task's stored ``next_run`` (the next nominal occurrence not yet
materialised) and the *database's* ``now``; the wall clock of the worker never enters,
so skewed workers plan the same rows. The misfire rule is the one of the single-process
planner (``_core._catch_up``, API 4.6):

* ``misfire_grace=None``: everything that fell behind collapses into one run, at the
  latest occurrence at or before now; the folded occurrences are written as ``missed``
  rows saying so (the local scheduler writes nothing for them; in a cluster an occurrence
  must never vanish without a trace);
* otherwise occurrences older than ``now - grace`` become ``missed`` rows (the first
  ``MAX_MISSED``; a longer outage is summarised by the count), and the latest one runs
  if it is still within the grace.

Then the next nominal time is computed from the latest planned occurrence, anchored on
the stored one (never from "now"), so interval grids do not drift.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from typing import Any

from .._core import MAX_MISSED
from .._serde import task_from_dict
from .._timing import Timing, compile_schedule


@dataclass(frozen=True, slots=True)
class Plan:
    """What to write for one due task."""

    run: datetime | None                      # occurrence to run (a pending row), if any
    missed: list[datetime] = field(default_factory=list)  # rows written as ``missed``
    more_missed: int = 0                      # further missed occurrences, not written
    next_run: datetime | None = None          # new tw_task.next_run (None: none planned)
    # Occurrences folded into ``run`` (API 4.6 collapse): written as ``missed`` rows with
    # the reason, so that in a cluster every occurrence is visible (API 7.1).
    coalesced: list[datetime] = field(default_factory=list)


def _dt(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def plan_occurrences(timing: Timing, next_run: datetime, now: datetime,
                     grace: float | None) -> Plan:
    """The plan for a task whose stored next nominal occurrence is ``next_run``."""
    nominal = next_run.timestamp()
    t_now = now.timestamp()
    if nominal > t_now:
        return Plan(run=None, next_run=next_run)  # not due: nothing to do
    latest = timing.last_at_or_before(t_now, nominal)
    if latest is not None and latest > t_now:
        # CronTiming with seconds=True answers prev(t + 1 s), which is *after* a
        # fractional t: ask again at the whole second (never plan a future occurrence).
        latest = timing.last_at_or_before(math.floor(t_now), nominal)
        if latest is not None and latest > t_now:
            latest = None
    if latest is None or latest < nominal:
        latest = nominal
    missed: list[datetime] = []
    coalesced: list[datetime] = []
    more = 0
    run_at: float | None = latest
    cutoff = float("-inf") if grace is None else t_now - grace
    if latest < cutoff:
        run_at = None
    o: float | None = nominal
    while o is not None and o <= latest and (run_at is None or o < run_at):
        if len(missed) + len(coalesced) < MAX_MISSED:
            (missed if o < cutoff else coalesced).append(_dt(o))
        else:
            more += 1
            if more >= 100_000:
                break
        o = timing.next_after(o, nominal)
    if timing.fixed_delay:
        nxt = None  # planned by the completion (after_finish), in the same transaction
    else:
        nxt_ts = timing.next_after(latest, nominal)
        nxt = None if nxt_ts is None else _dt(nxt_ts)
    return Plan(run=None if run_at is None else _dt(run_at), missed=missed, more_missed=more,
                next_run=nxt, coalesced=coalesced)


def planner_for(tz: tzinfo = UTC) -> Callable[[Mapping[str, Any], datetime, datetime], Plan]:
    """A planner over stored task dicts: ``plan(spec, next_run, db_now)``. ``tz`` resolves
    naive datetimes and zone-less cron expressions, like ``Scheduler(timezone=...)``."""

    def plan(spec: Mapping[str, Any], next_run: datetime, now: datetime) -> Plan:
        task = task_from_dict(spec)
        timing = compile_schedule(task.schedule, tz, task.id)
        grace = task.misfire_grace
        secs = None if grace is None else (
            grace.total_seconds() if not isinstance(grace, int | float) else float(grace))
        return plan_occurrences(timing, next_run, now, secs)

    return plan
