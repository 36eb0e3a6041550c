"""A minimal worker pool: threads started on demand, each idle one parked on its own lock.

Cheaper per run than ``ThreadPoolExecutor`` (no Future per job), which matters when
thousands of runs fall due at once, and cheaper than a shared ``threading.Condition``:
handing a job over is one C-level ``Lock.release`` (a Condition's wait and notify are
Python code that allocates a lock per wait). Idle workers are woken last-in first-out:
the one that went idle most recently still has the interpreter's and the CPU's caches
warm, where a shared condition woke the longest-idle one and rotated the work through
every thread (issue 7, W3: 2,000 short runs/s). Threads are daemons: a handler that
never returns cannot keep the process alive after ``stop()``.

A thread is never started by the submitting thread: ``Thread.start()`` waits until the
new thread runs, which took 0.3-6 ms here (the new thread needs the interpreter lock),
and the submitter is the timer thread, whose delay is every due run's lateness. The job
is queued and a spawner thread starts the worker; a worker that ends its job meanwhile
takes the queued one first, whichever comes sooner (issue 7, W3 lateness p99).

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

    def __init__(self) -> None:
        self.bell = threading.Lock()
        self.bell.acquire()  # held: nothing to do; submit() releases it with a job set
        self.job: Job | None = None


class _Generation:
    __slots__ = ("closed", "idle", "jobs", "lock", "threads")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.idle: list[_Worker] = []  # a stack: the most recently idle on top
        self.jobs: deque[Job] = deque()  # waiting for a worker
        self.threads = 0  # started or being started
        self.closed = False


# An idle spawner ends after this long (seconds); the next request starts a new one.
SPAWNER_IDLE_EXIT = 2.0


class WorkerPool:
    def __init__(self, size: int, name: str = "tickwork-worker") -> None:
        self._size = size
        self._name = name
        self._gen = _Generation()
        self._lock = threading.Lock()
        self._requests: deque[_Generation] = deque()  # a thread to start for each
        self._spawner: threading.Thread | None = None
        self._spawn_bell = threading.Lock()
        self._spawn_bell.acquire()

    def submit(self, job: Job) -> None:
        while True:
            # Read without self._lock (one lock round less per run): a generation that
            # shutdown() retired meanwhile is seen closed under its own lock.
            gen = self._gen
            with gen.lock:
                if gen.closed:
                    continue
                if gen.idle:
                    w = gen.idle.pop()
                    w.job = job
                    w.bell.release()
                    return
                gen.jobs.append(job)
                # One more thread only while the pool has room for it.
                if gen.threads >= self._size:
                    return
                gen.threads += 1
            self._request(gen)
            return

    def _request(self, gen: _Generation) -> None:
        with self._lock:
            self._requests.append(gen)
            if self._spawner is None:
                self._spawner = threading.Thread(target=self._spawn_loop,
                                                 name=f"{self._name}-spawner", daemon=True)
                self._spawner.start()
                return
        if self._spawn_bell.locked():
            try:
                self._spawn_bell.release()
            except RuntimeError:  # rung meanwhile: still pending
                pass

    def _spawn_loop(self) -> None:
        requests = self._requests
        while True:
            while requests:
                gen = requests.popleft()
                with gen.lock:
                    n = gen.threads
                threading.Thread(target=self._work, args=(gen, _Worker()),
                                 name=f"{self._name}-{n - 1}", daemon=True).start()
            if not self._spawn_bell.acquire(timeout=SPAWNER_IDLE_EXIT):
                with self._lock:
                    if not requests:
                        self._spawner = None
                        return

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
        while True:
            with gen.lock:
                if gen.jobs:
                    job: Job | None = gen.jobs.popleft()
                elif gen.closed:
                    return
                else:
                    gen.idle.append(w)
                    job = None
            if job is None:
                w.bell.acquire()
                job = w.job
                if job is None:  # shutdown
                    return
            try:
                job()
            except Exception:  # jobs contain handler errors: this is a bug, keep the thread
                logging.getLogger("tickwork").exception("worker job failed")
