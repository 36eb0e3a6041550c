"""English descriptions of parsed cron expressions (crontab.guru / cronsim style).

Works from the expanded value sets, not the raw text, so ``*/15``, ``0-59/15`` and
``0,15,30,45`` read the same and ``H`` shows the value it resolved to. The day part says
"or" where Vixie cron ORs day-of-month and day-of-week and "if it is" where it ANDs them.
"""

from __future__ import annotations

from tickwork.schedules._cron_parse import CronSpec, DaySpec

_DAYS = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")
_MONTHS = (
    "",
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
_NTH = ("", "first", "second", "third", "fourth", "fifth")


def ordinal(n: int) -> str:
    if 10 <= n % 100 <= 20:
        return f"{n}th"
    return f"{n}{ {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


def join(items: list[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    if len(items) == 2:
        return f"{items[0]} and {items[1]}"
    return f"{', '.join(items[:-1])}, and {items[-1]}"


def _shape(values: tuple[int, ...], lo: int, hi: int) -> tuple[str, int, int, int]:
    """('star'|'single'|'range'|'step'|'list', first, last, step)."""
    n = len(values)
    a, b = values[0], values[-1]
    if n == hi - lo + 1:
        return ("star", a, b, 1)
    if n == 1:
        return ("single", a, a, 0)
    step = values[1] - a
    if all(values[i + 1] - values[i] == step for i in range(n - 1)):
        if step == 1:
            return ("range", a, b, 1)
        if n > 2:
            return ("step", a, b, step)
    return ("list", a, b, 0)


def _phrase(
    values: tuple[int, ...], lo: int, hi: int, unit: str, name: tuple[str, ...] | None = None
) -> str:
    """'every minute', 'minute 5', 'every minute from 5 through 9', 'every 15th minute'..."""

    def fmt(v: int) -> str:
        return name[v] if name else str(v)

    kind, a, b, step = _shape(values, lo, hi)
    if kind == "star":
        return f"every {unit}"
    if kind == "single":
        return name[a] if name else f"{unit} {a}"
    if kind == "range":
        if name:
            return f"{fmt(a)} through {fmt(b)}"
        return f"every {unit} from {a} through {b}"
    if kind == "step":
        every = f"every {ordinal(step)} {unit}"
        if a == lo and b + step > hi:
            return every
        return f"{every} from {fmt(a)} through {fmt(b)}"
    items = [fmt(v) for v in values]
    return join(items) if name else f"{unit}s {join(items)}"


def _time(spec: CronSpec) -> str:
    secs, mins, hours = spec.seconds, spec.minutes, spec.hours
    single_s = len(secs) == 1 and (secs[0] == 0 or spec.has_seconds)
    if single_s and len(mins) == 1 and len(hours) <= 4:
        kind = _shape(hours, 0, 23)[0]
        if kind in ("single", "list") or len(hours) == 2:
            fmt = "{h:02d}:{m:02d}:{s:02d}" if spec.has_seconds else "{h:02d}:{m:02d}"
            times = [fmt.format(h=h, m=mins[0], s=secs[0]) for h in hours]
            return f"At {join(times)}"
    parts = []
    if spec.has_seconds:
        parts.append(_phrase(secs, 0, 59, "second"))
    minute = _phrase(mins, 0, 59, "minute")
    hour = _phrase(hours, 0, 23, "hour")
    if not (spec.has_seconds and minute == "every minute" and hour == "every hour"):
        parts.append(minute)
    if hour != "every hour" or len(mins) == 1:
        parts.append(hour)
    text = " past ".join(parts)
    return f"At {text}"


def _dom(d: DaySpec) -> str:
    if d.dom_last_offset >= 0:
        n = d.dom_last_offset
        if n == 0:
            return "the last day of the month"
        return f"the {ordinal(n + 1)}-last day of the month"
    if d.dom_nearest:
        return f"the weekday nearest day {d.dom_nearest} of the month"
    parts = []
    if d.dom:
        parts.append(_phrase(tuple(sorted(d.dom)), 1, 31, "day-of-month"))
    if d.dom_last:
        parts.append("the last day of the month")
    if d.dom_last_weekday:
        parts.append("the last weekday of the month")
    return join(parts)


def _dow(d: DaySpec) -> str:
    parts = []
    if d.dow:
        days = tuple(sorted(d.dow))
        if len(days) > 2 and days[0] == 0 and days[1] != 1 and _shape(days[1:], 0, 6)[0] == "range":
            days = (*days[1:], 7)  # 1-7: Monday through Sunday
        parts.append(_phrase(days, 0, 6, "day-of-week", (*_DAYS, "Sunday")))
    for wd in sorted(d.dow_last):
        parts.append(f"the last {_DAYS[wd]} of the month")
    for wd, k in sorted(d.dow_nth):
        parts.append(f"the {_NTH[k]} {_DAYS[wd]} of the month")
    return join(parts)


def describe(spec: CronSpec) -> str:
    d = spec.days
    text = _time(spec)
    dom_all = len(d.dom) == 31
    dow_all = len(d.dow) == 7
    if d.day_and:
        if dom_all and not dow_all:
            text += f" on {_dow(d)}"
        elif dow_all and not dom_all:
            text += f" on {_dom(d)}"
        elif not dom_all:
            text += f" on {_dom(d)} if it is {_dow(d)}"
    elif not dom_all and not dow_all:
        text += f" on {_dom(d)} or on {_dow(d)}"
    if len(spec.months) < 12:
        text += f" in {_phrase(spec.months, 1, 12, 'month', _MONTHS)}"
    return text
