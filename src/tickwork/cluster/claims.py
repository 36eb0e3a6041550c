"""The cluster's database statements (docs/cluster.md, CLUSTER.md section 2).

Every function takes an autocommit psycopg connection (``PostgresTaskStore.connect()``)
and runs one short transaction of its own; called inside ``with conn.transaction():``
it becomes a savepoint of the caller's transaction instead (``ctx.connection``: a
handler's writes commit together with the outcome).

Time: every comparison uses the database's ``now()`` (the transaction start), never a
worker's clock, so workers with skewed clocks neither duplicate nor miss.

Correctness does not rest on SKIP LOCKED (that only keeps workers from blocking):

* an occurrence is ``UNIQUE (task_id, scheduled_for, manual)`` and is inserted in the
  transaction that advances ``tw_task.next_run`` by compare-and-set, so two materialisers
  produce one row and a stale ``next_run`` (ABA) changes nothing;
* a claim sets a fresh ``fence`` from a sequence; heartbeat and completion match on it,
  so a worker whose lease was reaped (and the run re-claimed) can write nothing;
* ``max_instances=1`` is a partial unique index on running rows; larger limits are
  re-counted under the task's row lock before the claim commits.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg import errors as pg_errors

from .._serde import dump_json
from .plan import Plan

CHANNEL = "tickwork"
FAILED = ("failed", "timed_out", "cancelled")  # outcomes that make dependents skip
FINAL = ("succeeded", "failed", "timed_out", "cancelled", "skipped")
_FAILED_SQL = "('failed', 'timed_out', 'cancelled')"

Conn = psycopg.Connection[Any]
Planner = Callable[[Mapping[str, Any], datetime, datetime], Plan]


def run_key(task_id: str, scheduled_for: datetime) -> str:
    """The idempotency key of an occurrence, ``ctx.run_key``: same on every attempt."""
    return f"{task_id}@{scheduled_for:%Y-%m-%dT%H:%M:%S%z}"


@dataclass(frozen=True, slots=True)
class Claimed:
    """A run this instance now holds; every later write must carry ``fence``."""

    seq: int
    run_id: str
    task_id: str
    scheduled_for: datetime
    manual: bool
    attempts: int
    fence: int

    @property
    def run_key(self) -> str:
        return run_key(self.task_id, self.scheduled_for)


@dataclass(frozen=True, slots=True)
class DueTask:
    task_id: str
    spec: dict[str, Any]
    next_run: datetime


@dataclass(frozen=True, slots=True)
class Reaped:
    seq: int
    task_id: str
    status: str  # "pending" (handed back for a retry) or "failed"


def db_now(conn: Conn) -> datetime:
    row = conn.execute("SELECT now()").fetchone()
    assert row is not None
    value: datetime = row[0]
    return value


def _notify(conn: Conn, payload: str) -> None:
    conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, payload[:7000]))


# ------------------------------------------------------------------------ materialise

_CAS = """
UPDATE tw_task SET next_run = %(new)s
WHERE id = %(id)s AND next_run = %(old)s
RETURNING priority, max_instances
"""
_INSERT_OCCURRENCE = """
INSERT INTO tw_run (task_id, scheduled_for, manual, queued, status, priority, exclusive,
                    not_before, finished_at, error)
VALUES (%(id)s, %(at)s, false, true, %(status)s, %(priority)s, %(exclusive)s, %(at)s,
        CASE WHEN %(status)s = 'missed' THEN now() END, %(error)s)
ON CONFLICT (task_id, scheduled_for, manual) WHERE queued DO NOTHING
RETURNING seq
"""


class _Lost(Exception):
    """Rolls a materialise transaction back when its CAS found a newer next_run."""


def _write_plan(conn: Conn, task_id: str, old: datetime, plan: Plan) -> int | None:
    """CAS then inserts, in the caller's transaction. None if the CAS lost; else the
    number of rows inserted (a row that already exists is not inserted twice)."""
    row = conn.execute(_CAS, {"new": plan.next_run, "id": task_id, "old": old}).fetchone()
    if row is None:
        return None
    priority, max_instances = row
    rows: list[tuple[datetime, str, str | None]] = [
        (m, "missed", "missed: later than misfire_grace") for m in plan.missed]
    into = "nothing (all later than misfire_grace)" if plan.run is None \
        else f"the run planned for {plan.run:%Y-%m-%dT%H:%M:%S.%f%z}"
    rows += [(m, "missed", f"missed: coalesced into {into} (late, misfire_grace=None)")
             for m in plan.coalesced]
    rows.sort(key=lambda r: r[0])
    if plan.more_missed and rows:
        rows[-1] = (rows[-1][0], "missed",
                    f"missed: later than misfire_grace (and {plan.more_missed} more)")
    if plan.run is not None:
        rows.append((plan.run, "pending", None))
    inserted = 0
    for at, status, error in rows:
        got = conn.execute(_INSERT_OCCURRENCE, {
            "id": task_id, "at": at, "status": status, "priority": priority,
            "exclusive": max_instances == 1, "error": error}).fetchone()
        inserted += got is not None
    return inserted


def materialise(conn: Conn, task_id: str, expected_next_run: datetime, plan: Plan) -> bool:
    """Write ``plan`` for one task in one transaction: CAS ``next_run`` from
    ``expected_next_run`` to ``plan.next_run``, insert its rows, notify. False (nothing
    written) if ``next_run`` is no longer ``expected_next_run``."""
    try:
        with conn.transaction():
            if _write_plan(conn, task_id, expected_next_run, plan) is None:
                raise _Lost
            if plan.run is not None:
                _notify(conn, "runs")
    except _Lost:
        return False
    return True


_LOCK_DUE = """
SELECT id, spec, next_run FROM tw_task
WHERE enabled AND next_run <= now()
ORDER BY next_run LIMIT %s
FOR UPDATE SKIP LOCKED
"""


def materialise_due(conn: Conn, planner: Planner, *, limit: int = 100) -> int:
    """Materialise every due task (up to ``limit``) in one transaction; the number of
    rows written. Tasks another instance is materialising are skipped, not waited for.
    A task whose spec cannot be planned is disabled-in-effect (next_run NULL) and
    reported through its ``error`` row rather than blocking the others."""
    written = 0
    with conn.transaction():
        now = db_now(conn)
        for tid, spec_text, next_run in conn.execute(_LOCK_DUE, (limit,)).fetchall():
            try:
                spec = json.loads(spec_text)
                plan = planner(spec, next_run, now)
            except Exception as e:  # a bad stored task must not stop the others
                conn.execute("UPDATE tw_task SET next_run = NULL WHERE id = %s", (tid,))
                conn.execute(
                    "INSERT INTO tw_run (task_id, scheduled_for, queued, status, finished_at,"
                    " error) VALUES (%s, %s, true, 'failed', now(), %s) ON CONFLICT DO NOTHING",
                    (tid, next_run, f"cannot plan task {tid!r}: {e}"))
                continue
            got = _write_plan(conn, tid, next_run, plan)
            written += got or 0
        if written:
            _notify(conn, "runs")
    return written


def enqueue_manual(conn: Conn, task_id: str) -> int | None:
    """``run_now``: a manual run at the database's now; its seq, or None if the task is
    unknown. Visible to every instance through the notify."""
    with conn.transaction():
        row = conn.execute(
            "INSERT INTO tw_run (task_id, scheduled_for, manual, queued, priority, exclusive)"
            " SELECT id, now(), true, true, priority, max_instances = 1 FROM tw_task"
            " WHERE id = %s ON CONFLICT DO NOTHING RETURNING seq", (task_id,)).fetchone()
        if row is not None:
            _notify(conn, "runs")
    return None if row is None else int(row[0])


# ------------------------------------------------------------------------------ claim

# A dependent's ready run whose dependencies are all settled (none never-finished, none
# running) but one of which failed: skipped, with the reason (API 4.5).
_SKIP_FAILED_DEPS = f"""
WITH blocked AS (
    SELECT r.seq, (SELECT min(u.id) FROM tw_task u WHERE u.id = ANY(t.dependencies)
                   AND u.last_status IN {_FAILED_SQL}) AS failed_dep
    FROM tw_run r JOIN tw_task t ON t.id = r.task_id
    WHERE r.status = 'pending' AND r.not_before <= now() AND cardinality(t.dependencies) > 0
      AND NOT EXISTS (SELECT 1 FROM tw_task u WHERE u.id = ANY(t.dependencies)
                      AND (u.last_status IS NULL OR EXISTS (
                          SELECT 1 FROM tw_run x WHERE x.task_id = u.id AND x.status = 'running')))
    FOR UPDATE OF r SKIP LOCKED
)
UPDATE tw_run r SET status = 'skipped', finished_at = now(),
    error = 'dependency ' || b.failed_dep || ' failed'
FROM blocked b WHERE r.seq = b.seq AND b.failed_dep IS NOT NULL
RETURNING r.seq, r.task_id
"""

_CLAIM = f"""
WITH c AS (
    SELECT r.seq FROM tw_run r LEFT JOIN tw_task t ON t.id = r.task_id
    WHERE r.status = 'pending' AND r.not_before <= now()
      -- only tasks this instance has a handler for (NULL: any)
      AND (%(ids)s::text[] IS NULL OR r.task_id = ANY(%(ids)s::text[]))
      -- cheap checks first, each an index probe per candidate: the walk stops at n
      -- dependencies: wait while one never finished, is running, or failed (skip above)
      AND (t.id IS NULL OR cardinality(t.dependencies) = 0 OR NOT EXISTS (
          SELECT 1 FROM tw_task u WHERE u.id = ANY(t.dependencies)
          AND (u.last_status IS NULL OR u.last_status IN {_FAILED_SQL} OR EXISTS (
              SELECT 1 FROM tw_run x WHERE x.task_id = u.id AND x.status = 'running'))))
      -- a task's oldest ready run first, and at most one per task per batch
      AND NOT EXISTS (SELECT 1 FROM tw_run y WHERE y.task_id = r.task_id
          AND y.status = 'pending' AND y.not_before <= now()
          AND (y.scheduled_for, y.seq) < (r.scheduled_for, r.seq))
      AND (SELECT count(*) FROM tw_run x WHERE x.task_id = r.task_id AND x.status = 'running')
          < COALESCE(t.max_instances, 1)
    ORDER BY r.priority DESC, r.scheduled_for, r.seq
    LIMIT %(n)s
    FOR UPDATE OF r SKIP LOCKED
)
UPDATE tw_run r SET status = 'running', instance_id = %(me)s, attempts = r.attempts + 1,
    fence = nextval('tw_fence'), started_at = now(), started_text = NULL,
    finished_at = NULL, finished_text = NULL, lease_until = now() + %(lease)s
FROM c WHERE r.seq = c.seq
RETURNING r.seq, r.run_id, r.task_id, r.scheduled_for, r.manual, r.attempts, r.fence,
          r.exclusive
"""

_RELEASE_EXCESS = """
UPDATE tw_run SET status = 'pending', instance_id = NULL, attempts = attempts - 1,
    fence = NULL, started_at = NULL, lease_until = NULL
WHERE seq = ANY(%s)
"""


def _replan_fixed_delay(conn: Conn, task_ids: Iterable[str]) -> None:
    """Fixed-delay intervals get their next occurrence from the completion; a run that
    ends without one (skipped, failed by the reaper) must plan it too, or the task
    would stop. Lenient: a spec that cannot be read is left alone."""
    ids = sorted(set(task_ids))
    if not ids:
        return
    rows = conn.execute("SELECT id, spec FROM tw_task WHERE id = ANY(%s) AND enabled "
                        "AND next_run IS NULL", (ids,)).fetchall()
    for tid, spec in rows:
        try:
            sched = json.loads(spec).get("schedule") or {}
            if sched.get("type") != "interval" or sched.get("fixed_rate") is not False:
                continue
            secs = float(sched["interval"])
        except (ValueError, TypeError, KeyError, AttributeError):
            continue
        conn.execute("UPDATE tw_task SET next_run = now() + make_interval(secs => %s) "
                     "WHERE id = %s AND next_run IS NULL", (secs, tid))


def _claim_once(conn: Conn, me: str, n: int, lease: timedelta,
                task_ids: Sequence[str] | None) -> list[Claimed]:
    with conn.transaction():
        skipped = conn.execute(_SKIP_FAILED_DEPS).fetchall()
        _replan_fixed_delay(conn, (r[1] for r in skipped))
        ids = None if task_ids is None else list(task_ids)
        rows = conn.execute(_CLAIM, {"n": n, "me": me, "lease": lease,
                                     "ids": ids}).fetchall()
        shared = sorted({r[2] for r in rows if not r[7]})
        release: list[int] = []
        if shared:
            # max_instances > 1: the pre-count above read a snapshot; re-count under the
            # task row lock, which serialises claimers of one task (READ COMMITTED: each
            # statement sees the others' committed claims). One claim per task per batch,
            # so an excess is always exactly our own new row.
            limits = dict(conn.execute(
                "SELECT id, max_instances FROM tw_task WHERE id = ANY(%s) ORDER BY id "
                "FOR UPDATE", (shared,)).fetchall())
            counts = dict(conn.execute(
                "SELECT task_id, count(*) FROM tw_run WHERE status = 'running' "
                "AND task_id = ANY(%s) GROUP BY task_id", (shared,)).fetchall())
            over = {t for t in shared if counts.get(t, 0) > limits.get(t, 1)}
            release = [r[0] for r in rows if r[2] in over]
            if release:
                conn.execute(_RELEASE_EXCESS, (release,))
    return [Claimed(seq=r[0], run_id=r[1], task_id=r[2], scheduled_for=r[3], manual=r[4],
                    attempts=r[5], fence=r[6]) for r in rows if r[0] not in release]


def claim(conn: Conn, instance_id: str, n: int, lease: timedelta,
          *, retries: int = 5, task_ids: Sequence[str] | None = None) -> list[Claimed]:
    """Claim up to ``n`` ready runs for this instance, highest priority first;
    ``task_ids`` limits the claim to those tasks (the ones this instance can run).

    Two claimers racing for two runs of one ``max_instances=1`` task: the loser's
    transaction fails on ``tw_run_one`` (after the winner committed) and is retried, and
    the retry no longer sees the task as free."""
    if n <= 0:
        return []
    for _ in range(retries):
        try:
            return _claim_once(conn, instance_id, n, lease, task_ids)
        except pg_errors.UniqueViolation:
            continue
    return []


# -------------------------------------------------------------------------- heartbeat

_RENEW = """
UPDATE tw_run r SET lease_until = now() + %(lease)s
FROM unnest(%(seqs)s::bigint[], %(fences)s::bigint[]) AS h(seq, fence)
WHERE r.seq = h.seq AND r.fence = h.fence AND r.status = 'running' AND r.instance_id = %(me)s
RETURNING r.seq
"""


def heartbeat(conn: Conn, instance_id: str, held: Iterable[tuple[int, int]],
              lease: timedelta) -> set[int]:
    """Renew the leases of ``held`` ``(seq, fence)`` in one statement, and the instance's
    own heartbeat; the seqs that were *not* renewed (lost: reaped or re-claimed) —
    their handlers must be told (``ctx.cancelled``) and their outcome will be refused."""
    pairs = list(held)
    with conn.transaction():
        conn.execute(
            "INSERT INTO tw_instance (id) VALUES (%s) ON CONFLICT (id) DO UPDATE "
            "SET heartbeat_at = now()", (instance_id,))
        if not pairs:
            return set()
        renewed = conn.execute(_RENEW, {
            "lease": lease, "me": instance_id, "seqs": [p[0] for p in pairs],
            "fences": [p[1] for p in pairs]}).fetchall()
    return {p[0] for p in pairs} - {r[0] for r in renewed}


# --------------------------------------------------------------------------- complete

_COMPLETE = """
UPDATE tw_run SET status = %(status)s, finished_at = now(), finished_text = NULL,
    lease_until = NULL, error = %(error)s, result = %(result)s
WHERE seq = %(seq)s AND fence = %(fence)s AND status = 'running'
RETURNING task_id
"""
_RETRY_LATER = """
UPDATE tw_run SET status = 'pending', not_before = now() + %(delay)s, instance_id = NULL,
    lease_until = NULL, error = %(error)s
WHERE seq = %(seq)s AND fence = %(fence)s AND status = 'running'
RETURNING task_id
"""


def complete(conn: Conn, run: Claimed | tuple[int, int], status: str, *,
             error: str | None = None, result: Any = None,
             retry_in: timedelta | None = None,
             next_run_in: timedelta | None = None) -> bool:
    """Record the outcome of a claimed run, fenced: False (nothing written) if this
    claim is no longer valid. ``retry_in`` hands the run back as pending for a retry
    after that delay (``status`` is then ignored). ``next_run_in`` sets the task's next
    occurrence for fixed-delay schedules, in the same transaction."""
    seq, fence = (run.seq, run.fence) if isinstance(run, Claimed) else run
    if retry_in is None and status not in FINAL:
        raise ValueError(f"status: expected one of {', '.join(FINAL)}, got {status!r}")
    with conn.transaction():
        if retry_in is not None:
            row = conn.execute(_RETRY_LATER, {"delay": retry_in, "error": error,
                                              "seq": seq, "fence": fence}).fetchone()
            return row is not None
        row = conn.execute(_COMPLETE, {
            "status": status, "error": error, "seq": seq, "fence": fence,
            "result": None if result is None else dump_json(result)}).fetchone()
        if row is None:
            return False
        task_id = row[0]
        conn.execute("UPDATE tw_task SET last_status = %s WHERE id = %s", (status, task_id))
        if next_run_in is not None:
            conn.execute("UPDATE tw_task SET next_run = now() + %s WHERE id = %s "
                         "AND next_run IS NULL", (next_run_in, task_id))
        # Wake instances only when someone waits on this task (the commit lock of
        # NOTIFY is global: not one per completion under load).
        dep = conn.execute("SELECT 1 FROM tw_task WHERE %s = ANY(dependencies) LIMIT 1",
                           (task_id,)).fetchone()
        # ... or when a queued run of this task waited for this one (max_instances).
        more = None if dep is not None else conn.execute(
            "SELECT 1 FROM tw_run WHERE task_id = %s AND status = 'pending' LIMIT 1",
            (task_id,)).fetchone()
        if dep is not None or more is not None or next_run_in is not None:
            _notify(conn, "runs")
    return True


# ------------------------------------------------------------------------------- reap

_REAP = """
WITH x AS (
    SELECT r.seq, t.id IS NOT NULL AND t.on_lease_loss = 'retry'
               AND r.attempts <= GREATEST(t.max_retries, 1) AS again,
           LEAST(COALESCE(t.retry_delay, 0)
                 * power(COALESCE(t.retry_backoff, 1), GREATEST(r.attempts - 1, 0)),
                 COALESCE(t.retry_max_delay, 3600)) AS backoff
    FROM tw_run r LEFT JOIN tw_task t ON t.id = r.task_id
    WHERE r.status = 'running' AND r.lease_until < now()
    ORDER BY r.lease_until LIMIT %(limit)s
    FOR UPDATE OF r SKIP LOCKED
)
UPDATE tw_run r SET
    status = CASE WHEN x.again THEN 'pending' ELSE 'failed' END,
    not_before = CASE WHEN x.again THEN now() + make_interval(secs => x.backoff)
                 ELSE r.not_before END,
    finished_at = CASE WHEN x.again THEN NULL ELSE now() END,
    instance_id = NULL, lease_until = NULL,
    error = 'lease expired (instance ' || COALESCE(r.instance_id, '?') || ' lost it)'
FROM x WHERE r.seq = x.seq
RETURNING r.seq, r.task_id, r.status
"""


def reap(conn: Conn, *, limit: int = 100) -> list[Reaped]:
    """Hand runs whose lease expired back (``pending`` after the retry backoff, when the
    task says ``on_lease_loss="retry"`` and attempts remain: a crash counts as an
    attempt, which caps poison pills) or fail them. Any instance may call it."""
    with conn.transaction():
        rows = conn.execute(_REAP, {"limit": limit}).fetchall()
        failed = sorted({r[1] for r in rows if r[2] == "failed"})
        if failed:
            conn.execute("UPDATE tw_task SET last_status = 'failed' WHERE id = ANY(%s)",
                         (failed,))
            _replan_fixed_delay(conn, failed)
        if rows:
            _notify(conn, "runs")
    return [Reaped(seq=r[0], task_id=r[1], status=r[2]) for r in rows]


# ------------------------------------------------------------------------ wake-ups


def seconds_until_due(conn: Conn) -> float | None:
    """Seconds (database clock) until the next task comes due or a pending run becomes
    ready; <= 0 when something is due now; None when nothing is planned."""
    row = conn.execute("""
        SELECT EXTRACT(EPOCH FROM LEAST(
            (SELECT min(next_run) FROM tw_task WHERE enabled AND next_run IS NOT NULL),
            (SELECT min(not_before) FROM tw_run WHERE status = 'pending')) - now())
    """).fetchone()
    return None if row is None or row[0] is None else float(row[0])


class Wakeups:
    """LISTEN on the ``tickwork`` channel, on a dedicated autocommit connection (no
    transaction-pooling PgBouncer in between). A notification is only a hint — it has no
    replay — so every wake-up, timeout or reconnect must be followed by a full re-query."""

    def __init__(self, conn: Conn) -> None:
        self.conn = conn
        conn.execute(f"LISTEN {CHANNEL}")

    def wait(self, timeout: float) -> list[str]:
        """Payloads received within ``timeout`` seconds (returns at the first one, plus
        any already queued); [] on timeout."""
        got = [n.payload for n in self.conn.notifies(timeout=max(timeout, 0.0), stop_after=1)]
        if got:
            got += [n.payload for n in self.conn.notifies(timeout=0.0)]
        return got

    def close(self) -> None:
        self.conn.close()


def wake_times(conn: Conn) -> tuple[float | None, float | None, bool]:
    """Seconds (database clock) until the next task is due to be materialised, and until
    the next queued run that is not ready yet (retry backoff) becomes ready; and whether
    a queued run is ready now. One statement: the idle poll of an instance."""
    row = conn.execute("""
        SELECT EXTRACT(EPOCH FROM (SELECT min(next_run) FROM tw_task
                                   WHERE enabled AND next_run IS NOT NULL) - now()),
               EXTRACT(EPOCH FROM (SELECT min(not_before) FROM tw_run
                                   WHERE status = 'pending' AND not_before > now()) - now()),
               EXISTS (SELECT 1 FROM tw_run WHERE status = 'pending' AND not_before <= now())
    """).fetchone()
    if row is None:
        return None, None, False
    return (None if row[0] is None else float(row[0]),
            None if row[1] is None else float(row[1]), bool(row[2]))


@dataclass(frozen=True, slots=True)
class TaskState:
    """A task's runtime fields as the database knows them (for snapshots)."""

    enabled: bool
    next_run: datetime | None
    last_status: str | None
    running: int
    run_count: int
    error_count: int
    last_run: datetime | None
    last_error: str | None


_TASK_STATES = f"""
SELECT t.id, t.enabled, t.next_run, t.last_status,
    (SELECT count(*) FROM tw_run r WHERE r.task_id = t.id AND r.status = 'running'),
    (SELECT count(*) FROM tw_run r WHERE r.task_id = t.id
        AND r.status IN ('succeeded', 'failed', 'timed_out', 'cancelled')),
    (SELECT count(*) FROM tw_run r WHERE r.task_id = t.id AND r.status IN {_FAILED_SQL}),
    (SELECT max(r.started_at) FROM tw_run r WHERE r.task_id = t.id),
    (SELECT r.error FROM tw_run r WHERE r.task_id = t.id AND r.status IN {_FAILED_SQL}
        ORDER BY r.seq DESC LIMIT 1)
FROM tw_task t WHERE %(id)s::text IS NULL OR t.id = %(id)s::text
"""


def task_states(conn: Conn, task_id: str | None = None) -> dict[str, TaskState]:
    rows = conn.execute(_TASK_STATES, {"id": task_id}).fetchall()
    return {r[0]: TaskState(enabled=r[1], next_run=r[2], last_status=r[3], running=int(r[4]),
                            run_count=int(r[5]), error_count=int(r[6]), last_run=r[7],
                            last_error=r[8]) for r in rows}


def cluster_counts(conn: Conn, lease: timedelta) -> dict[str, int]:
    """Instances alive (heartbeat within the lease), running and pending runs."""
    row = conn.execute("""
        SELECT (SELECT count(*) FROM tw_instance WHERE heartbeat_at > now() - %s),
               (SELECT count(DISTINCT task_id) FROM tw_run WHERE status = 'running'),
               (SELECT count(*) FROM tw_run WHERE status = 'pending')
    """, (lease,)).fetchone()
    assert row is not None
    return {"instances": int(row[0]), "running_tasks": int(row[1]), "pending": int(row[2])}


def pending_counts(conn: Conn) -> dict[str, int]:
    """Runs per status that are still in the queue (for metrics and tests)."""
    rows = conn.execute("SELECT status, count(*) FROM tw_run "
                        "WHERE status IN ('pending', 'running') GROUP BY status").fetchall()
    return {r[0]: int(r[1]) for r in rows}


__all__: Sequence[str] = (
    "Claimed",
    "DueTask",
    "Reaped",
    "TaskState",
    "Wakeups",
    "claim",
    "cluster_counts",
    "complete",
    "db_now",
    "enqueue_manual",
    "heartbeat",
    "materialise",
    "materialise_due",
    "pending_counts",
    "reap",
    "run_key",
    "seconds_until_due",
    "task_states",
    "wake_times",
)
