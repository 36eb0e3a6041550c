"""Writer processes for test_crash_safety, forked from one server process.

Importing tickwork takes a few hundred ms, too slow to start a fresh interpreter for
each of the ~100 kills, so this script imports once and forks a writer per request:

    stdin:  ``go KIND PATH START``  (KIND is json or sqlite)
    stdout: ``pid N``, then one line per finished change: ``task ID N`` / ``run RUN_ID``,
            then, after the writer died (the parent SIGKILLs it), ``dead``.

A writer prints a change only after the store call *returned*, and flushes, so every
printed change must be in the store whatever moment the kill lands on.
"""

from __future__ import annotations

import os
import sys
from datetime import UTC, datetime, timedelta

from tickwork._model import RunRecord, RunStatus
from tickwork.stores import JsonTaskStore, SqliteTaskStore
from tickwork.stores.base import TaskStore


def write_forever(kind: str, path: str, start: int) -> None:
    store: TaskStore = (JsonTaskStore(path, keep_runs_per_task=None) if kind == "json"
                        else SqliteTaskStore(path, keep_runs_per_task=None))
    out = sys.stdout
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    i = start
    while True:
        tid = f"t{i % 7}"
        task = {"v": 1, "id": tid, "n": i, "pad": "x" * (i % 500)}
        if i % 3:
            store.upsert_task(task, t0)
            out.write(f"task {tid} {i}\n")
        else:
            at = t0 + timedelta(seconds=i)
            rec = RunRecord(run_id=f"r{i}", task_id=tid, scheduled_for=at, started_at=at,
                            finished_at=at, status=RunStatus.SUCCEEDED, attempts=1)
            store.record_run(task, rec, t0)
            out.write(f"task {tid} {i}\nrun r{i}\n")
        out.flush()  # one write(2) of < PIPE_BUF bytes: lines arrive whole
        i += 1


def main() -> None:
    for line in sys.stdin:
        _go, kind, path, start = line.split()
        sys.stdout.flush()
        pid = os.fork()
        if pid == 0:
            try:
                sys.stdout.write(f"pid {os.getpid()}\n")
                sys.stdout.flush()
                write_forever(kind, path, int(start))
            finally:
                os._exit(3)  # only reached on an error; the parent reports it
        _, status = os.waitpid(pid, 0)
        sys.stdout.write(f"dead {status}\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
