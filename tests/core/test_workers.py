"""The worker pool (real threads): hand-over, reuse, queueing when full, restart."""

from __future__ import annotations

import threading

from tickwork._workers import WorkerPool

from .conftest import wait_for


def test_sequential_jobs_reuse_the_most_recently_idle_thread() -> None:
    pool = WorkerPool(8)
    names: list[str] = []
    try:
        gate = threading.Event()
        for _ in range(4):  # four threads, all idle after the gate opens
            pool.submit(lambda: gate.wait(5))
        gate.set()
        wait_for(lambda: len(pool._gen.idle) == 4)
        for _ in range(20):
            done = threading.Event()

            def job(done: threading.Event = done) -> None:
                names.append(threading.current_thread().name)
                done.set()

            pool.submit(job)
            assert done.wait(5)
            wait_for(lambda: len(pool._gen.idle) == pool._gen.threads)
        assert len(set(names)) == 1  # one warm thread, not a rotation through all four
    finally:
        pool.shutdown()


def test_a_full_pool_queues_and_runs_every_job() -> None:
    pool = WorkerPool(2)
    gate = threading.Event()
    ran: list[int] = []
    lock = threading.Lock()
    try:
        def job(i: int) -> None:
            gate.wait(5)
            with lock:
                ran.append(i)

        for i in range(10):
            pool.submit(lambda i=i: job(i))
        wait_for(lambda: len(pool._gen.jobs) == 8)  # two taken, the pool is full
        assert pool._gen.threads == 2
        gate.set()
        wait_for(lambda: len(ran) == 10)
        assert sorted(ran) == list(range(10))
    finally:
        pool.shutdown()


def test_jobs_submitted_after_shutdown_run_on_fresh_threads() -> None:
    pool = WorkerPool(2)
    first = threading.Event()
    pool.submit(first.set)
    assert first.wait(5)
    old = pool._gen
    pool.shutdown()
    wait_for(lambda: not any(t.name.startswith("tickwork-worker") and t.is_alive()
                             for t in threading.enumerate()) or old.closed)
    second = threading.Event()
    pool.submit(second.set)
    assert second.wait(5) and pool._gen is not old and old.closed


def test_a_failing_job_does_not_kill_its_thread() -> None:
    pool = WorkerPool(1)
    ok = threading.Event()
    try:
        def bad() -> None:
            raise RuntimeError("boom")

        pool.submit(bad)
        pool.submit(ok.set)
        assert ok.wait(5)
        assert pool._gen.threads == 1
    finally:
        pool.shutdown()


def test_the_submitter_never_waits_for_a_thread_to_start() -> None:
    # Thread.start() blocks until the new thread runs; the timer thread must not (its
    # delay is lateness): submit queues the job and a spawner starts the thread.
    pool = WorkerPool(4)
    started = threading.Event()
    try:
        spawner_threads: list[str] = []
        real_start = threading.Thread.start

        def recording_start(t: threading.Thread) -> None:
            spawner_threads.append(threading.current_thread().name)
            real_start(t)

        threading.Thread.start = recording_start  # type: ignore[method-assign]
        try:
            pool.submit(started.set)
            assert started.wait(5)
            pool.submit(lambda: None)
        finally:
            threading.Thread.start = real_start  # type: ignore[method-assign]
        me = threading.current_thread().name
        # the first submit starts the spawner; the worker itself is started by the spawner
        assert spawner_threads[0] == me and all(n != me for n in spawner_threads[1:])
        assert "tickwork-worker-spawner" in spawner_threads[1:]
    finally:
        pool.shutdown()
