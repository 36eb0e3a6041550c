"""W2: a burst of one-shot tasks due at the same instant, no-op handlers.

``n`` one-shot tasks are added to a running scheduler, all due at one instant a little
later; each handler records its start and finish (time.time()). Throughput is
n / (last finish - first start): runs through the worker pool (``schedule`` has no pool
and runs them inline in its polling thread).
"""

from __future__ import annotations

import time
from typing import Any

import _util

ID = "W2"
TITLE = "one-shot tasks due at the same instant: runs per second"
METRICS: list[_util.Metric] = [
    ("runs_per_s", "runs/s", "higher"),
    ("span_s", "first start → last finish (s)", "lower"),
    ("first_late_ms", "first start lateness (ms)", "lower"),
    ("runs", "runs completed", "info"),
]


def plan(quick: bool) -> list[tuple[str, dict[str, Any]]]:
    p = {"n": 5_000}
    return [(lib, p) for lib in ("tickwork", "apscheduler", "schedule")]


def run(lib: str, n: int) -> dict[str, Any]:
    a = _util.make(lib)
    a.start()
    starts: list[float] = []
    ends: list[float] = []
    clock = time.time

    def job() -> None:
        starts.append(clock())
        ends.append(clock())

    # due after every add is done (0.5 s + 300 µs per add; checked: added_before_due)
    when = _util.utc(time.time() + 0.5 + n * 300e-6).timestamp()
    for i in range(n):
        a.add_once(f"b{i}", when, job)
    added = time.time()
    _util.wait_for(lambda: len(ends) >= n, max(10.0, when - time.time() + 20.0))
    a.stop()
    if not ends:
        return {"error": "no run finished"}
    span = max(ends) - min(starts)
    return {
        "runs": len(ends),
        "runs_per_s": round(len(ends) / span) if span > 0 else float("nan"),
        "span_s": round(span, 4),
        "first_late_ms": round((min(starts) - when) * 1000, 3),
        "added_before_due": added < when,
    }


if __name__ == "__main__":
    _util.workload_main(__name__)
