"""The public surface is pinned: a removed or renamed export is a breaking change."""

import tickwork

EXPECTED = {
    "AsyncScheduler", "CronExpression", "CronSyntaxError", "DependencyError",
    "DuplicateTaskError", "Event", "EventType", "InvalidScheduleError", "JsonTaskStore",
    "MemoryTaskStore", "Priority", "RetryPolicy", "RunRecord", "RunStatus", "Schedule",
    "ScheduleType", "Scheduler", "SchedulerError", "SqliteTaskStore", "StoreError", "Task",
    "TaskContext", "TaskNotFoundError", "TaskState", "TaskStore", "__version__", "at", "cron",
    "every", "open_store",
}


def test_all_is_pinned() -> None:
    assert set(tickwork.__all__) == EXPECTED


def test_every_export_resolves() -> None:
    for name in tickwork.__all__:
        assert getattr(tickwork, name) is not None, name


def test_exception_hierarchy() -> None:
    assert issubclass(tickwork.TaskNotFoundError, KeyError)
    assert issubclass(tickwork.InvalidScheduleError, ValueError)
    assert issubclass(tickwork.CronSyntaxError, tickwork.InvalidScheduleError)
    for exc in (tickwork.TaskNotFoundError, tickwork.DuplicateTaskError,
                tickwork.DependencyError, tickwork.InvalidScheduleError, tickwork.StoreError):
        assert issubclass(exc, tickwork.SchedulerError)


def test_priority_values() -> None:
    assert (tickwork.Priority.LOW, tickwork.Priority.MEDIUM, tickwork.Priority.HIGH) == (0, 50, 100)
