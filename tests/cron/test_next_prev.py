"""next/prev/iter/matches tables in UTC and fixed offsets (day rules, specials, limits)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from itertools import islice, pairwise

import pytest

from tickwork.schedules import CronExpression


def U(*a):
    return datetime(*a, tzinfo=UTC)


def nexts(expr, start, n, **kw):
    return list(islice(CronExpression(expr, **kw).iter(start), n))


def test_seed_case_every_15_minutes():
    assert CronExpression("*/15 * * * *").next(U(2024, 1, 1, 12, 5)) == U(2024, 1, 1, 12, 15)


def test_strictly_after_and_microseconds():
    c = CronExpression("* * * * *")
    assert c.next(U(2024, 1, 1, 10, 0, 30)) == U(2024, 1, 1, 10, 1)
    assert c.next(U(2024, 1, 1, 10, 0)) == U(2024, 1, 1, 10, 1)
    assert c.next(U(2024, 1, 1, 9, 59, 59, 999999)) == U(2024, 1, 1, 10, 0)
    assert c.prev(U(2024, 1, 1, 10, 0, 0, 500000)) == U(2024, 1, 1, 10, 0)
    assert c.prev(U(2024, 1, 1, 10, 0)) == U(2024, 1, 1, 9, 59)


def test_or_rule_example():
    got = nexts("0 0 1-7 * 1", U(2024, 1, 7), 6)
    assert [d.day for d in got] == [8, 15, 22, 29, 1, 2]
    assert got[4].month == 2


def test_and_when_dom_starts_with_star():
    got = nexts("0 0 */1 * 1", U(2024, 1, 1), 3)
    assert [d.day for d in got] == [8, 15, 22]


def test_friday_13_is_or():
    got = nexts("0 0 13 * 5", U(2024, 9, 1), 4)
    assert [(d.month, d.day) for d in got] == [(9, 6), (9, 13), (9, 20), (9, 27)]


def test_star_step_dom_and_dow():
    got = nexts("0 0 */15 * 2-4", U(2024, 1, 1), 4)
    # days 1, 16, 31 that are Tue-Thu
    assert all(d.day in (1, 16, 31) and d.isoweekday() in (2, 3, 4) for d in got)
    assert got[0] == U(2024, 1, 16)


def test_question_mark_is_star():
    assert nexts("0 0 1 * ?", U(2024, 1, 1), 2) == [U(2024, 2, 1), U(2024, 3, 1)]


def test_l_and_list():
    got = nexts("0 0 L,15 * MON", U(2024, 1, 1), 6)
    assert got == [U(2024, 1, d) for d in (8, 15, 22, 29, 31)] + [U(2024, 2, 5)]


@pytest.mark.parametrize(
    ("expr", "start", "expected"),
    [
        ("0 0 L * *", U(2024, 1, 31), [U(2024, 2, 29), U(2024, 3, 31), U(2024, 4, 30)]),
        ("0 0 L-2 * *", U(2024, 1, 1), [U(2024, 1, 29), U(2024, 2, 27), U(2024, 3, 29)]),
        ("0 0 LW * *", U(2024, 3, 1), [U(2024, 3, 29), U(2024, 4, 30), U(2024, 5, 31)]),
        ("0 0 1W * *", U(2024, 5, 15), [U(2024, 6, 3), U(2024, 7, 1)]),
        ("0 0 15W * *", U(2024, 6, 1), [U(2024, 6, 14), U(2024, 7, 15)]),
        ("0 0 31W * *", U(2024, 3, 1), [U(2024, 3, 29), U(2024, 5, 31)]),  # Mar 31 = Sun
        ("0 0 * * 5L", U(2024, 1, 1), [U(2024, 1, 26), U(2024, 2, 23)]),
        ("0 0 * * MON#2", U(2024, 1, 1), [U(2024, 1, 8), U(2024, 2, 12)]),
        ("0 0 * * 1#5", U(2024, 1, 1), [U(2024, 1, 29), U(2024, 4, 29)]),
        ("0 0 29 2 *", U(2024, 3, 1), [U(2028, 2, 29), U(2032, 2, 29)]),
        ("0 0 30 2 MON", U(2024, 1, 1), [U(2024, 2, 5), U(2024, 2, 12), U(2024, 2, 19)]),
        ("0 12 * * 0", U(2024, 1, 6), [U(2024, 1, 7, 12), U(2024, 1, 14, 12)]),
        ("0 12 * * 7", U(2024, 1, 6), [U(2024, 1, 7, 12), U(2024, 1, 14, 12)]),
        ("@yearly", U(2024, 6, 1), [U(2025, 1, 1), U(2026, 1, 1)]),
        ("@weekly", U(2024, 1, 1), [U(2024, 1, 7), U(2024, 1, 14)]),
        ("59 23 31 12 *", U(2024, 12, 31, 23, 59), [U(2025, 12, 31, 23, 59)]),
    ],
)
def test_tables(expr, start, expected):
    assert nexts(expr, start, len(expected)) == expected
    c = CronExpression(expr)
    # prev walks the same list backwards
    for a, b in pairwise(expected):
        assert c.prev(b) == a


def test_seconds_field():
    c = CronExpression("*/20 * * * * *", seconds=True)
    assert list(islice(c.iter(U(2024, 1, 1, 0, 0, 5)), 3)) == [
        U(2024, 1, 1, 0, 0, 20),
        U(2024, 1, 1, 0, 0, 40),
        U(2024, 1, 1, 0, 1, 0),
    ]
    assert c.prev(U(2024, 1, 1)) == U(2023, 12, 31, 23, 59, 40)


def test_never_matching_returns_none_quickly():
    import time

    for expr in ("0 0 */30 * 1#3", "12 1/3 */15 * MON#2,FRI#4", "0 0 L-30 2 *", "0 0 * 2 MON#5"):
        c = CronExpression(expr)
        t0 = time.perf_counter()
        if expr.endswith("#5"):  # rare, not never: Feb 29 on a Monday
            assert c.next(U(2024, 3, 1)) == U(2044, 2, 29)
        else:
            assert c.next(U(2024, 1, 1)) is None
            assert c.prev(U(2024, 1, 1)) is None
        assert time.perf_counter() - t0 < 0.5


def test_end_of_range():
    c = CronExpression("0 0 1 1 *")
    assert c.next(U(9999, 1, 1)) is None
    assert c.prev(datetime(1, 1, 3, tzinfo=UTC)) == datetime(1, 1, 1, tzinfo=UTC)
    assert c.prev(datetime(1, 1, 1, tzinfo=UTC)) is None
    assert CronExpression("59 23 31 12 *").next(U(9999, 12, 30)) == U(9999, 12, 31, 23, 59)


def test_naive_input_is_wall_time_and_results_are_aware():
    c = CronExpression("0 9 * * *", "Europe/Berlin")
    got = c.next(datetime(2024, 1, 1, 8, 0))
    assert got is not None and got.tzinfo is c.timezone
    assert got.isoformat() == "2024-01-01T09:00:00+01:00"
    # aware inputs in any zone are instants
    assert c.next(U(2024, 1, 1, 8, 0)) == U(2024, 1, 2, 8, 0)


def test_fixed_offset_zone():
    tz = timezone(timedelta(hours=5, minutes=30))
    c = CronExpression("30 2 * * *", tz)
    assert c.next(U(2024, 1, 1)).isoformat() == "2024-01-02T02:30:00+05:30"
    assert c.timezone is tz


def test_matches():
    c = CronExpression("0 9 * * 1-5")
    assert c.matches(U(2024, 1, 1, 9))
    assert c.matches(U(2024, 1, 1, 9, 0, 0, 1234))  # microseconds ignored
    assert not c.matches(U(2024, 1, 1, 9, 0, 1))
    assert not c.matches(U(2024, 1, 6, 9))
    assert c.matches(datetime(2024, 1, 1, 10, tzinfo=timezone(timedelta(hours=1))))


def test_iter_is_ascending_and_lazy():
    c = CronExpression("*/7 * * * *")
    got = list(islice(c.iter(U(2024, 1, 1)), 50))
    assert got == sorted(got) and len(set(got)) == 50
    assert got[0] == U(2024, 1, 1, 0, 7)
    assert list(CronExpression("0 0 */30 * 1#3").iter(U(2024, 1, 1))) == []
