"""``tickwork cron EXPR [--tz ZONE] [-n 10] [--seconds] [--hash-key KEY] [--from ISO]``.

Prints ``describe()`` and then the next N fire times, ISO-8601, one per line. A bad
expression or zone prints the error message on stderr and exits with 2
(argparse's code for usage errors).
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from typing import TextIO

from tickwork._errors import InvalidScheduleError
from tickwork.schedules.cron import CronExpression


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "cron",
        help="explain a cron expression and print its next fire times",
        description="Print the description of a cron expression and its next fire times.",
    )
    p.add_argument("expr", metavar="EXPR", help="cron expression, quoted: '*/15 9-17 * * MON-FRI'")
    p.add_argument("--tz", default="UTC", help="IANA time zone (default: UTC)")
    p.add_argument("-n", type=int, default=10, help="how many fire times (default: 10)")
    p.add_argument("--seconds", action="store_true", help="6 fields, seconds first")
    p.add_argument("--hash-key", default=None, help="task id that H values are derived from")
    p.add_argument(
        "--from",
        dest="start",
        default=None,
        help="start instant, ISO-8601 (naive = wall time in --tz; default: now)",
    )


def run(
    args: argparse.Namespace, stdout: TextIO | None = None, stderr: TextIO | None = None
) -> int:
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    try:
        expr = CronExpression(
            args.expr, args.tz, seconds=args.seconds, hash_key=getattr(args, "hash_key", None)
        )
    except InvalidScheduleError as e:
        print(e, file=err)
        return 2
    n = args.n
    if n < 0:
        print("tickwork cron: -n must be >= 0", file=err)
        return 2
    start_text = getattr(args, "start", None)
    if start_text:
        try:
            start = datetime.fromisoformat(start_text)
        except ValueError:
            print(f"tickwork cron: bad --from {start_text!r} (expected ISO-8601)", file=err)
            return 2
    else:
        start = datetime.now(UTC)
    print(expr.describe(), file=out)
    count = 0
    for t in expr.iter(start):
        if count >= n:
            break
        print(t.isoformat(), file=out)
        count += 1
    if count < n:
        print("(no more fire times)", file=out)
    return 0
