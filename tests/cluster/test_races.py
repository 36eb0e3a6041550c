"""The cluster statements against a real PostgreSQL, with real concurrent connections.

Races use two (or more) connections in threads released together by a barrier; each
test states the invariant that a broken statement would violate (a second run row, two
winners, a stale fence writing, ...). Waits poll the database with a deadline."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any, TypeVar

import pytest

from tickwork import RetryPolicy, Task, every
from tickwork._serde import task_to_dict

pytestmark = pytest.mark.postgres
postgres = pytest.importorskip("tickwork.stores.postgres")
from tickwork.cluster import (  # noqa: E402 - after the skip
    Plan,
    Wakeups,
    claim,
    complete,
    db_now,
    enqueue_manual,
    heartbeat,
    materialise,
    materialise_due,
    planner_for,
    reap,
    run_key,
)

LEASE = timedelta(seconds=30)
T = TypeVar("T")
Conn = Any


@pytest.fixture
def store(pg_dsn: str, new_schema: Callable[[], str]) -> Iterator[Any]:
    s = postgres.PostgresTaskStore(pg_dsn, schema=new_schema())
    yield s
    s.close()


@pytest.fixture
def conns(store: Any) -> Iterator[Callable[[], Conn]]:
    opened: list[Conn] = []

    def new() -> Conn:
        c = store.connect()
        opened.append(c)
        return c

    yield new
    for c in opened:
        c.close()


def add(store: Any, task_id: str, next_run: datetime | None, **kw: Any) -> None:
    schedule = kw.pop("schedule", every(seconds=10, fixed_rate=True))
    t = Task(id=task_id, schedule=schedule, next_run=next_run, **kw)
    store.upsert_task(task_to_dict(t, handler_ref="x:y"), next_run or datetime.now())


def race(n: int, fn: Callable[[int], T]) -> list[T]:
    """Run ``fn(i)`` in ``n`` threads released together; results in thread order."""
    barrier = threading.Barrier(n)
    out: list[Any] = [None] * n
    errors: list[BaseException] = []

    def body(i: int) -> None:
        try:
            barrier.wait(timeout=10)
            out[i] = fn(i)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=body, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    if errors:
        raise errors[0]
    return out


def rows(c: Conn, where: str = "true", *args: Any) -> list[tuple[Any, ...]]:
    got: list[tuple[Any, ...]] = c.execute(
        f"SELECT task_id, scheduled_for, status, attempts, fence FROM tw_run WHERE {where} "
        "ORDER BY seq", args).fetchall()
    return got


def wait_for(what: str, fn: Callable[[], T], timeout: float = 10.0) -> T:
    deadline = time.monotonic() + timeout
    while True:
        got = fn()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def claim_one(c: Conn, me: str = "w1", lease: timedelta = LEASE) -> Any:
    got = claim(c, me, 1, lease)
    assert len(got) == 1, got
    return got[0]


# ------------------------------------------------------------------------ materialise


def test_two_materialisers_one_row(store: Any, conns: Callable[[], Conn]) -> None:
    c1, c2 = conns(), conns()
    now = db_now(c1)
    due = now - timedelta(seconds=1)
    add(store, "a", due)
    plan = Plan(run=due, next_run=due + timedelta(seconds=10))
    results = race(2, lambda i: materialise((c1, c2)[i], "a", due, plan))
    assert sorted(results) == [False, True], "exactly one CAS wins"
    assert [r[:3] for r in rows(c1)] == [("a", due, "pending")], "exactly one run row"
    got = c1.execute("SELECT next_run FROM tw_task WHERE id = 'a'").fetchone()
    assert got == (due + timedelta(seconds=10),)


def test_many_materialise_due_one_row_per_occurrence(store: Any,
                                                     conns: Callable[[], Conn]) -> None:
    c = [conns() for _ in range(4)]
    now = db_now(c[0])
    for i in range(20):
        add(store, f"t{i}", now - timedelta(seconds=25))
    plan = planner_for()
    race(4, lambda i: materialise_due(c[i], plan))
    race(4, lambda i: materialise_due(c[i], plan))  # again: nothing new is due
    add(store, "delay", now - timedelta(seconds=25), schedule=every(seconds=10))
    materialise_due(c[0], plan)
    assert c[0].execute("SELECT next_run FROM tw_task WHERE id = 'delay'").fetchone() == (
        None,), "fixed delay: the next occurrence is planned by the completion"
    c[0].execute("DELETE FROM tw_task WHERE id = 'delay'")
    c[0].execute("DELETE FROM tw_run WHERE task_id = 'delay'")
    got = c[0].execute("SELECT task_id, count(*) FROM tw_run WHERE status <> 'missed' "
                       "GROUP BY task_id").fetchall()
    assert sorted(got) == sorted((f"t{i}", 1) for i in range(20)), \
        "one (collapsed) run per task, never two"
    nxt = c[0].execute("SELECT DISTINCT next_run FROM tw_task").fetchall()
    # every 10 s anchored on now-25 s: the run is the one at now-5 s, the next at now+5 s
    assert nxt == [(now + timedelta(seconds=5),)]


def test_old_next_run_loses_the_cas_aba(store: Any, conns: Callable[[], Conn]) -> None:
    c = conns()
    now = db_now(c)
    old = now - timedelta(seconds=2)
    add(store, "a", old)
    # An update (through any instance) moves next_run; a materialiser that read the old
    # value before the update must change nothing.
    add(store, "a", now + timedelta(hours=1))
    ok = materialise(c, "a", old, Plan(run=old, next_run=old + timedelta(seconds=10)))
    assert ok is False
    assert rows(c) == [], "a lost CAS writes no run row"
    assert c.execute("SELECT next_run FROM tw_task").fetchone() == (now + timedelta(hours=1),)


def test_occurrence_identity_is_unique(store: Any, conns: Callable[[], Conn]) -> None:
    c = conns()
    due = db_now(c) - timedelta(seconds=1)
    add(store, "a", due)
    assert materialise(c, "a", due, Plan(run=due, next_run=due + timedelta(seconds=10)))
    add(store, "a", due)  # an update puts next_run back on an occurrence already written
    assert materialise(c, "a", due, Plan(run=due, next_run=due + timedelta(seconds=10)))
    assert len(rows(c)) == 1, "(task, planned time) is materialised once"


def test_missed_rows_past_misfire_grace(store: Any, conns: Callable[[], Conn]) -> None:
    c = conns()
    now = db_now(c)
    add(store, "g", now - timedelta(seconds=35), misfire_grace=timedelta(seconds=12))
    add(store, "collapse", now - timedelta(seconds=35))
    materialise_due(c, planner_for())
    g = rows(c, "task_id = 'g'")
    base = now - timedelta(seconds=35)
    # occurrences at -35, -25, -15, -5: the first three are older than the 12 s grace
    assert [(r[1] - base, r[2]) for r in g] == [
        (timedelta(0), "missed"), (timedelta(seconds=10), "missed"),
        (timedelta(seconds=20), "missed"), (timedelta(seconds=30), "pending")]
    collapsed = rows(c, "task_id = 'collapse'")
    # No grace: one run at the latest occurrence; the folded ones are visible as missed.
    assert [(r[1] - base, r[2]) for r in collapsed] == [
        (timedelta(0), "missed"), (timedelta(seconds=10), "missed"),
        (timedelta(seconds=20), "missed"), (timedelta(seconds=30), "pending")]
    reasons = {r.error for r in store.get_history("collapse")}
    assert len(reasons) == 1 and "coalesced into the run planned for" in reasons.pop()
    history = [r.status.value for r in store.get_history("g")]
    assert history == ["missed"] * 3, "missed rows are visible history"


def test_run_now_is_a_manual_row(store: Any, conns: Callable[[], Conn]) -> None:
    c = conns()
    add(store, "a", None)
    assert enqueue_manual(c, "a") is not None
    assert enqueue_manual(c, "nope") is None
    got = claim_one(c)
    assert got.manual and got.task_id == "a"


# ------------------------------------------------------------------------------ claim


def pending(c: Conn, task_id: str, at: datetime, **kw: Any) -> None:
    assert materialise(c, task_id, at, Plan(run=at, next_run=at + timedelta(days=1)))


def test_two_claimers_single_winner(store: Any, conns: Callable[[], Conn]) -> None:
    c1, c2 = conns(), conns()
    due = db_now(c1) - timedelta(seconds=1)
    add(store, "a", due)
    pending(c1, "a", due)
    for _ in range(20):  # repeat: the race window is small
        got = race(2, lambda i: claim((c1, c2)[i], f"w{i}", 1, LEASE))
        assert sorted(len(g) for g in got) == [0, 1], "one winner, one empty-handed"
        winner = next(g for g in got if g)[0]
        assert complete(c1, winner, "succeeded")
        c1.execute("UPDATE tw_run SET status = 'pending'")  # again, same row


def test_max_instances_1_never_two_running(store: Any, conns: Callable[[], Conn]) -> None:
    c = [conns() for _ in range(3)]
    now = db_now(c[0])
    add(store, "x", now - timedelta(seconds=30))
    for k in range(3):  # three ready occurrences of one exclusive task
        at = now - timedelta(seconds=30 - 10 * k)
        c[0].execute("UPDATE tw_task SET next_run = %s", (at,))
        pending(c[0], "x", at)
    got = race(3, lambda i: claim(c[i], f"w{i}", 5, LEASE))
    assert sum(len(g) for g in got) == 1, "max_instances=1: one running"
    first = next(g for g in got if g)[0]
    assert first.scheduled_for == now - timedelta(seconds=30), "oldest occurrence first"
    assert claim(c[0], "w0", 5, LEASE) == [], "nothing more while it runs"
    assert complete(c[0], first, "succeeded")
    assert len(claim(c[1], "w1", 5, LEASE)) == 1, "the next one once it finished"


def test_max_instances_n_is_a_cluster_limit(store: Any, conns: Callable[[], Conn]) -> None:
    c = [conns() for _ in range(4)]
    now = db_now(c[0])
    add(store, "m", now - timedelta(seconds=60), max_instances=2)
    for k in range(5):
        at = now - timedelta(seconds=60 - 10 * k)
        c[0].execute("UPDATE tw_task SET next_run = %s", (at,))
        pending(c[0], "m", at)
    for _ in range(3):  # each round, four claimers race for the task's free slots
        race(4, lambda i: claim(c[i], f"w{i}", 5, LEASE))
        running = c[0].execute(
            "SELECT count(*) FROM tw_run WHERE status = 'running'").fetchone()
        assert running is not None and running[0] <= 2
    assert running[0] == 2, "both slots were used"


def test_priority_order_of_claims(store: Any, conns: Callable[[], Conn]) -> None:
    c = conns()
    now = db_now(c)
    for tid, prio in [("low", 0), ("high", 100), ("mid", 50)]:
        add(store, tid, now - timedelta(seconds=5), priority=prio)
    add(store, "high-late", now - timedelta(seconds=1), priority=100)
    materialise_due(c, planner_for())
    order = [claim_one(c).task_id for _ in range(4)]
    assert order == ["high", "high-late", "mid", "low"]


def test_claims_skip_runs_not_yet_due(store: Any, conns: Callable[[], Conn]) -> None:
    c = conns()
    add(store, "a", None)
    run_id = enqueue_manual(c, "a")
    c.execute("UPDATE tw_run SET not_before = now() + interval '1 hour' WHERE seq = %s",
              (run_id,))
    assert claim(c, "w", 5, LEASE) == []


# ---------------------------------------------------------------- dependencies


def test_dependent_waits_then_runs(store: Any, conns: Callable[[], Conn]) -> None:
    c = conns()
    now = db_now(c)
    add(store, "up", now - timedelta(seconds=5))
    add(store, "down", now - timedelta(seconds=5), dependencies=["up"])
    materialise_due(c, planner_for())
    up = claim_one(c)
    assert up.task_id == "up"
    assert claim(c, "w", 5, LEASE) == [], "waits: dependency never finished and is running"
    assert complete(c, up, "succeeded")
    down = claim_one(c)
    assert down.task_id == "down"


def test_dependent_is_skipped_when_dependency_failed(store: Any,
                                                     conns: Callable[[], Conn]) -> None:
    c = conns()
    now = db_now(c)
    add(store, "up", now - timedelta(seconds=5))
    add(store, "down", now - timedelta(seconds=5), dependencies=["up"])
    materialise_due(c, planner_for())
    assert complete(c, claim_one(c), "failed", error="boom")
    assert claim(c, "w", 5, LEASE) == []
    got = rows(c, "task_id = 'down'")
    assert [r[2] for r in got] == ["skipped"]
    (err,) = c.execute("SELECT error FROM tw_run WHERE task_id = 'down'").fetchone()
    assert err == "dependency up failed"


# ------------------------------------------------------------ fence, heartbeat, reap


def test_stale_fence_cannot_complete_or_heartbeat(store: Any, conns: Callable[[], Conn]) -> None:
    c1, c2 = conns(), conns()
    add(store, "a", None, retry=RetryPolicy(max_retries=3, delay=timedelta(0)))
    enqueue_manual(c1, "a")
    old = claim_one(c1, "w1", lease=timedelta(milliseconds=1))
    reaped = wait_for("the reaper", lambda: reap(c2))
    assert [(r.seq, r.status) for r in reaped] == [(old.seq, "pending")], "handed back"
    new = claim_one(c2, "w2")
    assert new.seq == old.seq and new.fence > old.fence and new.attempts == 2
    assert heartbeat(c1, "w1", [(old.seq, old.fence)], LEASE) == {old.seq}, "old lease lost"
    assert complete(c1, old, "succeeded") is False, "a stale fence records nothing"
    assert complete(c1, (old.seq, old.fence), "failed", retry_in=timedelta(0)) is False
    assert heartbeat(c2, "w2", [(new.seq, new.fence)], LEASE) == set()
    assert complete(c2, new, "succeeded")
    assert complete(c2, new, "failed") is False, "exactly one outcome"
    assert [r[2:4] for r in rows(c1)] == [("succeeded", 2)]
    assert new.run_key == run_key("a", new.scheduled_for)


def test_heartbeat_extends_the_lease(store: Any, conns: Callable[[], Conn]) -> None:
    c = conns()
    add(store, "a", None)
    enqueue_manual(c, "a")
    r = claim_one(c, "w1", lease=timedelta(seconds=2))
    assert heartbeat(c, "w1", [(r.seq, r.fence)], timedelta(hours=1)) == set()
    (left,) = c.execute("SELECT lease_until - now() FROM tw_run").fetchone()
    assert left > timedelta(minutes=59)
    assert heartbeat(c, "someone-else", [(r.seq, r.fence)], LEASE) == {r.seq}
    assert reap(c) == []


def test_reaper_fails_when_on_lease_loss_is_fail(store: Any, conns: Callable[[], Conn]) -> None:
    c = conns()
    add(store, "f", None, on_lease_loss="fail", retry=RetryPolicy(max_retries=5))
    enqueue_manual(c, "f")
    claim_one(c, lease=timedelta(milliseconds=1))
    reaped = wait_for("the reaper", lambda: reap(c))
    assert [r.status for r in reaped] == ["failed"]
    (status, err, fin) = c.execute("SELECT status, error, finished_at FROM tw_run").fetchone()
    assert status == "failed" and "lease expired" in err and fin is not None
    assert c.execute("SELECT last_status FROM tw_task").fetchone() == ("failed",)
    assert claim(c, "w", 5, LEASE) == []


def test_reaper_retries_with_backoff_then_gives_up(store: Any, conns: Callable[[], Conn]) -> None:
    c = conns()
    add(store, "r", None, retry=RetryPolicy(max_retries=1, delay=timedelta(hours=1)))
    enqueue_manual(c, "r")
    claim_one(c, lease=timedelta(milliseconds=1))
    assert [r.status for r in wait_for("reap 1", lambda: reap(c))] == ["pending"]
    (wait,) = c.execute("SELECT not_before - now() FROM tw_run").fetchone()
    assert timedelta(minutes=59) < wait <= timedelta(hours=1), "retry backoff"
    assert claim(c, "w", 1, LEASE) == []
    c.execute("UPDATE tw_run SET not_before = now()")  # skip the hour
    claim_one(c, lease=timedelta(milliseconds=1))
    assert [r.status for r in wait_for("reap 2", lambda: reap(c))] == ["failed"], \
        "a crash counts as an attempt: max_retries=1 allows two"


def test_complete_with_retry_hands_back(store: Any, conns: Callable[[], Conn]) -> None:
    c = conns()
    add(store, "a", None)
    enqueue_manual(c, "a")
    r = claim_one(c)
    assert complete(c, r, "failed", error="boom", retry_in=timedelta(0))
    again = claim_one(c)
    assert again.seq == r.seq and again.attempts == 2 and again.fence > r.fence


def test_outcome_commits_with_the_handlers_writes(store: Any, conns: Callable[[], Conn]) -> None:
    c = conns()
    c.execute("CREATE TABLE effects (k text PRIMARY KEY)")
    add(store, "a", None)
    enqueue_manual(c, "a")
    r = claim_one(c)
    with pytest.raises(RuntimeError), c.transaction():
        c.execute("INSERT INTO effects VALUES (%s)", (r.run_key,))
        assert complete(c, r, "succeeded")
        raise RuntimeError("crash before commit")
    assert c.execute("SELECT count(*) FROM effects").fetchone() == (0,)
    assert rows(c)[0][2] == "running", "neither the effect nor the outcome committed"


# ------------------------------------------------------------------------ wake-ups


def test_notify_is_received_after_commit_only(store: Any, conns: Callable[[], Conn]) -> None:
    listener = Wakeups(conns())
    writer = conns()
    add(store, "a", None)
    assert "task:a" in listener.wait(5.0)
    with writer.transaction():
        enqueue_manual(writer, "a")  # a savepoint inside the open transaction
        assert listener.wait(0.3) == [], "nothing before the commit"
    assert listener.wait(5.0) == ["runs"]
    assert listener.wait(0.05) == []


def test_fixed_delay_task_goes_on_after_the_reaper_fails_its_run(
        store: Any, conns: Callable[[], Conn]) -> None:
    c = conns()
    add(store, "fd", db_now(c) - timedelta(seconds=1), schedule=every(seconds=10),
        on_lease_loss="fail")
    materialise_due(c, planner_for())
    assert c.execute("SELECT next_run FROM tw_task").fetchone() == (None,), \
        "fixed delay: planned by the completion"
    assert len(claim(c, "me", 1, LEASE)) == 1
    c.execute("UPDATE tw_run SET lease_until = now() - interval '1 s'")
    assert [r.status for r in reap(c)] == ["failed"]
    row = c.execute("SELECT next_run - now() FROM tw_task").fetchone()
    assert row is not None and timedelta(seconds=9) < row[0] <= timedelta(seconds=10), \
        "without a completion the reaper must plan the next occurrence"
