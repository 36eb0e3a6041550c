"""Parsing and rejection (CRON.md sections 1, 1a and 2)."""

from __future__ import annotations

import itertools

import pytest

from tickwork._errors import CronSyntaxError, InvalidScheduleError
from tickwork.schedules import CronExpression


def vals(expr: str, **kw):
    s = CronExpression(expr, **kw).spec
    return s


@pytest.mark.parametrize(
    ("expr", "field", "values"),
    [
        ("*/15 * * * *", "minutes", (0, 15, 30, 45)),
        ("00 05 * * *", "minutes", (0,)),
        ("5-10/2 * * * *", "minutes", (5, 7, 9)),
        ("50/5 * * * *", "minutes", (50, 55)),
        ("*/100 * * * *", "minutes", (0,)),
        ("0/60 * * * *", "minutes", (0,)),
        ("1,5-7,3 * * * *", "minutes", (1, 3, 5, 6, 7)),
        ("0 22-23 * * *", "hours", (22, 23)),
        ("0 0 * jan/2 *", "months", (1, 3, 5, 7, 9, 11)),
        ("0 0 * Mar-May,DEC *", "months", (3, 4, 5, 12)),
        ("0 0 * * *", "seconds", (0,)),
    ],
)
def test_value_sets(expr, field, values):
    assert getattr(vals(expr), field) == values


@pytest.mark.parametrize(
    ("dow", "expected"),
    [
        ("1/2", {1, 3, 5, 0}),  # 1,3,5,7 and 7 is Sunday
        ("*/2", {0, 2, 4, 6}),
        ("MON-FRI", {1, 2, 3, 4, 5}),
        ("5-7", {5, 6, 0}),
        ("7", {0}),
        ("sun,Sat", {0, 6}),
    ],
)
def test_dow_sets(dow, expected):
    assert set(vals(f"0 0 * * {dow}").days.dow) == expected


def test_dom_step_counts_from_one():
    assert vals("0 0 */10 * *").days.dom == frozenset({1, 11, 21, 31})


def test_specials():
    d = vals("0 0 1,L * *").days
    assert d.dom_last and d.dom == {1}
    d = vals("0 0 LW,1 * *").days
    assert d.dom_last_weekday and d.dom == {1}
    d = vals("0 0 lw * *").days
    assert d.dom_last_weekday
    assert vals("0 0 L/2 * *").days.dom_last  # cronsim quirk: L/n = L
    d = vals("0 0 * * 1#1,5L").days
    assert d.dow_nth == {(1, 1)} and d.dow_last == {5}
    assert vals("0 0 * * Mon#2").days.dow_nth == {(1, 2)}
    assert vals("0 0 * * 7L").days.dow_last == {0}
    assert vals("0 0 L-2 * *").days.dom_last_offset == 2
    assert vals("0 0 15W * *").days.dom_nearest == 15


def test_day_and_rule():
    assert vals("0 0 1-7 * 1").days.day_and is False
    assert vals("0 0 */1 * 1").days.day_and is True
    assert vals("0 0 1 * ?").days.day_and is True
    assert vals("0 0 ? * 1").days.day_and is True
    assert vals("0 0 13 * */2").days.day_and is True


def test_fixed_time_rule_selection():
    assert vals("30 2 * * *").fixed_time
    assert vals("0/15 2 * * *").fixed_time
    assert vals("0-59 2 * * *").fixed_time
    assert vals("@daily").fixed_time
    assert not vals("*/15 2 * * *").fixed_time
    assert not vals("30 */2 * * *").fixed_time
    assert not vals("@hourly").fixed_time
    assert not vals("0 30 2 * * *", seconds=True).fixed_time


@pytest.mark.parametrize(
    ("macro", "same_as"),
    [
        ("@yearly", "0 0 1 1 *"),
        ("@annually", "0 0 1 1 *"),
        ("@monthly", "0 0 1 * *"),
        ("@weekly", "0 0 * * 0"),
        ("@daily", "0 0 * * *"),
        ("@midnight", "0 0 * * *"),
        ("@hourly", "0 * * * *"),
        ("@HOURLY", "0 * * * *"),
        ("  @daily\t", "0 0 * * *"),
    ],
)
def test_macros(macro, same_as):
    assert CronExpression(macro) == CronExpression(same_as)
    assert CronExpression(macro, seconds=True) == CronExpression(same_as)


def test_whitespace_and_case():
    assert CronExpression("\t0  0 *\t* mon ") == CronExpression("0 0 * * 1")


def test_hash():
    a = CronExpression("H H * * *", hash_key="backup")
    b = CronExpression("H H * * *", hash_key="backup")
    c = CronExpression("H H * * *", hash_key="cleanup")
    assert a == b
    assert a.spec.minutes != c.spec.minutes or a.spec.hours != c.spec.hours
    assert len(a.spec.minutes) == 1 and 0 <= a.spec.minutes[0] <= 59
    # the value is pinned: stable across processes and machines (sha256, not hash())
    assert (a.spec.minutes, a.spec.hours) == (
        CronExpression("H * * * *", hash_key="backup").spec.minutes,
        CronExpression("0 H * * *", hash_key="backup").spec.hours,
    )
    r = CronExpression("H(10-20) H(9-17) * * H(MON-FRI)", hash_key="x").spec
    assert 10 <= r.minutes[0] <= 20 and 9 <= r.hours[0] <= 17
    assert set(r.days.dow) <= {1, 2, 3, 4, 5} and len(r.days.dow) == 1
    s = CronExpression("H/15 * * * *", hash_key="x").spec.minutes
    assert len(s) == 4 and s[0] < 15 and all(b - a == 15 for a, b in itertools.pairwise(s))
    dom = CronExpression("0 0 H * *", hash_key="x").spec.days.dom
    assert len(dom) == 1 and 1 <= min(dom) <= 28
    s = CronExpression("H(0-29)/10 * * * *", hash_key="x").spec.minutes
    assert len(s) == 3 and s[0] < 10


def test_hash_pinned_value():
    # sha256("backup\0minute")[:8] % 60: if this changes, every user's H schedule moves.
    import hashlib

    h = int.from_bytes(hashlib.sha256(b"backup\x00minute").digest()[:8], "big")
    assert CronExpression("H * * * *", hash_key="backup").spec.minutes == (h % 60,)


def test_hash_without_key_is_an_error():
    with pytest.raises(CronSyntaxError, match=r"minute.*hash_key"):
        CronExpression("H * * * *")


def test_unknown_zone():
    with pytest.raises(InvalidScheduleError, match="Mars/Olympus") as e:
        CronExpression("* * * * *", "Mars/Olympus")
    assert not isinstance(e.value, CronSyntaxError)


def test_error_message_format():
    with pytest.raises(CronSyntaxError) as e:
        CronExpression("0 0 * * 8")
    assert str(e.value) == "cron: bad day-of-week '8' in '0 0 * * 8' (allowed 0-7)"
    assert isinstance(e.value, ValueError)


@pytest.mark.parametrize(
    ("expr", "field", "text"),
    [
        ("60 0 * * *", "minute", "60"),
        ("0 24 * * *", "hour", "24"),
        ("0 0 0 * *", "day-of-month", "0"),
        ("0 0 32 * *", "day-of-month", "32"),
        ("0 0 * 13 *", "month", "13"),
        ("0 0 * 0 *", "month", "0"),
        ("0 0 * * 8", "day-of-week", "8"),
        ("0-60 * * * *", "minute", "0-60"),
        ("30-10 * * * *", "minute", "30-10"),
        ("0 0 * DEC-JAN *", "month", "DEC-JAN"),
        ("0 0 * * FRI-MON", "day-of-week", "FRI-MON"),
        ("0 22-2 * * *", "hour", "22-2"),
        ("*/0 * * * *", "minute", "*/0"),
        ("*/ * * * *", "minute", "*/"),
        ("*/-1 * * * *", "minute", "*/-1"),
        ("*/1.5 * * * *", "minute", "*/1.5"),
        ("*/5/2 * * * *", "minute", "*/5/2"),
        ("1-10//2 * * * *", "minute", "1-10//2"),
        ("0 0 * JANUARY *", "month", "JANUARY"),
        ("0 0 * * MONDAY", "day-of-week", "MONDAY"),
        ("0 0 * MON *", "month", "MON"),
        ("0 0 * * JAN", "day-of-week", "JAN"),
        ("JAN 0 * * *", "minute", "JAN"),
        ("0 0 * * 5#6", "day-of-week", "5#6"),
        ("0 0 * * 5#0", "day-of-week", "5#0"),
        ("0 0 * * 8#1", "day-of-week", "8#1"),
        ("0 0 * * 1#", "day-of-week", "1#"),
        ("0 0 * * 1-5#2", "day-of-week", "1-5#2"),
        ("0 0 1#2 * *", "day-of-month", "1#2"),
        ("1#2 0 * * *", "minute", "1#2"),
        ("L 0 * * *", "minute", "L"),
        ("0 L * * *", "hour", "L"),
        ("0 0 * L *", "month", "L"),
        ("0 0 * * LW", "day-of-week", "LW"),
        ("0 0 * * 1W", "day-of-week", "1W"),
        ("0 0 * * L", "day-of-week", "L"),
        ("0 0 * * FRIL", "day-of-week", "FRIL"),
        ("0 0 5L * *", "day-of-month", "5L"),
        ("0 0 0W * *", "day-of-month", "0W"),
        ("0 0 32W * *", "day-of-month", "32W"),
        ("0 0 1-5W * *", "day-of-month", "1-5W"),
        ("0 0 W * *", "day-of-month", "W"),
        ("0 0 L- * *", "day-of-month", "L-"),
        ("0 0 L-x * *", "day-of-month", "L-x"),
        ("0 0 1,L-2 * *", "day-of-month", "L-2"),
        ("0 0 1,15W * *", "day-of-month", "15W"),
        ("5m * * * *", "minute", "5m"),
        ("*; * * * *", "minute", "*;"),
        ("1,,2 * * * *", "minute", "1,,2"),
        (",1 * * * *", "minute", ",1"),
        ("1- * * * *", "minute", "1-"),
        ("** * * * *", "minute", "**"),
        ("+5 * * * *", "minute", "+5"),
        ("1_0 * * * *", "minute", "1_0"),
        ("1.5 * * * *", "minute", "1.5"),
        ("\uff10 * * * *", "minute", "\uff10"),
        ("\u0663 * * * *", "minute", "\u0663"),
        ("? * * * *", "minute", "?"),
        ("0 ? * * *", "hour", "?"),
        ("0 0 * ? *", "month", "?"),
        ("0 0 1,? * *", "day-of-month", "?"),
        ("0 0 30 2 *", "day-of-month", "30"),
        ("0 0 31 4,6 *", "day-of-month", "31"),
        ("0 0 31 4 ?", "day-of-month", "31"),
        ("0 0 30W 2 *", "day-of-month", "30W"),
        ("0 0 * * 1#1,", "day-of-week", "1#1,"),
    ],
)
def test_rejected(expr, field, text):
    with pytest.raises(CronSyntaxError) as e:
        CronExpression(expr)
    msg = str(e.value)
    assert f"bad {field} " in msg, msg
    assert repr(text) in msg, msg
    assert repr(expr) in msg, msg


@pytest.mark.parametrize(
    "expr",
    [
        "",
        "   ",
        "0 0 * *",
        "0 0 * * * *",
        "0 0 * * 1 ; rm",
        "@reboot",
        "@every 5m",
        "@daily 5",
        "@",
    ],
)
def test_rejected_whole(expr):
    with pytest.raises(CronSyntaxError, match="cron: "):
        CronExpression(expr)


def test_field_count_with_seconds():
    CronExpression("0 0 0 * * *", seconds=True)
    for bad in ("0 0 * * *", "0 0 0 * * * *"):
        with pytest.raises(CronSyntaxError, match="expected 6 fields"):
            CronExpression(bad, seconds=True)
    with pytest.raises(CronSyntaxError, match="seconds=True"):
        CronExpression("0 0 0 * * *")


@pytest.mark.parametrize(
    "expr", ["0 0 29 2 *", "0 0 30 2 MON", "0 0 30,31 2,4 *", "0 0 L 2 *", "0 0 L-30 2 *"]
)
def test_possible_dates_accepted(expr):
    CronExpression(expr)


def test_not_a_string():
    with pytest.raises(CronSyntaxError):
        CronExpression(5)  # type: ignore[arg-type]


def test_eq_hash_repr():
    a = CronExpression("0 9 * * 1-5", "Europe/Berlin")
    b = CronExpression("0 9 * * MON-FRI", "Europe/Berlin")
    assert a == b and hash(a) == hash(b)
    assert a != CronExpression("0 9 * * 1-5")
    assert a != "0 9 * * 1-5"
    assert repr(a) == "CronExpression('0 9 * * 1-5', timezone='Europe/Berlin')"
    assert repr(CronExpression("H * * * * *", seconds=True, hash_key="k")) == (
        "CronExpression('H * * * * *', seconds=True, hash_key='k')"
    )
    assert eval(repr(a), {"CronExpression": CronExpression}) == a
    assert a.expr == "0 9 * * 1-5" and a.seconds is False and str(a.timezone) == "Europe/Berlin"
