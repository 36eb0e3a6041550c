"""The public surface is pinned: a removed or renamed export is a breaking change."""

import tickwork

EXPECTED = {
    "AsyncScheduler", "CronExpression", "CronSyntaxError", "DependencyError",
    "DuplicateTaskError", "Event", "EventType", "InvalidScheduleError", "JsonTaskStore",
    "MemoryTaskStore", "PostgresTaskStore", "Priority", "RetryPolicy", "RunRecord", "RunStatus",
    "Schedule",
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


def test_core_imports_only_the_standard_library() -> None:
    """API.md 1: the core needs nothing outside the stdlib (web/postgres are extras)."""
    import subprocess
    import sys

    code = (
        "import sys, tickwork, tickwork.testing\n"
        "allowed = set(sys.stdlib_module_names) | {'tickwork'}\n"
        "bad = sorted({m.split('.')[0] for m in sys.modules} - allowed)\n"
        "bad = [m for m in bad if not m.startswith('_') and m not in "
        "('sitecustomize', 'usercustomize')]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"core imports third-party modules: {out.stdout}"
