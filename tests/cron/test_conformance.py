"""Conformance with cronsim on thousands of generated expressions, refereed by an oracle.

For every generated (expression, zone, start) we compare ``next`` and ``prev`` with
cronsim. Where they differ, the brute-force oracle (tests/cron/cron_oracle.py, the set model of
CRON.md section 4 evaluated date by date through zoneinfo) decides: tickwork must equal the
oracle, and the case is then recorded as a cronsim bug in a category named after what
cronsim did wrong. Categories are detected, not listed by hand; the allowlist only says
which categories may occur and in which zones (only where DST transitions exist).
"""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from cronsim import CronSim, CronSimError

from tickwork._errors import CronSyntaxError
from tickwork.schedules import CronExpression

from .cron_oracle import Oracle

ZONES = [
    "UTC",
    "Europe/Berlin",
    "America/New_York",
    "Australia/Lord_Howe",
    "Asia/Kolkata",
    "America/Sao_Paulo",
    "Pacific/Chatham",
]
NO_DST = {"UTC", "Asia/Kolkata", "America/Sao_Paulo"}  # no transitions 2020-2031

# What cronsim may get wrong (CRON.md 4a), detected by the oracle disagreeing with it.
ALLOWED_CRONSIM_BUGS = {
    "next-not-after-start",  # fixed-time rule from the second pass of an overlap
    "next-skips-fires",  # replace(minute=0) in zones with non-hour transitions
    "next-returns-non-fire",  # Chatham fall-back: repeats earlier times
    "prev-skips-fires",  # overlap second pass / replace(minute=0)
    "prev-returns-non-fire",
    "prev-hangs",  # infinite loop (Chatham)
    "next-hangs",
}

SEED = 20240331
N_EXPR = 2000  # x 2 starts x (next, prev) -> ~8,000 comparisons


class _Hang(Exception):
    pass


class _GuardedCronSim(CronSim):
    """cronsim with a tick budget, so its known infinite loops end as _Hang."""

    budget = 60_000

    def tick(self, seconds: int = 1) -> None:
        self.budget -= 1
        if self.budget < 0:
            raise _Hang
        super().tick(seconds)


def cronsim_next(expr: str, t: datetime, reverse: bool = False) -> datetime | str | None:
    try:
        return next(_GuardedCronSim(expr, t, reverse=reverse))
    except StopIteration:
        return None
    except _Hang:
        return "hang"


# -- expression generator covering cronsim's syntax ----------------------------------------

MONTHS = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]
DAYS = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"]


def _case(rng: random.Random, s: str) -> str:
    return rng.choice([s, s.lower(), s.capitalize()])


def _num(rng: random.Random, lo: int, hi: int, names: list[str] | None, base: int) -> str:
    v = rng.randint(lo, hi)
    if names and rng.random() < 0.3 and 0 <= v - base < len(names):
        return _case(rng, names[v - base])
    return str(v) if rng.random() < 0.9 else f"0{v}"


def _term(rng, lo, hi, names=None, base=0, focus=None):
    r = rng.random()
    if focus and r < 0.35:
        return str(rng.choice(focus))
    r = rng.random()
    if r < 0.3:
        return _num(rng, lo, hi, names, base)
    if r < 0.5:
        a = rng.randint(lo, hi)
        b = rng.randint(a, min(hi, a + rng.randint(0, hi - lo)))
        return f"{_num(rng, a, a, names, base)}-{_num(rng, b, b, names, base)}"
    if r < 0.65:
        return f"*/{rng.randint(1, max(2, (hi - lo) // 2 + 3))}"
    if r < 0.8:
        # a-b/n with a < b: cronsim reads a-a/n as a/n (a deliberate difference, see
        # test_single_value_range_with_step)
        a = rng.randint(lo, hi - 1)
        b = rng.randint(a + 1, hi)
        return f"{a}-{b}/{rng.randint(1, max(1, hi - lo))}"
    if r < 0.9:
        return f"{rng.randint(lo, hi)}/{rng.randint(1, hi - lo + 5)}"
    return "*"


def _field(rng, lo, hi, names=None, base=0, focus=None, star=0.2):
    if rng.random() < star:
        return "*"
    n = rng.choice([1, 1, 1, 2, 3])
    return ",".join(_term(rng, lo, hi, names, base, focus) for _ in range(n))


def _dom(rng):
    r = rng.random()
    if r < 0.45:
        return "*"
    terms = []
    for _ in range(rng.choice([1, 1, 2])):
        x = rng.random()
        if x < 0.1:
            terms.append(_case(rng, "L"))
        elif x < 0.12:
            terms.append(f"L/{rng.randint(1, 5)}")  # cronsim's quirk: L/n = L
        elif x < 0.2:
            terms.append(_case(rng, "LW"))
        else:
            terms.append(_term(rng, 1, 31))
    return ",".join(terms)


def _dow(rng):
    r = rng.random()
    if r < 0.5:
        return "*"
    terms = []
    for _ in range(rng.choice([1, 1, 2])):
        x = rng.random()
        if x < 0.15:
            terms.append(f"{rng.randint(0, 7)}L")
        elif x < 0.3:
            terms.append(f"{_num(rng, 0, 7, DAYS, 0)}#{rng.randint(1, 5)}")
        else:
            terms.append(_term(rng, 0, 7, DAYS, 0))
    return ",".join(terms)


def gen_expr(rng: random.Random) -> tuple[str, bool]:
    minute = _field(rng, 0, 59, focus=[0, 15, 30, 45, 59], star=0.15)
    hour = _field(rng, 0, 23, focus=[0, 1, 2, 3], star=0.25)
    month = _field(rng, 1, 12, MONTHS, 1, star=0.6)
    parts = [minute, hour, _dom(rng), month, _dow(rng)]
    seconds = rng.random() < 0.15
    if seconds:
        parts.insert(0, rng.choice(["0", "30", "*/20", "5,35", "59", "*/7", "*"]))
    return " ".join(parts), seconds


# -- start instants: random and around DST transitions --------------------------------------


def _transitions(tz: ZoneInfo) -> list[int]:
    out = []
    t = int(datetime(2020, 1, 1, tzinfo=UTC).timestamp())
    end = int(datetime(2031, 1, 1, tzinfo=UTC).timestamp())
    off = datetime.fromtimestamp(t, tz).utcoffset()
    while t < end:
        t2 = t + 6 * 3600
        off2 = datetime.fromtimestamp(t2, tz).utcoffset()
        if off2 != off:
            a, b = t, t2
            while b - a > 1:
                m = (a + b) // 2
                if datetime.fromtimestamp(m, tz).utcoffset() == off:
                    a = m
                else:
                    b = m
            out.append(b)
        t, off = t2, off2
    return out


_TRANS = {z: _transitions(ZoneInfo(z)) for z in ZONES}


def gen_start(rng: random.Random, zone: str) -> datetime:
    tz = ZoneInfo(zone)
    trans = _TRANS[zone]
    if trans and rng.random() < 0.7:
        u = rng.choice(trans) + rng.randint(-4 * 3600, 4 * 3600)
        if rng.random() < 0.5:
            u -= u % 60  # on the minute, sometimes exactly on a fire time
        else:
            u -= u % 60 - rng.choice([0, 1, 30, 59])
    else:
        u = rng.randint(
            int(datetime(2020, 1, 1).timestamp()), int(datetime(2030, 12, 1).timestamp())
        )
    return datetime.fromtimestamp(u, tz)


def _ts(d: datetime | None) -> float | None:
    return None if d is None else d.timestamp()


def _classify(direction: str, start: datetime, theirs, oracle) -> str:
    if theirs == "hang":
        return f"{direction}-hangs"
    if direction == "next" and theirs is not None and theirs.timestamp() <= start.timestamp():
        return "next-not-after-start"
    if direction == "prev" and theirs is not None and theirs.timestamp() >= start.timestamp():
        return "prev-not-before-start"
    if theirs is None:
        return f"{direction}-gives-up"
    if oracle is None:
        return f"{direction}-returns-non-fire"
    later = theirs.timestamp() > oracle.timestamp()
    if direction == "next":
        return "next-skips-fires" if later else "next-returns-non-fire"
    return "prev-returns-non-fire" if later else "prev-skips-fires"


def _check(expr, seconds, zone, start, direction, bugs, examples, spot_check=False):
    tz = ZoneInfo(zone)
    ours = getattr(CronExpression(expr, zone, seconds=seconds), direction)(start)
    theirs = cronsim_next(expr, start, reverse=direction == "prev")
    if theirs != "hang" and _ts(ours) == _ts(theirs):
        if spot_check and ours is not None and abs(ours - start) < timedelta(days=2):
            # keep the referee honest: where all agree, it must agree too
            o = Oracle(expr, tz)
            ref = o.next(start, ours) if direction == "next" else o.prev(start, ours)
            assert _ts(ref) == _ts(ours), f"oracle disagrees: {expr!r} {zone} {start}"
        return
    # disagreement (or cronsim hangs): the oracle decides, searching as far as needed
    cands = [d for d in (ours, theirs) if isinstance(d, datetime)]
    if direction == "next":
        limit = max(cands, key=_ts) if cands else start + timedelta(days=3)
        oracle = Oracle(expr, tz).next(start, limit)
    else:
        limit = min(cands, key=_ts) if cands else start - timedelta(days=3)
        oracle = Oracle(expr, tz).prev(start, limit)
    where = f"{direction}({start.isoformat()}) of {expr!r} in {zone}"
    assert _ts(ours) == _ts(oracle), (
        f"{where}: tickwork {ours and ours.isoformat()} != oracle "
        f"{oracle and oracle.isoformat()} (cronsim {theirs})"
    )
    cat = _classify(direction, start, theirs, oracle)
    assert cat in ALLOWED_CRONSIM_BUGS, f"{where}: unexpected cronsim difference {cat}"
    assert zone not in NO_DST, f"{where}: cronsim differs without DST: {cat}"
    bugs[(cat, zone)] += 1
    examples.setdefault(cat, where)


def test_conformance_with_cronsim():
    rng = random.Random(SEED)
    bugs: Counter[tuple[str, str]] = Counter()
    examples: dict[str, str] = {}
    compared = 0
    for i in range(N_EXPR):
        expr, seconds = gen_expr(rng)
        try:
            CronSim(expr, datetime(2020, 1, 1))
        except CronSimError:
            # cronsim rejects it, so must we (impossible dates are the usual reason)
            with pytest.raises(CronSyntaxError):
                CronExpression(expr, seconds=seconds)
            continue
        zone = ZONES[i % len(ZONES)]
        for _ in range(2):
            start = gen_start(rng, zone)
            for direction in ("next", "prev"):
                spot = not seconds and rng.random() < 0.05
                _check(expr, seconds, zone, start, direction, bugs, examples, spot)
                compared += 1
    assert compared > 7000
    # cronsim's bugs are rare: if they are not, the oracle or the categories are off
    assert sum(bugs.values()) < compared * 0.05, bugs
    print(f"\n{compared} comparisons; cronsim bugs found by the oracle: {dict(bugs)}")
    for cat, where in sorted(examples.items()):
        print(f"  {cat}: e.g. {where}")


@pytest.mark.parametrize(
    ("expr", "zone", "start", "direction", "category"),
    [
        # CRON.md 4a examples: the oracle must side with tickwork against cronsim
        ("30 2 * * *", "Europe/Berlin", (2025, 10, 26, 2, 30, 1), "prev", "prev-skips-fires"),
        ("29-50/8 0-6 * * *", "Europe/Berlin", (2026, 10, 25, 2, 30, 1), "next", None),
        ("49 * * * *", "Australia/Lord_Howe", (2028, 10, 1, 0, 15, 0), "next", None),
        ("*/10 2 * * *", "Australia/Lord_Howe", (2024, 4, 7, 1, 0, 0), "next", None),
        ("5 */2 * * *", "Pacific/Chatham", (2021, 4, 4, 3, 36, 1), "prev", None),
    ],
)
def test_documented_cronsim_bugs(expr, zone, start, direction, category):
    *wall, fold = start
    t = datetime(*wall, tzinfo=ZoneInfo(zone), fold=fold)
    bugs: Counter[tuple[str, str]] = Counter()
    examples: dict[str, str] = {}
    _check(expr, False, zone, t, direction, bugs, examples)
    if category:
        assert (category, zone) in bugs


def test_parse_agrees_with_cronsim():
    """Generated junk and near-misses: accepted by tickwork iff accepted by cronsim."""
    rng = random.Random(SEED + 1)
    atoms = ["*", "?", "L", "W", "#", "-", "/", ",", "1", "5", "7", "8", "12", "31", "32", "60"]
    atoms += ["MON", "jan", "LW", "5L", "2#3", "L-2", "15W", "H", "0", "00", "24", "x", ""]
    differ = Counter()
    for _ in range(3000):
        fields = []
        for _ in range(5):
            fields.append("".join(rng.choice(atoms) for _ in range(rng.choice([1, 1, 2, 3]))))
        expr = " ".join(f or "*" for f in fields)
        try:
            CronSim(expr, datetime(2020, 1, 1))
            cronsim_ok = True
        except (CronSimError, ValueError, IndexError, AssertionError):
            cronsim_ok = False
        try:
            CronExpression(expr, hash_key="k")
            ours_ok = True
        except CronSyntaxError:
            ours_ok = False
        if ours_ok != cronsim_ok:
            # tickwork-only syntax (?, L-n, nW, H) is the only allowed reason
            assert ours_ok and any(x in expr.upper() for x in ("?", "L-", "W", "H")), expr
            differ[expr] += 1


def test_single_value_range_with_step():
    """``a-a/n`` is {a} as in Vixie cron. cronsim before 2.9 read it as a/n (a deliberate
    difference then); cronsim 2.9 agrees with Vixie cron."""
    assert CronExpression("1-1/12 * * * *").spec.minutes == (1,)
    theirs = sorted(CronSim("1-1/12 * * * *", datetime(2020, 1, 1)).minutes)
    assert theirs in ([1], [1, 13, 25, 37, 49])
