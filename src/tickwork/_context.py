"""TaskContext: what a handler sees of its execution."""

from __future__ import annotations

import logging
import threading
from datetime import datetime, tzinfo
from typing import Any

from ._clock import Clock

_CREATE = threading.Lock()  # guards the lazy creation of a context's condition


class TaskContext:
    """Passed to handlers that take one argument (``def h(ctx)``).

    ``cancelled`` becomes True when the attempt timed out, the task was disabled or
    removed, or the scheduler is stopping; long handlers should check it or use
    ``wait()`` instead of ``time.sleep()``.
    """

    __slots__ = (
        "_base_logger",
        "_cancelled",
        "_clock",
        "_cond",
        "_deadline",
        "_deadline_ts",
        "_logger",
        "_run_key",
        "_scheduled",
        "_scheduled_ts",
        "_started",
        "_started_ts",
        "_tz",
        "_wait_until",
        "attempt",
        "connection",
        "fence",
        "run_id",
        "task_id",
    )

    def __init__(
        self,
        *,
        task_id: str,
        run_id: str,
        attempt: int,
        scheduled_for: datetime | None = None,
        started_at: datetime | None = None,
        deadline: datetime | None = None,
        clock: Clock,
        logger: logging.Logger | logging.LoggerAdapter[Any] | None = None,
        fence: int | None = None,
        connection: Any = None,
        tz: tzinfo | None = None,
        scheduled_ts: float = 0.0,
        started_ts: float = 0.0,
        deadline_ts: float | None = None,
        base_logger: logging.Logger | None = None,
    ) -> None:
        # The datetimes, run key, logger adapter and condition are built on first use:
        # most handlers never look at them, and building them for every run was a large
        # part of a run's cost (issue 7). Give either datetimes or POSIX seconds + ``tz``.
        self.task_id = task_id
        self.run_id = run_id
        self.attempt = attempt
        self._scheduled = scheduled_for
        self._started = started_at
        self._deadline = deadline
        self._tz = tz
        self._scheduled_ts = scheduled_ts
        self._started_ts = started_ts
        self._deadline_ts = deadline_ts
        self._run_key: str | None = None
        self._logger = logger
        self._base_logger = base_logger
        self.fence = fence
        self.connection = connection
        self._clock = clock
        self._cond: threading.Condition | None = None
        self._cancelled = False
        # Set while wait() sleeps: lets tickwork.testing.settle tell a handler blocked on a
        # FakeClock (it can only progress when the test moves time) from one still working.
        self._wait_until: float | None = None

    @property
    def scheduled_for(self) -> datetime:
        d = self._scheduled
        if d is None:
            d = self._scheduled = datetime.fromtimestamp(self._scheduled_ts, self._tz)
        return d

    @property
    def started_at(self) -> datetime:
        d = self._started
        if d is None:
            d = self._started = datetime.fromtimestamp(self._started_ts, self._tz)
        return d

    @property
    def deadline(self) -> datetime | None:
        d = self._deadline
        if d is None and self._deadline_ts is not None:
            d = self._deadline = datetime.fromtimestamp(self._deadline_ts, self._tz)
        return d

    @property
    def run_key(self) -> str:
        """Idempotency key: the same for every attempt and every instance that runs this
        occurrence, so handlers can make external effects happen once."""
        k = self._run_key
        if k is None:
            k = self._run_key = (
                f"{self.task_id}@{self.scheduled_for.strftime('%Y-%m-%dT%H:%M:%S%z')}")
        return k

    @run_key.setter
    def run_key(self, value: str) -> None:
        self._run_key = value  # the cluster engine sets its instance-independent spelling

    @property
    def logger(self) -> logging.Logger | logging.LoggerAdapter[Any]:
        lg = self._logger
        if lg is None:
            base = self._base_logger or logging.getLogger("tickwork")
            lg = self._logger = logging.LoggerAdapter(
                base, {"task_id": self.task_id, "run_id": self.run_id})
        return lg

    def _condition(self) -> threading.Condition:
        c = self._cond
        if c is None:
            with _CREATE:
                c = self._cond
                if c is None:
                    c = self._cond = threading.Condition()
        return c

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    def cancel(self) -> None:
        cond = self._condition()
        with cond:
            self._cancelled = True
            cond.notify_all()

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; return True early (at once) if cancelled."""
        until = self._clock.time() + seconds
        cond = self._condition()
        with cond:
            self._wait_until = until
            try:
                while not self._cancelled and self._clock.time() < until:
                    self._clock.wait(cond, until)
            finally:
                self._wait_until = None
            return self._cancelled

    @property
    def sleeping(self) -> bool:
        """True while in ``wait()`` with time left and not cancelled."""
        until = self._wait_until
        return until is not None and not self._cancelled and self._clock.time() < until

    def __repr__(self) -> str:
        return (f"TaskContext(task_id={self.task_id!r}, run_id={self.run_id!r}, "
                f"attempt={self.attempt}, run_key={self.run_key!r})")


_new = object.__new__


def run_context(task_id: str, run_id: str, attempt: int, clock: Clock, tz: tzinfo | None,
                scheduled_ts: float, started_ts: float, deadline_ts: float | None,
                base_logger: logging.Logger | None) -> TaskContext:
    """``TaskContext(task_id=…, run_id=…, …, base_logger=…)`` without the keyword call:
    the engine makes one per run (issue 7, W3). Every slot is set as ``__init__`` sets
    it (tests/core/test_fast_paths.py compares the two slot by slot)."""
    c: TaskContext = _new(TaskContext)
    c.task_id = task_id
    c.run_id = run_id
    c.attempt = attempt
    c._scheduled = None
    c._started = None
    c._deadline = None
    c._tz = tz
    c._scheduled_ts = scheduled_ts
    c._started_ts = started_ts
    c._deadline_ts = deadline_ts
    c._run_key = None
    c._logger = None
    c._base_logger = base_logger
    c.fence = None
    c.connection = None
    c._clock = clock
    c._cond = None
    c._cancelled = False
    c._wait_until = None
    return c
