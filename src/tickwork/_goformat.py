"""Read the seed's Go persistence file and convert each task to the v1 dict form.

The Go scheduler (``TaskPersistence``) writes a JSON array of its ``Task`` structs. We
do not know which struct tags it used, and Go's ``encoding/json`` matches keys
case-insensitively, so neither do we: ``last_run``, ``LastRun`` and ``lastRun`` are the
same key here (compared lower-cased without underscores). Go specifics handled:

* ``interval``: a ``time.Duration`` marshals as an integer of nanoseconds by default; a
  custom marshaller gives a string such as ``"15m0s"``. Both are accepted.
* times are RFC 3339 (possibly with nanoseconds); Go's zero ``time.Time``
  (``0001-01-01T00:00:00Z``) means "never" and becomes None.
* ``last_error`` of Go type ``error`` marshals as ``{}``; only a string is kept.
* ``schedule.type`` may be a string (``"interval"``) or the enum's integer
  (0 interval, 1 once, 2 cron, the order the seed declares them).

Handlers cannot be serialised in Go, so every converted task has ``handler: None`` and
is found again by ``register_handler(task_id, fn)``. Keys we do not know are kept under
``"go_extra"`` so that nothing in the file is dropped silently.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any

from ._durations import parse_duration
from ._errors import StoreError
from ._serde import FORMAT_VERSION

_TYPES = {"interval": "interval", "once": "once", "cron": "cron", "0": "interval",
          "1": "once", "2": "cron"}
_KNOWN = {"id", "name", "description", "schedule", "enabled", "priority", "dependencies",
          "lastrun", "nextrun", "runcount", "errorcount", "lasterror", "handler"}


def _norm(key: str) -> str:
    return key.replace("_", "").replace("-", "").lower()


def _fold(obj: dict[str, Any]) -> dict[str, Any]:
    return {_norm(k): v for k, v in obj.items()}


def _go_time(v: Any, what: str) -> str | None:
    if v is None or v == "":
        return None
    if not isinstance(v, str):
        raise StoreError(f"{what}: expected an RFC 3339 time, got {v!r:.80}")
    s = v.strip()
    if s.startswith("0001-01-01T00:00:00"):  # Go's zero time.Time: "never"
        return None
    # Python 3.11 reads at most microseconds: cut Go's nanoseconds before parsing.
    head, dot, rest = s.partition(".")
    if dot:
        digits = len(rest) - len(rest.lstrip("0123456789"))
        s = head + "." + rest[: min(digits, 6)] + rest[digits:]
    try:
        return datetime.fromisoformat(s.replace("Z", "+00:00")).isoformat()
    except ValueError:
        raise StoreError(f"{what}: bad RFC 3339 time {v!r:.80}") from None


def _go_interval(v: Any, what: str) -> float | None:
    if v is None:
        return None
    if isinstance(v, bool):
        raise StoreError(f"{what}: expected a Go duration, got {v!r}")
    if isinstance(v, int | float):
        if not math.isfinite(v):
            raise StoreError(f"{what}: expected a Go duration, got {v!r}")
        secs = v / 1e9  # time.Duration's default JSON form: nanoseconds
        return None if secs == 0 else timedelta(seconds=secs).total_seconds()
    if isinstance(v, str):
        try:
            td = parse_duration(v, field=what)
        except ValueError as e:
            raise StoreError(str(e)) from None
        return None if td == timedelta(0) else td.total_seconds()
    raise StoreError(f"{what}: expected a Go duration, got {v!r:.80}")


def _int(v: Any, what: str, default: int) -> int:
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, int):
        raise StoreError(f"{what}: expected an integer, got {v!r:.80}")
    return v


def go_task_to_v1(obj: Any, index: int) -> dict[str, Any]:
    """One Go task object as a v1 task dict (``_serde`` layout)."""
    if not isinstance(obj, dict):
        raise StoreError(f"Go task #{index}: expected an object, got {type(obj).__name__}")
    g = _fold(obj)
    tid = g.get("id")
    if not isinstance(tid, str) or not tid:
        raise StoreError(f"Go task #{index}: field 'id': expected a non-empty string")
    what = f"task {tid!r}"
    sched = g.get("schedule") or {}
    if not isinstance(sched, dict):
        raise StoreError(f"{what}: field 'schedule': expected an object")
    s = _fold(sched)
    kind = _TYPES.get(str(s.get("type", "")).strip().lower())
    if kind is None:
        raise StoreError(f"{what}: field 'schedule.type': unknown type {s.get('type')!r}")
    times = s.get("times") or []
    if not isinstance(times, list):
        raise StoreError(f"{what}: field 'schedule.times': expected a list")
    cron_spec = s.get("cronspec", s.get("cron"))
    deps = g.get("dependencies") or []
    if not isinstance(deps, list) or not all(isinstance(d, str) for d in deps):
        raise StoreError(f"{what}: field 'dependencies': expected a list of task ids")
    last_error = g.get("lasterror")
    extra = {k: v for k, v in obj.items() if _norm(k) not in _KNOWN}
    out: dict[str, Any] = {
        "v": FORMAT_VERSION,
        "id": tid,
        "name": g.get("name") if isinstance(g.get("name"), str) else "",
        "description": g.get("description") if isinstance(g.get("description"), str) else "",
        "handler": None,
        "schedule": {
            "type": kind,
            "interval": _go_interval(s.get("interval"), f"{what}: field 'schedule.interval'"),
            "times": [t for t in (_go_time(x, f"{what}: field 'schedule.times'") for x in times)
                      if t is not None],
            "cron": cron_spec if isinstance(cron_spec, str) and cron_spec else None,
            "timezone": None,
            "seconds": False,
            "start_at": None,
            "jitter": None,
            "fixed_rate": False,
        },
        "enabled": bool(g.get("enabled", True)),
        "priority": _int(g.get("priority"), f"{what}: field 'priority'", 50),
        "dependencies": list(deps),
        "retry": None,
        "timeout": None,
        "max_instances": 1,
        "misfire_grace": None,
        "on_lease_loss": "retry",
        "metadata": {},
        "state": {
            "last_run": _go_time(g.get("lastrun"), f"{what}: field 'last_run'"),
            "next_run": _go_time(g.get("nextrun"), f"{what}: field 'next_run'"),
            "last_scheduled": None,
            "run_count": _int(g.get("runcount"), f"{what}: field 'run_count'", 0),
            "error_count": _int(g.get("errorcount"), f"{what}: field 'error_count'", 0),
            "last_error": last_error if isinstance(last_error, str) and last_error else None,
            "last_status": None,
        },
    }
    if extra:
        out["go_extra"] = extra
    return out


def go_tasks_to_v1(data: Any) -> list[dict[str, Any]]:
    """The whole Go file (a JSON array, or ``null`` for no tasks) as v1 task dicts."""
    if data is None:
        return []
    if not isinstance(data, list):
        raise StoreError(f"Go task file: expected a JSON array, got {type(data).__name__}")
    return [go_task_to_v1(obj, i) for i, obj in enumerate(data)]
