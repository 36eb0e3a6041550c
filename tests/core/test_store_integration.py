"""API 4.7: the scheduler with a durable store attached (SQLite and JSON), across restarts."""

from __future__ import annotations

import importlib
import json
import sqlite3
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from tickwork import (
    JsonTaskStore,
    RunStatus,
    Scheduler,
    SqliteTaskStore,
    StoreError,
    Task,
    TaskState,
    TaskStore,
    at,
    cron,
    every,
)
from tickwork.testing import FakeClock, run_until, settle

from .conftest import T0, Calls, at_s

StoreFactory = Callable[[], TaskStore]
# The module the import string "tests.core.jobs:record" resolves to (pytest may also import
# this package under another name, so do not use a relative import here).
jobs = importlib.import_module("tests.core.jobs")


@pytest.fixture(params=["sqlite", "json"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
    if request.param == "sqlite":
        return lambda: SqliteTaskStore(tmp_path / "tw.db")
    return lambda: JsonTaskStore(tmp_path / "tw.json")


def new(clock: FakeClock, store: TaskStore) -> Scheduler:
    return Scheduler(clock=clock, timezone="UTC", store=store)


def test_restart_restores_state_and_history(make_store: StoreFactory, clock: FakeClock) -> None:
    s = new(clock, make_store())
    calls = Calls(clock, fail=1)
    s.add_task(Task(id="t", handler=calls, schedule=every(minutes=5), max_instances=1,
                    metadata={"team": "ops"}, retry=None))
    s.set_max_retries(0)
    with s:
        run_until(s, clock, at_s(600))
    before = s.get_task("t")
    assert (before.run_count, before.error_count) == (3, 1)

    s2 = new(clock, make_store())
    s2.register_handler("t", calls)
    after = s2.get_task("t")
    assert after.next_run == before.next_run == at_s(900)
    assert (after.run_count, after.error_count, after.last_run) == (3, 1, at_s(600))
    assert after.metadata == {"team": "ops"}
    assert after.last_status is RunStatus.SUCCEEDED
    hist = s2.get_history("t")
    assert [r.status for r in hist] == [RunStatus.SUCCEEDED, RunStatus.SUCCEEDED,
                                        RunStatus.FAILED]
    assert [r.scheduled_for for r in hist] == [at_s(600), at_s(300), at_s(0)]
    with s2:
        run_until(s2, clock, at_s(900))
    assert s2.get_task("t").run_count == 4


def test_downtime_once_and_cron_run_once_after_restart(make_store: StoreFactory,
                                                       clock: FakeClock) -> None:
    s = new(clock, make_store())
    s.register_handler("o", lambda: None)
    s.register_handler("c", lambda: None)
    s.add_task(Task(id="o", schedule=at(at_s(3600))))
    s.add_task(Task(id="c", schedule=cron("*/10 * * * *")))
    with s:
        settle(s)
    clock.set(at_s(5 * 3600 + 5))  # down for 5 hours
    o_calls, c_calls = Calls(clock), Calls(clock)
    s2 = new(clock, make_store())
    s2.register_handler("o", o_calls)
    s2.register_handler("c", c_calls)
    with s2:
        settle(s2)
    assert o_calls.count == 1 and c_calls.count == 1
    assert c_calls.ctxs[0].scheduled_for == at_s(5 * 3600)  # the latest missed occurrence
    assert s2.get_task("o").state is TaskState.FINISHED
    assert s2.get_task("c").next_run == at_s(5 * 3600 + 600)


def test_downtime_with_grace_records_missed(make_store: StoreFactory, clock: FakeClock) -> None:
    s = new(clock, make_store())
    s.register_handler("o", lambda: None)
    s.register_handler("c", lambda: None)
    grace = timedelta(minutes=1)
    s.add_task(Task(id="o", schedule=at(at_s(3600)), misfire_grace=grace))
    s.add_task(Task(id="c", schedule=cron("0 * * * *"), misfire_grace=grace))
    with s:
        settle(s)
    clock.set(at_s(3 * 3600 + 600))
    o_calls, c_calls = Calls(clock), Calls(clock)
    s2 = new(clock, make_store())
    s2.register_handler("o", o_calls)
    s2.register_handler("c", c_calls)
    with s2:
        settle(s2)
    assert o_calls.count == 0 and c_calls.count == 0
    assert [r.status for r in s2.get_history("o")] == [RunStatus.MISSED]
    assert [r.scheduled_for for r in s2.get_history("c")] == [at_s(3 * 3600), at_s(2 * 3600),
                                                             at_s(3600)]
    assert s2.get_stats()["total_missed"] == 4
    assert s2.get_task("c").next_run == at_s(4 * 3600)
    # records survive another restart
    s3 = new(clock, make_store())
    assert len(s3.get_history("c")) == 3


def test_weekly_interval_keeps_schedule_across_restarts(make_store: StoreFactory,
                                                        clock: FakeClock) -> None:
    # Also the regression test for adopted orphans: a task loaded before register_handler
    # was saved back verbatim forever, so its next_run never advanced in the store.
    week = 7 * 86400
    s = new(clock, make_store())
    s.register_handler("w", lambda: None)
    s.add_task(Task(id="w", schedule=every(days=7, fixed_rate=True)))
    with s:
        run_until(s, clock, at_s(1))
    for k in range(1, 4):
        clock.set(at_s(k * week - 3 * 86400))  # restart mid-week
        s2 = new(clock, make_store())
        calls = Calls(clock)
        s2.register_handler("w", calls)
        assert s2.get_task("w").next_run == at_s(k * week)
        with s2:
            run_until(s2, clock, at_s(k * week + 1))
        assert calls.rel() == [k * week]


def test_orphan_kept_saved_back_and_adopted(make_store: StoreFactory, clock: FakeClock,
                                            tmp_path: Path) -> None:
    s = new(clock, make_store())
    s.register_handler("orph", lambda: None)
    s.add_task(Task(id="orph", schedule=every(minutes=5), metadata={"k": "v"}))
    s.add_task(Task(id="other", handler=lambda: None, schedule=every(hours=1)))
    d_before = next(d for d in make_store().load_tasks() if d["id"] == "orph")

    s2 = new(clock, make_store())  # no handler for "orph"
    snap = s2.get_task("orph")
    assert snap.state is TaskState.ORPHANED
    assert [t.id for t in s2.list_tasks()] == ["orph", "other"]
    with s2:
        run_until(s2, clock, at_s(900))
        s2.save_tasks()
        assert s2.get_task("orph").run_count == 0
    d_after = next(d for d in make_store().load_tasks() if d["id"] == "orph")
    assert json.dumps(d_after, sort_keys=True) == json.dumps(d_before, sort_keys=True)

    calls = Calls(clock)
    s2.register_handler("orph", calls)
    assert s2.get_task("orph").state is TaskState.SCHEDULED
    with s2:
        settle(s2)
    assert calls.count == 1


def test_import_string_handlers(make_store: StoreFactory, clock: FakeClock) -> None:
    jobs.CALLS.clear()
    s = new(clock, make_store())
    s.add_task(Task(id="imp", handler="tests.core.jobs:record", schedule=every(minutes=1)))
    with s:
        run_until(s, clock, at_s(1))
    assert jobs.CALLS == ["imp"]
    s2 = new(clock, make_store())  # resolves by itself, no register_handler
    assert s2.get_task("imp").state is TaskState.SCHEDULED
    with s2:
        run_until(s2, clock, at_s(61))
    assert jobs.CALLS == ["imp", "imp"]
    assert s2.get_history("imp")[0].result == "recorded"


def test_callable_handler_stored_as_import_string(make_store: StoreFactory,
                                                  clock: FakeClock) -> None:
    jobs.CALLS.clear()
    s = new(clock, make_store())
    s.add_task(Task(id="fn", handler=jobs.record, schedule=every(minutes=1)))
    s2 = new(clock, make_store())
    assert s2.get_task("fn").state is TaskState.SCHEDULED
    with s2:
        settle(s2)
    assert jobs.CALLS == ["fn"]


def test_failed_import_is_an_orphan_not_a_deletion(make_store: StoreFactory,
                                                   clock: FakeClock) -> None:
    s = new(clock, make_store())
    s.add_task(Task(id="bad", handler="tests.core.no_such_module:fn",
                    schedule=every(minutes=1)))
    assert s.get_task("bad").state is TaskState.ORPHANED
    assert "no_such_module" in s._engine.orphan_reason["bad"]
    s2 = new(clock, make_store())
    assert s2.get_task("bad").state is TaskState.ORPHANED
    with s2:
        run_until(s2, clock, at_s(120))
    assert s2.get_task("bad").run_count == 0
    assert [d["id"] for d in make_store().load_tasks()] == ["bad"]


def test_corrupt_store_raises_store_error(tmp_path: Path) -> None:
    bad_json = tmp_path / "bad.json"
    bad_json.write_text("{not json")
    with pytest.raises(StoreError, match=r"bad\.json"):
        Scheduler(store=JsonTaskStore(bad_json))
    assert bad_json.read_text() == "{not json"
    bad_db = tmp_path / "bad.db"
    bad_db.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError):
        Scheduler(store=SqliteTaskStore(bad_db))


def test_invalid_stored_task_raises_store_error(tmp_path: Path, clock: FakeClock) -> None:
    path = tmp_path / "tw.db"
    s = new(clock, SqliteTaskStore(path))
    s.register_handler("a", lambda: None)
    s.register_handler("b", lambda: None)
    s.add_task(Task(id="a", schedule=every(minutes=1)))
    s.add_task(Task(id="b", schedule=every(minutes=1), dependencies=["a"]))
    # make "a" depend on "b" behind the scheduler's back: a cycle in the store
    store = SqliteTaskStore(path)
    d = next(x for x in store.load_tasks() if x["id"] == "a")
    d["dependencies"] = ["b"]
    store.upsert_task(d, T0)
    with pytest.raises(StoreError, match="cycle"):
        new(clock, SqliteTaskStore(path))


def test_writes_are_durable_when_calls_return(tmp_path: Path, clock: FakeClock) -> None:
    path = tmp_path / "tw.db"
    s = new(clock, SqliteTaskStore(path))
    s.register_handler("t", lambda: None)
    s.add_task(Task(id="t", schedule=every(minutes=1)))

    def ids() -> list[str]:
        with sqlite3.connect(path) as c:
            return [r[0] for r in c.execute("select id from tasks order by id")]

    assert ids() == ["t"]
    s.disable_task("t")
    assert not next(x for x in SqliteTaskStore(path).load_tasks() if x["id"] == "t")["enabled"]
    s.remove_task("t")
    assert ids() == []
