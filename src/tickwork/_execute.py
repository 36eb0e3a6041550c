"""Running one attempt of a run: the handler call, shared by both runners."""

from __future__ import annotations

import asyncio
from typing import Any

from . import _core
from ._engine import Engine, error_text


def run_sync(engine: Engine, run: _core.Run) -> None:
    """Run a sync handler's attempt on the current (worker) thread."""
    token, error, result = call_sync(engine, run)
    engine.attempt_done(run, token, error, result)


def call_sync(engine: Engine, run: _core.Run) -> tuple[int, str | None, Any]:
    """The attempt without reporting it: (token, error or None, result)."""
    token = run.token
    engine.before_attempt(run)
    res = run.handler
    result: Any = None
    error: str | None = None
    try:
        result = res.fn(run.ctx) if res.wants_ctx else res.fn()
        # A sync-looking callable that returned a coroutine; most handlers return None,
        # which skips iscoroutine's isinstance checks.
        if result is not None and asyncio.iscoroutine(result):
            result = asyncio.run(result)
    except BaseException as exc:  # a handler's failure is the run's failure, nothing more
        error = error_text(exc)
    return token, error, result


async def run_async(engine: Engine, run: _core.Run) -> None:
    """Run an async handler's attempt on the current event loop."""
    token = run.token
    engine.before_attempt(run)
    res = run.handler
    result: Any = None
    error: str | None = None
    try:
        result = await (res.fn(run.ctx) if res.wants_ctx else res.fn())
    except asyncio.CancelledError:
        # Cancelled by a timeout or stop(): the engine has already recorded the outcome,
        # so report a stale attempt and let the cancellation end the task.
        engine.attempt_done(run, token, "CancelledError: cancelled", None)
        raise
    except BaseException as exc:
        error = error_text(exc)
    engine.attempt_done(run, token, error, result)
