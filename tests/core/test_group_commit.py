"""Group commit (issue 7): finished runs are written by one store-writer thread in
batches, and API 4.7 still holds: each finished execution's state and record are
durable before that task's next execution starts."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tickwork import Scheduler, SqliteTaskStore, Task, every
from tickwork.testing import FakeClock, run_until

from .conftest import Calls, at_s


class SlowDisk(SqliteTaskStore):
    """A store whose writes take longer than the task's interval (a slow disk)."""

    def record_runs(self, items: Any, now: datetime) -> None:
        time.sleep(0.03)
        super().record_runs(items, now)


def test_each_run_is_durable_before_the_next_one_starts(tmp_path: Path) -> None:
    store = SlowDisk(tmp_path / "t.db")
    seen: list[tuple[int, int, int]] = []  # (call number, records stored, run_count stored)
    lock = threading.Lock()

    def handler() -> None:
        with lock:
            n = len(seen)
            # a second connection: what a crash right now would leave on disk
            probe = SqliteTaskStore(tmp_path / "t.db")
            try:
                records = len(probe.get_history("t", 1000))
                stored = [d for d in probe.load_tasks() if d["id"] == "t"]
            finally:
                probe.close()
            seen.append((n, records, stored[0]["state"]["run_count"] if stored else -1))

    s = Scheduler(store=store, timezone="UTC")
    s.add_task(Task(id="t", handler=handler,
                    schedule=every(seconds=0.01, start_at=datetime.now(UTC), fixed_rate=True)))
    # busy neighbours, so that batches hold several runs
    for i in range(20):
        s.add_task(Task(id=f"n{i}", handler=lambda: None, schedule=every(seconds=0.005)))
    s.start()
    deadline = time.monotonic() + 10
    try:
        while len(seen) < 8 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        s.stop()
    assert len(seen) >= 8
    for n, records, run_count in seen:
        assert records == n, f"run {n + 1} started with {records} records stored"
        assert run_count == n, f"run {n + 1} started with run_count {run_count} stored"
    store.close()


def test_batches_go_through_record_runs_in_one_call(tmp_path: Path, clock: FakeClock) -> None:
    calls: list[int] = []

    class Counting(SqliteTaskStore):
        def record_runs(self, items: Any, now: datetime) -> None:
            calls.append(len(items))
            super().record_runs(items, now)

    store = Counting(tmp_path / "t.db")
    s = Scheduler(store=store, timezone="UTC", clock=clock, max_workers=8)
    handlers = [Calls(clock) for _ in range(8)]
    for i, h in enumerate(handlers):
        s.add_task(Task(id=f"t{i}", handler=h, schedule=every(seconds=10)))
    s.start()
    try:
        run_until(s, clock, at_s(25))
    finally:
        s.stop()
    assert all(h.count == 3 for h in handlers)  # t = 0, 10, 20
    assert sum(calls) == 24
    hist = store.get_history(None, 1000)
    assert len(hist) == 24
    stored = {d["id"]: d for d in store.load_tasks()}
    assert all(stored[f"t{i}"]["state"]["run_count"] == 3 for i in range(8))
    json.dumps(stored)  # plain JSON
    store.close()
