"""Dormant tasks and the add-alike fast path (issue 7, W1/W6) keep every promise.

Idle tasks added in bulk are stored as untracked tuples (``_core.EntryTable``) and a task
added alike the previous one skips the general path (``Engine._add_alike``). Both are
invisible to users: these tests compare them with the general path field by field and
drive dormant tasks through every API that touches a task.
"""

from __future__ import annotations

import dataclasses
import gc
from typing import Any

import pytest

from tickwork import (
    DuplicateTaskError,
    Priority,
    RetryPolicy,
    Scheduler,
    Task,
    every,
)
from tickwork._core import Entry, EntryTable, Planner
from tickwork._engine import Engine
from tickwork.testing import FakeClock, run_until

from .conftest import Calls, at_s

FIELDS = [f.name for f in dataclasses.fields(Entry)]


def entry_fields(e: Entry) -> dict[str, Any]:
    # Timings are each engine's own objects: compare what they compute.
    d = {f: getattr(e, f) for f in FIELDS}
    t = d.pop("timing")
    d["timing"] = (type(t), t.first(1000.0), t.jitter)
    return d


def snap_fields(t: Task) -> dict[str, Any]:
    return {f.name: getattr(t, f.name) for f in dataclasses.fields(Task) if f.name != "id"}


def test_positional_entry_matches_the_keyword_one(sched: Scheduler) -> None:
    # _entry_for builds Entry positionally; a field added or moved in Entry must show here.
    eng: Engine = sched._engine

    def before(ctx: object) -> None: ...

    for task in (
        Task(id="plain", handler=Calls(), schedule=every(minutes=5)),
        Task(id="full", handler=Calls(), schedule=every(hours=2), name="n", description="d",
             priority=Priority.HIGH, dependencies=["plain"], retry=RetryPolicy(max_retries=1),
             timeout=5, max_instances=2, misfire_grace=3, before_run=before,
             on_lease_loss="fail", metadata={"k": "v"}, enabled=False),
    ):
        fast = eng._entry_for(task)
        slow = eng._make_entry(eng._normalise(task))
        assert entry_fields(fast) == entry_fields(slow)


def test_a_dormant_record_reads_back_as_the_entry_it_was() -> None:
    p = Planner()
    from datetime import UTC

    from tickwork._timing import compile_schedule

    timing = compile_schedule(every(minutes=1), UTC, "a")
    handler, retry = Calls(), RetryPolicy(max_retries=2)
    for i in range(3):
        e = Entry(f"t{i}", 0, timing, priority=7, retry=retry,
                  timeout=1.5, max_instances=3, handler=handler)
        p.add(e, 1000.0 + i, dormant=True)
        want = entry_fields(e)  # p.add filled seq, next_nominal, next_due and token
        table = p.entries
        assert isinstance(table, EntryTable) and table.kind_of(f"t{i}") == 0
        assert entry_fields(table.peek(f"t{i}")) == want  # type: ignore[arg-type]
        assert table.kind_of(f"t{i}") == 0  # peeking does not wake it
    assert len(p.entries.kinds) == 1 and p.entries.dormant == 3
    woken = p.entries["t1"]
    assert p.entries.kind_of("t1") is None and p.entries.dormant == 2
    assert woken is p.entries["t1"]  # woken for good: the same object from now on


def test_tasks_that_cannot_be_dormant_stay_entries() -> None:
    from datetime import UTC

    from tickwork._timing import compile_schedule

    p = Planner()
    timing = compile_schedule(every(minutes=1), UTC, "a")
    p.add(Entry("base", 0, timing), 0.0, dormant=True)
    p.add(Entry("dep", 0, timing, deps=("base",)), 0.0, dormant=True)
    p.add(Entry("meta", 0, timing, metadata={"k": "v"}), 0.0, dormant=True)
    p.add(Entry("orphan", 0, timing, runnable=False), 0.0, dormant=True)
    p.add(Entry("plain", 0, timing), 0.0)  # dormant not asked for
    assert [i for i in ("base", "dep", "meta", "orphan", "plain")
            if p.entries.kind_of(i) is not None] == ["base"]
    assert p.entries.count_unrunnable() == 1


def test_dormant_tasks_are_not_tracked_by_the_garbage_collector(sched: Scheduler) -> None:
    fn = Calls()
    sched.add_task(Task(id="warm", handler=fn, schedule=every(hours=1)))
    gc.collect()
    before = len(gc.get_objects())
    for i in range(3000):
        sched.add_task(Task(id=f"t{i}", handler=fn, schedule=every(hours=1)))
    gc.collect()
    # An Entry per task would be 1 per task; a dormant record is not tracked at all.
    assert (len(gc.get_objects()) - before) / 3000 < 0.05
    assert sched._engine.planner.entries.dormant == 3001


@pytest.mark.parametrize("variant", ["same", "named", "retry", "disabled", "priority"])
def test_the_fast_path_returns_what_the_general_path_does(clock: FakeClock,
                                                          variant: str) -> None:
    fn = Calls()
    sch = every(minutes=7)
    kw: dict[str, Any] = {
        "same": {}, "named": {"name": "n", "description": "d"},
        "retry": {"retry": RetryPolicy(max_retries=4), "max_instances": 3},
        "disabled": {"enabled": False}, "priority": {"priority": Priority.LOW},
    }[variant]
    fast = Scheduler(clock=clock, timezone="UTC")
    slow = Scheduler(clock=clock, timezone="UTC")
    try:
        got = [fast.add_task(Task(id=f"t{i}", handler=fn, schedule=sch, **kw))
               for i in range(4)]
        # The general path for every task: each added to a fresh scheduler as its first.
        want = []
        for i in range(4):
            slow._engine._alike = None
            want.append(slow.add_task(Task(id=f"t{i}", handler=fn, schedule=sch, **kw)))
        assert fast._engine._alike is not None or variant == "disabled"
        for g, w in zip(got, want, strict=True):
            assert g.id == w.id and snap_fields(g) == snap_fields(w)
        for i in range(4):
            fe = fast._engine.planner.entries.peek(f"t{i}")
            se = slow._engine.planner.entries.peek(f"t{i}")
            assert fe is not None and se is not None
            assert entry_fields(fe) == entry_fields(se)
            assert snap_fields(fast.get_task(f"t{i}")) == snap_fields(slow.get_task(f"t{i}"))
        assert fast.get_stats() == slow.get_stats()
        # Snapshots are the caller's own: changing one changes nothing else.
        got[1].dependencies.append("x")
        got[1].metadata["k"] = "v"
        assert got[2].dependencies == [] and got[2].metadata == {}
        assert fast.get_task("t1").dependencies == []
    finally:
        fast.stop()
        slow.stop()


def test_the_fast_path_refuses_what_the_general_path_refuses(sched: Scheduler) -> None:
    fn = Calls()
    sch = every(minutes=1)
    sched.add_task(Task(id="a", handler=fn, schedule=sch))
    sched.add_task(Task(id="b", handler=fn, schedule=sch))  # alike: the fast path
    assert sched._engine._alike is not None
    with pytest.raises(DuplicateTaskError):
        sched.add_task(Task(id="b", handler=fn, schedule=sch))
    with pytest.raises(ValueError, match="id"):
        sched.add_task(Task(id="bad id!", handler=fn, schedule=sch))
    with pytest.raises(ValueError, match="id"):
        sched.add_task(Task(id="", handler=fn, schedule=sch))
    assert [t.id for t in sched.list_tasks()] == ["a", "b"]


def test_a_handler_registered_for_the_id_wins_over_the_fast_path(clock: FakeClock) -> None:
    s = Scheduler(clock=clock, timezone="UTC")
    s.start()
    try:
        given, registered = Calls(clock), Calls(clock)
        sch = every(seconds=10, start_at=at_s(10))
        s.add_task(Task(id="a", handler=given, schedule=sch))
        s.register_handler("b", registered)
        s.add_task(Task(id="b", handler=given, schedule=sch))
        run_until(s, clock, at_s(10))
        assert registered.count == 1 and given.count == 1  # "a" ran given, "b" registered
    finally:
        s.stop()


def test_dormant_tasks_run_and_obey_every_call(clock: FakeClock) -> None:
    s = Scheduler(clock=clock, timezone="UTC")
    s.start()
    try:
        fn = Calls(clock)
        sch = every(seconds=10, start_at=at_s(10))
        for i in range(6):
            s.add_task(Task(id=f"t{i}", handler=fn, schedule=sch))
        table = s._engine.planner.entries
        assert table.dormant == 6
        s.list_tasks()
        s.get_stats()
        s.get_task("t3")
        assert table.dormant == 6  # reading wakes no task
        s.update_task("t1", schedule=every(seconds=30, start_at=at_s(30)))
        s.disable_task("t2")
        s.remove_task("t3")
        s.run_now("t4")
        run_until(s, clock, at_s(1))
        assert fn.count == 1  # t4 by hand
        run_until(s, clock, at_s(10))
        # t0, t4, t5 at 10 s; t1 moved to 30 s, t2 disabled, t3 removed
        assert fn.count == 4
        assert {t.id: t.run_count for t in s.list_tasks()} == {
            "t0": 1, "t1": 0, "t2": 0, "t4": 2, "t5": 1}
        s.enable_task("t2")
        run_until(s, clock, at_s(30))
        assert s.get_task("t1").run_count == 1 and s.get_task("t2").run_count >= 1
        assert "t3" not in {t.id for t in s.list_tasks()}
    finally:
        s.stop()


def test_a_full_kind_table_keeps_tasks_as_entries(monkeypatch: pytest.MonkeyPatch) -> None:
    from datetime import UTC

    import tickwork._core as core
    from tickwork._timing import compile_schedule

    monkeypatch.setattr(core, "_KINDS_MAX", 2)
    p = Planner()
    for m in (1, 2, 3):
        p.add(Entry(f"t{m}", 0, compile_schedule(every(minutes=m), UTC, "x")), 0.0,
              dormant=True)
    assert [p.entries.kind_of(f"t{m}") for m in (1, 2, 3)] == [0, 1, None]
    assert p.entries["t3"].timing.interval == 180.0  # still there, as an Entry


def test_planning_the_next_wake_up_wakes_no_task(sched: Scheduler) -> None:
    fn = Calls()
    for i in range(3):
        sched.add_task(Task(id=f"t{i}", handler=fn, schedule=every(hours=1, start_at=at_s(60))))
    eng = sched._engine
    assert eng.next_wakeup() == at_s(60).timestamp()
    assert eng.planner.entries.dormant == 3
    sched.remove_task("t0")  # its timer is stale now: skipped, still without waking t1
    assert eng.next_wakeup() == at_s(60).timestamp()
    assert eng.planner.entries.kind_of("t1") is not None


def test_a_burst_of_dormant_tasks_starts_in_priority_order_without_waking_all() -> None:
    from datetime import UTC

    from tickwork._core import Run
    from tickwork._timing import compile_schedule

    p = Planner()
    handler = Calls()
    timing = compile_schedule(every(hours=1), UTC, "x")
    for i in range(40):  # more than the bulk threshold, all due at once
        p.add(Entry(f"low{i}", 0, timing, priority=10, handler=handler), 0.0, dormant=True)
    p.add(Entry("high", 0, timing, priority=90, handler=handler), 0.0, dormant=True)
    p.add(Entry("awake", 0, timing, priority=50, handler=handler), 0.0)  # a plain entry
    p.add(Entry("gone", 0, timing, priority=99, handler=handler), 0.0, dormant=True)
    p.remove("gone", 0.0)
    out = p.collect(0.0, 3)
    started = [d.entry.task_id for d in out if isinstance(d, Run)]
    assert started == ["high", "awake", "low0"]  # priority, then add order; "gone" skipped
    assert p.entries.dormant == 39  # only the started ones were woken
    rest = p.collect(0.0, 100)
    assert [d.entry.task_id for d in rest if isinstance(d, Run)] == [
        f"low{i}" for i in range(1, 40)]
