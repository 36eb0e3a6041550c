"""CronTiming.last_at_or_before: the latest fire time at or before t, never after it."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tickwork._timing import CronTiming


@pytest.mark.parametrize("frac", [0.0, 0.005, 0.5, 0.999])
def test_seconds_cron_never_returns_a_time_after_t(frac: float) -> None:
    timing = CronTiming("* * * * * *", UTC, True, "k")
    base = datetime(2026, 1, 1, 0, 0, 9, tzinfo=UTC).timestamp()
    t = base + frac
    assert timing.last_at_or_before(t, base - 60) == base


def test_minute_cron_at_and_between_fire_times() -> None:
    timing = CronTiming("*/15 * * * *", UTC, False, "k")
    t0 = datetime(2026, 1, 1, 12, 15, tzinfo=UTC).timestamp()
    assert timing.last_at_or_before(t0, t0 - 3600) == t0
    assert timing.last_at_or_before(t0 + 899.9, t0 - 3600) == t0
    assert timing.last_at_or_before(t0 - 0.001, t0 - 3600) == t0 - 900
    assert timing.last_at_or_before(t0 - 0.001, t0) is None
