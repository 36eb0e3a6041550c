"""The nouns: Task (what), Schedule (when), Run (one occurrence), and their enums.

Values are plain dataclasses. ``Task`` is mutable so that a user can build one up, but the
scheduler always keeps its own copy, and the snapshots it hands out are copies too.
Validation here is structural (types, ranges); anything that needs the scheduler's
context (time zone, other tasks) is checked by ``add_task``.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from enum import IntEnum, StrEnum
from typing import TYPE_CHECKING, Any

from ._durations import parse_duration, to_timedelta
from ._errors import InvalidScheduleError

if TYPE_CHECKING:
    from ._context import TaskContext

# def h(), def h(ctx), async def h(), async def h(ctx), or "package.module:function"
Handler = Callable[..., Any] | Callable[..., Awaitable[Any]] | str
BeforeHook = Callable[["TaskContext"], Any]
AfterHook = Callable[["TaskContext", "RunRecord"], Any]

TASK_ID_RE = re.compile(r"[A-Za-z0-9._:-]{1,200}")
_ZERO = timedelta(0)


class ScheduleType(StrEnum):
    INTERVAL = "interval"
    ONCE = "once"
    CRON = "cron"


class Priority(IntEnum):
    LOW = 0
    MEDIUM = 50
    HIGH = 100


class RunStatus(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    MISSED = "missed"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"


class TaskState(StrEnum):
    SCHEDULED = "scheduled"
    RUNNING = "running"
    DISABLED = "disabled"
    ORPHANED = "orphaned"
    FINISHED = "finished"


class EventType(StrEnum):
    TASK_ADDED = "task_added"
    TASK_REMOVED = "task_removed"
    TASK_UPDATED = "task_updated"
    TASK_ENABLED = "task_enabled"
    TASK_DISABLED = "task_disabled"
    RUN_STARTED = "run_started"
    RUN_RETRYING = "run_retrying"
    RUN_SUCCEEDED = "run_succeeded"
    RUN_FAILED = "run_failed"
    RUN_SKIPPED = "run_skipped"
    RUN_MISSED = "run_missed"
    RUN_TIMED_OUT = "run_timed_out"
    RUN_CANCELLED = "run_cancelled"
    RUN_LEASE_LOST = "run_lease_lost"  # cluster: this instance lost a run's lease (fenced out)
    SCHEDULER_STARTED = "scheduler_started"
    SCHEDULER_STOPPED = "scheduler_stopped"


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """Retry n (1-based) waits ``min(delay * backoff**(n-1), max_delay)`` +/- ``jitter``.

    ``max_retries=2`` means three attempts in all.
    """

    max_retries: int = 3
    delay: timedelta = timedelta(seconds=5)
    backoff: float = 2.0
    max_delay: timedelta = timedelta(hours=1)
    jitter: float = 0.0

    def __post_init__(self) -> None:
        if isinstance(self.max_retries, bool) or not isinstance(self.max_retries, int):
            raise ValueError(f"retry.max_retries: expected an int, got {self.max_retries!r}")
        if self.max_retries < 0:
            raise ValueError(f"retry.max_retries: must be >= 0, got {self.max_retries}")
        object.__setattr__(self, "delay", to_timedelta(self.delay, field="retry.delay"))
        object.__setattr__(
            self, "max_delay", to_timedelta(self.max_delay, field="retry.max_delay")
        )
        if self.delay < timedelta(0):
            raise ValueError(f"retry.delay: must be >= 0, got {self.delay}")
        if not isinstance(self.backoff, int | float) or not self.backoff >= 1.0:
            raise ValueError(f"retry.backoff: must be a number >= 1, got {self.backoff!r}")
        if not isinstance(self.jitter, int | float) or not 0.0 <= self.jitter <= 1.0:
            raise ValueError(f"retry.jitter: must be between 0 and 1, got {self.jitter!r}")

    def delay_for(self, retry: int, rand: float = 0.5) -> float:
        """Seconds to wait before retry number ``retry`` (1-based).

        ``rand`` is a uniform number in [0, 1) supplied by the caller, so this stays pure.
        """
        base = self.delay.total_seconds()
        cap = self.max_delay.total_seconds()
        try:
            d = min(base * self.backoff ** (retry - 1), cap)
        except OverflowError:
            d = cap
        if self.jitter:
            d *= 1.0 + self.jitter * (2.0 * rand - 1.0)
        return max(d, 0.0)


def _opt_td(value: object, fld: str) -> timedelta | None:
    if value is None:
        return None
    if type(value) is timedelta:  # the common case, without a call (adds are hot: issue 7)
        return value
    try:
        return to_timedelta(value, field=fld)
    except ValueError as e:
        raise InvalidScheduleError(str(e)) from None


@dataclass(frozen=True, slots=True, kw_only=True)
class Schedule:
    """When a task runs. Build it with :func:`every`, :func:`at` or :func:`cron`.

    Naive datetimes mean wall time in the scheduler's zone; the scheduler resolves them
    when the task is added. ``timezone=None`` on a cron schedule means the scheduler's zone.
    """

    type: ScheduleType
    interval: timedelta | None = None
    times: tuple[datetime, ...] = ()
    cron: str | None = None
    timezone: str | None = None
    seconds: bool = False
    start_at: datetime | None = None
    jitter: timedelta | None = None
    fixed_rate: bool = False

    def __post_init__(self) -> None:
        try:
            kind = self.type if type(self.type) is ScheduleType else ScheduleType(self.type)
        except ValueError:
            raise InvalidScheduleError(
                f"schedule.type: unknown schedule type {self.type!r} "
                "(expected 'interval', 'once' or 'cron')"
            ) from None
        object.__setattr__(self, "type", kind)
        if self.jitter is not None:
            object.__setattr__(self, "jitter", _opt_td(self.jitter, "schedule.jitter"))
        if self.jitter is not None and self.jitter < _ZERO:
            raise InvalidScheduleError(f"schedule.jitter: must be >= 0, got {self.jitter}")
        if self.start_at is not None and not isinstance(self.start_at, datetime):
            raise InvalidScheduleError(
                f"schedule.start_at: expected a datetime, got {self.start_at!r}"
            )
        if kind is ScheduleType.INTERVAL:
            iv = _opt_td(self.interval, "schedule.interval")
            if iv is None or iv <= _ZERO:
                raise InvalidScheduleError(
                    f"schedule.interval: must be > 0, got {self.interval!r}"
                )
            if iv is not self.interval:
                object.__setattr__(self, "interval", iv)
        elif kind is ScheduleType.ONCE:
            times = self.times
            if isinstance(times, datetime):
                times = (times,)
            times = tuple(times or ())
            if not times:
                raise InvalidScheduleError(
                    "schedule.times: a once schedule needs at least one time")
            for t in times:
                if not isinstance(t, datetime):
                    raise InvalidScheduleError(f"schedule.times: expected datetimes, got {t!r}")
            object.__setattr__(self, "times", times)
        else:
            if not isinstance(self.cron, str) or not self.cron.strip():
                raise InvalidScheduleError(f"schedule.cron: empty cron expression {self.cron!r}")
            # Parse now so that a bad expression fails at construction, naming the field.
            from .schedules.cron import CronExpression

            CronExpression(self.cron, timezone=self.timezone or "UTC", seconds=self.seconds,
                           hash_key="validate")

    def describe(self) -> str:
        """A short English description ("every 5 minutes", "at …", cron in words)."""
        if self.type is ScheduleType.INTERVAL:
            assert self.interval is not None
            from ._durations import humanize

            return f"every {humanize(self.interval)}" + (
                " (fixed rate)" if self.fixed_rate else ""
            )
        if self.type is ScheduleType.ONCE:
            return "at " + ", ".join(t.isoformat() for t in self.times)
        from .schedules.cron import CronExpression

        assert self.cron is not None
        desc = CronExpression(
            self.cron, timezone=self.timezone or "UTC", seconds=self.seconds, hash_key="x"
        ).describe()
        return desc + (f" ({self.timezone})" if self.timezone else "")


def every(
    interval: timedelta | str | float | None = None,
    /,
    seconds: float = 0,
    minutes: float = 0,
    hours: float = 0,
    days: float = 0,
    *,
    start_at: datetime | None = None,
    jitter: timedelta | float | None = None,
    fixed_rate: bool = False,
) -> Schedule:
    """An interval schedule.

    ``every(minutes=5)``, ``every(timedelta(hours=1))``, ``every("1h30m")``.
    """
    # Schedules are frozen values: equal arguments give back the same object, so a loop
    # adding thousands of tasks builds (and the scheduler stores) one schedule, not one
    # per task (issue 7). The zone is part of the key: equal instants print differently.
    try:
        key = (interval, seconds, minutes, hours, days, start_at,
               None if start_at is None else (start_at.tzinfo, start_at.fold), jitter,
               fixed_rate)
        hit = _EVERY.get(key)
    except TypeError:  # an unhashable argument: no caching, the checks below report it
        key, hit = None, None
    if hit is not None:
        return hit
    sched = _every(interval, seconds, minutes, hours, days, start_at=start_at, jitter=jitter,
                   fixed_rate=fixed_rate)
    if key is not None:
        if len(_EVERY) >= _EVERY_MAX:
            _EVERY.clear()
        _EVERY[key] = sched
    return sched


_EVERY: dict[tuple[Any, ...], Schedule] = {}
_EVERY_MAX = 1024


def _every(
    interval: timedelta | str | float | None,
    seconds: float,
    minutes: float,
    hours: float,
    days: float,
    *,
    start_at: datetime | None,
    jitter: timedelta | float | None,
    fixed_rate: bool,
) -> Schedule:
    if interval is not None:
        if seconds or minutes or hours or days:
            raise InvalidScheduleError(
                "every(): give either an interval or keyword units, not both")
        if isinstance(interval, str):
            try:
                td = parse_duration(interval, field="schedule.interval")
            except ValueError as e:
                raise InvalidScheduleError(str(e)) from None
        else:
            td = _opt_td(interval, "schedule.interval") or timedelta(0)
    elif not (minutes or hours or days):
        td = timedelta(seconds=seconds)
    else:
        td = timedelta(seconds=seconds, minutes=minutes, hours=hours, days=days)
    return Schedule(
        type=ScheduleType.INTERVAL,
        interval=td,
        start_at=start_at,
        jitter=None if jitter is None else _opt_td(jitter, "schedule.jitter"),
        fixed_rate=fixed_rate,
    )


def at(*times: datetime | Iterable[datetime], jitter: timedelta | float | None = None) -> Schedule:
    """A once schedule running at each given instant.

    ``at(dt)``, ``at(dt1, dt2)``, ``at([dt1, dt2])``.
    """
    flat: list[datetime] = []
    for t in times:
        if isinstance(t, datetime):
            flat.append(t)
        else:
            flat.extend(t)
    return Schedule(
        type=ScheduleType.ONCE, times=tuple(flat), jitter=_opt_td(jitter, "schedule.jitter")
    )


def cron(
    expr: str,
    *,
    timezone: str | None = None,
    seconds: bool = False,
    jitter: timedelta | float | None = None,
) -> Schedule:
    """A cron schedule: ``cron("0 9 * * MON-FRI", timezone="Europe/Berlin")``."""
    return Schedule(
        type=ScheduleType.CRON,
        cron=expr,
        timezone=timezone,
        seconds=seconds,
        jitter=_opt_td(jitter, "schedule.jitter"),
    )


@dataclass(slots=True, kw_only=True)
class Task:
    """A unit of work: what runs (``handler``) and when (``schedule``).

    Runtime fields (``last_run`` … ``state``) are filled in snapshots returned by
    ``get_task``/``list_tasks``; values set on a task passed to ``add_task`` are ignored
    except when loading from a store.
    """

    id: str
    schedule: Schedule
    handler: Handler | None = None
    name: str = ""
    description: str = ""
    enabled: bool = True
    priority: int = Priority.MEDIUM
    dependencies: list[str] = field(default_factory=list)
    retry: RetryPolicy | None = None
    timeout: timedelta | float | None = None
    max_instances: int = 1
    misfire_grace: timedelta | float | None = None
    before_run: BeforeHook | None = None
    after_run: AfterHook | None = None
    on_lease_loss: str = "retry"
    metadata: dict[str, str] = field(default_factory=dict)
    # runtime, filled in snapshots
    last_run: datetime | None = None
    next_run: datetime | None = None
    run_count: int = 0
    error_count: int = 0
    last_error: str | None = None
    last_status: RunStatus | None = None
    state: TaskState = TaskState.SCHEDULED


def validate_task_fields(task: Task) -> None:
    """Structural checks; raises ``ValueError``/``InvalidScheduleError`` naming the field."""
    if not isinstance(task.id, str) or not task.id:
        raise ValueError(f"task.id: must be a non-empty string, got {task.id!r}")
    if not TASK_ID_RE.fullmatch(task.id):
        raise ValueError(
            f"task.id: {task.id!r} may only contain A-Z a-z 0-9 . _ : - (1-200 characters)"
        )
    if not isinstance(task.schedule, Schedule):
        raise InvalidScheduleError(
            f"task.schedule: expected a Schedule (every/at/cron), got {task.schedule!r}"
        )
    h = task.handler
    if h is not None and not callable(h) and not (isinstance(h, str) and h.strip()):
        raise ValueError(f"task.handler: expected a callable or 'module:function', got {h!r}")
    # The checks below take the cheap path for the usual values first: add_task is on
    # the hot path of bulk loading (issue 7), and every branch still names the field.
    if type(task.name) is not str or type(task.description) is not str:
        for name in ("name", "description"):
            v = getattr(task, name)
            if not isinstance(v, str):
                raise ValueError(f"task.{name}: expected a string, got {v!r}")
    if task.enabled is not True and task.enabled is not False:
        raise ValueError(f"task.enabled: expected a bool, got {task.enabled!r}")
    if isinstance(task.priority, bool) or not isinstance(task.priority, int):
        raise ValueError(f"task.priority: expected an int, got {task.priority!r}")
    deps = task.dependencies
    if (deps or type(deps) is not list) and (
            isinstance(deps, str) or not all(isinstance(d, str) and d for d in deps)):
        raise ValueError(f"task.dependencies: expected a list of task ids, got {deps!r}")
    if task.retry is not None and not isinstance(task.retry, RetryPolicy):
        raise ValueError(f"task.retry: expected a RetryPolicy or None, got {task.retry!r}")
    if task.timeout is not None or task.misfire_grace is not None:
        for name in ("timeout", "misfire_grace"):
            v = getattr(task, name)
            if v is None:
                continue
            td = to_timedelta(v, field=f"task.{name}")
            if td < _ZERO or (name == "timeout" and td == _ZERO):
                raise ValueError(f"task.{name}: must be positive, got {v!r}")
    mi = task.max_instances
    if (type(mi) is not int or mi < 1) and (
            isinstance(mi, bool) or not isinstance(mi, int) or mi < 1):
        raise ValueError(f"task.max_instances: must be an int >= 1, got {mi!r}")
    if task.on_lease_loss not in ("retry", "fail"):
        raise ValueError(
            f"task.on_lease_loss: must be 'retry' or 'fail', got {task.on_lease_loss!r}"
        )
    md = task.metadata
    if (md or type(md) is not dict) and (not isinstance(md, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in md.items())):
        raise ValueError(f"task.metadata: expected a dict of str to str, got {md!r}")
    if task.before_run is not None or task.after_run is not None:
        for name in ("before_run", "after_run"):
            v = getattr(task, name)
            if v is not None and not callable(v):
                raise ValueError(f"task.{name}: expected a callable, got {v!r}")


def _make_clone() -> Callable[[Task], Task]:
    # A shallow copy of a Task in one straight-line function, generated from the fields
    # so that a field added later is copied too. dataclasses.replace (which re-runs
    # __init__ through keyword arguments) was a quarter of add_task's cost (issue 7).
    names = [f.name for f in fields(Task)]
    body = "".join(f"    n.{x} = t.{x}\n" for x in names)
    src = f"def clone_task(t):\n    n = _new(_cls)\n{body}    return n\n"
    ns: dict[str, Any] = {"_new": object.__new__, "_cls": Task}
    exec(src, ns)  # the source is built above from the dataclass's own field names
    fn: Callable[[Task], Task] = ns["clone_task"]
    return fn


clone_task = _make_clone()
"""A shallow copy of a Task (no validation, same field values)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RunRecord:
    """One execution (or a skipped/missed occurrence) of a task."""

    run_id: str
    task_id: str
    scheduled_for: datetime
    started_at: datetime | None
    finished_at: datetime | None
    status: RunStatus
    attempts: int = 0
    error: str | None = None
    result: Any = None
    instance_id: str | None = None
    manual: bool = False

    @property
    def duration(self) -> timedelta | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return self.finished_at - self.started_at


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """Something that happened; delivered to ``subscribe`` callbacks.

    ``record`` is set on terminal run events (succeeded, failed, timed_out, skipped,
    missed, cancelled) so that peripherals need not query the history.
    """

    type: EventType
    task_id: str | None = None
    run_id: str | None = None
    at: datetime | None = None
    attempt: int | None = None
    error: str | None = None
    record: RunRecord | None = None
