"""Prometheus metrics fed by scheduler events.

Counters and histograms move on events (terminal events carry the ``RunRecord`` with its
timings, so nothing queries the history per run). Gauges that describe *now* (running,
queue depth, tasks by state) are read from ``get_stats()``/``list_tasks()`` at scrape
time by a custom collector, so they can never drift from the scheduler.

Each app owns its own ``CollectorRegistry`` (plus the process, platform and GC
collectors), so two apps in one process, as in the tests, never collide.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from .. import Event, EventType, RunRecord, RunStatus, Scheduler, TaskState

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Durations span milliseconds (handlers) to hours (batch jobs).
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120,
                    300, 600, 1800, 3600, float("inf"))
# Lateness is normally milliseconds; seconds and minutes mean saturation or downtime.
LATENESS_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, 15, 60, 300,
                    3600, float("inf"))

_TERMINAL = {
    EventType.RUN_SUCCEEDED, EventType.RUN_FAILED, EventType.RUN_TIMED_OUT,
    EventType.RUN_SKIPPED, EventType.RUN_MISSED, EventType.RUN_CANCELLED,
}

_CLUSTER_HELP = {
    "cluster_instances_alive": "Cluster instances with a heartbeat within the lease",
    "cluster_leases_lost": "Runs whose lease this instance lost (since it started)",
    "cluster_takeovers": "Expired leases this instance's reaper handed back for a retry",
    "cluster_fenced_out": "Outcomes of this instance refused because its lease was lost",
    "cluster_held_runs": "Runs this instance holds a lease on now",
}


class _LiveCollector(Collector):
    """Gauges computed at scrape time from the scheduler's public API."""

    def __init__(self, sched: Scheduler) -> None:
        self.sched = sched

    def collect(self) -> Iterable[Metric]:
        stats = self.sched.get_stats()
        running = GaugeMetricFamily("tickwork_running", "Executions running now")
        running.add_metric([], float(stats.get("running_tasks", 0)))
        yield running
        queue = GaugeMetricFamily(
            "tickwork_queue_depth", "Executions due and waiting for a free worker")
        queue.add_metric([], float(stats.get("queued_runs", 0)))
        yield queue
        tasks = GaugeMetricFamily("tickwork_tasks", "Tasks by state", labels=["state"])
        counts = dict.fromkeys((s.value for s in TaskState), 0)
        for t in self.sched.list_tasks():
            counts[str(t.state)] = counts.get(str(t.state), 0) + 1
        for state, n in sorted(counts.items()):
            tasks.add_metric([state], float(n))
        yield tasks
        # Cluster mode (PostgresTaskStore) adds cluster_* keys; a local scheduler has none.
        for key, value in sorted(stats.items()):
            if key.startswith("cluster_"):
                g = GaugeMetricFamily(f"tickwork_{key}", _CLUSTER_HELP.get(
                    key, f"Cluster: {key[len('cluster_'):].replace('_', ' ')}"))
                g.add_metric([], float(value))
                yield g

    def describe(self) -> Iterable[Metric]:
        return []


class SchedulerMetrics:
    """Subscribes to ``sched`` and exposes its metrics in ``self.registry``."""

    def __init__(self, sched: Scheduler, registry: CollectorRegistry | None = None) -> None:
        self.sched = sched
        self.registry = registry or CollectorRegistry()
        r = self.registry
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        GCCollector(registry=r)
        self.runs = Counter("tickwork_runs", "Finished executions and recorded occurrences",
                            ["task", "status"], registry=r)
        self.duration = Histogram("tickwork_run_duration_seconds",
                                  "Execution time, first attempt start to finish",
                                  ["task"], buckets=DURATION_BUCKETS, registry=r)
        self.lateness = Histogram("tickwork_run_lateness_seconds",
                                  "Start time minus planned time", ["task"],
                                  buckets=LATENESS_BUCKETS, registry=r)
        self.retries = Counter("tickwork_retries", "Retries scheduled", ["task"], registry=r)
        self.skipped = Counter("tickwork_skipped", "Occurrences skipped (failed dependency)",
                               ["task"], registry=r)
        self.missed = Counter("tickwork_missed", "Occurrences missed (past misfire grace)",
                              ["task"], registry=r)
        self.last_success = Gauge("tickwork_last_success_timestamp_seconds",
                                  "Unix time of the latest successful execution",
                                  ["task"], registry=r)
        r.register(_LiveCollector(sched))
        self._lock = threading.Lock()
        self._unsubscribe: Callable[[], None] | None = sched.subscribe(self.on_event)
        self._seed_last_success()

    def _seed_last_success(self) -> None:
        """After a restart, alerting must see the stored last success, not "never"."""
        for t in self.sched.list_tasks():
            for rec in self.sched.get_history(t.id, limit=50):
                if rec.status is RunStatus.SUCCEEDED and rec.finished_at is not None:
                    self.last_success.labels(t.id).set(rec.finished_at.timestamp())
                    break

    def on_event(self, ev: Event) -> None:
        task = ev.task_id or ""
        if ev.type is EventType.RUN_RETRYING:
            self.retries.labels(task).inc()
            return
        if ev.type not in _TERMINAL:
            return
        rec = ev.record
        status = rec.status.value if rec is not None else _status_of(ev.type)
        self.runs.labels(task, status).inc()
        if ev.type is EventType.RUN_SKIPPED:
            self.skipped.labels(task).inc()
        elif ev.type is EventType.RUN_MISSED:
            self.missed.labels(task).inc()
        if rec is not None:
            self._observe(task, rec)

    def _observe(self, task: str, rec: RunRecord) -> None:
        if rec.started_at is not None:
            late = (rec.started_at - rec.scheduled_for).total_seconds()
            if not rec.manual:  # run_now has no plan to be late against
                self.lateness.labels(task).observe(max(late, 0.0))
            if rec.finished_at is not None:
                self.duration.labels(task).observe(
                    max((rec.finished_at - rec.started_at).total_seconds(), 0.0))
        if rec.status is RunStatus.SUCCEEDED and rec.finished_at is not None:
            self.last_success.labels(task).set(rec.finished_at.timestamp())

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def close(self) -> None:
        with self._lock:
            unsub, self._unsubscribe = self._unsubscribe, None
        if unsub is not None:
            unsub()


def _status_of(t: EventType) -> str:
    return {
        EventType.RUN_SUCCEEDED: "succeeded", EventType.RUN_FAILED: "failed",
        EventType.RUN_TIMED_OUT: "timed_out", EventType.RUN_SKIPPED: "skipped",
        EventType.RUN_MISSED: "missed", EventType.RUN_CANCELLED: "cancelled",
    }[t]
