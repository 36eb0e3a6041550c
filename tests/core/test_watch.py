"""Watching (Engine.claim_watch / watch_tick): a worker with nothing to do waits for the
next due time itself and runs what falls due, the timer thread keeping a backstop. On a
fake clock, driving the engine as the real-clock runner does."""

from __future__ import annotations

from datetime import datetime

import pytest

from tickwork import Scheduler, Task, every
from tickwork._core import Run
from tickwork._engine import WATCH_BACKSTOP, WATCH_HORIZON, Engine
from tickwork.testing import FakeClock

from .conftest import at_s


def _noop() -> None:
    return None


def _engine(clock: FakeClock, *firsts: float) -> tuple[Engine, list[int]]:
    """A watching engine with one task every second per first due offset (s after T0);
    returns it and a list that counts the timer wake-ups it asks for."""
    s = Scheduler(clock=clock, timezone="UTC", max_workers=8)
    eng = s._engine
    eng.started = True
    eng.ramp_up = eng.watch = True  # what the real-clock runner sets
    wakes: list[int] = []
    eng.wake = lambda: wakes.append(1)
    for i, first in enumerate(firsts):
        start: datetime = at_s(first)
        s.add_task(Task(id=f"t{i}", handler=_noop,
                        schedule=every(seconds=1, start_at=start, fixed_rate=True)))
    wakes.clear()
    return eng, wakes


def _finish(eng: Engine, run: Run) -> None:
    nxt, _ = eng.finish_take(run, run.token, None, None)
    assert nxt is None


def test_a_worker_claims_the_next_due_time_only_when_near_and_unwatched(
        clock: FakeClock) -> None:
    eng, _ = _engine(clock, 0.01)
    claim = eng.claim_watch()
    assert claim is not None and claim[1] == pytest.approx(clock.time() + 0.01)
    assert eng.claim_watch() is None  # one watcher at a time
    # The timer thread sleeps past the watched time: it is only the backstop.
    starts, _, until = eng.tick_plan()
    assert starts == [] and until == pytest.approx(claim[1] + WATCH_BACKSTOP)

    far, _ = _engine(FakeClock(clock.now()), WATCH_HORIZON * 2)
    assert far.claim_watch() is None  # beyond the horizon: the timer watches


def test_the_watcher_runs_what_falls_due_and_keeps_watching_after_a_short_handler(
        clock: FakeClock) -> None:
    eng, wakes = _engine(clock, 0.0, 0.02)
    t0 = clock.time()
    # First round: no figure yet for t0's handler, so the watcher hands the watch of
    # the next due time (t1's) back to the timer, which it wakes.
    seq, at = eng.claim_watch() or (0, 0.0)
    assert at == pytest.approx(t0)
    mine, others, _, claim = eng.watch_tick(seq)
    assert mine is not None and mine.entry.task_id == "t0" and others == []
    assert claim is None and wakes == [1]
    clock.set(t0 + 0.001)  # the handler took 1 ms
    _finish(eng, mine)
    clock.set(t0 + 0.02)
    starts, _, _ = eng.tick_plan()  # the timer starts t1
    assert [r.entry.task_id for r in starts] == ["t1"]
    _finish(eng, starts[0])
    # Second round: t0 took 1 ms, t1 is due 20 ms after it: the watcher keeps watching.
    clock.set(t0 + 0.99)
    seq, at = eng.claim_watch() or (0, 0.0)
    assert at == pytest.approx(t0 + 1)
    clock.set(t0 + 1)
    wakes.clear()
    mine, _, _, claim = eng.watch_tick(seq)
    assert mine is not None and mine.entry.task_id == "t0"
    assert claim is not None and claim[1] == pytest.approx(t0 + 1.02) and wakes == []
    assert eng.watch_at == claim[1]


@pytest.mark.parametrize("gap", [0.02, 0.003])
def test_a_handler_slower_than_half_the_gap_to_the_next_due_time_leaves_the_watch(
        clock: FakeClock, gap: float) -> None:
    eng, wakes = _engine(clock, 0.0, gap)
    t0 = clock.time()
    seq, _ = eng.claim_watch() or (0, 0.0)
    mine, _, _, _ = eng.watch_tick(seq)
    assert mine is not None
    clock.set(t0 + gap * 0.75)  # more than half the gap
    _finish(eng, mine)
    clock.set(t0 + gap)
    starts, _, _ = eng.tick_plan()
    _finish(eng, starts[0])
    clock.set(t0 + 0.99)
    seq, _ = eng.claim_watch() or (0, 0.0)
    eng.tick_plan()  # the timer, rung meanwhile, sleeps until the backstop
    assert eng.timer_deadline == pytest.approx(t0 + 1 + WATCH_BACKSTOP)
    clock.set(t0 + 1)
    wakes.clear()
    mine, _, _, claim = eng.watch_tick(seq)
    assert mine is not None and claim is None and eng.watch_at is None
    # The timer looks again in time for t1: it is woken unless its backstop comes first.
    t1 = t0 + 1 + gap
    assert wakes == ([] if t0 + 1 + WATCH_BACKSTOP <= t1 else [1])
    assert eng.planner.armed_until == eng.timer_deadline


def test_the_timer_takes_over_from_a_watcher_that_overstays(clock: FakeClock) -> None:
    eng, _ = _engine(clock, 0.01)
    seq, at = eng.claim_watch() or (0, 0.0)
    clock.set(at + WATCH_BACKSTOP)  # the watcher did not come back (busy in a handler)
    starts, _, _ = eng.tick_plan()
    assert [r.entry.task_id for r in starts] == ["t0"]
    assert eng.watch_at is None
    # The late watcher finds its claim revoked: nothing starts twice.
    assert eng.watch_tick(seq) == (None, [], [], None)
    assert eng.busy == 1


def test_a_watcher_in_a_handler_is_taken_over_once_the_watched_time_has_passed(
        clock: FakeClock) -> None:
    # The watcher kept its claim through a handler expected short; the handler overruns
    # the watched time. A timer tick then (here woken for something else) starts the
    # watched run at once instead of leaving it until the backstop; a waiting watcher
    # would have been left alone (the test below), and so is this one once it is back.
    start = clock.now()
    eng, _ = _engine(clock, 0.0, 0.02)
    t0 = clock.time()
    eng.planner.entries["t0"].took = 0.001  # known short: the watcher keeps its claim
    seq, _ = eng.claim_watch() or (0, 0.0)
    mine, _, _, claim = eng.watch_tick(seq)
    assert mine is not None and claim is not None and eng.watch_busy
    clock.set(t0 + 0.02 + WATCH_BACKSTOP / 5)  # the handler overran t1's due time
    starts, _, _ = eng.tick_plan()
    assert [r.entry.task_id for r in starts] == ["t1"] and eng.watch_at is None
    # The watcher finds its claim revoked when its handler ends: nothing twice.
    nxt, _, new = eng.finish_watch(mine, mine.token, None, None, claim)
    assert nxt is None and new is None and eng.busy == 1
    # Back from a handler and waiting: a claim is not taken over before the backstop.
    eng2, _ = _engine(FakeClock(start), 0.0, 0.02)
    eng2.planner.entries["t0"].took = 0.001
    seq2, _ = eng2.claim_watch() or (0, 0.0)
    mine2, _, _, claim2 = eng2.watch_tick(seq2)
    assert mine2 is not None and claim2 is not None
    assert eng2.finish_watch(mine2, mine2.token, None, None, claim2)[0] is None
    assert not eng2.watch_busy


def test_a_timer_tick_just_after_the_watched_time_leaves_its_runs_to_the_watcher(
        clock: FakeClock) -> None:
    # The watcher's wake-up is a little late; the timer thread, woken meanwhile for an
    # earlier backstop, must not take the watched run (two wake-ups more) before the
    # backstop, but it still starts what fell due before the watched time.
    eng, _ = _engine(clock, 0.01, 0.02)
    seq, at = eng.claim_watch() or (0, 0.0)
    eng.add_task(Task(id="sooner", handler=_noop,
                      schedule=every(seconds=1, start_at=at_s(0.005))))
    clock.set(at + WATCH_BACKSTOP / 5)
    starts, _, until = eng.tick_plan()
    assert [r.entry.task_id for r in starts] == ["sooner"]
    assert eng.watch_at == at and until == pytest.approx(at + WATCH_BACKSTOP)
    mine, others, _, _ = eng.watch_tick(seq)
    assert mine is not None and mine.entry.task_id == "t0" and others == []


def test_a_task_due_before_the_watched_time_wakes_the_timer(clock: FakeClock) -> None:
    eng, wakes = _engine(clock, 0.03)
    assert eng.claim_watch() is not None
    eng.add_task(Task(id="later", handler=_noop,
                      schedule=every(seconds=1, start_at=at_s(0.04))))
    assert wakes == []  # after the watched time: the watcher's tick will see it
    eng.add_task(Task(id="sooner", handler=_noop,
                      schedule=every(seconds=1, start_at=at_s(0.01))))
    assert wakes == [1]


def test_stopping_ends_the_watch(clock: FakeClock) -> None:
    eng, _ = _engine(clock, 0.01)
    seq, at = eng.claim_watch() or (0, 0.0)
    eng.begin_stop()
    clock.set(at)
    assert eng.watch_at is None and eng.watch_tick(seq) == (None, [], [], None)
    assert eng.claim_watch() is None


def test_a_worker_ending_its_run_claims_the_watch_in_the_same_step(clock: FakeClock) -> None:
    eng, _ = _engine(clock, 0.0, 0.02)
    starts, _, _ = eng.tick_plan()
    (run,) = starts
    nxt, _, claim = eng.finish_watch(run, run.token, None, None, None)
    assert nxt is None and claim is not None
    assert claim[1] == pytest.approx(clock.time() + 0.02) and eng.watch_at == claim[1]
    assert run.entry.took == 0.0  # how long the attempt took (no fake time passed)
    # A worker that already watches (it kept its claim through the run) claims nothing.
    eng2, _ = _engine(FakeClock(clock.now()), 0.0, 0.02)
    (run2,) = eng2.tick_plan()[0]
    assert eng2.finish_watch(run2, run2.token, None, None, (eng2.watch_seq, 0.0))[2] is None
    assert eng2.watch_at is None


def test_a_slow_attempt_is_remembered_over_the_fast_ones_after_it(clock: FakeClock) -> None:
    # A task that is sometimes slow is not trusted to be short (watching keeps its claim
    # and the ramp holds ready runs only for tasks that are short): the figure is the
    # longest recent attempt, decaying by TOOK_DECAY per attempt.
    from tickwork._engine import TOOK_DECAY

    eng, _ = _engine(clock, 0.0)
    durations = [0.015, 0.0, 0.0]
    for i, d in enumerate(durations):
        clock.set(at_s(i))
        (run,) = eng.tick_plan()[0]
        clock.set(clock.time() + d)
        _finish(eng, run)
    took = eng.planner.entries["t0"].took
    assert took == pytest.approx(0.015 * TOOK_DECAY ** 2, abs=1e-6)
