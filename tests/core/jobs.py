"""Handlers referenced by import string ("tests.core.jobs:...") in store tests."""

from __future__ import annotations

CALLS: list[str] = []


def record(ctx: object) -> str:
    CALLS.append(getattr(ctx, "task_id", "?"))
    return "recorded"
