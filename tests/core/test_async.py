"""AsyncScheduler: the same core behaviours on an asyncio loop (FakeClock)."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest

from tickwork import (
    AsyncScheduler,
    DuplicateTaskError,
    RetryPolicy,
    RunStatus,
    Task,
    TaskContext,
    TaskNotFoundError,
    TaskState,
    at,
    every,
)
from tickwork.testing import FakeClock, arun_until, asettle

from .conftest import T0, Calls, Recorder, at_s


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 30))


def test_interval_once_and_stats() -> None:
    async def main() -> None:
        clock = FakeClock(T0)
        calls, once = Calls(clock), Calls(clock)
        async with AsyncScheduler(clock=clock, timezone="UTC") as s:
            await s.add_task(Task(id="i", handler=calls, schedule=every(minutes=5)))
            await s.add_task(Task(id="o", handler=once, schedule=at(at_s(60), at_s(120))))
            with pytest.raises(DuplicateTaskError):
                await s.add_task(Task(id="i", handler=calls, schedule=every(minutes=5)))
            await arun_until(s, clock, at_s(1800))
            assert calls.rel() == [i * 300.0 for i in range(7)]
            assert once.rel() == [60.0, 120.0]
            snap = await s.get_task("o")
            assert snap.state is TaskState.FINISHED
            st = await s.get_stats()
            assert st["total_runs"] == 9
            assert [t.id for t in await s.list_tasks()] == ["i", "o"]
            await s.remove_task("o")
            with pytest.raises(TaskNotFoundError):
                await s.get_task("o")

    run(main())


def test_async_handlers_retries_and_events() -> None:
    async def main() -> None:
        clock = FakeClock(T0)
        rec = Recorder()
        attempts: list[int] = []

        async def h(ctx: TaskContext) -> str:
            attempts.append(ctx.attempt)
            if ctx.attempt < 3:
                raise ValueError("boom")
            return "done"

        s = AsyncScheduler(clock=clock, timezone="UTC")
        s.subscribe(rec)
        await s.add_task(Task(id="a", handler=h, schedule=at(at_s(0)),
                              retry=RetryPolicy(max_retries=3, delay=timedelta(seconds=2))))
        await s.start()
        await s.start()
        await arun_until(s, clock, at_s(100))
        await s.stop()
        await s.stop()
        assert attempts == [1, 2, 3]
        hist = await s.get_history("a")
        assert hist[0].status is RunStatus.SUCCEEDED and hist[0].result == "done"
        assert hist[0].attempts == 3
        types = rec.types("a")
        assert types.count("run_started") == 1 and types.count("run_retrying") == 2
        assert types[-1] == "run_succeeded"
        assert rec.types().count("scheduler_stopped") == 1

    run(main())


def test_sync_handler_in_pool_and_dependencies_and_skip() -> None:
    async def main() -> None:
        clock = FakeClock(T0)
        order: list[str] = []
        fail = {"on": False}

        def prep() -> None:
            order.append("prep")
            if fail["on"]:
                raise RuntimeError("x")

        async with AsyncScheduler(clock=clock, timezone="UTC") as s:
            await s.add_task(Task(id="prep", handler=prep, schedule=every(minutes=10),
                                  retry=RetryPolicy(max_retries=0)))
            await s.add_task(Task(id="proc", handler=lambda: order.append("proc"),
                                  schedule=every(minutes=10), dependencies=["prep"]))
            await arun_until(s, clock, at_s(1))
            fail["on"] = True
            await arun_until(s, clock, at_s(601))
            assert order == ["prep", "proc", "prep"]
            assert (await s.get_task("proc")).last_status is RunStatus.SKIPPED

    run(main())


def test_async_timeout_and_stop_cancel() -> None:
    async def main() -> None:
        clock = FakeClock(T0)
        s = AsyncScheduler(clock=clock, timezone="UTC")

        async def forever() -> None:
            await asyncio.sleep(3600)

        await s.add_task(Task(id="t", handler=forever, schedule=at(at_s(0)), timeout=5,
                              retry=RetryPolicy(max_retries=0)))
        await s.add_task(Task(id="c", handler=forever, schedule=at(at_s(0))))
        await s.start()
        for _ in range(100):
            await asyncio.sleep(0.001)
        clock.advance(5)
        for _ in range(200):
            if (await s.get_task("t")).last_status is RunStatus.TIMED_OUT:
                break
            await asyncio.sleep(0.001)
        snap = await s.get_task("t")
        assert snap.last_status is RunStatus.TIMED_OUT
        assert snap.last_error is not None and snap.last_error.startswith("TimeoutError")
        await s.stop(timeout=0.1)
        assert (await s.get_task("c")).last_status is RunStatus.CANCELLED
        assert (await s.get_stats())["running_tasks"] == 0

    run(main())


def test_enable_disable_update_run_now() -> None:
    async def main() -> None:
        clock = FakeClock(T0)
        calls = Calls(clock)
        async with AsyncScheduler(clock=clock, timezone="UTC") as s:
            await s.add_task(Task(id="t", handler=calls, schedule=every(hours=1,
                                                                         start_at=at_s(3600))))
            await s.run_now("t")
            await asettle(s)
            assert calls.count == 1
            snap = await s.disable_task("t")
            assert snap.next_run is None
            snap = await s.enable_task("t")
            assert snap.next_run == at_s(3600)
            snap = await s.update_task("t", priority=3)
            assert snap.priority == 3
            await s.set_max_retries(1)
            await s.set_retry_delay(1)

    run(main())
