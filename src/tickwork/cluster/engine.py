"""``ClusterEngine``: the engine of a ``Scheduler`` whose store is PostgreSQL.

The local engine plans runs in memory; this one lets the database do it, so that any
number of processes form one scheduler (API.md section 7, docs/cluster.md):

* **Definitions** still live in the local catalogue (``Engine.tasks`` and the planner's
  entries, used for validation, dependency checks and snapshots), but every write goes
  to PostgreSQL through ``PostgresTaskStore.upsert_definition``, which plans
  ``next_run`` with the *database* clock. Other instances' changes arrive by
  ``LISTEN/NOTIFY`` (a listener thread) and are re-read on the next tick; a poll every
  ``POLL`` (10) seconds is the fallback. The local planner never runs anything here.
* **Runner protocol** (what ``Scheduler`` calls): ``tick()`` materialises due
  occurrences (``claims.materialise_due``, pure planner in ``plan.py``, database
  ``now()``) and claims up to the free workers' worth of ready runs, *only for tasks
  this instance has a handler for* (a run is never claimed by an instance that cannot
  run it; it waits for one that can). ``next_wakeup()`` turns database-relative delays
  into the instance clock's timeline, so a skewed clock only shifts when we look, never
  what is due.
* **Outcomes** are written with the claim's fence (``claims.complete``); 0 rows means
  the lease was lost and someone else owns the run: the result is dropped and counted
  (``cluster_fenced_out``). Retries go back to the queue with ``not_before`` and may be
  taken by any instance.
* **Heartbeat** thread with its own connection, every lease/3; runs missing from its
  answer are lost (``ctx.cancel()``, ``cluster_leases_lost``). Self-fence: without a
  successful renewal for ``lease - margin`` (monotonic) every held run is treated as
  lost. The **reaper** runs in ``tick`` every lease/3 +- 20 %.
* **Stop**: no new claims; contexts are cancelled as in local mode and running handlers
  are waited for; their outcomes are recorded; what is still running at the timeout is
  recorded ``cancelled`` (never handed to another instance while its handler may still
  be running here); the heartbeat stops last.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import random
import socket
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import psycopg

from .. import _core
from .._engine import Engine, keep_result
from .._errors import SchedulerError, StoreError, TaskNotFoundError
from .._model import EventType, RunRecord, RunStatus, Task, TaskState
from .._serde import task_from_dict
from .._timing import compile_schedule
from .._tz import to_dt
from ..stores.base import TaskDict
from . import claims
from .claims import Claimed
from .plan import planner_for

POLL = 10.0         # fallback re-read of definitions and due times (NOTIFY is only a hint)
MIN_SPIN = 0.05     # never re-tick faster than this when something looks due but is not ours
# Task metadata flag: the handler gets ``ctx.connection``, a psycopg connection in an open
# transaction that commits together with the fenced outcome (docs/cluster.md).
TX_FLAG = "tickwork.connection"
_TRUE = {"1", "true", "yes", "on"}
_TERMINAL = {
    RunStatus.SUCCEEDED: EventType.RUN_SUCCEEDED,
    RunStatus.FAILED: EventType.RUN_FAILED,
    RunStatus.TIMED_OUT: EventType.RUN_TIMED_OUT,
    RunStatus.CANCELLED: EventType.RUN_CANCELLED,
}
_DB_ERRORS = (psycopg.Error, StoreError, OSError)
T = TypeVar("T")


@dataclasses.dataclass(slots=True)
class _Held:
    """A run this instance claimed and has not recorded yet."""

    claimed: Claimed
    run: _core.Run
    task: Task
    deadline: float | None      # instance clock
    lost: bool = False          # lease lost (heartbeat or self-fence); outcome may be refused
    done: bool = False          # an outcome was decided (handler returned, timed out, stop)
    conn: Any = None            # ctx.connection (TX_FLAG): commits with a successful outcome


class _DefinitionWriter:
    """What ``Engine`` writes definitions through in cluster mode: every upsert plans
    ``next_run`` in the database; ``replace_tasks`` (``save_tasks``) never deletes
    another instance's tasks."""

    def __init__(self, engine: ClusterEngine) -> None:
        self.engine = engine

    def upsert_task(self, task: TaskDict, now: datetime) -> None:
        eng = self.engine
        text = eng.cstore.upsert_definition(task, eng.first_run)
        tid = task.get("id")
        if isinstance(tid, str):
            eng.specs[tid] = text

    def delete_task(self, task_id: str, now: datetime) -> None:
        self.engine.cstore.delete_task(task_id, now)
        self.engine.specs.pop(task_id, None)

    def replace_tasks(self, tasks: Sequence[TaskDict], now: datetime) -> None:
        for t in tasks:
            self.upsert_task(t, now)

    def record_run(self, task: TaskDict | None, record: RunRecord, now: datetime) -> None:
        self.engine.cstore.record_run(task, record, now)


class ClusterEngine(Engine):
    """An ``Engine`` whose runs are planned, claimed and recorded in PostgreSQL."""

    def __init__(self, logger: logging.Logger | None = None, *, store: Any = None,
                 **kwargs: Any) -> None:
        if store is None or not callable(getattr(store, "upsert_definition", None)):
            raise ValueError(f"store: cluster mode needs a PostgresTaskStore, got {store!r}")
        self.cstore = store
        self.lease: timedelta = store.lease
        self.specs: dict[str, str] = {}        # spec text last seen/written per task
        self._db_lock = threading.Lock()       # the work connection: one user at a time
        self._work: psycopg.Connection[Any] | None = None
        self._held: dict[int, _Held] = {}      # by fence
        # ctx.connection of attempts whose outcome was decided while the handler may still
        # use it (timeout, stop): closed once the handler returns, never under its feet.
        self._orphans: dict[int, Any] = {}     # by fence
        self._notified = False
        self._defs_dirty = True
        self._last_sync = 0.0                  # monotonic
        self._next_at: float | None = None     # instance clock
        self._reap_at = 0.0                    # monotonic
        self._threads_stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._rand = random.Random()
        self._db_state: dict[str, claims.TaskState] = {}
        self._synced = False                   # definitions read once (events after that)
        self.cluster_stats = {"cluster_leases_lost": 0, "cluster_takeovers": 0,
                              "cluster_fenced_out": 0}
        super().__init__(logger, store=store, **kwargs)
        self._plan = planner_for(self.tz)
        self._writer = _DefinitionWriter(self)
        try:
            # What is stored now is this instance's starting point (no events for it, as
            # in local mode); every later difference is another instance's change.
            self._sync_definitions()
            self._defs_dirty = False
        except _DB_ERRORS as exc:
            self.logger.warning("cluster: cannot read the task definitions yet: %s", exc)

    # ----- database plumbing -----------------------------------------------------------
    def _db(self, fn: Callable[[psycopg.Connection[Any]], T]) -> T:
        """``fn(work connection)`` under the connection lock; a dropped connection (e.g.
        ``pg_terminate_backend``) is reopened and ``fn`` tried once more."""
        with self._db_lock:
            for attempt in (0, 1):
                conn = self._work
                if conn is None or conn.closed or conn.broken:
                    if conn is not None:
                        conn.close()
                    self._work = None
                    conn = self._work = self._connect()
                try:
                    return fn(conn)
                except psycopg.OperationalError:
                    conn.close()
                    self._work = None
                    if attempt:
                        raise
        raise AssertionError("unreachable")

    def _connect(self) -> psycopg.Connection[Any]:
        """A connection whose open transaction the server ends if we stall in it (a paused
        or dying instance must not keep tasks or runs row-locked: the others SKIP LOCKED
        them, which would delay their materialisation or claim past the lease)."""
        conn: psycopg.Connection[Any] = self.cstore.connect()
        # lease/3, between 0.2 s and 1 s: our transactions never wait on the client for
        # long, and every second a paused holder keeps locks is lateness for the others.
        ms = min(max(int(self.lease.total_seconds() * 1000 / 3), 200), 1000)
        conn.execute(f"SET idle_in_transaction_session_timeout = {ms}")
        return conn

    def first_run(self, d: TaskDict, db_now: datetime) -> datetime | None:
        """The first occurrence of a stored task at or after the database's now."""
        task = task_from_dict(d)
        timing = compile_schedule(task.schedule, self.tz, task.id)
        t = timing.first(db_now.timestamp())
        return None if t is None else datetime.fromtimestamp(t, UTC)

    def _write(self, fn: Callable[[Any], None]) -> None:
        fn(self._writer)

    def _kick(self) -> None:
        """Make the runner tick again soon (a notify, a free slot, a new handler)."""
        with self.lock:
            self._notified = True
        self.wake()

    # ----- background threads ------------------------------------------------------------
    def _ensure_threads(self) -> None:
        if self._threads:
            return
        self._threads_stop.clear()
        self._db(lambda c: c.execute(
            "INSERT INTO tw_instance (id, host, pid) VALUES (%s, %s, %s) ON CONFLICT (id) DO "
            "UPDATE SET heartbeat_at = now()",
            (self.instance_id, socket.gethostname(), os.getpid())))
        for name, target in (("tickwork-listen", self._listen_loop),
                             ("tickwork-heartbeat", self._heartbeat_loop)):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)

    def _stop_threads(self) -> None:
        self._threads_stop.set()
        for t in self._threads:
            t.join(timeout=max(self.lease.total_seconds(), 5.0))
        self._threads = []

    def _listen_loop(self) -> None:
        waker: claims.Wakeups | None = None
        while not self._threads_stop.is_set():
            try:
                if waker is None:
                    waker = claims.Wakeups(self.cstore.connect())
                    self._defs_dirty = True  # notifies may have been missed meanwhile
                    self._kick()
                got = waker.wait(1.0)
            except Exception as exc:
                self.logger.warning("cluster listener: %s; reconnecting", exc)
                if waker is not None:
                    waker.close()
                    waker = None
                self._threads_stop.wait(1.0)
                continue
            if got:
                if any(p.startswith("task") for p in got):
                    self._defs_dirty = True
                self._kick()
        if waker is not None:
            waker.close()

    def _heartbeat_loop(self) -> None:
        lease = self.lease.total_seconds()
        period = lease / 3
        margin = max(lease / 5, 0.2)
        conn: psycopg.Connection[Any] | None = None
        last_ok = time.monotonic()
        next_beat = 0.0
        while True:
            now = time.monotonic()
            if now >= next_beat:
                with self.lock:
                    pairs = [(h.claimed.seq, h.claimed.fence) for h in self._held.values()
                             if not h.lost]
                try:
                    if conn is None or conn.closed or conn.broken:
                        if conn is not None:
                            conn.close()
                        conn = self._connect()
                    # A renewal that matched the fence means nobody else holds the run,
                    # even after a pause: only the runs it did not renew are lost.
                    lost = claims.heartbeat(conn, self.instance_id, pairs, self.lease)
                    last_ok = time.monotonic()
                    self._lose_seqs(lost, "lease lost (reaped or claimed elsewhere)")
                    next_beat = time.monotonic() + period
                except Exception as exc:
                    self.logger.warning("cluster heartbeat failed: %s", exc)
                    if conn is not None:
                        conn.close()
                        conn = None
                    next_beat = time.monotonic() + min(period, 0.5)  # try again soon
            if time.monotonic() - last_ok > lease - margin:
                with self.lock:
                    seqs = {h.claimed.seq for h in self._held.values() if not h.lost}
                self._lose_seqs(seqs, "lease lost (no heartbeat for lease - margin: "
                                      "self-fenced)")
            if self._threads_stop.wait(min(period, margin) / 2):
                break
        if conn is not None:
            try:
                conn.execute("DELETE FROM tw_instance WHERE id = %s", (self.instance_id,))
            except psycopg.Error:
                pass
            conn.close()

    def _lose_seqs(self, seqs: set[int], why: str) -> None:
        if not seqs:
            return
        with self.lock:
            lost = [h for h in self._held.values()
                    if h.claimed.seq in seqs and not h.lost and not h.done]
            for h in lost:
                h.lost = True
                self.cluster_stats["cluster_leases_lost"] += 1
        for h in lost:
            if h.run.ctx is not None:
                h.run.ctx.cancel()
            self.logger.warning("run %s of task %r: %s", h.claimed.run_id,
                                h.claimed.task_id, why)
            self._publish_lost(h, why)

    def _publish_lost(self, h: _Held, why: str) -> None:
        self.publish(EventType.RUN_LEASE_LOST, task_id=h.claimed.task_id,
                     run_id=h.claimed.run_id, attempt=h.claimed.attempts, error=why)

    # ----- definitions -------------------------------------------------------------------
    def _sync_definitions(self) -> None:
        """Re-read every task definition; apply other instances' adds, changes, removals
        to the local catalogue (no store writes) and publish them as local ``task_*``
        events, once each (so every instance's subscribers, e.g. its web UI, see them).
        The first read (loading what is stored) publishes nothing, as in local mode."""
        events: list[tuple[EventType, str]] = []
        with self.store_lock:
            rows = self._db(lambda c: c.execute(
                "SELECT id, spec FROM tw_task ORDER BY seq").fetchall())
            with self.lock:
                now = self.now()
                seen = set()
                for tid, spec in rows:
                    seen.add(tid)
                    old_spec = self.specs.get(tid)
                    if old_spec == spec and tid in self.planner.entries:
                        continue
                    known = tid in self.planner.entries
                    try:
                        self._apply_definition(tid, spec, now)
                    except Exception as exc:  # a bad stored task never stops the others
                        self.logger.warning("cluster: cannot load task %r: %s", tid, exc)
                    else:
                        events += _change_events(tid, old_spec if known else None, spec)
                    self.specs[tid] = spec
                for tid in [t for t in self.planner.entries if t not in seen]:
                    if tid in self.specs:  # it was in the database and is gone now
                        self._drop(tid, now)
                        self.specs.pop(tid, None)
                        events.append((EventType.TASK_REMOVED, tid))
                first, self._synced = not self._synced, True
                self._last_sync = time.monotonic()
        if not first:
            for etype, tid in events:
                self.publish(etype, task_id=tid)

    def _apply_definition(self, tid: str, spec: str, now: float) -> None:
        d = json.loads(spec)
        task = self._normalise(task_from_dict(d))
        old_task = self.tasks.get(tid)
        if old_task is not None and isinstance(task.handler, str) and (
                self._handler_ref(old_task) == task.handler):
            task = dataclasses.replace(task, handler=old_task.handler)  # keep the callable
        entry = self._make_entry(task)
        resolved = self._resolve(task)
        entry.runnable = resolved is not None
        self.tasks[tid] = task
        self._set_resolved(tid, resolved)
        self.raw.pop(tid, None)
        old = self.planner.entries.get(tid)
        if old is None:
            self.planner.add(entry, now)
            self.adoptable.add(tid)
        else:
            self.planner.replace(old, entry, now, replan=True)

    def _refresh(self, task_id: str | None) -> None:
        """Before a snapshot: definitions (when a notify said so, or not running) and the
        runtime columns from the database."""
        try:
            if self._defs_dirty or not self._threads:
                self._defs_dirty = False
                self._sync_definitions()
            states = self._db(lambda c: claims.task_states(c, task_id))
        except _DB_ERRORS as exc:
            self.logger.warning("cluster: cannot refresh task state: %s", exc)
            return
        with self.lock:
            if task_id is None:
                self._db_state = states
            else:
                self._db_state.pop(task_id, None)
                self._db_state.update(states)

    def snapshot(self, task_id: str, *, nominal: bool = False) -> Task:
        snap = super().snapshot(task_id, nominal=nominal)
        st = self._db_state.get(task_id)
        if st is None or nominal:
            return snap
        state = snap.state
        if state is not TaskState.ORPHANED:
            state = (TaskState.RUNNING if st.running else
                     TaskState.DISABLED if not st.enabled else
                     TaskState.FINISHED if st.next_run is None and st.run_count
                     and snap.schedule.type == "once" else TaskState.SCHEDULED)
        return dataclasses.replace(
            snap, enabled=st.enabled, next_run=None if st.next_run is None
            else to_dt(st.next_run.timestamp(), self.tz),
            last_run=None if st.last_run is None else to_dt(st.last_run.timestamp(), self.tz),
            run_count=st.run_count, error_count=st.error_count, last_error=st.last_error,
            last_status=None if st.last_status is None else RunStatus(st.last_status),
            state=state)

    # ----- API overrides -----------------------------------------------------------------
    def get_task(self, task_id: str) -> Task:
        self._refresh(task_id)
        return super().get_task(task_id)

    def list_tasks(self) -> list[Task]:
        self._refresh(None)
        return super().list_tasks()

    def run_now(self, task_id: str) -> None:
        with self.lock:
            self._entry(task_id)
        seq = self._db(lambda c: claims.enqueue_manual(c, task_id))
        if seq is None:
            raise TaskNotFoundError(task_id)
        self._kick()

    def register_handler(self, key: str, fn: Callable[..., Any]) -> None:
        super().register_handler(key, fn)
        self._kick()

    def set_enabled(self, task_id: str, enabled: bool) -> Task:
        snap = super().set_enabled(task_id, enabled)
        self._kick()
        return snap

    def get_stats(self) -> dict[str, int]:
        out = super().get_stats()
        try:
            counts = self._db(lambda c: claims.cluster_counts(c, self.lease))
        except _DB_ERRORS:
            counts = {"instances": -1, "running_tasks": -1, "pending": -1}
        with self.lock:
            out.update(self.cluster_stats)
            out["running_tasks"] = counts["running_tasks"]
            out["queued_runs"] = counts["pending"]
            out["cluster_instances_alive"] = counts["instances"]
            out["cluster_held_runs"] = len(self._held)
        return out

    def save_tasks(self) -> None:
        """Write every local definition (upserts only: another instance's tasks stay)."""
        if self.store is None:
            raise SchedulerError("save_tasks: no store attached")
        with self.store_lock:
            with self.lock:
                dicts = [self.task_dict(i) for i in self.planner.entries
                         if i not in self.raw]
            for d in dicts:
                self._writer.upsert_task(d, datetime.now(UTC))

    # ----- runner protocol ---------------------------------------------------------------
    def next_wakeup(self) -> float | None:
        with self.lock:
            if self._notified or self.stopping:
                return self.now()
            return self._next_at

    def tick(self) -> tuple[list[_core.Run], list[Callable[[], None]]]:
        with self.lock:
            if self.stopping:
                return [], []
            self._notified = False
        try:
            self._ensure_threads()
            return self._cluster_tick(), []
        except _DB_ERRORS as exc:
            self.logger.warning("cluster tick failed (retrying in 0.25 s): %s", exc)
            with self.lock:
                self._next_at = self.now() + 0.25
            return [], []

    def _cluster_tick(self) -> list[_core.Run]:
        mono = time.monotonic()
        if self._defs_dirty or mono - self._last_sync >= POLL:
            self._defs_dirty = False
            self._sync_definitions()
        self._check_timeouts()
        if mono >= self._reap_at:
            reaped = self._db(claims.reap)
            self.cluster_stats["cluster_takeovers"] += sum(r.status == "pending" for r in reaped)
            for r in reaped:
                self.logger.warning("cluster: reaped run %s of task %r (lease expired) -> %s",
                                    r.seq, r.task_id, r.status)
            self._reap_at = mono + self.lease.total_seconds() / 3 * self._rand.uniform(0.8, 1.2)
        with self.lock:
            free = self.max_workers - self.busy
            ids = sorted(self.resolved)

        def work(c: psycopg.Connection[Any]) -> tuple[list[Claimed], tuple[Any, Any]]:
            # One cheap statement first: an idle poll stops here (idle load, CLUSTER.md).
            t_task, t_retry, ready = claims.wake_times(c)
            due = t_task is not None and t_task <= 0
            if due:
                claims.materialise_due(c, self._plan)
            got: list[Claimed] = []
            if free > 0 and ids and (ready or due):
                got = claims.claim(c, self.instance_id, free, self.lease, task_ids=ids)
            if due or got:
                t_task, t_retry, _ready = claims.wake_times(c)
            return got, (t_task, t_retry)

        got, (t_task, t_retry) = self._db(work)
        starts: list[_core.Run] = []
        release: list[Claimed] = []
        tx: list[_Held] = []  # runs whose handler gets ctx.connection
        with self.lock:
            now = self.now()
            for c in got:
                res = self.resolved.get(c.task_id)
                task = self.tasks.get(c.task_id)
                entry = self.planner.entries.get(c.task_id)
                if res is None or task is None or entry is None or self.stopping:
                    release.append(c)
                    continue
                run = _core.Run(run_id=c.run_id, entry=entry,
                                scheduled_for=c.scheduled_for.timestamp(), manual=c.manual,
                                attempt=c.attempts, token=c.fence, active=True,
                                started_at=now, attempt_started=now)
                run.deadline = None if entry.timeout is None else now + entry.timeout
                run.handler = res
                ctx = self._context(run, now)
                ctx.fence = c.fence
                ctx.run_key = c.run_key  # UTC spelling: the same on every instance
                run.ctx = ctx
                self.busy += 1
                h = self._held[c.fence] = _Held(claimed=c, run=run, task=task,
                                                deadline=run.deadline)
                if task.metadata.get(TX_FLAG, "").lower() in _TRUE:
                    tx.append(h)
                starts.append(run)
            cands = [now + POLL,
                     now + max(self._reap_at - time.monotonic(), 0.0)]
            if free > 0 and len(got) >= free:
                cands.append(now)  # there may be more ready runs
            if t_task is not None:
                cands.append(now + max(t_task, MIN_SPIN))
            if t_retry is not None:
                cands.append(now + max(t_retry, MIN_SPIN))
            cands += [h.deadline for h in self._held.values()
                      if h.deadline is not None and not h.done]
            self._next_at = min(cands)
        for c in release:
            self._release(c)
        for h in tx:
            self._open_handler_connection(h.run)
        return starts

    def _open_handler_connection(self, run: _core.Run) -> None:
        """``ctx.connection``: a new connection in an open transaction (BEGIN). The
        outcome is recorded *in* it when the handler succeeds, so its writes commit if and
        only if the fenced outcome does; otherwise it is closed (rolled back)."""
        try:
            conn = self.cstore.connect()
            if self.cstore.schema is not None:  # the handler's own tables stay visible
                conn.execute(f'SET search_path TO "{self.cstore.schema}", "$user", public')
            conn.execute("BEGIN")
        except _DB_ERRORS as exc:
            self.logger.error("run %s of task %r: cannot open ctx.connection: %s",
                              run.run_id, run.entry.task_id, exc)
            return
        with self.lock:
            h = self._held.get(run.token)
            if h is not None:
                h.conn = conn
        assert run.ctx is not None
        run.ctx.connection = conn

    def _release(self, c: Claimed) -> None:
        """Hand a claimed run back to the queue at once (we cannot run it after all)."""
        def give_back(conn: psycopg.Connection[Any]) -> bool:
            return claims.complete(conn, c, "cancelled", retry_in=timedelta(0))

        self._db(give_back)

    def _check_timeouts(self) -> None:
        now = self.now()
        with self.lock:
            due = [h for h in self._held.values()
                   if h.deadline is not None and not h.done and now >= h.deadline]
            for h in due:
                h.done = True
        for h in due:
            if h.run.ctx is not None:
                h.run.ctx.cancel()
            if h.run.future is not None:
                h.run.future.cancel()
            self._orphan(h)
            limit = h.run.entry.timeout or 0.0
            self._outcome(h, f"TimeoutError: attempt timed out after {limit:g}s", None,
                          timed_out=True)

    # ----- outcomes ----------------------------------------------------------------------
    def attempt_done(self, run: _core.Run, token: int, error: str | None, result: Any) -> None:
        with self.lock:
            h = self._held.get(token)
            orphan = self._orphans.pop(token, None)
            if h is None or h.done:
                h = None  # timed out or cancelled already: that outcome stands
            else:
                h.done = True
        if orphan is not None:
            _close(orphan)  # the handler returned: its uncommitted work is rolled back
        if h is not None:
            self._outcome(h, error, result)

    def _orphan(self, h: _Held) -> None:
        with self.lock:
            if h.conn is not None:
                self._orphans[h.claimed.fence] = h.conn
                h.conn = None

    def _record(self, h: _Held, status: RunStatus, error: str | None, kept: Any,
                retry_in: timedelta | None, next_in: timedelta | None,
                ) -> tuple[bool, RunStatus, str | None]:
        """The fenced ``complete``; with ``ctx.connection``, a success is recorded in the
        handler's transaction and committed with it (anything else rolls it back)."""
        c = h.claimed
        conn, h.conn = h.conn, None
        if conn is not None and status is RunStatus.SUCCEEDED and retry_in is None:
            try:
                ok = claims.complete(conn, c, status.value, result=kept, next_run_in=next_in)
                if ok:
                    conn.execute("COMMIT")
                return ok, status, error
            except psycopg.Error as exc:
                # The handler's transaction cannot commit (it left it aborted, or a
                # constraint failed at COMMIT): nothing of it is kept; record a failure.
                status, kept = RunStatus.FAILED, None
                conn.close()  # before the fallback write below, not after it
                error = f"ctx.connection: the transaction did not commit: {exc}"
                self.logger.error("run %s of task %r: %s", c.run_id, c.task_id, error)
            finally:
                _close(conn)
        elif conn is not None:
            _close(conn)
        final = status
        ok = self._db(lambda w: claims.complete(
            w, c, final.value, error=error, result=kept, retry_in=retry_in,
            next_run_in=next_in))
        return ok, status, error

    def _outcome(self, h: _Held, error: str | None, result: Any, *,
                 timed_out: bool = False, cancelled: bool = False) -> None:
        c = h.claimed
        task = h.task
        policy = task.retry or self.planner.default_retry
        retry_in: timedelta | None = None
        if cancelled:
            status = RunStatus.CANCELLED
        elif error is None:
            status = RunStatus.SUCCEEDED
        else:
            status = RunStatus.TIMED_OUT if timed_out else RunStatus.FAILED
            if c.attempts <= policy.max_retries:
                retry_in = timedelta(seconds=policy.delay_for(c.attempts, self._rand.random()))
        next_in: timedelta | None = None
        timing = h.run.entry.timing
        interval = getattr(timing, "interval", None)
        if retry_in is None and timing.fixed_delay and isinstance(interval, float):
            next_in = timedelta(seconds=interval)
        kept = keep_result(result) if error is None else None
        fenced_out = False
        try:
            ok, status, error = self._record(h, status, error, kept, retry_in, next_in)
            if status is not RunStatus.SUCCEEDED:
                kept = None
            fenced_out = not ok
        except _DB_ERRORS as exc:
            # The lease will expire and the reaper hands the run on (at-least-once).
            self.logger.error("run %s of task %r: cannot record the outcome (%s); the lease "
                              "will expire and the run be retried", c.run_id, c.task_id, exc)
            ok = False
        now = self.now()
        with self.lock:
            self._held.pop(c.fence, None)
            if not ok:
                self.cluster_stats["cluster_fenced_out"] += 1
            elif retry_in is not None:
                self.stats["total_retries"] += 1
            else:
                self.stats["total_runs"] += 1
                if status is not RunStatus.SUCCEEDED:
                    self.stats["total_errors"] += 1
        if not ok:
            if fenced_out:
                self.logger.warning("run %s of task %r (fence %s): fenced out, result "
                                    "dropped (the lease was lost)", c.run_id, c.task_id,
                                    c.fence)
                if not h.lost:  # a lease lost unnoticed (pause): nobody published it yet
                    self._publish_lost(h, "fenced out: the lease was lost, outcome refused")
            return
        if retry_in is not None:
            self.publish(EventType.RUN_RETRYING, task_id=c.task_id, run_id=c.run_id,
                         attempt=c.attempts + 1, error=error)
            return
        rec = RunRecord(
            run_id=c.run_id, task_id=c.task_id, scheduled_for=to_dt(h.run.scheduled_for, self.tz),
            started_at=to_dt(h.run.started_at, self.tz), finished_at=to_dt(now, self.tz),
            status=status, attempts=c.attempts, error=error, result=kept,
            instance_id=self.instance_id, manual=c.manual)
        if task.after_run is not None and h.run.ctx is not None:
            try:
                task.after_run(h.run.ctx, rec)
            except Exception:
                self.logger.exception("after_run hook of task %r failed", c.task_id)
        with self.lock:
            self.history.append(rec)
        self.publish(_TERMINAL[status], task_id=c.task_id, run_id=c.run_id,
                     attempt=c.attempts, error=error, record=rec)

    def slot_free(self) -> None:
        with self.lock:
            self.busy -= 1
        self._kick()

    # ----- stopping ----------------------------------------------------------------------
    def begin_stop(self) -> None:
        with self.lock:
            self.stopping = True
            ctxs = [h.run.ctx for h in self._held.values() if h.run.ctx is not None]
        for ctx in ctxs:
            ctx.cancel()

    def active_runs(self) -> int:
        with self.lock:
            return len(self._held)

    def cancel_remaining(self) -> None:
        with self.lock:
            left = [h for h in self._held.values() if not h.done]
            for h in left:
                h.done = True
        for h in left:
            if h.run.future is not None:
                h.run.future.cancel()
            self._orphan(h)
            self._outcome(h, "cancelled: still running when the scheduler stopped", None,
                          cancelled=True)

    def final_save(self) -> None:
        """Definitions are written on every change; here the heartbeat stops, last."""
        self._stop_threads()
        with self._db_lock:
            if self._work is not None:
                self._work.close()
                self._work = None


def _change_events(tid: str, old: str | None, new: str) -> list[tuple[EventType, str]]:
    """The events a local API call would have published for this stored change:
    ``task_added``; ``task_enabled``/``task_disabled`` alone when only ``enabled``
    changed (``set_enabled``); else ``task_updated`` (plus enabled/disabled)."""
    if old is None:
        return [(EventType.TASK_ADDED, tid)]
    try:
        a, b = json.loads(old), json.loads(new)
    except ValueError:
        return [(EventType.TASK_UPDATED, tid)]
    enabled = b.get("enabled")
    toggled = a.get("enabled") != enabled
    out: list[tuple[EventType, str]] = []
    for d in (a, b):  # runtime state and the flag itself are not a definition change
        d.pop("state", None)
        d.pop("enabled", None)
    if a != b:
        out.append((EventType.TASK_UPDATED, tid))
    if toggled:
        out.append((EventType.TASK_ENABLED if enabled else EventType.TASK_DISABLED, tid))
    return out


def _close(conn: Any) -> None:
    try:
        conn.close()
    except Exception:  # closing a broken connection must not hide the outcome
        pass


__all__ = ["ClusterEngine"]
