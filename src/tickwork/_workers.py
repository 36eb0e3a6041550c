"""A minimal worker pool: a deque and a condition, threads started on demand.

Cheaper per run than ``ThreadPoolExecutor`` (no Future per job), which matters when
thousands of runs fall due at once. Threads are daemons: a handler that never returns
cannot keep the process alive after ``stop()``.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable


class WorkerPool:
    def __init__(self, size: int, name: str = "tickwork-worker") -> None:
        self._size = size
        self._name = name
        self._jobs: deque[Callable[[], None] | None] = deque()
        self._cond = threading.Condition(threading.Lock())
        self._threads: list[threading.Thread] = []
        self._idle = 0

    def submit(self, job: Callable[[], None]) -> None:
        with self._cond:
            self._jobs.append(job)
            if self._idle:
                self._cond.notify()
            elif len(self._threads) < self._size:
                t = threading.Thread(target=self._work, name=f"{self._name}-{len(self._threads)}",
                                     daemon=True)
                self._threads.append(t)
                t.start()

    def shutdown(self) -> None:
        with self._cond:
            for _ in self._threads:
                self._jobs.append(None)
            self._cond.notify_all()
            self._threads = []

    def _work(self) -> None:
        jobs, cond = self._jobs, self._cond
        while True:
            with cond:
                while not jobs:
                    self._idle += 1
                    cond.wait()
                    self._idle -= 1
                job = jobs.popleft()
            if job is None:
                return
            job()
