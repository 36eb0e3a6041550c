"""W0: start lateness of one-shot probes among 10,000 registered tasks (issue 2, acc. 3).

10,000 far-future interval tasks are registered on a running scheduler, then ``probes``
one-shot tasks are added, each due at a known instant, spread evenly over ``spread``
seconds. Each probe's handler records ``time.time() - planned``. Target: tickwork p99 < 5 ms.
"""

from __future__ import annotations

import time
from typing import Any

import _util

ID = "W0"
TITLE = "start lateness of one-shot probes with 10,000 tasks registered"
METRICS: list[_util.Metric] = [
    ("late_p50_ms", "lateness p50 (ms)", "lower"),
    ("late_p99_ms", "lateness p99 (ms)", "lower"),
    ("late_max_ms", "lateness max (ms)", "lower"),
    ("probes_run", "probes run", "info"),
]


def plan(quick: bool) -> list[tuple[str, dict[str, Any]]]:
    p = {"tasks": 10_000, "probes": 200, "spread": 1.0 if quick else 4.0}
    return [("tickwork", p), ("apscheduler", p)]


def run(lib: str, tasks: int, probes: int, spread: float) -> dict[str, Any]:
    a = _util.make(lib)
    a.start()
    far = _util.far_start()
    for i in range(tasks):
        a.add_interval(f"bg{i}", 3600.0, far)
    lates: list[float] = []
    t0 = time.time() + 0.5
    for i in range(probes):
        # the planned instant as the library sees it (datetime: microsecond precision)
        planned = _util.utc(t0 + i * spread / probes).timestamp()

        def probe(planned: float = planned) -> None:
            lates.append(time.time() - planned)

        a.add_once(f"probe{i}", planned, probe)
    _util.wait_for(lambda: len(lates) >= probes, spread + 5.0)
    a.stop()
    return {**_util.lateness_ms(lates), "probes_run": len(lates)}


if __name__ == "__main__":
    _util.workload_main(__name__)
