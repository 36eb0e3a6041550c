"""describe(): English for a range of expressions."""

from __future__ import annotations

import pytest

from tickwork.schedules import CronExpression


@pytest.mark.parametrize(
    ("expr", "text"),
    [
        (
            "0 9-17 * * 1-5",
            "At minute 0 past every hour from 9 through 17 on Monday through Friday",
        ),
        ("*/15 * * * *", "At every 15th minute"),
        ("* * * * *", "At every minute"),
        ("30 2 * * *", "At 02:30"),
        ("30 2,14 * * *", "At 02:30 and 14:30"),
        ("0,30 * * * *", "At minutes 0 and 30"),
        ("10 */2 * * *", "At minute 10 past every 2nd hour"),
        ("0-10/2 * * * *", "At every 2nd minute from 0 through 10"),
        ("*/10 2 * * *", "At every 10th minute past hour 2"),
        ("*/5 9-17 * * MON-FRI", "At every 5th minute past every hour from 9 through 17 "
         "on Monday through Friday"),
        ("0 0 1 * *", "At 00:00 on day-of-month 1"),
        ("0 0 1 1 *", "At 00:00 on day-of-month 1 in January"),
        ("15 10 * 1,6 *", "At 10:15 in January and June"),
        ("0 0 1 */3 *", "At 00:00 on day-of-month 1 in every 3rd month"),
        ("0 0 L * *", "At 00:00 on the last day of the month"),
        ("0 0 LW * *", "At 00:00 on the last weekday of the month"),
        ("0 0 L-2 * *", "At 00:00 on the 3rd-last day of the month"),
        ("0 0 15W * *", "At 00:00 on the weekday nearest day 15 of the month"),
        ("0 0 * * 5L", "At 00:00 on the last Friday of the month"),
        ("0 0 * * MON#2", "At 00:00 on the second Monday of the month"),
        ("0 0 * * 0", "At 00:00 on Sunday"),
        ("0 0 * * 7", "At 00:00 on Sunday"),
        ("0 0 * * 1-7", "At 00:00"),
        ("0 0 * * 6,0", "At 00:00 on Sunday and Saturday"),
        ("0 0 1-7 * 1", "At 00:00 on every day-of-month from 1 through 7 or on Monday"),
        ("0 0 13 * 5", "At 00:00 on day-of-month 13 or on Friday"),
        ("0 0 */1 * 1", "At 00:00 on Monday"),
        ("0 0 */15 * 2-4", "At 00:00 on every 15th day-of-month if it is Tuesday through Thursday"),
        (
            "0 0 L,15 * MON",
            "At 00:00 on day-of-month 15 and the last day of the month or on Monday",
        ),
        ("0 0 1 * ?", "At 00:00 on day-of-month 1"),
        ("@hourly", "At minute 0 past every hour"),
        ("@daily", "At 00:00"),
        ("@weekly", "At 00:00 on Sunday"),
    ],
)
def test_describe(expr, text):
    assert CronExpression(expr).describe() == text


@pytest.mark.parametrize(
    ("expr", "text"),
    [
        ("30 0 9 * * *", "At 09:00:30"),
        ("*/10 * * * * *", "At every 10th second"),
        ("* * * * * *", "At every second"),
        ("0 */5 * * * *", "At second 0 past every 5th minute"),
    ],
)
def test_describe_seconds(expr, text):
    assert CronExpression(expr, seconds=True).describe() == text


def test_describe_shows_resolved_hash():
    c = CronExpression("H 3 * * *", hash_key="backup")
    assert c.describe() == f"At 03:{c.spec.minutes[0]:02d}"
