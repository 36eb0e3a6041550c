"""SIGKILL a writer at random moments: the store must always load and hold every change
the writer reported as done (the call returned before it printed)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tickwork.stores import JsonTaskStore, SqliteTaskStore
from tickwork.stores.base import TaskStore

CHILD = Path(__file__).with_name("crash_child.py")
SRC = str(Path(__file__).resolve().parents[2] / "src")
KILLS = 60  # per backend


class Server:
    """The fork server in crash_child.py."""

    def __init__(self) -> None:
        env = {**os.environ, "PYTHONPATH": SRC}
        self.proc = subprocess.Popen([sys.executable, str(CHILD)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, env=env)
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.stdin, self.stdout = self.proc.stdin, self.proc.stdout

    def readline(self) -> str:
        line = self.stdout.readline().decode()
        assert line.endswith("\n"), f"crash server ended: {self.proc.wait(timeout=30)}"
        return line

    def kill_after(self, kind: str, path: Path, start: int, lines: int) -> list[str]:
        """Fork a writer; SIGKILL it after ``lines`` reported changes; its report."""
        self.stdin.write(f"go {kind} {path} {start}\n".encode())
        self.stdin.flush()
        pid = int(self.readline().split()[1])
        seen = [self.readline() for _ in range(lines)]
        os.kill(pid, signal.SIGKILL)
        while not (line := self.readline()).startswith("dead"):
            seen.append(line)
        assert int(line.split()[1]) == signal.SIGKILL, "writer died by itself"
        return seen

    def close(self) -> None:
        self.stdin.close()
        assert self.proc.wait(timeout=30) == 0


@pytest.fixture
def server() -> Iterator[Server]:
    s = Server()
    yield s
    s.close()


def open_store(kind: str, path: Path) -> TaskStore:
    if kind == "json":
        return JsonTaskStore(path, keep_runs_per_task=None)
    return SqliteTaskStore(path, keep_runs_per_task=None)


@pytest.mark.parametrize("kind", ["json", "sqlite"])
def test_sigkill_never_loses_a_reported_change(
    kind: str, server: Server, tmp_path: Path
) -> None:
    rng = random.Random(f"crash-{kind}")
    path = tmp_path / ("tasks.json" if kind == "json" else "tickwork.db")
    latest: dict[str, int] = {}
    runs: set[str] = set()
    start = 0
    for _ in range(KILLS):
        for line in server.kill_after(kind, path, start, rng.randint(1, 12)):
            what, ident, *count = line.split()
            if what == "task":
                latest[ident] = max(latest.get(ident, -1), int(count[0]))
            else:
                runs.add(ident)
        store = open_store(kind, path)  # must load without error after every kill
        stored = {t["id"]: t["n"] for t in store.load_tasks()}
        for tid, n in latest.items():
            assert stored.get(tid, -1) >= n, f"{kind}: lost reported update {tid}={n}"
        history = {r.run_id for r in store.get_history(limit=1_000_000)}
        assert runs <= history, f"{kind}: lost reported runs {sorted(runs - history)[:5]}"
        store.close()
        start = max(latest.values()) + 1000  # past anything written but not reported
    assert len(runs) > 50 and len(latest) == 7
    if kind == "json":
        # a kill mid-write can leave a temp file; the next write clears it
        store = open_store(kind, path)
        store.upsert_task({"v": 1, "id": "t0", "n": 10**9}, datetime.now(UTC))
        store.close()
        assert sorted(os.listdir(tmp_path)) == ["tasks.json", "tasks.json.lock"]
