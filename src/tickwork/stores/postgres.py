"""``PostgresTaskStore``: tasks and history in PostgreSQL (psycopg 3), the cluster store.

It implements the same protocol as the other stores (``stores/base.py``) and passes the
same conformance suite, so a single-process scheduler can use it like SQLite. It is also
the database behind cluster mode: the statements that materialise, claim, heartbeat,
complete and reap runs live in ``tickwork.cluster.claims`` and work on connections from
:meth:`PostgresTaskStore.connect` (same DSN, schema and session settings).

Tasks: ``spec`` holds the task dict as JSON *text* (jsonb reorders keys; the protocol
wants bytes back). Columns the cluster needs (enabled, priority, next_run, max_instances,
dependencies, retry numbers, on_lease_loss) are extracted leniently on upsert: the dict
stays opaque except for ``"id"``, so an odd value falls back to the default instead of
failing the write.

History and queue share ``tw_run``: rows with status ``pending`` (queued, not started)
are not history and ``get_history`` leaves them out. Retention never deletes a pending
or running row.

Connections: one, guarded by a lock, in autocommit mode with explicit transactions; the
session time zone is UTC so naive datetimes mean UTC. A broken connection is reopened
on the next call (the failing call raises ``StoreError``). ``schema=`` puts every table
in that schema (created if missing), so several stores can share one database.

Schema: ``stores/sql/postgres/NNN_*.sql``, applied in order on open, each in one
transaction with its row in ``tw_schema_version``, under a transaction advisory lock so
that instances starting together migrate once. A newer schema than this code knows
raises ``StoreError``.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from importlib import resources
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg

from .._errors import StoreError
from .._model import RunRecord, RunStatus
from .._serde import dump_json, record_to_dict
from ._runlog import AGE_SWEEP_EVERY, check_retention
from .base import TaskDict
from .memory import copy_task, parse_task_rows

_SCHEMA_RE = re.compile(r"[a-z_][a-z0-9_]{0,62}")

_TASK_COLUMNS = ("enabled, priority, max_instances, dependencies, misfire_grace, "
                 "on_lease_loss, max_retries, retry_delay, retry_backoff, retry_max_delay, "
                 "next_run, last_status")
# An update keeps insertion order (seq) and the database-owned last_status (a cluster
# completion may be newer than the dict), bumps rev, and takes next_run from the dict:
# an update that moves next_run makes a materialiser holding the old value lose its CAS.
_UPSERT_TASK = f"""
INSERT INTO tw_task (id, spec, {_TASK_COLUMNS})
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (id) DO UPDATE SET
    spec = excluded.spec, enabled = excluded.enabled, priority = excluded.priority,
    max_instances = excluded.max_instances, dependencies = excluded.dependencies,
    misfire_grace = excluded.misfire_grace, on_lease_loss = excluded.on_lease_loss,
    max_retries = excluded.max_retries, retry_delay = excluded.retry_delay,
    retry_backoff = excluded.retry_backoff, retry_max_delay = excluded.retry_max_delay,
    next_run = excluded.next_run,
    last_status = COALESCE(tw_task.last_status, excluded.last_status),
    rev = tw_task.rev + 1, updated_at = now()
"""
_RUN_COLUMNS = ("run_id, task_id, scheduled_for, started_at, finished_at, status, attempts, "
                "error, result, instance_id, manual, scheduled_text, started_text, finished_text")
_UPSERT_RUN = f"""
INSERT INTO tw_run ({_RUN_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (run_id) DO UPDATE SET
    task_id = excluded.task_id, scheduled_for = excluded.scheduled_for,
    started_at = excluded.started_at, finished_at = excluded.finished_at,
    status = excluded.status, attempts = excluded.attempts, error = excluded.error,
    result = excluded.result, instance_id = excluded.instance_id, manual = excluded.manual,
    scheduled_text = excluded.scheduled_text, started_text = excluded.started_text,
    finished_text = excluded.finished_text
"""
_UNFINISHED = "('pending', 'running')"
# Everything finished older than the task's N-th newest finished run (recorded order).
_PRUNE_TASK = f"""
DELETE FROM tw_run WHERE task_id = %(t)s AND status NOT IN {_UNFINISHED} AND seq <= (
    SELECT seq FROM tw_run WHERE task_id = %(t)s AND status NOT IN {_UNFINISHED}
    ORDER BY seq DESC LIMIT 1 OFFSET %(n)s)
"""
_NOTIFY_CHANNEL = "tickwork"


def migrations() -> list[tuple[int, str, str]]:
    """``(version, file name, sql)`` of every bundled migration, in order."""
    folder = resources.files("tickwork.stores").joinpath("sql", "postgres")
    out = []
    for entry in folder.iterdir():
        name = entry.name
        if name.endswith(".sql") and name[:3].isdigit():
            out.append((int(name[:3]), name, entry.read_text(encoding="utf-8")))
    out.sort()
    return out


def redact(dsn: str) -> str:
    """The DSN without its password, for messages (DSNs carry secrets)."""
    try:
        parts = urlsplit(dsn)
    except ValueError:
        return "<unparseable DSN>"
    if parts.scheme and parts.password is not None:
        netloc = parts.netloc.replace(":" + parts.password + "@", ":***@", 1)
        return urlunsplit(parts._replace(netloc=netloc))
    if not parts.scheme:  # key=value form
        return re.sub(r"password\s*=\s*\S+", "password=***", dsn)
    return dsn


# ------------------------------------------------------------ lenient column extraction


def _num(v: Any, default: float) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or v != v:
        return default
    return float(v)


def _int(v: Any, default: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        return default
    return max(min(v, 2**31 - 1), -(2**31))


def _when(v: Any) -> datetime | None:
    if not isinstance(v, str):
        return None
    try:
        return datetime.fromisoformat(v)
    except ValueError:
        return None


def task_columns(d: TaskDict) -> tuple[Any, ...]:
    """The extracted columns of ``_TASK_COLUMNS`` for a task dict; defaults for odd values."""
    state = d.get("state") if isinstance(d.get("state"), dict) else {}
    assert isinstance(state, dict)
    retry = d.get("retry") if isinstance(d.get("retry"), dict) else None
    deps = d.get("dependencies")
    dep_list = [x for x in deps if isinstance(x, str)] if isinstance(deps, list) else []
    grace = d.get("misfire_grace")
    on_loss = d.get("on_lease_loss")
    last = state.get("last_status")
    return (
        d.get("enabled") is not False,
        _int(d.get("priority"), 50),
        max(_int(d.get("max_instances"), 1), 1),
        dep_list,
        None if grace is None else max(_num(grace, 0.0), 0.0),
        on_loss if on_loss in ("retry", "fail") else "retry",
        0 if retry is None else max(_int(retry.get("max_retries"), 0), 0),
        0.0 if retry is None else max(_num(retry.get("delay"), 0.0), 0.0),
        1.0 if retry is None else max(_num(retry.get("backoff"), 1.0), 1.0),
        3600.0 if retry is None else max(_num(retry.get("max_delay"), 3600.0), 0.0),
        _when(state.get("next_run")),
        last if isinstance(last, str) else None,
    )


class PostgresTaskStore:
    """A durable store in PostgreSQL; the database of cluster mode. See the module docstring."""

    # ``make_engine`` gives schedulers on this store the cluster engine
    # (``tickwork.cluster.engine.ClusterEngine``): the database plans and claims runs.
    cluster_capable = True

    def __init__(
        self,
        dsn: str,
        *,
        lease: timedelta = timedelta(seconds=30),
        schema: str | None = None,
        keep_runs_per_task: int | None = 1000,
        keep_days: float | None = None,
        connect_timeout: float = 10.0,
    ) -> None:
        check_retention(keep_runs_per_task, keep_days)
        if not isinstance(dsn, str) or not dsn:
            raise ValueError(f"dsn: expected a non-empty connection string, got {dsn!r}")
        if not isinstance(lease, timedelta) or lease <= timedelta(0):
            raise ValueError(f"lease: expected a positive timedelta, got {lease!r}")
        if schema is not None and (not isinstance(schema, str) or not _SCHEMA_RE.fullmatch(schema)):
            raise ValueError(
                f"schema: expected a lower-case SQL identifier ([a-z_][a-z0-9_]*), got {schema!r}"
            )
        self.dsn = dsn
        self.lease = lease
        self.schema = schema
        self.keep_runs_per_task = keep_runs_per_task
        self.keep_days = keep_days
        self.connect_timeout = connect_timeout
        self._lock = threading.Lock()
        self._last_sweep: datetime | None = None
        self._closed = False
        self._conn: psycopg.Connection[Any] | None = self.connect()
        try:
            self._setup()
        except BaseException:
            self.close()
            raise

    # --------------------------------------------------------------------- plumbing

    def _where(self) -> str:
        shown = redact(self.dsn)
        return f"PostgreSQL store {shown}" + (f" (schema {self.schema})" if self.schema else "")

    def connect(self) -> psycopg.Connection[Any]:
        """A new autocommit connection with this store's session settings (UTC, schema).

        The cluster runner uses several: one for the store, one to LISTEN, one for the
        heartbeat (so a slow query never delays lease renewal)."""
        try:
            conn = psycopg.connect(self.dsn, autocommit=True,
                                   connect_timeout=max(1, int(self.connect_timeout)))
        except psycopg.Error as e:
            raise StoreError(f"{self._where()}: cannot connect: {e}") from None
        try:
            conn.execute("SET TIME ZONE 'UTC'")
            if self.schema is not None:
                # IF NOT EXISTS still races between sessions: serialise with a lock.
                with conn.transaction():
                    conn.execute("SELECT pg_advisory_xact_lock(hashtext('tickwork.schema'))")
                    conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
                conn.execute(f'SET search_path TO "{self.schema}"')
        except psycopg.Error as e:
            conn.close()
            raise StoreError(f"{self._where()}: cannot set up the session: {e}") from None
        return conn

    @contextmanager
    def _tx(self, action: str) -> Iterator[psycopg.Connection[Any]]:
        """The connection, under the lock, in one transaction; psycopg errors become
        ``StoreError`` naming the action, and a broken connection is reopened next time."""
        with self._lock:
            if self._closed:
                raise StoreError(f"{self._where()}: store is closed")
            if self._conn is None or self._conn.broken or self._conn.closed:
                if self._conn is not None:
                    self._conn.close()
                self._conn = None
                self._conn = self.connect()
            conn = self._conn
            try:
                with conn.transaction():
                    yield conn
            except psycopg.Error as e:
                raise StoreError(f"{self._where()}: {action} failed: {e}") from None

    def _setup(self) -> None:
        known = migrations()
        latest = known[-1][0] if known else 0
        with self._tx("schema migration") as c:
            # Serialise concurrent first starts: the loser sees the winner's tables.
            c.execute("SELECT pg_advisory_xact_lock(hashtext('tickwork.migrate.' || "
                      "current_schema()))")
            row = c.execute("SELECT to_regclass('tw_schema_version')").fetchone()
            current = 0
            if row is not None and row[0] is not None:
                got = c.execute("SELECT MAX(version) FROM tw_schema_version").fetchone()
                current = int(got[0] or 0) if got is not None else 0
            if current > latest:
                raise StoreError(
                    f"{self._where()}: schema version {current} is newer than this tickwork "
                    f"knows ({latest}); upgrade tickwork to open it"
                )
            for version, _name, sql in known:
                if version > current:
                    c.execute(sql.encode("utf-8"))  # no parameters: several statements allowed
                    c.execute("INSERT INTO tw_schema_version (version) VALUES (%s)", (version,))

    def schema_version(self) -> int:
        with self._tx("read schema version") as c:
            row = c.execute("SELECT MAX(version) FROM tw_schema_version").fetchone()
        return int(row[0]) if row is not None else 0

    # ---------------------------------------------------------------------- protocol

    def load_tasks(self) -> list[TaskDict]:
        with self._tx("load tasks") as c:
            rows = c.execute("SELECT id, spec FROM tw_task ORDER BY seq").fetchall()
        return parse_task_rows(rows, self._where())

    def upsert_task(self, task: TaskDict, now: datetime) -> None:
        tid, text = copy_task(task)
        cols = task_columns(task)
        with self._tx("upsert task") as c:
            c.execute(_UPSERT_TASK, (tid, text, *cols))
            c.execute("SELECT pg_notify(%s, %s)", (_NOTIFY_CHANNEL, "task:" + tid[:7000]))

    def upsert_definition(
        self, task: TaskDict,
        first_run: Callable[[TaskDict, datetime], datetime | None],
    ) -> str:
        """Cluster mode's ``upsert_task``: the database owns ``next_run``.

        It is kept when the stored task has the same ``schedule`` and ``enabled``;
        otherwise it is planned afresh as ``first_run(task, database now)`` (None when
        disabled), so a worker's skewed clock never enters it. Disabling cancels the
        task's queued runs (pending retries and occurrences). Returns the spec text
        written."""
        tid, text = copy_task(task)
        cols = list(task_columns(task))
        enabled = bool(cols[0])
        with self._tx("upsert task") as c:
            got = c.execute("SELECT now()").fetchone()
            assert got is not None
            now: datetime = got[0]
            row = c.execute("SELECT spec, enabled, next_run FROM tw_task WHERE id = %s "
                            "FOR UPDATE", (tid,)).fetchone()
            keep = False
            if row is not None and row[1] == enabled:
                try:
                    old = json.loads(row[0])
                except ValueError:
                    old = None
                keep = isinstance(old, dict) and old.get("schedule") == task.get("schedule")
            if keep:
                assert row is not None
                cols[10] = row[2]
            else:
                cols[10] = first_run(task, now) if enabled else None
            cols[11] = None  # last_status belongs to the database (COALESCE keeps it)
            c.execute(_UPSERT_TASK, (tid, text, *cols))
            if not enabled:
                c.execute("UPDATE tw_run SET status = 'cancelled', finished_at = now(), "
                          "error = 'cancelled: task disabled' "
                          "WHERE task_id = %s AND status = 'pending'", (tid,))
            c.execute("SELECT pg_notify(%s, %s)", (_NOTIFY_CHANNEL, "task:" + tid[:7000]))
        return text

    def delete_task(self, task_id: str, now: datetime) -> None:
        with self._tx("delete task") as c:
            c.execute("DELETE FROM tw_task WHERE id = %s", (task_id,))
            # Queued work of a removed task goes with it; history stays.
            c.execute("DELETE FROM tw_run WHERE task_id = %s AND status = 'pending'", (task_id,))
            c.execute("SELECT pg_notify(%s, %s)", (_NOTIFY_CHANNEL, "task:" + task_id[:7000]))

    def replace_tasks(self, tasks: Sequence[TaskDict], now: datetime) -> None:
        rows = [(*copy_task(t), task_columns(t)) for t in tasks]
        with self._tx("replace tasks") as c:
            keep = [tid for tid, _text, _cols in rows]
            c.execute("DELETE FROM tw_task WHERE NOT (id = ANY(%s))", (keep,))
            c.execute("DELETE FROM tw_run WHERE status = 'pending' AND NOT (task_id = ANY(%s))",
                      (keep,))
            with c.cursor() as cur:
                cur.executemany(_UPSERT_TASK, [(tid, text, *cols) for tid, text, cols in rows])
                # Insertion order becomes the given order: fresh sequence numbers, in order.
                cur.executemany(
                    "UPDATE tw_task SET seq = nextval(pg_get_serial_sequence('tw_task', 'seq')) "
                    "WHERE id = %s", [(tid,) for tid, _text, _cols in rows])
            c.execute("SELECT pg_notify(%s, 'tasks')", (_NOTIFY_CHANNEL,))

    def record_run(self, task: TaskDict | None, record: RunRecord, now: datetime) -> None:
        copied = None if task is None else copy_task(task)
        d = record_to_dict(record)
        result = None if d["result"] is None else dump_json(d["result"])
        row = (d["run_id"], d["task_id"], record.scheduled_for, record.started_at,
               record.finished_at, d["status"], d["attempts"], d["error"], result,
               d["instance_id"], bool(d["manual"]), d["scheduled_for"], d["started_at"],
               d["finished_at"])
        sweep = self.keep_days is not None and (
            self._last_sweep is None or now - self._last_sweep >= AGE_SWEEP_EVERY
        )
        with self._tx("record run") as c:
            if copied is not None and task is not None:
                c.execute(_UPSERT_TASK, (copied[0], copied[1], *task_columns(task)))
            c.execute(_UPSERT_RUN, row)
            if self.keep_runs_per_task is not None:
                c.execute(_PRUNE_TASK, {"t": record.task_id, "n": self.keep_runs_per_task})
            if sweep and self.keep_days is not None:
                c.execute(f"DELETE FROM tw_run WHERE sort_ts < %s AND status NOT IN {_UNFINISHED}",
                          (now - timedelta(days=self.keep_days),))
        if sweep:
            self._last_sweep = now

    def get_history(self, task_id: str | None = None, limit: int = 100) -> list[RunRecord]:
        if limit <= 0:
            return []
        sql = f"SELECT {_RUN_COLUMNS} FROM tw_run WHERE status <> 'pending'"
        args: tuple[Any, ...] = ()
        if task_id is not None:
            sql += " AND task_id = %s"
            args = (task_id,)
        sql += " ORDER BY sort_ts DESC, seq DESC LIMIT %s"
        with self._tx("read history") as c:
            rows = c.execute(sql, (*args, limit)).fetchall()
        return [self._record(r) for r in rows]

    def _record(self, r: Sequence[Any]) -> RunRecord:
        def when(text: Any, value: Any) -> datetime | None:
            return datetime.fromisoformat(text) if text is not None else value

        try:
            scheduled = when(r[11], r[2])
            assert scheduled is not None
            return RunRecord(
                run_id=r[0], task_id=r[1], scheduled_for=scheduled,
                started_at=when(r[12], r[3]), finished_at=when(r[13], r[4]),
                status=RunStatus(r[5]), attempts=r[6], error=r[7],
                result=None if r[8] is None else json.loads(r[8]),
                instance_id=r[9], manual=bool(r[10]),
            )
        except (TypeError, ValueError, AssertionError) as e:
            raise StoreError(f"{self._where()}: run {r[0]!r}: bad row: {e}") from None

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __repr__(self) -> str:
        return f"PostgresTaskStore({redact(self.dsn)!r})"
