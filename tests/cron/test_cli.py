"""The ``tickwork cron`` subcommand, through add_parser()/run() (no main CLI needed)."""

from __future__ import annotations

import argparse
import io

from tickwork import _cron_cli


def call(*argv: str) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser(prog="tickwork")
    sub = parser.add_subparsers(dest="command")
    _cron_cli.add_parser(sub)
    args = parser.parse_args(["cron", *argv])
    out, err = io.StringIO(), io.StringIO()
    code = _cron_cli.run(args, out, err)
    return code, out.getvalue(), err.getvalue()


def test_describe_and_next_times():
    code, out, err = call("0 9-17 * * 1-5", "-n", "3", "--from", "2024-01-05T16:30:00+00:00")
    assert code == 0 and err == ""
    assert out.splitlines() == [
        "At minute 0 past every hour from 9 through 17 on Monday through Friday",
        "2024-01-05T17:00:00+00:00",
        "2024-01-08T09:00:00+00:00",
        "2024-01-08T10:00:00+00:00",
    ]


def test_zone_and_dst():
    code, out, _ = call(
        "30 2 * * *", "--tz", "Europe/Berlin", "-n", "2", "--from", "2024-03-30T12:00"
    )
    assert code == 0
    assert out.splitlines()[1:] == ["2024-03-31T03:00:00+02:00", "2024-04-01T02:30:00+02:00"]


def test_seconds_and_hash_key():
    code, out, _ = call("*/20 * * * * *", "--seconds", "-n", "2", "--from", "2024-01-01T00:00:00Z")
    assert code == 0
    assert out.splitlines()[1:] == ["2024-01-01T00:00:20+00:00", "2024-01-01T00:00:40+00:00"]
    code, out, _ = call("H 3 * * *", "--hash-key", "backup", "-n", "1")
    assert code == 0 and out.startswith("At 03:")


def test_default_count_is_ten():
    code, out, _ = call("* * * * *")
    assert code == 0 and len(out.splitlines()) == 11


def test_bad_expression_exits_2_with_message_on_stderr():
    code, out, err = call("0 0 * * 8")
    assert code == 2 and out == ""
    assert err.strip() == "cron: bad day-of-week '8' in '0 0 * * 8' (allowed 0-7)"


def test_bad_zone_and_start():
    code, _, err = call("* * * * *", "--tz", "Nowhere/Town")
    assert code == 2 and "Nowhere/Town" in err
    code, _, err = call("* * * * *", "--from", "yesterday")
    assert code == 2 and "--from" in err


def test_never_matching():
    code, out, _ = call("0 0 */30 * 1#3", "-n", "2", "--from", "2024-01-01T00:00:00Z")
    assert code == 0 and out.splitlines()[-1] == "(no more fire times)"
