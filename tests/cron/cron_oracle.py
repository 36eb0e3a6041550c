"""An independent brute-force evaluator of CRON.md's set model, used to referee cronsim.

Matching of a single wall time uses cronsim's own field parsing and day rules (those are
not where cronsim's bugs are); the mapping from wall times to instants uses only zoneinfo's
PEP 495 conversions, date by date, with no knowledge of the engine's segments:

* real-time rule: every valid (wall time, fold) pair is an instant that fires;
* fixed-time rule: a valid wall time fires at fold=0; a wall time in a gap fires at the
  first valid wall minute after it (the end of the gap).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta, tzinfo

from cronsim import CronSim


def _valid(w: datetime, tz: tzinfo, fold: int) -> datetime | None:
    aware = w.replace(tzinfo=tz, fold=fold)
    back = aware.astimezone(UTC).astimezone(tz)
    if back.replace(tzinfo=None) != w:
        return None  # in a gap
    return aware


class Oracle:
    def __init__(self, expr: str, tz: tzinfo, seconds: bool = False) -> None:
        self.tz = tz
        cs = CronSim(expr, datetime(2000, 1, 1))
        self.cs = cs
        self.secs = sorted(cs.seconds)
        self.mins = sorted(cs.minutes)
        self.hours = sorted(cs.hours)
        self.months = cs.months
        parts = expr.split()
        self.fixed = (
            len(parts) == 5 and not parts[0].startswith("*") and not parts[1].startswith("*")
        )

    def _day_matches(self, d: date) -> bool:
        return d.month in self.months and self.cs.match_day(d)

    def fires_on(self, d: date) -> list[int]:
        """Unix seconds of every fire instant whose wall time is on local date ``d``."""
        if not self._day_matches(d):
            return []
        tz = self.tz
        out: set[int] = set()
        for h in self.hours:
            for m in self.mins:
                for s in self.secs:
                    w = datetime.combine(d, time(h, m, s))
                    a = _valid(w, tz, 0)
                    if a is None:
                        if self.fixed:
                            g = w.replace(second=0)
                            while (a := _valid(g, tz, 0)) is None:
                                g += timedelta(minutes=1)
                            out.add(int(a.timestamp()))
                        continue
                    out.add(int(a.timestamp()))
                    if not self.fixed:
                        b = _valid(w, tz, 1)
                        if b is not None:
                            out.add(int(b.timestamp()))
        return sorted(out)

    def _dates(self, lo: int, hi: int) -> list[date]:
        # a fire instant's wall date is within a day of its UTC date
        d0 = datetime.fromtimestamp(lo, UTC).date() - timedelta(days=2)
        d1 = datetime.fromtimestamp(hi, UTC).date() + timedelta(days=2)
        out = []
        while d0 <= d1:
            out.append(d0)
            d0 += timedelta(days=1)
        return out

    def fires_between(self, lo: int, hi: int) -> list[int]:
        """All fire instants u with lo <= u <= hi (unix seconds)."""
        found: list[int] = []
        for d in self._dates(lo, hi):
            found.extend(u for u in self.fires_on(d) if lo <= u <= hi)
        return sorted(set(found))

    def next(self, t: datetime, limit: datetime) -> datetime | None:
        """First fire strictly after t, searching up to ``limit`` (inclusive)."""
        lo = int(t.replace(microsecond=0).timestamp()) + 1
        got = self.fires_between(lo, int(limit.timestamp()))
        return datetime.fromtimestamp(got[0], self.tz) if got else None

    def prev(self, t: datetime, limit: datetime) -> datetime | None:
        """Last fire strictly before t, searching down to ``limit`` (inclusive)."""
        hi = int(t.replace(microsecond=0).timestamp())
        if not t.microsecond:
            hi -= 1
        got = self.fires_between(int(limit.timestamp()), hi)
        return datetime.fromtimestamp(got[-1], self.tz) if got else None
