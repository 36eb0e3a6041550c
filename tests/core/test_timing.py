"""API 4.2 timing and 4.3 retries on a FakeClock."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest

from tickwork import RetryPolicy, RunStatus, Scheduler, Task, TaskState, at, every
from tickwork.testing import FakeClock, run_until, settle

from .conftest import T0, Calls, Recorder, at_s


def test_interval_first_run_immediately_then_fixed_delay(sched: Scheduler,
                                                         clock: FakeClock) -> None:
    calls = Calls(clock)
    sched.add_task(Task(id="t", handler=calls, schedule=every(minutes=5)))
    assert sched.get_task("t").next_run == T0
    with sched:
        run_until(sched, clock, at_s(3600))
    assert calls.rel() == [i * 300.0 for i in range(13)]
    snap = sched.get_task("t")
    assert snap.run_count == 13
    assert snap.next_run == at_s(3900)


def test_interval_start_at(sched: Scheduler, clock: FakeClock) -> None:
    calls = Calls(clock)
    sched.add_task(Task(id="t", handler=calls, schedule=every(minutes=10, start_at=at_s(120))))
    assert sched.get_task("t").next_run == at_s(120)
    with sched:
        run_until(sched, clock, at_s(1300))
    assert calls.rel() == [120.0, 720.0]


def _slow(clock: FakeClock, seconds: float, calls: list[float]) -> object:
    def h() -> None:
        calls.append(clock.time() - T0.timestamp())
        clock.advance(seconds)  # simulate the run taking `seconds`

    return h


def test_fixed_delay_plans_from_finish(sched: Scheduler, clock: FakeClock) -> None:
    calls: list[float] = []
    sched.add_task(Task(id="t", handler=_slow(clock, 30, calls), schedule=every(minutes=1)))
    with sched:
        run_until(sched, clock, at_s(200))
    # runs at 0 (ends 30) -> 90 (ends 120) -> 180
    assert calls == [0.0, 90.0, 180.0]


def test_fixed_rate_plans_from_scheduled_time(sched: Scheduler, clock: FakeClock) -> None:
    calls: list[float] = []
    sched.add_task(Task(id="t", handler=_slow(clock, 30, calls),
                        schedule=every(minutes=1, fixed_rate=True)))
    with sched:
        run_until(sched, clock, at_s(200))
    assert calls == [0.0, 60.0, 120.0, 180.0]


def test_once_with_several_instants_runs_each_then_finishes(sched: Scheduler,
                                                            clock: FakeClock) -> None:
    # Seed bug: only the first of several instants ran.
    calls = Calls(clock)
    sched.add_task(Task(id="o", handler=calls,
                        schedule=at(at_s(60), at_s(120), at_s(3600))))
    assert sched.get_task("o").next_run == at_s(60)
    with sched:
        run_until(sched, clock, at_s(7200))
    assert calls.rel() == [60.0, 120.0, 3600.0]
    snap = sched.get_task("o")
    assert snap.state is TaskState.FINISHED
    assert snap.enabled is False
    assert snap.next_run is None
    assert snap.run_count == 3
    assert sched.get_stats()["enabled_tasks"] == 0


def test_once_between_instants_reports_next(sched: Scheduler, clock: FakeClock) -> None:
    calls = Calls(clock)
    sched.add_task(Task(id="o", handler=calls, schedule=at(at_s(60), at_s(120))))
    with sched:
        run_until(sched, clock, at_s(90))
        assert sched.get_task("o").next_run == at_s(120)
        assert sched.get_task("o").state is TaskState.SCHEDULED


def test_jitter_within_bounds(clock: FakeClock) -> None:
    s = Scheduler(clock=clock, timezone="UTC")
    s._engine.planner._rng = random.Random(7)
    calls = Calls(clock)
    s.add_task(Task(id="j", handler=calls,
                    schedule=every(minutes=1, jitter=timedelta(seconds=10), fixed_rate=True)))
    with s:
        run_until(s, clock, at_s(6000))
    rel = calls.rel()
    assert len(rel) >= 95
    offsets = [t % 60 for t in rel]
    assert all(0 <= o <= 10 for o in offsets), offsets
    assert max(offsets) > 5 and min(offsets) < 5  # actually spread, not constant


def test_max_instances_never_overlaps(clock: FakeClock) -> None:
    import threading

    s = Scheduler(clock=clock, timezone="UTC", max_workers=4)
    gate = threading.Event()
    running = []
    peak = []

    def h() -> None:
        running.append(1)
        peak.append(len(running))
        gate.wait(5)
        running.pop()

    s.add_task(Task(id="m", handler=h, schedule=every(seconds=1, fixed_rate=True),
                    max_instances=2))
    with s:
        clock.advance(0.5)
        s.run_now("m")
        s.run_now("m")
        from .conftest import wait_for

        wait_for(lambda: len(running) == 2)
        clock.advance(3)
        assert s.get_stats()["running_tasks"] == 1
        assert len(running) == 2
        gate.set()
        settle(s)
    assert max(peak) == 2


# ----- retries ---------------------------------------------------------------------

def test_exponential_backoff_delays(clock: FakeClock) -> None:
    # Seed bug: the delay between attempts was constant.
    s = Scheduler(clock=clock, timezone="UTC")
    calls = Calls(clock, fail=100)
    policy = RetryPolicy(max_retries=5, delay=timedelta(seconds=5), backoff=2.0,
                         max_delay=timedelta(seconds=30))
    s.add_task(Task(id="r", handler=calls, schedule=at(at_s(0)), retry=policy))
    with s:
        run_until(s, clock, at_s(1000))
    gaps = [b - a for a, b in zip(calls.times, calls.times[1:], strict=False)]
    assert gaps == [5.0, 10.0, 20.0, 30.0, 30.0]
    assert [policy.delay_for(n) for n in range(1, 6)] == [5.0, 10.0, 20.0, 30.0, 30.0]
    snap = s.get_task("r")
    assert snap.run_count == 1 and snap.error_count == 1
    assert snap.last_error == "ValueError: boom"
    assert s.get_stats()["total_retries"] == 5


def test_default_policy_backoff_and_set_retry_delay(clock: FakeClock) -> None:
    s = Scheduler(clock=clock, timezone="UTC")
    s.set_max_retries(3)
    s.set_retry_delay(2)
    calls = Calls(clock, fail=100)
    s.add_task(Task(id="r", handler=calls, schedule=at(at_s(0))))
    with s:
        run_until(s, clock, at_s(100))
    assert calls.rel() == [0.0, 2.0, 6.0, 14.0]


def test_max_retries_two_is_three_attempts(sched: Scheduler, clock: FakeClock) -> None:
    calls = Calls(clock, fail=100)
    sched.add_task(Task(id="r", handler=calls, schedule=at(at_s(0)),
                        retry=RetryPolicy(max_retries=2, delay=timedelta(seconds=1))))
    with sched:
        run_until(sched, clock, at_s(100))
    assert calls.count == 3
    assert [c.attempt for c in calls.ctxs] == [1, 2, 3]
    assert len({c.run_id for c in calls.ctxs}) == 1
    rec = sched.get_history("r")[0]
    assert rec.status is RunStatus.FAILED and rec.attempts == 3


def test_success_on_retry(sched: Scheduler, clock: FakeClock) -> None:
    calls = Calls(clock, fail=2)
    sched.add_task(Task(id="r", handler=calls, schedule=every(hours=1),
                        retry=RetryPolicy(max_retries=3, delay=timedelta(seconds=1))))
    with sched:
        run_until(sched, clock, at_s(60))
    snap = sched.get_task("r")
    assert calls.count == 3
    assert (snap.run_count, snap.error_count, snap.last_error) == (1, 0, None)
    assert snap.last_status is RunStatus.SUCCEEDED
    assert sched.get_stats()["total_errors"] == 0


def test_failure_then_success_clears_last_error(sched: Scheduler, clock: FakeClock) -> None:
    calls = Calls(clock, fail=1)
    sched.add_task(Task(id="r", handler=calls, schedule=every(minutes=1),
                        retry=RetryPolicy(max_retries=0)))
    with sched:
        run_until(sched, clock, at_s(1))
        assert sched.get_task("r").last_error == "ValueError: boom"
        run_until(sched, clock, at_s(70))
    snap = sched.get_task("r")
    assert (snap.run_count, snap.error_count, snap.last_error) == (2, 1, None)


@pytest.mark.parametrize("how", ["stop", "disable", "remove"])
def test_retries_stop_early(clock: FakeClock, how: str) -> None:
    s = Scheduler(clock=clock, timezone="UTC")
    calls = Calls(clock, fail=100)
    rec = Recorder()
    s.subscribe(rec)
    s.add_task(Task(id="r", handler=calls, schedule=every(hours=1),
                    retry=RetryPolicy(max_retries=5, delay=timedelta(seconds=10))))
    s.start()
    run_until(s, clock, at_s(15))
    assert calls.count == 2
    if how == "stop":
        s.stop()
    elif how == "disable":
        s.disable_task("r")
    else:
        s.remove_task("r")
    clock.advance(1000)
    settle(s)
    assert calls.count == 2
    assert rec.types("r").count("run_failed") == 1
    hist = [r for r in s.get_history() if r.task_id == "r"]
    assert [r.status for r in hist] == [RunStatus.FAILED]
    assert hist[0].attempts == 2
    s.stop()
