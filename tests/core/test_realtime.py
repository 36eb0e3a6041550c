"""Real threads and the real clock: no polling, exact timers, and a concurrency stress test.

These poll with deadlines and assert generous bounds; precise latency lives in bench/.
"""

from __future__ import annotations

import itertools
import random
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tickwork import RetryPolicy, RunStatus, Scheduler, Task, TaskNotFoundError, at, every

from .conftest import wait_for

pytestmark = pytest.mark.realtime


def _noop() -> None:
    return None


def test_idle_scheduler_does_not_poll() -> None:
    # Seed weakness: a 100 ms ticker. Here the timer thread sleeps until the next due time.
    s = Scheduler(timezone="UTC", max_workers=4)
    schedule = every(hours=1, start_at=datetime.now(UTC) + timedelta(hours=1))
    for i in range(100_000):
        s.add_task(Task(id=f"t{i}", handler=_noop, schedule=schedule))
    ticks = 0
    tick, tick_plan = s._engine.tick, s._engine.tick_plan

    def counting_tick() -> Any:
        nonlocal ticks
        ticks += 1
        return tick()

    def counting_tick_plan() -> Any:  # the timer's tick with the real clock
        nonlocal ticks
        ticks += 1
        return tick_plan()

    s._engine.tick = counting_tick  # type: ignore[method-assign]
    s._engine.tick_plan = counting_tick_plan  # type: ignore[method-assign]
    s.start()
    try:
        wait_for(lambda: ticks >= 1)
        time.sleep(0.05)
        before_ticks = ticks
        cpu0 = time.process_time()
        time.sleep(1.0)
        cpu = time.process_time() - cpu0
        assert ticks == before_ticks  # no wake-up at all in a second
        assert cpu < 0.2, f"idle scheduler used {cpu:.3f}s CPU in 1s"
        assert s.get_stats()["total_runs"] == 0
    finally:
        s.stop()


def test_due_task_starts_on_time() -> None:
    s = Scheduler(timezone="UTC")
    late: list[float] = []
    with s:
        for i in range(5):
            due = time.time() + 0.15
            s.add_task(Task(id=f"x{i}", handler=lambda due=due: late.append(time.time() - due),
                            schedule=at(datetime.fromtimestamp(due, UTC))))
            wait_for(lambda i=i: len(late) == i + 1)
    assert all(-0.001 <= d < 0.2 for d in late), late


def test_stress_concurrent_api_calls_while_running() -> None:
    s = Scheduler(timezone="UTC", max_workers=8, retry_delay=0.01)
    errors: list[BaseException] = []
    removed: set[str] = set()
    ids_lock = threading.Lock()
    live: list[str] = []
    counter = iter(range(10**9))

    def handler(ctx: Any) -> None:
        if random.random() < 0.2:
            raise ValueError("flaky")
        time.sleep(random.random() * 0.002)

    def add() -> None:
        tid = f"s{next(counter)}"
        s.add_task(Task(id=tid, handler=handler, schedule=every(seconds=0.01),
                        retry=RetryPolicy(max_retries=1, delay=timedelta(seconds=0.005))))
        with ids_lock:
            live.append(tid)

    for _ in range(20):
        add()
    stop_at = time.monotonic() + 2.0

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        try:
            while time.monotonic() < stop_at:
                op = rng.randrange(6)
                if op == 0:
                    add()
                    continue
                with ids_lock:
                    if not live:
                        continue
                    tid = rng.choice(live)
                    if op == 1:
                        live.remove(tid)
                        removed.add(tid)
                try:
                    if op == 1:
                        s.remove_task(tid)
                    elif op == 2:
                        s.disable_task(tid)
                    elif op == 3:
                        s.enable_task(tid)
                    elif op == 4:
                        s.run_now(tid)
                    else:
                        s.get_task(tid)
                        s.list_tasks()
                        s.get_stats()
                        s.get_history(tid, limit=5)
                except TaskNotFoundError:
                    # another thread removed it between our pick and the call
                    with ids_lock:
                        if tid not in removed:
                            raise
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    s.start()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    s.stop(timeout=5)
    assert errors == []
    stats = s.get_stats()
    assert stats["running_tasks"] == 0
    assert s._engine.busy == 0
    tasks = s.list_tasks()
    assert sorted(t.id for t in tasks) == sorted(live)
    assert stats["total_tasks"] == len(live)
    hist = s.get_history(limit=100_000)
    execs = [r for r in hist if r.status not in (RunStatus.SKIPPED, RunStatus.MISSED)]
    assert stats["total_runs"] > 100
    assert len(hist) < 10_000, "history overflowed; lower the load"
    assert len(execs) == stats["total_runs"]
    per_task: dict[str, int] = {}
    for r in execs:
        per_task[r.task_id] = per_task.get(r.task_id, 0) + 1
    for t in tasks:
        assert t.run_count == per_task.get(t.id, 0), t.id
        fails = sum(1 for r in execs if r.task_id == t.id and r.status is not RunStatus.SUCCEEDED)
        assert t.error_count == fails
    removed_runs = sum(n for tid, n in per_task.items() if tid in removed)
    assert sum(t.run_count for t in tasks) + removed_runs == stats["total_runs"]
    assert stats["total_errors"] == sum(
        1 for r in execs if r.status is not RunStatus.SUCCEEDED)
    assert len({r.run_id for r in hist}) == len(hist)


def test_a_burst_of_long_handlers_still_runs_them_side_by_side() -> None:
    # Bursts ramp up (Engine.tick_plan): short runs are taken in turn by a warm worker,
    # but handlers that keep their workers busy must each get one soon, not one by one.
    s = Scheduler(timezone="UTC", max_workers=8)
    started: list[float] = []
    release = threading.Event()
    due = time.time() + 0.3

    def long_handler() -> None:
        started.append(time.time())
        release.wait(10)

    with s:
        for i in range(8):
            s.add_task(Task(id=f"long{i}", handler=long_handler,
                            schedule=at(datetime.fromtimestamp(due, UTC))))
        wait_for(lambda: len(started) == 8, timeout=10)
        spread = max(started) - min(started)
        release.set()
    assert spread < 0.5, f"the 8 long runs started over {spread:.3f}s"


def test_a_burst_of_short_runs_all_complete_in_priority_order() -> None:
    s = Scheduler(timezone="UTC", max_workers=4)
    taken: list[tuple[int, int]] = []
    due = time.time() + 0.3

    def handler(ctx: Any, i: int) -> None:
        # The order runs were taken in: run ids count up under the engine lock (a worker
        # may be preempted between taking a run and calling it, so the order of the
        # handlers' own appends can differ by many places).
        taken.append((int(ctx.run_id.rsplit("-", 1)[1], 16), i))

    with s:
        for i in range(300):
            s.add_task(Task(id=f"b{i}", handler=lambda ctx, i=i: handler(ctx, i),
                            priority=i % 3, schedule=at(datetime.fromtimestamp(due, UTC))))
        wait_for(lambda: len(taken) == 300, timeout=10)
    order = [i for _, i in sorted(taken)]
    assert [i % 3 for i in order] == [2] * 100 + [1] * 100 + [0] * 100
    assert order[:3] == [2, 5, 8]  # equal priority: the order they were added in


def test_a_watching_worker_stuck_in_a_handler_is_backed_up_by_the_timer() -> None:
    # A worker that ran a fast handler watches the next due time itself (Engine.
    # watch_tick) and keeps watching while it runs the next fast one. When that handler
    # is suddenly slow, the timer thread's backstop starts what falls due meanwhile on
    # another worker, WATCH_BACKSTOP later, instead of after the slow handler.
    s = Scheduler(timezone="UTC", max_workers=4)
    s0 = time.time() + 0.3
    calls = 0
    late: list[float] = []
    planned: list[float] = []

    def sometimes_slow() -> None:
        nonlocal calls
        calls += 1
        if calls == 5:
            time.sleep(0.3)

    def punctual(ctx: Any) -> None:
        planned.append(ctx.scheduled_for.timestamp())
        late.append(time.time() - planned[-1])

    with s:
        # every 80 ms, b 40 ms after a: both gaps are within the watch horizon (50 ms)
        s.add_task(Task(id="a", handler=sometimes_slow, schedule=every(
            seconds=0.08, start_at=datetime.fromtimestamp(s0, UTC), fixed_rate=True)))
        s.add_task(Task(id="b", handler=punctual, schedule=every(
            seconds=0.08, start_at=datetime.fromtimestamp(s0 + 0.04, UTC), fixed_rate=True)))
        wait_for(lambda: calls >= 7 and len(late) >= 10, timeout=10)
        claims = s._engine.watch_seq
    assert claims > 5  # workers did watch
    # b ran every occurrence (none missed while a was slow), each soon after it was due
    gaps = [round(y - x, 3) for x, y in itertools.pairwise(planned)]
    assert gaps == [0.08] * len(gaps), gaps
    assert max(late) < 0.06, [round(x, 4) for x in late]
