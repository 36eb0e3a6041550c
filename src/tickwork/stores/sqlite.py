"""``SqliteTaskStore``: tasks and history in one SQLite file (stdlib ``sqlite3``).

Durability: WAL journal with ``synchronous=FULL``. In WAL mode ``NORMAL`` only fsyncs at
checkpoints, so a power cut can lose the last commits although the call had returned;
the protocol promises "durable when it returns", so we pay one WAL fsync per commit
(``bench/store_bench.py`` measures it). WAL also lets readers (the web UI, ``tickwork
history``) read while the scheduler writes.

Concurrency: one connection, guarded by a lock (``check_same_thread=False``): the
scheduler's calls are short, and one connection keeps transactions simple. Several
processes may open the same file; SQLite serialises their writes (``busy_timeout``).

Schema: ``stores/sql/sqlite/NNN_*.sql``, applied in order on open, each in one
transaction with its row in ``schema_version``. A file with a newer version than this
code knows, a non-SQLite file, or a SQLite file that is not a tickwork store raises
``StoreError`` naming the file, and is left untouched.

Retention (see ``_runlog`` for the shared definition): ``keep_runs_per_task`` newest
recorded runs per task (default 1000), enforced on each insert by an indexed delete that
walks only that task's newest N index entries, never the table; ``keep_days`` (default
None: no age limit) swept at most once a minute of ``now`` through the time index.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from importlib import resources
from typing import Any

from .._errors import StoreError
from .._model import RunRecord, RunStatus
from .._serde import dump_json, record_to_dict, sort_timestamp
from ._runlog import AGE_SWEEP_EVERY, check_retention
from .base import TaskDict
from .memory import copy_task, parse_task_rows

_UPSERT_TASK = """
INSERT INTO tasks (id, seq, spec, updated_at)
VALUES (?, (SELECT COALESCE(MAX(seq), 0) + 1 FROM tasks), ?, ?)
ON CONFLICT (id) DO UPDATE SET spec = excluded.spec, updated_at = excluded.updated_at
"""
_RUN_COLUMNS = ("run_id, task_id, scheduled_for, started_at, finished_at, status, attempts, "
                "error, result, instance_id, manual")
_UPSERT_RUN = f"""
INSERT INTO runs (sort_ts, {_RUN_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (run_id) DO UPDATE SET
    task_id = excluded.task_id, sort_ts = excluded.sort_ts,
    scheduled_for = excluded.scheduled_for, started_at = excluded.started_at,
    finished_at = excluded.finished_at, status = excluded.status,
    attempts = excluded.attempts, error = excluded.error, result = excluded.result,
    instance_id = excluded.instance_id, manual = excluded.manual
"""
# Everything older than the task's N-th newest recorded run. The subquery walks N
# entries of the (task_id, seq) index backwards; the DELETE then touches only victims.
_PRUNE_TASK = """
DELETE FROM runs WHERE task_id = ? AND seq <= (
    SELECT seq FROM runs WHERE task_id = ? ORDER BY seq DESC LIMIT 1 OFFSET ?)
"""


def migrations() -> list[tuple[int, str, str]]:
    """``(version, file name, sql)`` of every bundled migration, in order."""
    folder = resources.files("tickwork.stores").joinpath("sql", "sqlite")
    out = []
    for entry in folder.iterdir():
        name = entry.name
        if name.endswith(".sql") and name[:3].isdigit():
            out.append((int(name[:3]), name, entry.read_text(encoding="utf-8")))
    out.sort()
    return out


def split_sql(script: str) -> Iterator[str]:
    """Statements of a script, so a migration runs inside *our* transaction
    (``executescript`` would commit first)."""
    buf = ""
    for line in script.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            yield buf
            buf = ""


class SqliteTaskStore:
    """A durable store in one SQLite file. See the module docstring for guarantees."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        keep_runs_per_task: int | None = 1000,
        keep_days: float | None = None,
        busy_timeout: float = 10.0,
    ) -> None:
        check_retention(keep_runs_per_task, keep_days)
        self.path = os.fspath(path)
        self.keep_runs_per_task = keep_runs_per_task
        self.keep_days = keep_days
        self._lock = threading.Lock()
        self._last_sweep: datetime | None = None
        try:
            self._conn: sqlite3.Connection | None = sqlite3.connect(
                self.path, timeout=busy_timeout, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as e:
            raise StoreError(f"SQLite store {self.path}: cannot open: {e}") from None
        try:
            self._setup()
        except BaseException:
            self._conn.close()
            self._conn = None
            raise

    # --------------------------------------------------------------------- plumbing

    def _fail(self, action: str, e: BaseException) -> StoreError:
        if isinstance(e, sqlite3.DatabaseError) and "not a database" in str(e):
            return StoreError(f"SQLite store {self.path}: not a SQLite database (or corrupt): {e}")
        return StoreError(f"SQLite store {self.path}: {action} failed: {e}")

    @contextmanager
    def _tx(self, action: str, *, write: bool = True) -> Iterator[sqlite3.Connection]:
        """The connection, under the lock, in a transaction (IMMEDIATE for writes, so a
        second process waits for the write lock up front instead of failing mid-way)."""
        with self._lock:
            conn = self._conn
            if conn is None:
                raise StoreError(f"SQLite store {self.path}: store is closed")
            try:
                conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
                yield conn
                conn.execute("COMMIT")
            except BaseException as e:
                if conn.in_transaction:
                    try:
                        conn.execute("ROLLBACK")
                    except sqlite3.Error:
                        pass
                if isinstance(e, sqlite3.Error):
                    raise self._fail(action, e) from None
                raise

    def _setup(self) -> None:
        conn = self._conn
        assert conn is not None
        try:
            conn.execute("PRAGMA journal_mode=WAL").fetchone()
            conn.execute("PRAGMA synchronous=FULL")
        except sqlite3.Error as e:
            raise self._fail("open", e) from None
        known = migrations()
        latest = known[-1][0] if known else 0
        with self._tx("schema migration") as c:
            tables = {r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if "schema_version" in tables:
                current = c.execute("SELECT MAX(version) FROM schema_version").fetchone()[0] or 0
            elif tables - {"sqlite_sequence"}:
                raise StoreError(
                    f"SQLite store {self.path}: a SQLite database but not a tickwork store "
                    f"(no schema_version table; has {', '.join(sorted(tables))})"
                )
            else:
                current = 0
            if current > latest:
                raise StoreError(
                    f"SQLite store {self.path}: schema version {current} is newer than this "
                    f"tickwork knows ({latest}); upgrade tickwork to open it"
                )
            for version, _name, sql in known:
                if version > current:
                    for stmt in split_sql(sql):
                        c.execute(stmt)
                    c.execute("INSERT INTO schema_version (version, applied_at) "
                              "VALUES (?, datetime('now'))", (version,))

    def schema_version(self) -> int:
        with self._tx("read schema version", write=False) as c:
            return int(c.execute("SELECT MAX(version) FROM schema_version").fetchone()[0])

    # ---------------------------------------------------------------------- protocol

    def load_tasks(self) -> list[TaskDict]:
        with self._tx("load tasks", write=False) as c:
            rows = c.execute("SELECT id, spec FROM tasks ORDER BY seq").fetchall()
        return parse_task_rows(rows, f"SQLite store {self.path}")

    def upsert_task(self, task: TaskDict, now: datetime) -> None:
        tid, text = copy_task(task)
        with self._tx("upsert task") as c:
            c.execute(_UPSERT_TASK, (tid, text, now.isoformat()))

    def delete_task(self, task_id: str, now: datetime) -> None:
        with self._tx("delete task") as c:
            c.execute("DELETE FROM tasks WHERE id = ?", (task_id,))

    def replace_tasks(self, tasks: Sequence[TaskDict], now: datetime) -> None:
        rows = [copy_task(t) for t in tasks]
        stamp = now.isoformat()
        with self._tx("replace tasks") as c:
            c.execute("DELETE FROM tasks")
            c.executemany(
                "INSERT INTO tasks (id, seq, spec, updated_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (id) DO UPDATE SET spec = excluded.spec",
                [(tid, i, text, stamp) for i, (tid, text) in enumerate(rows, 1)],
            )

    def record_run(self, task: TaskDict | None, record: RunRecord, now: datetime) -> None:
        self.record_runs([(task, record)], now)

    def record_runs(self, items: Sequence[tuple[TaskDict | None, RunRecord]],
                    now: datetime) -> None:
        """``record_run`` for each item, in order, in ONE transaction (one WAL fsync):
        group commit, so that thousands of finished runs per second can be durable."""
        prepared = []
        for task, record in items:
            copied = None if task is None else copy_task(task)
            d = record_to_dict(record)
            result = None if d["result"] is None else dump_json(d["result"])
            row = (sort_timestamp(record), d["run_id"], d["task_id"], d["scheduled_for"],
                   d["started_at"], d["finished_at"], d["status"], d["attempts"], d["error"],
                   result, d["instance_id"], int(d["manual"]))
            prepared.append((copied, row, record.task_id))
        sweep = self.keep_days is not None and (
            self._last_sweep is None or now - self._last_sweep >= AGE_SWEEP_EVERY
        )
        stamp = now.isoformat()
        with self._tx("record run") as c:
            for copied, row, tid in prepared:
                if copied is not None:
                    c.execute(_UPSERT_TASK, (copied[0], copied[1], stamp))
                c.execute(_UPSERT_RUN, row)
                if self.keep_runs_per_task is not None:
                    c.execute(_PRUNE_TASK, (tid, tid, self.keep_runs_per_task))
            if sweep and self.keep_days is not None:
                c.execute("DELETE FROM runs WHERE sort_ts < ?",
                          (now.timestamp() - self.keep_days * 86400.0,))
        if sweep:
            self._last_sweep = now

    def get_history(self, task_id: str | None = None, limit: int = 100) -> list[RunRecord]:
        if limit <= 0:
            return []
        sql = f"SELECT {_RUN_COLUMNS} FROM runs"
        args: tuple[Any, ...] = ()
        if task_id is not None:
            sql += " WHERE task_id = ?"
            args = (task_id,)
        sql += " ORDER BY sort_ts DESC, seq DESC LIMIT ?"
        with self._tx("read history", write=False) as c:
            rows = c.execute(sql, (*args, limit)).fetchall()
        return [self._record(r) for r in rows]

    def _record(self, r: tuple[Any, ...]) -> RunRecord:
        try:
            return RunRecord(
                run_id=r[0], task_id=r[1], scheduled_for=datetime.fromisoformat(r[2]),
                started_at=None if r[3] is None else datetime.fromisoformat(r[3]),
                finished_at=None if r[4] is None else datetime.fromisoformat(r[4]),
                status=RunStatus(r[5]), attempts=r[6], error=r[7],
                result=None if r[8] is None else json.loads(r[8]),
                instance_id=r[9], manual=bool(r[10]),
            )
        except (TypeError, ValueError) as e:
            raise StoreError(f"SQLite store {self.path}: run {r[0]!r}: bad row: {e}") from None

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __repr__(self) -> str:
        return f"SqliteTaskStore({self.path!r})"
