"""Cluster mode on the local PostgreSQL: claim+complete throughput and idle load.

    .venv/bin/python bench/cluster_bench.py [--runs 6000] [--idle-seconds 20]

* Throughput: ``--runs`` ready runs (spread over 500 exclusive tasks) are drained by 1,
  2 and 4 worker *processes*, each looping ``claim(n=8)`` then one fenced ``complete``
  per run (no-op handler). Reported: runs/s, and transactions per run.
* Idle: one instance's idle loop as the runner will do it (wait on LISTEN with a 10 s
  cap; on wake-up one "anything due?" query, the claim/materialise path only if
  something is due; heartbeat + reap every lease/3 = 10 s), for ``--idle-seconds``.
  Statements are counted in the client (a counting cursor; pg_stat_statements needs a
  server restart to load), and transactions from pg_stat_database.

Runs against a throwaway database (``tickwork_bench_<random>``), dropped at the end.
Admin DSN: ``TICKWORK_PG_ADMIN_DSN`` (default ``postgresql://postgres@127.0.0.1:5432/postgres``).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import secrets
import sys
import time
from datetime import timedelta
from typing import Any

import psycopg

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))

from tickwork.cluster import (
    Wakeups,
    claim,
    complete,
    heartbeat,
    materialise_due,
    planner_for,
    reap,
    seconds_until_due,
)
from tickwork.stores.postgres import PostgresTaskStore

ADMIN = os.environ.get("TICKWORK_PG_ADMIN_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
LEASE = timedelta(seconds=30)


class CountingCursor(psycopg.Cursor[Any]):
    count = 0

    def execute(self, *args: Any, **kw: Any) -> Any:
        CountingCursor.count += 1
        return super().execute(*args, **kw)


def fill(dsn: str, runs: int, tasks: int = 500) -> None:
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("TRUNCATE tw_run, tw_task")
        c.execute("""INSERT INTO tw_task (id, spec) SELECT 't' || i, '{"id":"t' || i || '"}'
                     FROM generate_series(1, %s) i""", (tasks,))
        c.execute("""INSERT INTO tw_run (task_id, scheduled_for, queued, priority, not_before)
                     SELECT 't' || (i %% %s + 1), now() - interval '1 hour' + i * interval '1 ms',
                            true, 50, now() - interval '1 hour'
                     FROM generate_series(1, %s) i""", (tasks, runs))
        c.execute("ANALYZE tw_run")


def worker(dsn: str, me: str, out: Any) -> None:
    store_conn = psycopg.connect(dsn, autocommit=True)
    store_conn.execute("SET TIME ZONE 'UTC'")
    done = 0
    empty = 0
    while empty < 3:
        got = claim(store_conn, me, 8, LEASE)
        if not got:
            empty += 1
            time.sleep(0.01)
            continue
        empty = 0
        for r in got:
            if complete(store_conn, r, "succeeded"):
                done += 1
    out.put(done)
    store_conn.close()


def xacts(dsn: str) -> int:
    with psycopg.connect(ADMIN, autocommit=True) as a:
        a.execute("SELECT pg_stat_force_next_flush()")
        db = psycopg.conninfo.conninfo_to_dict(dsn)["dbname"]
        row = a.execute("SELECT xact_commit + xact_rollback FROM pg_stat_database "
                        "WHERE datname = %s", (db,)).fetchone()
        return int(row[0]) if row else 0


def throughput(dsn: str, runs: int, procs: int) -> tuple[float, int, float]:
    fill(dsn, runs)
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    before = xacts(dsn)
    t0 = time.perf_counter()
    ps = [ctx.Process(target=worker, args=(dsn, f"w{i}", q)) for i in range(procs)]
    for p in ps:
        p.start()
    total = sum(q.get() for _ in ps)
    elapsed = time.perf_counter() - t0
    for p in ps:
        p.join()
    tx = xacts(dsn) - before
    return total / elapsed, total, tx / max(total, 1)


def idle(dsn: str, seconds: float) -> tuple[float, float]:
    store = PostgresTaskStore(dsn)
    conn = store.connect()
    conn.cursor_factory = CountingCursor
    listen_conn = store.connect()
    listen_conn.cursor_factory = CountingCursor
    wake = Wakeups(listen_conn)
    plan = planner_for()
    with conn.cursor() as cur:
        cur.execute("TRUNCATE tw_run, tw_task")
    CountingCursor.count = 0
    before = xacts(dsn)
    t0 = time.monotonic()
    next_beat = t0
    while (now := time.monotonic()) - t0 < seconds:
        if now >= next_beat:
            heartbeat(conn, "idle-1", [], LEASE)
            reap(conn)
            next_beat = now + LEASE.total_seconds() / 3
        due = seconds_until_due(conn)
        if due is not None and due <= 0:
            materialise_due(conn, plan)
            claim(conn, "idle-1", 4, LEASE)
            continue
        cap = min(10.0, next_beat - time.monotonic(), seconds - (time.monotonic() - t0))
        wake.wait(max(cap if due is None else min(due, cap), 0.0))
    elapsed = time.monotonic() - t0
    stmts = CountingCursor.count
    tx = max(xacts(dsn) - before, 0)  # stats flush lags: meaningful over >= 10 s
    wake.close()
    conn.close()
    store.close()
    return stmts / elapsed, tx / elapsed


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=6000)
    ap.add_argument("--idle-seconds", type=float, default=20.0)
    ap.add_argument("--procs", default="1,2,4")
    a = ap.parse_args()
    name = f"tickwork_bench_{secrets.token_hex(4)}"
    admin = psycopg.connect(ADMIN, autocommit=True)
    admin.execute(f'CREATE DATABASE "{name}"')
    parts = psycopg.conninfo.conninfo_to_dict(ADMIN)
    parts["dbname"] = name
    dsn = psycopg.conninfo.make_conninfo(**parts)
    try:
        PostgresTaskStore(dsn).close()  # schema
        print(f"PostgreSQL {admin.info.server_version}, {os.cpu_count()} CPUs (client and "
              "server on the same machine)")
        for n in (int(x) for x in a.procs.split(",")):
            rate, total, tpr = throughput(dsn, a.runs, n)
            print(f"claim+complete, {n} worker process(es): {rate:8.0f} runs/s "
                  f"({total} runs, {tpr:.2f} transactions/run)")
        qps, tps = idle(dsn, a.idle_seconds)
        print(f"idle instance over {a.idle_seconds:.0f} s: {qps:.2f} statements/s "
              f"(client-counted), {tps:.2f} transactions/s (pg_stat_database)")
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


if __name__ == "__main__":
    main()
