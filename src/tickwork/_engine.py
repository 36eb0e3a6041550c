"""The scheduler's shell around the pure planner: locking, clock, handlers, store, events.

``Engine`` holds everything both runners share. The runners (threads in ``scheduler.py``,
asyncio in ``aio.py``) only wait, call :meth:`Engine.tick` and execute the runs it hands
out. One short lock (``self.lock``) guards the planner; store writes and event callbacks
happen outside it, store writes serialised by ``self.store_lock`` so that the store sees
changes in the order memory did.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import math
import os
import random
import socket
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime, timedelta, tzinfo
from threading import get_ident
from typing import Any, Generic, TypeVar

from . import _core
from ._clock import SYSTEM_CLOCK, Clock
from ._context import TaskContext, run_context
from ._core import DEFN_AFTER_RUN, DEFN_BEFORE_RUN
from ._durations import to_timedelta
from ._errors import (
    DependencyError,
    DuplicateTaskError,
    SchedulerError,
    StoreError,
    TaskNotFoundError,
)
from ._events import Callback, EventBus
from ._handlers import Resolved, describe, import_handler, import_ref
from ._model import (
    TASK_ID_RE,
    Event,
    EventType,
    RetryPolicy,
    RunRecord,
    RunStatus,
    Schedule,
    ScheduleType,
    Task,
    TaskState,
    clone_task,
    validate_task_fields,
)
from ._timing import Timing, compile_schedule
from ._tz import to_dt, to_ts, zone
from .stores.base import TaskDict, TaskStore

HISTORY_IN_MEMORY = 10_000
WRITER_IDLE_EXIT = 1.0  # seconds: an idle store-writer thread ends (restarted on demand)
# seconds (real time) the store writer waits for more finished runs before a write
WRITER_LINGER = 0.002
# Ramp-up of a burst (tick_plan): while a worker has ended a run within this long, the
# timer thread leaves ready runs to the workers, which take them as they finish; past
# it (the running handlers are long) it starts one more run per tick.
RAMP = 0.002
# ...for a run whose task's recent attempts took t (known short), the hold is 4t, at least
# HOLD_MIN (a fresh worker's wake-up costs ~0.1 ms) and at most RAMP: a short handler
# that is suddenly slow holds the ready runs behind it for less.
HOLD_MIN = 0.0002
TOOK_DECAY = 0.9  # see _finish_take
# Watching (real clock, plain engine; see Engine.watch_tick): a worker whose run ended
# with nothing ready waits itself for the next due time when it is at most WATCH_HORIZON
# away, and runs what falls due then; the timer thread only keeps a backstop: it takes
# over from a watcher still in a handler once the watched time has passed, and from any
# watcher WATCH_BACKSTOP after it (see tick_plan).
WATCH_HORIZON = 0.05
WATCH_BACKSTOP = 0.005
# Bound of the shared-schedule caches: a workload of distinct schedules only refills them.
_SHARED_MAX = 4096
_ID_OK = TASK_ID_RE.fullmatch
_NO_DEPS: list[str] = []
_NO_META: dict[str, str] = {}
MAX_RESULT_REPR = 1024
UPDATABLE = frozenset(
    f.name for f in dataclasses.fields(Task)
    if f.name not in ("id", "last_run", "next_run", "run_count", "error_count", "last_error",
                      "last_status", "state")
)
_TERMINAL_EVENT = {
    RunStatus.SUCCEEDED: EventType.RUN_SUCCEEDED,
    RunStatus.FAILED: EventType.RUN_FAILED,
    RunStatus.TIMED_OUT: EventType.RUN_TIMED_OUT,
    RunStatus.CANCELLED: EventType.RUN_CANCELLED,
    RunStatus.SKIPPED: EventType.RUN_SKIPPED,
    RunStatus.MISSED: EventType.RUN_MISSED,
}


def error_text(exc: BaseException) -> str:
    msg = str(exc)
    return f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__


def keep_result(value: Any) -> Any:
    """JSON-serialisable results are kept as they are, anything else as a short repr."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    try:
        json.dumps(value, allow_nan=False)
        return value
    except (TypeError, ValueError):
        return repr(value)[:MAX_RESULT_REPR]


def _before(t: float) -> float:
    """The float just below ``t``: collecting timers up to it leaves those due at ``t``."""
    return math.nextafter(t, -math.inf)


class Engine:
    def __init__(
        self,
        logger: logging.Logger | None = None,
        *,
        store: TaskStore | None = None,
        max_workers: int = 32,
        timezone: str | tzinfo | None = None,
        max_retries: int = 3,
        retry_delay: timedelta | float = timedelta(seconds=5),
        clock: Clock | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if isinstance(max_workers, bool) or not isinstance(max_workers, int) or max_workers < 1:
            raise ValueError(f"max_workers: must be an int >= 1, got {max_workers!r}")
        self.logger = logger or logging.getLogger("tickwork")
        self.clock: Clock = clock or SYSTEM_CLOCK
        self.tz = zone(timezone)
        self.max_workers = max_workers
        self.instance_id = f"{socket.gethostname()}:{os.getpid()}:{os.urandom(3).hex()}"
        self.lock = threading.RLock()
        self.store_lock = threading.Lock()
        self.bus = EventBus(self.logger)
        self.planner = _core.Planner(
            default_retry=RetryPolicy(max_retries=max_retries,
                                      delay=to_timedelta(retry_delay, field="retry_delay")),
            rng=rng,
        )
        # The definitions live in the planner's entries (one object per task); this is a
        # dict-like view that builds a Task on access.
        self.tasks = TaskTable(self.planner.entries)
        self.handlers: dict[str, Callable[..., Any]] = {}
        self.resolved = ResolvedTable(self.planner.entries)
        self.orphan_reason: dict[str, str] = {}
        self.raw: dict[str, TaskDict] = {}  # stored dicts of orphans, saved back unchanged
        self.adoptable: set[str] = set()  # loaded from the store, not yet defined in code
        # RunRecords, or runs ended inline whose record is built when history is read
        self.history: deque[Any] = deque(maxlen=HISTORY_IN_MEMORY)
        # group commit (see _queue_write): finished runs waiting for the store writer
        self._wcond = threading.Condition(threading.Lock())
        self._wqueue: list[tuple[_core.Run, float]] = []  # (run, finished at)
        self._store_writer: threading.Thread | None = None
        self._schedules: dict[tuple[Any, ...], Schedule] = {}
        self._timings: dict[int, tuple[Schedule, Timing]] = {}
        self._by_id: dict[int, tuple[Schedule, Schedule]] = {}
        self._described: dict[int, tuple[Callable[..., Any], Resolved]] = {}
        self.stats = {"total_runs": 0, "total_errors": 0, "total_retries": 0,
                      "total_skipped": 0, "total_missed": 0}
        self.busy = 0
        # Until when the timer thread leaves ready runs to a worker getting through them
        # (see tick_plan and _hold).
        self.hold_until = float("-inf")
        # Set by a runner that uses tick_plan (real clock): bursts ramp up (see there)
        # and a second worker leaves ready runs to one that is getting through them.
        self.ramp_up = False
        self._last_ender = 0  # thread ident of the worker that last ended a run...
        self._last_end_at = float("-inf")  # ...and when
        self._last_next: tuple[float, Any, Any] = (float("nan"), None, None)
        # Watching (see watch_tick): enabled by the runner; the watched time and the
        # claim's number (a claim the timer revoked is seen by its number).
        self.watch = False
        self.watch_at: float | None = None
        self.watch_seq = 0
        # The watcher is running a handler (it kept its claim for it), not waiting: once
        # the watched time passes, the timer thread takes over at once (tick_plan).
        self.watch_busy = False
        self.timer_deadline = float("inf")  # when the sleeping timer thread looks again
        self._alike: tuple[Any, ...] | None = None  # see _remember_alike
        self.started = False
        self.stopping = False
        self.store: TaskStore | None = None
        self.wake: Callable[[], None] = lambda: None
        if store is not None:
            self.attach_store(store)

    # ----- helpers ------------------------------------------------------------------
    def now(self) -> float:
        return self.clock.time()

    def dt(self, ts: float | None) -> datetime | None:
        return None if ts is None else to_dt(ts, self.tz)

    def publish(self, etype: EventType, **kw: Any) -> None:
        if self.bus.subs:
            self.bus.publish(Event(type=etype, at=to_dt(self.now(), self.tz), **kw))

    def _poke(self) -> None:
        if self.planner.wake_needed:
            self.wake()

    def _entry(self, task_id: str) -> _core.Entry:
        e: _core.Entry | None = self.planner.entries.get(task_id)
        if e is None:
            raise TaskNotFoundError(task_id)
        return e

    # ----- validation ---------------------------------------------------------------
    def _normalise(self, task: Task) -> Task:
        """Validate and make the scheduler's own copy (naive datetimes resolved)."""
        if not isinstance(task, Task):
            raise ValueError(f"task: expected a Task, got {task!r}")
        validate_task_fields(task)
        own = clone_task(task)
        own.schedule = self._own_schedule(task.schedule)
        deps = task.dependencies
        # Empty containers are shared (the engine never mutates a task's lists; snapshots
        # copy them): two empty ones per task were ~120 bytes of 1,000,000 tasks.
        own.dependencies = list(dict.fromkeys(deps)) if deps else _NO_DEPS
        own.metadata = dict(task.metadata) if task.metadata else _NO_META
        if task.timeout is not None:
            own.timeout = to_timedelta(task.timeout, field="task.timeout")
        if task.misfire_grace is not None:
            own.misfire_grace = to_timedelta(task.misfire_grace, field="task.misfire_grace")
        return own

    def _own_schedule(self, s: Schedule) -> Schedule:
        """The shared schedule for ``s``, naive datetimes resolved in the scheduler's zone."""
        hit = self._by_id.get(id(s))
        if hit is not None and hit[0] is s:
            return hit[1]  # this very object was seen (every() hands out shared values)
        tz = self.tz
        naive = (s.start_at is not None and s.start_at.tzinfo is None) or any(
            t.tzinfo is None for t in s.times)
        # Schedules are frozen: share the caller's unless a naive datetime needs the zone.
        sched = s if not naive else dataclasses.replace(
            s,
            times=tuple(t if t.tzinfo else t.replace(tzinfo=tz) for t in s.times),
            start_at=s.start_at if s.start_at is None or s.start_at.tzinfo
            else s.start_at.replace(tzinfo=tz),
        )
        shared = self._shared_schedule(sched)
        if len(self._by_id) >= _SHARED_MAX:
            self._by_id.clear()
        self._by_id[id(s)] = (s, shared)  # s is kept alive with it: its id stays unique
        return shared

    def _entry_for(self, task: Task) -> _core.Entry:
        """Validate ``task`` and build its entry, definition included, straight from the
        caller's object: what ``_make_entry(_normalise(task))`` gives, without the
        intermediate copy (add_task is the hot path of bulk loading, issue 7)."""
        if type(task) is not Task and not isinstance(task, Task):
            raise ValueError(f"task: expected a Task, got {task!r}")
        validate_task_fields(task)
        s = task.schedule
        hit = self._by_id.get(id(s))
        sched = hit[1] if hit is not None and hit[0] is s else self._own_schedule(s)
        tid = task.id
        v = task.timeout
        timeout = None if v is None else to_timedelta(v, field="task.timeout")
        v = task.misfire_grace
        grace = None if v is None else to_timedelta(v, field="task.misfire_grace")
        deps = task.dependencies
        md = task.metadata
        # Positional: half the cost of the keyword call (issue 7, W1); the order is
        # Entry's field order, pinned by tests/core/test_dormant.py.
        return _core.Entry(
            tid, 0, self._timing(sched, tid), int(task.priority), task.retry,
            None if timeout is None else timeout.total_seconds(), task.max_instances,
            tuple(dict.fromkeys(deps)) if deps else (), task.enabled,
            True, False, False, None, None, 0, False, None, 0, None, False, None, 0, 0,
            None, None, None, task.handler,
            _core.definition(
                sched, task.name, task.description, task.enabled, task.priority, timeout,
                grace, task.before_run, task.after_run, task.on_lease_loss),
            dict(md) if md else None, None)

    def _timing(self, s: Schedule, task_id: str) -> Timing:
        if s.type is ScheduleType.CRON:
            return compile_schedule(s, self.tz, task_id)  # hashed fields depend on the id
        # Timings are stateless functions of time: equal schedules share one.
        hit = self._timings.get(id(s))
        if hit is not None and hit[0] is s:
            return hit[1]
        timing = compile_schedule(s, self.tz, task_id)
        if len(self._timings) < _SHARED_MAX:
            self._timings[id(s)] = (s, timing)
        return timing

    def _shared_schedule(self, s: Schedule) -> Schedule:
        """One object per distinct schedule: thousands of tasks built with the same
        ``every(...)`` then hold one Schedule (and one compiled Timing, see _make_entry)
        instead of one each. Keyed with the datetimes' zones too, because equal aware
        datetimes in different zones compare equal but print differently."""
        key = (s, None if s.start_at is None else s.start_at.tzinfo,
               tuple(t.tzinfo for t in s.times) if s.times else ())
        cache = self._schedules
        hit = cache.get(key)
        if hit is not None:
            return hit
        if len(cache) >= _SHARED_MAX:
            cache.clear()
            self._timings.clear()
            self._by_id.clear()
        cache[key] = s
        return s

    def _make_entry(self, task: Task) -> _core.Entry:
        s = task.schedule
        timing = self._timing(s, task.id)
        e = _core.Entry(
            task_id=task.id, seq=0, timing=timing, priority=int(task.priority),
            retry=task.retry,
            timeout=None if task.timeout is None else _secs(task.timeout),
            max_instances=task.max_instances,
            deps=tuple(task.dependencies) if task.dependencies else (), enabled=task.enabled,
        )
        put_definition(e, task)
        return e

    def _check_deps(self, task_id: str, deps: Iterable[str],
                    graph: dict[str, tuple[str, ...]] | None = None) -> None:
        own = tuple(deps)
        if not own:
            return  # no edge out of task_id: no cycle through it (and no O(n) graph copy)
        entries = self.planner.entries

        def deps_of(i: str) -> tuple[str, ...] | None:
            if i == task_id:
                return own
            if graph is not None:
                return graph.get(i)
            e = entries.peek(i)
            return None if e is None else e.deps

        for d in own:
            if d == task_id:
                raise DependencyError(f"task {task_id!r}: depends on itself")
            if deps_of(d) is None:
                raise DependencyError(f"task {task_id!r}: unknown dependency {d!r}")
        # A cycle through task_id: walk from its dependencies back to it.
        stack, seen = list(own), set()
        while stack:
            cur = stack.pop()
            if cur == task_id:
                raise DependencyError(f"task {task_id!r}: dependency cycle through {task_id!r}")
            if cur in seen:
                continue
            seen.add(cur)
            stack.extend(deps_of(cur) or ())

    def _resolve(self, task: Task) -> Resolved | None:
        return self._resolve_handler(task.id, task.handler)

    def _resolve_handler(self, task_id: str, h: Any) -> Resolved | None:
        fn = self.handlers.get(task_id)
        if fn is None and isinstance(h, str):
            fn = self.handlers.get(h)
        if fn is None and callable(h):
            fn = h
        if fn is None and isinstance(h, str):
            try:
                fn = import_handler(h)
            except Exception as exc:  # any import-time error makes an orphan, never a crash
                self.orphan_reason[task_id] = f"cannot import handler {h!r}: {error_text(exc)}"
                return None
        if fn is None:
            self.orphan_reason[task_id] = "no handler registered for this task"
            return None
        if self.orphan_reason:
            self.orphan_reason.pop(task_id, None)
        # describe() caches weakly (a weakref per lookup); thousands of tasks sharing one
        # handler hit this strong, bounded cache instead.
        hit = self._described.get(id(fn))
        if hit is not None and hit[0] is fn:
            return hit[1]
        res = describe(fn)
        if len(self._described) < _SHARED_MAX:
            self._described[id(fn)] = (fn, res)
        return res

    def _handler_ref(self, task: Task | _core.Entry) -> str | None:
        h = task.handler
        if isinstance(h, str):
            return h
        return import_ref(h) if callable(h) else None

    # ----- snapshots ----------------------------------------------------------------
    def snapshot(self, task_id: str, *, nominal: bool = False) -> Task:
        return self._dated(*self._snapshot_parts(task_id, nominal))

    def _snapshot_parts(self, task_id: str,
                        nominal: bool) -> tuple[Task, float | None, float | None]:
        """Under the lock: a snapshot without its datetimes (last run, next run), which
        ``_dated`` adds and may add outside the lock (the store writer does, issue 7 W7)."""
        e = self.planner.entries.peek(task_id)
        assert e is not None
        if task_id in self.orphan_reason and not e.runnable:
            state = TaskState.ORPHANED
        elif e.running:
            state = TaskState.RUNNING
        elif e.finished:
            state = TaskState.FINISHED
        elif not e.enabled:
            state = TaskState.DISABLED
        else:
            state = TaskState.SCHEDULED
        nxt = e.next_nominal if nominal or e.next_due is None else e.next_due
        if not e.enabled:
            nxt = None
        snap = task_of(e)
        snap.enabled = e.enabled
        snap.run_count = e.run_count
        snap.error_count = e.error_count
        snap.last_error = e.last_error
        snap.last_status = e.last_status
        snap.state = state
        return snap, e.last_run, nxt

    def _dated(self, snap: Task, last_run: float | None, nxt: float | None) -> Task:
        snap.last_run = None if last_run is None else to_dt(last_run, self.tz)
        snap.next_run = None if nxt is None else self._next_dt(nxt)
        return snap

    def _next_dt(self, ts: float) -> datetime:
        """``to_dt(ts)``, remembering the last one: tasks added in bulk mostly share their
        first run, and a datetime is immutable, so they can share it too (issue 7, W1)."""
        last = self._last_next
        if last[0] == ts and last[1] is self.tz:
            dt: datetime = last[2]
            return dt
        dt = to_dt(ts, self.tz)
        self._last_next = (ts, self.tz, dt)  # one tuple assignment: safe across threads
        return dt

    def _added_snapshot(self, e: _core.Entry) -> Task:
        """Under the lock: the snapshot add_task returns, for a new entry. What
        ``snapshot`` gives (state scheduled, no runs yet), without its generic checks."""
        if not e.enabled or not e.runnable or e.finished or e.running:
            return self.snapshot(e.task_id)
        snap = task_of(e)  # state SCHEDULED, counters 0, last_run None: a new task's
        nxt = e.next_due
        if nxt is not None:
            snap.next_run = self._next_dt(nxt)
        return snap

    def task_dict(self, task_id: str) -> TaskDict:
        raw = self.raw.get(task_id)
        if raw is not None:
            return raw
        return self._to_dict(self._snapshot_parts(task_id, True))

    def _to_dict(self, parts: tuple[Task, float | None, float | None]) -> TaskDict:
        """A stored task dict from ``_snapshot_parts``; needs no lock (the parts are copies)."""
        from ._serde import task_to_dict

        snap = self._dated(*parts)
        return task_to_dict(snap, handler_ref=self._handler_ref(snap))

    # ----- store --------------------------------------------------------------------
    def attach_store(self, store: TaskStore) -> None:
        """Attach a store and load what it holds (StoreError if it cannot be read)."""
        for name in ("load_tasks", "upsert_task", "delete_task", "replace_tasks",
                     "record_run", "get_history"):
            if not callable(getattr(store, name, None)):
                raise ValueError(f"store: {store!r} has no {name}() (not a TaskStore)")
        with self.store_lock:
            dicts = store.load_tasks()
            with self.lock:
                self.store = store
                self._load_dicts(dicts)
        self._poke()

    def load_from_store(self) -> int:
        """``load_tasks()``: add stored tasks not known yet; returns how many the store holds."""
        store = self.store
        if store is None:
            return 0
        with self.store_lock:
            dicts = store.load_tasks()
            with self.lock:
                self._load_dicts(dicts)
        self._poke()
        return len(dicts)

    def _load_dicts(self, dicts: list[TaskDict]) -> int:
        from ._serde import state_from_dict, task_from_dict

        now = self.now()
        parsed: list[tuple[Task, TaskDict]] = []
        for d in dicts:
            task = task_from_dict(d)
            try:
                task = self._normalise(task)
            except (ValueError, SchedulerError) as exc:
                raise StoreError(f"stored task {task.id!r}: {exc}") from None
            parsed.append((task, d))
        graph = {e.task_id: e.deps for e in self.planner.entries.peek_values()}
        graph.update({t.id: tuple(t.dependencies) for t, _ in parsed})
        for t, _ in parsed:
            try:
                self._check_deps(t.id, t.dependencies, graph)
            except DependencyError as exc:
                raise StoreError(f"stored tasks: {exc}") from None
        n = 0
        for task, d in parsed:
            if task.id in self.planner.entries:
                continue  # already defined in this process; its definition wins
            st = state_from_dict(d)
            e = self._make_entry(task)
            e.run_count, e.error_count = st["run_count"], st["error_count"]
            e.last_error, e.last_status = st["last_error"], st["last_status"]
            e.last_exec_status = st["last_status"] if st["last_status"] not in (
                RunStatus.SKIPPED, RunStatus.MISSED) else None
            e.last_run = None if st["last_run"] is None else st["last_run"].timestamp()
            nxt = st["next_run"]
            stored_next = None if nxt is None else to_ts(nxt, self.tz)
            if task.enabled and stored_next is None and not e.timing.finite:
                stored_next = e.timing.first(now)
            finished = not task.enabled and task.schedule.type == "once" and e.run_count > 0
            resolved = self._resolve(task)
            e.runnable = resolved is not None
            e.res = resolved  # Engine.resolved reads it (a new entry: not in the table yet)
            if resolved is None:
                self.raw[task.id] = d
                self.logger.warning("task %r is orphaned: %s", task.id,
                                    self.orphan_reason.get(task.id))
            self.planner.add(e, now, next_nominal=stored_next, fresh=False)
            e.finished = finished
            self.adoptable.add(task.id)
            n += 1
        return n

    def _write(self, fn: Callable[[TaskStore], None]) -> None:
        store = self.store
        if store is not None:
            fn(store)

    # ----- API: tasks ---------------------------------------------------------------
    def add_task(self, task: Task) -> Task:
        snap = self._add_alike(task)
        if snap is not None:
            return snap
        entry = self._entry_for(task)
        tid = entry.task_id
        if self.store is None:
            # No store: nothing to order against store writes, so skip store_lock (re-checked
            # under the lock, since attach_store sets the store while holding both).
            with self.lock:
                if self.store is None:
                    if self._insert(entry)[0] is None:
                        snap = self._added_snapshot(entry)
                        self._remember_alike(task, tid, snap)
                    else:
                        snap = self.snapshot(tid)
                    wake = self.planner.wake_needed
                else:
                    wake = None
            if wake is not None:
                if wake:
                    self.wake()
                if self.bus.subs:
                    self.publish(EventType.TASK_ADDED, task_id=tid)
                return snap
        with self.store_lock:
            with self.lock:
                old, now = self._insert(entry)
                d = self.task_dict(tid) if self.store else None
                snap = self.snapshot(tid)
            try:
                if d is not None:
                    self._write(lambda s: s.upsert_task(d, self.dt(now)))  # type: ignore[arg-type]
            except StoreError:
                if old is None:
                    with self.lock:
                        self._drop(tid, now)
                raise
        self._poke()
        self.publish(EventType.TASK_ADDED, task_id=tid)
        return snap

    # Tasks added in bulk are alike: the same schedule object (every() hands out one per
    # distinct value), handler and options, only the id differs. After a task is added
    # the general way and stored dormant, the next one whose fields are the very same
    # objects skips validating them again, building an entry, and the snapshot's
    # generic checks: it goes in as a dormant record of the same kind, and its snapshot
    # is a copy of the first one's (issue 7, W1: ~2.5x faster per add).
    @staticmethod
    def _plain(task: Task) -> bool:
        """No dependencies, metadata, timeout, grace or hooks: what an alike add needs."""
        return not (task.timeout is not None or task.misfire_grace is not None
                    or task.before_run is not None or task.after_run is not None
                    or task.dependencies or task.metadata
                    or type(task.dependencies) is not list or type(task.metadata) is not dict)

    def _remember_alike(self, task: Task, tid: str, snap: Task) -> None:
        """Under the lock, after ``task`` was added the general way as ``tid``."""
        kind = self.planner.entries.kind_of(tid)
        h = task.handler
        if kind is None or not callable(h) or isinstance(h, str) or not self._plain(task):
            return
        template = clone_task(snap)
        template.next_run = None
        self._alike = (task.schedule, h, task.name, task.description, task.enabled,
                       task.priority, task.retry, task.max_instances, task.on_lease_loss,
                       kind, template)

    def _add_alike(self, task: Task) -> Task | None:
        """``add_task`` for a task alike the last one remembered; None: not alike (or
        anything unusual, such as a bad id or a store), take the general way."""
        m = self._alike
        if m is None or type(task) is not Task:
            return None
        (sched, h, name, description, enabled, priority, retry, max_instances,
         on_lease_loss, kind, template) = m
        # (the last four lines are _plain(task), inline: a call is ~3 % of an add)
        if (task.schedule is not sched or task.handler is not h or task.name is not name
                or task.description is not description or task.enabled is not enabled
                or task.priority is not priority or task.retry is not retry
                or task.max_instances is not max_instances
                or task.on_lease_loss is not on_lease_loss
                or task.timeout is not None or task.misfire_grace is not None
                or task.before_run is not None or task.after_run is not None
                or task.dependencies or task.metadata
                or type(task.dependencies) is not list or type(task.metadata) is not dict):
            return None
        tid = task.id
        if type(tid) is not str or not _ID_OK(tid):
            return None  # the general way says what is wrong with it
        planner = self.planner
        with self.lock:
            if (self.store is not None or tid in planner.entries or tid in self.handlers
                    or self._alike is not m):
                return None  # a duplicate, a handler registered for the id…
            if self.orphan_reason:
                self.orphan_reason.pop(tid, None)
            due = planner.add_alike(tid, kind, self.clock.time())
            wake = planner.wake_needed
        snap = clone_task(template)
        snap.id = tid
        snap.dependencies = []
        snap.metadata = {}
        if due is not None:
            last = self._last_next  # _next_dt's memo, read inline (most adds hit it)
            snap.next_run = last[2] if last[0] == due and last[1] is self.tz else (
                self._next_dt(due))
        if wake:
            self.wake()
        if self.bus.subs:
            self.publish(EventType.TASK_ADDED, task_id=tid)
        return snap

    def _insert(self, entry: _core.Entry) -> tuple[_core.Entry | None, float]:
        """Under the lock: check and plan a new entry; returns (replaced entry, now)."""
        now = self.now()
        tid = entry.task_id
        entries = self.planner.entries
        old = entries.get(tid) if tid in entries else None
        if old is not None and tid not in self.adoptable:
            raise DuplicateTaskError(tid)
        if entry.deps:
            self._check_deps(tid, entry.deps)
        resolved = self._resolve_handler(tid, entry.handler)
        if resolved is None and entry.handler is None:
            raise ValueError(f"task.handler: task {tid!r} has no handler "
                             "(pass handler= or register_handler first)")
        entry.runnable = resolved is not None
        entry.res = resolved  # Engine.resolved reads it
        if old is not None:
            self._set_resolved(tid, resolved)
            # Defined in code after being loaded from the store: the code's
            # definition, the store's runtime state.
            self.adoptable.discard(tid)
            self.raw.pop(tid, None)
            self.planner.replace(old, entry, now, replan=old.schedule != entry.schedule)
        else:
            self.planner.add(entry, now, dormant=True)  # add_task only reads it after
        return old, now

    def _set_resolved(self, task_id: str, resolved: Resolved | None) -> None:
        if resolved is None:
            self.resolved.pop(task_id, None)
        else:
            self.resolved[task_id] = resolved

    def _drop(self, task_id: str, now: float) -> list[_core.Done]:
        dones = self.planner.remove(task_id, now)
        self.tasks.pop(task_id, None)
        self.resolved.pop(task_id, None)
        self.raw.pop(task_id, None)
        self.adoptable.discard(task_id)
        self.orphan_reason.pop(task_id, None)
        return dones

    def remove_task(self, task_id: str) -> None:
        with self.store_lock:
            with self.lock:
                self._entry(task_id)
                users = sorted(self.planner.dependents.get(task_id, ()))
                if users:
                    raise DependencyError(
                        f"task {task_id!r}: cannot remove, {', '.join(map(repr, users))} "
                        "depend on it")
                now = self.now()
                dones = self._drop(task_id, now)
            self._write(lambda s: s.delete_task(task_id, self.dt(now)))  # type: ignore[arg-type]
        self._finish_all(dones)
        self.publish(EventType.TASK_REMOVED, task_id=task_id)

    def set_enabled(self, task_id: str, enabled: bool) -> Task:
        with self.store_lock:
            with self.lock:
                e = self._entry(task_id)
                changed = e.enabled != enabled
                now = self.now()
                dones = self.planner.set_enabled(task_id, enabled, now)
                if changed:
                    self.raw.pop(task_id, None)
                    e.def_enabled = enabled
                d = self.task_dict(task_id) if self.store and changed else None
                snap = self.snapshot(task_id)
            if d is not None:
                self._write(lambda s: s.upsert_task(d, self.dt(now)))  # type: ignore[arg-type]
        self._poke()
        self._finish_all(dones)
        if changed:
            self.publish(EventType.TASK_ENABLED if enabled else EventType.TASK_DISABLED,
                         task_id=task_id)
        return snap

    def update_task(self, task_id: str, fields: dict[str, Any]) -> Task:
        bad = sorted(set(fields) - UPDATABLE)
        if bad:
            raise ValueError(f"update_task: cannot change {', '.join(bad)} "
                             f"(updatable: {', '.join(sorted(UPDATABLE))})")
        with self.store_lock:
            with self.lock:
                old = self._entry(task_id)
                prev = self.tasks[task_id]
                own = self._normalise(dataclasses.replace(prev, **fields))
                self._check_deps(task_id, own.dependencies)
                entry = self._make_entry(own)
                resolved = self._resolve(own)
                now = self.now()
                was_enabled = old.enabled
                self.raw.pop(task_id, None)
                self._set_resolved(task_id, resolved)
                entry.runnable = resolved is not None
                entry.res = resolved
                self.planner.replace(old, entry, now, replan=prev.schedule != own.schedule)
                d = self.task_dict(task_id) if self.store else None
                snap = self.snapshot(task_id)
            if d is not None:
                self._write(lambda s: s.upsert_task(d, self.dt(now)))  # type: ignore[arg-type]
        self._poke()
        self.publish(EventType.TASK_UPDATED, task_id=task_id)
        if own.enabled != was_enabled:
            self.publish(EventType.TASK_ENABLED if own.enabled else EventType.TASK_DISABLED,
                         task_id=task_id)
        return snap

    def run_now(self, task_id: str) -> None:
        with self.lock:
            self._entry(task_id)
            self.planner.run_now(task_id, self.now())
        self._poke()

    def register_handler(self, key: str, fn: Callable[..., Any]) -> None:
        if not isinstance(key, str) or not key:
            raise ValueError(f"register_handler: key must be a non-empty string, got {key!r}")
        if not callable(fn):
            raise ValueError(f"register_handler: handler for {key!r} is not callable: {fn!r}")
        with self.lock:
            self.handlers[key] = fn
            users = [t for t in self.planner.entries.peek_values()
                     if t.task_id == key or t.handler == key]
            for t in users:
                tid = t.task_id
                resolved = self._resolve(task_of(t))
                self._set_resolved(tid, resolved)
                if resolved is not None:
                    # Adopted: from now on its state is written like any task's (the
                    # stored dict was only kept verbatim while nothing could run it).
                    self.raw.pop(tid, None)
                    self.planner.set_runnable(tid, True)
        self._poke()

    def get_task(self, task_id: str) -> Task:
        with self.lock:
            if task_id not in self.planner.entries:
                raise TaskNotFoundError(task_id)
            return self.snapshot(task_id)

    def list_tasks(self) -> list[Task]:
        with self.lock:
            return [self.snapshot(i) for i in sorted(self.planner.entries)]

    def get_stats(self) -> dict[str, int]:
        with self.lock:
            p = self.planner
            return {
                "total_tasks": len(p.entries),
                "enabled_tasks": p.enabled_count,
                "running_tasks": p.running_tasks,
                **self.stats,
                "orphaned_tasks": p.entries.count_unrunnable(),
                "queued_runs": len(p.ready),
            }

    def get_history(self, task_id: str | None = None, limit: int = 100) -> list[RunRecord]:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
            raise ValueError(f"limit: expected an int >= 0, got {limit!r}")
        if limit == 0:
            return []
        store = self.store
        if store is not None:
            return store.get_history(task_id, limit)
        with self.lock:
            out = []
            for r in reversed(self.history):
                if type(r) is RunRecord:
                    if task_id is None or r.task_id == task_id:
                        out.append(r)
                elif task_id is None or r.entry.task_id == task_id:
                    out.append(self._run_record(r, r.finished_at))
                else:
                    continue
                if len(out) >= limit:
                    break
            return out

    def set_default_retry(self, **kw: Any) -> None:
        with self.lock:
            self.planner.default_retry = dataclasses.replace(self.planner.default_retry, **kw)

    def save_tasks(self) -> None:
        if self.store is None:
            raise SchedulerError("save_tasks: no store attached (use set_persistence)")
        with self.store_lock:
            with self.lock:
                now = self.now()
                dicts = [self.task_dict(i) for i in self.planner.entries]
            self._write(lambda s: s.replace_tasks(dicts, self.dt(now)))  # type: ignore[arg-type]

    def subscribe(self, callback: Callback,
                  events: Iterable[EventType | str] | None = None) -> Callable[[], None]:
        return self.bus.subscribe(callback, events)

    # ----- the runner's side ----------------------------------------------------------
    def next_wakeup(self) -> float | None:
        with self.lock:
            p = self.planner
            if p.ready and self.busy < self.max_workers:
                return self.now()
            t = p.next_wakeup()
            p.armed_until = t
            return t

    def tick(self) -> tuple[list[_core.Run], list[Callable[[], None]]]:
        """Collect due work. Returns runs to execute and follow-ups to run outside the lock."""
        later: list[Callable[[], None]] = []
        with self.lock:
            if self.stopping:
                return [], later
            starts = self._start_due(self.now(), self.max_workers - self.busy, later)
            # The timer thread computes its next wake-up after this: what was armed is seen.
            self.planner.wake_needed = False
        return starts, later

    def tick_plan(self) -> tuple[list[_core.Run], list[Callable[[], None]], float | None]:
        """``tick`` and ``next_wakeup`` in one lock round, for the timer thread of a
        plain engine (issue 7, W3): runs to execute, follow-ups, and when to look again
        (None: nothing planned). A change made after it (by a follow-up too) wakes
        the timer as usual."""
        later: list[Callable[[], None]] = []
        with self.lock:
            if self.stopping:
                return [], later, None
            now = self.now()
            # Ramp-up: the timer thread starts one run per tick. While a burst is under
            # way (within RAMP, a run expected to be short was started with more ready
            # behind it, or a worker took one of them itself) it waits: the worker will
            # take the next ready run when its own ends, in priority order, and a burst
            # of 5,000 short runs goes through one or two warm threads instead of 32
            # contending for the GIL (issue 7, W2). Runs not known to be short (a task
            # new to this scheduler) get one more worker per RAMP; runs known to be
            # long (their last attempt took RAMP or more) mark no progress, so the
            # ready runs behind them start at once on other workers; a lone due run is
            # never held by handlers already running.
            # What falls due from the watched time on is left to a watcher that is
            # waiting (not in a handler) until the backstop: its wake-up is often a
            # little late, and a timer thread that woke meanwhile (for an earlier
            # backstop) and took the run cost two wake-ups more, its own hand-off and
            # the watcher's revoked one: one run in eight in W3 (issue 7). A watcher in
            # a handler is taken over as soon as the watched time has passed.
            w = self.watch_at
            watched, upto = False, None
            if w is not None and now < w + WATCH_BACKSTOP and not (
                    self.watch_busy and w <= now):
                watched = True
                if w <= now:
                    upto = _before(w)
            starts = self._start_paced(now, later, upto)
            p = self.planner
            p.wake_needed = False
            if p.ready and self.busy < self.max_workers:
                t = self.hold_until if self.busy else now
                self.timer_deadline = t
                return starts, later, t
            nxt = p.armed_until = p.next_wakeup()
            if w is not None:
                if not watched:
                    # The backstop: the watched time has passed with the watcher in a
                    # handler, or is WATCH_BACKSTOP past, and this tick collected what
                    # was due: take over.
                    self.watch_at = None
                    self.watch_seq += 1
                elif nxt is not None and nxt >= w:
                    nxt = w + WATCH_BACKSTOP  # a worker ticks at w; this is the backstop
            self.timer_deadline = float("inf") if nxt is None else nxt
        return starts, later, nxt

    def _start_paced(self, now: float, later: list[Callable[[], None]],
                     upto: float | None = None) -> list[_core.Run]:
        """Under the lock: at most one due run, unless a burst is held (see tick_plan)."""
        held = self.busy > 0 and now < self.hold_until
        free = 0 if held else min(1, self.max_workers - self.busy)
        starts = self._start_due(now, free, later, upto)
        if starts and not starts[0].handler.is_async and self.planner.ready:
            # (async handlers share the event loop, not threads: no reason to pace)
            self._hold(now, starts[0])
        return starts

    def claim_watch(self) -> tuple[int, float] | None:
        """On a worker whose run ended with nothing ready: become the watcher of the next
        due time if it is near and unwatched. Returns (claim number, time) or None."""
        with self.lock:
            return self._claim_near()

    def _claim_near(self) -> tuple[int, float] | None:
        if not self.watch or self.watch_at is not None or self.stopping:
            return None
        p = self.planner
        if p.ready:
            return None
        t = p.next_wakeup()
        if t is None or t - self.now() > WATCH_HORIZON:
            return None
        return self._claim(t)

    def _claim(self, t: float) -> tuple[int, float]:
        """Under the lock: a worker watches ``t``, the earliest timer. Anything armed
        earlier from now on wakes the timer thread (armed_until)."""
        self.watch_at = t
        self.watch_seq += 1
        self.watch_busy = False
        p = self.planner
        p.armed_until = min(t, self.timer_deadline)
        p.wake_needed = False  # t is the earliest timer: the claim covers them all
        return self.watch_seq, t

    def watch_tick(self, seq: int) -> tuple[_core.Run | None, list[_core.Run],
                                           list[Callable[[], None]], tuple[int, float] | None]:
        """The watcher's tick at its watched time (real clock, plain engine).

        Why: with a timer thread that hands each run to a worker, a run costs two thread
        wake-ups; a worker that waits for the due time itself and runs what falls due
        costs one (issue 7, W3: ~25 % less CPU per run). Returns (run to execute itself,
        runs to hand to the pool, follow-ups, the claim it keeps or None).

        The watcher keeps watching the next due time while it runs its handler only if
        that task's recent attempts (``Entry.took``) took less than half the time until
        then; otherwise (or
        with no figure yet) the timer thread watches it. A watcher that overstays anyway
        (a handler slower than before) is covered by the timer's backstop, at most
        WATCH_BACKSTOP later (tick_plan). Ramp-up and priority order are as in tick_plan.
        """
        later: list[Callable[[], None]] = []
        with self.lock:
            if self.watch_seq != seq or self.watch_at is None:
                return None, [], later, None  # revoked: the timer took over
            self.watch_at = None
            if self.stopping:
                return None, [], later, None
            now = self.clock.time()
            p = self.planner
            # The steady case first (Planner.start_lone: one task due on time, nothing
            # ready), unless a burst is held or the pool is full (as _start_paced).
            lone = None
            if self.busy < self.max_workers and (self.busy == 0 or now >= self.hold_until):
                lone = p.start_lone(now, now)
            if lone is None:
                starts = self._start_paced(now, later)
            else:
                starts = [lone] if self._admit(lone, now, later) else []
            mine: _core.Run | None = None
            if starts and not starts[0].handler.is_async:
                mine = starts.pop(0)
            t = None if p.ready else p.next_wakeup()
            claim = None
            if t is not None and t - now <= WATCH_HORIZON and (
                    mine is None or 0.0 <= mine.entry.took < (t - now) / 2):
                claim = self._claim(t)
                self.watch_busy = mine is not None
                wake = False
            else:
                p.armed_until = self.timer_deadline
                wake = bool(p.ready) or (t is not None and t < self.timer_deadline)
        if wake:
            self.wake()
        return mine, starts, later, claim

    def slot_free_take(self) -> tuple[_core.Run | None, list[Callable[[], None]]]:
        """On a worker whose run ended: free its slot and take the next ready run, if any.

        The worker runs it itself instead of waking the timer thread to hand it over:
        a burst of due runs then flows through the pool without a thread hand-off per run
        (issue 7, W2). Priority order is kept: the run comes from the same ready heap,
        one at a time. Returns (run or None, follow-ups to run outside the lock).
        """
        later: list[Callable[[], None]] = []
        with self.lock:
            now = self._last_end_at = self.now()
            self._last_ender = get_ident()
            self.busy -= 1
            nxt = self._take(now, later)
            if nxt is not None:
                self._hold(now, nxt)
            wake = self.planner.wake_needed
        if wake:
            self.wake()
        return nxt, later

    def finish_take(self, run: _core.Run, token: int, error: str | None,
                    result: Any) -> tuple[_core.Run | None, list[Callable[[], None]]]:
        """``attempt_done`` and ``slot_free_take`` in one locked step, for a worker that
        runs the next ready run itself: one lock round per run instead of two (issue 7,
        W2/W3). The follow-ups of the ended attempt are returned with the run's."""
        later: list[Callable[[], None]] = []
        with self.lock:
            nxt = self._finish_take(run, token, error, result, later)
            wake = self.planner.wake_needed
        if wake:
            self.wake()
        return nxt, later

    def finish_watch(self, run: _core.Run, token: int, error: str | None, result: Any,
                     watching: tuple[int, float] | None
                     ) -> tuple[_core.Run | None, list[Callable[[], None]],
                                tuple[int, float] | None]:
        """``finish_take`` for a watching runner: with no next run, and unless the worker
        is ``watching`` (the claim it kept through the run), it claims the watch
        (``claim_watch``) in the same lock round. Returns (next run, follow-ups, new
        claim or None)."""
        later: list[Callable[[], None]] = []
        claim = None
        with self.lock:
            nxt = self._finish_take(run, token, error, result, later)
            if watching is not None and watching[0] == self.watch_seq:
                # Still the watcher: in a handler again only if it runs ``nxt`` itself
                # (an async one goes to the event loop).
                self.watch_busy = nxt is not None and not nxt.handler.is_async
            if nxt is None and watching is None:
                claim = self._claim_near()
            wake = self.planner.wake_needed
        if wake:
            self.wake()
        return nxt, later, claim

    def _finish_take(self, run: _core.Run, token: int, error: str | None, result: Any,
                     later: list[Callable[[], None]]) -> _core.Run | None:
        now = self._end_attempt(run, token, error, result, later)
        self.busy -= 1
        # How long this task's attempts take, for watching and holding: the longest
        # recent one (a slow attempt counts until 0.9^n of it is below the newer
        # ones), so that a task that is sometimes slow is not trusted to be short.
        e, took = run.entry, now - run.attempt_started
        decayed = e.took * TOOK_DECAY
        e.took = took if took > decayed else decayed
        if self.ramp_up:
            # Another worker that ended a run within RAMP is getting through the
            # ready runs: two taking turns were 35 % slower than one under the GIL
            # (W2), so this one goes idle (the timer is woken to keep watch).
            me = get_ident()
            last_ender = self._last_ender
            self._last_ender, self._last_end_at, last_end = me, now, self._last_end_at
            if not self.planner.ready:  # nothing to take (W3's usual end of a run)
                self.hold_until = float("-inf")
                return None
            if self.busy > 0 and last_ender != me and now - last_end < RAMP:
                self.planner.wake_needed = True
                return None
            nxt = self._take(now, later)
            if nxt is None or not self._hold(now, nxt):
                # This worker takes nothing, or a run known to be long: the timer thread
                # must not wait for it to take the ready runs.
                self.hold_until = float("-inf")
                if self.planner.ready:
                    self.planner.wake_needed = True
            return nxt
        return self._take(now, later)

    def _hold(self, now: float, run: _core.Run) -> bool:
        """Under the lock: ``run`` starts with ready runs behind it; the worker running it
        will take the next one when it ends, so the timer thread holds them until then
        (tick_plan): RAMP for a task new to this scheduler, ~4x its recent attempts'
        time (``Entry.took``) for a short one (HOLD_MIN..RAMP), not at all for a long
        one. False: no hold."""
        took = run.entry.took
        if took >= RAMP:
            return False
        self.hold_until = now + (RAMP if took < 0 else min(RAMP, max(HOLD_MIN, 4 * took)))
        return True

    def _take(self, now: float, later: list[Callable[[], None]]) -> _core.Run | None:
        if self.stopping or not self.planner.ready:
            return None
        starts = self._start_due(now, 1, later)
        return starts[0] if starts else None

    def _start_due(self, now: float, free: int, later: list[Callable[[], None]],
                   upto: float | None = None) -> list[_core.Run]:
        """Under the lock: the planner's decisions at ``now`` (timers due up to ``upto``,
        see Planner.collect), runs to start counted busy."""
        decisions = self.planner.collect(now, free, upto)
        starts: list[_core.Run] = []
        for d in decisions:
            if type(d) is _core.Run:
                if self._admit(d, now, later):
                    starts.append(d)
            elif isinstance(d, _core.Timeout):
                later.extend(self._timeout(d.run, now))
            else:
                assert isinstance(d, _core.Occurrence)
                later.append(self._occurrence(d, now))
        return starts

    def _admit(self, run: _core.Run, now: float, later: list[Callable[[], None]]) -> bool:
        """Under the lock: a run the planner started gets its handler and context and
        counts busy; False: its handler vanished, it ended as failed (never a crash)."""
        res = run.entry.res or self.resolved.get(run.entry.task_id)
        if res is None:
            out = self.planner.attempt_finished(
                run, run.token, now, error="LookupError: no handler", stopping=True)
            if isinstance(out, _core.Done):
                later.append(self._finalizer(out.run))
            return False
        run.handler = res
        # (_context's call inline: once per run, issue 7)
        run.ctx = run_context(run.entry.task_id, run.run_id, run.attempt, self.clock, self.tz,
                              run.scheduled_for, now, run.deadline, self.logger)
        self.busy += 1
        return True

    def _context(self, run: _core.Run, now: float) -> TaskContext:
        return run_context(run.entry.task_id, run.run_id, run.attempt, self.clock, self.tz,
                           run.scheduled_for, now, run.deadline, self.logger)

    def _timeout(self, run: _core.Run, now: float) -> list[Callable[[], None]]:
        if run.ctx is not None:
            run.ctx.cancel()
        fut = run.future
        if fut is not None:
            fut.cancel()
        limit = run.entry.timeout or 0.0
        out = self.planner.attempt_finished(
            run, run.token, now, error=f"TimeoutError: attempt timed out after {limit:g}s",
            timed_out=True, stopping=self.stopping)
        return self._after_outcome(out)

    def _after_outcome(self, out: _core.Outcome | None) -> list[Callable[[], None]]:
        if out is None:
            return []
        if isinstance(out, _core.Retrying):
            self.stats["total_retries"] += 1
            run = out.run
            ev = run.last_error
            return [lambda: self.publish(EventType.RUN_RETRYING, task_id=run.entry.task_id,
                                         run_id=run.run_id, attempt=run.attempt + 1, error=ev)]
        return [self._finalizer(out.run)]

    def _occurrence(self, occ: _core.Occurrence, now: float) -> Callable[[], None]:
        e = occ.entry
        self.planner.record_occurrence(occ)
        key = "total_skipped" if occ.status is RunStatus.SKIPPED else "total_missed"
        self.stats[key] += 1
        rec = RunRecord(
            run_id=self.planner._new_run_id(), task_id=e.task_id,
            scheduled_for=to_dt(occ.scheduled_for, self.tz), started_at=None,
            finished_at=to_dt(now, self.tz), status=occ.status, attempts=0,
            error=occ.reason, instance_id=self.instance_id,
        )
        self.history.append(rec)
        d = self.task_dict(e.task_id) if self.store and not e.removed else None

        def follow_up() -> None:
            self._store_record(d, rec, now)
            self.publish(_TERMINAL_EVENT[occ.status], task_id=e.task_id, run_id=rec.run_id,
                         error=occ.reason, record=rec)

        return follow_up

    def _store_record(self, d: TaskDict | None, rec: RunRecord, now: float) -> None:
        store = self.store
        if store is None:
            return
        try:
            with self.store_lock:
                store.record_run(d, rec, to_dt(now, self.tz))
        except Exception:
            self.logger.exception("could not record run %s of task %r", rec.run_id, rec.task_id)

    # ----- executing ----------------------------------------------------------------
    def before_attempt(self, run: _core.Run) -> None:
        """On the worker, before the handler: run_started and before_run, once per run."""
        if run.attempt != 1:
            return
        tid = run.entry.task_id
        if self.bus.subs:  # checked here: the keyword call costs even when no one listens
            self.publish(EventType.RUN_STARTED, task_id=tid, run_id=run.run_id, attempt=1)
        hook = run.entry.defn[DEFN_BEFORE_RUN]
        if hook is not None:
            try:
                hook(run.ctx)
            except Exception:
                self.logger.exception("before_run hook of task %r failed", tid)

    def _end_attempt(self, run: _core.Run, token: int, error: str | None, result: Any,
                     later: list[Callable[[], None]]) -> float:
        """Under the lock: record an attempt's end, its follow-ups added to ``later``;
        returns now."""
        now = self.clock.time()
        if error is None and token == run.token:
            if result is not None:
                run.result = keep_result(result)
            # The steady case (Planner.end_ok) when nothing outside the lock must happen
            # first, as in _finish_inline: one frame instead of five (issue 7, W3).
            if (self.store is None and not self.bus.subs
                    and run.entry.defn[DEFN_AFTER_RUN] is None
                    and self.planner.end_ok(run, now)):
                self._keep(run)
                return now
        out = self.planner.attempt_finished(run, token, now, error=error,
                                            stopping=self.stopping)
        done = out.run if type(out) is _core.Done else None
        if done is None or not (self._finish_inline(done, now) or self._queue_write(done)):
            later.extend(self._after_outcome(out))
        return now

    def attempt_done(self, run: _core.Run, token: int, error: str | None, result: Any) -> None:
        """On the worker, after the handler returned or raised."""
        later: list[Callable[[], None]] = []
        with self.lock:
            self._end_attempt(run, token, error, result, later)
        for fn in later:
            fn()
        self._poke()

    def _queue_write(self, run: _core.Run) -> bool:
        """Under the lock: hand a finished run to the store writer (group commit).

        The worker returns at once instead of waiting for a transaction; the writer
        thread writes every run queued meanwhile in one ``record_runs`` call and only
        then releases them, so a task's next execution still starts only after the
        previous one's state and record are durable (API 4.7). Runs whose task has an
        after_run hook keep the direct path (the hook runs before the write).
        """
        if self.store is None:
            return False
        if run.entry.defn[DEFN_AFTER_RUN] is not None:
            return False
        self.stats["total_runs"] += 1
        if run.status is not RunStatus.SUCCEEDED:
            self.stats["total_errors"] += 1
        # the record's datetimes are built by the writer, outside the lock: the run's
        # fields do not change until the writer releases it
        with self._wcond:
            first = not self._wqueue
            self._wqueue.append((run, run.finished_at or self.now()))
            if self._store_writer is None:
                self._store_writer = threading.Thread(target=self._write_loop,
                                                name="tickwork-store-writer", daemon=True)
                self._store_writer.start()
            elif first:  # the writer waits only for a first run (see _write_loop's linger)
                self._wcond.notify()
        return True

    def _write_loop(self) -> None:
        """The store writer: batches of finished runs, one ``record_runs`` each.

        One engine-lock round per batch (issue 7, W7): it releases the batch written
        before and takes the tasks' state for the next one; the dicts, records and
        datetimes are built outside the lock. ``store_lock`` is held from that state to
        its write, as the API's own upserts do, so an older dict never overwrites a newer
        one. A run is still released only after its write (API 4.7).
        """
        from .stores.base import RunWrite, record_runs

        written: list[tuple[_core.Run, RunRecord]] = []  # written, not yet released
        while True:
            with self._wcond:
                if not self._linger(written):
                    return
            with self.store_lock:
                with self.lock:
                    if written:
                        now = self.now()
                        for run, rec in written:
                            self.history.append(rec)
                            self.planner.release(run, now)
                    with self._wcond:
                        batch, self._wqueue = self._wqueue, []
                    store = self.store
                    parts = [None if run.entry.removed or run.entry.task_id not in self.tasks
                             else self.raw.get(run.entry.task_id)
                             or self._snapshot_parts(run.entry.task_id, True)
                             for run, _ in batch] if store is not None else []
                released, written = written, []
                if released:
                    self._poke()
                if batch:
                    written = [(run, self._run_record(run, fin)) for run, fin in batch]
                if store is not None and batch:
                    items: list[RunWrite] = [
                        (p if p is None or isinstance(p, dict) else self._to_dict(p), rec)
                        for p, (_, rec) in zip(parts, written, strict=True)]
                    now_dt = to_dt(max(fin for _, fin in batch), self.tz)
                    try:
                        record_runs(store, items, now_dt)
                    except Exception:
                        self.logger.exception("could not record %d runs (first: %s of task %r)",
                                              len(batch), written[0][1].run_id,
                                              written[0][1].task_id)
            if self.bus.subs:
                for run, rec in released:
                    self.publish(_TERMINAL_EVENT[run.status], task_id=rec.task_id,
                                 run_id=run.run_id, attempt=run.attempt, error=run.last_error,
                                 record=rec)

    def _linger(self, written: list[tuple[_core.Run, RunRecord]]) -> bool:
        """The store writer, holding ``_wcond``: wait for finished runs, then briefly for
        more. False when it was idle long enough to end.

        Linger: a write costs a transaction and an fsync whatever its size; at 2,000 runs/s
        without it the writer wrote 1.5 runs per batch and used ~40 % of a core, competing
        with the timer thread for the GIL (W7). It waits up to WRITER_LINGER (real time)
        unless a waiting run's task is due again by then (its release would be late), or
        the scheduler is stopping. ``next_due`` is read without the engine lock: a stale
        value only changes whether it lingers; runs are still released after their write.
        """
        if not self._wqueue and not written:
            self._wcond.wait(WRITER_IDLE_EXIT)
            if not self._wqueue:
                self._store_writer = None  # idle: the next queued run starts a new one
                return False
        horizon = self.now() + WRITER_LINGER
        for r, _ in itertools.chain(self._wqueue, written):
            e = r.entry
            if e.parked or e.manual_parked or (e.next_due is not None and e.next_due <= horizon):
                return True
        if not self.stopping:
            self._wcond.wait(WRITER_LINGER)
        return True

    def _finish_inline(self, run: _core.Run, now: float) -> bool:
        """Under the lock: end a run in place when nothing outside the lock must happen
        first (no store write, no after_run hook, no subscriber): the general path takes
        the lock twice more and builds the record's datetimes at once (issue 7, W2)."""
        if self.store is not None or self.bus.subs:
            return False
        if run.entry.defn[DEFN_AFTER_RUN] is not None:
            return False
        if run.status is not RunStatus.SUCCEEDED:
            self.stats["total_errors"] += 1
        self._keep(run)
        self.planner.release(run, now)
        return True

    def _keep(self, run: _core.Run) -> None:
        """Under the lock: count an ended run and keep it in the history. The Run itself is
        the history entry (its record is built if the history is read, by _run_record):
        no copy per run (issue 7, W3). It is never changed again; its context is let go."""
        self.stats["total_runs"] += 1
        run.ctx = None
        self.history.append(run)

    def slot_free(self) -> None:
        with self.lock:
            self.busy -= 1
            wake = self.planner.ready
        if wake:
            self.wake()

    def _finalizer(self, run: _core.Run) -> Callable[[], None]:
        """Under the lock: snapshot what the store needs; the rest runs outside it."""
        e = run.entry
        self.stats["total_runs"] += 1
        if run.status is not RunStatus.SUCCEEDED:
            self.stats["total_errors"] += 1
        now = run.finished_at or self.now()
        rec = self._run_record(run, now)
        hook = e.after_run
        ctx = run.ctx

        def finish() -> None:
            if hook is not None and ctx is not None:
                try:
                    hook(ctx, rec)
                except Exception:
                    self.logger.exception("after_run hook of task %r failed", e.task_id)
            with self.lock:
                d = self.task_dict(e.task_id) if self.store and not e.removed else None
            self._store_record(d, rec, now)
            with self.lock:
                self.history.append(rec)
                self.planner.release(run, self.now())
            self._poke()
            self.publish(_TERMINAL_EVENT[run.status], task_id=e.task_id, run_id=run.run_id,
                         attempt=run.attempt, error=run.last_error, record=rec)

        return finish

    def _run_record(self, run: _core.Run, now: float) -> RunRecord:
        tz = self.tz
        return RunRecord(
            run_id=run.run_id, task_id=run.entry.task_id,
            scheduled_for=to_dt(run.scheduled_for, tz), started_at=to_dt(run.started_at, tz),
            finished_at=to_dt(now, tz), status=run.status, attempts=run.attempt,
            error=run.last_error, result=run.result, instance_id=self.instance_id,
            manual=run.manual,
        )

    def _finish_all(self, dones: list[_core.Done]) -> None:
        with self.lock:
            fns = [self._finalizer(d.run) for d in dones]
        for fn in fns:
            fn()

    # ----- stopping -----------------------------------------------------------------
    def begin_stop(self) -> None:
        with self.lock:
            self.stopping = True
            self.watch_at = None  # a watcher leaves (its claim is stale)
            self.watch_seq += 1
            now = self.now()
            dones = self.planner.end_waiting_retries(now)
            for run in self.planner.runs.values():
                if run.active and run.ctx is not None:
                    run.ctx.cancel()
        self._finish_all(dones)

    def active_runs(self) -> int:
        with self.lock:
            return len(self.planner.runs)

    def cancel_remaining(self) -> None:
        with self.lock:
            now = self.now()
            fns = []
            for run in list(self.planner.runs.values()):
                if run.future is not None:
                    run.future.cancel()
                done = self.planner.cancel(run, now, "cancelled: still running when the "
                                           "scheduler stopped")
                fns.append(self._finalizer(done.run))
        for fn in fns:
            fn()

    def final_save(self) -> None:
        if self.store is None:
            return
        try:
            self.save_tasks()
        except StoreError:
            self.logger.exception("could not save tasks on stop")


def put_definition(e: _core.Entry, task: Task) -> None:
    """Keep a normalised task's definition in its entry (see ``Entry.schedule``)."""
    e.handler = task.handler
    e.defn = _core.definition(
        task.schedule, task.name, task.description, task.enabled, task.priority, task.timeout,
        task.misfire_grace, task.before_run, task.after_run, task.on_lease_loss)
    e.metadata = task.metadata or None


_RUNTIME_FIELDS = ("last_run", "next_run", "run_count", "error_count", "last_error",
                   "last_status", "state")
_NEW = object.__new__


def task_of(e: _core.Entry) -> Task:
    """A new Task with the entry's definition (runtime fields at their defaults); its
    lists and dicts are fresh copies, so callers may change them."""
    t: Task = _NEW(Task)
    (t.schedule, t.name, t.description, t.enabled, t.priority, t.timeout, t.misfire_grace,
     t.before_run, t.after_run, t.on_lease_loss) = e.defn
    meta = e.metadata
    t.id = e.task_id
    t.handler = e.handler
    t.dependencies = list(e.deps)
    t.retry = e.retry
    t.max_instances = e.max_instances
    t.metadata = dict(meta) if meta else {}
    t.last_run = t.next_run = t.last_error = t.last_status = None
    t.run_count = t.error_count = 0
    t.state = TaskState.SCHEDULED
    return t


# A Task field added later must be carried by put_definition/task_of: fail at import.
_COVERED = {"id", "schedule", "handler", "name", "description", "enabled", "priority",
            "dependencies", "retry", "timeout", "max_instances", "misfire_grace",
            "before_run", "after_run", "on_lease_loss", "metadata", *_RUNTIME_FIELDS}
if {f.name for f in dataclasses.fields(Task)} != _COVERED:
    raise RuntimeError("tickwork._engine: task_of/put_definition miss a Task field: "
                       f"{sorted({f.name for f in dataclasses.fields(Task)} ^ _COVERED)}")


_V = TypeVar("_V")


class _EntryView(Generic[_V]):
    """Mapping helpers shared by the views below: each keeps one value per task in the
    task's planner entry (not in a dict slot per task), plus values set before the entry
    exists."""

    __slots__ = ("_entries", "_loose")

    def __init__(self, entries: _core.EntryTable) -> None:
        self._entries = entries
        self._loose: dict[str, _V] = {}

    def get(self, task_id: str, default: _V | None = None) -> _V | None:
        raise NotImplementedError

    def __getitem__(self, task_id: str) -> _V:
        v = self.get(task_id)
        if v is None:
            raise KeyError(task_id)
        return v

    def __iter__(self) -> Iterator[str]:
        raise NotImplementedError

    def keys(self) -> list[str]:
        return list(self)

    def items(self) -> list[tuple[str, _V]]:
        return [(i, self[i]) for i in self]

    def values(self) -> list[_V]:
        return [self[i] for i in self]


class TaskTable(_EntryView[Task]):
    """``Engine.tasks``: task id -> Task definition, read from the planner's entries.

    Each read builds a new Task (nobody can change the engine's copy through it).
    Setting a definition stores it in the task's entry; one set before its entry is
    added (the cluster engine sets it, then adds the entry made from the same task) is
    kept aside until then.
    """

    __slots__ = ()

    def get(self, task_id: str, default: Task | None = None) -> Task | None:
        e = self._entries.peek(task_id)
        if e is None or e.schedule is None:
            return self._loose.get(task_id, default)
        return task_of(e)

    def __setitem__(self, task_id: str, task: Task) -> None:
        e = self._entries.get(task_id)
        if e is None:
            self._loose[task_id] = task
        else:
            put_definition(e, task)
            self._loose.pop(task_id, None)

    def pop(self, task_id: str, default: Task | None = None) -> Task | None:
        t = self.get(task_id, default)
        self._loose.pop(task_id, None)
        return t

    def __contains__(self, task_id: object) -> bool:
        return task_id in self._entries or task_id in self._loose

    def __iter__(self) -> Iterator[str]:
        return iter([*self._entries, *(i for i in self._loose if i not in self._entries)])

    def __len__(self) -> int:
        return len(self._entries) + sum(1 for i in self._loose if i not in self._entries)


class ResolvedTable(_EntryView[Resolved]):
    """``Engine.resolved``: task id -> its resolved handler, kept in the task's entry
    (``Entry.res``) rather than in a dict slot per task (issue 7, round 3). A value set
    before its entry exists (the cluster engine resolves, then adds) is kept aside and
    read until the entry has one of its own."""

    __slots__ = ()

    def get(self, task_id: str, default: Resolved | None = None) -> Resolved | None:
        e = self._entries.peek(task_id)
        if e is not None and e.res is not None:
            return e.res  # type: ignore[no-any-return]
        return self._loose.get(task_id, default) if self._loose else default

    def __setitem__(self, task_id: str, value: Resolved) -> None:
        e = self._entries.get(task_id)
        if e is None:
            self._loose[task_id] = value
        else:
            e.res = value
            self._loose.pop(task_id, None)

    def pop(self, task_id: str, default: Resolved | None = None) -> Resolved | None:
        e = self._entries.get(task_id)
        v = None
        if e is not None:
            v, e.res = e.res, None
        lv = self._loose.pop(task_id, None)
        if v is None:
            v = lv
        return default if v is None else v

    def __contains__(self, task_id: object) -> bool:
        return isinstance(task_id, str) and self.get(task_id) is not None

    def __iter__(self) -> Iterator[str]:
        entries = self._entries
        ids = [e.task_id for e in entries.peek_values() if e.res is not None]
        ids.extend(i for i in self._loose if i not in entries or
                   entries.peek(i).res is None)  # type: ignore[union-attr]
        return iter(ids)

    def __len__(self) -> int:
        return sum(1 for _ in self)


def _secs(v: timedelta | float) -> float:
    return v.total_seconds() if isinstance(v, timedelta) else float(v)


__all__ = ["Engine", "Schedule", "error_text"]
