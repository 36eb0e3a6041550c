"""Picks the engine for a store: the local planner, or the cluster engine for stores
that coordinate several processes (``PostgresTaskStore``)."""

from __future__ import annotations

import importlib
import logging
from typing import Any

from ._engine import Engine
from ._errors import StoreError
from .stores.base import TaskStore


def make_engine(logger: logging.Logger | None, *, store: TaskStore | None,
                **kwargs: Any) -> Engine:
    if store is not None and getattr(store, "cluster_capable", False):
        try:
            mod = importlib.import_module("tickwork.cluster.engine")
        except ImportError as exc:
            raise StoreError(f"cluster mode is not available: {exc}") from None
        cls: type[Engine] = mod.ClusterEngine
        return cls(logger, store=store, **kwargs)
    return Engine(logger, store=store, **kwargs)
