"""Cluster mode, issue 5: ``run_lease_lost`` events, other instances' definition changes
as local events, ``ctx.connection`` committed with the fenced outcome, cluster gauges on
``/metrics``.

Real time and a real database, like ``test_scheduler.py`` (whose ``Cluster`` fixture this
reuses); every wait polls with a deadline.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest

from tickwork import Event, RetryPolicy, Task, every
from tickwork.cluster import reap

from .test_scheduler import Cluster, wait_for

pytestmark = pytest.mark.postgres
postgres = pytest.importorskip("tickwork.stores.postgres")
HOURLY = every(hours=1, fixed_rate=True)


@pytest.fixture
def cluster(pg_dsn: str, new_schema: Callable[[], str]) -> Iterator[Cluster]:
    c = Cluster(pg_dsn, new_schema())
    yield c
    c.close()


class Events:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.got: list[Event] = []

    def __call__(self, ev: Event) -> None:
        with self.lock:
            self.got.append(ev)

    def types(self, prefix: str = "") -> list[tuple[str, str | None]]:
        with self.lock:
            return [(e.type.value, e.task_id) for e in self.got
                    if e.type.value.startswith(prefix)]

    def of(self, etype: str) -> list[Event]:
        with self.lock:
            return [e for e in self.got if e.type.value == etype]


def _expire_and_reap(cluster: Cluster) -> None:
    """What a pause longer than the lease does: the lease lapses and is reaped."""
    cluster.conn.execute("UPDATE tw_run SET lease_until = now() - interval '1 s' "
                         "WHERE status = 'running'")
    assert [r.status for r in reap(cluster.conn)] == ["pending"]


def test_a_holder_whose_lease_is_taken_gets_one_run_lease_lost_event(cluster: Cluster) -> None:
    release = threading.Event()
    a = cluster.new(max_workers=1)
    events = Events()
    a.subscribe(events)
    a.register_handler("job", lambda ctx: release.wait(10))
    a.add_task(Task(id="job", handler="job", schedule=HOURLY,
                    retry=RetryPolicy(max_retries=0, delay=timedelta(0))))
    a.start()
    [started] = wait_for("A running the job", lambda: events.of("run_started"), timeout=5)
    _expire_and_reap(cluster)
    # The heartbeat (every lease/3 = 1 s) finds the run gone.
    [lost] = wait_for("run_lease_lost", lambda: events.of("run_lease_lost"), timeout=3)
    assert (lost.task_id, lost.run_id, lost.attempt) == ("job", started.run_id, 1)
    assert lost.error is not None and "lease lost" in lost.error
    release.set()
    wait_for("A's outcome refused", lambda: a.get_stats()["cluster_fenced_out"] == 1, timeout=5)
    assert len(events.of("run_lease_lost")) == 1  # the refused outcome does not repeat it
    assert a.get_stats()["cluster_leases_lost"] == 1


def test_changes_made_on_another_instance_are_published_locally_once(
        cluster: Cluster) -> None:
    a, b = cluster.new(), cluster.new()
    for s in (a, b):
        s.register_handler("noop", lambda: None)
    ev_a, ev_b = Events(), Events()
    a.subscribe(ev_a)
    b.subscribe(ev_b)
    a.start()
    b.start()
    a.add_task(Task(id="x", handler="noop", schedule=HOURLY))
    steps: list[tuple[Callable[[], Any], list[str]]] = [
        (lambda: None, ["task_added"]),
        (lambda: a.update_task("x", priority=3), ["task_updated"]),
        (lambda: a.disable_task("x"), ["task_disabled"]),
        (lambda: a.enable_task("x"), ["task_enabled"]),
        (lambda: a.update_task("x", enabled=False, priority=4),
         ["task_updated", "task_disabled"]),
        (lambda: a.remove_task("x"), ["task_removed"]),
    ]
    want: list[tuple[str, str | None]] = []
    for act, new in steps:
        act()
        want += [(t, "x") for t in new]
        n = len(want)
        wait_for(f"B to publish {new}", lambda: len(ev_b.types("task_")) >= n,  # noqa: B023
                 timeout=3)
    assert b.list_tasks() == []  # a later re-read publishes nothing more
    assert ev_b.types("task_") == want, ev_b.types("task_")
    # A published its own changes once, not again when its listener saw its own NOTIFY.
    assert ev_a.types("task_") == want, ev_a.types("task_")


def test_ctx_connection_commits_with_the_outcome_only(cluster: Cluster) -> None:
    cluster.conn.execute("CREATE TABLE ledger (run_key text, attempt int)")
    release = threading.Event()
    a = cluster.new(max_workers=1)
    seen: list[Any] = []

    def pay(ctx: Any) -> None:
        ctx.connection.execute("INSERT INTO ledger VALUES (%s, %s)",
                               (ctx.run_key, ctx.attempt))
        if ctx.task_id == "bad":
            raise RuntimeError("after the insert")
        if ctx.task_id == "paused" and ctx.attempt == 1:
            release.wait(10)

    a.register_handler("pay", pay)
    a.register_handler("plain", lambda ctx: seen.append((ctx.connection, ctx.fence)))
    flag = {"tickwork.connection": "true"}
    no_retry = RetryPolicy(max_retries=0, delay=timedelta(0))
    a.add_task(Task(id="good", handler="pay", schedule=HOURLY, metadata=flag))
    a.add_task(Task(id="bad", handler="pay", schedule=HOURLY, metadata=flag, retry=no_retry))
    a.add_task(Task(id="plain", handler="plain", schedule=HOURLY))
    a.start()
    wait_for("good, bad, plain recorded",
             lambda: len(cluster.rows("status IN ('succeeded', 'failed')")) == 3, timeout=10)
    ledger = cluster.conn.execute("SELECT run_key FROM ledger").fetchall()
    assert [k.split("@")[0] for (k,) in ledger] == ["good"]  # bad's insert rolled back
    [(conn, fence)] = seen
    assert conn is None and isinstance(fence, int)  # no flag: no connection, but a fence

    # A holder whose lease was taken: its outcome is fenced out, so its insert never
    # commits; the re-run (attempt 2) commits its own.
    a.add_task(Task(id="paused", handler="pay", schedule=HOURLY, metadata=flag,
                    retry=no_retry))
    wait_for("paused running", lambda: cluster.rows("task_id = 'paused' AND "
                                                    "status = 'running'"), timeout=5)
    _expire_and_reap(cluster)
    release.set()
    wait_for("the re-run's outcome", lambda: cluster.rows(
        "task_id = 'paused' AND status = 'succeeded'"), timeout=10)
    got = cluster.conn.execute(
        "SELECT attempt FROM ledger WHERE run_key LIKE 'paused@%'").fetchall()
    assert got == [(2,)]
    assert a.get_stats()["cluster_fenced_out"] == 1


def test_metrics_expose_the_cluster_gauges(cluster: Cluster) -> None:
    from fastapi.testclient import TestClient
    from prometheus_client.parser import text_string_to_metric_families

    from tickwork.service.api import create_app

    a, b = cluster.new(), cluster.new()
    a.register_handler("noop", lambda: None)
    a.add_task(Task(id="x", handler="noop", schedule=HOURLY))
    a.start()
    b.start()
    wait_for("two instances alive",
             lambda: a.get_stats()["cluster_instances_alive"] == 2, timeout=5)
    # The hourly task runs once at start; scrape only after that run is recorded, so the
    # gauges (cluster_held_runs in particular) cannot change between scrape and stats.
    wait_for("first run recorded", lambda: a.get_task("x").run_count == 1
             and a.get_stats()["cluster_held_runs"] == 0, timeout=10)
    with TestClient(create_app(a)) as client:
        resp = client.get("/metrics")
    assert resp.status_code == 200
    fams = {f.name: f for f in text_string_to_metric_families(resp.text)}
    stats = a.get_stats()
    keys = [k for k in stats if k.startswith("cluster_")]
    assert set(keys) == {"cluster_instances_alive", "cluster_leases_lost",
                         "cluster_takeovers", "cluster_fenced_out", "cluster_held_runs"}
    for k in keys:
        fam = fams[f"tickwork_{k}"]
        assert fam.type == "gauge"
        [sample] = fam.samples
        assert sample.value == float(stats[k]), k
    assert fams["tickwork_cluster_instances_alive"].samples[0].value == 2.0


def test_a_loss_noticed_only_by_the_refused_outcome_is_published_once(
        cluster: Cluster) -> None:
    """Lease 30 s: the next heartbeat is 10 s away, so the refused outcome is what
    tells the holder it lost the run (a pause between two heartbeats)."""
    release = threading.Event()
    store = postgres.PostgresTaskStore(cluster.dsn, schema=cluster.schema,
                                       lease=timedelta(seconds=30))
    cluster.stores.append(store)
    from tickwork import Scheduler

    a = Scheduler(store=store, max_workers=1)
    cluster.scheds.append(a)
    events = Events()
    a.subscribe(events)
    a.register_handler("job", lambda ctx: release.wait(10))
    a.add_task(Task(id="job", handler="job", schedule=HOURLY,
                    retry=RetryPolicy(max_retries=0, delay=timedelta(0))))
    a.start()
    [started] = wait_for("A running the job", lambda: events.of("run_started"), timeout=5)
    _expire_and_reap(cluster)
    release.set()
    [lost] = wait_for("run_lease_lost", lambda: events.of("run_lease_lost"), timeout=5)
    assert (lost.task_id, lost.run_id, lost.attempt) == ("job", started.run_id, 1)
    assert lost.error is not None and lost.error.startswith("fenced out")
    assert a.get_stats()["cluster_fenced_out"] == 1
    # The refused outcome published no terminal event; the re-run (attempt 2) did.
    done = wait_for("the re-run", lambda: events.of("run_succeeded"), timeout=5)
    assert [e.attempt for e in done] == [2]
    assert len(events.of("run_lease_lost")) == 1
