"""Prometheus metrics: parsed with prometheus_client's own parser, fed by real runs."""

from __future__ import annotations

from datetime import timedelta

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from tickwork import RetryPolicy, Scheduler, Task, TaskContext, every
from tickwork.service.api import create_app
from tickwork.service.metrics import SchedulerMetrics
from tickwork.testing import FakeClock, run_until, settle

from .conftest import T0, boom


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(text: str, name: str, **labels: str) -> float | None:
    return samples(text).get((name, tuple(sorted(labels.items()))))


def test_metrics_after_runs(clock: FakeClock) -> None:
    s = Scheduler(clock=clock, timezone="UTC", max_retries=0)
    calls = {"n": 0}

    def flaky(ctx: TaskContext) -> None:
        calls["n"] += 1
        if ctx.attempt == 1:
            raise RuntimeError("first attempt fails")

    def slow(ctx: TaskContext) -> str:
        clock.advance(2.0)  # the handler "takes" two fake seconds
        return "ok"

    s.add_task(Task(id="slow", handler=slow, schedule=every(minutes=10)))
    s.add_task(Task(id="bad", handler=boom, schedule=every(minutes=10)))
    s.add_task(Task(id="flaky", handler=flaky, schedule=every(minutes=10),
                    retry=RetryPolicy(max_retries=1, delay=timedelta(seconds=1))))
    s.add_task(Task(id="child", handler=slow, schedule=every(minutes=10), dependencies=["bad"]))
    s.add_task(Task(id="off", handler=slow, schedule=every(minutes=10), enabled=False))
    app = create_app(s)
    try:
        with TestClient(app) as c:
            s.start()
            run_until(s, clock, T0 + timedelta(seconds=30))
            settle(s)
            text = c.get("/metrics").text
    finally:
        s.stop(timeout=5)

    assert value(text, "tickwork_runs_total", task="slow", status="succeeded") == 1
    assert value(text, "tickwork_runs_total", task="bad", status="failed") == 1
    assert value(text, "tickwork_runs_total", task="flaky", status="succeeded") == 1
    assert value(text, "tickwork_runs_total", task="child", status="skipped") == 1
    assert value(text, "tickwork_retries_total", task="flaky") == 1
    assert value(text, "tickwork_skipped_total", task="child") == 1
    # slow took 2 fake seconds: in the (1, 2.5] bucket, not in (0.5, 1].
    assert value(text, "tickwork_run_duration_seconds_count", task="slow") == 1
    assert value(text, "tickwork_run_duration_seconds_bucket", task="slow", le="1.0") == 0
    assert value(text, "tickwork_run_duration_seconds_bucket", task="slow", le="2.5") == 1
    total = value(text, "tickwork_run_duration_seconds_sum", task="slow")
    assert total is not None and 2.0 <= total < 2.5
    assert value(text, "tickwork_run_lateness_seconds_count", task="slow") == 1
    last = value(text, "tickwork_last_success_timestamp_seconds", task="slow")
    assert last is not None and last >= T0.timestamp() + 2.0
    assert value(text, "tickwork_last_success_timestamp_seconds", task="bad") is None
    assert value(text, "tickwork_tasks", state="disabled") == 1
    assert value(text, "tickwork_tasks", state="scheduled") == 4
    assert value(text, "tickwork_running") == 0
    assert value(text, "tickwork_queue_depth") == 0
    assert value(text, "process_cpu_seconds_total") is not None  # standard process metrics
    assert any(k[0] == "python_info" for k in samples(text))


def test_missed_counter(clock: FakeClock) -> None:
    s = Scheduler(clock=clock, timezone="UTC")
    s.add_task(Task(id="m", handler=lambda: None, schedule=every(minutes=1),
                    misfire_grace=timedelta(seconds=5)))
    m = SchedulerMetrics(s)
    s.start()
    settle(s)
    clock.advance(timedelta(minutes=5))  # a jump: the planned occurrence is too late
    settle(s)
    s.stop(timeout=5)
    text = m.render().decode()
    missed = value(text, "tickwork_missed_total", task="m")
    assert missed is not None and missed >= 1
    assert value(text, "tickwork_runs_total", task="m", status="missed") == missed
    m.close()


def test_running_gauge_and_last_success_seeded_from_history(clock: FakeClock) -> None:
    import threading
    gate = threading.Event()
    started = threading.Event()

    def blocker() -> None:
        started.set()
        gate.wait(10)

    s = Scheduler(clock=clock, timezone="UTC")
    s.add_task(Task(id="ok", handler=lambda: 1, schedule=every(hours=1)))
    s.add_task(Task(id="block", handler=blocker, schedule=every(hours=1), enabled=False))
    s.start()
    settle(s)
    # A registry created after the run still knows the last success (from history).
    m = SchedulerMetrics(s)
    assert value(m.render().decode(), "tickwork_last_success_timestamp_seconds",
                 task="ok") == T0.timestamp()
    s.run_now("block")
    assert started.wait(10)
    assert value(m.render().decode(), "tickwork_running") == 1
    gate.set()
    settle(s)
    assert value(m.render().decode(), "tickwork_running") == 0
    s.stop(timeout=5)
    m.close()


def test_two_apps_do_not_collide(sched: Scheduler) -> None:
    a, b = create_app(sched), create_app(sched)
    with TestClient(a) as ca, TestClient(b) as cb:
        assert ca.get("/metrics").status_code == 200
        assert cb.get("/metrics").status_code == 200
