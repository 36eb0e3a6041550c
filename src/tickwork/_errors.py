"""The exception hierarchy. Every error names what was wrong and where."""

from __future__ import annotations


class SchedulerError(Exception):
    """Base class of every error tickwork raises on purpose."""


class TaskNotFoundError(SchedulerError, KeyError):
    """No task with the given id."""

    def __init__(self, task_id: str) -> None:
        super().__init__(f"task not found: {task_id!r}")
        self.task_id = task_id

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


class DuplicateTaskError(SchedulerError):
    """A task with this id already exists."""

    def __init__(self, task_id: str) -> None:
        super().__init__(f"task already exists: {task_id!r}")
        self.task_id = task_id


class DependencyError(SchedulerError):
    """Unknown dependency, self-dependency, cycle, or removal of a task others depend on."""


class InvalidScheduleError(SchedulerError, ValueError):
    """A schedule that cannot be used: interval <= 0, no times, bad cron, unknown zone."""


class CronSyntaxError(InvalidScheduleError):
    """A cron expression that does not parse; the message names the field and the text."""


class StoreError(SchedulerError):
    """A store that is unreadable, corrupt or unreachable. The store is never overwritten."""
