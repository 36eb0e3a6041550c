"""W8 (not part of `make bench`): a steady mix of short, sometimes-slow and long handlers.

130 interval tasks every 100 ms with random phases (seed 1): 100 short no-op handlers,
20 that sleep 10 ms one run in 20, 10 that sleep 20 ms nine runs in 10 (1 ms otherwise).
Lateness = handler start - planned time, over all runs; CPU % of a core. It exercises
what W3 does not: ready runs queued behind running handlers (the ramp-up's holds) and
handlers whose duration changes (the watching worker's prediction, its backstop).

    python bench/w8_mixed.py            # tickwork and APScheduler, medians of 3
"""

from __future__ import annotations

import random
import time
from typing import Any

import _util

ID = "W8"
TITLE = "mixed short / sometimes-slow / long handlers every 100 ms"
METRICS: list[_util.Metric] = [
    ("late_p50_ms", "lateness p50 (ms)", "lower"),
    ("late_p99_ms", "lateness p99 (ms)", "lower"),
    ("late_max_ms", "lateness max (ms)", "lower"),
    ("cpu_pct", "CPU % of a core", "lower"),
    ("runs", "runs", "info"),
]


def plan(quick: bool) -> list[tuple[str, dict[str, Any]]]:
    p = {"duration": 3.0 if quick else 6.0}
    return [(lib, p) for lib in ("tickwork", "apscheduler")]


def run(lib: str, duration: float) -> dict[str, Any]:
    a = _util.make(lib)
    a.start()
    rng = random.Random(1)
    s0 = time.time() + 0.5
    lates: list[float] = []
    recording = False

    def handler(kind: str) -> _util.PlannedFn:
        def fn(planned: float) -> None:
            if recording:
                lates.append(time.time() - planned)
            r = rng.random()
            if kind == "slow" and r < 0.05:
                time.sleep(0.01)
            elif kind == "long":
                time.sleep(0.02 if r < 0.9 else 0.001)
        return fn

    for kind, n in (("short", 100), ("slow", 20), ("long", 10)):
        for i in range(n):
            a.add_interval(f"{kind}{i}", 0.1, s0 + rng.random() * 0.1, handler(kind))
    _util.sleep_until(s0 + 1.0)  # every task has run several times (durations known)
    recording = True
    c0, w0 = _util.cpu_seconds(), time.time()
    time.sleep(duration)
    c1, w1 = _util.cpu_seconds(), time.time()
    recording = False
    a.stop()
    return {**_util.lateness_ms(lates), "cpu_pct": round((c1 - c0) / (w1 - w0) * 100, 1),
            "runs": len(lates)}


if __name__ == "__main__":
    _util.workload_main(__name__)
