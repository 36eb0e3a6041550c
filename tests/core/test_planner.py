"""Table tests straight on the pure planner (_core.Planner): no clock, no threads."""

from __future__ import annotations

import random
from datetime import UTC, timedelta

import pytest

from tickwork import RetryPolicy, RunStatus, every
from tickwork._core import Done, Entry, Occurrence, Planner, Retrying, Run, Timeout
from tickwork._timing import compile_schedule

T = 1_000_000.0


def entry(task_id: str, *, minutes: float = 1, fixed_rate: bool = True, jitter: float = 0.0,
          grace: float | None = None, **kw: object) -> Entry:
    timing = compile_schedule(every(minutes=minutes, fixed_rate=fixed_rate,
                                    jitter=jitter or None), UTC, task_id)
    e = Entry(task_id=task_id, seq=0, timing=timing, **kw)  # type: ignore[arg-type]
    if grace is not None:
        e.misfire_grace = timedelta(seconds=grace)  # Entry.grace reads the definition's
    return e


def starts(decisions: list[object]) -> list[str]:
    return [d.entry.task_id for d in decisions if isinstance(d, Run)]


def finish(p: Planner, run: Run, now: float, error: str | None = None) -> object:
    out = p.attempt_finished(run, run.token, now, error=error)
    if isinstance(out, Done):
        p.release(run, now)
    return out


@pytest.mark.parametrize(
    ("specs", "free", "expected"),
    [
        # (id, priority) in add order; free workers; expected start order
        ([("low", 0), ("high", 100), ("mid", 50)], 1, ["high"]),
        ([("low", 0), ("high", 100), ("mid", 50)], 2, ["high", "mid"]),
        ([("low", 0), ("high", 100), ("mid", 50)], 3, ["high", "mid", "low"]),
        ([("a", 50), ("b", 50), ("c", 50)], 3, ["a", "b", "c"]),  # ties: add order
        ([("c", 50), ("b", 50), ("a", 50)], 2, ["c", "b"]),
        ([("x", -5), ("y", 7)], 2, ["y", "x"]),
    ],
)
def test_priority_order_when_saturated(specs: list[tuple[str, int]], free: int,
                                       expected: list[str]) -> None:
    p = Planner()
    for tid, prio in specs:
        p.add(entry(tid, priority=prio), T)
    assert starts(p.collect(T, free)) == expected


def test_priority_then_planned_time() -> None:
    p = Planner()
    p.add(entry("late", priority=50), T + 5)
    p.add(entry("early", priority=50), T)
    # "late" was added first but is planned later: earlier planned time wins on equal priority
    assert starts(p.collect(T + 10, 1)) == ["early"]


def test_saturated_queue_drains_in_priority_order() -> None:
    p = Planner()
    for tid, prio in [("l", 0), ("h", 100), ("m", 50)]:
        p.add(entry(tid, priority=prio), T)
    order = []
    now = T
    for _ in range(3):
        ds = p.collect(now, 1)
        (run,) = [d for d in ds if isinstance(d, Run)]
        order.append(run.entry.task_id)
        now += 1
        finish(p, run, now)
    assert order == ["h", "m", "l"]


def test_dependency_waits_runs_and_skips() -> None:
    p = Planner()
    p.add(entry("prep"), T + 10)  # first run at T+10
    p.add(entry("proc", deps=("prep",)), T)
    # due at T but prep never ran: parked, nothing starts
    assert starts(p.collect(T, 4)) == []
    assert p.entries["proc"].parked
    ds = p.collect(T + 10, 4)
    assert starts(ds) == ["prep"]
    (run,) = [d for d in ds if isinstance(d, Run)]
    # prep running: still waiting
    assert starts(p.collect(T + 11, 4)) == []
    finish(p, run, T + 12)  # success: proc unblocked
    ds = p.collect(T + 12, 4)
    assert starts(ds) == ["proc"]
    proc_run = next(d for d in ds if isinstance(d, Run))
    assert proc_run.scheduled_for == T  # the occurrence it waited for
    finish(p, proc_run, T + 13)


def test_dependency_failed_skips_occurrence_and_plans_next() -> None:
    # Seed bug: documented but not done.
    p = Planner(default_retry=RetryPolicy(max_retries=0))
    p.add(entry("prep", minutes=60), T)
    p.add(entry("proc", minutes=1, deps=("prep",)), T + 1)
    run = next(d for d in p.collect(T, 4) if isinstance(d, Run))
    assert run.entry.task_id == "prep"
    assert isinstance(p.attempt_finished(run, run.token, T, error="ValueError: x"), Done)
    p.release(run, T)
    ds = p.collect(T + 1, 4)
    assert starts(ds) == []
    (occ,) = [d for d in ds if isinstance(d, Occurrence)]
    assert occ.status is RunStatus.SKIPPED and occ.scheduled_for == T + 1
    assert "'prep'" in occ.reason and "failed" in occ.reason
    assert p.entries["proc"].next_nominal == T + 61
    assert p.entries["proc"].run_count == 0


def test_retry_outcomes_and_backoff() -> None:
    p = Planner(default_retry=RetryPolicy(max_retries=3, delay=timedelta(seconds=5)))
    p.add(entry("r", minutes=60), T)
    run = next(d for d in p.collect(T, 1) if isinstance(d, Run))
    now = T
    delays = []
    for _ in range(3):
        out = p.attempt_finished(run, run.token, now, error="E: x")
        assert isinstance(out, Retrying)
        delays.append(out.at - now)
        now = out.at
        assert [d for d in p.collect(now, 1) if isinstance(d, Run)] == [run]
    assert delays == [5.0, 10.0, 20.0]
    out = p.attempt_finished(run, run.token, now, error="E: x")
    assert isinstance(out, Done) and out.run.status is RunStatus.FAILED
    assert out.run.attempt == 4


def test_stale_attempt_is_ignored_after_timeout() -> None:
    p = Planner(default_retry=RetryPolicy(max_retries=0))
    p.add(entry("t", timeout=5.0), T)
    run = next(d for d in p.collect(T, 1) if isinstance(d, Run))
    tok = run.token
    ds = p.collect(T + 5, 1)
    assert [type(d) for d in ds] == [Timeout]
    out = p.attempt_finished(run, tok, T + 5, error="TimeoutError: x", timed_out=True)
    assert isinstance(out, Done) and out.run.status is RunStatus.TIMED_OUT
    # the handler returns later: stale, no second outcome
    assert p.attempt_finished(run, tok, T + 9, error=None) is None


@pytest.mark.parametrize(
    ("grace", "down_until", "run_at", "missed"),
    [
        (None, 300.0, 300.0, []),                 # collapse into one run (latest occurrence)
        (30.0, 300.0, 300.0, [0.0, 60.0, 120.0, 180.0, 240.0]),
        (30.0, 310.0, 300.0, [0.0, 60.0, 120.0, 180.0, 240.0]),
        (5.0, 310.0, None, [0.0, 60.0, 120.0, 180.0, 240.0, 300.0]),
        (1000.0, 300.0, 300.0, []),
    ],
)
def test_misfires(grace: float | None, down_until: float, run_at: float | None,
                  missed: list[float]) -> None:
    p = Planner()
    p.add(entry("m", grace=grace), T)
    ds = p.collect(T + down_until, 1)
    got_missed = [d.scheduled_for - T for d in ds
                  if isinstance(d, Occurrence) and d.status is RunStatus.MISSED]
    got_runs = [d.scheduled_for - T for d in ds if isinstance(d, Run)]
    assert got_missed == missed
    assert got_runs == ([] if run_at is None else [run_at])
    assert p.entries["m"].next_nominal == T + 360.0


@pytest.mark.parametrize(("grace", "late", "runs"),
                         [(None, 59.0, True), (30.0, 30.0, True), (30.0, 30.5, False)])
def test_an_occurrence_on_time_starts_and_plans_the_next(grace: float | None, late: float,
                                                         runs: bool) -> None:
    # The next occurrence still ahead: the planner's shortcut past the catch-up walk
    # (one next_after) must decide what the walk decides, up to the grace's edge.
    p = Planner()
    p.add(entry("o", grace=grace), T)
    ds = p.collect(T + late, 1)
    got_missed = [d.scheduled_for - T for d in ds if isinstance(d, Occurrence)]
    assert starts(ds) == (["o"] if runs else [])
    assert got_missed == ([] if runs else [0.0])
    e = p.entries["o"]
    assert e.next_nominal == e.next_due == T + 60.0
    assert p.next_wakeup() == T + 60.0


def test_missed_summary_is_bounded() -> None:
    p = Planner()
    e = Entry(task_id="s", seq=0, timing=compile_schedule(every(seconds=1, fixed_rate=True),
                                                          UTC, "s"))
    e.misfire_grace = timedelta(seconds=0.5)
    p.add(e, T)
    ds = p.collect(T + 86_400 * 365, 1)
    occ = [d for d in ds if isinstance(d, Occurrence)]
    assert len(occ) == 101  # 100 one by one + one summary
    assert "more occurrences" in occ[-1].reason


def test_jitter_planned_in_range() -> None:
    p = Planner(rng=random.Random(1))
    for i in range(200):
        p.add(entry(f"j{i}", jitter=10.0), T)
    dues = [e.next_due - T for e in p.entries.values()]  # type: ignore[operator]
    assert all(0 <= d <= 10 for d in dues)
    assert max(dues) > 9 and min(dues) < 1


def test_max_instances_parks_and_release_requeues() -> None:
    p = Planner()
    p.add(entry("m", max_instances=1, minutes=1), T)
    run = next(d for d in p.collect(T, 4) if isinstance(d, Run))
    assert starts(p.collect(T + 60, 4)) == []
    assert p.entries["m"].parked
    finish(p, run, T + 150)
    # the occurrences at 60 and 120 collapse into one run (misfire_grace None)
    ds = p.collect(T + 150, 4)
    assert [d.scheduled_for - T for d in ds if isinstance(d, Run)] == [120.0]


def test_run_now_ignores_schedule_and_waits_for_instance() -> None:
    p = Planner()
    p.add(entry("n", minutes=60), T)
    run = next(d for d in p.collect(T, 4) if isinstance(d, Run))
    p.run_now("n", T + 1)
    assert starts(p.collect(T + 1, 4)) == []  # max_instances=1 and one is running
    finish(p, run, T + 2)
    ds = p.collect(T + 2, 4)
    manual = [d for d in ds if isinstance(d, Run)]
    assert len(manual) == 1 and manual[0].manual
    assert p.entries["n"].next_nominal == T + 3600  # regular schedule unchanged


def test_disabled_and_unrunnable_never_start() -> None:
    p = Planner()
    p.add(entry("d", enabled=False), T)
    p.add(entry("o", runnable=False), T)
    assert starts(p.collect(T + 1000, 4)) == []
    assert p.next_wakeup() is None
    p.set_runnable("o", True)
    assert starts(p.collect(T + 1000, 4)) == ["o"]
