"""Cluster mode on PostgreSQL: the database statements (``claims``), the pure occurrence
planner (``plan``) and the wake-up listener. See docs/cluster.md for the design and the
guarantees; ``tickwork.stores.postgres.PostgresTaskStore`` owns the schema."""

from .claims import (
    Claimed,
    DueTask,
    Reaped,
    Wakeups,
    claim,
    complete,
    db_now,
    enqueue_manual,
    heartbeat,
    materialise,
    materialise_due,
    reap,
    run_key,
    seconds_until_due,
)
from .plan import Plan, plan_occurrences, planner_for

__all__ = [
    "Claimed",
    "DueTask",
    "Plan",
    "Reaped",
    "Wakeups",
    "claim",
    "complete",
    "db_now",
    "enqueue_manual",
    "heartbeat",
    "materialise",
    "materialise_due",
    "plan_occurrences",
    "planner_for",
    "reap",
    "run_key",
    "seconds_until_due",
]
