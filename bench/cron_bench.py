"""W5 cron benchmark: tickwork vs cronsim vs croniter, same process, same inputs.

    python bench/cron_bench.py [--quick] [--json PATH]

For each expression of a mix of common schedules (some in DST zones) it measures:

* next: the cost of one ``next`` step when walking successive fire times (what a
  scheduler does): ``expr.next(t)`` for tickwork, ``next(iterator)`` for cronsim,
  ``get_next(datetime)`` for croniter; median over repeats of the mean per step;
* parse: constructing the expression object (for the peers, their iterator object).

UTC rows use ``datetime.UTC``, the fast path of every library; the other rows a ``ZoneInfo``.
The libraries take turns within each repeat, so machine load affects them alike.

Ratios are peer time / tickwork time, so > 1 means tickwork is faster. The summary line
compares the median over the mix with the faster of the two peers (acceptance: >= 5x for
next, >= 1x for parse). Peers are optional: a missing one is reported as such.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from tickwork.schedules import CronExpression

try:
    from cronsim import CronSim
except ImportError:  # pragma: no cover
    CronSim = None
try:
    from croniter import croniter
except ImportError:  # pragma: no cover
    croniter = None

MIX = [
    ("*/15 * * * *", "UTC"),
    ("0 9 * * 1-5", "UTC"),
    ("30 2 * * *", "Europe/Berlin"),
    ("0 0 1 * *", "UTC"),
    ("0 0 L * *", "UTC"),
    ("*/5 9-17 * * MON-FRI", "America/New_York"),
    ("0 0 * * 0", "UTC"),
    ("0 * * * *", "Europe/Berlin"),
]
START = (2024, 1, 1, 12, 5)


def _interleaved(
    fns: dict[str, Callable[[], object]], steps: int, repeats: int
) -> dict[str, float]:
    """Microseconds per call: median over repeats of the mean over ``steps`` calls.

    The libraries take turns within each repeat, so a busy machine slows all of them alike.
    """
    samples: dict[str, list[float]] = {lib: [] for lib in fns}
    for _ in range(repeats):
        for lib, fn in fns.items():
            t0 = time.perf_counter()
            for _ in range(steps):
                fn()
            samples[lib].append((time.perf_counter() - t0) / steps * 1e6)
    return {lib: statistics.median(v) for lib, v in samples.items()}


def _next_fns(expr: str, tz: tzinfo) -> dict[str, Callable[[], Callable[[], object]]]:
    start = datetime(*START, tzinfo=tz)

    def tickwork() -> Callable[[], object]:
        c = CronExpression(expr, tz)
        state = [start]

        def step() -> object:
            state[0] = c.next(state[0])  # type: ignore[assignment]
            return state[0]

        return step

    fns = {"tickwork": tickwork}
    if CronSim is not None:

        def cronsim() -> Callable[[], object]:
            it = CronSim(expr, start)
            return lambda: next(it)

        fns["cronsim"] = cronsim
    if croniter is not None:

        def croniter_() -> Callable[[], object]:
            it = croniter(expr, start)
            return lambda: it.get_next(datetime)

        fns["croniter"] = croniter_
    return fns


def _parse_fns(expr: str, tz: tzinfo) -> dict[str, Callable[[], object]]:
    start = datetime(*START, tzinfo=tz)
    fns: dict[str, Callable[[], object]] = {"tickwork": lambda: CronExpression(expr, tz)}
    if CronSim is not None:
        fns["cronsim"] = lambda: CronSim(expr, start)
    if croniter is not None:
        fns["croniter"] = lambda: croniter(expr, start)
    return fns


def _check_same_results(expr: str, tz: tzinfo, n: int = 50) -> None:
    """Guard against benchmarking different answers."""
    start = datetime(*START, tzinfo=tz)
    ours = []
    t = start
    for _ in range(n):
        t = CronExpression(expr, tz).next(t)  # type: ignore[assignment]
        ours.append(t.timestamp())
    if CronSim is not None:
        it = CronSim(expr, start)
        theirs = [next(it).timestamp() for _ in range(n)]
        if theirs != ours:
            raise SystemExit(f"cronsim and tickwork disagree on {expr!r} in {tz}")


def run(quick: bool) -> dict[str, object]:
    steps, repeats = (300, 5) if quick else (2000, 9)
    rows = []
    for expr, zone in MIX:
        # datetime.UTC for UTC: every library's fast path (cronsim special-cases it)
        tz: tzinfo = UTC if zone == "UTC" else ZoneInfo(zone)
        _check_same_results(expr, tz)
        row: dict[str, object] = {"expr": expr, "zone": zone, "next_us": {}, "parse_us": {}}
        steppers = {}
        for lib, make in _next_fns(expr, tz).items():
            make()()  # warm caches (zone transitions, month tables) outside the timing
            steppers[lib] = make()
        row["next_us"] = _interleaved(steppers, steps, repeats)
        row["parse_us"] = _interleaved(_parse_fns(expr, tz), steps, repeats)
        rows.append(row)
    libs = [lib for lib in ("tickwork", "cronsim", "croniter") if lib in rows[0]["next_us"]]  # type: ignore[operator]
    summary: dict[str, object] = {}
    for kind in ("next_us", "parse_us"):
        med = {lib: statistics.median(r[kind][lib] for r in rows) for lib in libs}  # type: ignore[index]
        peers = [med[lib] for lib in libs if lib != "tickwork"]
        summary[kind] = {
            "median_us": med,
            "ratio_vs_fastest_peer": (min(peers) / med["tickwork"]) if peers else None,
        }
    return {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "quick": quick,
        "steps": steps,
        "repeats": repeats,
        "rows": rows,
        "summary": summary,
    }


def _print(result: dict[str, object]) -> None:
    rows: list[dict[str, object]] = result["rows"]  # type: ignore[assignment]
    libs = list(rows[0]["next_us"])  # type: ignore[call-overload]
    peers = [lib for lib in libs if lib != "tickwork"]
    head = f"{'expression':24} {'zone':17}" + "".join(f" {lib + ' us':>12}" for lib in libs)
    head += "".join(f" {'x ' + p:>11}" for p in peers)
    for kind, title in (("next_us", "next() per step"), ("parse_us", "parse")):
        print(f"\n{title} (microseconds; x = peer time / tickwork time)")
        print(head)
        for r in rows:
            v = r[kind]
            line = f"{r['expr']:24} {r['zone']:17}" + "".join(f" {v[lib]:12.2f}" for lib in libs)  # type: ignore[index]
            line += "".join(f" {v[p] / v['tickwork']:11.1f}" for p in peers)  # type: ignore[index]
            print(line)
        s = result["summary"][kind]  # type: ignore[index]
        med = s["median_us"]
        line = f"{'median over the mix':42}" + "".join(f" {med[lib]:12.2f}" for lib in libs)
        line += "".join(f" {med[p] / med['tickwork']:11.1f}" for p in peers)
        print(line)
        if s["ratio_vs_fastest_peer"] is not None:
            print(f"tickwork vs the faster peer: {s['ratio_vs_fastest_peer']:.1f}x")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer steps and repeats")
    ap.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = ap.parse_args(argv)
    result = run(args.quick)
    _print(result)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
