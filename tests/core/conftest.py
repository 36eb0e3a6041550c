"""Shared helpers for the core scheduler tests: a FakeClock-driven scheduler and a recorder."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tickwork import Event, Scheduler
from tickwork.testing import FakeClock

# Import-string handlers ("tests.core.jobs:record") resolve like a user's package: the repo
# root must be importable also under the plain `pytest` script (not only `python -m pytest`).
_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def at_s(seconds: float) -> datetime:
    """T0 plus ``seconds``."""
    return T0 + timedelta(seconds=seconds)


class Calls:
    """A handler that records (fake) call times; optionally fails the first ``fail`` calls."""

    def __init__(self, clock: FakeClock | None = None, *, fail: int = 0,
                 exc: type[Exception] = ValueError) -> None:
        self.clock = clock
        self.fail = fail
        self.exc = exc
        self.times: list[float] = []
        self.ctxs: list[Any] = []
        self.lock = threading.Lock()

    def __call__(self, ctx: Any) -> str:
        with self.lock:
            self.times.append(self.clock.time() if self.clock else time.time())
            self.ctxs.append(ctx)
            n = len(self.times)
        if n <= self.fail:
            raise self.exc("boom")
        return "ok"

    @property
    def count(self) -> int:
        return len(self.times)

    def rel(self) -> list[float]:
        """Call times relative to T0, in seconds."""
        return [t - T0.timestamp() for t in self.times]


class Recorder:
    """Collects events (thread-safe)."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.lock = threading.Lock()

    def __call__(self, ev: Event) -> None:
        with self.lock:
            self.events.append(ev)

    def types(self, task_id: str | None = None) -> list[str]:
        with self.lock:
            return [str(e.type) for e in self.events if task_id is None or e.task_id == task_id]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def sched(clock: FakeClock) -> Iterator[Scheduler]:
    s = Scheduler(clock=clock, timezone="UTC")
    yield s
    s.stop(timeout=5)


def wait_for(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll ``cond`` in real time with a deadline (for real-thread tests)."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.001)
