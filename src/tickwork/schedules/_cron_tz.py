"""A time zone as segments of constant UTC offset, for the cron engine.

The cron search runs in naive wall time and needs, for an instant ``u``, the segment
``[start, end)`` of instants around it with one offset, plus the offset just before
``start``. ``zoneinfo`` does not expose its transition table, so transitions are found
by probing ``utcoffset`` once a week over a UTC year and bisecting to the second where
it changes; the result is cached per (zone, year). Two transitions within one week that
cancel each other would be missed; no zone in the tz database does that.

Segments are also cut at every 1 January 00:00 UTC (a "pseudo" transition with the same
offset on both sides), which the cron search handles like any other boundary; this keeps
the lookup to one cached year.
"""

from __future__ import annotations

import bisect
from datetime import datetime, timedelta, timezone, tzinfo

FAR = 1 << 62  # beyond any representable instant
_SECOND = timedelta(seconds=1)
_DAY = 86400
# Probe step. A transition is found if the offset differs at the two ends of a step, so two
# transitions that undo each other within one step would be missed; in the tz database
# they are always weeks apart (the closest are Ramadan suspensions of DST, ~30 days).
_PROBE = 7 * _DAY
_MIN_YEAR = 2
_MAX_YEAR = 9998

# (start, end, offset before start, offset) - all in seconds, instants as Unix time
Segment = tuple[int, int, int, int]

_FIXED_KEYS = frozenset(
    ("UTC", "GMT", "UCT", "Zulu", "Universal", "Greenwich", "GMT0", "GMT+0", "GMT-0")
)
_year_cache: dict[tuple[tzinfo, int], tuple[tuple[int, int, int], ...]] = {}


def _year_start(year: int) -> int:
    return (datetime(year, 1, 1).toordinal() - 719163) * _DAY


def _offset(tz: tzinfo, ts: int) -> int:
    off = datetime.fromtimestamp(ts, tz).utcoffset()
    if off is None:  # a tzinfo that declines to answer: treat as UTC
        return 0
    return off // _SECOND


def _transitions(tz: tzinfo, year: int) -> tuple[tuple[int, int, int], ...]:
    """(instant, offset before, offset after) for changes with start(year) <= instant < next."""
    key = (tz, year)
    hit = _year_cache.get(key)
    if hit is not None:
        return hit
    if not _MIN_YEAR <= year <= _MAX_YEAR:
        return ()
    out: list[tuple[int, int, int]] = []
    a = _year_start(year) - 1
    end = _year_start(year + 1) - 1
    off_a = _offset(tz, a)
    while a < end:
        b = min(a + _PROBE, end)
        off_b = _offset(tz, b)
        lo = a
        while off_b != off_a:  # one or more changes in (lo, b]: find the first
            x, y = lo, b  # offset at x is off_a, at y differs
            while y - x > 1:
                mid = (x + y) // 2
                if _offset(tz, mid) == off_a:
                    x = mid
                else:
                    y = mid
            new = _offset(tz, y)
            out.append((y, off_a, new))
            lo, off_a = y, new
        a = b
    if len(_year_cache) > 4096:
        _year_cache.clear()
    res = tuple(out)
    _year_cache[key] = res
    return res


def _year_of(ts: int) -> int:
    return min(max((datetime(1970, 1, 1) + timedelta(seconds=ts)).year, _MIN_YEAR), _MAX_YEAR)


class Timeline:
    """Segments of constant offset for one tzinfo."""

    __slots__ = ("fixed", "tz")

    def __init__(self, tz: tzinfo) -> None:
        self.tz = tz
        off: int | None = None
        if isinstance(tz, timezone):
            delta = tz.utcoffset(None)
            off = delta // _SECOND
        elif str(tz) in _FIXED_KEYS or str(tz).startswith("Etc/"):
            # the tz database's fixed zones (Etc/GMT+5, UTC, ...) never change offset
            off = _offset(tz, 0)
        self.fixed = off

    def segment(self, u: int) -> Segment:
        """The segment containing instant ``u``.

        Boundaries are the zone's transitions plus every 1 January 00:00 UTC, so segments
        partition the time line (the search relies on consecutive segments touching).
        """
        if self.fixed is not None:
            return (-FAR, FAR, self.fixed, self.fixed)
        tz = self.tz
        lo_bound = _year_start(_MIN_YEAR)
        hi_bound = _year_start(_MAX_YEAR + 1)
        if u < lo_bound:
            off = _offset(tz, lo_bound - 1)
            return (-FAR, lo_bound, off, off)
        if u >= hi_bound:
            off = _offset(tz, hi_bound)
            return (hi_bound, FAR, off, off)
        year = _year_of(u)
        trans = _transitions(tz, year)
        i = bisect.bisect_right(trans, (u, FAR, FAR))
        if i:
            start, off_prev, off = trans[i - 1]
        else:
            start = _year_start(year)
            off_prev = off = _offset(tz, u)
        end = trans[i][0] if i < len(trans) else _year_start(year + 1)
        return (start, end, off_prev, off)


_timelines: dict[tzinfo, Timeline] = {}


def timeline(tz: tzinfo) -> Timeline:
    """The (shared) Timeline of ``tz``."""
    tl = _timelines.get(tz)
    if tl is None:
        if len(_timelines) > 256:
            _timelines.clear()
        tl = _timelines[tz] = Timeline(tz)
    return tl
