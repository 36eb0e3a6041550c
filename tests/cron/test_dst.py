"""DST behaviour pinned to named zones (CRON.md section 4, every worked example).

Transitions used (from the tz database):
* Europe/Berlin 2024-03-31 02:00 CET -> 03:00 CEST (01:00Z); 2024-10-27 03:00 CEST -> 02:00 CET
  (01:00Z); 2025-10-26 03:00 -> 02:00 (01:00Z); 2026-10-25 03:00 -> 02:00 (01:00Z).
* America/New_York 2024-03-10 02:00 EST -> 03:00 EDT (07:00Z); 2024-11-03 02:00 EDT -> 01:00 EST.
* Australia/Lord_Howe 2024-10-06 02:00 +10:30 -> 02:30 +11:00 (half-hour gap, 15:30Z);
  2024-04-07 02:00 +11:00 -> 01:30 +10:30 (half-hour overlap, 15:00Z);
  2028-10-01 02:00 +10:30 -> 02:30 +11:00.
* Pacific/Chatham 2024-09-29 02:45 +12:45 -> 03:45 +13:45 (14:00Z);
  2024-04-07 03:45 +13:45 -> 02:45 +12:45 (14:00Z); 2028-09-24 02:45 -> 03:45.
"""

from __future__ import annotations

from datetime import UTC, datetime
from itertools import islice, pairwise
from zoneinfo import ZoneInfo

import pytest

from tickwork.schedules import CronExpression

BERLIN = "Europe/Berlin"


def iso(dts):
    return [d.isoformat() for d in dts]


def run(expr, zone, start, n, seconds=False):
    tz = ZoneInfo(zone)
    *wall, fold = start if len(start) == 7 else (*start, 0)
    t = datetime(*wall, tzinfo=tz, fold=fold)
    return iso(islice(CronExpression(expr, zone, seconds=seconds).iter(t), n))


# -- spring forward ----------------------------------------------------------------------


def test_fixed_time_in_gap_runs_once_right_after_the_jump():
    assert run("30 2 * * *", BERLIN, (2024, 3, 30, 12, 0), 2) == [
        "2024-03-31T03:00:00+02:00",
        "2024-04-01T02:30:00+02:00",
    ]


@pytest.mark.parametrize("expr", ["0,30 2 * * *", "0/15 2 * * *", "0-59 2 * * *"])
def test_several_gap_times_collapse_into_one_run(expr):
    got = run(expr, BERLIN, (2024, 3, 31, 0, 0), 2)
    assert got[0] == "2024-03-31T03:00:00+02:00"
    assert got[1].startswith("2024-04-01T02:")


def test_fixed_gap_run_and_a_real_0300_run_are_one_run():
    assert run("0 2,3 * * *", BERLIN, (2024, 3, 31, 0, 0), 2) == [
        "2024-03-31T03:00:00+02:00",
        "2024-04-01T02:00:00+02:00",
    ]


@pytest.mark.parametrize(("expr", "seconds"), [("*/15 2 * * *", False), ("0 30 2 * * *", True)])
def test_real_time_rule_skips_the_gap(expr, seconds):
    got = run(expr, BERLIN, (2024, 3, 30, 12, 0), 1, seconds=seconds)
    first = "2024-04-01T02:00:00+02:00" if not seconds else "2024-04-01T02:30:00+02:00"
    assert got == [first]


def test_hourly_in_new_york_skips_0200():
    assert run("@hourly", "America/New_York", (2024, 3, 10, 0, 30), 3) == [
        "2024-03-10T01:00:00-05:00",
        "2024-03-10T03:00:00-04:00",
        "2024-03-10T04:00:00-04:00",
    ]


def test_wildcard_hour_keeps_real_time_rhythm_across_gap():
    got = run("*/20 * * * *", BERLIN, (2024, 3, 31, 1, 30), 4)
    assert got == [
        "2024-03-31T01:40:00+01:00",
        "2024-03-31T03:00:00+02:00",
        "2024-03-31T03:20:00+02:00",
        "2024-03-31T03:40:00+02:00",
    ]


def test_half_hour_gap_lord_howe():
    assert run("15 2 * * *", "Australia/Lord_Howe", (2024, 10, 6, 0, 0), 2) == [
        "2024-10-06T02:30:00+11:00",
        "2024-10-07T02:15:00+11:00",
    ]
    # real-time: 02:00-02:29 do not exist that night
    assert run("*/10 2 * * *", "Australia/Lord_Howe", (2024, 10, 6, 0, 0), 3) == [
        "2024-10-06T02:30:00+11:00",
        "2024-10-06T02:40:00+11:00",
        "2024-10-06T02:50:00+11:00",
    ]


def test_45_minute_gap_chatham():
    assert run("0 3 * * *", "Pacific/Chatham", (2024, 9, 29, 0, 0), 2) == [
        "2024-09-29T03:45:00+13:45",
        "2024-09-30T03:00:00+13:45",
    ]
    # cronsim skips 03:45-03:59 here (CRON.md 4a); the set model does not
    got = run("* */3 * * *", "Pacific/Chatham", (2028, 9, 24, 2, 40), 3)
    assert got == [
        "2028-09-24T03:45:00+13:45",
        "2028-09-24T03:46:00+13:45",
        "2028-09-24T03:47:00+13:45",
    ]


def test_lord_howe_minute_49_not_skipped():
    # CRON.md 4a: cronsim skips 02:49+11:00 here
    got = run("49 * * * *", "Australia/Lord_Howe", (2028, 10, 1, 0, 15), 3)
    assert got == [
        "2028-10-01T00:49:00+10:30",
        "2028-10-01T01:49:00+10:30",
        "2028-10-01T02:49:00+11:00",
    ]


# -- fall back -----------------------------------------------------------------------------


def test_fixed_time_in_overlap_runs_once_at_first_occurrence():
    assert run("30 2 * * *", BERLIN, (2024, 10, 26, 12, 0), 3) == [
        "2024-10-27T02:30:00+02:00",
        "2024-10-28T02:30:00+01:00",
        "2024-10-29T02:30:00+01:00",
    ]


def test_real_time_rule_runs_twice_in_overlap():
    assert run("*/30 2 * * *", BERLIN, (2024, 10, 27, 0, 0), 5) == [
        "2024-10-27T02:00:00+02:00",
        "2024-10-27T02:30:00+02:00",
        "2024-10-27T02:00:00+01:00",
        "2024-10-27T02:30:00+01:00",
        "2024-10-28T02:00:00+01:00",
    ]
    assert run("30 * * * *", BERLIN, (2024, 10, 27, 1, 0), 4) == [
        "2024-10-27T01:30:00+02:00",
        "2024-10-27T02:30:00+02:00",
        "2024-10-27T02:30:00+01:00",
        "2024-10-27T03:30:00+01:00",
    ]


def test_second_pass_fold_is_set():
    got = CronExpression("30 * * * *", BERLIN).next(
        datetime(2024, 10, 27, 2, 30, tzinfo=ZoneInfo(BERLIN))
    )
    assert got is not None and got.fold == 1 and got.utcoffset().total_seconds() == 3600


def test_prev_from_second_pass_finds_first_pass_run():
    # CRON.md 4a: cronsim answers 2025-10-25T02:30+02:00 here
    t = datetime(2025, 10, 26, 2, 30, tzinfo=ZoneInfo(BERLIN), fold=1)
    got = CronExpression("30 2 * * *", BERLIN).prev(t)
    assert got is not None and got.isoformat() == "2025-10-26T02:30:00+02:00"


def test_next_from_second_pass_is_after_start():
    # CRON.md 4a: cronsim answers 02:37+02:00, before its argument
    t = datetime(2026, 10, 25, 2, 30, tzinfo=ZoneInfo(BERLIN), fold=1)
    got = CronExpression("29-50/8 0-6 * * *", BERLIN).next(t)
    assert got is not None and got.timestamp() > t.timestamp()
    assert got.isoformat() == "2026-10-25T03:29:00+01:00"


def test_chatham_fall_back_does_not_repeat():
    # Chatham 2024-04-07 03:45 +13:45 -> 02:45 +12:45; cronsim loops on 03:00-03:30 (4a)
    got = run("*/15 3 * * *", "Pacific/Chatham", (2024, 4, 7, 2, 0), 6)
    assert got == [
        "2024-04-07T03:00:00+13:45",
        "2024-04-07T03:15:00+13:45",
        "2024-04-07T03:30:00+13:45",
        "2024-04-07T03:00:00+12:45",
        "2024-04-07T03:15:00+12:45",
        "2024-04-07T03:30:00+12:45",
    ]
    start = datetime(2021, 4, 4, 3, 36, tzinfo=ZoneInfo("Pacific/Chatham"), fold=1)
    prev = CronExpression("5 */2 * * *", "Pacific/Chatham").prev(start)
    assert prev is not None and prev.timestamp() < start.timestamp()


def test_lord_howe_half_hour_overlap():
    # 2024-04-07 02:00 +11:00 -> 01:30 +10:30: 01:30-01:59 happen twice
    assert run("*/10 2 * * *", "Australia/Lord_Howe", (2024, 4, 7, 1, 0), 3) == [
        "2024-04-07T02:00:00+10:30",
        "2024-04-07T02:10:00+10:30",
        "2024-04-07T02:20:00+10:30",
    ]
    assert run("45 1 * * *", "Australia/Lord_Howe", (2024, 4, 7, 0, 0), 2) == [
        "2024-04-07T01:45:00+11:00",
        "2024-04-08T01:45:00+10:30",
    ]


def test_prev_mirrors_next_across_transitions():
    for expr, zone in [
        ("30 2 * * *", BERLIN),
        ("*/30 2 * * *", BERLIN),
        ("15 2 * * *", "Australia/Lord_Howe"),
        ("*/7 * * * *", "Pacific/Chatham"),
        ("0 3 * * *", "Pacific/Chatham"),
    ]:
        c = CronExpression(expr, zone)
        start = datetime(2024, 3, 1, tzinfo=UTC)
        fires = list(islice(c.iter(start), 400 if "*" in expr.split()[1] else 60))
        for a, b in pairwise(fires):
            assert c.prev(b) == a and c.prev(b).timestamp() == a.timestamp()


def test_no_transition_zones_match_utc_arithmetic():
    for zone in ("Asia/Kolkata", "America/Sao_Paulo"):
        c = CronExpression("30 2 * * *", zone)
        got = list(islice(c.iter(datetime(2024, 1, 1, tzinfo=UTC)), 400))
        offs = {d.utcoffset() for d in got}
        assert len(offs) == 1
        assert all((b - a).total_seconds() == 86400 for a, b in pairwise(got))


def test_gap_run_instant_itself():
    """The jump instant is a fire time of a fixed-time job whose wall time was skipped."""
    tz = ZoneInfo(BERLIN)
    c = CronExpression("42-48 2 12-28 * *", BERLIN)
    jump = datetime(2022, 3, 27, 3, 0, tzinfo=tz)  # 01:00Z, Berlin 02:00 -> 03:00
    assert c.matches(jump)
    assert c.next(datetime(2022, 3, 27, 1, 59, 59, tzinfo=tz)) == jump
    assert c.prev(datetime(2022, 3, 27, 3, 0, 1, tzinfo=tz)) == jump
    assert not c.matches(datetime(2022, 3, 27, 3, 1, tzinfo=tz))
