"""W1: adding interval tasks (every hour, so none runs) to a running scheduler.

Reports µs per add over the first and the last tenth of the adds (with n = 100,000:
the adds up to 10k and those from 90k to 100k), their ratio (growth), the overall mean,
and memory per task: RSS growth (after a GC) divided by n. Each add builds its own Task
and schedule, as user code does; the handler is one shared no-op function.
"""

from __future__ import annotations

import time
from typing import Any

import _util

ID = "W1"
TITLE = "add interval tasks to a running scheduler"
# A tenth of tickwork's adds takes ~50 ms, shorter than this VM's hiccups: the full run
# takes the median of 5 (each library's runs interleaved), not 3.
FULL_REPEAT = 5
METRICS: list[_util.Metric] = [
    ("us_per_add_first", "µs/add, first tenth", "lower"),
    ("us_per_add_last", "µs/add, last tenth", "lower"),
    ("growth", "growth last/first", "lower"),
    ("us_per_add", "µs/add, all", "lower"),
    ("total_s", "total (s)", "lower"),
    ("bytes_per_task", "RSS bytes/task", "lower"),
]


def plan(quick: bool) -> list[tuple[str, dict[str, Any]]]:
    p = {"n": 10_000 if quick else 100_000}
    return [(lib, p) for lib in ("tickwork", "apscheduler", "schedule")]


def run(lib: str, n: int) -> dict[str, Any]:
    a = _util.make(lib)
    a.start()
    far = _util.far_start()
    tenth = max(1, n // 10)
    rss0 = _util.settled_rss()
    marks: list[float] = []
    t0 = time.perf_counter()
    for i in range(n):
        if i % tenth == 0:
            marks.append(time.perf_counter())
        a.add_interval(f"t{i}", 3600.0, far)
    t1 = time.perf_counter()
    marks.append(t1)
    rss1 = _util.settled_rss()
    first = (marks[1] - marks[0]) / tenth * 1e6
    last = (marks[-1] - marks[-2]) / (n - tenth * (len(marks) - 2)) * 1e6
    a.stop()
    return {
        "n": n,
        "us_per_add_first": round(first, 2),
        "us_per_add_last": round(last, 2),
        "growth": round(last / first, 3),
        "us_per_add": round((t1 - t0) / n * 1e6, 2),
        "total_s": round(t1 - t0, 3),
        "bytes_per_task": round((rss1 - rss0) / n),
    }


if __name__ == "__main__":
    _util.workload_main(__name__)
