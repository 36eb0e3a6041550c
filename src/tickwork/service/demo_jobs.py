"""Handlers for the bundled demo (``tickwork demo``): small, visible, sometimes failing."""

from __future__ import annotations

import random
from datetime import datetime

from .._context import TaskContext

_batch = {"n": 0}


def heartbeat(ctx: TaskContext) -> str:
    return f"alive at {datetime.now().astimezone():%H:%M:%S} (run {ctx.run_id})"


def flaky(ctx: TaskContext) -> str:
    """Fails about half the time, so the UI shows retries with backoff and failures."""
    if random.random() < 0.5:
        raise RuntimeError(f"flaky failure on attempt {ctx.attempt}, will retry")
    return f"succeeded on attempt {ctx.attempt}"


def prepare(ctx: TaskContext) -> dict[str, int]:
    _batch["n"] += 1
    ctx.wait(1.0)
    return {"batch": _batch["n"], "rows": random.randint(100, 1000)}


def process(ctx: TaskContext) -> dict[str, int]:
    ctx.wait(2.0)
    return {"batch": _batch["n"], "processed": random.randint(90, 100)}


def report(ctx: TaskContext) -> str:
    return f"report for batch {_batch['n']} written"


def once(ctx: TaskContext) -> str:
    return f"one-off run planned for {ctx.scheduled_for:%H:%M:%S}"
