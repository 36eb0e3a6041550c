"""Cron expression parser: text -> ``CronSpec`` (sorted value tuples plus day specials).

The grammar and its error cases follow /docs/cron.md (Debian/Vixie cron as the ``cronsim``
package reads it, plus ``@`` macros, ``?``, ``L-n``, ``nW`` and ``H``). The parser is written
for speed as well as clarity: the common terms (``*``, a number, ``a-b``, ``*/n``) take a
short path, because constructing an expression is on the hot path of schedulers that
rebuild schedules often, and the acceptance bar is "at least as fast as cronsim".

Every error is a ``CronSyntaxError`` naming the field and the offending text, e.g.
``cron: bad day-of-week '8' in '0 0 * * 8' (allowed 0-7)``.
"""

from __future__ import annotations

import hashlib
from typing import NamedTuple

from tickwork._errors import CronSyntaxError

SECOND, MINUTE, HOUR, DOM, MONTH, DOW = range(6)
FIELD_NAMES = ("second", "minute", "hour", "day-of-month", "month", "day-of-week")
_LO = (0, 0, 0, 1, 1, 0)
_HI = (59, 59, 23, 31, 12, 7)
# `H` alone picks within these bounds: day-of-month stops at 28 so it fires every month,
# day-of-week at 6 so Sunday is not twice as likely.
_H_HI = (59, 59, 23, 28, 12, 6)
_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_MONTH_NAMES = {n: i + 1 for i, n in enumerate(_MONTHS)}
_DOW_NAMES = {n: i for i, n in enumerate(("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"))}
_NAMES: tuple[dict[str, int], ...] = ({}, {}, {}, {}, _MONTH_NAMES, _DOW_NAMES)
_DIGITS = frozenset("0123456789")
# Longest possible month, February counted as 29 (CRON.md section 2).
MAX_DAYS = (0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)

MACROS = {
    "@YEARLY": "0 0 1 1 *",
    "@ANNUALLY": "0 0 1 1 *",
    "@MONTHLY": "0 0 1 * *",
    "@WEEKLY": "0 0 * * 0",
    "@DAILY": "0 0 * * *",
    "@MIDNIGHT": "0 0 * * *",
    "@HOURLY": "0 * * * *",
}


class DaySpec(NamedTuple):
    """Everything that decides whether a calendar day matches (hashable: it keys caches)."""

    dom: frozenset[int]  # plain days 1-31
    dom_last: bool = False  # L
    dom_last_weekday: bool = False  # LW
    dom_last_offset: int = -1  # L-n -> n (>= 0), -1 when absent
    dom_nearest: int = 0  # nW -> n (1-31), 0 when absent
    dow: frozenset[int] = frozenset()  # 0-6, Sunday = 0
    dow_last: frozenset[int] = frozenset()  # nL
    dow_nth: frozenset[tuple[int, int]] = frozenset()  # n#k -> (n, k)
    day_and: bool = True  # Vixie: AND when dom or dow starts with '*'


class CronSpec(NamedTuple):
    """A parsed expression. (NamedTuples, not dataclasses: construction is on the hot path.)"""

    seconds: tuple[int, ...]
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    months: tuple[int, ...]
    days: DaySpec
    fixed_time: bool  # CRON.md section 4: which DST rule applies
    fields: tuple[str, ...]  # the 6 raw (upper-cased, '?' kept) field texts, seconds first
    has_seconds: bool  # the expression had 6 fields


class _Field:
    """Parsing state of one field: its index and the whole expression (for messages)."""

    __slots__ = ("expr", "hash_key", "idx", "orig", "text")

    def __init__(self, idx: int, text: str, orig: str, expr: str, hash_key: str | None) -> None:
        self.idx = idx
        self.text = text  # upper-cased
        self.orig = orig  # as the user wrote it, for messages
        self.expr = expr
        self.hash_key = hash_key

    def error(self, bad: str, why: str | None = None) -> CronSyntaxError:
        i = self.idx
        at = self.text.find(bad)
        if at >= 0 and len(self.orig) == len(self.text):
            bad = self.orig[at : at + len(bad)]
        if why is None:
            why = f"allowed {_LO[i]}-{_HI[i]}"
        return CronSyntaxError(f"cron: bad {FIELD_NAMES[i]} {bad!r} in {self.expr!r} ({why})")

    def value(self, tok: str, term: str) -> int:
        """A number or a name in this field's range."""
        if tok and _DIGITS.issuperset(tok):
            v = int(tok)
            if _LO[self.idx] <= v <= _HI[self.idx]:
                return v
            raise self.error(term)
        names = _NAMES[self.idx]
        if tok in names:
            return names[tok]
        if not tok:
            raise self.error(term, "missing value")
        if self.idx not in (DOM, DOW) and ("L" in tok or tok.endswith("W")):
            raise self.error(term, "'L' and 'W' are only allowed in day-of-month/day-of-week")
        if self.idx in (MONTH, DOW):
            kind = "JAN-DEC" if self.idx == MONTH else "SUN-SAT"
            raise self.error(term, f"allowed {_LO[self.idx]}-{_HI[self.idx]} or {kind}")
        raise self.error(term)

    def step(self, tok: str, term: str) -> int:
        if not tok or not _DIGITS.issuperset(tok):
            raise self.error(term, "step must be a positive whole number")
        n = int(tok)
        if n == 0:
            raise self.error(term, "step must not be 0")
        return n

    def hash(self) -> int:
        if self.hash_key is None:
            raise self.error(
                self.text, "'H' needs a hash_key, normally the task id, to pick a stable value"
            )
        data = f"{self.hash_key}\x00{FIELD_NAMES[self.idx]}".encode()
        return int.from_bytes(hashlib.sha256(data).digest()[:8], "big")

    def term(self, term: str, out: set[int]) -> None:
        """Expand one list element into ``out`` (numbers only; specials are handled earlier)."""
        lo = _LO[self.idx]
        hi = _HI[self.idx]
        base, slash, step_s = term.partition("/")
        if "/" in step_s:
            raise self.error(term, "only one step allowed")
        step = self.step(step_s, term) if slash else 0
        if base == "*":
            out.update(range(lo, hi + 1, step or 1))
            return
        if base.startswith("H"):
            self.hashed(base, step, term, out)
            return
        a_s, dash, b_s = base.partition("-")
        a = self.value(a_s, term)
        if dash:
            b = self.value(b_s, term)
            if b < a:
                raise self.error(term, "range end before start, no wrap-around")
            out.update(range(a, b + 1, step or 1))
        elif step:
            out.update(range(a, hi + 1, step))
        else:
            out.add(a)

    def hashed(self, base: str, step: int, term: str, out: set[int]) -> None:
        if base == "H":
            lo, hi = _LO[self.idx], (_HI[self.idx] if step else _H_HI[self.idx])
            if self.idx == DOW:
                hi = 6
        elif base.startswith("H(") and base.endswith(")"):
            a_s, dash, b_s = base[2:-1].partition("-")
            if not dash:
                raise self.error(term, "expected H(a-b)")
            lo, hi = self.value(a_s, term), self.value(b_s, term)
            if hi < lo:
                raise self.error(term, "range end before start, no wrap-around")
        else:
            raise self.error(term, "expected H, H(a-b) or H/n")
        h = self.hash()
        size = hi - lo + 1
        if step:
            out.update(range(lo + h % min(step, size), hi + 1, step))
        else:
            out.add(lo + h % size)


_ALL = tuple(tuple(range(_LO[i], _HI[i] + 1)) for i in range(6))
_ALL_DOM = frozenset(range(1, 32))
_ALL_DOW = frozenset(range(7))
_EMPTY: frozenset[int] = frozenset()
_EMPTY_NTH: frozenset[tuple[int, int]] = frozenset()
_SINGLE = tuple({str(v): (v,) for v in range(_LO[i], _HI[i] + 1)} for i in range(6))


def _quick(idx: int, text: str) -> tuple[int, ...] | None:
    """The common shapes without building a parser object: '*', 'n', '*/n'."""
    if text == "*":
        return _ALL[idx]
    hit = _SINGLE[idx].get(text)
    if hit is not None:
        return hit
    if text[:2] == "*/" and text[2:].isdigit() and text[2:].isascii() and text[2] != "0":
        return _ALL[idx][:: int(text[2:])] if idx != DOW else None
    return None


def _plain(f: _Field) -> tuple[int, ...]:
    """Parse a second/minute/hour/month field into a sorted tuple."""
    text = f.text
    if _DIGITS.issuperset(text):  # a single number: the range error
        return (f.value(text, text),)
    if text == "?":
        raise f.error(text, "'?' is only allowed in day-of-month and day-of-week")
    out: set[int] = set()
    for term in text.split(","):
        if not term:
            raise f.error(text, "empty list element")
        if "#" in term:
            raise f.error(term, "'#' is only allowed in day-of-week")
        f.term(term, out)
    return tuple(sorted(out))


def _dom(f: _Field) -> tuple[frozenset[int], bool, bool, int, int]:
    """Day-of-month: (days, L, LW, L-n offset or -1, nW day or 0)."""
    text = f.text
    if text.startswith("L-"):
        n = text[2:]
        if not n or not _DIGITS.issuperset(n) or int(n) > 30:
            raise f.error(text, "expected L-n with n in 0-30")
        return _EMPTY, False, False, int(n), 0
    if text.endswith("W") and text != "LW" and "," not in text:
        n = text[:-1]
        if not n or not _DIGITS.issuperset(n):
            raise f.error(text, "expected nW with a day n in 1-31, or LW")
        v = int(n)
        if not 1 <= v <= 31:
            raise f.error(text, "expected nW with a day n in 1-31")
        return _EMPTY, False, False, -1, v
    out: set[int] = set()
    last = last_wd = False
    for term in text.split(","):
        if not term:
            raise f.error(text, "empty list element")
        base = term.partition("/")[0]
        if base == "L":
            last = True
        elif base == "LW":
            last_wd = True
        elif "L" in term or "W" in term:
            why = "'L', 'LW', 'L-n' and 'nW' must be alone; nL is day-of-week syntax"
            if term.endswith("W") or term.startswith("L-"):
                why = "'L-n' and 'nW' must be the whole field"
            raise f.error(term, why)
        elif "#" in term:
            raise f.error(term, "'#' is day-of-week syntax")
        else:
            f.term(term, out)
        if base in ("L", "LW") and "/" in term:
            f.step(term.partition("/")[2], term)  # cronsim reads L/n as L; validate n
    return frozenset(out), last, last_wd, -1, 0


def _dow(
    f: _Field,
) -> tuple[frozenset[int], frozenset[int], frozenset[tuple[int, int]]]:
    """Day-of-week: (weekdays, nL weekdays, n#k pairs), Sunday = 0."""
    out: set[int] = set()
    last: set[int] = set()
    nth: set[tuple[int, int]] = set()
    for term in f.text.split(","):
        if not term:
            raise f.error(f.text, "empty list element")
        if "#" in term:
            a, _, k = term.partition("#")
            if not k or not _DIGITS.issuperset(k) or not 1 <= int(k) <= 5:
                raise f.error(term, "expected n#k with k in 1-5")
            if "-" in a or "/" in a or "*" in a:
                raise f.error(term, "'#' needs a single weekday before it")
            nth.add((f.value(a, term) % 7, int(k)))
        elif "L" in term:
            a = term[:-1]
            if not term.endswith("L") or not a or not _DIGITS.issuperset(a):
                raise f.error(term, "expected nL with a weekday number n in 0-7")
            last.add(f.value(a, term) % 7)
        elif term.endswith("W"):
            raise f.error(term, "'W' is day-of-month syntax")
        else:
            f.term(term, out)
    return frozenset(v % 7 for v in out), frozenset(last), frozenset(nth)


def parse(expr: str, seconds: bool = False, hash_key: str | None = None) -> CronSpec:
    if not isinstance(expr, str):
        raise CronSyntaxError(f"cron: expression must be a str, got {type(expr).__name__}")
    parts = expr.upper().split()
    origs = expr.split()
    if not parts:
        raise CronSyntaxError(f"cron: empty expression {expr!r}")
    has_seconds = seconds
    if parts[0].startswith("@"):
        macro = MACROS.get(parts[0])
        if macro is None or len(parts) != 1:
            known = ", ".join(m.lower() for m in MACROS)
            raise CronSyntaxError(f"cron: unknown macro {expr.strip()!r} (known: {known})")
        parts = macro.split()
        origs = list(parts)
        has_seconds = False
    else:
        want = 6 if seconds else 5
        if len(parts) != want:
            names = " ".join(FIELD_NAMES[6 - want :])
            hint = "" if seconds or len(parts) != 6 else "; pass seconds=True for 6 fields"
            raise CronSyntaxError(
                f"cron: expected {want} fields ({names}), got {len(parts)} in {expr!r}{hint}"
            )
    if not has_seconds:
        parts.insert(0, "0")
        origs.insert(0, "0")
    if len(origs) != len(parts):  # exotic case mappings; messages then show upper case
        origs = parts

    def field(i: int) -> _Field:
        return _Field(i, parts[i], origs[i], expr, hash_key)

    sec_t, min_t, hour_t, dom_t, mon_t, dow_t = parts
    secs = _quick(SECOND, sec_t) or _plain(field(SECOND))
    mins = _quick(MINUTE, min_t) or _plain(field(MINUTE))
    hours = _quick(HOUR, hour_t) or _plain(field(HOUR))
    months = _quick(MONTH, mon_t) or _plain(field(MONTH))
    dom_star = dom_t == "*" or dom_t == "?"
    if dom_star:
        dom, last, last_wd, last_off, near = _ALL_DOM, False, False, -1, 0
    else:
        dom, last, last_wd, last_off, near = _dom(field(DOM))
        dom_star = dom_t[0] == "*"
    dow_star = dow_t == "*" or dow_t == "?"
    if dow_star:
        dow, dow_last, dow_nth = _ALL_DOW, _EMPTY, _EMPTY_NTH
    else:
        dow, dow_last, dow_nth = _dow(field(DOW))
        dow_star = dow_t[0] == "*"
    day_and = dom_star or dow_star
    days = DaySpec(dom, last, last_wd, last_off, near, dow, dow_last, dow_nth, day_and)
    fixed = not has_seconds and min_t[0] != "*" and hour_t[0] != "*"
    spec = CronSpec(secs, mins, hours, months, days, fixed, tuple(parts), has_seconds)
    if day_and and not last and not last_wd and last_off < 0:
        smallest = near or min(dom)
        if smallest > 28:
            _check_possible(spec, smallest, field(DOM))
    return spec


def _check_possible(spec: CronSpec, smallest: int, f: _Field) -> None:
    """Reject ANDed dates that cannot exist (CRON.md section 2): ``0 0 30 2 *``."""
    longest = max(MAX_DAYS[m] for m in spec.months)
    if smallest > longest:
        months = spec.fields[MONTH]
        raise CronSyntaxError(
            f"cron: bad day-of-month {f.orig!r} in {f.expr!r} "
            f"(day {smallest} never occurs in month {months!r})"
        )
