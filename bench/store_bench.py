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
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from tickwork._model import RunRecord, RunStatus, Task, every
from tickwork._serde import task_to_dict
from tickwork.stores import JsonTaskStore, MemoryTaskStore, SqliteTaskStore
from tickwork.stores.base import TaskStore

NOW = datetime(2026, 3, 1, tzinfo=UTC)
APS = "APScheduler SQLAlchemyJobStore (sqlite)"
ROUNDS = 5


def aps_version() -> str | None:
    try:
        from importlib.metadata import version

        return version("apscheduler")
    except Exception:
        return None


def make_task(i: int) -> Task:
    return Task(id=f"task-{i:06d}", name=f"Task {i}", description="benchmark task",
                handler="bench.jobs:work", schedule=every(minutes=5), priority=i % 100,
                metadata={"team": "ops"}, next_run=NOW + timedelta(minutes=5))


@dataclass
class Subject:
    """One backend under test: ``add(k)`` and ``run(k)`` do the k-th timed operation."""

    add: Callable[[int], None]
    run: Callable[[int], None]
    close: Callable[[], None]
    add_us: list[float] = field(default_factory=list)  # per-round means
    run_us: list[float] = field(default_factory=list)


def timed(fn: Callable[[int], None], first: int, ops: int) -> float:
    """Mean microseconds per call of ``fn(first) .. fn(first + ops - 1)``."""
    t0 = time.perf_counter()
    for k in range(first, first + ops):
        fn(k)
    return (time.perf_counter() - t0) / ops * 1e6


def tickwork_subject(store: TaskStore, n: int) -> Subject:
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

    return Subject(add, run, store.close)


def apscheduler_subject(folder: Path, n: int) -> Subject | str:
    try:
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
    jobs: dict[int, Any] = {}

    def add(k: int) -> None:
        store.add_job(job(n + 1 + k))

    def run(k: int) -> None:
        i = rng.randrange(n)
        j = jobs.get(i) or jobs.setdefault(i, store.lookup_job(f"task-{i:06d}"))
        j.next_run_time = NOW + timedelta(minutes=5 * (k + 2))
        store.update_job(j)

    return Subject(add, run, store.shutdown)


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
    q = args.quick
    ops = {"tickwork SqliteTaskStore": 10 if q else 60,
           "tickwork JsonTaskStore": 4 if q else 20,
           "tickwork MemoryTaskStore (not durable)": 50 if q else 400,
           APS: 6 if q else 30}
    folder = Path(tempfile.mkdtemp(prefix="store-bench-", dir=args.dir))
    results: dict[str, Any] = {
        "tasks": n, "rounds": ROUNDS, "ops_per_round": ops, "dir": str(folder),
        "fs": fs_type(folder), "python": platform.python_version(),
        "apscheduler": aps_version(), "backends": {},
    }
    subjects: dict[str, Subject | str] = {}
    try:
        subjects["tickwork SqliteTaskStore"] = tickwork_subject(
            SqliteTaskStore(folder / "tickwork.db"), n)
        subjects["tickwork JsonTaskStore"] = tickwork_subject(
            JsonTaskStore(folder / "tickwork.json"), n)
        subjects["tickwork MemoryTaskStore (not durable)"] = tickwork_subject(
            MemoryTaskStore(), n)
        subjects[APS] = apscheduler_subject(folder, n)
        live = {k: v for k, v in subjects.items() if isinstance(v, Subject)}
        for sub in live.values():  # warm-up: first-call costs are not the steady state
            sub.add(-1)
            sub.run(-1)
        # Round-robin, so that a burst of load on a shared machine hits every backend
        # alike; each backend's figure is the median of its per-round means.
        for r in range(ROUNDS):
            for name, sub in live.items():
                k = r * ops[name]
                sub.add_us.append(timed(sub.add, k, ops[name]))
                sub.run_us.append(timed(sub.run, k, ops[name]))
        for name, entry in subjects.items():
            results["backends"][name] = entry if isinstance(entry, str) else {
                "add_us": statistics.median(entry.add_us),
                "run_us": statistics.median(entry.run_us),
                "add_us_rounds": entry.add_us, "run_us_rounds": entry.run_us,
            }
    finally:
        for entry in subjects.values():
            if isinstance(entry, Subject):
                entry.close()
        shutil.rmtree(folder, ignore_errors=True)
    report(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


def report(results: dict[str, Any]) -> None:
    b = results["backends"]
    aps = b.get(APS)
    print(f"store bench: {results['tasks']:,} tasks stored, Python {results['python']}, "
          f"APScheduler {results['apscheduler']}, files on {results['fs']}, "
          f"median of {results['rounds']} interleaved rounds")
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
