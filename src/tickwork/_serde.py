"""Tasks and run records as versioned, JSON-compatible dicts (format ``"v": 1``).

Every store keeps these dicts, so the format is the on-disk contract:

* deterministic: the same Task gives the same dict with the same key order, and
  ``task_to_dict(task_from_dict(d))`` equals ``d`` for any dict this module wrote, so
  load -> save -> load -> save is byte-identical;
* plain JSON types only: datetimes are ISO-8601 strings (aware ones keep their offset,
  naive ones are written naive, exactly as the scheduler handed them over), timedeltas
  are float seconds, enums are their values;
* runtime fields live under ``"state"``, next to the definition, including
  ``last_scheduled`` (the last planned time, which the scheduler needs for catch-up after
  downtime and which ``Task`` has no field for: read it with :func:`state_from_dict`);
* readers ignore keys they do not know, so a newer minor writer does not break an older
  reader; stores never rewrite dicts themselves, so unknown keys survive untouched.

A dict that cannot be read raises ``StoreError`` naming the task (or run) id and the field.
The seed's Go file format is converted to this one by ``tickwork._goformat``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, TypedDict, TypeVar

from ._errors import InvalidScheduleError, StoreError
from ._model import RetryPolicy, RunRecord, RunStatus, Schedule, ScheduleType, Task

FORMAT_VERSION = 1
# A run's result is kept if JSON-serialisable, else its repr cut to this many characters
# (the same limit the scheduler applies; repeated here so a store never chokes on one).
MAX_RESULT_REPR = 1024

T = TypeVar("T")


class StoredState(TypedDict):
    """The runtime part of a stored task, parsed (see :func:`state_from_dict`)."""

    last_run: datetime | None
    next_run: datetime | None
    last_scheduled: datetime | None
    run_count: int
    error_count: int
    last_error: str | None
    last_status: RunStatus | None


# ---------------------------------------------------------------------------- helpers


def dump_json(obj: Any) -> str:
    """The one JSON spelling stores use: compact, UTF-8 text, no NaN, key order kept."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def _dt(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _secs(value: timedelta | float | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, timedelta):
        return value.total_seconds()
    return float(value)


def sort_timestamp(record: RunRecord) -> float:
    """History order key: ``started_at`` or else ``scheduled_for``, as epoch seconds.

    Naive datetimes (which the scheduler never produces) are taken as UTC so that a
    stray one sorts somewhere sensible instead of raising.
    """
    t = record.started_at or record.scheduled_for
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return t.timestamp()


class _Reader:
    """Typed field access that turns every problem into a StoreError naming where."""

    def __init__(self, d: Mapping[str, Any], what: str) -> None:
        self.d = d
        self.what = what

    def fail(self, field: str, problem: str) -> StoreError:
        return StoreError(f"{self.what}: field {field!r}: {problem}")

    def get(self, field: str, conv: Callable[[Any], T], default: Any = ...) -> T:
        if field not in self.d:
            if default is ...:
                raise self.fail(field, "missing")
            return conv(default) if default is not None else default  # type: ignore[return-value]
        try:
            return conv(self.d[field])
        except StoreError:
            raise
        except (TypeError, ValueError, OverflowError) as e:
            raise self.fail(field, f"{e} (got {self.d[field]!r:.80})") from None


def _str(v: Any) -> str:
    if not isinstance(v, str):
        raise TypeError("expected a string")
    return v


def _opt_str(v: Any) -> str | None:
    return None if v is None else _str(v)


def _int(v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise TypeError("expected an integer")
    return v


def _bool(v: Any) -> bool:
    if not isinstance(v, bool):
        raise TypeError("expected true or false")
    return v


def _num(v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise TypeError("expected a number")
    return float(v)


def _opt_td(v: Any) -> timedelta | None:
    return None if v is None else timedelta(seconds=_num(v))


def _datetime(v: Any) -> datetime:
    return datetime.fromisoformat(_str(v))


def _opt_datetime(v: Any) -> datetime | None:
    return None if v is None else _datetime(v)


def _dict(v: Any) -> dict[str, Any]:
    if not isinstance(v, dict):
        raise TypeError("expected an object")
    return v


def _str_list(v: Any) -> list[str]:
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise TypeError("expected a list of strings")
    return list(v)


def _str_map(v: Any) -> dict[str, str]:
    if not isinstance(v, dict) or not all(isinstance(x, str) for x in v.values()):
        raise TypeError("expected an object of strings")
    return dict(v)


def _check_version(r: _Reader) -> None:
    v = r.get("v", _int)
    if v != FORMAT_VERSION:
        raise r.fail("v", f"unsupported format version {v} (this tickwork reads {FORMAT_VERSION};"
                          " was it written by a newer version?)")


# ------------------------------------------------------------------------------ tasks


def schedule_to_dict(s: Schedule) -> dict[str, Any]:
    """Every field, always, in one order: simple to read, and stable for byte equality."""
    return {
        "type": s.type.value,
        "interval": _secs(s.interval),
        "times": [t.isoformat() for t in s.times],
        "cron": s.cron,
        "timezone": s.timezone,
        "seconds": s.seconds,
        "start_at": _dt(s.start_at),
        "jitter": _secs(s.jitter),
        "fixed_rate": s.fixed_rate,
    }


def retry_to_dict(p: RetryPolicy | None) -> dict[str, Any] | None:
    if p is None:
        return None
    return {
        "max_retries": p.max_retries,
        "delay": p.delay.total_seconds(),
        "backoff": float(p.backoff),
        "max_delay": p.max_delay.total_seconds(),
        "jitter": float(p.jitter),
    }


def task_to_dict(
    task: Task, *, handler_ref: str | None, last_scheduled: datetime | None = None
) -> dict[str, Any]:
    """The stored form of ``task``.

    ``handler_ref`` is what finds the handler again: an import string, or None for a
    callable (found again through ``register_handler(task_id, fn)``). ``last_scheduled``
    is the planned time of the latest occurrence, kept for catch-up after downtime.
    Callables (handler, hooks) are never stored.
    """
    return {
        "v": FORMAT_VERSION,
        "id": task.id,
        "name": task.name,
        "description": task.description,
        "handler": handler_ref,
        "schedule": schedule_to_dict(task.schedule),
        "enabled": task.enabled,
        "priority": int(task.priority),
        "dependencies": list(task.dependencies),
        "retry": retry_to_dict(task.retry),
        "timeout": _secs(task.timeout),
        "max_instances": task.max_instances,
        "misfire_grace": _secs(task.misfire_grace),
        "on_lease_loss": task.on_lease_loss,
        "metadata": dict(task.metadata),
        "state": {
            "last_run": _dt(task.last_run),
            "next_run": _dt(task.next_run),
            "last_scheduled": _dt(last_scheduled),
            "run_count": task.run_count,
            "error_count": task.error_count,
            "last_error": task.last_error,
            "last_status": None if task.last_status is None else task.last_status.value,
        },
    }


def task_id_of(d: Any) -> str:
    """The ``"id"`` of a stored task dict, or StoreError: the one key stores rely on."""
    if not isinstance(d, dict):
        raise StoreError(f"stored task: expected an object, got {type(d).__name__}")
    tid = d.get("id")
    if not isinstance(tid, str) or not tid:
        raise StoreError(f"stored task: field 'id': expected a non-empty string, got {tid!r:.80}")
    return tid


def _schedule_from_dict(v: Any, what: str) -> Schedule:
    r = _Reader(_dict(v), f"{what}: schedule")
    kind = r.get("type", _str)
    try:
        return Schedule(
            type=ScheduleType(kind),
            interval=r.get("interval", _opt_td, None),
            times=tuple(_datetime(t) for t in r.get("times", _list, [])),
            cron=r.get("cron", _opt_str, None),
            timezone=r.get("timezone", _opt_str, None),
            seconds=r.get("seconds", _bool, False),
            start_at=r.get("start_at", _opt_datetime, None),
            jitter=r.get("jitter", _opt_td, None),
            fixed_rate=r.get("fixed_rate", _bool, False),
        )
    except (InvalidScheduleError, ValueError, TypeError) as e:
        raise StoreError(f"{what}: field 'schedule': {e}") from None


def _list(v: Any) -> list[Any]:
    if not isinstance(v, list):
        raise TypeError("expected a list")
    return v


def _retry_from_dict(v: Any, what: str) -> RetryPolicy | None:
    if v is None:
        return None
    r = _Reader(_dict(v), f"{what}: retry")
    try:
        return RetryPolicy(
            max_retries=r.get("max_retries", _int),
            delay=timedelta(seconds=r.get("delay", _num)),
            backoff=r.get("backoff", _num),
            max_delay=timedelta(seconds=r.get("max_delay", _num)),
            jitter=r.get("jitter", _num),
        )
    except ValueError as e:
        raise StoreError(f"{what}: field 'retry': {e}") from None


def _status(v: Any) -> RunStatus:
    return RunStatus(_str(v))


def _opt_status(v: Any) -> RunStatus | None:
    return None if v is None else _status(v)


def state_from_dict(d: Mapping[str, Any]) -> StoredState:
    """The runtime state of a stored task, including ``last_scheduled``."""
    what = f"task {d.get('id')!r}"
    r = _Reader(_dict(d.get("state", {})), f"{what}: state")
    return StoredState(
        last_run=r.get("last_run", _opt_datetime, None),
        next_run=r.get("next_run", _opt_datetime, None),
        last_scheduled=r.get("last_scheduled", _opt_datetime, None),
        run_count=r.get("run_count", _int, 0),
        error_count=r.get("error_count", _int, 0),
        last_error=r.get("last_error", _opt_str, None),
        last_status=r.get("last_status", _opt_status, None),
    )


def task_from_dict(d: Mapping[str, Any]) -> Task:
    """A Task from its stored form; ``handler`` is the stored handler string or None.

    Runtime fields are filled from ``"state"``; ``Task.state`` is left at its default
    because it is derived (running, orphaned…) by the scheduler, not stored.
    """
    tid = task_id_of(d)
    what = f"task {tid!r}"
    r = _Reader(d, what)
    _check_version(r)
    st = state_from_dict(d)
    return Task(
        id=tid,
        name=r.get("name", _str, ""),
        description=r.get("description", _str, ""),
        handler=r.get("handler", _opt_str, None),
        schedule=_schedule_from_dict(r.get("schedule", _dict), what),
        enabled=r.get("enabled", _bool, True),
        priority=r.get("priority", _int, 50),
        dependencies=r.get("dependencies", _str_list, []),
        retry=_retry_from_dict(d.get("retry"), what),
        timeout=r.get("timeout", _opt_td, None),
        max_instances=r.get("max_instances", _int, 1),
        misfire_grace=r.get("misfire_grace", _opt_td, None),
        on_lease_loss=r.get("on_lease_loss", _str, "retry"),
        metadata=r.get("metadata", _str_map, {}),
        last_run=st["last_run"],
        next_run=st["next_run"],
        run_count=st["run_count"],
        error_count=st["error_count"],
        last_error=st["last_error"],
        last_status=st["last_status"],
    )


# ---------------------------------------------------------------------------- records


def _jsonable(value: Any) -> Any:
    """``value`` if it survives JSON unchanged in kind, else its repr (cut)."""
    if value is None or isinstance(value, str | bool | int):
        return value
    try:
        return json.loads(dump_json(value))
    except (TypeError, ValueError, RecursionError):
        return repr(value)[:MAX_RESULT_REPR]


def record_to_dict(rec: RunRecord) -> dict[str, Any]:
    return {
        "v": FORMAT_VERSION,
        "run_id": rec.run_id,
        "task_id": rec.task_id,
        "scheduled_for": rec.scheduled_for.isoformat(),
        "started_at": _dt(rec.started_at),
        "finished_at": _dt(rec.finished_at),
        "status": rec.status.value,
        "attempts": rec.attempts,
        "error": rec.error,
        "result": _jsonable(rec.result),
        "instance_id": rec.instance_id,
        "manual": rec.manual,
    }


def record_from_dict(d: Mapping[str, Any]) -> RunRecord:
    if not isinstance(d, Mapping):
        raise StoreError(f"stored run: expected an object, got {type(d).__name__}")
    r = _Reader(d, f"run {d.get('run_id')!r}")
    _check_version(r)
    return RunRecord(
        run_id=r.get("run_id", _str),
        task_id=r.get("task_id", _str),
        scheduled_for=r.get("scheduled_for", _datetime),
        started_at=r.get("started_at", _opt_datetime, None),
        finished_at=r.get("finished_at", _opt_datetime, None),
        status=r.get("status", _status),
        attempts=r.get("attempts", _int, 0),
        error=r.get("error", _opt_str, None),
        result=d.get("result"),
        instance_id=r.get("instance_id", _opt_str, None),
        manual=r.get("manual", _bool, False),
    )
