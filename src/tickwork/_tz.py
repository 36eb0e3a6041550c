"""Time zone helpers: resolving names, the system zone, datetime <-> POSIX seconds."""

from __future__ import annotations

import os
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ._errors import InvalidScheduleError


def zone(name: str | tzinfo | None, *, field: str = "timezone") -> tzinfo:
    """A tzinfo for an IANA name (or a tzinfo, returned as is); None means the system zone."""
    if name is None:
        return system_zone()
    if isinstance(name, tzinfo):
        return name
    if not isinstance(name, str) or not name.strip():
        raise InvalidScheduleError(f"{field}: expected an IANA zone name, got {name!r}")
    if name.upper() == "UTC":
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidScheduleError(f"{field}: unknown time zone {name!r}") from None


def system_zone() -> tzinfo:
    """The system's IANA zone: ``TZ``, then ``/etc/localtime``, else UTC."""
    tz = os.environ.get("TZ", "").lstrip(":")
    if tz:
        try:
            return UTC if tz.upper() == "UTC" else ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError):
            pass
    try:
        target = str(Path("/etc/localtime").resolve())
        marker = "zoneinfo/"
        if marker in target:
            name = target.split(marker, 1)[1]
            return UTC if name in ("UTC", "Etc/UTC") else ZoneInfo(name)
    except (OSError, ZoneInfoNotFoundError, ValueError):
        pass
    return UTC


def zone_name(tz: tzinfo) -> str:
    key = getattr(tz, "key", None)
    return key if isinstance(key, str) else ("UTC" if tz is UTC else str(tz))


def to_ts(dt: datetime, tz: tzinfo) -> float:
    """POSIX seconds of ``dt``; a naive ``dt`` is wall time in ``tz``."""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=tz)
    return dt.timestamp()


def to_dt(ts: float, tz: tzinfo) -> datetime:
    return datetime.fromtimestamp(ts, tz)
