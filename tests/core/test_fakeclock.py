"""tickwork.testing itself: FakeClock wake-ups and settle with sleeping handlers."""

from __future__ import annotations

import threading

from tickwork import RetryPolicy, RunStatus, Scheduler, Task, TaskContext, at
from tickwork.testing import FakeClock, run_until

from .conftest import T0, at_s


def test_fake_clock_never_loses_a_wakeup() -> None:
    # Regression: wait() read the time, then registered its condition; a set() in between
    # was never seen and the waiter slept forever (flaky settle timeouts).
    clock = FakeClock(T0)
    cond = threading.Condition()
    ready = threading.Event()
    rounds = 2000
    woke: list[int] = []

    def waiter() -> None:
        for i in range(rounds):
            with cond:
                until = T0.timestamp() + i + 1
                ready.set()
                while clock.time() < until:
                    clock.wait(cond, until)
            woke.append(i)

    t = threading.Thread(target=waiter, daemon=True)
    t.start()
    for i in range(rounds):
        assert ready.wait(5)
        ready.clear()
        clock.set(T0.timestamp() + i + 1)
        for _ in range(5000):
            if len(woke) > i:
                break
            threading.Event().wait(0.0005)
        assert len(woke) > i, f"waiter lost the wake-up in round {i}"
    t.join(5)


def test_run_until_drives_handlers_sleeping_in_ctx_wait() -> None:
    clock = FakeClock(T0)
    s = Scheduler(clock=clock, timezone="UTC")
    log: list[tuple[str, float]] = []

    def sleeper(ctx: TaskContext) -> None:
        cancelled = ctx.wait(30)  # fake seconds
        log.append((ctx.task_id, clock.time() - T0.timestamp()))
        assert not cancelled

    def stuck(ctx: TaskContext) -> None:
        ctx.wait(1000)

    s.add_task(Task(id="sleeper", handler=sleeper, schedule=at(at_s(0))))
    s.add_task(Task(id="stuck", handler=stuck, schedule=at(at_s(0)), timeout=10,
                    retry=RetryPolicy(max_retries=0)))
    with s:
        run_until(s, clock, at_s(100))
    assert log == [("sleeper", 30.0)]
    assert s.get_task("stuck").last_status is RunStatus.TIMED_OUT
    assert s.get_task("sleeper").last_status is RunStatus.SUCCEEDED


def test_immediate_restart_runs_jobs() -> None:
    # Regression: after stop(), an idle old worker still counted as idle, so the first job
    # after start() only notified it; it took its exit sentinel and the job was never run.
    from tickwork._workers import WorkerPool

    pool = WorkerPool(1)
    for _ in range(200):
        ran = threading.Event()
        pool.submit(ran.set)
        assert ran.wait(5)
        pool.shutdown()
        done = threading.Event()
        pool.submit(done.set)
        assert done.wait(5), "job submitted right after shutdown() never ran"
        pool.shutdown()


def test_job_never_queues_behind_a_busy_worker() -> None:
    # Regression: two jobs submitted back to back both went to the one idle thread (it
    # still counted as idle until it woke), so the second waited for the first to finish.
    from tickwork._workers import WorkerPool

    pool = WorkerPool(4)
    for _ in range(100):
        warm = threading.Event()
        pool.submit(warm.set)
        assert warm.wait(5)
        threading.Event().wait(0.001)  # let the thread go back to waiting
        block, second = threading.Event(), threading.Event()
        pool.submit(lambda block=block: block.wait(5))
        pool.submit(second.set)
        assert second.wait(2), "second job queued behind a blocked worker"
        block.set()
    pool.shutdown()
