"""The store protocol every backend implements, and that ``check_store`` verifies.

A store persists two things:

* tasks, as JSON-compatible dicts produced by ``tickwork._serde.task_to_dict`` (definition
  plus runtime state: next_run, counts, last error…). The store treats the dict as opaque
  except for ``"id"``; it must give back exactly what it was given (orphans are saved back
  byte-for-byte).
* run records (``RunRecord``), the history, newest first, with a retention.

Methods are synchronous and take ``now`` where they need time, so that stores never read
the clock (tests drive time). Every method raises ``StoreError`` on an unreadable, corrupt
or unreachable store; a store that failed to read is never overwritten.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from .._model import RunRecord

TaskDict = dict[str, Any]


@runtime_checkable
class TaskStore(Protocol):
    """What the scheduler needs from a store."""

    def load_tasks(self) -> list[TaskDict]:
        """Every stored task, in insertion order. ``StoreError`` if unreadable or corrupt."""
        ...

    def upsert_task(self, task: TaskDict, now: datetime) -> None:
        """Insert or replace one task; durable when it returns. A replaced task keeps its
        place in the insertion order."""
        ...

    def delete_task(self, task_id: str, now: datetime) -> None:
        """Delete one task (its history stays until retention drops it). No error if absent."""
        ...

    def replace_tasks(self, tasks: Sequence[TaskDict], now: datetime) -> None:
        """Make the stored task set exactly ``tasks`` (``save_tasks``), atomically."""
        ...

    def record_run(self, task: TaskDict | None, record: RunRecord, now: datetime) -> None:
        """Append (or update, same ``run_id``) a run record and, in the same atomic write,
        the task's new state when ``task`` is given (upserted: pass None for a task that
        was removed meanwhile, or it comes back). Applies retention: each store keeps
        the newest ``keep_runs_per_task`` recorded runs per task and, if set, drops runs
        older than ``now - keep_days`` (docs/stores.md)."""
        ...

    def get_history(self, task_id: str | None = None, limit: int = 100) -> list[RunRecord]:
        """Run records, newest first (by ``started_at``, else ``scheduled_for``; for equal
        times the later recorded first)."""
        ...

    def close(self) -> None:
        """Release files/connections. Idempotent."""
        ...


RunWrite = tuple["TaskDict | None", RunRecord]


def record_runs(store: TaskStore, items: Sequence[RunWrite], now: datetime) -> None:
    """Write several finished runs: ``store.record_runs(items, now)`` when the store has it,
    else ``record_run`` for each, in order.

    ``record_runs`` is an optional addition to the protocol (group commit): it must have
    the effect of calling ``record_run(task, record, now)`` for each item in order, and
    may do it in one atomic write (one transaction, one fsync), which is what lets a
    durable store keep up with thousands of runs per second (issue 7). Stores written
    against the original protocol keep working through the fallback.
    """
    batch = getattr(store, "record_runs", None)
    if callable(batch):
        batch(items, now)
        return
    for task, record in items:
        store.record_run(task, record, now)
