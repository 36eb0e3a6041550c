"""W4: CPU while idle: n tasks due in an hour, nothing runs for ``idle`` seconds.

After adding the tasks and one second to settle, CPU % = process CPU time / wall time
over the idle window (100 % = one core). tickwork carries 100,000 tasks in full mode,
the peers 20,000 (as in issue 7).
"""

from __future__ import annotations

import time
from typing import Any

import _util

ID = "W4"
TITLE = "idle CPU with tasks due in an hour"
METRICS: list[_util.Metric] = [
    ("cpu_pct", "CPU % of a core (idle)", "lower"),
    ("n", "tasks", "info"),
]


def plan(quick: bool) -> list[tuple[str, dict[str, Any]]]:
    idle = 1.5 if quick else 5.0
    peers = {"n": 10_000 if quick else 20_000, "idle": idle}
    tw = {"n": 10_000 if quick else 100_000, "idle": idle}
    return [("tickwork", tw), ("apscheduler", peers), ("schedule", peers)]


def run(lib: str, n: int, idle: float) -> dict[str, Any]:
    a = _util.make(lib)
    a.start()
    far = _util.far_start()
    for i in range(n):
        a.add_interval(f"t{i}", 3600.0, far)
    time.sleep(min(1.0, idle / 3))  # settle: let the timer thread see every add
    c0, w0 = _util.cpu_seconds(), time.time()
    time.sleep(idle)
    c1, w1 = _util.cpu_seconds(), time.time()
    a.stop()
    return {"n": n, "cpu_pct": round((c1 - c0) / (w1 - w0) * 100, 2)}


if __name__ == "__main__":
    _util.workload_main(__name__)
