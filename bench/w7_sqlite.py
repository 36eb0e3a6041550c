"""W7: W3 with a ``SqliteTaskStore`` attached (tickwork only; target p99 < 2 ms).

Every finished execution's state and run record are written to the SQLite file (in a
temporary folder) before the task's next execution, so this measures the store's cost
on the timing path.
"""

from __future__ import annotations

import os
import tempfile
import time
from typing import Any

import _util
import w3_periodic

ID = "W7"
TITLE = "W3 with SqliteTaskStore attached"
METRICS: list[_util.Metric] = w3_periodic.METRICS


def plan(quick: bool) -> list[tuple[str, dict[str, Any]]]:
    return [("tickwork", {"n": 200, "interval": 0.1, "duration": 3.0 if quick else 8.0})]


def run(lib: str, n: int, interval: float, duration: float) -> dict[str, Any]:
    if lib != "tickwork":
        raise SystemExit("W7 measures tickwork only")
    from tickwork import SqliteTaskStore

    with tempfile.TemporaryDirectory() as d:
        store = SqliteTaskStore(os.path.join(d, "bench.db"))
        a = _util.TickworkAdapter(store=store)
        a.start()
        # durable adds are slow (a transaction each): time one to leave room for n
        t0 = time.perf_counter()
        a.add_interval("lead-probe", 3600.0, _util.far_start())
        lead = 0.5 + 1.5 * n * (time.perf_counter() - t0)
        out = w3_periodic.measure(a, n, interval, duration, lead=lead)
        out["lead_s"] = round(lead, 2)
        a.stop()
        out["db_bytes"] = os.path.getsize(os.path.join(d, "bench.db"))
    return out


if __name__ == "__main__":
    _util.workload_main(__name__)
