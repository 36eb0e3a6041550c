"""Shared plumbing for the benchmark workloads.

Each workload module (``bench/w*.py``) defines ``ID``, ``TITLE``, ``METRICS``,
``plan(quick)`` and ``run(lib, **params)``, and ends with ``workload_main(__name__)``.
``run`` measures one library inside the current process and returns a dict of figures;
the orchestrator (``bench/run.py`` or a module run alone) starts one fresh process per
library and repetition, reads one JSON line from its stdout and keeps per-metric medians,
so libraries never share an interpreter, a GIL or a heap.

The adapters below give the three libraries the same small surface (interval task with a
first instant, one-shot task) so every workload sets them up with the same parameters.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import json
import math
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
MAX_WORKERS = 32  # tickwork's default pool size; APScheduler's executor gets the same
SCHEDULE_POLL = 0.001  # `schedule` has no timer: its loop polls run_pending() every 1 ms
FAR = 3600.0  # "due in an hour": far enough that nothing runs during a workload

Metric = tuple[str, str, str]  # (key, label, "lower" | "higher" is better)


# --------------------------------------------------------------------------- measuring

def rss_bytes() -> int:
    """Resident set size of this process (Linux /proc; 0 elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0


def settled_rss() -> int:
    gc.collect()
    return rss_bytes()


def cpu_seconds() -> float:
    """CPU time of the whole process (all threads), user + system."""
    return time.process_time()


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); NaN for no values."""
    if not values:
        return math.nan
    s = sorted(values)
    k = max(0, min(len(s) - 1, math.ceil(q / 100 * len(s)) - 1))
    return s[k]


def lateness_ms(lates: Sequence[float]) -> dict[str, float]:
    """p50/p99/max of start lateness given in seconds, reported in milliseconds."""
    return {
        "late_p50_ms": round(percentile(lates, 50) * 1000, 3),
        "late_p99_ms": round(percentile(lates, 99) * 1000, 3),
        "late_max_ms": round(max(lates) * 1000, 3) if lates else math.nan,
    }


def sleep_until(t: float) -> None:
    while True:
        left = t - time.time()
        if left <= 0:
            return
        time.sleep(min(left, 0.05))


def wait_for(pred: Callable[[], bool], timeout: float, poll: float = 0.01) -> bool:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            return False
        time.sleep(poll)
    return True


def utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def noop() -> None:
    return None


# --------------------------------------------------------------------------- adapters

PlannedFn = Callable[[float], None]  # called in the handler with the planned POSIX time


class Adapter:
    """One library behind a common surface. ``fn=None`` means a plain no-op handler."""

    name = ""

    def start(self) -> None: raise NotImplementedError
    def stop(self) -> None: raise NotImplementedError
    def add_interval(self, tid: str, seconds: float, first_at: float,
                     fn: PlannedFn | None = None) -> None: raise NotImplementedError
    def add_once(self, tid: str, when: float, fn: Callable[[], None]) -> None:
        raise NotImplementedError


class TickworkAdapter(Adapter):
    name = "tickwork"

    def __init__(self, store: Any = None) -> None:
        import tickwork

        self.tw = tickwork
        self.sched = tickwork.Scheduler(max_workers=MAX_WORKERS, timezone="UTC", store=store)

    def start(self) -> None:
        self.sched.start()

    def stop(self) -> None:
        self.sched.stop(timeout=2)

    def add_interval(self, tid: str, seconds: float, first_at: float,
                     fn: PlannedFn | None = None) -> None:
        tw = self.tw
        if fn is None:
            handler: Callable[..., None] = noop
        else:
            f = fn

            def handler(ctx: Any) -> None:
                f(ctx.scheduled_for.timestamp())
        # fixed_rate: plan from the scheduled time, as APScheduler's IntervalTrigger does
        self.sched.add_task(tw.Task(id=tid, handler=handler, schedule=tw.every(
            seconds=seconds, start_at=utc(first_at), fixed_rate=True)))

    def add_once(self, tid: str, when: float, fn: Callable[[], None]) -> None:
        tw = self.tw
        self.sched.add_task(tw.Task(id=tid, handler=fn, schedule=tw.at(utc(when))))


class ApschedulerAdapter(Adapter):
    """APScheduler 3.x BackgroundScheduler with its defaults, a pool of MAX_WORKERS."""

    name = "apscheduler"

    def __init__(self) -> None:
        from apscheduler.executors.pool import ThreadPoolExecutor
        from apscheduler.schedulers.background import BackgroundScheduler

        self.sched = BackgroundScheduler(
            executors={"default": ThreadPoolExecutor(MAX_WORKERS)}, timezone="UTC")

    def start(self) -> None:
        self.sched.start()

    def stop(self) -> None:
        self.sched.shutdown(wait=False)

    def add_interval(self, tid: str, seconds: float, first_at: float,
                     fn: PlannedFn | None = None) -> None:
        if fn is None:
            self.sched.add_job(noop, "interval", seconds=seconds, start_date=utc(first_at),
                               id=tid)
            return
        f = fn

        def job() -> None:
            now = time.time()
            # APScheduler does not pass the planned time: it is the latest grid point
            # first_at + k*seconds (exact while lateness < the interval)
            k = max(0, math.floor((now - first_at) / seconds))
            f(first_at + k * seconds)

        self.sched.add_job(job, "interval", seconds=seconds, start_date=utc(first_at), id=tid)

    def add_once(self, tid: str, when: float, fn: Callable[[], None]) -> None:
        self.sched.add_job(fn, "date", run_date=utc(when), id=tid)


class ScheduleAdapter(Adapter):
    """`schedule` 1.2: jobs run inline in one thread that polls run_pending()."""

    name = "schedule"

    def __init__(self) -> None:
        import schedule

        self.mod = schedule
        self.sched = schedule.Scheduler()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.sched.run_pending()
            time.sleep(SCHEDULE_POLL)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def add_interval(self, tid: str, seconds: float, first_at: float,
                     fn: PlannedFn | None = None) -> None:
        if fn is None:
            job = self.sched.every(seconds).seconds.do(noop)
        else:
            f = fn
            holder: list[Any] = []

            def run() -> None:
                # during the call job.next_run still holds this run's planned time
                f(holder[0].next_run.timestamp())

            job = self.sched.every(seconds).seconds.do(run)
            holder.append(job)
        # schedule has no start time: set the first run (naive local time, as it uses)
        job.next_run = datetime.fromtimestamp(first_at)

    def add_once(self, tid: str, when: float, fn: Callable[[], None]) -> None:
        cancel = self.mod.CancelJob

        def once() -> Any:
            fn()
            return cancel

        job = self.sched.every(1).days.do(once)
        job.next_run = datetime.fromtimestamp(when)


ADAPTERS: dict[str, Callable[[], Adapter]] = {
    "tickwork": TickworkAdapter,
    "apscheduler": ApschedulerAdapter,
    "schedule": ScheduleAdapter,
}


def make(lib: str) -> Adapter:
    try:
        return ADAPTERS[lib]()
    except KeyError:
        raise SystemExit(f"--lib: unknown library {lib!r} (known: {', '.join(ADAPTERS)})") from None


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": sys.version.split()[0]}
    for dist in ("tickwork", "apscheduler", "schedule"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = "missing"
    return out


# --------------------------------------------------------------------------- orchestration

def run_child(module: str, lib: str, params: dict[str, Any], profile: str | None = None,
              timeout: float = 900) -> dict[str, Any]:
    """Run one measurement in a fresh interpreter; returns its JSON (or an error dict)."""
    cmd = [sys.executable, str(BENCH_DIR / f"{module}.py"), "--lib", lib,
           "--params", json.dumps(params)]
    if profile:
        cmd += ["--profile", profile]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(ROOT / "src"), str(BENCH_DIR), os.environ.get("PYTHONPATH", "")]))
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
    if p.returncode != 0 or not lines:
        tail = (p.stderr or p.stdout).strip().splitlines()[-5:]
        return {"error": f"exit {p.returncode}: " + " | ".join(tail)}
    return json.loads(lines[-1])  # type: ignore[no-any-return]


def median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-key median of numeric figures over repetitions (other values: the first)."""
    ok = [r for r in runs if "error" not in r]
    if not ok:
        return runs[0] if runs else {"error": "no runs"}
    out: dict[str, Any] = {}
    for key in ok[0]:
        vals = [r[key] for r in ok if key in r]
        nums = [v for v in vals if isinstance(v, (int, float)) and not isinstance(v, bool)
                and not math.isnan(v)]
        if nums and len(nums) == len(vals):
            m = statistics.median(nums)
            out[key] = round(m, 3) if isinstance(m, float) else m
        else:
            out[key] = vals[0]
    out["repeats"] = len(ok)
    if len(ok) < len(runs):
        out["failed_repeats"] = [r["error"] for r in runs if "error" in r]
    return out


def run_workload(mod: ModuleType, quick: bool, repeat: int,
                 log: Callable[[str], None] = print) -> dict[str, Any]:
    """All libraries of one workload, each in its own processes; medians of ``repeat``.

    The repetitions are interleaved (tickwork, APScheduler, schedule, tickwork, …), not
    grouped by library: this VM's speed drifts over tens of seconds (the same W3 code
    measured 10-17 % of a core within an hour), and a ratio of two figures measured a
    minute apart carried that drift into the comparison."""
    plan = mod.plan(quick)
    reps = repeat if quick else max(repeat, getattr(mod, "FULL_REPEAT", 1))
    if getattr(mod, "SINGLE_RUN", False):
        reps = 1
    runs: dict[str, list[dict[str, Any]]] = {lib: [] for lib, _ in plan}
    for _ in range(reps):
        for lib, params in plan:
            runs[lib].append(run_child(Path(str(mod.__file__)).stem, lib, params))
    results: dict[str, Any] = {}
    for lib, params in plan:
        res = median_of(runs[lib])
        res["params"] = params
        results[lib] = res
        log(f"  {mod.ID} {lib:<12} {compact(res)}")
    return results


def compact(res: dict[str, Any]) -> str:
    if "error" in res:
        return "ERROR " + str(res["error"])
    return ", ".join(f"{k}={v}" for k, v in res.items() if k not in ("params", "repeats"))


def fmt(v: Any) -> str:
    if isinstance(v, float):
        if math.isnan(v):
            return "n/a"
        if abs(v) >= 1000:
            return f"{v:,.0f}"
        return f"{v:.3g}" if abs(v) < 10 else f"{v:.1f}"
    if isinstance(v, int):
        return f"{v:,}"
    return "n/a" if v is None else str(v)


def table(mod: ModuleType, results: dict[str, Any]) -> str:
    """Markdown table: one row per metric, a column per library, then ratios.

    A ratio is tickwork's advantage: peer/tickwork for lower-is-better figures,
    tickwork/peer for higher-is-better ones, so > 1 always means tickwork is better.
    """
    libs = list(results)
    peers = [lb for lb in libs if lb != "tickwork"]
    head = ["metric"] + libs + [f"adv. vs {p}" for p in peers if "tickwork" in results]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for key, label, better in mod.METRICS:
        if not any(key in results[lb] for lb in libs):
            continue
        cells = [label] + [fmt(results[lb].get(key)) if "error" not in results[lb]
                           else "error" for lb in libs]
        tw = results.get("tickwork", {}).get(key)
        for p in peers:
            if "tickwork" not in results:
                break
            pv = results[p].get(key)
            cells.append(ratio(tw, pv, better))
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def ratio(tw: Any, peer: Any, better: str) -> str:
    if not isinstance(tw, (int, float)) or not isinstance(peer, (int, float)):
        return ""
    if better == "info" or math.isnan(tw) or math.isnan(peer):
        return ""
    num, den = (peer, tw) if better == "lower" else (tw, peer)
    if den == 0:
        return "∞" if num > 0 else ""
    return f"{num / den:.2f}x"


def workload_main(name: str) -> None:
    """Entry point of a workload module: ``--lib X`` measures, otherwise orchestrates."""
    mod = sys.modules[name]
    ap = argparse.ArgumentParser(description=f"{mod.ID}: {mod.TITLE}")
    ap.add_argument("--lib", help="measure one library in this process, print JSON")
    ap.add_argument("--params", default=None, help="JSON parameters (default: the plan's)")
    ap.add_argument("--quick", action="store_true", help="quick-mode parameters")
    ap.add_argument("--repeat", type=int, default=None, help="repetitions (median)")
    ap.add_argument("--profile", default=None, help="write a cProfile dump to this file")
    a = ap.parse_args()
    if a.lib is None:
        res = run_workload(mod, a.quick, a.repeat or (1 if a.quick else 3))
        print(f"\n{mod.ID}: {mod.TITLE}\n")
        print(table(mod, res))
        return
    if a.params is not None:
        params = json.loads(a.params)
    else:
        params = dict(mod.plan(a.quick)).get(a.lib)
        if params is None:
            raise SystemExit(f"--lib {a.lib}: not part of {mod.ID}")
    if a.profile:
        out = profiled(a.profile, lambda: mod.run(a.lib, **params))
    else:
        out = mod.run(a.lib, **params)
    sys.stdout.write(json.dumps(out) + "\n")
    sys.stdout.flush()
    # APScheduler's pool threads are not daemons: leave without joining anything
    os._exit(0)


def profiled(path: str, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run ``fn`` under cProfile in every thread (the timer and worker threads do much of
    the work); write the merged stats to ``path`` and print the top entries on stderr."""
    import cProfile
    import pstats

    profiles: list[cProfile.Profile] = []

    def start_in_thread(frame: Any, event: str, arg: Any) -> None:
        sys.setprofile(None)
        p = cProfile.Profile()
        profiles.append(p)
        p.enable()

    threading.setprofile(start_in_thread)
    main = cProfile.Profile()
    out = main.runcall(fn)
    threading.setprofile(None)  # type: ignore[arg-type]
    stats = pstats.Stats(main, stream=sys.stderr)
    for p in profiles:
        try:
            stats.add(p)
        except TypeError:  # a thread that never made a call
            pass
    stats.dump_stats(path)
    stats.sort_stats("tottime").print_stats(30)
    stats.sort_stats("cumulative").print_stats(30)
    return out


def import_workload(name: str) -> ModuleType:
    if str(BENCH_DIR) not in sys.path:
        sys.path.insert(0, str(BENCH_DIR))
    return importlib.import_module(name)


def far_start() -> float:
    return time.time() + FAR

