"""A cron task over a simulated year in Europe/Berlin (DST both ways), on a FakeClock.

Every fire time must equal CronExpression(...).iter (issue 3, acceptance 5).
"""

from __future__ import annotations

from datetime import UTC, datetime
from itertools import takewhile

import pytest

from tickwork import CronExpression, Scheduler, Task, cron
from tickwork.testing import FakeClock, run_until

START = datetime(2026, 1, 1, tzinfo=UTC)
END = datetime(2027, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize("expr", ["30 2 * * *", "0 */6 * * *"])
def test_cron_year_matches_iter(expr: str) -> None:
    clock = FakeClock(START)
    s = Scheduler(clock=clock, timezone="UTC")
    fired: list[datetime] = []
    s.add_task(Task(id="c", handler=lambda ctx: fired.append(ctx.scheduled_for),
                    schedule=cron(expr, timezone="Europe/Berlin")))
    starts: list[float] = []
    s.subscribe(lambda ev: starts.append(clock.time()), events=["run_started"])
    with s:
        run_until(s, clock, END, timeout=60)
    expected = list(takewhile(lambda d: d <= END,
                              CronExpression(expr, timezone="Europe/Berlin").iter(START)))
    assert len(expected) > 300
    # Compare instants: Python's inter-zone == is always False inside a repeated hour (PEP 495)
    want = [d.timestamp() for d in expected]
    assert [d.timestamp() for d in fired] == want
    assert starts == want  # each run started exactly on time
    assert all(d.utcoffset() is not None for d in fired)
    if expr == "30 2 * * *":
        # 2026-03-29 02:30 does not exist in Berlin; Debian cron runs it at 03:00 (skip-forward)
        march = [d for d in fired if d.month == 3 and d.day == 29]
        assert len(march) == 1
