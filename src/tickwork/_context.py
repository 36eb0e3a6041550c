"""TaskContext: what a handler sees of its execution."""

from __future__ import annotations

import logging
import threading
from datetime import datetime
from typing import Any

from ._clock import Clock


class TaskContext:
    """Passed to handlers that take one argument (``def h(ctx)``).

    ``cancelled`` becomes True when the attempt timed out, the task was disabled or
    removed, or the scheduler is stopping; long handlers should check it or use
    ``wait()`` instead of ``time.sleep()``.
    """

    __slots__ = (
        "_cancelled",
        "_clock",
        "_cond",
        "_wait_until",
        "attempt",
        "connection",
        "deadline",
        "fence",
        "logger",
        "run_id",
        "run_key",
        "scheduled_for",
        "started_at",
        "task_id",
    )

    def __init__(
        self,
        *,
        task_id: str,
        run_id: str,
        attempt: int,
        scheduled_for: datetime,
        started_at: datetime,
        deadline: datetime | None,
        clock: Clock,
        logger: logging.Logger | logging.LoggerAdapter[Any],
        fence: int | None = None,
        connection: Any = None,
    ) -> None:
        self.task_id = task_id
        self.run_id = run_id
        self.attempt = attempt
        self.scheduled_for = scheduled_for
        self.started_at = started_at
        self.deadline = deadline
        # Idempotency key: the same for every attempt and every instance that runs this
        # occurrence, so handlers can make external effects happen once.
        self.run_key = f"{task_id}@{scheduled_for.strftime('%Y-%m-%dT%H:%M:%S%z')}"
        self.logger = logger
        self.fence = fence
        self.connection = connection
        self._clock = clock
        self._cond = threading.Condition()
        self._cancelled = False
        # Set while wait() sleeps: lets tickwork.testing.settle tell a handler blocked on a
        # FakeClock (it can only progress when the test moves time) from one still working.
        self._wait_until: float | None = None

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    def cancel(self) -> None:
        with self._cond:
            self._cancelled = True
            self._cond.notify_all()

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; return True early (at once) if cancelled."""
        until = self._clock.time() + seconds
        with self._cond:
            self._wait_until = until
            try:
                while not self._cancelled and self._clock.time() < until:
                    self._clock.wait(self._cond, until)
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
