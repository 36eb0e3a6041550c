"""A console demo: one task of each kind printing as it fires. Ctrl-C stops gracefully."""

from __future__ import annotations

import itertools
import logging
import random
import threading
from datetime import datetime, timedelta

from . import Priority, RetryPolicy, Scheduler, Task, TaskContext, at, cron, every


def console_demo(seconds: float | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    sched = Scheduler(max_workers=4)
    counter = itertools.count(1)

    def say(ctx: TaskContext) -> str:
        msg = f"{datetime.now():%H:%M:%S} {ctx.task_id} (attempt {ctx.attempt})"
        print(msg, flush=True)
        return msg

    def flaky(ctx: TaskContext) -> None:
        say(ctx)
        if random.random() < 0.6:
            raise RuntimeError("flaky failure, will retry with backoff")

    def prepare(ctx: TaskContext) -> int:
        say(ctx)
        return next(counter)

    now = datetime.now().astimezone()
    sched.add_task(Task(id="heartbeat", name="Heartbeat every 2s", handler=say,
                        schedule=every(seconds=2), priority=Priority.HIGH))
    sched.add_task(Task(id="cron-minute", name="Every minute (cron)", handler=say,
                        schedule=cron("* * * * *")))
    sched.add_task(Task(id="once", name="Once, 5 and 10 seconds after start", handler=say,
                        schedule=at(now + timedelta(seconds=5), now + timedelta(seconds=10))))
    sched.add_task(Task(id="flaky", name="Fails often, retries", handler=flaky,
                        schedule=every(seconds=15),
                        retry=RetryPolicy(max_retries=3, delay=timedelta(seconds=1))))
    sched.add_task(Task(id="prepare-data", name="Prepare", handler=prepare,
                        schedule=every(seconds=7)))
    sched.add_task(Task(id="process-data", name="Process (after prepare)", handler=say,
                        schedule=every(seconds=7), dependencies=["prepare-data"]))
    sched.subscribe(lambda e: print(f"  event {e.type} {e.task_id or ''} {e.error or ''}"),
                    events=["run_retrying", "run_failed", "run_skipped"])
    print("tickwork console demo: Ctrl-C to stop", flush=True)
    if seconds is None:
        sched.run_forever()
    else:
        sched.start()
        threading.Event().wait(seconds)
        sched.stop(timeout=5)
    print(sched.get_stats(), flush=True)
    return 0
