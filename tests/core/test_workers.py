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
        assert pool._gen.threads == 2 and len(pool._gen.jobs) == 8
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
