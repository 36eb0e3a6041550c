from datetime import timedelta

import pytest

from tickwork import InvalidScheduleError, every
from tickwork._durations import format_go_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("15m0s", 900), ("1h30m", 5400), ("1.5h", 5400), ("250ms", 0.25), ("90", 90),
     ("2d", 172800), ("1h0m0s", 3600), ("-5s", -5), ("300us", 0.0003)],
)
def test_parse(text: str, seconds: float) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "5x", "m5", "1h 30m", "abc", "1.2.3s", "h"])
def test_parse_rejects_with_field_and_value(text: str) -> None:
    with pytest.raises(ValueError) as err:
        parse_duration(text, field="retry_delay")
    assert "retry_delay" in str(err.value)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(900, "15m0s"), (5400, "1h30m0s"), (1.5, "1.5s"), (0.25, "250ms"), (0, "0s"),
     (3600, "1h0m0s")],
)
def test_format_like_go(seconds: float, text: str) -> None:
    assert format_go_duration(timedelta(seconds=seconds)) == text
    assert parse_duration(text) == timedelta(seconds=seconds)


def test_every_accepts_go_strings_and_rejects_nonpositive() -> None:
    assert every("1h30m").interval == timedelta(minutes=90)
    assert every(timedelta(seconds=5)).interval == timedelta(seconds=5)
    with pytest.raises(InvalidScheduleError, match="interval"):
        every(seconds=0)
    with pytest.raises(InvalidScheduleError, match="interval"):
        every("bogus")


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(300, "5 minutes"), (5400, "1 hour 30 minutes"), (1, "1 second"), (2.5, "2.5 seconds"),
     (86400, "1 day"), (90061, "1 day 1 hour 1 minute 1 second"), (0.25, "250 milliseconds")],
)
def test_humanize(seconds: float, text: str) -> None:
    from tickwork._durations import humanize

    assert humanize(timedelta(seconds=seconds)) == text


def test_interval_describe_reads_like_english() -> None:
    assert every(minutes=5).describe() == "every 5 minutes"
    assert every(hours=3, fixed_rate=True).describe() == "every 3 hours (fixed rate)"
