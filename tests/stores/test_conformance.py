"""Every store backend passes the same conformance suite (tickwork.testing.store_suite)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tickwork.stores import JsonTaskStore, MemoryTaskStore, SqliteTaskStore
from tickwork.stores.base import TaskStore
from tickwork.testing.store_suite import STORE_CHECKS, StoreFactory, check_store

Check = Callable[[StoreFactory], None]
checks = pytest.mark.parametrize("check", STORE_CHECKS, ids=lambda c: c.__name__)


def memory_factory(cls: type[MemoryTaskStore] = MemoryTaskStore) -> StoreFactory:
    """One instance per location: a memory store's "reopen" is the same object."""
    store: MemoryTaskStore | None = None

    def open_(**kw: Any) -> TaskStore:
        nonlocal store
        if store is None:
            store = cls(**kw)
        return store

    return open_


@checks
def test_memory(check: Check) -> None:
    check(memory_factory())


@checks
def test_json(check: Check, tmp_path: Path) -> None:
    check(lambda **kw: JsonTaskStore(tmp_path / "tasks.json", **kw))


@checks
def test_sqlite(check: Check, tmp_path: Path) -> None:
    check(lambda **kw: SqliteTaskStore(tmp_path / "tickwork.db", **kw))


def test_check_store_runs_everything(tmp_path: Path) -> None:
    counter = iter(range(1000))

    def make() -> StoreFactory:
        path = tmp_path / f"s{next(counter)}.db"
        return lambda **kw: SqliteTaskStore(path, **kw)

    check_store(make)
    assert next(counter) == len(STORE_CHECKS)


class _ForgetfulStore(MemoryTaskStore):
    """Broken on purpose: drops the task state that record_run should write."""

    def record_run(self, task: Any, record: Any, now: Any) -> None:
        super().record_run(None, record, now)


def test_suite_catches_a_broken_store() -> None:
    with pytest.raises(AssertionError, match="check_record_run_updates_task"):
        check_store(lambda: memory_factory(_ForgetfulStore))
