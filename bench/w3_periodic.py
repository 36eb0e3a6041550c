"""W3: 200 tasks every 100 ms for 8 s: start lateness, CPU, missed runs.

Task i first runs at s0 + i * interval / n (phases spread evenly), then every interval
at a fixed rate. Lateness = handler start (time.time()) - planned time: tickwork passes
the planned time (ctx.scheduled_for); for APScheduler it is the latest grid point
first + k * interval (exact while lateness < interval); for ``schedule`` it is the job's
next_run, still unchanged while the job runs. CPU % = process CPU time / wall time over
the measured window (100 % = one core). Missed = planned occurrences in the window that
did not start.

``measure()`` is reused by W6 (with many idle tasks registered) and W7 (SQLite store).
"""

from __future__ import annotations

import math
import time
from typing import Any

import _util

ID = "W3"
TITLE = "200 tasks every 100 ms: lateness, CPU, missed runs"
METRICS: list[_util.Metric] = [
    ("late_p50_ms", "lateness p50 (ms)", "lower"),
    ("late_p99_ms", "lateness p99 (ms)", "lower"),
    ("late_max_ms", "lateness max (ms)", "lower"),
    ("cpu_pct", "CPU % of a core", "lower"),
    ("missed", "missed runs", "lower"),
    ("duplicates", "occurrences run twice", "lower"),
    ("runs", "runs", "info"),
]


def plan(quick: bool) -> list[tuple[str, dict[str, Any]]]:
    p = {"n": 200, "interval": 0.1, "duration": 3.0 if quick else 8.0}
    return [(lib, p) for lib in ("tickwork", "apscheduler", "schedule")]


def measure(a: _util.Adapter, n: int, interval: float, duration: float,
            lead: float = 1.0) -> dict[str, Any]:
    """Register the periodic tasks on the running adapter ``a`` and measure; the first
    occurrence is ``lead`` seconds away (time enough to add the n tasks)."""
    s0 = time.time() + lead
    # occurrences planned before `end` count; the margin keeps µs rounding of the
    # planned datetimes from moving a grid point across the boundary
    end = s0 + duration - 1e-4
    lates: list[float] = []
    seen: set[tuple[int, float]] = set()
    dups: list[tuple[int, float, float]] = []
    firsts = []
    for i in range(n):
        first = s0 + i * interval / n

        def rec(planned: float, i: int = i) -> None:
            now = time.time()
            if planned < end:
                lates.append(now - planned)
                key = (i, round(planned, 4))
                if key in seen:
                    dups.append((i, planned, now))
                seen.add(key)

        firsts.append(first)
        a.add_interval(f"p{i}", interval, first, rec)
    setup_late = time.time() > s0
    _util.sleep_until(s0)
    c0, w0 = _util.cpu_seconds(), time.time()
    _util.sleep_until(end)
    c1, w1 = _util.cpu_seconds(), time.time()
    time.sleep(min(1.0, interval * 3))  # let the last occurrences in the window start
    expected = sum(math.ceil((end - f) / interval) for f in firsts)
    runs = len(lates)
    return {
        **_util.lateness_ms(lates),
        "cpu_pct": round((c1 - c0) / (w1 - w0) * 100, 1),
        "runs": runs,
        "expected": expected,
        "missed": max(0, expected - len(seen)),
        "duplicates": len(dups),
        "dup_examples": [[i, round(p - s0, 4), round(t - s0, 4)] for i, p, t in dups[:3]],
        "setup_late": setup_late,
    }


def run(lib: str, n: int, interval: float, duration: float) -> dict[str, Any]:
    a = _util.make(lib)
    a.start()
    out = measure(a, n, interval, duration, lead=0.5)
    a.stop()
    return out


if __name__ == "__main__":
    _util.workload_main(__name__)
