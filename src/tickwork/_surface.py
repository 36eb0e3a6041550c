"""What ``Scheduler`` and ``AsyncScheduler`` share as plain (non-coroutine) methods.

Subscribing, the decorator and the properties do no I/O, so both schedulers offer them
synchronously (the decorator must work at import time, outside any event loop).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import tzinfo
from typing import Any, TypeVar

from ._engine import Engine
from ._events import Callback
from ._model import EventType, Schedule, Task

F = TypeVar("F", bound=Callable[..., Any])


class SharedSurface:
    _engine: Engine

    def subscribe(self, callback: Callback,
                  events: Iterable[EventType | str] | None = None) -> Callable[[], None]:
        """Call ``callback(event)`` for each event (or only ``events``); returns unsubscribe.

        Callbacks run on scheduler threads: keep them quick (hand work to a queue).
        """
        return self._engine.subscribe(callback, events)

    def task(self, schedule: Schedule, *, id: str | None = None,
             **fields: Any) -> Callable[[F], F]:
        """Decorator: ``@sched.task(every(minutes=5))`` adds the function as a task.

        The id defaults to the function's qualified name; the function is returned
        unchanged.
        """

        def deco(fn: F) -> F:
            tid = id or f"{fn.__module__}.{fn.__qualname__}".replace("<", "").replace(">", "")
            self._engine.add_task(Task(id=tid, handler=fn, schedule=schedule, **fields))
            return fn

        return deco

    @property
    def timezone(self) -> tzinfo:
        """The scheduler's zone: naive datetimes in schedules are wall time here."""
        return self._engine.tz

    @property
    def instance_id(self) -> str:
        """``host:pid:random``, recorded in every run this scheduler executes."""
        return self._engine.instance_id
