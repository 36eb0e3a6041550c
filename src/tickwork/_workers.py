"""A minimal worker pool: threads started on demand, each idle one parked on its own lock.

Cheaper per run than ``ThreadPoolExecutor`` (no Future per job), which matters when
thousands of runs fall due at once, and cheaper than a shared ``threading.Condition``:
handing a job over is one C-level ``Lock.release`` (a Condition's wait and notify are
Python code that allocates a lock per wait). Idle workers are woken last-in first-out:
the one that went idle most recently still has the interpreter's and the CPU's caches
warm, where a shared condition woke the longest-idle one and rotated the work through
every thread (issue 7, W3: 2,000 short runs/s). Threads are daemons: a handler that
never returns cannot keep the process alive after ``stop()``.

``shutdown()`` retires the current *generation* (its queue, idle stack and threads) and
starts a fresh one, so that a scheduler restarted at once never hands a job to a thread
that is about to exit (which left the job queued forever).
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable

Job = Callable[[], None]


class _Worker:
    __slots__ = ("bell", "job")

    def __init__(self, job: Job) -> None:
        self.bell = threading.Lock()
        self.bell.acquire()  # held: nothing to do; submit() releases it with a job set
        self.job: Job | None = job


class _Generation:
    __slots__ = ("closed", "idle", "jobs", "lock", "threads")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.idle: list[_Worker] = []  # a stack: the most recently idle on top
        self.jobs: deque[Job] = deque()  # waiting for a worker (all busy, pool full)
        self.threads = 0
        self.closed = False


class WorkerPool:
    def __init__(self, size: int, name: str = "tickwork-worker") -> None:
        self._size = size
        self._name = name
        self._gen = _Generation()
        self._lock = threading.Lock()

    def submit(self, job: Job) -> None:
        with self._lock:
            gen = self._gen
        with gen.lock:
            if gen.idle:
                w = gen.idle.pop()
                w.job = job
                w.bell.release()
                return
            if gen.threads >= self._size:
                gen.jobs.append(job)
                return
            gen.threads += 1
            n = gen.threads
        t = threading.Thread(target=self._work, args=(gen, _Worker(job)),
                             name=f"{self._name}-{n - 1}", daemon=True)
        t.start()

    def shutdown(self) -> None:
        """Retire the current threads: each ends after the jobs already queued."""
        with self._lock:
            old, self._gen = self._gen, _Generation()
        with old.lock:
            old.closed = True
            idle, old.idle = old.idle, []
        for w in idle:
            w.job = None
            w.bell.release()

    @staticmethod
    def _work(gen: _Generation, w: _Worker) -> None:
        job = w.job
        while job is not None:
            try:
                job()
            except Exception:  # jobs contain handler errors: this is a bug, keep the thread
                logging.getLogger("tickwork").exception("worker job failed")
            with gen.lock:
                if gen.jobs:
                    job = gen.jobs.popleft()
                    continue
                if gen.closed:
                    return
                w.job = None
                gen.idle.append(w)
            w.bell.acquire()
            job = w.job
