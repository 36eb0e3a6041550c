"""The benchmark suite: ``make bench`` (full) and ``make bench-quick`` (under a minute).

Runs W0-W7 (see bench/README.md): every library in its own fresh process per workload
and repetition, same parameters, medians of 3 in full mode (1 in quick mode). Prints a
table per workload with tickwork's figure, each peer's and tickwork's advantage ratio
(> 1 = tickwork better), checks the targets of issues 2 and 7, and writes
bench/results/latest.json and bench/results/latest.md.

    python bench/run.py [--quick] [--only W1,W3] [--repeat N]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _util

WORKLOADS = ["w0_probe", "w1_add", "w2_burst", "w3_periodic", "w4_idle", "W5",
             "w6_scale", "w7_sqlite"]
PEERS = {"apscheduler": "apscheduler>=3.11,<4", "schedule": "schedule>=1.2"}


def ensure_peers() -> None:
    """Install the peer libraries into this interpreter's environment when missing."""
    missing = [spec for mod, spec in PEERS.items() if importlib.util.find_spec(mod) is None]
    if missing:
        print(f"installing peers: {' '.join(missing)}", flush=True)
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", *missing], check=False)


def machine() -> dict[str, Any]:
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = 0
    try:
        with open("/proc/meminfo") as f:
            mem = int(f.readline().split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gb": round(mem / 2**30, 1),
            "os": platform.platform(), **_util.versions()}


def run_external(script: str, quick: bool, log: Callable[[str], None]) -> dict[str, Any]:
    """A bench script owned by another engineer (cron_bench.py, store_bench.py)."""
    path = _util.BENCH_DIR / script
    if not path.exists():
        return {"skipped": f"bench/{script} not present"}
    cmd = [sys.executable, str(path)] + (["--quick"] if quick else [])
    t0 = time.time()
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    except subprocess.TimeoutExpired:
        return {"error": f"bench/{script} timed out"}
    out: dict[str, Any] = {"exit": p.returncode, "seconds": round(time.time() - t0, 1),
                           "stdout": p.stdout[-20000:]}
    if p.returncode != 0:
        out["stderr"] = p.stderr[-4000:]
    for line in reversed(p.stdout.splitlines()):
        if line.startswith("{"):
            try:
                out["json"] = json.loads(line)
            except ValueError:
                pass
            break
    log(p.stdout.rstrip() or f"(bench/{script}: no output; exit {p.returncode})")
    return out


def _get(res: dict[str, Any], wid: str, lib: str, key: str) -> float:
    v = res.get(wid, {}).get("results", {}).get(lib, {}).get(key)
    return float(v) if isinstance(v, (int, float)) else math.nan


def targets(res: dict[str, Any]) -> list[dict[str, Any]]:
    """The targets of issue 2 (acceptance 3) and issue 7, each with the figures used."""
    out: list[dict[str, Any]] = []

    def check(name: str, value: float, ok: bool, detail: str) -> None:
        if not math.isnan(value):
            out.append({"target": name, "value": round(value, 3), "met": ok, "detail": detail})

    g = _get
    v = g(res, "W0", "tickwork", "late_p99_ms")
    check("W0 tickwork p99 lateness < 5 ms", v, v < 5, f"{v} ms")
    tw, ap = g(res, "W1", "tickwork", "us_per_add_last"), g(res, "W1", "apscheduler",
                                                          "us_per_add_last")
    check("W1 ≥ 8x faster per add than APScheduler (last tenth)", ap / tw, ap / tw >= 8,
          f"tickwork {tw} µs, APScheduler {ap} µs")
    v = g(res, "W1", "tickwork", "growth")
    check("W1 growth first→last tenth ≤ 1.15x", v, v <= 1.15, f"{v}x")
    tw, ap = g(res, "W1", "tickwork", "bytes_per_task"), g(res, "W1", "apscheduler",
                                                         "bytes_per_task")
    check("W1 memory/task ≤ 0.6x APScheduler's", tw / ap, tw / ap <= 0.6,
          f"tickwork {tw} B, APScheduler {ap} B")
    tw, ap = g(res, "W2", "tickwork", "runs_per_s"), g(res, "W2", "apscheduler", "runs_per_s")
    check("W2 ≥ 2.5x APScheduler's runs/s", tw / ap, tw / ap >= 2.5,
          f"tickwork {tw}/s, APScheduler {ap}/s")
    tw, ap = g(res, "W3", "tickwork", "late_p99_ms"), g(res, "W3", "apscheduler", "late_p99_ms")
    check("W3 p99 lateness ≤ APScheduler's", tw, tw <= ap, f"tickwork {tw} ms, APScheduler {ap} ms")
    tw, ap = g(res, "W3", "tickwork", "cpu_pct"), g(res, "W3", "apscheduler", "cpu_pct")
    check("W3 CPU ≤ half of APScheduler's", tw / ap, tw <= ap / 2,
          f"tickwork {tw} %, APScheduler {ap} %")
    v, n = g(res, "W4", "tickwork", "cpu_pct"), g(res, "W4", "tickwork", "n")
    check(f"W4 idle CPU ~0 (< 1 %) with {n:,.0f} tasks", v, v < 1, f"{v} %")
    n = g(res, "W6", "tickwork", "n")
    scale = 1_000_000 / n  # quick mode registers fewer: extrapolate linearly to 1,000,000
    est = "" if scale == 1 else f" (extrapolated from {n:,.0f})"
    v = g(res, "W6", "tickwork", "add_s") * scale
    check("W6 1,000,000 tasks added in < 10 s" + est, v, v < 10, f"{v:.1f} s")
    rss, growth = g(res, "W6", "tickwork", "rss_mb"), g(res, "W6", "tickwork", "rss_growth_mb")
    v = rss + growth * (scale - 1)
    check("W6 RSS with 1,000,000 tasks < 600 MB" + est, v, v < 600, f"{v:.0f} MB")
    v, base = g(res, "W6", "tickwork", "late_p99_ms"), g(res, "W3", "tickwork", "late_p99_ms")
    check("W6 W3-lateness unchanged (p99 ≤ W3's + 1 ms)", v, v <= base + 1,
          f"{v} ms with the tasks, {base} ms without")
    v = g(res, "W7", "tickwork", "late_p99_ms")
    check("W7 p99 lateness with SQLite < 2 ms", v, v < 2, f"{v} ms")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small parameters, one repetition")
    ap.add_argument("--only", default="", help="comma-separated workload ids, e.g. W1,W3")
    ap.add_argument("--repeat", type=int, default=None, help="repetitions (median)")
    ap.add_argument("--out", default=str(_util.BENCH_DIR / "results"), help="result folder")
    a = ap.parse_args()
    repeat = a.repeat or (1 if a.quick else 3)
    only = {w.strip().upper() for w in a.only.split(",") if w.strip()}
    ensure_peers()
    started = time.time()
    md: list[str] = []

    def log(line: str) -> None:
        print(line, flush=True)

    report: dict[str, Any] = {
        "mode": "quick" if a.quick else "full", "repeat": repeat,
        "date": datetime.now(UTC).isoformat(timespec="seconds"), "machine": machine(),
        "workloads": {},
    }
    log(f"tickwork bench ({report['mode']}, medians of {repeat}) on "
        f"{report['machine']['cpu']} x {report['machine']['cores']}")
    for name in WORKLOADS:
        wid = name if name == "W5" else name.split("_")[0].upper()
        if only and wid not in only:
            continue
        if wid == "W5":
            log("\n## W5: cron next() (bench/cron_bench.py)\n")
            report["workloads"]["W5"] = run_external("cron_bench.py", a.quick, log)
            md += ["## W5: cron next()", "", "```",
                   report["workloads"]["W5"].get("stdout", report["workloads"]["W5"].get(
                       "skipped", "")).rstrip(), "```", ""]
            continue
        mod = _util.import_workload(name)
        log(f"\n## {mod.ID}: {mod.TITLE}")
        t0 = time.time()
        results = _util.run_workload(mod, a.quick, repeat, log)
        tbl = _util.table(mod, results)
        log("\n" + tbl)
        report["workloads"][mod.ID] = {"title": mod.TITLE, "seconds": round(time.time() - t0, 1),
                                       "results": results}
        md += [f"## {mod.ID}: {mod.TITLE}", "", tbl, ""]
    if (not only and not a.quick) or "STORE" in only:
        store = run_external("store_bench.py", a.quick, lambda s: None)
        if "skipped" not in store:
            log("\n## store bench (bench/store_bench.py)\n" + store.get("stdout", ""))
            report["workloads"]["store"] = store
    report["targets"] = targets(report["workloads"])
    report["seconds"] = round(time.time() - started, 1)
    lines = ["| target | met | figures |", "|---|---|---|"] + [
        f"| {t['target']} | {'yes' if t['met'] else '**no**'} | {t['detail']} |"
        for t in report["targets"]]
    log("\n## targets\n\n" + "\n".join(lines))
    md += ["## Targets", "", *lines, ""]
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "latest.json").write_text(json.dumps(report, indent=2) + "\n")
    m = report["machine"]
    more = sorted({f"{wid}: of {res['repeats']}" for wid, w in report["workloads"].items()
                   for res in w.get("results", {}).values()
                   if isinstance(res, dict) and res.get("repeats", repeat) > repeat})
    medians = f"Medians of {repeat}" + (f" ({', '.join(more)})" if more else "")
    head = [f"# tickwork bench, {report['mode']} mode, {report['date']}", "",
            f"{m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB; {m['os']}; Python "
            f"{m['python']}; tickwork {m['tickwork']}, APScheduler {m['apscheduler']}, "
            f"schedule {m['schedule']}. {medians}. Ratios: tickwork's advantage "
            "(> 1 = tickwork better).", ""]
    (out / "latest.md").write_text("\n".join(head + md))
    log(f"\nwrote {out / 'latest.json'} and latest.md in {report['seconds']} s")


if __name__ == "__main__":
    main()
