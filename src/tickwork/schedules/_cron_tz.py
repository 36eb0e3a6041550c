"""A time zone as segments of constant UTC offset, for the cron engine.

The cron search runs in naive wall time and needs, for an instant ``u``, the segment
``[start, end)`` of instants around it with one offset, plus the offset just before
``start``. ``zoneinfo`` does not expose its transition table, so transitions are found
by probing ``utcoffset`` once a day over a UTC year and bisecting to the second where
it changes; the result is cached per (zone, year). Two transitions within one day that
cancel each other would be missed; no zone in the tz database does that.

Years without a transition are not merged forever: a segment is cut at most two UTC
years away from the instant asked about (a "pseudo" transition with the same offset on
both sides), which the cron search handles like any other boundary.
"""

from __future__ import annotations

import bisect
from datetime import UTC, datetime, timedelta, timezone, tzinfo

FAR = 1 << 62  # beyond any representable instant
_SECOND = timedelta(seconds=1)
_DAY = 86400
_MIN_YEAR = 2
_MAX_YEAR = 9998

# (start, end, offset before start, offset) - all in seconds, instants as Unix time
Segment = tuple[int, int, int, int]

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
        b = min(a + _DAY, end)
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
        self.fixed = off

    def segment(self, u: int) -> Segment:
        if self.fixed is not None:
            return (-FAR, FAR, self.fixed, self.fixed)
        tz = self.tz
        year = _year_of(u)
        # previous transition: this year, else up to two years back
        start = -FAR
        off_prev = off = None
        for y in (year, year - 1, year - 2):
            trans = _transitions(tz, y)
            i = bisect.bisect_right(trans, (u, FAR, FAR))
            if i:
                start, off_prev, off = trans[i - 1]
                break
        else:
            start = _year_start(year - 2) if year - 2 >= _MIN_YEAR else -FAR
        if off is None:
            off = off_prev = _offset(tz, min(max(u, _year_start(_MIN_YEAR)), _year_start(9999)))
        end = FAR
        for y in (year, year + 1, year + 2):
            trans = _transitions(tz, y)
            i = bisect.bisect_right(trans, (u, FAR, FAR))
            if i < len(trans):
                end = trans[i][0]
                break
        else:
            end = _year_start(year + 3) if year + 3 <= _MAX_YEAR else FAR
        assert off_prev is not None
        return (start, end, off_prev, off)


UTC_TIMELINE = Timeline(UTC)
