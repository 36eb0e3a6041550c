"""Publish/subscribe for events. Peripherals (metrics, web, history) subscribe here."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable

from ._model import Event, EventType

Callback = Callable[[Event], object]


class EventBus:
    """Delivers events synchronously, in the thread that produced them, outside any lock.

    A failing callback is logged and never affects the scheduler. Callbacks should be
    quick (hand work to a queue): they run on scheduler threads.
    """

    def __init__(self, logger: logging.Logger) -> None:
        self._logger = logger
        self._lock = threading.Lock()
        # Read by the engine on every run (``if bus.subs:``) to skip building events no
        # one receives: a tuple's truth is a C-level check, a __bool__ method is a call.
        self.subs: tuple[tuple[Callback, frozenset[EventType] | None], ...] = ()

    def subscribe(
        self, callback: Callback, events: Iterable[EventType | str] | None = None
    ) -> Callable[[], None]:
        if not callable(callback):
            raise ValueError(f"subscribe: callback must be callable, got {callback!r}")
        wanted: frozenset[EventType] | None = None
        if events is not None:
            if isinstance(events, str):
                events = [events]
            try:
                wanted = frozenset(EventType(e) for e in events)
            except ValueError as e:
                raise ValueError(f"subscribe: events: {e}") from None
        item = (callback, wanted)
        with self._lock:
            self.subs = (*self.subs, item)

        def unsubscribe() -> None:
            with self._lock:
                self.subs = tuple(s for s in self.subs if s is not item)

        return unsubscribe

    def publish(self, event: Event) -> None:
        for cb, wanted in self.subs:
            if wanted is not None and event.type not in wanted:
                continue
            try:
                cb(event)
            except Exception:
                self._logger.exception("event callback %r failed on %s", cb, event.type)
