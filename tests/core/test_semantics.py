"""API 4.4-4.10 through the threaded Scheduler on a FakeClock."""

from __future__ import annotations

import threading
import time
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest

from tickwork import (
    EventType,
    Priority,
    RetryPolicy,
    RunRecord,
    RunStatus,
    Scheduler,
    Task,
    TaskContext,
    TaskState,
    at,
    every,
)
from tickwork._engine import HISTORY_IN_MEMORY
from tickwork.testing import FakeClock, run_until, settle

from .conftest import T0, Calls, Recorder, at_s, wait_for

NO_RETRY = RetryPolicy(max_retries=0)


# ----- 4.4 priority (real threads, one worker) ------------------------------------------

def test_priority_order_with_one_worker_real_threads(clock: FakeClock) -> None:
    s = Scheduler(clock=clock, timezone="UTC", max_workers=1)
    order: list[str] = []
    gate = threading.Event()

    def blocker() -> None:
        gate.wait(5)

    def rec(name: str) -> Any:
        return lambda: order.append(name)

    s.add_task(Task(id="0-block", handler=blocker, schedule=at(at_s(0)), priority=1000))
    for tid, prio in [("low", Priority.LOW), ("high", Priority.HIGH), ("mid", Priority.MEDIUM),
                      ("high2", Priority.HIGH)]:
        s.add_task(Task(id=tid, handler=rec(tid), schedule=at(at_s(1)), priority=prio))
    with s:
        wait_for(lambda: s.get_stats()["running_tasks"] == 1)
        clock.set(at_s(1))
        time.sleep(0.02)  # let the timer thread see the due runs while the worker is busy
        gate.set()
        settle(s)
    assert order == ["high", "high2", "mid", "low"]


# ----- 4.5 dependencies ---------------------------------------------------------------

def test_dependencies_wait_run_after_and_skip(clock: FakeClock) -> None:
    s = Scheduler(clock=clock, timezone="UTC")
    rec = Recorder()
    s.subscribe(rec)
    outcome = {"fail": False}
    order: list[str] = []

    def prepare() -> None:
        order.append("prepare")
        if outcome["fail"]:
            raise RuntimeError("no data")

    s.add_task(Task(id="prepare", handler=prepare, schedule=every(minutes=10, start_at=at_s(60)),
                    retry=NO_RETRY))
    s.add_task(Task(id="process", handler=lambda: order.append("process"),
                    schedule=every(minutes=10), dependencies=["prepare"]))
    with s:
        settle(s)
        assert order == []  # prepare never ran: process waits
        assert s.get_task("process").run_count == 0
        run_until(s, clock, at_s(61))
        assert order == ["prepare", "process"]
        outcome["fail"] = True
        run_until(s, clock, at_s(661))
    assert order == ["prepare", "process", "prepare"]
    hist = s.get_history("process")
    assert hist[0].status is RunStatus.SKIPPED
    assert "prepare" in (hist[0].error or "")
    snap = s.get_task("process")
    assert snap.last_status is RunStatus.SKIPPED
    assert snap.run_count == 1
    assert snap.next_run is not None and snap.next_run > at_s(661)
    assert s.get_stats()["total_skipped"] == 1
    assert "run_skipped" in rec.types("process")


def test_dependency_running_blocks(clock: FakeClock) -> None:
    s = Scheduler(clock=clock, timezone="UTC")
    gate = threading.Event()
    order: list[str] = []

    def slow() -> None:
        order.append("dep")
        gate.wait(5)

    s.add_task(Task(id="dep", handler=slow, schedule=every(hours=1)))
    s.add_task(Task(id="user", handler=lambda: order.append("user"), schedule=every(hours=1),
                    dependencies=["dep"]))
    with s:
        wait_for(lambda: order == ["dep"])
        clock.advance(1)
        time.sleep(0.02)
        assert order == ["dep"]
        gate.set()
        settle(s)
    assert order == ["dep", "user"]


# ----- 4.6 misfires -------------------------------------------------------------------

def test_stopped_scheduler_collapses_missed_runs(clock: FakeClock) -> None:
    s = Scheduler(clock=clock, timezone="UTC")
    calls = Calls(clock)
    s.add_task(Task(id="c", handler=calls, schedule=every(minutes=1, fixed_rate=True)))
    with s:
        settle(s)
    clock.set(at_s(600))  # scheduler stopped for 10 minutes
    with s:
        settle(s)
    assert calls.rel() == [0.0, 600.0]
    assert s.get_stats()["total_missed"] == 0


def test_grace_records_missed(clock: FakeClock) -> None:
    s = Scheduler(clock=clock, timezone="UTC")
    rec = Recorder()
    s.subscribe(rec, events=["run_missed"])
    calls = Calls(clock)
    s.add_task(Task(id="g", handler=calls, schedule=every(minutes=1, fixed_rate=True),
                    misfire_grace=timedelta(seconds=10)))
    with s:
        settle(s)
    clock.set(at_s(305))
    with s:
        settle(s)
    assert calls.rel() == [0.0, 305.0]
    missed = [r for r in s.get_history("g") if r.status is RunStatus.MISSED]
    assert [r.scheduled_for for r in missed] == [at_s(t) for t in (240, 180, 120, 60)]
    assert all(r.started_at is None for r in missed)
    assert s.get_stats()["total_missed"] == 4
    assert len(rec.events) == 4
    assert s.get_task("g").run_count == 2


def test_saturation_is_a_misfire(clock: FakeClock) -> None:
    s = Scheduler(clock=clock, timezone="UTC", max_workers=1)
    gate = threading.Event()
    s.add_task(Task(id="hog", handler=lambda: gate.wait(5), schedule=at(at_s(0))))
    calls = Calls(clock)
    s.add_task(Task(id="v", handler=calls, schedule=every(minutes=1, fixed_rate=True,
                                                          start_at=at_s(60)),
                    misfire_grace=timedelta(seconds=30), priority=Priority.LOW))
    with s:
        wait_for(lambda: s.get_stats()["running_tasks"] == 1)
        clock.set(at_s(60))
        time.sleep(0.01)
        clock.set(at_s(200))
        gate.set()
        settle(s)
    statuses = [(r.scheduled_for, r.status) for r in s.get_history("v")]
    assert (at_s(60), RunStatus.MISSED) in statuses
    assert (at_s(180), RunStatus.SUCCEEDED) in statuses


# ----- 4.8 events and hooks -----------------------------------------------------------

def test_event_sequence_for_retried_execution(clock: FakeClock) -> None:
    s = Scheduler(clock=clock, timezone="UTC")
    rec = Recorder()
    s.subscribe(rec)
    hooks: list[str] = []

    def before(ctx: TaskContext) -> None:
        hooks.append(f"before:{ctx.attempt}")

    def after(ctx: TaskContext, record: RunRecord) -> None:
        hooks.append(f"after:{record.status}")

    calls = Calls(clock, fail=2)
    s.add_task(Task(id="e", handler=calls, schedule=at(at_s(0)), before_run=before,
                    after_run=after, retry=RetryPolicy(max_retries=3, delay=timedelta(seconds=1))))
    with s:
        run_until(s, clock, at_s(100))
    evs = [e for e in rec.events if e.task_id == "e" and str(e.type).startswith("run_")]
    assert [(str(e.type), e.attempt) for e in evs] == [
        ("run_started", 1), ("run_retrying", 2), ("run_retrying", 3), ("run_succeeded", 3)]
    assert evs[1].error == "ValueError: boom"
    assert len({e.run_id for e in evs}) == 1
    assert evs[-1].record is not None and evs[-1].record.attempts == 3
    assert hooks == ["before:1", "after:succeeded"]
    types = rec.types()
    assert types[:2] == ["task_added", "scheduler_started"]
    assert types[-1] == "scheduler_stopped"


def test_every_event_type(clock: FakeClock) -> None:
    s = Scheduler(clock=clock, timezone="UTC")
    rec = Recorder()
    s.subscribe(rec)
    s.add_task(Task(id="ok", handler=lambda: None, schedule=at(at_s(0))))
    s.add_task(Task(id="bad", handler=Calls(clock, fail=9), schedule=at(at_s(0)),
                    retry=RetryPolicy(max_retries=1, delay=timedelta(seconds=1))))
    s.add_task(Task(id="to", handler=lambda ctx: ctx.wait(100), schedule=at(at_s(0)),
                    timeout=5, retry=NO_RETRY))
    s.add_task(Task(id="dep", handler=lambda: None, schedule=at(at_s(50)),
                    dependencies=["bad"]))
    s.add_task(Task(id="late", handler=lambda: None, schedule=at(at_s(-100)),
                    misfire_grace=1))
    s.update_task("ok", priority=3)
    s.disable_task("ok")
    s.enable_task("ok")
    with s:
        run_until(s, clock, at_s(100))
    s.remove_task("dep")
    got = set(rec.types())
    assert got == {str(e) for e in EventType} - {"run_cancelled", "run_lease_lost"}
    c = Counter((e.task_id, str(e.type)) for e in rec.events)
    for tid in ("ok", "bad", "to"):
        terminal = sum(n for (t, ty), n in c.items() if t == tid and ty in (
            "run_succeeded", "run_failed", "run_timed_out"))
        assert c[(tid, "run_started")] == 1 and terminal == 1


def test_failing_callbacks_and_hooks_change_nothing(clock: FakeClock,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    s = Scheduler(clock=clock, timezone="UTC")

    def bad_cb(ev: object) -> None:
        raise RuntimeError("callback broke")

    def bad_before(ctx: object) -> None:
        raise RuntimeError("before broke")

    def bad_after(ctx: object, rec: object) -> None:
        raise RuntimeError("after broke")

    s.subscribe(bad_cb)
    rec = Recorder()
    s.subscribe(rec)
    s.add_task(Task(id="t", handler=lambda: 5, schedule=every(minutes=1),
                    before_run=bad_before, after_run=bad_after))
    with s:
        run_until(s, clock, at_s(61))
    snap = s.get_task("t")
    assert (snap.run_count, snap.error_count, snap.last_status) == (2, 0, RunStatus.SUCCEEDED)
    assert rec.types("t").count("run_succeeded") == 2
    logs = caplog.text
    assert "callback broke" in logs and "before broke" in logs and "after broke" in logs


# ----- 4.9 history --------------------------------------------------------------------

def test_history_newest_first_limit_per_task(sched: Scheduler, clock: FakeClock) -> None:
    sched.add_task(Task(id="a", handler=lambda: None, schedule=every(minutes=1)))
    sched.add_task(Task(id="b", handler=Calls(clock, fail=1000), schedule=every(minutes=2),
                        retry=NO_RETRY))
    with sched:
        run_until(sched, clock, at_s(600))
    allh = sched.get_history(limit=1000)
    starts = [r.started_at for r in allh]
    assert starts == sorted(starts, reverse=True)  # type: ignore[type-var]
    assert len(sched.get_history(limit=3)) == 3
    assert len(sched.get_history()) == len(allh)
    a = sched.get_history("a", limit=1000)
    assert {r.task_id for r in a} == {"a"} and len(a) == 11
    b = sched.get_history("b")
    assert all(r.status is RunStatus.FAILED and r.error == "ValueError: boom" for r in b)
    assert sched.get_task("b").last_status is RunStatus.FAILED
    assert sched.get_task("b").error_count == len(b) == 6
    st = sched.get_stats()
    assert st["total_runs"] == 17 and st["total_errors"] == 6
    assert sched.get_history(limit=0) == []


def test_history_bounded_in_memory(clock: FakeClock) -> None:
    s = Scheduler(clock=clock, timezone="UTC")
    eng = s._engine
    assert HISTORY_IN_MEMORY == 10_000
    assert eng.history.maxlen == HISTORY_IN_MEMORY
    s.add_task(Task(id="f", handler=lambda: None, schedule=every(seconds=1, fixed_rate=True)))
    # 10,050 runs through the real path would be slow-ish; fill the deque directly and run 60
    rec = RunRecord(run_id="x", task_id="f", scheduled_for=T0, started_at=T0, finished_at=T0,
                    status=RunStatus.SUCCEEDED)
    eng.history.extend([rec] * HISTORY_IN_MEMORY)
    with s:
        run_until(s, clock, at_s(59))
    h = s.get_history(limit=20_000)
    assert len(h) == HISTORY_IN_MEMORY
    assert h[0].run_id != "x" and sum(1 for r in h if r.run_id != "x") == 60


# ----- 4.10 timeouts and shutdown -----------------------------------------------------

def test_async_handler_timeout_cancels(sched: Scheduler, clock: FakeClock) -> None:
    import asyncio

    state: dict[str, Any] = {}

    async def h() -> str:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            state["cancelled"] = True
            raise
        return "never"

    sched.add_task(Task(id="a", handler=h, schedule=at(at_s(0)), timeout=10, retry=NO_RETRY))
    with sched:
        wait_for(lambda: sched.get_stats()["running_tasks"] == 1)
        clock.advance(10)
        settle(sched)
        wait_for(lambda: state.get("cancelled", False))
    snap = sched.get_task("a")
    assert snap.last_status is RunStatus.TIMED_OUT
    assert snap.last_error is not None and snap.last_error.startswith("TimeoutError")
    assert snap.error_count == 1 and snap.run_count == 1
    assert sched.get_history("a")[0].status is RunStatus.TIMED_OUT


def test_sync_handler_timeout_sees_cancelled_and_result_ignored(sched: Scheduler,
                                                               clock: FakeClock) -> None:
    seen: dict[str, Any] = {}
    release = threading.Event()

    def h(ctx: TaskContext) -> str:
        seen["ctx"] = ctx
        release.wait(5)
        seen["cancelled"] = ctx.cancelled
        return "late result"

    sched.add_task(Task(id="s", handler=h, schedule=at(at_s(0)), timeout=10, retry=NO_RETRY))
    with sched:
        wait_for(lambda: "ctx" in seen)
        clock.advance(10)
        wait_for(lambda: seen["ctx"].cancelled)
        assert sched.get_task("s").last_status is RunStatus.TIMED_OUT
        release.set()
        settle(sched)
    assert seen["cancelled"] is True
    rec = sched.get_history("s")[0]
    assert rec.status is RunStatus.TIMED_OUT and rec.result is None
    assert len(sched.get_history("s")) == 1


def test_timeout_then_retry(sched: Scheduler, clock: FakeClock) -> None:
    attempts: list[int] = []

    def h(ctx: TaskContext) -> None:
        attempts.append(ctx.attempt)
        if ctx.attempt == 1:
            ctx.wait(100)

    sched.add_task(Task(id="r", handler=h, schedule=at(at_s(0)), timeout=5,
                        retry=RetryPolicy(max_retries=1, delay=timedelta(seconds=1))))
    with sched:
        wait_for(lambda: attempts == [1])
        clock.advance(5)
        run_until(sched, clock, at_s(20))
    assert attempts == [1, 2]
    assert sched.get_task("r").last_status is RunStatus.SUCCEEDED


def test_stop_waits_for_running(clock: FakeClock) -> None:
    s = Scheduler(clock=clock, timezone="UTC")
    done = threading.Event()
    started = threading.Event()

    def h() -> None:
        started.set()
        time.sleep(0.1)
        done.set()

    s.add_task(Task(id="w", handler=h, schedule=at(at_s(0))))
    s.start()
    assert started.wait(5)
    s.stop()
    assert done.is_set()
    assert s.get_history("w")[0].status is RunStatus.SUCCEEDED


def test_stop_timeout_records_cancelled(clock: FakeClock) -> None:
    s = Scheduler(clock=clock, timezone="UTC")
    rec = Recorder()
    s.subscribe(rec)
    seen: dict[str, Any] = {}
    release = threading.Event()

    def h(ctx: TaskContext) -> None:
        seen["ctx"] = ctx
        release.wait(5)

    s.add_task(Task(id="c", handler=h, schedule=at(at_s(0))))
    s.start()
    wait_for(lambda: "ctx" in seen)
    t0 = time.monotonic()
    s.stop(timeout=0.2)
    assert time.monotonic() - t0 < 3
    assert seen["ctx"].cancelled
    release.set()
    h0 = s.get_history("c")
    assert [r.status for r in h0] == [RunStatus.CANCELLED]
    assert s.get_task("c").last_status is RunStatus.CANCELLED
    assert s.get_stats()["running_tasks"] == 0
    assert "run_cancelled" in rec.types("c")
    time.sleep(0.05)
    assert len(s.get_history("c")) == 1  # the late return records nothing more


def test_running_state_and_finished(sched: Scheduler, clock: FakeClock) -> None:
    gate = threading.Event()
    sched.add_task(Task(id="r", handler=lambda: gate.wait(5), schedule=at(at_s(0))))
    with sched:
        wait_for(lambda: sched.get_task("r").state is TaskState.RUNNING)
        assert sched.get_stats()["running_tasks"] == 1
        gate.set()
        settle(sched)
        assert sched.get_task("r").state is TaskState.FINISHED
