"""Two (or more) ``Scheduler`` instances on one PostgreSQL schema form one cluster.

Real time, real database, short lease (3 s). Each test polls with a deadline; the
invariants checked are the ones of API.md section 7: one execution per occurrence across
instances, definitions visible everywhere within a second, max_instances and
dependencies cluster-wide, takeover after a SIGKILL, fencing, skewed clocks, clean stop.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest

from tickwork import RetryPolicy, Scheduler, Task, TaskNotFoundError, at, every
from tickwork._clock import SystemClock
from tickwork._serde import task_to_dict
from tickwork.cluster import reap

pytestmark = pytest.mark.postgres
postgres = pytest.importorskip("tickwork.stores.postgres")

LEASE = timedelta(seconds=3)
T = TypeVar("T")
HERE = Path(__file__).resolve().parent


def wait_for(what: str, fn: Callable[[], T], timeout: float = 10.0) -> T:
    deadline = time.monotonic() + timeout
    while True:
        got = fn()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


class OffsetClock(SystemClock):
    """The system clock, shifted: an instance whose wall clock is wrong by ``offset``."""

    def __init__(self, offset: float) -> None:
        self.offset = offset

    def time(self) -> float:
        return time.time() + self.offset

    def wait(self, cond: threading.Condition, until: float | None) -> None:
        timeout = 60.0 if until is None else min(max(until - self.time(), 0.0), 60.0)
        if timeout > 0:
            cond.wait(timeout)


class Cluster:
    """Schedulers sharing one schema; everything is stopped at the end."""

    def __init__(self, dsn: str, schema: str) -> None:
        self.dsn, self.schema = dsn, schema
        self.scheds: list[Scheduler] = []
        self.stores: list[Any] = []
        self.admin = postgres.PostgresTaskStore(dsn, schema=schema, lease=LEASE)
        self.conn = self.admin.connect()

    def new(self, **kw: Any) -> Scheduler:
        store = postgres.PostgresTaskStore(self.dsn, schema=self.schema, lease=LEASE)
        s = Scheduler(store=store, max_workers=kw.pop("max_workers", 4), **kw)
        self.scheds.append(s)
        self.stores.append(store)
        return s

    def rows(self, where: str = "true", *args: Any) -> list[tuple[Any, ...]]:
        got: list[tuple[Any, ...]] = self.conn.execute(
            "SELECT task_id, scheduled_for, status, attempts, instance_id, manual, error, "
            f"started_at, finished_at FROM tw_run WHERE {where} ORDER BY seq", args).fetchall()
        return got

    def close(self) -> None:
        for s in self.scheds:
            s.stop(timeout=5)
        for st in self.stores:
            st.close()
        self.conn.close()
        self.admin.close()


@pytest.fixture
def cluster(pg_dsn: str, new_schema: Callable[[], str]) -> Iterator[Cluster]:
    c = Cluster(pg_dsn, new_schema())
    yield c
    c.close()


class Recorder:
    """A handler factory logging (run_key, instance, start, end) thread-safely."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.log: list[tuple[str, str, float, float]] = []

    def handler(self, name: str, sleep: float = 0.0, fail: bool = False) -> Callable[[Any], None]:
        def h(ctx: Any) -> None:
            t0 = time.monotonic()
            if sleep:
                time.sleep(sleep)
            with self.lock:
                self.log.append((ctx.run_key, name, t0, time.monotonic()))
            if fail:
                raise RuntimeError("boom")
        return h

    def run_keys(self) -> list[str]:
        with self.lock:
            return [k for k, *_ in self.log]


def grid_start(seconds: float = 1.5) -> datetime:
    """A whole second a little in the future: interval grids with known occurrences."""
    t = datetime.now(UTC) + timedelta(seconds=seconds)
    return t.replace(microsecond=0)


def test_each_occurrence_runs_once_across_two_instances(cluster: Cluster) -> None:
    rec = Recorder()
    a, b = cluster.new(), cluster.new()
    a.register_handler("tick", rec.handler("A"))
    b.register_handler("tick", rec.handler("B"))
    start = grid_start()
    a.add_task(Task(id="tick", handler="tick",
                    schedule=every(seconds=1, fixed_rate=True, start_at=start)))
    a.start()
    b.start()
    wait_for("6 occurrences", lambda: len(set(rec.run_keys())) >= 6, timeout=15)
    a.stop()
    b.stop()
    keys = rec.run_keys()
    assert len(keys) == len(set(keys)), f"an occurrence ran twice: {sorted(keys)}"
    # No gaps: consecutive whole seconds from the grid start.
    want = [f"tick@{(start + timedelta(seconds=i)):%Y-%m-%dT%H:%M:%S%z}" for i in range(6)]
    assert sorted(keys)[:6] == want
    done = cluster.rows("task_id = 'tick' AND status = 'succeeded'")
    assert len(done) == len({r[1] for r in done}) == len(keys)


def test_definitions_from_one_instance_are_seen_by_another_within_a_second(
        cluster: Cluster) -> None:
    a, b = cluster.new(), cluster.new()
    for s in (a, b):
        s.register_handler("noop", lambda: None)
    a.start()
    b.start()
    later = every(hours=1, fixed_rate=True, start_at=datetime.now(UTC) + timedelta(hours=1))
    a.add_task(Task(id="x", handler="noop", schedule=later))
    t0 = time.monotonic()

    def seen() -> bool:
        try:
            b.get_task("x")
            return True
        except TaskNotFoundError:
            return False

    wait_for("B to see A's new task", seen, timeout=1.0)
    assert time.monotonic() - t0 < 1.0
    a.disable_task("x")
    wait_for("B to see the task disabled", lambda: not b.get_task("x").enabled, timeout=1.0)
    a.update_task("x", priority=7)
    wait_for("B to see the update", lambda: b.get_task("x").priority == 7, timeout=1.0)
    a.remove_task("x")
    wait_for("B to see the removal", lambda: not seen(), timeout=1.0)
    assert [t.id for t in b.list_tasks()] == []


def test_run_now_through_another_instance(cluster: Cluster) -> None:
    rec = Recorder()
    a, b = cluster.new(), cluster.new()
    a.register_handler("job", rec.handler("A"))
    b.register_handler("job", rec.handler("B"))
    later = every(hours=1, fixed_rate=True, start_at=datetime.now(UTC) + timedelta(hours=1))
    a.add_task(Task(id="job", handler="job", schedule=later))
    a.start()
    b.start()
    wait_for("B knows the task", lambda: b.get_task("job"), timeout=2)
    b.run_now("job")
    wait_for("the manual run", lambda: rec.run_keys(), timeout=5)
    wait_for("its outcome", lambda: cluster.rows("status = 'succeeded'"), timeout=5)
    time.sleep(0.5)  # a duplicate would show up now
    assert len(rec.run_keys()) == 1
    [row] = cluster.rows("task_id = 'job'")
    assert row[2] == "succeeded" and row[5] is True
    with pytest.raises(TaskNotFoundError):
        b.run_now("nope")


def test_max_instances_one_holds_cluster_wide(cluster: Cluster) -> None:
    rec = Recorder()
    a, b = cluster.new(), cluster.new()
    for s, n in ((a, "A"), (b, "B")):
        s.register_handler("slow", rec.handler(n, sleep=0.4))
    # Due every 0.2 s but each run takes 0.4 s: without a cluster-wide limit A and B
    # would run two at once.
    a.add_task(Task(id="slow", handler="slow", max_instances=1,
                    schedule=every(seconds=0.2, fixed_rate=True, start_at=grid_start(1))))
    a.start()
    b.start()
    wait_for("8 runs", lambda: len(rec.run_keys()) >= 8, timeout=20)
    a.stop()
    b.stop()
    with rec.lock:
        spans = sorted((s, e, who) for _k, who, s, e in rec.log)
    assert {who for *_x, who in spans} == {"A", "B"}, "both instances should have run it"
    for (_s1, e1, w1), (s2, _e2, w2) in itertools.pairwise(spans):
        assert s2 >= e1 - 0.01, f"overlap: {w1} until {e1}, {w2} from {s2}"


def test_dependencies_hold_across_instances(cluster: Cluster) -> None:
    rec = Recorder()
    a, b = cluster.new(), cluster.new()
    # Each instance can run only one of the two: the dependency is checked in the DB.
    a.register_handler("up", rec.handler("up", sleep=0.3))
    b.register_handler("down", rec.handler("down"))
    a.register_handler("bad", rec.handler("bad", fail=True))
    b.register_handler("after_bad", rec.handler("after_bad"))
    start = grid_start()
    sched = every(seconds=1, fixed_rate=True, start_at=start)
    a.add_task(Task(id="up", handler="up", schedule=sched))
    a.add_task(Task(id="down", handler="down", schedule=sched, dependencies=["up"]))
    a.add_task(Task(id="bad", handler="bad", schedule=sched, retry=RetryPolicy(max_retries=0)))
    a.add_task(Task(id="after_bad", handler="after_bad", schedule=sched, dependencies=["bad"]))
    a.start()
    b.start()
    wait_for("down ran", lambda: any(k.startswith("down@") for k in rec.run_keys()), timeout=10)
    wait_for("after_bad skipped",
             lambda: cluster.rows("task_id = 'after_bad' AND status = 'skipped'"), timeout=10)
    a.stop()
    b.stop()
    with rec.lock:
        first_up_end = min(e for k, _w, _s, e in rec.log if k.startswith("up@"))
        first_down = min(s for k, _w, s, _e in rec.log if k.startswith("down@"))
    assert first_down >= first_up_end
    assert not any(k.startswith("after_bad@") for k in rec.run_keys())
    skipped = cluster.rows("task_id = 'after_bad' AND status = 'skipped'")
    assert skipped[0][6] == "dependency bad failed"


def _spawn(cluster: Cluster) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=str(HERE.parents[1] / "src"))
    p = subprocess.Popen(
        [sys.executable, str(HERE / "_instance.py"), cluster.dsn, cluster.schema,
         str(LEASE.total_seconds())], stdout=subprocess.PIPE, text=True, env=env)
    assert p.stdout is not None
    assert p.stdout.readline().strip() == "ready"
    return p


@pytest.mark.parametrize("on_loss", ["retry", "fail"])
def test_a_killed_instance_s_run_is_taken_over_after_the_lease(
        cluster: Cluster, on_loss: str) -> None:
    proc = _spawn(cluster)
    try:
        b = cluster.new()
        took_over = threading.Event()
        # This instance cannot run 'slow' until the child holds it: then it can.
        when = datetime.now(UTC) + timedelta(seconds=0.5)
        task = Task(id="slow", handler="slow", on_lease_loss=on_loss,  # type: ignore[arg-type]
                    schedule=at(when))
        cluster.admin.upsert_definition(task_to_dict(task, handler_ref="slow"),
                                        lambda _d, _now: when)
        got = wait_for("the child to claim the run",
                       lambda: cluster.rows("task_id = 'slow' AND status = 'running'"),
                       timeout=10)
        child_instance = got[0][4]
        b.register_handler("slow", lambda: took_over.set())
        b.start()
        time.sleep(0.3)
        assert not took_over.is_set(), "taken over while the child's lease was alive"
        killed = time.monotonic()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)
        if on_loss == "retry":
            wait_for("the takeover", took_over.is_set, timeout=LEASE.total_seconds() * 3)
            took = time.monotonic() - killed
            # lease + reaper period (lease/3 +- 20 %) + wake-up
            assert took <= LEASE.total_seconds() * 1.5 + 1.0, f"takeover took {took:.1f}s"
            wait_for("the outcome", lambda: cluster.rows(
                "task_id = 'slow' AND status <> 'running'"), timeout=5)
            rows = cluster.rows("task_id = 'slow'")
            assert len(rows) == 1, rows
            [row] = rows
            assert row[2] == "succeeded" and row[3] == 2 and row[4] != child_instance
        else:
            wait_for("the lost run to fail",
                     lambda: cluster.rows("task_id = 'slow' AND status = 'failed'"),
                     timeout=LEASE.total_seconds() * 3)
            time.sleep(0.5)
            assert not took_over.is_set(), "on_lease_loss='fail' must not run it again"
            [row] = cluster.rows("task_id = 'slow'")
            assert "lease expired" in (row[6] or "")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_paused_holder_is_fenced_out(cluster: Cluster) -> None:
    """The holder's lease is taken (we simulate its pause by expiring the lease in the
    database); its late outcome is refused and counted, the new holder's stands."""
    release = threading.Event()
    ran: list[str] = []
    a = cluster.new(max_workers=1)  # busy with the held run: cannot claim it again

    def held(ctx: Any) -> None:
        ran.append("A")
        release.wait(10)

    a.register_handler("job", held)
    a.add_task(Task(id="job", handler="job", schedule=every(hours=1, fixed_rate=True),
                    retry=RetryPolicy(max_retries=0, delay=timedelta(0))))
    a.start()
    wait_for("A running the job", lambda: ran, timeout=5)
    # A "paused": its lease lapses, is reaped, and another instance re-claims the run.
    cluster.conn.execute("UPDATE tw_run SET lease_until = now() - interval '1 s' "
                         "WHERE status = 'running'")
    assert [r.status for r in reap(cluster.conn)] == ["pending"]
    b = cluster.new()
    b.register_handler("job", lambda: ran.append("B"))
    b.start()
    wait_for("B re-ran it", lambda: "B" in ran, timeout=10)
    release.set()
    wait_for("A's outcome refused", lambda: a.get_stats()["cluster_fenced_out"] == 1, timeout=5)
    wait_for("B's outcome", lambda: cluster.rows("status = 'succeeded'"), timeout=5)
    [row] = cluster.rows("task_id = 'job'")
    assert row[2] == "succeeded" and row[3] == 2 and row[4] == b.instance_id


def test_skewed_clocks_neither_duplicate_nor_miss(cluster: Cluster) -> None:
    rec = Recorder()
    a = cluster.new(clock=OffsetClock(+300.0))
    b = cluster.new(clock=OffsetClock(-300.0))
    a.register_handler("tick", rec.handler("A"))
    b.register_handler("tick", rec.handler("B"))
    start = grid_start()
    b.add_task(Task(id="tick", handler="tick",
                    schedule=every(seconds=1, fixed_rate=True, start_at=start)))
    a.start()
    b.start()
    wait_for("5 occurrences", lambda: len(set(rec.run_keys())) >= 5, timeout=15)
    a.stop()
    b.stop()
    keys = rec.run_keys()
    assert len(keys) == len(set(keys))
    want = [f"tick@{(start + timedelta(seconds=i)):%Y-%m-%dT%H:%M:%S%z}" for i in range(5)]
    assert sorted(keys)[:5] == want
    # Planned by the database clock: the first occurrence is the grid start, not 5 min off.
    assert cluster.rows("task_id = 'tick'")[0][1] == start


def test_clean_stop_hands_nothing_over_twice(cluster: Cluster) -> None:
    rec = Recorder()
    a, b = cluster.new(), cluster.new()
    a.register_handler("job", rec.handler("A", sleep=1.0))
    a.add_task(Task(id="job", handler="job", schedule=every(hours=1, fixed_rate=True)))
    a.start()
    wait_for("A running", lambda: cluster.rows("status = 'running'"), timeout=5)
    b.register_handler("job", rec.handler("B"))
    b.start()
    a.stop()
    time.sleep(LEASE.total_seconds() + 1.5)  # a released or expired lease would re-run now
    assert [w for _k, w, *_ in rec.log] == ["A"]
    [row] = cluster.rows("task_id = 'job'")
    assert row[2] == "succeeded" and row[3] == 1
    assert a.get_stats()["cluster_fenced_out"] == 0


def test_retries_go_through_the_queue_and_events_are_published(cluster: Cluster) -> None:
    a = cluster.new()
    calls: list[int] = []
    events: list[tuple[str, int | None]] = []

    def flaky(ctx: Any) -> str:
        calls.append(ctx.attempt)
        if ctx.attempt == 1:
            raise RuntimeError("first attempt fails")
        return "ok"

    a.register_handler("flaky", flaky)
    a.subscribe(lambda e: events.append((e.type.value, e.attempt)))
    a.add_task(Task(id="flaky", handler="flaky", schedule=every(hours=1, fixed_rate=True),
                    retry=RetryPolicy(max_retries=2, delay=timedelta(seconds=0.2))))
    a.start()
    wait_for("the retry's outcome",
             lambda: cluster.rows("task_id = 'flaky' AND status = 'succeeded'"), timeout=10)
    [row] = cluster.rows("task_id = 'flaky'")
    assert row[3] == 2 and calls == [1, 2]
    wait_for("the terminal event", lambda: ("run_succeeded", 2) in events, timeout=2)
    assert [e for e in events if e[0].startswith("run_")] == [
        ("run_started", 1), ("run_retrying", 2), ("run_succeeded", 2)]
    snap = a.get_task("flaky")
    assert snap.run_count == 1 and snap.last_status is not None
    assert snap.last_status.value == "succeeded"
    [rec] = a.get_history("flaky")
    assert rec.status.value == "succeeded" and rec.result == "ok" and rec.attempts == 2


def test_a_timed_out_attempt_is_recorded_once(cluster: Cluster) -> None:
    a = cluster.new()
    a.register_handler("stuck", lambda ctx: ctx.wait(30))
    a.add_task(Task(id="stuck", handler="stuck", schedule=every(hours=1, fixed_rate=True),
                    timeout=timedelta(seconds=0.3), retry=RetryPolicy(max_retries=0)))
    a.start()
    got = wait_for("the timeout", lambda: cluster.rows("status = 'timed_out'"), timeout=10)
    assert "timed out" in (got[0][6] or "")
    assert a.get_stats()["cluster_fenced_out"] == 0


def test_async_scheduler_runs_in_cluster_mode(cluster: Cluster) -> None:
    from tickwork import AsyncScheduler

    store = postgres.PostgresTaskStore(cluster.dsn, schema=cluster.schema, lease=LEASE)
    cluster.stores.append(store)
    keys: list[str] = []

    async def handler(ctx: Any) -> str:
        keys.append(ctx.run_key)
        return "async ok"

    async def main() -> None:
        s = AsyncScheduler(store=store)
        await s.register_handler("h", handler)
        await s.add_task(Task(id="a", handler="h", schedule=every(hours=1, fixed_rate=True)))
        await s.start()
        deadline = time.monotonic() + 10
        while not cluster.rows("status = 'succeeded'") and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await s.stop()

    asyncio.run(main())
    [row] = cluster.rows("task_id = 'a'")
    assert row[2] == "succeeded" and len(keys) == 1
