"""``CronExpression``: Debian (Vixie) cron semantics with time zones, DST and extensions.

Theory of operation
-------------------
*Fire set.* An expression denotes a set of instants (CRON.md section 4, see docs/cron.md).
Matching is decided on naive wall time in the expression's zone; two rules map matching
wall times to instants:

* fixed-time rule (5 fields, minute and hour not starting with ``*``): each matching wall
  time fires once - at its first occurrence if it is repeated by a fall-back, at the end of
  the gap if a spring-forward skipped it;
* real-time rule (everything else): every instant whose wall time matches fires, so skipped
  wall times never fire and repeated ones fire twice.

``next(t)`` is the earliest fire instant after ``t`` and ``prev(t)`` the latest before it.
The set model is the whole specification; the search below is only a fast way to evaluate
it, and tests compare it against a brute-force walk over real instants.

*Search.* A zone is a sequence of segments ``[start, end)`` of constant UTC offset
(``_cron_tz``). Within a segment, wall time is instant + offset, so the fire instants in it
are the matching wall times of one wall-time window, shifted by the offset:

* real-time rule: window ``[start + off, end + off)``;
* fixed-time rule: window ``[start + off_before, end + off)``: a fall-back's repeated hour
  already belonged to the segment before (first occurrence wins) and a spring-forward's
  skipped wall times land on ``start`` (the instant is clamped to ``start``).

So ``next`` finds the first matching wall time at or after a lower bound with a field-by-field
jump (month -> day -> hour -> minute -> second, using "next allowed value" lookup tables and a
cached per-month table of matching days), and checks it lies in the segment's window; if not,
it moves to the next segment (re-using the search result when the windows allow). Zones with
one offset (UTC, ``datetime.timezone``) have a single infinite segment, so the common case is
one jump and one ``datetime`` construction. ``prev`` mirrors this.

*Never matching.* Day sets depend only on (month, its length, weekday of the 1st), so when a
search has scanned a year of allowed months without any matching day, every such combination
is checked once; if none can match, ``next``/``prev`` return ``None`` immediately instead of
walking to the year 9999.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterator
from datetime import UTC, date, datetime, tzinfo
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from tickwork._errors import InvalidScheduleError
from tickwork.schedules._cron_parse import CronSpec, DaySpec, parse
from tickwork.schedules._cron_tz import Segment, timeline

__all__ = ["CronExpression"]

_EPOCH_ORD = 719163  # date(1970, 1, 1).toordinal()
_DAY = 86400
_MIN_WALL = (date(1, 1, 2).toordinal() - _EPOCH_ORD) * _DAY
_MAX_WALL = (date(9999, 12, 31).toordinal() - _EPOCH_ORD) * _DAY
_UTC = UTC
_MDAYS = (0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_NO_HINT = -(1 << 63)

# A wall time: (wall seconds since 1970-01-01 00:00, year, month, day, minute of day, second)
_Wall = tuple[int, int, int, int, int, int]
# per month: (next matching day >= d, prev matching day <= d, wall seconds of day 0)
_Month = tuple[tuple[int, ...], tuple[int, ...], int]
_Tables = tuple[tuple[int, ...], ...]


def _next_table(values: tuple[int, ...], size: int) -> tuple[int, ...]:
    """t[i] = smallest allowed value >= i, or -1; one extra -1 slot at index ``size``."""
    out = [-1] * (size + 1)
    nxt = -1
    allowed = set(values)
    for i in range(size - 1, -1, -1):
        if i in allowed:
            nxt = i
        out[i] = nxt
    return tuple(out)


def _prev_table(values: tuple[int, ...], size: int) -> tuple[int, ...]:
    """t[i] = largest allowed value <= i, or -1."""
    out = [-1] * size
    prv = -1
    allowed = set(values)
    for i in range(size):
        if i in allowed:
            prv = i
        out[i] = prv
    return tuple(out)


@lru_cache(maxsize=512)
def _tables(seconds: tuple[int, ...], months: tuple[int, ...]) -> _Tables:
    return (
        _next_table(seconds, 60),
        _prev_table(seconds, 60),
        _next_table(months, 13),
        _prev_table(months, 13),
    )


@lru_cache(maxsize=512)
def _tod_tables(hours: tuple[int, ...], minutes: tuple[int, ...]) -> _Tables:
    """Next/prev allowed minute of the day (hour * 60 + minute); built on first use."""
    allowed = {h * 60 + m for h in hours for m in minutes}
    return _next_table(tuple(allowed), 1440), _prev_table(tuple(allowed), 1440)


@lru_cache(maxsize=4096)
def _day_table(spec: DaySpec, ndays: int, first: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Matching days of a month with ``ndays`` days whose 1st is cron weekday ``first``."""
    last_wd = (first + ndays - 1) % 7
    lw = ndays - 2 if last_wd == 0 else ndays - 1 if last_wd == 6 else ndays
    near = 0
    n = spec.dom_nearest
    if 0 < n <= ndays:
        wd = (first + n - 1) % 7
        if wd == 6:  # Saturday -> Friday before, unless that leaves the month
            near = n - 1 if n > 1 else n + 2
        elif wd == 0:  # Sunday -> Monday after, unless that leaves the month
            near = n + 1 if n < ndays else n - 2
        else:
            near = n
    ok = [False] * 33
    dom, dow, dow_last, dow_nth = spec.dom, spec.dow, spec.dow_last, spec.dow_nth
    for d in range(1, ndays + 1):
        wd = (first + d - 1) % 7
        dom_ok = (
            d in dom
            or (spec.dom_last and d == ndays)
            or (spec.dom_last_weekday and d == lw)
            or d == ndays - spec.dom_last_offset
            or d == near
        )
        dow_ok = (
            wd in dow
            or (wd in dow_last and d + 7 > ndays)
            or (wd, (d + 6) // 7) in dow_nth
        )
        ok[d] = (dom_ok and dow_ok) if spec.day_and else (dom_ok or dow_ok)
    nxt = [0] * 33
    prv = [0] * 33
    cur = 0
    for d in range(32, 0, -1):
        if ok[d]:
            cur = d
        nxt[d] = cur
    cur = 0
    for d in range(1, 33):
        if ok[d]:
            cur = d
        prv[d] = cur
    return tuple(nxt), tuple(prv)


@lru_cache(maxsize=256)
def _can_match(spec: DaySpec, months: tuple[int, ...]) -> bool:
    """Whether any day in any allowed month can ever match (all calendar shapes)."""
    for m in months:
        lengths = (28, 29) if m == 2 else (_MDAYS[m],)
        for ndays in lengths:
            for first in range(7):
                if _day_table(spec, ndays, first)[0][1]:
                    return True
    return False


def _zone(tz: str | tzinfo | None) -> tzinfo:
    if tz is None:
        return _UTC
    if isinstance(tz, str):
        try:
            return ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError) as e:
            raise InvalidScheduleError(f"cron: unknown time zone {tz!r}") from e
    if isinstance(tz, tzinfo):
        return tz
    raise InvalidScheduleError(f"cron: timezone must be a str or tzinfo, got {tz!r}")


class CronExpression:
    """A cron schedule: ``next``/``prev``/``iter``/``matches``/``describe``.

    ``timezone`` is an IANA name or a ``tzinfo`` (default UTC). Naive datetimes passed in are
    wall time in that zone; results are aware, in that zone. ``hash_key`` (normally the task
    id) feeds ``H``; without it ``H`` is a ``CronSyntaxError``.
    """

    __slots__ = (
        "_fixed_rule",
        "_hint",
        "_last",
        "_months",
        "_nmo",
        "_ns",
        "_ntod",
        "_pmo",
        "_ps",
        "_ptod",
        "_seg",
        "_spec",
        "_timeline",
        "expr",
        "hash_key",
        "seconds",
        "timezone",
    )

    def __init__(
        self,
        expr: str,
        timezone: str | tzinfo | None = None,
        seconds: bool = False,
        hash_key: str | None = None,
    ) -> None:
        spec = parse(expr, seconds, hash_key)
        self.expr = expr
        self.seconds = seconds
        self.hash_key = hash_key
        self.timezone = _zone(timezone)
        self._spec = spec
        self._timeline = timeline(self.timezone)
        self._fixed_rule = spec.fixed_time
        self._ns, self._ps, self._nmo, self._pmo = _tables(spec.seconds, spec.months)
        # Built on first use (see _search_tables), so that constructing stays cheap.
        self._ntod: tuple[int, ...] = ()
        self._ptod: tuple[int, ...] = ()
        self._months: dict[int, _Month] = {}
        # Caches for sequential use; each is one tuple, replaced atomically (thread-safe).
        self._seg: Segment = (0, 0, 0, 0)  # the segment used last
        self._last: tuple[int, datetime | None] = (0, None)  # last result's instant, result
        # (u, year, month, day, minute of day, second): the wall time of instant u, valid
        # when u is one second after the last result and in the same segment
        self._hint: tuple[int, int, int, int, int, int] = (_NO_HINT, 0, 0, 0, 0, 0)

    # -- public API -----------------------------------------------------------------------

    def next(self, after: datetime) -> datetime | None:
        """The first fire time strictly after ``after`` (microseconds are dropped first)."""
        last = self._last
        u = last[0] if after is last[1] else self._epoch(after)
        r = self._next_from(u + 1)
        if r is None:
            return None
        self._last = r
        return r[1]

    def prev(self, before: datetime) -> datetime | None:
        """The last fire time strictly before ``before``."""
        u = self._epoch(before)
        if not before.microsecond:
            u -= 1
        r = self._prev_from(u)
        return None if r is None else r[1]

    def iter(self, start: datetime) -> Iterator[datetime]:
        """Fire times strictly after ``start``, ascending."""
        u = self._epoch(start) + 1
        while True:
            r = self._next_from(u)
            if r is None:
                return
            yield r[1]
            u = r[0] + 1

    def matches(self, dt: datetime) -> bool:
        """Whether ``dt`` (microseconds ignored) is a fire time."""
        u = self._epoch(dt)
        r = self._next_from(u)
        return r is not None and r[0] == u

    def describe(self) -> str:
        """An English description, e.g. 'At 02:30 on Monday through Friday'."""
        from tickwork.schedules._cron_describe import describe

        return describe(self._spec)

    @property
    def spec(self) -> CronSpec:
        """The parsed expression (value tuples and day rules)."""
        return self._spec

    def __repr__(self) -> str:
        args = [repr(self.expr)]
        if self.timezone is not _UTC:
            args.append(f"timezone={str(self.timezone)!r}")
        if self.seconds:
            args.append("seconds=True")
        if self.hash_key is not None:
            args.append(f"hash_key={self.hash_key!r}")
        return f"CronExpression({', '.join(args)})"

    def _key(self) -> tuple[object, ...]:
        s = self._spec
        return (s.seconds, s.minutes, s.hours, s.months, s.days, s.fixed_time, self.timezone)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CronExpression):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    # -- conversion -------------------------------------------------------------------------

    def _epoch(self, dt: datetime) -> int:
        """Unix seconds of ``dt`` with microseconds dropped; naive = wall time in our zone."""
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=self.timezone)
        if dt.microsecond:
            dt = dt.replace(microsecond=0)
        return int(dt.timestamp())

    def _segment(self, u: int) -> Segment:
        seg = self._seg
        if seg[0] <= u < seg[1]:
            return seg
        seg = self._timeline.segment(u)
        self._seg = seg
        return seg

    def _emit(self, w: _Wall, seg: Segment) -> tuple[int, datetime]:
        """The fire instant of matching wall time ``w`` inside ``seg``'s window."""
        start, end, off_prev, off = seg
        wall, y, mo, d, tod, s = w
        inst = wall - off
        tz = self.timezone
        if inst < start:  # fixed-time rule, a wall time skipped by spring-forward
            return start, datetime.fromtimestamp(start, tz)
        fold = 1 if off_prev > off and wall < start + off_prev else 0
        h, mi = divmod(tod, 60)
        dt = datetime(y, mo, d, h, mi, s, tzinfo=tz, fold=fold)
        if inst + 1 < end:
            # where the search for the next fire after this one starts; jumping to the next
            # minute right away when no later second of this minute is allowed
            s += 1
            if s == 60 or self._ns[s] < 0:
                self._hint = (inst + 1, y, mo, d, tod + 1, 0)
            else:
                self._hint = (inst + 1, y, mo, d, tod, s)
        return inst, dt

    def _next_from(self, u: int) -> tuple[int, datetime] | None:
        """The first fire instant >= u, as (unix seconds, datetime)."""
        seg = self._seg
        if not seg[0] <= u < seg[1]:
            seg = self._segment(u)
        fixed = self._fixed_rule
        hint = self._hint
        if hint[0] == u:
            w = self._next_wall(hint[1], hint[2], hint[3], hint[4], hint[5])
            known_lo = u + seg[3]
        else:
            lo = u + seg[3]
            a = seg[0] + (seg[2] if fixed else seg[3])
            if lo < a or u == seg[0]:
                # from the segment's first instant on, its whole window counts: under the
                # fixed-time rule that includes the gap's wall times, which fire at seg[0]
                lo = a
            w = self._next_wall_at(lo)
            known_lo = lo
        while w is not None:
            if w[0] < seg[1] + seg[3]:
                try:
                    return self._emit(w, seg)
                except OverflowError:
                    return None
            seg = self._segment(seg[1])
            a = seg[0] + (seg[2] if fixed else seg[3])
            if not known_lo <= a <= w[0]:
                w = self._next_wall_at(a)
                known_lo = a
        return None

    def _prev_from(self, u: int) -> tuple[int, datetime] | None:
        """The last fire instant <= u."""
        seg = self._segment(u)
        fixed = self._fixed_rule
        hi = u + seg[3]
        known_hi = hi
        w = self._prev_wall_at(hi)
        while w is not None:
            a = seg[0] + (seg[2] if fixed else seg[3])
            if w[0] >= a:
                try:
                    return self._emit(w, seg)
                except OverflowError:
                    return None
            if seg[0] <= -(1 << 61):
                return None
            seg = self._segment(seg[0] - 1)
            hi = seg[1] + seg[3] - 1
            if not w[0] <= hi <= known_hi:
                w = self._prev_wall_at(hi)
                known_hi = hi
        return None

    def _month(self, y: int, mo: int) -> _Month:
        first = date(y, mo, 1).toordinal()
        ndays = 29 if mo == 2 and calendar.isleap(y) else _MDAYS[mo]
        # cron weekday of the 1st: ordinal 1 (0001-01-01) was a Monday, so ordinal % 7
        nd, pd = _day_table(self._spec.days, ndays, first % 7)
        tab = (nd, pd, (first - 1 - _EPOCH_ORD) * _DAY)
        if len(self._months) > 2048:
            self._months.clear()
        self._months[y * 13 + mo] = tab
        return tab

    def _never(self) -> bool:
        return not _can_match(self._spec.days, self._spec.months)

    def _search_tables(self) -> None:
        self._ntod, self._ptod = _tod_tables(self._spec.hours, self._spec.minutes)

    def _next_wall_at(self, lo: int) -> _Wall | None:
        if lo > _MAX_WALL:
            return None
        if lo < _MIN_WALL:
            lo = _MIN_WALL
        days, rem = divmod(lo, _DAY)
        dd = date.fromordinal(days + _EPOCH_ORD)
        tod, s = divmod(rem, 60)
        return self._next_wall(dd.year, dd.month, dd.day, tod, s)

    def _prev_wall_at(self, hi: int) -> _Wall | None:
        if hi < _MIN_WALL:
            return None
        if hi > _MAX_WALL:
            hi = _MAX_WALL
        days, rem = divmod(hi, _DAY)
        dd = date.fromordinal(days + _EPOCH_ORD)
        tod, s = divmod(rem, 60)
        return self._prev_wall(dd.year, dd.month, dd.day, tod, s)

    def _next_wall(self, y: int, mo: int, d: int, tod: int, s: int) -> _Wall | None:
        """The first matching wall time at or after the given one.

        Field by field: month, day (per-month table), minute of the day, second. Each
        "no value left" carries into the next larger unit, whose reset restarts the rest.
        """
        ntod = self._ntod
        if not ntod:
            self._search_tables()
            ntod = self._ntod
        nmo, ns, months = self._nmo, self._ns, self._months
        empty = 0
        while True:
            m2 = nmo[mo]
            if m2 != mo:
                if m2 < 0:
                    y += 1
                    if y > 9999:
                        return None
                    m2 = nmo[1]
                mo = m2
                d, tod, s = 1, 0, 0
            tab = months.get(y * 13 + mo) or self._month(y, mo)
            d2 = tab[0][d]
            if d2 != d:
                if d2 == 0:
                    if tab[0][1] == 0:
                        empty += 1
                        if empty == 12 and self._never():
                            return None
                    mo += 1
                    d, tod, s = 1, 0, 0
                    continue
                d = d2
                tod, s = 0, 0
            t2 = ntod[tod]
            if t2 != tod:
                if t2 < 0:
                    d += 1
                    tod, s = 0, 0
                    continue
                tod = t2
                s = 0
            s2 = ns[s]
            if s2 != s:
                if s2 < 0:
                    tod += 1
                    s = 0
                    continue
                s = s2
            return (tab[2] + d * _DAY + tod * 60 + s, y, mo, d, tod, s)

    def _prev_wall(self, y: int, mo: int, d: int, tod: int, s: int) -> _Wall | None:
        """The last matching wall time at or before the given one (mirror of _next_wall)."""
        ptod = self._ptod
        if not ptod:
            self._search_tables()
            ptod = self._ptod
        pmo, ps, months = self._pmo, self._ps, self._months
        empty = 0
        while True:
            m2 = pmo[mo]
            if m2 != mo:
                if m2 < 0:
                    y -= 1
                    if y < 1:
                        return None
                    m2 = pmo[12]
                mo = m2
                d, tod, s = 31, 1439, 59
            tab = months.get(y * 13 + mo) or self._month(y, mo)
            d2 = tab[1][d]
            if d2 != d:
                if d2 == 0:
                    if tab[1][31] == 0:
                        empty += 1
                        if empty == 12 and self._never():
                            return None
                    mo -= 1
                    d, tod, s = 31, 1439, 59
                    continue
                d = d2
                tod, s = 1439, 59
            t2 = ptod[tod]
            if t2 != tod:
                if t2 < 0:
                    d -= 1
                    tod, s = 1439, 59
                    if d == 0:
                        mo -= 1
                        d = 31
                    continue
                tod = t2
                s = 59
            s2 = ps[s]
            if s2 != s:
                if s2 < 0:
                    tod -= 1
                    s = 59
                    if tod < 0:
                        d -= 1
                        tod = 1439
                        if d == 0:
                            mo -= 1
                            d = 31
                    continue
                s = s2
            return (tab[2] + d * _DAY + tod * 60 + s, y, mo, d, tod, s)
