"""Two terminals, one schedule: tickwork's cluster mode on PostgreSQL.

Run this in two (or more) terminals at once::

    python examples/cluster_demo.py --dsn postgresql://postgres@127.0.0.1/postgres

Every instance defines the same two tasks (defining an existing task again is fine: the
stored one is adopted) and registers their handlers. The database hands each occurrence
to exactly one instance, so every ``run_key`` below is printed by exactly one terminal.
Stop one with Ctrl-C and the other keeps running everything; kill one with ``kill -9``
while it runs something and the other takes the run over after the lease (default 30 s).

Options: ``--seconds N`` stops after N seconds; ``--interval``, ``--work`` and
``--workers`` shape the ``tick`` task (the test uses them to make both instances busy).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from datetime import timedelta
from typing import Any

from tickwork import Scheduler, Task, TaskContext, cron, every
from tickwork.stores.postgres import PostgresTaskStore


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dsn", default="postgresql://postgres@127.0.0.1/postgres")
    p.add_argument("--schema", default="tickwork_demo",
                   help="a schema of its own, so the demo collides with nothing")
    p.add_argument("--seconds", type=float, default=None, help="stop after N seconds")
    p.add_argument("--interval", type=float, default=2.0, help="tick every N seconds")
    p.add_argument("--work", type=float, default=0.0, help="each tick takes N seconds")
    p.add_argument("--workers", type=int, default=4, help="worker threads per instance")
    p.add_argument("--lease", type=float, default=30.0, help="lease in seconds")
    args = p.parse_args(argv)
    pid = os.getpid()

    def tick(ctx: TaskContext) -> None:
        # ctx.run_key ("task@planned time") is the same on every instance and attempt:
        # the key to make an effect idempotent. ctx.fence orders the attempts.
        print(f"pid={pid} ran {ctx.run_key} attempt={ctx.attempt} fence={ctx.fence}",
              flush=True)
        ctx.wait(args.work)

    def report(ctx: TaskContext) -> None:
        print(f"pid={pid} ran {ctx.run_key} attempt={ctx.attempt} fence={ctx.fence}",
              flush=True)

    store = PostgresTaskStore(args.dsn, schema=args.schema,
                              lease=timedelta(seconds=args.lease))
    sched = Scheduler(store=store, max_workers=args.workers)
    sched.register_handler("tick", tick)
    sched.register_handler("report", report)
    # max_instances=2: a slow tick may overlap the next one (on another instance).
    sched.add_task(Task(id="tick", handler="tick", max_instances=2,
                        schedule=every(seconds=args.interval, fixed_rate=True)))
    sched.add_task(Task(id="report", handler="report",
                        schedule=cron("*/10 * * * * *", seconds=True)))

    done = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: done.set())
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    sched.start()
    print(f"pid={pid} instance={sched.instance_id} running (Ctrl-C to stop)", flush=True)
    deadline = None if args.seconds is None else time.monotonic() + args.seconds
    while not done.is_set():
        left: Any = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            break
        done.wait(0.5 if left is None else min(left, 0.5))
    sched.stop()
    store.close()
    print(f"pid={pid} stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
