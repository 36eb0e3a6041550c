"""PostgresTaskStore passes the same conformance suite as every other store."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tickwork._errors import StoreError
from tickwork.stores import open_store
from tickwork.stores.base import TaskStore
from tickwork.testing.store_suite import STORE_CHECKS, StoreFactory, sample_task

pytestmark = pytest.mark.postgres
postgres = pytest.importorskip("tickwork.stores.postgres")
PostgresTaskStore = postgres.PostgresTaskStore

Check = Callable[[StoreFactory], None]


@pytest.mark.parametrize("check", STORE_CHECKS, ids=lambda c: c.__name__)
def test_postgres(check: Check, pg_dsn: str, new_schema: Callable[[], str]) -> None:
    schema = new_schema()

    def factory(**kw: Any) -> TaskStore:
        store: TaskStore = PostgresTaskStore(pg_dsn, schema=schema, **kw)
        return store

    check(factory)


def test_open_store_resolves_postgres_urls(pg_dsn: str) -> None:
    url = "postgresql://postgres@127.0.0.1:5432/" + pg_dsn.split("dbname=")[1].split()[0]
    store = open_store(url)
    try:
        assert type(store).__name__ == "PostgresTaskStore"
        assert store.load_tasks() == [] or isinstance(store.load_tasks(), list)
    finally:
        store.close()


def test_schema_newer_than_code_is_refused(pg_dsn: str, new_schema: Callable[[], str]) -> None:
    schema = new_schema()
    s = PostgresTaskStore(pg_dsn, schema=schema)
    with s.connect() as c:
        c.execute("INSERT INTO tw_schema_version (version) VALUES (999)")
    s.close()
    with pytest.raises(StoreError, match="schema version 999 is newer"):
        PostgresTaskStore(pg_dsn, schema=schema)


def test_concurrent_first_opens_migrate_once(pg_dsn: str, new_schema: Callable[[], str]) -> None:
    import threading
    schema = new_schema()
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def open_() -> None:
        try:
            barrier.wait()
            PostgresTaskStore(pg_dsn, schema=schema).close()
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=open_) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    s = PostgresTaskStore(pg_dsn, schema=schema)
    assert s.schema_version() == 1
    s.close()


def test_bad_arguments_name_the_field(pg_dsn: str) -> None:
    with pytest.raises(ValueError, match="schema"):
        PostgresTaskStore(pg_dsn, schema="Robert'); DROP TABLE x;--")
    with pytest.raises(ValueError, match="lease"):
        PostgresTaskStore(pg_dsn, lease=timedelta(0))
    with pytest.raises(StoreError, match="cannot connect"):
        PostgresTaskStore("postgresql://nobody:secret@127.0.0.1:1/x", connect_timeout=1)


def test_password_is_not_in_errors() -> None:
    with pytest.raises(StoreError) as info:
        PostgresTaskStore("postgresql://u:hunter2@127.0.0.1:1/x", connect_timeout=1)
    assert "hunter2" not in str(info.value)


def test_odd_dict_values_fall_back_to_defaults(pg_dsn: str, new_schema: Callable[[], str]) -> None:
    s = PostgresTaskStore(pg_dsn, schema=new_schema())
    t = sample_task("odd")
    t["priority"] = "high"
    t["max_instances"] = None
    t["state"] = "nonsense"
    s.upsert_task(t, datetime(2026, 1, 1, tzinfo=UTC))
    assert s.load_tasks() == [t]
    with s.connect() as c:
        row = c.execute("SELECT priority, max_instances, next_run FROM tw_task").fetchone()
    assert row == (50, 1, None)
    s.close()
