"""A minimal worker pool: a deque and a condition, threads started on demand.

Cheaper per run than ``ThreadPoolExecutor`` (no Future per job), which matters when
thousands of runs fall due at once. Threads are daemons: a handler that never returns
cannot keep the process alive after ``stop()``.

``shutdown()`` retires the current *generation* (its queue, condition, threads and idle
count) and starts a fresh one, so that a scheduler restarted at once never hands a job to
a thread that is about to exit (which left the job queued forever).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable


class _Generation:
    __slots__ = ("cond", "idle", "jobs", "threads")

    def __init__(self) -> None:
        self.jobs: deque[Callable[[], None] | None] = deque()
        self.cond = threading.Condition(threading.Lock())
        self.threads: list[threading.Thread] = []
        self.idle = 0


class WorkerPool:
    def __init__(self, size: int, name: str = "tickwork-worker") -> None:
        self._size = size
        self._name = name
        self._gen = _Generation()
        self._lock = threading.Lock()

    def submit(self, job: Callable[[], None]) -> None:
        with self._lock:
            gen = self._gen
        with gen.cond:
            gen.jobs.append(job)
            if gen.idle:
                # Claim the waiter now: counting it idle until it wakes let a second job be
                # queued behind the first one on the same thread (possibly behind a handler
                # that runs for hours) while the pool still had room for a new thread.
                gen.idle -= 1
                gen.cond.notify()
            elif len(gen.threads) < self._size:
                t = threading.Thread(target=self._work, args=(gen,),
                                     name=f"{self._name}-{len(gen.threads)}", daemon=True)
                gen.threads.append(t)
                t.start()

    def shutdown(self) -> None:
        with self._lock:
            old, self._gen = self._gen, _Generation()
        with old.cond:
            old.jobs.extend([None] * len(old.threads))
            old.cond.notify_all()

    @staticmethod
    def _work(gen: _Generation) -> None:
        jobs, cond = gen.jobs, gen.cond
        while True:
            with cond:
                while not jobs:
                    gen.idle += 1  # submit() takes it back when it wakes this thread
                    cond.wait()
                job = jobs.popleft()
            if job is None:
                return
            job()
