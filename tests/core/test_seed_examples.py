"""Every example of SEED.md (the Go reference), translated to tickwork and run on a FakeClock."""

from __future__ import annotations

import logging
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

from tickwork import (
    JsonTaskStore,
    Priority,
    RunStatus,
    Schedule,
    Scheduler,
    ScheduleType,
    Task,
    TaskContext,
    TaskState,
)
from tickwork.testing import FakeClock, run_until, settle

from .conftest import T0, Calls, at_s


def test_creating_a_scheduler() -> None:
    sched = Scheduler(logging.getLogger("app"))
    assert sched.list_tasks() == []


def test_interval_cleanup_task(clock: FakeClock) -> None:
    sched = Scheduler(clock=clock, timezone="UTC")
    calls = Calls(clock)
    sched.add_task(Task(
        id="cleanup-task", name="Periodic Cleanup", handler=calls,
        schedule=Schedule(type=ScheduleType.INTERVAL, interval=timedelta(minutes=5)),
        enabled=True,
    ))
    with sched:
        run_until(sched, clock, at_s(15 * 60))
    assert calls.rel() == [0.0, 300.0, 600.0, 900.0]


def test_one_time_task(clock: FakeClock) -> None:
    sched = Scheduler(clock=clock, timezone="UTC")
    calls = Calls(clock)
    sched.add_task(Task(
        id="one-time-task", name="Run Once", handler=calls,
        schedule=Schedule(type=ScheduleType.ONCE, times=[T0 + timedelta(hours=1)]),  # type: ignore[arg-type]
        enabled=True,
    ))
    with sched:
        run_until(sched, clock, at_s(2 * 3600))
    assert calls.rel() == [3600.0]
    snap = sched.get_task("one-time-task")
    assert snap.state is TaskState.FINISHED and not snap.enabled and snap.next_run is None


def test_task_management(clock: FakeClock) -> None:
    sched = Scheduler(clock=clock, timezone="UTC")
    sched.add_task(Task(id="cleanup-task", handler=lambda: None,
                        schedule=Schedule(type=ScheduleType.INTERVAL,
                                          interval=timedelta(minutes=5))))
    sched.start()
    sched.disable_task("cleanup-task")
    sched.enable_task("cleanup-task")
    task = sched.get_task("cleanup-task")
    assert task.id == "cleanup-task"
    assert [t.id for t in sched.list_tasks()] == ["cleanup-task"]
    sched.remove_task("cleanup-task")
    assert sched.list_tasks() == []
    sched.stop()


def test_configuration_retries(clock: FakeClock) -> None:
    sched = Scheduler(clock=clock, timezone="UTC")
    sched.set_max_retries(5)
    sched.set_retry_delay(timedelta(seconds=10))
    calls = Calls(clock, fail=100)
    sched.add_task(Task(id="r", handler=calls,
                        schedule=Schedule(type=ScheduleType.ONCE, times=(T0,))))
    with sched:
        run_until(sched, clock, at_s(1000))
    assert calls.count == 6  # 1 + 5 retries
    assert calls.rel()[:3] == [0.0, 10.0, 30.0]  # 10s, then backoff 20s


def test_monitoring_stats_and_task_fields(clock: FakeClock) -> None:
    sched = Scheduler(clock=clock, timezone="UTC", max_retries=0)
    calls = Calls(clock, fail=1)
    sched.add_task(Task(id="cleanup-task", handler=calls,
                        schedule=Schedule(type=ScheduleType.INTERVAL,
                                          interval=timedelta(minutes=5))))
    with sched:
        run_until(sched, clock, at_s(301))
    stats = sched.get_stats()
    assert stats["total_tasks"] == 1
    assert stats["enabled_tasks"] == 1
    assert stats["total_runs"] == 2
    assert stats["total_errors"] == 1
    task = sched.get_task("cleanup-task")
    assert task.run_count == 2
    assert task.error_count == 1
    assert task.last_error is None  # the latest run succeeded
    assert task.last_run == at_s(300)
    assert task.next_run == at_s(600)


def test_working_memory_cleanup_and_decay_examples(clock: FakeClock) -> None:
    sched = Scheduler(clock=clock, timezone="UTC")
    wm, decay = Calls(clock), Calls(clock)
    sched.add_task(Task(id="wm-cleanup", name="Working Memory Cleanup",
                        description="Remove expired memories and inactive sessions",
                        handler=wm, schedule=Schedule(type=ScheduleType.INTERVAL,
                                                      interval=timedelta(minutes=5))))
    sched.add_task(Task(id="confidence-decay", name="Confidence Decay Calculation",
                        handler=decay, schedule=Schedule(type=ScheduleType.INTERVAL,
                                                         interval=timedelta(hours=1))))
    with sched:
        run_until(sched, clock, at_s(3600))
    assert wm.count == 13 and decay.count == 2


def test_backup_once_in_24h(clock: FakeClock) -> None:
    sched = Scheduler(clock=clock, timezone="UTC")
    calls = Calls(clock)
    sched.add_task(Task(id="daily-backup", name="Daily Backup", handler=calls,
                        schedule=Schedule(type=ScheduleType.ONCE,
                                          times=(T0 + timedelta(hours=24),))))
    with sched:
        run_until(sched, clock, at_s(3 * 86400))
    assert calls.rel() == [86400.0]


def test_cron_daily_midnight(clock: FakeClock) -> None:
    sched = Scheduler(clock=clock, timezone="UTC")
    calls = Calls(clock)
    clock.set(at_s(3600))  # 01:00, so the first run is the next midnight
    sched.add_task(Task(id="daily-task", name="Daily Midnight Job", handler=calls,
                        schedule=Schedule(type=ScheduleType.CRON, cron="0 0 * * *")))
    assert sched.get_task("daily-task").next_run == at_s(86400)
    with sched:
        run_until(sched, clock, at_s(3 * 86400 + 10))
    assert calls.rel() == [86400.0, 2 * 86400.0, 3 * 86400.0]


def test_priority_high_and_low(clock: FakeClock) -> None:
    sched = Scheduler(clock=clock, timezone="UTC", max_workers=1)
    order: list[str] = []
    gate = threading.Event()
    minute = Schedule(type=ScheduleType.INTERVAL, interval=timedelta(minutes=1))
    sched.add_task(Task(id="background-task", name="Background Work", priority=Priority.LOW,
                        handler=lambda: order.append("low"), schedule=minute))
    sched.add_task(Task(id="critical-task", name="Critical Operation", priority=Priority.HIGH,
                        handler=lambda: order.append("high"), schedule=minute))
    assert int(Priority.LOW) == 0 and int(Priority.MEDIUM) == 50 and int(Priority.HIGH) == 100
    gate.set()
    with sched:
        settle(sched)
    assert order == ["high", "low"]


def test_dependencies_prepare_process(clock: FakeClock) -> None:
    sched = Scheduler(clock=clock, timezone="UTC")
    order: list[str] = []
    ten = Schedule(type=ScheduleType.INTERVAL, interval=timedelta(minutes=10))
    a = Task(id="prepare-data", name="Data Preparation", schedule=ten,
             handler=lambda: order.append("prepare"))
    b = Task(id="process-data", name="Data Processing", dependencies=["prepare-data"],
             schedule=ten, handler=lambda: order.append("process"))
    sched.add_task(a)
    sched.add_task(b)
    with sched:
        run_until(sched, clock, at_s(1200))
    assert order == ["prepare", "process"] * 3


def test_persistence_json(tmp_path: Path, clock: FakeClock) -> None:
    path = tmp_path / "tasks.json"
    sched = Scheduler(clock=clock, timezone="UTC")
    sched.set_persistence(JsonTaskStore(path))
    sched.register_handler("cleanup-task", lambda: None)
    sched.add_task(Task(id="cleanup-task", priority=7,
                        schedule=Schedule(type=ScheduleType.INTERVAL,
                                          interval=timedelta(minutes=5))))
    sched.add_task(Task(id="backup-task", handler=lambda: None, dependencies=["cleanup-task"],
                        schedule=Schedule(type=ScheduleType.INTERVAL,
                                          interval=timedelta(hours=1))))
    sched.disable_task("backup-task")
    with sched:
        settle(sched)
    sched.save_tasks()
    assert path.exists()

    # next session
    got: list[str] = []
    later = Scheduler(clock=clock, timezone="UTC")
    later.set_persistence(JsonTaskStore(path))
    later.register_handler("cleanup-task", lambda ctx: got.append(ctx.task_id))
    later.register_handler("backup-task", lambda: None)
    assert later.load_tasks() == 2
    t = later.get_task("cleanup-task")
    assert t.priority == 7 and t.enabled and t.run_count == 1
    b = later.get_task("backup-task")
    assert not b.enabled and b.dependencies == ["cleanup-task"]
    with later:
        run_until(later, clock, at_s(300))
    assert got == ["cleanup-task"]


def test_handler_with_context_like_go(clock: FakeClock) -> None:
    # Go handlers take a context.Context; ours may take a TaskContext.
    sched = Scheduler(clock=clock, timezone="UTC")
    seen: list[Any] = []

    def handler(ctx: TaskContext) -> None:
        seen.append(ctx.cancelled)

    sched.add_task(Task(id="ctx", handler=handler,
                        schedule=Schedule(type=ScheduleType.ONCE, times=(T0,))))
    with sched:
        settle(sched)
    assert seen == [False]
    assert sched.get_history("ctx")[0].status is RunStatus.SUCCEEDED
