"""The burst ramp-up of the real-clock timer loop (Engine.tick_plan), on a fake clock."""

from __future__ import annotations

from datetime import datetime

import pytest

from tickwork import Scheduler, Task, at
from tickwork._engine import RAMP
from tickwork.testing import FakeClock

from .conftest import at_s


def _burst(clock: FakeClock, handler: object, n: int = 6) -> Scheduler:
    s = Scheduler(clock=clock, timezone="UTC", max_workers=8)
    eng = s._engine
    eng.started = True
    eng.ramp_up = True  # what the real-clock runner sets
    due: datetime = at_s(10)
    for i in range(n):
        s.add_task(Task(id=f"b{i}", handler=handler, schedule=at(due), priority=i))
    clock.set(due)
    return s


def test_sync_runs_are_started_one_per_ramp_while_none_ends(clock: FakeClock) -> None:
    s = _burst(clock, lambda: None)
    eng = s._engine
    t = clock.time()
    starts, _, until = eng.tick_plan()
    assert [r.entry.task_id for r in starts] == ["b5"]  # the highest priority first
    starts, _, until = eng.tick_plan()  # same instant: held, look again after RAMP
    assert starts == [] and until == pytest.approx(t + RAMP)
    clock.set(t + RAMP)  # nothing ended meanwhile: one more worker
    starts, _, _ = eng.tick_plan()
    assert [r.entry.task_id for r in starts] == ["b4"]
    # A worker that ends its run takes the next ready one itself, in priority order.
    first = starts[0]
    nxt, _ = eng.finish_take(first, first.token, None, None)
    assert nxt is not None and nxt.entry.task_id == "b3"
    # ...and while it does, the timer holds back the rest.
    starts, _, until = eng.tick_plan()
    assert starts == [] and until == pytest.approx(clock.time() + RAMP)


def test_async_runs_are_not_paced(clock: FakeClock) -> None:
    async def handler() -> None:
        return None

    s = _burst(clock, handler)
    eng = s._engine
    started = []
    for _ in range(6):
        starts, _, _ = eng.tick_plan()
        started += [r.entry.task_id for r in starts]
    assert started == ["b5", "b4", "b3", "b2", "b1", "b0"]  # one per tick, no waiting


def test_a_second_worker_leaves_ready_runs_to_one_getting_through_them(
        clock: FakeClock) -> None:
    import threading

    s = _burst(clock, lambda: None)
    eng = s._engine
    a = eng.tick_plan()[0][0]
    clock.set(clock.time() + RAMP)
    b = eng.tick_plan()[0][0]
    got: list[object] = []
    # worker A ends its run (on this thread) and takes the next one
    nxt, _ = eng.finish_take(a, a.token, None, None)
    assert nxt is not None
    # worker B (another thread) ends its run right after: A is getting through them
    t = threading.Thread(target=lambda: got.append(eng.finish_take(b, b.token, None, None)[0]))
    t.start()
    t.join()
    assert got == [None] and eng.planner.ready


def test_a_lone_due_run_is_not_held_back_by_handlers_already_running(
        clock: FakeClock) -> None:
    # Ramp-up paces bursts only: a long handler started a moment ago must not delay the
    # next task that falls due on its own (it held it up to RAMP, ~1.3 ms at p50 in a
    # steady mix of short and long handlers).
    s = Scheduler(clock=clock, timezone="UTC", max_workers=8)
    eng = s._engine
    eng.started = True
    eng.ramp_up = True
    s.add_task(Task(id="long", handler=lambda: None, schedule=at(at_s(10))))
    s.add_task(Task(id="short", handler=lambda: None, schedule=at(at_s(10.0005))))
    clock.set(at_s(10))
    starts, _, _ = eng.tick_plan()
    assert [r.entry.task_id for r in starts] == ["long"]  # still running below
    clock.set(at_s(10.0005))
    starts, _, _ = eng.tick_plan()
    assert [r.entry.task_id for r in starts] == ["short"]
