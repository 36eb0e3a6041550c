"""The shortcuts taken for speed (issue 7) keep every promise they short-cut."""

from __future__ import annotations

import itertools
import random
from datetime import UTC, datetime, timedelta, timezone

import pytest

from tickwork import Scheduler, Task, at, every
from tickwork._core import Done, Entry, Planner, Run
from tickwork._timing import compile_schedule
from tickwork.testing import FakeClock, run_until

from .conftest import T0, Calls, at_s


def test_every_with_equal_arguments_is_one_value_and_zones_stay_apart() -> None:
    start = datetime(2030, 1, 1, 12, tzinfo=UTC)
    same_instant = datetime(2030, 1, 1, 13, tzinfo=timezone(timedelta(hours=1)))
    assert every(minutes=5, start_at=start) is every(minutes=5, start_at=start)
    other = every(minutes=5, start_at=same_instant)
    assert other.start_at is not None and other.start_at.utcoffset() == timedelta(hours=1)
    assert every(minutes=5) != every(minutes=6)


def test_tasks_sharing_a_schedule_keep_their_own_zone(sched: Scheduler) -> None:
    utc_start = datetime(2030, 1, 1, 12, tzinfo=UTC)
    plus_one = datetime(2030, 1, 1, 13, tzinfo=timezone(timedelta(hours=1)))
    sched.add_task(Task(id="a", handler=lambda: None, schedule=every(hours=1, start_at=utc_start)))
    sched.add_task(Task(id="b", handler=lambda: None, schedule=every(hours=1, start_at=plus_one)))
    a, b = sched.get_task("a").schedule, sched.get_task("b").schedule
    assert a.start_at is not None and a.start_at.utcoffset() == timedelta(0)
    assert b.start_at is not None and b.start_at.utcoffset() == timedelta(hours=1)


def test_the_scheduler_copy_and_snapshots_are_independent(sched: Scheduler) -> None:
    deps: list[str] = []
    meta: dict[str, str] = {}
    sched.add_task(Task(id="base", handler=lambda: None, schedule=every(hours=1)))
    t = Task(id="x", handler=lambda: None, schedule=every(hours=1), dependencies=deps,
             metadata=meta)
    snap = sched.add_task(t)
    deps.append("base")
    meta["k"] = "v"
    t.name = "changed"
    snap.dependencies.append("base")
    snap.metadata["k"] = "v"
    again = sched.get_task("x")
    assert again.dependencies == [] and again.metadata == {} and again.name == ""
    # the shared empty containers were not touched either
    other = sched.add_task(Task(id="y", handler=lambda: None, schedule=every(hours=1)))
    assert other.dependencies == [] and other.metadata == {}


def test_a_removed_task_readded_with_its_id_ignores_the_old_timer(clock: FakeClock) -> None:
    s = Scheduler(clock=clock, timezone="UTC")
    s.start()
    try:
        calls = Calls(clock)
        s.add_task(Task(id="t", handler=calls, schedule=at(at_s(10))))
        s.remove_task("t")
        s.add_task(Task(id="t", handler=calls, schedule=at(at_s(20))))
        run_until(s, clock, at_s(15))
        assert calls.count == 0  # the first definition's timer (t=10) must not fire it
        run_until(s, clock, at_s(25))
        assert calls.rel() == [20.0]
    finally:
        s.stop()


def test_run_now_before_and_after_a_disable(clock: FakeClock) -> None:
    s = Scheduler(clock=clock, timezone="UTC")
    s.start()
    try:
        calls = Calls(clock)
        s.add_task(Task(id="t", handler=calls, schedule=every(hours=1, start_at=T0
                                                                + timedelta(days=1))))
        s.run_now("t")
        run_until(s, clock, at_s(1))
        assert calls.count == 1
        s.disable_task("t")
        s.enable_task("t")
        s.run_now("t")
        run_until(s, clock, at_s(2))
        assert calls.count == 2
    finally:
        s.stop()


def test_each_task_is_one_object_for_the_garbage_collector(sched: Scheduler) -> None:
    # Full collections walk every tracked object: per task there is one (the planner's
    # entry, which also holds the definition), not an entry and a Task copy (issue 7).
    import gc

    sched.add_task(Task(id="warm", handler=lambda: None, schedule=every(hours=1)))
    gc.collect()
    before = len(gc.get_objects())
    fn = Calls()
    for i in range(2000):
        sched.add_task(Task(id=f"t{i}", handler=fn, schedule=every(hours=1),
                            metadata={"k": "v"}))
    gc.collect()
    assert (len(gc.get_objects()) - before) / 2000 < 1.05


def test_definitions_read_back_whole_and_as_copies(sched: Scheduler) -> None:
    from tickwork import Priority, RetryPolicy

    def before(ctx: object) -> None: ...

    def after(ctx: object, rec: object) -> None: ...

    fn = Calls()
    sched.add_task(Task(id="base", handler=fn, schedule=every(hours=1)))
    given = Task(id="x", handler=fn, schedule=every(hours=2), name="n", description="d",
                 priority=Priority.HIGH, dependencies=["base", "base"],
                 retry=RetryPolicy(max_retries=1), timeout=5, max_instances=2,
                 misfire_grace=timedelta(seconds=3), before_run=before, after_run=after,
                 on_lease_loss="fail", metadata={"k": "v"})
    sched.add_task(given)
    eng = sched._engine
    own = eng.tasks["x"]
    assert (own.name, own.description, own.priority, own.dependencies, own.retry,
            own.timeout, own.max_instances, own.misfire_grace, own.before_run,
            own.after_run, own.on_lease_loss, own.metadata, own.handler, own.schedule) == (
        "n", "d", Priority.HIGH, ["base"], RetryPolicy(max_retries=1), timedelta(seconds=5),
        2, timedelta(seconds=3), before, after, "fail", {"k": "v"}, fn, every(hours=2))
    own.dependencies.append("zzz")
    own.metadata["k"] = "changed"
    assert eng.tasks["x"].dependencies == ["base"] and eng.tasks["x"].metadata == {"k": "v"}
    assert "x" in eng.tasks and "nope" not in eng.tasks and eng.tasks.get("nope") is None
    sched.update_task("x", description="d2")
    assert sched.get_task("x").description == "d2" and eng.tasks["x"].priority == Priority.HIGH
    sched.disable_task("x")
    assert eng.tasks["x"].enabled is False
    sched.remove_task("x")
    assert "x" not in eng.tasks


def test_a_run_a_worker_takes_itself_still_times_out_on_time() -> None:
    # One worker: "first" (higher priority) is started by the timer thread; "limited" is
    # taken by the worker itself when "first" ends. Its deadline must wake the timer
    # thread, which otherwise sleeps until the next occurrence an hour away.
    import threading
    import time

    from tickwork import RetryPolicy, RunStatus

    from .conftest import wait_for

    release = threading.Event()
    s = Scheduler(max_workers=1, timezone="UTC")
    try:
        start = datetime.now(UTC) + timedelta(seconds=0.3)
        s.add_task(Task(id="first", handler=lambda: release.wait(5), priority=100,
                        schedule=every(hours=1, start_at=start)))

        def limited(ctx: object) -> None:
            ctx.wait(10)  # type: ignore[attr-defined]  # returns once cancelled

        s.add_task(Task(id="limited", handler=limited, timeout=0.2, priority=0,
                        retry=RetryPolicy(max_retries=0),
                        schedule=every(hours=1, start_at=start)))
        s.start()
        wait_for(lambda: s.get_task("first").state == "running")
        time.sleep(0.05)  # both due: "limited" waits for the only worker
        t0 = time.monotonic()
        release.set()
        wait_for(lambda: any(r.status is RunStatus.TIMED_OUT
                             for r in s.get_history("limited")), timeout=5)
        assert time.monotonic() - t0 < 3
    finally:
        release.set()
        s.stop(timeout=2)


def test_the_engine_s_run_context_is_the_keyword_built_one() -> None:
    # run_context skips the keyword call; a slot added to TaskContext must show here.
    import logging

    from tickwork import TaskContext
    from tickwork._context import run_context

    clock = FakeClock(T0)
    log = logging.getLogger("x")
    args = ("t", "r1", 2, clock, UTC, 1000.0, 1001.5, 1003.0, log)
    fast = run_context(*args)
    slow = TaskContext(task_id="t", run_id="r1", attempt=2, clock=clock, tz=UTC,
                       scheduled_ts=1000.0, started_ts=1001.5, deadline_ts=1003.0,
                       base_logger=log)
    for name in TaskContext.__slots__:
        assert getattr(fast, name) == getattr(slow, name), name
    assert fast.scheduled_for == slow.scheduled_for and fast.deadline == slow.deadline


def test_the_planner_s_new_run_is_the_dataclass_built_one() -> None:
    # Planner._new_run sets Run's slots itself; a slot added to Run must show here.
    def planned() -> tuple[Planner, Entry]:
        p = Planner(new_run_id=lambda: "r1")
        e = Entry(task_id="t", seq=0, timeout=2.5,
                  timing=compile_schedule(every(minutes=1), UTC, "t"))
        p.add(e, 1000.0)
        return p, e

    p, e = planned()
    fast = p._new_run(e, 1060.0, 1061.0, manual=True)
    q, f = planned()
    slow = Run("r1", f, 1060.0, manual=True, started_at=1061.0)
    q._start_attempt(slow, 1061.0)
    for name in Run.__slots__:
        if name != "entry":
            assert getattr(fast, name) == getattr(slow, name), name
    assert fast.entry is e and p.runs == {"r1": fast} and e.running == 1
    assert fast.deadline == 1063.5
    # the attempt's deadline is a live timer, as _start_attempt pushes it
    assert [i[2:] for i in p._timers if len(i) == 5] == [(3, fast, fast.token)]


# ----- the planner's steady-case shortcuts (start_lone, end_ok) against its general path

def _planner(specs: list[dict[str, object]]) -> Planner:
    ids = itertools.count()
    p = Planner(rng=random.Random(7), new_run_id=lambda: f"r{next(ids)}")
    for spec in specs:
        spec = dict(spec)
        tid = str(spec.pop("id"))
        grace = spec.pop("grace", None)
        sched = spec.pop("schedule", None) or every(minutes=1, fixed_rate=True)
        e = Entry(task_id=tid, seq=0, timing=compile_schedule(sched, UTC, tid),  # type: ignore[arg-type]
                  **spec)  # type: ignore[arg-type]
        if grace is not None:
            e.misfire_grace = timedelta(seconds=float(grace))  # type: ignore[arg-type]
        p.add(e, _T)
    return p


def _state(p: Planner, decisions: list[object]) -> object:
    ents = {tid: (e.next_nominal, e.next_due, e.token, e.running, e.parked, e.run_count,
                  e.last_run, e.last_status, e.last_exec_status, e.last_error, e.enabled)
            for tid, e in sorted(p.entries.items())}
    runs = sorted((r.run_id, r.entry.task_id, r.scheduled_for, r.active, r.done, r.status,
                   r.attempt, r.token, r.deadline, r.finished_at, r.last_error)
                  for r in p.runs.values())
    said = [(type(d).__name__, getattr(d, "run_id", None), getattr(d, "scheduled_for", None),
             getattr(getattr(d, "entry", None), "task_id", None)) for d in decisions]
    timers = sorted((i[0], i[1], i[2]) if len(i) == 3 else (i[0], i[1], i[2], i[4])
                    for i in p._timers)
    return ents, runs, said, timers, p.running_tasks, p.wake_needed, len(p.ready)


_T = 1_000_000.0
_STEADY_CASES: list[tuple[str, list[dict[str, object]], float, bool]] = [
    # (case, tasks, collect at (s after _T), the shortcut applies)
    ("plain, on time", [{"id": "a"}], 0.5, True),
    ("with a timeout", [{"id": "a", "timeout": 3.0}], 0.5, True),
    ("within misfire_grace, at its edge", [{"id": "a", "grace": 30.0}], 30.0, True),
    ("past misfire_grace", [{"id": "a", "grace": 30.0}], 30.5, False),
    ("three occurrences behind", [{"id": "a"}], 150.0, False),
    ("jitter", [{"id": "a", "schedule": every(minutes=1, jitter=5)}], 10.0, False),
    ("fixed delay", [{"id": "a", "schedule": every(minutes=1)}], 0.5, False),
    ("dependencies", [{"id": "b"}, {"id": "a", "deps": ("b",), "priority": 90}], 0.5, False),
    ("a dependency not run yet",
     [{"id": "b", "schedule": at(datetime.fromtimestamp(_T + 900, UTC))},
      {"id": "a", "deps": ("b",)}], 0.5, False),
    ("two due, priority decides", [{"id": "lo", "priority": 1}, {"id": "hi", "priority": 99}],
     0.5, False),
    ("once", [{"id": "a", "schedule": at(datetime.fromtimestamp(_T + 5, UTC))}], 5.0, True),
    ("not yet due", [{"id": "a", "schedule": at(datetime.fromtimestamp(_T + 5, UTC))}], 4.0,
     False),
]


@pytest.mark.parametrize(("case", "specs", "late", "applies"), _STEADY_CASES,
                         ids=[c[0] for c in _STEADY_CASES])
def test_start_lone_decides_what_collect_s_general_path_decides(
        case: str, specs: list[dict[str, object]], late: float, applies: bool) -> None:
    fast, ref = _planner(specs), _planner(specs)
    ref.start_lone = lambda now, limit: None  # type: ignore[method-assign]
    now = _T + late
    probe = _planner(specs)
    assert (probe.start_lone(now, now) is not None) == applies, case
    got, want = fast.collect(now, 1), ref.collect(now, 1)
    assert _state(fast, got) == _state(ref, want), case
    # and the next round too: what was planned is the same
    got, want = fast.collect(now + 60, 1), ref.collect(now + 60, 1)
    assert _state(fast, got) == _state(ref, want), case


_END_CASES: list[tuple[str, list[dict[str, object]], bool]] = [
    ("plain", [{"id": "a"}], True),
    ("fixed delay", [{"id": "a", "schedule": every(minutes=1)}], False),
    ("a dependent waits", [{"id": "a"}, {"id": "b", "deps": ("a",)}], False),
    ("once", [{"id": "a", "schedule": at(datetime.fromtimestamp(_T, UTC))}], False),
]


@pytest.mark.parametrize(("case", "specs", "applies"), _END_CASES,
                         ids=[c[0] for c in _END_CASES])
def test_end_ok_ends_a_run_as_attempt_finished_and_release_do(
        case: str, specs: list[dict[str, object]], applies: bool) -> None:
    fast, ref = _planner(specs), _planner(specs)
    (run,) = [d for d in fast.collect(_T, 1) if isinstance(d, Run)]
    (rref,) = [d for d in ref.collect(_T, 1) if isinstance(d, Run)]
    if not fast.end_ok(run, _T + 2):
        assert not applies, case
        assert _state(fast, []) == _state(ref, []), case  # nothing changed
        out = fast.attempt_finished(run, run.token, _T + 2, error=None)
        assert isinstance(out, Done)
        fast.release(run, _T + 2)
    else:
        assert applies, case
    out = ref.attempt_finished(rref, rref.token, _T + 2, error=None)
    assert isinstance(out, Done)
    ref.release(rref, _T + 2)
    assert _state(fast, []) == _state(ref, []), case
    assert (run.active, run.done, run.status, run.finished_at, run.last_error) == (
        rref.active, rref.done, rref.status, rref.finished_at, rref.last_error)
    # a stale run (ended already) is left to the general path
    assert not fast.end_ok(run, _T + 3)
