"""open_store(url): the URL spellings of the service config."""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Any

import pytest

from tickwork._errors import StoreError
from tickwork.stores import (
    JsonTaskStore,
    MemoryTaskStore,
    SqliteTaskStore,
    StoreURLError,
    open_store,
)
from tickwork.testing.store_suite import NOW, sample_task


def test_memory() -> None:
    assert isinstance(open_store("memory://"), MemoryTaskStore)


def test_json(tmp_path: Path) -> None:
    s = open_store(f"json://{tmp_path}/tasks.json")
    assert isinstance(s, JsonTaskStore) and s.path == f"{tmp_path}/tasks.json"
    s.upsert_task(sample_task("a"), NOW)
    assert (tmp_path / "tasks.json").exists()


def test_sqlite_with_retention_and_escaped_path(tmp_path: Path) -> None:
    s = open_store(f"sqlite://{tmp_path}/my%20db.sqlite?keep_runs_per_task=5&keep_days=none")
    assert isinstance(s, SqliteTaskStore)
    assert s.path == f"{tmp_path}/my db.sqlite"
    assert (s.keep_runs_per_task, s.keep_days) == (5, None)
    s.close()


@pytest.mark.parametrize("url", [
    "json://relative/tasks.json",          # host part, i.e. only two slashes
    "json:relative.json",
    "sqlite:///tmp/folder/",
    "ftp:///tmp/x",
    "",
    "memory://somewhere",
    "sqlite:///tmp/x.db?keep=3",
    "sqlite:///tmp/x.db?keep_runs_per_task=lots",
    "sqlite:///tmp/x.db?keep_runs_per_task=0",
])
def test_bad_urls_name_the_url(url: str) -> None:
    with pytest.raises(StoreURLError) as e:
        open_store(url)
    assert repr(url) in str(e.value)
    assert isinstance(e.value, ValueError) and isinstance(e.value, StoreError)


def test_postgres_not_available_yet(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    real = importlib.import_module

    def fake(name: str, *a: Any) -> Any:
        if name == "tickwork.stores.postgres":
            raise ModuleNotFoundError(name=name)
        return real(name, *a)

    monkeypatch.setattr(importlib, "import_module", fake)
    with pytest.raises(StoreError, match="PostgreSQL store is not available") as e:
        open_store("postgresql://bob:s3cret@db.example/tw")
    assert "s3cret" not in str(e.value) and "bob:***@db.example" in str(e.value)


def test_postgres_uses_the_module_when_present(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = types.ModuleType("tickwork.stores.postgres")

    class PostgresTaskStore(MemoryTaskStore):
        def __init__(self, dsn: str) -> None:
            super().__init__()
            self.dsn = dsn

    fake.PostgresTaskStore = PostgresTaskStore  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "tickwork.stores.postgres", fake)
    s = open_store("postgres://u@h/db")
    assert isinstance(s, PostgresTaskStore) and s.dsn == "postgres://u@h/db"
