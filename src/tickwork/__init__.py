"""tickwork: an in-process background task scheduler.

Exact timers, retries with backoff, priorities, dependencies, misfire handling, history,
cron with Debian's DST rules, durable stores, and exactly-once cluster mode on PostgreSQL.
See the README for a tour; everything public is importable from here.
"""

from ._context import TaskContext
from ._errors import (
    CronSyntaxError,
    DependencyError,
    DuplicateTaskError,
    InvalidScheduleError,
    SchedulerError,
    StoreError,
    TaskNotFoundError,
)
from ._model import (
    Event,
    EventType,
    Priority,
    RetryPolicy,
    RunRecord,
    RunStatus,
    Schedule,
    ScheduleType,
    Task,
    TaskState,
    at,
    cron,
    every,
)
from .aio import AsyncScheduler
from .scheduler import Scheduler
from .schedules.cron import CronExpression
from .stores import JsonTaskStore, MemoryTaskStore, SqliteTaskStore, TaskStore, open_store

__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    # PostgresTaskStore needs psycopg (the `postgres` extra): import it only when asked for,
    # so that `import tickwork` stays standard-library only.
    if name == "PostgresTaskStore":
        from .stores.postgres import PostgresTaskStore

        return PostgresTaskStore
    raise AttributeError(f"module 'tickwork' has no attribute {name!r}")


__all__ = [
    "AsyncScheduler",
    "CronExpression",
    "CronSyntaxError",
    "DependencyError",
    "DuplicateTaskError",
    "Event",
    "EventType",
    "InvalidScheduleError",
    "JsonTaskStore",
    "MemoryTaskStore",
    "PostgresTaskStore",
    "Priority",
    "RetryPolicy",
    "RunRecord",
    "RunStatus",
    "Schedule",
    "ScheduleType",
    "Scheduler",
    "SchedulerError",
    "SqliteTaskStore",
    "StoreError",
    "Task",
    "TaskContext",
    "TaskNotFoundError",
    "TaskState",
    "TaskStore",
    "__version__",
    "at",
    "cron",
    "every",
    "open_store",
]
