"""``MemoryTaskStore``: the store protocol in process memory (tests, the default).

It behaves like the durable stores in everything but durability: dicts go in and come
out through a JSON round trip, so a value a file could not hold fails here too (as
``StoreError``), and callers can mutate what they get back without touching the store.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from .._errors import StoreError
from .._model import RunRecord
from .._serde import dump_json, record_to_dict, task_id_of
from ._runlog import RunLog
from .base import TaskDict


def copy_task(task: TaskDict) -> tuple[str, str]:
    """``(id, json text)`` of a task dict; StoreError if it is not JSON-compatible."""
    tid = task_id_of(task)
    try:
        text = dump_json(task)
        text.encode("utf-8")  # lone surrogates would only fail later, mid-write
    except (TypeError, ValueError) as e:
        raise StoreError(f"task {tid!r}: not JSON-serialisable: {e}") from None
    return tid, text


def parse_task_rows(rows: Iterable[tuple[str, str]], where: str) -> list[TaskDict]:
    """Task dicts from stored ``(id, json text)`` rows; StoreError naming store and task."""
    out = []
    for tid, spec in rows:
        try:
            d = json.loads(spec)
        except ValueError as e:
            raise StoreError(f"{where}: task {tid!r}: bad JSON: {e}") from None
        if not isinstance(d, dict):
            raise StoreError(f"{where}: task {tid!r}: spec is not an object")
        out.append(d)
    return out


class MemoryTaskStore:
    """Tasks and history in memory; retention as in ``tickwork.stores._runlog``."""

    def __init__(
        self, *, keep_runs_per_task: int | None = 1000, keep_days: float | None = None
    ) -> None:
        self._lock = threading.Lock()
        self._tasks: dict[str, str] = {}  # id -> JSON text, in insertion order
        self._runs = RunLog(keep_runs_per_task, keep_days)

    def load_tasks(self) -> list[TaskDict]:
        with self._lock:
            texts = list(self._tasks.values())
        return [json.loads(t) for t in texts]

    def upsert_task(self, task: TaskDict, now: datetime) -> None:
        tid, text = copy_task(task)
        with self._lock:
            self._tasks[tid] = text

    def delete_task(self, task_id: str, now: datetime) -> None:
        with self._lock:
            self._tasks.pop(task_id, None)

    def replace_tasks(self, tasks: Sequence[TaskDict], now: datetime) -> None:
        new = dict(copy_task(t) for t in tasks)
        with self._lock:
            self._tasks = new

    def record_run(self, task: TaskDict | None, record: RunRecord, now: datetime) -> None:
        copied = None if task is None else copy_task(task)
        data: dict[str, Any] = json.loads(dump_json(record_to_dict(record)))
        with self._lock:
            if copied is not None:
                self._tasks[copied[0]] = copied[1]
            self._runs.put(data, record)
            self._runs.sweep(now)

    def record_runs(self, items: Sequence[tuple[TaskDict | None, RunRecord]],
                    now: datetime) -> None:
        """``record_run`` for each item, in order, as one step (see ``base.record_runs``)."""
        prepared = [(None if t is None else copy_task(t),
                     json.loads(dump_json(record_to_dict(r))), r) for t, r in items]
        with self._lock:
            for copied, data, record in prepared:
                if copied is not None:
                    self._tasks[copied[0]] = copied[1]
                self._runs.put(data, record)
            self._runs.sweep(now)

    def get_history(self, task_id: str | None = None, limit: int = 100) -> list[RunRecord]:
        with self._lock:
            return self._runs.history(task_id, limit)

    def close(self) -> None:
        """Nothing to release; the data stays available (a "reopen" sees it)."""
