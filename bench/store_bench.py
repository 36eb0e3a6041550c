"""Durable store cost: tickwork's JSON and SQLite stores next to APScheduler 3.11's
SQLAlchemyJobStore on SQLite, in the same run, on the same disk.

Two numbers per backend, each with N tasks already stored (10,000; 1,000 with --quick):

* add: one durable add of a new task (tickwork: ``task_to_dict`` + ``upsert_task``;
  APScheduler: ``Job`` + ``add_job``), so the per-add cost at that size;
* run: the bookkeeping after one execution (tickwork: ``record_run`` = new task state +
  a history record, one transaction; APScheduler: ``update_job`` with the next run
  time, it keeps no history).

The stores are measured directly: the scheduler adds one dict copy per call, small next
to a disk sync. The store is filled in bulk first (one transaction), which is not timed.
Both SQLite setups sync to disk on commit: tickwork WAL + synchronous=FULL, APScheduler
SQLAlchemy's default (rollback journal, synchronous=FULL). Numbers depend on the disk's
fsync cost; the ratios are the point. Needs ``apscheduler>=3.11,<4`` and ``sqlalchemy``
(skipped with a note when missing).

    python bench/store_bench.py [--quick] [--json PATH] [--dir FOLDER]
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from tickwork._model import RunRecord, RunStatus, Task, every
from tickwork._serde import task_to_dict
from tickwork.stores import JsonTaskStore, MemoryTaskStore, SqliteTaskStore
from tickwork.stores.base import TaskStore

NOW = datetime(2026, 3, 1, tzinfo=UTC)


def make_task(i: int) -> Task:
    return Task(id=f"task-{i:06d}", name=f"Task {i}", description="benchmark task",
                handler="bench.jobs:work", schedule=every(minutes=5), priority=i % 100,
                metadata={"team": "ops"}, next_run=NOW + timedelta(minutes=5))


def timed(ops: int, fn: Callable[[int], None]) -> float:
    """Mean microseconds per call over ``ops`` calls, after one warm-up call."""
    fn(-1)
    t0 = time.perf_counter()
    for k in range(ops):
        fn(k)
    return (time.perf_counter() - t0) / ops * 1e6


def bench_tickwork(store: TaskStore, n: int, ops: int) -> dict[str, float]:
    store.replace_tasks([task_to_dict(make_task(i), handler_ref="bench.jobs:work")
                         for i in range(n)], NOW)
    rng = random.Random(1)

    def add(k: int) -> None:
        t = make_task(n + 1 + k)
        store.upsert_task(task_to_dict(t, handler_ref="bench.jobs:work"), NOW)

    def run(k: int) -> None:
        i = rng.randrange(n)
        at = NOW + timedelta(minutes=5 * (k + 2))
        t = replace(make_task(i), last_run=at, next_run=at + timedelta(minutes=5),
                    run_count=k + 2, last_status=RunStatus.SUCCEEDED)
        rec = RunRecord(run_id=f"run-{k + 2}-{i}", task_id=t.id, scheduled_for=at,
                        started_at=at, finished_at=at + timedelta(seconds=1),
                        status=RunStatus.SUCCEEDED, attempts=1, result={"ok": True})
        store.record_run(task_to_dict(t, handler_ref="bench.jobs:work", last_scheduled=at),
                         rec, at)

    out = {"add_us": timed(ops, add), "run_us": timed(ops, run)}
    store.close()
    return out


def bench_apscheduler(folder: Path, n: int, ops: int) -> dict[str, float] | str:
    try:
        import apscheduler
        from apscheduler.job import Job
        from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
        from apscheduler.schedulers.background import BackgroundScheduler
        from apscheduler.triggers.interval import IntervalTrigger
    except ImportError as e:
        return f"skipped: {e} (pip install 'apscheduler>=3.11,<4' sqlalchemy)"
    store = SQLAlchemyJobStore(url=f"sqlite:///{folder}/apscheduler.db")
    sched = BackgroundScheduler(timezone="UTC")
    store.start(sched, "default")
    trigger = IntervalTrigger(minutes=5, timezone="UTC")

    def job(i: int) -> Any:
        return Job(sched, id=f"task-{i:06d}", func="os:getpid", args=(), kwargs={},
                   name=f"Task {i}", trigger=trigger, executor="default",
                   misfire_grace_time=1, coalesce=True, max_instances=1,
                   next_run_time=NOW + timedelta(minutes=5))

    with store.engine.begin() as conn:  # bulk fill, as add_job would store each row
        conn.execute(store.jobs_t.insert(), [
            {"id": j.id, "next_run_time": j.next_run_time.timestamp(),
             "job_state": pickle.dumps(j.__getstate__(), store.pickle_protocol)}
            for j in map(job, range(n))])
    rng = random.Random(1)
    jobs = {}

    def add(k: int) -> None:
        store.add_job(job(n + 1 + k))

    def run(k: int) -> None:
        i = rng.randrange(n)
        j = jobs.get(i) or jobs.setdefault(i, store.lookup_job(f"task-{i:06d}"))
        j.next_run_time = NOW + timedelta(minutes=5 * (k + 2))
        store.update_job(j)

    out = {"add_us": timed(ops, add), "run_us": timed(ops, run),
           "version": apscheduler.__version__}
    store.shutdown()
    return out


def fs_type(path: Path) -> str:
    try:
        return subprocess.run(["stat", "-f", "-c", "%T", str(path)], capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="1,000 tasks, fewer ops")
    ap.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    ap.add_argument("--dir", metavar="FOLDER", default=str(Path(__file__).parent),
                    help="where the store files go (a real disk, not tmpfs; default bench/)")
    args = ap.parse_args()
    n = 1_000 if args.quick else 10_000
    ops = {"sqlite": 50 if args.quick else 300, "json": 20 if args.quick else 100,
           "memory": 200 if args.quick else 2000, "aps": 30 if args.quick else 150}
    folder = Path(tempfile.mkdtemp(prefix="store-bench-", dir=args.dir))
    results: dict[str, Any] = {
        "tasks": n, "ops": ops, "dir": str(folder), "fs": fs_type(folder),
        "python": platform.python_version(), "backends": {},
    }
    try:
        b = results["backends"]
        b["tickwork SqliteTaskStore"] = bench_tickwork(
            SqliteTaskStore(folder / "tickwork.db"), n, ops["sqlite"])
        b["tickwork JsonTaskStore"] = bench_tickwork(
            JsonTaskStore(folder / "tickwork.json"), n, ops["json"])
        b["tickwork MemoryTaskStore (not durable)"] = bench_tickwork(
            MemoryTaskStore(), n, ops["memory"])
        aps = bench_apscheduler(folder, n, ops["aps"])
        b["APScheduler SQLAlchemyJobStore (sqlite)"] = aps
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    report(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


def report(results: dict[str, Any]) -> None:
    b = results["backends"]
    aps = b.get("APScheduler SQLAlchemyJobStore (sqlite)")
    print(f"store bench: {results['tasks']:,} tasks stored, Python {results['python']}, "
          f"files on {results['fs']}")
    print(f"{'backend':42} {'add µs':>9} {'add/s':>8} {'run µs':>9} {'run/s':>8}"
          f" {'add vs APS':>10} {'run vs APS':>10}")
    for name, r in b.items():
        if isinstance(r, str):
            print(f"{name:42} {r}")
            continue
        ratios = ["", ""]
        if isinstance(aps, dict):
            ratios = [f"{aps[k] / r[k]:9.1f}x" for k in ("add_us", "run_us")]
        print(f"{name:42} {r['add_us']:9.0f} {1e6 / r['add_us']:8.0f} {r['run_us']:9.0f}"
              f" {1e6 / r['run_us']:8.0f} {ratios[0]:>10} {ratios[1]:>10}")
    print("ratios: APScheduler's time / ours (higher = tickwork faster). 'run' = bookkeeping "
          "after one execution; tickwork also writes a history record, APScheduler none.")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
