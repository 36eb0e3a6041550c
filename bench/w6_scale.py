"""W6: scale: n interval tasks (every hour, none due) added, then W3 on top (tickwork).

Reports the time to add them and the RSS after (and its growth), then W3's measurement
(200 tasks every 100 ms) with those n tasks registered. Full mode: 1,000,000 tasks;
quick mode: 20,000 (targets then checked extrapolated to 1,000,000). Targets (issue 7):
1,000,000 added in < 10 s, RSS < 600 MB, W3 lateness unchanged.
"""

from __future__ import annotations

import time
from typing import Any

import _util
import w3_periodic

ID = "W6"
TITLE = "scale: many idle tasks registered, then W3"
SINGLE_RUN = True  # one run even in full mode: adding a million tasks takes minutes
METRICS: list[_util.Metric] = [
    ("n", "idle tasks", "info"),
    ("add_s", "time to add (s)", "lower"),
    ("rss_mb", "RSS after adding (MB)", "lower"),
    ("rss_growth_mb", "RSS growth (MB)", "lower"),
    ("late_p50_ms", "W3 lateness p50 (ms)", "lower"),
    ("late_p99_ms", "W3 lateness p99 (ms)", "lower"),
    ("late_max_ms", "W3 lateness max (ms)", "lower"),
    ("cpu_pct", "W3 CPU % of a core", "lower"),
    ("missed", "W3 missed runs", "lower"),
]


def plan(quick: bool) -> list[tuple[str, dict[str, Any]]]:
    return [("tickwork", {"n": 20_000 if quick else 1_000_000, "duration": 3.0 if quick
                          else 8.0})]


def run(lib: str, n: int, duration: float) -> dict[str, Any]:
    a = _util.make(lib)
    a.start()
    far = _util.far_start()
    rss0 = _util.settled_rss()
    t0 = time.perf_counter()
    for i in range(n):
        a.add_interval(f"t{i}", 3600.0, far)
    add_s = time.perf_counter() - t0
    rss1 = _util.settled_rss()
    out = w3_periodic.measure(a, 200, 0.1, duration)
    a.stop()
    return {"n": n, "add_s": round(add_s, 2), "rss_mb": round(rss1 / 2**20, 1),
            "rss_growth_mb": round((rss1 - rss0) / 2**20, 1), **out}


if __name__ == "__main__":
    _util.workload_main(__name__)
