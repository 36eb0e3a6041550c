"""``examples/cluster_demo.py``, the README's two-terminal example, run twice at once:
every occurrence is printed by exactly one of the two processes, and both do work."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

pytestmark = pytest.mark.postgres
ROOT = Path(__file__).resolve().parents[2]
RAN = re.compile(r"^pid=(\d+) ran (\S+) attempt=(\d+)")


def test_two_demo_processes_print_each_occurrence_once(
        pg_dsn: str, new_schema: Callable[[], str]) -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    # Ticks every second taking 1.5 s on one worker: an instance busy with one tick
    # cannot take the next, so both instances must work (deterministically).
    cmd = [sys.executable, str(ROOT / "examples" / "cluster_demo.py"), "--dsn", pg_dsn,
           "--schema", new_schema(), "--seconds", "8", "--interval", "1", "--work", "1.5",
           "--workers", "1"]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=env) for _ in range(2)]
    outs = [p.communicate(timeout=60) for p in procs]
    for p, (out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err
        assert "stopped" in out, out
    ran = [[m.group(2) for line in out.splitlines() if (m := RAN.match(line))]
           for out, _err in outs]
    assert all(ran), f"both instances should have run something: {ran}"
    counts = Counter(k for keys in ran for k in keys)
    twice = {k: n for k, n in counts.items() if n > 1}
    assert not twice, f"printed more than once: {twice}"
    assert sum(k.startswith("tick@") for k in counts) >= 5, counts
