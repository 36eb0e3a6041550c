"""Disable and remove stop future runs; an execution already running finishes undisturbed."""

from __future__ import annotations

import threading

from tickwork import RunStatus, Scheduler, Task, TaskContext, every
from tickwork.testing import FakeClock, settle


def test_running_execution_finishes_after_disable_and_is_not_cancelled() -> None:
    clock = FakeClock()
    sched = Scheduler(clock=clock, timezone="UTC")
    entered, release = threading.Event(), threading.Event()
    seen: list[bool] = []

    def job(ctx: TaskContext) -> str:
        entered.set()
        release.wait(10)
        seen.append(ctx.cancelled)
        return "done"

    sched.add_task(Task(id="t", handler=job, schedule=every(minutes=5)))
    with sched:
        assert entered.wait(10)
        sched.disable_task("t")
        release.set()
        settle(sched)
        assert seen == [False]
        rec = sched.get_history("t")[0]
        assert rec.status is RunStatus.SUCCEEDED and rec.result == "done"
        snap = sched.get_task("t")
        assert snap.enabled is False and snap.next_run is None and snap.run_count == 1
