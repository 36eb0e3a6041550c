"""Durations: Go-style strings ("1h30m", "15m0s", "250ms"), seconds, timedeltas.

The seed stores intervals as Go durations and the service config uses the same
spelling, so both directions live here.
"""

from __future__ import annotations

import re
from datetime import timedelta

_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86400.0,
}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h|d)")


def parse_duration(text: str, *, field: str = "duration") -> timedelta:
    """Parse a Go-style duration such as ``"1h30m"``, ``"15m0s"``, ``"1.5h"`` or ``"250ms"``.

    A bare number is seconds. ``d`` (days) is accepted as an extension.
    Raises ``ValueError`` naming ``field`` and the text.
    """
    s = text.strip()
    if not s:
        raise ValueError(f"{field}: empty duration")
    sign = 1.0
    if s[0] in "+-":
        sign = -1.0 if s[0] == "-" else 1.0
        s = s[1:]
    try:
        return timedelta(seconds=sign * float(s)) if _is_number(s) else _parse_units(s, sign)
    except (ValueError, OverflowError):
        raise ValueError(
            f"{field}: bad duration {text!r} (use e.g. '90s', '5m', '1h30m', '15m0s')"
        ) from None


def _is_number(s: str) -> bool:
    return bool(re.fullmatch(r"\d+(?:\.\d*)?|\.\d+", s))


def _parse_units(s: str, sign: float) -> timedelta:
    pos = 0
    total = 0.0
    for m in _PART.finditer(s):
        if m.start() != pos:
            raise ValueError(s)
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if pos != len(s) or pos == 0:
        raise ValueError(s)
    return timedelta(seconds=sign * total)


def to_timedelta(value: object, *, field: str) -> timedelta:
    """Accept a timedelta, a number of seconds or a duration string."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool):
        raise ValueError(f"{field}: expected seconds or a duration, got {value!r}")
    if isinstance(value, int | float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError(f"{field}: expected a finite number of seconds, got {value!r}")
        return timedelta(seconds=value)
    if isinstance(value, str):
        return parse_duration(value, field=field)
    raise ValueError(f"{field}: expected seconds or a duration, got {value!r}")


def format_go_duration(td: timedelta) -> str:
    """Format like Go's ``time.Duration.String()``: ``15m0s``, ``1h30m0s``, ``1.5s``, ``250ms``."""
    us = td // timedelta(microseconds=1)
    if us == 0:
        return "0s"
    neg = us < 0
    us = abs(us)
    if us < 1_000_000:
        out = f"{us / 1000:g}ms" if us >= 1000 else f"{us}µs"
    else:
        h, rem = divmod(us, 3_600_000_000)
        m, rem = divmod(rem, 60_000_000)
        sec = rem / 1_000_000
        sec_s = f"{sec:.6f}".rstrip("0").rstrip(".")
        out = (f"{h}h" if h else "") + (f"{m}m" if h or m else "") + f"{sec_s}s"
    return "-" + out if neg else out


def humanize(td: timedelta) -> str:
    """English for people: ``5 minutes``, ``1 hour 30 minutes``, ``2.5 seconds``."""
    secs = td.total_seconds()
    if secs < 1:
        return f"{secs * 1000:g} milliseconds" if secs != 0.001 else "1 millisecond"
    parts = []
    rest = secs
    for name, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        n, rest = divmod(rest, size)
        if n:
            parts.append(f"{int(n)} {name}" + ("s" if n != 1 else ""))
    if rest:
        parts.append(f"{rest:g} second" + ("s" if rest != 1 else ""))
    return " ".join(parts)
