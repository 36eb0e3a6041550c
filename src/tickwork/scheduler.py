"""The threaded runner: ``Scheduler``.

One timer thread waits (exactly, on a condition) until the planner's next due time or a
wake-up, asks the engine what is due, and hands runs to a worker pool; async handlers run
on one event-loop thread. All logic lives in the engine and the planner.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
import time
from collections.abc import Callable
from datetime import timedelta, tzinfo
from typing import Any

from . import _core
from ._clock import MAX_WAIT, Clock, SystemClock
from ._durations import to_timedelta
from ._engine import Engine
from ._engines import make_engine
from ._execute import call_sync, run_async, run_sync
from ._model import EventType, RunRecord, Task
from ._surface import SharedSurface
from ._workers import WorkerPool
from .stores.base import TaskStore


class _Api(SharedSurface):
    """The methods both schedulers share in synchronous form (see API.md section 3)."""

    _engine: Engine

    def add_task(self, task: Task) -> Task:
        """Validate, store and schedule ``task`` (a copy is kept); returns its snapshot.

        Raises ``ValueError``, ``DuplicateTaskError``, ``DependencyError``,
        ``InvalidScheduleError`` or ``StoreError``.
        """
        return self._engine.add_task(task)

    def remove_task(self, task_id: str) -> None:
        """Remove a task; a running execution finishes. ``DependencyError`` if others need it."""
        self._engine.remove_task(task_id)

    def enable_task(self, task_id: str) -> Task:
        """Enable and plan from now (interval: now or start_at; cron: first match after now)."""
        return self._engine.set_enabled(task_id, True)

    def disable_task(self, task_id: str) -> Task:
        """Stop future runs and pending retries; a running execution finishes."""
        return self._engine.set_enabled(task_id, False)

    def update_task(self, task_id: str, **fields: Any) -> Task:
        """Change definition fields (schedule, priority, dependencies, retry, timeout…)."""
        return self._engine.update_task(task_id, fields)

    def run_now(self, task_id: str) -> None:
        """One extra execution as soon as a worker (and an instance slot) is free."""
        self._engine.run_now(task_id)

    def get_task(self, task_id: str) -> Task:
        """A snapshot of the task with its runtime fields; ``TaskNotFoundError``."""
        return self._engine.get_task(task_id)

    def list_tasks(self) -> list[Task]:
        """Snapshots of every task, ordered by id."""
        return self._engine.list_tasks()

    def get_stats(self) -> dict[str, int]:
        """Counters: total_tasks, enabled_tasks, running_tasks, total_runs, total_errors…"""
        return self._engine.get_stats()

    def get_history(self, task_id: str | None = None, limit: int = 100) -> list[RunRecord]:
        """Run records, newest first (from the store when one is attached)."""
        return self._engine.get_history(task_id, limit)

    def set_max_retries(self, n: int) -> None:
        """Default number of retries for tasks without their own RetryPolicy."""
        self._engine.set_default_retry(max_retries=n)

    def set_retry_delay(self, delay: timedelta | float) -> None:
        """Default first retry delay (timedelta or seconds)."""
        self._engine.set_default_retry(delay=to_timedelta(delay, field="retry_delay"))

    def set_persistence(self, store: TaskStore) -> None:
        """Attach a store and load the tasks it holds (orphans until handlers are known)."""
        self._engine.attach_store(store)

    def register_handler(self, key: str, fn: Callable[..., Any]) -> None:
        """Handler for a task id, or for a handler name used by stored tasks."""
        self._engine.register_handler(key, fn)

    def load_tasks(self) -> int:
        """Load tasks from the store that are not known yet; returns how many it holds."""
        return self._engine.load_from_store()

    def save_tasks(self) -> None:
        """Write every task to the store now; ``SchedulerError`` without a store."""
        self._engine.save_tasks()


class Scheduler(_Api):
    """A scheduler running in background threads. ``start()`` returns at once."""

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
    ) -> None:
        self._engine = make_engine(logger, store=store, max_workers=max_workers, timezone=timezone,
                              max_retries=max_retries, retry_delay=retry_delay, clock=clock)
        self._cond = threading.Condition(self._engine.lock)
        # With the real clock the timer thread sleeps on a doorbell: a lock it holds,
        # released by _wake. One C-level acquire with a timeout per sleep, where a
        # Condition's wait is Python code that allocates a lock each time, and ringing
        # is one release instead of a notify_all under the engine lock (issue 7, W3).
        # A ring while the timer is awake stays pending: no wake-up is lost. Other clocks
        # (FakeClock) wait on the condition through Clock.wait.
        self._bell: threading.Lock | None = (
            threading.Lock() if type(self._engine.clock) is SystemClock else None)
        if self._bell is not None:
            self._bell.acquire()
        self._engine.wake = self._wake
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: threading.Thread | None = None
        self._stop_requested = False
        self._stopped = threading.Event()
        # Workers take the next ready run themselves, unless the engine plans elsewhere
        # (the cluster engine claims runs from the database in its own tick).
        eng_type = type(self._engine)
        self._pull = (eng_type.tick is Engine.tick and eng_type.slot_free is Engine.slot_free
                      and eng_type.attempt_done is Engine.attempt_done)
        # The real-clock timer loop of a plain engine ramps bursts up (Engine.tick_plan).
        self._engine.ramp_up = self._bell is not None and self._pull
        # ...and lets a worker with nothing to do wait for the next due time itself and
        # run what falls due (Engine.watch_tick): one thread wake-up per run instead of
        # two. The watcher sleeps on this lock (released by stop()); the pool has one
        # thread more for it, so max_workers handlers can still run beside it.
        self._engine.watch = self._engine.ramp_up
        self._watch_bell = threading.Lock()
        self._watch_bell.acquire()
        self._pool = WorkerPool(max_workers + 1 if self._engine.watch else max_workers)

    # ----- lifecycle ----------------------------------------------------------------
    def start(self) -> None:
        """Start the timer thread (idempotent)."""
        eng = self._engine
        with self._cond:
            if self._thread is not None:
                return
        # Published before the timer thread starts: scheduler_started precedes any run's
        # events (a task already due could run before it was published).
        eng.publish(EventType.SCHEDULER_STARTED)
        with self._cond:
            if self._thread is not None:
                return
            eng.stopping = False
            self._stop_requested = False
            self._stopped.clear()
            eng.started = True
            self._thread = threading.Thread(target=self._run_loop, name="tickwork-timer",
                                            daemon=True)
            self._thread.start()

    def stop(self, timeout: float | timedelta | None = None) -> None:
        """Stop gracefully: no new runs, cancel contexts and retries, wait, save. Idempotent."""
        eng = self._engine
        with self._cond:
            thread = self._thread
            if thread is None:
                return
            self._stop_requested = True
            self._cond.notify_all()
        self._wake()
        eng.begin_stop()
        if self._watch_bell.locked():
            try:
                self._watch_bell.release()  # a watcher sees stopping and leaves
            except RuntimeError:
                pass
        if thread is not threading.current_thread():
            thread.join()
        limit = None if timeout is None else to_timedelta(timeout, field="timeout").total_seconds()
        deadline = None if limit is None else time.monotonic() + limit
        with self._cond:
            while eng.active_runs():
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    break
                self._cond.wait(0.05 if left is None else min(left, 0.05))
        eng.cancel_remaining()
        eng.final_save()
        with self._cond:
            self._thread = None
            eng.started = False
        self._pool.shutdown()
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._loop = None
            self._loop_thread = None
        eng.publish(EventType.SCHEDULER_STOPPED)
        self._stopped.set()

    def run_forever(self) -> None:
        """Start, then block until ``stop()`` or SIGINT/SIGTERM (which stop gracefully)."""
        self.start()
        previous: dict[signal.Signals, Any] = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                previous[sig] = signal.signal(
                    sig, lambda *_: threading.Thread(target=self.stop, daemon=True).start())
        try:
            while not self._stopped.wait(0.5):
                pass
        finally:
            for sig, old in previous.items():
                signal.signal(sig, old)

    @property
    def running(self) -> bool:
        return self._thread is not None

    def __enter__(self) -> Scheduler:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ----- internals ----------------------------------------------------------------
    def _wake(self) -> None:
        bell = self._bell
        if bell is None or self._stop_requested:  # stop() waits on the condition
            with self._cond:
                self._cond.notify_all()
        if bell is not None and bell.locked():
            try:
                bell.release()
            except RuntimeError:  # rung by another thread meanwhile: still pending
                pass

    def _run_loop(self) -> None:
        if self._bell is not None:
            self._bell_loop(self._bell)
            return
        eng = self._engine
        while True:
            starts, later = eng.tick()
            for fn in later:
                fn()
            for run in starts:
                self._dispatch(run)
            with self._cond:
                if self._stop_requested:
                    return
                until = eng.next_wakeup()
                if until is not None and until <= eng.now():
                    continue
                eng.clock.wait(self._cond, until)

    def _bell_loop(self, bell: threading.Lock) -> None:
        """The timer loop with the real clock: sleeps on the doorbell (see __init__)."""
        eng = self._engine
        plain = self._pull  # the plain engine plans and collects in one lock round
        while not self._stop_requested:
            if plain:
                starts, later, until = eng.tick_plan()
            else:
                starts, later = eng.tick()
            for fn in later:
                fn()
            if not plain:
                until = eng.next_wakeup()
            # Hand the runs over last, just before sleeping: a woken worker then finds the
            # interpreter lock free instead of waking, blocking on it and waking again.
            for run in starts:
                self._dispatch(run)
            timeout = MAX_WAIT if until is None else min(until - time.time(), MAX_WAIT)
            if timeout > 0:
                bell.acquire(timeout=timeout)

    def _dispatch(self, run: _core.Run) -> None:
        eng = self._engine
        if run.handler.is_async:
            loop = self._event_loop()
            fut = asyncio.run_coroutine_threadsafe(run_async(eng, run), loop)
            run.future = fut
            fut.add_done_callback(lambda _f: eng.slot_free())
        elif not self._pull:
            def job() -> None:
                try:
                    run_sync(eng, run)
                finally:
                    eng.slot_free()

            self._pool.submit(job)
        else:
            self._pool.submit(lambda: self._work(run))

    def _work(self, run: _core.Run) -> None:
        """A worker runs ``run``, then the next ready ones it takes itself (see
        ``Engine.slot_free_take``) until none is ready; then, with the real clock, it may
        watch the next due time (``_watch``) and run what falls due."""
        eng = self._engine
        nxt: _core.Run | None = run
        claim: tuple[int, float] | None = None  # the time this worker watches, if any
        watch = eng.watch
        while nxt is not None:
            current = nxt
            try:
                token, error, result = call_sync(eng, current)
                # The attempt's end and the next run in one lock round (Engine.finish_take),
                # and when watching, the claim of the next due time too.
                if watch:
                    nxt, later, new = eng.finish_watch(current, token, error, result, claim)
                    claim = claim or new
                else:
                    nxt, later = eng.finish_take(current, token, error, result)
            except BaseException:  # call_sync contains handler errors: this is a bug
                eng.logger.exception("run %s of task %r: internal error", current.run_id,
                                     current.entry.task_id)
                nxt, later = eng.slot_free_take()
            for fn in later:
                fn()
            if nxt is not None and nxt.handler.is_async:
                self._dispatch(nxt)
                if claim is None:
                    return
                nxt = None  # still watching: a claim is never left behind
            if nxt is None and claim is not None:
                nxt, claim = self._watch(claim)

    def _watch(self, claim: tuple[int, float] | None
               ) -> tuple[_core.Run | None, tuple[int, float] | None]:
        """Watch the next due time (Engine.watch_tick); returns a run to execute and the
        claim kept while it runs, or (None, None): nothing to watch, the worker goes idle."""
        eng = self._engine
        bell = self._watch_bell
        while claim is not None:
            seq, at = claim
            timeout = at - time.time()
            if timeout > 0:
                bell.acquire(timeout=timeout)
            run, others, later, claim = eng.watch_tick(seq)
            for fn in later:
                fn()
            for r in others:
                self._dispatch(r)
            if run is not None:
                return run, claim
        return None, None

    def _event_loop(self) -> asyncio.AbstractEventLoop:
        with self._cond:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                t = threading.Thread(target=loop.run_forever, name="tickwork-async", daemon=True)
                t.start()
                self._loop, self._loop_thread = loop, t
            return self._loop
