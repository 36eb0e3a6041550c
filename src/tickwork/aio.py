"""The asyncio runner: ``AsyncScheduler``, on the caller's event loop.

Same engine and planner as ``Scheduler``; only waiting and dispatch differ: the loop
task waits on an ``asyncio.Event``; async handlers run as tasks on this loop, sync
handlers in a thread pool. Methods are coroutines; those that write to a store run the
write in a thread so that the loop never blocks on ``fsync``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta, tzinfo
from typing import Any

from . import _core
from ._clock import Clock
from ._durations import to_timedelta
from ._engines import make_engine
from ._execute import run_async, run_sync
from ._model import EventType, RunRecord, Task
from ._surface import SharedSurface
from .stores.base import TaskStore


class AsyncScheduler(SharedSurface):
    """``Scheduler``'s surface as coroutines: ``async with AsyncScheduler() as s: ...``."""

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
        self._engine.wake = self._wake
        self._loop: asyncio.AbstractEventLoop | None = None
        self._event: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._pool = ThreadPoolExecutor(max_workers, thread_name_prefix="tickwork-worker")
        self._stop_requested = False
        self._stopped: asyncio.Event | None = None

    async def _io(self, fn: Callable[..., Any], *args: Any) -> Any:
        if self._engine.store is None:
            return fn(*args)
        return await asyncio.to_thread(fn, *args)

    # ----- API (coroutines) -----------------------------------------------------------
    async def add_task(self, task: Task) -> Task:
        """See ``Scheduler.add_task``."""
        return await self._io(self._engine.add_task, task)  # type: ignore[no-any-return]

    async def remove_task(self, task_id: str) -> None:
        await self._io(self._engine.remove_task, task_id)

    async def enable_task(self, task_id: str) -> Task:
        return await self._io(self._engine.set_enabled, task_id, True)  # type: ignore[no-any-return]

    async def disable_task(self, task_id: str) -> Task:
        return await self._io(self._engine.set_enabled, task_id, False)  # type: ignore[no-any-return]

    async def update_task(self, task_id: str, **fields: Any) -> Task:
        return await self._io(self._engine.update_task, task_id, fields)  # type: ignore[no-any-return]

    async def run_now(self, task_id: str) -> None:
        self._engine.run_now(task_id)

    async def get_task(self, task_id: str) -> Task:
        return self._engine.get_task(task_id)

    async def list_tasks(self) -> list[Task]:
        return self._engine.list_tasks()

    async def get_stats(self) -> dict[str, int]:
        return self._engine.get_stats()

    async def get_history(self, task_id: str | None = None, limit: int = 100) -> list[RunRecord]:
        return await self._io(self._engine.get_history, task_id, limit)  # type: ignore[no-any-return]

    async def set_max_retries(self, n: int) -> None:
        self._engine.set_default_retry(max_retries=n)

    async def set_retry_delay(self, delay: timedelta | float) -> None:
        self._engine.set_default_retry(delay=to_timedelta(delay, field="retry_delay"))

    async def set_persistence(self, store: TaskStore) -> None:
        await asyncio.to_thread(self._engine.attach_store, store)

    async def register_handler(self, key: str, fn: Callable[..., Any]) -> None:
        self._engine.register_handler(key, fn)

    async def load_tasks(self) -> int:
        return await asyncio.to_thread(self._engine.load_from_store)

    async def save_tasks(self) -> None:
        await asyncio.to_thread(self._engine.save_tasks)

    # ----- lifecycle ----------------------------------------------------------------
    async def start(self) -> None:
        """Start the loop task on the running event loop (idempotent)."""
        if self._task is not None:
            return
        eng = self._engine
        self._loop = asyncio.get_running_loop()
        self._event = asyncio.Event()
        self._stopped = asyncio.Event()
        self._stop_requested = False
        eng.stopping = False
        eng.started = True
        self._task = self._loop.create_task(self._run_loop(), name="tickwork-timer")
        eng.publish(EventType.SCHEDULER_STARTED)

    async def stop(self, timeout: float | timedelta | None = None) -> None:
        """Graceful stop, as ``Scheduler.stop``."""
        task = self._task
        if task is None:
            return
        eng = self._engine
        self._stop_requested = True
        self._wake()
        eng.begin_stop()
        await task
        limit = None if timeout is None else to_timedelta(timeout, field="timeout").total_seconds()
        deadline = None if limit is None else time.monotonic() + limit
        while eng.active_runs():
            if deadline is not None and time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.01)
        eng.cancel_remaining()
        await asyncio.to_thread(eng.final_save)
        self._task = None
        eng.started = False
        eng.publish(EventType.SCHEDULER_STOPPED)
        assert self._stopped is not None
        self._stopped.set()

    async def run_forever(self) -> None:
        """Start and wait until ``stop()`` is called (or the task is cancelled)."""
        await self.start()
        assert self._stopped is not None
        try:
            await self._stopped.wait()
        except asyncio.CancelledError:
            await self.stop()
            raise

    async def __aenter__(self) -> AsyncScheduler:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ----- internals ----------------------------------------------------------------
    def _wake(self) -> None:
        loop, ev = self._loop, self._event
        if loop is None or ev is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            ev.set()
        else:
            loop.call_soon_threadsafe(ev.set)

    async def _run_loop(self) -> None:
        eng = self._engine
        ev = self._event
        assert ev is not None
        while True:
            starts, later = eng.tick()
            for fn in later:
                fn()
            for run in starts:
                self._dispatch(run)
            if self._stop_requested:
                return
            ev.clear()
            until = eng.next_wakeup()
            if until is not None and until <= eng.now():
                await asyncio.sleep(0)
                continue
            await eng.clock.async_wait(ev, until)

    def _dispatch(self, run: _core.Run) -> None:
        eng = self._engine
        assert self._loop is not None
        fut: asyncio.Future[Any]
        if run.handler.is_async:
            fut = self._loop.create_task(run_async(eng, run))
        else:
            fut = self._loop.run_in_executor(self._pool, run_sync, eng, run)
        run.future = fut
        fut.add_done_callback(lambda _f: eng.slot_free())
