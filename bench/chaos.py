"""Chaos test of cluster mode: N scheduler processes, a killer, then invariants.

    python bench/chaos.py --seconds 180            # what `make test-cluster` runs
    python bench/chaos.py --seconds 1800 --keep    # longer; keep the database to inspect

A throwaway database (``tickwork_chaos_<random>``) on the local PostgreSQL
(``TICKWORK_PG_ADMIN_DSN``) holds ~110 tasks:

* 30 fast tasks every 1 s, 15 cron ``* * * * * *`` (``seconds=True``), 10 exclusive
  (``max_instances=1``) every 1 s taking 0-0.8 s,
* 25 slow tasks every 5 s taking 0-3 s (``max_instances=3``),
* 10 dependency pairs every 5 s (``down_i`` depends on ``up_i``);

all on one grid (``start_at`` = a whole second), fixed rate, so the expected occurrences
can be enumerated. **Lease 5 s** (heartbeat and reaper every ~1.7 s), so takeovers are
quick enough to observe many in a few minutes. 4 instances, each ``python chaos.py
--worker K`` (instance 3 with its clock 5 min behind, instance 2 five min ahead: an
injected clock; ``--faketime`` preloads libfaketime into them instead). Every
2-6 s the killer picks an instance and does one of: SIGKILL + restart; SIGSTOP for
lease + 2 s then SIGCONT; ``pg_terminate_backend`` of all its connections.

Handlers append ``(task_id, scheduled_for, fence, pid, start|end)`` to ``exec_log``
(autocommit). After the window: no new occurrences, drain, SIGTERM, then check:

1. every expected occurrence in ``[grid start, end - lease - 2 s]`` has exactly one row,
   with an accepted outcome (succeeded / failed / timed_out / cancelled) or ``missed``/
   ``skipped`` with a reason; nothing left pending or running;
2. no occurrence has two accepted outcomes; every ``succeeded`` row has an ``end`` in
   the log with the row's own fence;
3. executions of ``max_instances=1`` tasks never overlap, except with a fenced-out zombie
   (an execution whose fence is not the one that recorded the outcome): counted;
4. measured: takeover after SIGKILL (kill -> start of the re-run), lateness of healthy
   runs (first attempt, ``started_at - scheduled_for``).

Exit status 1 on any violation of 1-3.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import random
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from tickwork import RetryPolicy, Scheduler, Task, cron, every  # noqa: E402
from tickwork._clock import SystemClock  # noqa: E402
from tickwork._serde import task_to_dict  # noqa: E402
from tickwork._timing import compile_schedule  # noqa: E402
from tickwork.stores.postgres import PostgresTaskStore  # noqa: E402

ADMIN_DSN = os.environ.get("TICKWORK_PG_ADMIN_DSN",
                           "postgresql://postgres@127.0.0.1:5432/postgres")
LEASE = 5.0
ACCEPTED = ("succeeded", "failed", "timed_out", "cancelled")
SKEW = {2: +300.0, 3: -300.0}
FAKETIME_LIB = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1"


# --------------------------------------------------------------------------- worker


class OffsetClock(SystemClock):
    def __init__(self, offset: float) -> None:
        self.offset = offset

    def time(self) -> float:
        return time.time() + self.offset

    def wait(self, cond: threading.Condition, until: float | None) -> None:
        timeout = 60.0 if until is None else min(max(until - self.time(), 0.0), 60.0)
        if timeout > 0:
            cond.wait(timeout)


def worker(dsn: str, k: int, skew: float) -> None:
    # One log connection per process (max_connections is finite: 4 instances x workers).
    log_lock = threading.Lock()
    log_conn: list[psycopg.Connection[Any]] = []

    def log(ctx: Any, what: str) -> None:
        with log_lock:
            for attempt in range(5):
                try:
                    if not log_conn or log_conn[0].closed or log_conn[0].broken:
                        log_conn[:] = [psycopg.connect(dsn, autocommit=True)]
                    log_conn[0].execute(
                        "INSERT INTO exec_log (task_id, scheduled_for, fence, pid, event)"
                        " VALUES (%s, %s, %s, %s, %s)",
                        (ctx.task_id, ctx.scheduled_for, ctx.fence, os.getpid(), what))
                    return
                except psycopg.OperationalError:
                    log_conn[:] = []
                    if attempt == 4:
                        raise
                    time.sleep(0.1)

    def sleep_for(ctx: Any, top: float) -> float:
        h = hashlib.sha256(f"{ctx.run_key}/{ctx.attempt}".encode()).digest()
        return top * int.from_bytes(h[:4], "big") / 2**32

    def make(top: float) -> Any:
        def handler(ctx: Any) -> None:
            log(ctx, "start")
            ctx.wait(sleep_for(ctx, top))  # returns early if the lease is lost / stopping
            log(ctx, "end")
        return handler

    clock = OffsetClock(skew) if skew else None
    store = PostgresTaskStore(dsn, lease=timedelta(seconds=LEASE))
    sched = Scheduler(store=store, max_workers=24, clock=clock)
    for name, top in (("fast", 0.05), ("exclusive", 0.8), ("slow", 3.0), ("dep", 0.5)):
        sched.register_handler(name, make(top))
    sched.run_forever()  # SIGTERM: graceful stop


# ------------------------------------------------------------------------ definitions


def definitions(start: datetime) -> list[tuple[Task, str]]:
    retry = RetryPolicy(max_retries=5, delay=timedelta(0))
    out: list[tuple[Task, str]] = []

    def add(tid: str, handler: str, schedule: Any, **kw: Any) -> None:
        out.append((Task(id=tid, handler=handler, schedule=schedule, retry=retry, **kw),
                    handler))

    for i in range(30):
        add(f"fast{i:02d}", "fast", every(seconds=1, fixed_rate=True, start_at=start))
    for i in range(15):
        add(f"cron{i:02d}", "fast", cron("* * * * * *", seconds=True, timezone="UTC"))
    for i in range(10):
        add(f"excl{i:02d}", "exclusive", every(seconds=1, fixed_rate=True, start_at=start))
    for i in range(25):
        add(f"slow{i:02d}", "slow", every(seconds=5, fixed_rate=True, start_at=start),
            max_instances=3)
    for i in range(10):
        add(f"up{i:02d}", "dep", every(seconds=5, fixed_rate=True, start_at=start))
        add(f"down{i:02d}", "dep", every(seconds=5, fixed_rate=True, start_at=start),
            dependencies=[f"up{i:02d}"])
    return out


def first_at(task: Task, start: datetime) -> datetime:
    t = compile_schedule(task.schedule, UTC, task.id).first(start.timestamp())
    assert t is not None
    return datetime.fromtimestamp(t, UTC)


def expected(task: Task, start: datetime, until: datetime) -> list[datetime]:
    timing = compile_schedule(task.schedule, UTC, task.id)
    t: float | None = first_at(task, start).timestamp()
    out = []
    while t is not None and t <= until.timestamp():
        out.append(datetime.fromtimestamp(t, UTC))
        t = timing.next_after(t, start.timestamp())
    return out


# ------------------------------------------------------------------------- coordinator


class Instance:
    def __init__(self, dsn: str, k: int, faketime: bool) -> None:
        self.dsn, self.k, self.faketime = dsn, k, faketime
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        env = dict(os.environ, PGAPPNAME=f"tw-chaos-{self.k}", PYTHONPATH=str(ROOT / "src"))
        skew = SKEW.get(self.k, 0.0)
        cmd = [sys.executable, __file__, "--worker", str(self.k), "--dsn", self.dsn]
        if self.faketime and skew:
            # libfaketime preloaded into the worker itself (the `faketime` wrapper would be
            # the process we signal). Only the wall clock: a faked CLOCK_MONOTONIC breaks
            # timed condition waits.
            env.update(LD_PRELOAD=FAKETIME_LIB, FAKETIME=f"{int(skew):+d}s",
                       FAKETIME_DONT_FAKE_MONOTONIC="1")
            cmd += ["--skew", "0"]
        else:
            cmd += ["--skew", str(skew)]
        self.proc = subprocess.Popen(cmd, env=env, stderr=subprocess.DEVNULL)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid


def pct(xs: list[float], p: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(p / 100 * (len(xs) - 1)))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=180.0)
    ap.add_argument("--instances", type=int, default=4)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--keep", action="store_true", help="keep the database")
    ap.add_argument("--faketime", action="store_true",
                    help="skew instances 2 and 3 with libfaketime instead of injected clocks")
    ap.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--dsn", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--skew", type=float, default=0.0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker is not None:
        worker(args.dsn, args.worker, args.skew)
        return 0

    seed = args.seed if args.seed is not None else secrets.randbits(32)
    rng = random.Random(seed)
    admin = psycopg.connect(ADMIN_DSN, autocommit=True)
    name = f"tickwork_chaos_{secrets.token_hex(4)}"
    admin.execute(f'CREATE DATABASE "{name}"')
    parts = psycopg.conninfo.conninfo_to_dict(ADMIN_DSN)
    parts["dbname"] = name
    dsn = psycopg.conninfo.make_conninfo(**parts)
    print(f"chaos: db {name}, {args.instances} instances, {args.seconds:.0f} s, lease {LEASE} s,"
          f" seed {seed}", flush=True)
    instances: list[Instance] = []
    try:
        db = psycopg.connect(dsn, autocommit=True)
        db.execute("CREATE TABLE exec_log (id bigserial PRIMARY KEY, task_id text, "
                   "scheduled_for timestamptz, fence bigint, pid int, event text, "
                   "at timestamptz NOT NULL DEFAULT clock_timestamp())")
        store = PostgresTaskStore(dsn, lease=timedelta(seconds=LEASE))
        start = (datetime.now(UTC) + timedelta(seconds=4)).replace(microsecond=0)
        defs = definitions(start)
        for task, ref in defs:
            store.upsert_definition(task_to_dict(task, handler_ref=ref),
                                    lambda _d, _now, t=task: first_at(t, start))
        instances = [Instance(dsn, k, args.faketime) for k in range(args.instances)]
        kills: list[tuple[str, int, datetime, list[tuple[int, int]]]] = []
        end = time.monotonic() + args.seconds
        actions: dict[str, int] = defaultdict(int)
        time.sleep(min(6.0, args.seconds / 4))
        while time.monotonic() < end:
            time.sleep(rng.uniform(2.0, 6.0))
            if time.monotonic() >= end:
                break
            inst = rng.choice(instances)
            action = rng.choice(["kill", "stop", "terminate"])
            actions[action] += 1
            me = f"%:{inst.pid}:%"
            if action == "kill":
                held = db.execute("SELECT seq, fence FROM tw_run WHERE status = 'running' "
                                  "AND instance_id LIKE %s", (me,)).fetchall()
                os.kill(inst.pid, signal.SIGKILL)
                row = db.execute("SELECT clock_timestamp()").fetchone()
                assert row is not None
                kills.append(("kill", inst.pid, row[0], [(r[0], r[1]) for r in held]))
                assert inst.proc is not None
                inst.proc.wait()
                inst.start()
            elif action == "stop":
                os.kill(inst.pid, signal.SIGSTOP)
                time.sleep(LEASE + 2.0)
                os.kill(inst.pid, signal.SIGCONT)
            else:
                db.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                           "WHERE application_name = %s", (f"tw-chaos-{inst.k}",))
        row = db.execute("SELECT clock_timestamp()").fetchone()
        assert row is not None
        stop_at: datetime = row[0]
        # Drain: nothing new is materialised; queued and running work finishes.
        db.execute("UPDATE tw_task SET next_run = NULL")
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            got = db.execute("SELECT count(*) FROM tw_run WHERE status IN "
                             "('pending', 'running')").fetchone()
            if got is not None and got[0] == 0:
                break
            time.sleep(0.5)
        for inst in instances:
            assert inst.proc is not None
            with contextlib.suppress(ProcessLookupError):
                os.kill(inst.pid, signal.SIGTERM)
        for inst in instances:
            assert inst.proc is not None
            try:
                inst.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                inst.proc.kill()
                inst.proc.wait()
        return check(db, defs, start, stop_at, kills, dict(actions))
    finally:
        for inst in instances:
            if inst.proc is not None and inst.proc.poll() is None:
                inst.proc.kill()
        if args.keep:
            print(f"chaos: kept database {name} ({dsn})")
        else:
            with contextlib.suppress(psycopg.Error):
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def check(db: Any, defs: list[tuple[Task, str]], start: datetime, stop_at: datetime,
          kills: list[tuple[str, int, datetime, list[tuple[int, int]]]],
          actions: dict[str, int]) -> int:
    violations: list[str] = []
    cutoff = stop_at - timedelta(seconds=LEASE + 2)
    rows = db.execute(
        "SELECT seq, task_id, scheduled_for, status, error, fence, attempts, started_at "
        "FROM tw_run WHERE queued AND NOT manual").fetchall()
    by_occ: dict[tuple[str, datetime], list[Any]] = defaultdict(list)
    for r in rows:
        by_occ[(r[1], r[2])].append(r)
    log = db.execute("SELECT task_id, scheduled_for, fence, pid, event, at FROM exec_log"
                     ).fetchall()
    spans: dict[int, list[Any]] = {}
    pid_of: dict[int, int] = {}
    for tid, sf, fence, pid, ev, at in log:
        s = spans.setdefault(fence, [tid, sf, None, None])
        s[2 if ev == "start" else 3] = at
        pid_of[fence] = pid
    killed_at: dict[int, datetime] = {pid: at for _a, pid, at, _h in kills}
    ends = {f for f, s in spans.items() if s[3] is not None}
    stuck = db.execute("SELECT count(*) FROM tw_run WHERE status IN ('pending', 'running')"
                       ).fetchone()[0]
    if stuck:
        violations.append(f"{stuck} runs still pending/running after the drain")
    n_expected = 0
    status_count: dict[str, int] = defaultdict(int)
    for task, _ref in defs:
        for occ in expected(task, start, cutoff):
            n_expected += 1
            got = by_occ.get((task.id, occ), [])
            if not got:
                violations.append(f"lost: {task.id}@{occ.isoformat()} has no row")
                continue
            if len(got) > 1:
                violations.append(f"duplicate rows: {task.id}@{occ.isoformat()}: {got}")
            r = got[0]
            status_count[r[3]] += 1
            if r[3] in ("missed", "skipped"):
                if not r[4]:
                    violations.append(f"{r[3]} without a reason: {task.id}@{occ.isoformat()}")
            elif r[3] not in ACCEPTED:
                violations.append(f"not finished: {task.id}@{occ.isoformat()} is {r[3]}")
            elif r[3] == "succeeded" and r[5] not in ends:
                violations.append(f"succeeded without an end of fence {r[5]}: "
                                  f"{task.id}@{occ.isoformat()}")
    # Extra executions: starts whose fence is not the one that recorded the outcome.
    final_fence = {(r[1], r[2]): r[5] for r in rows}
    reexec = [f for f, s in spans.items() if final_fence.get((s[0], s[1])) != f]
    # Exclusive tasks: no overlapping executions except fenced-out zombies.
    exclusive = {t.id for t, _ in defs if t.max_instances == 1}
    per_task: dict[str, list[tuple[datetime, datetime, int]]] = defaultdict(list)
    far = datetime.max.replace(tzinfo=UTC)
    for f, (tid, _sf, st, en) in spans.items():
        if tid in exclusive and st is not None:
            # No end logged: the process was SIGKILLed (the execution ended then).
            per_task[tid].append((st, en or killed_at.get(pid_of[f], far), f))
    zombie_overlaps = 0
    for tid, lst in per_task.items():
        lst.sort()
        for i, (_s1, e1, f1) in enumerate(lst):
            for s2, _e2, f2 in lst[i + 1:]:
                if s2 >= e1:
                    break
                zombie = any(final_fence.get((spans[f][0], spans[f][1])) != f for f in (f1, f2))
                if zombie:
                    zombie_overlaps += 1
                else:
                    violations.append(f"overlap of {tid}: fences {f1} and {f2} ({s2} < {e1})")
    # Takeover: SIGKILL -> first start of a later fence for a run the victim held.
    take: list[float] = []
    seq_fences = {r[0]: (r[1], r[2]) for r in rows}
    for _a, _pid, at, held in kills:
        for seq, fence in held:
            occ = seq_fences.get(seq)
            starts = [s[2] for f, s in spans.items() if occ is not None and
                      (s[0], s[1]) == occ and f > fence and s[2] is not None]
            if starts:
                take.append((min(starts) - at).total_seconds())
    # Healthy: first attempts of tasks that wait for nothing but a worker (exclusive and
    # dependent tasks also wait for a predecessor, e.g. one held by a paused instance).
    waits = {t.id for t, _ in defs if (t.max_instances == 1 and t.handler == "exclusive")
             or t.dependencies}
    late = [(r[7] - r[2]).total_seconds() for r in rows
            if r[6] == 1 and r[7] is not None and r[3] == "succeeded" and r[1] not in waits]
    late_w = [(r[7] - r[2]).total_seconds() for r in rows
              if r[6] == 1 and r[7] is not None and r[3] == "succeeded" and r[1] in waits]
    print(f"chaos: actions {actions}; {n_expected} expected occurrences up to "
          f"{cutoff:%H:%M:%S}; outcomes {dict(status_count)}")
    print(f"chaos: re-executions after lease loss (at-least-once) {len(reexec)}, "
          f"zombie overlaps {zombie_overlaps}")
    print(f"chaos: takeover after SIGKILL: n={len(take)} p50={pct(take, 50):.2f}s "
          f"p99={pct(take, 99):.2f}s max={max(take, default=float('nan')):.2f}s "
          f"(lease {LEASE:g}s)")
    print(f"chaos: lateness of first attempts (independent tasks): n={len(late)} "
          f"p50={pct(late, 50):.3f}s p99={pct(late, 99):.3f}s; exclusive/dependent: "
          f"n={len(late_w)} p50={pct(late_w, 50):.3f}s p99={pct(late_w, 99):.3f}s")
    if violations:
        print(f"chaos: FAILED, {len(violations)} violations:")
        for v in violations[:50]:
            print("  " + v)
        return 1
    print("chaos: OK, no violations")
    return 0


if __name__ == "__main__":
    sys.exit(main())
