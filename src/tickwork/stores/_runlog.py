"""Run history kept in process memory, with retention: shared by the memory and JSON stores.

Records are kept as their ``_serde`` dicts (what the JSON store writes) plus the two
numbers history needs: the sort time (``started_at`` or ``scheduled_for``) and a
sequence number in recorded order, which breaks ties between equal times.

Retention, the same in every store:

* ``keep_runs_per_task``: per task, the newest N *recorded* runs are kept (an update of a
  run, same ``run_id``, does not make it newer). Recorded order and time order agree
  except for late ``missed``/``skipped`` records; counting by recorded order makes
  pruning O(1) here and an indexed delete in SQL.
* ``keep_days``: runs whose sort time is older than ``now - keep_days`` are dropped. This
  sweep scans everything, so it runs at most once a minute (of the caller's ``now``).
"""

from __future__ import annotations

import heapq
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from .._model import RunRecord
from .._serde import dump_json, record_from_dict, sort_timestamp

AGE_SWEEP_EVERY = timedelta(minutes=1)


@dataclass(slots=True)
class RunEntry:
    seq: int
    ts: float
    task_id: str
    data: dict[str, Any]
    line: bytes | None = None  # cached UTF-8 JSON, so unchanged records are not re-encoded

    def json(self) -> bytes:
        if self.line is None:
            self.line = dump_json(self.data).encode("utf-8")
        return self.line


def check_retention(keep_runs_per_task: int | None, keep_days: float | None) -> None:
    if keep_runs_per_task is not None and (
        isinstance(keep_runs_per_task, bool)
        or not isinstance(keep_runs_per_task, int)
        or keep_runs_per_task < 1
    ):
        raise ValueError(
            f"keep_runs_per_task: expected an int >= 1 or None, got {keep_runs_per_task!r}"
        )
    if keep_days is not None and (
        isinstance(keep_days, bool) or not isinstance(keep_days, int | float) or not keep_days > 0
    ):
        raise ValueError(f"keep_days: expected a number > 0 or None, got {keep_days!r}")


class RunLog:
    """Run records by ``run_id`` in recorded order, with per-task indexes. Not thread-safe."""

    def __init__(self, keep_runs_per_task: int | None, keep_days: float | None) -> None:
        check_retention(keep_runs_per_task, keep_days)
        self.keep_runs_per_task = keep_runs_per_task
        self.keep_days = keep_days
        self._runs: dict[str, RunEntry] = {}
        self._by_task: dict[str, deque[str]] = {}
        self._seq = 0
        self._last_sweep: datetime | None = None

    def __len__(self) -> int:
        return len(self._runs)

    def entries(self) -> list[RunEntry]:
        """Every entry in recorded order (the order the JSON file keeps)."""
        return list(self._runs.values())

    def put(self, data: dict[str, Any], record: RunRecord) -> None:
        """Add a record, or replace the one with the same ``run_id`` (keeping its place)."""
        ts = sort_timestamp(record)
        old = self._runs.get(record.run_id)
        if old is not None and old.task_id == record.task_id:
            old.ts, old.data, old.line = ts, data, None
            return
        if old is not None:  # same run id, other task: treat as a new record
            self._forget(record.run_id)
        self._seq += 1
        self._runs[record.run_id] = RunEntry(self._seq, ts, record.task_id, data)
        ids = self._by_task.setdefault(record.task_id, deque())
        ids.append(record.run_id)
        if self.keep_runs_per_task is not None:
            while len(ids) > self.keep_runs_per_task:
                del self._runs[ids.popleft()]

    def load(self, data: dict[str, Any]) -> None:
        """Add a record read back from a file (validates it: raises StoreError)."""
        self.put(data, record_from_dict(data))

    def sweep(self, now: datetime) -> None:
        """Apply ``keep_days``; cheap unless a minute of ``now`` has passed."""
        if self.keep_days is None:
            return
        if self._last_sweep is not None and now - self._last_sweep < AGE_SWEEP_EVERY:
            return
        self._last_sweep = now
        cutoff = now.timestamp() - self.keep_days * 86400.0
        for run_id in [r for r, e in self._runs.items() if e.ts < cutoff]:
            self._forget(run_id)

    def _forget(self, run_id: str) -> None:
        e = self._runs.pop(run_id)
        ids = self._by_task[e.task_id]
        ids.remove(run_id)
        if not ids:
            del self._by_task[e.task_id]

    def history(self, task_id: str | None, limit: int) -> list[RunRecord]:
        if limit <= 0:
            return []
        if task_id is None:
            pool: list[RunEntry] = list(self._runs.values())
        else:
            pool = [self._runs[r] for r in self._by_task.get(task_id, ())]
        newest = heapq.nlargest(limit, pool, key=lambda e: (e.ts, e.seq))
        return [record_from_dict(e.data) for e in newest]
