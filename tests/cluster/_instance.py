"""A cluster instance in its own process, for the takeover tests (SIGKILL needs a process).

``python _instance.py DSN SCHEMA LEASE_SECONDS`` runs a ``Scheduler`` on the store with a
handler ``slow`` that sleeps 60 s (so it is still running when the test kills us) and
prints ``ready`` once started."""

from __future__ import annotations

import sys
import time
from datetime import timedelta

from tickwork import Scheduler
from tickwork.stores.postgres import PostgresTaskStore


def slow() -> None:
    time.sleep(60)


def main() -> None:
    dsn, schema, lease = sys.argv[1], sys.argv[2], float(sys.argv[3])
    sched = Scheduler(store=PostgresTaskStore(dsn, schema=schema,
                                              lease=timedelta(seconds=lease)), max_workers=4)
    sched.register_handler("slow", slow)
    sched.start()
    print("ready", flush=True)
    while True:
        time.sleep(1)


if __name__ == "__main__":
    main()
