"""The v1 task/run dict format: deterministic, round-trips, and names what is wrong."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from tickwork._errors import StoreError
from tickwork._model import (
    RetryPolicy,
    RunRecord,
    RunStatus,
    Schedule,
    ScheduleType,
    Task,
    at,
    cron,
    every,
)
from tickwork._serde import (
    dump_json,
    record_from_dict,
    record_to_dict,
    state_from_dict,
    task_from_dict,
    task_to_dict,
)

CET = timezone(timedelta(hours=1))
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def full_task(**kw: Any) -> Task:
    fields: dict[str, Any] = dict(
        id="report", name="Report", description="weekly", handler="pkg.jobs:report",
        schedule=every(minutes=90, start_at=datetime(2026, 3, 1, 8, 0, tzinfo=CET),
                       jitter=2.5, fixed_rate=True),
        enabled=False, priority=7, dependencies=["prepare", "fetch"],
        retry=RetryPolicy(max_retries=5, delay=timedelta(seconds=2), backoff=3,
                          max_delay=timedelta(minutes=10), jitter=0.25),
        timeout=timedelta(minutes=3), max_instances=2, misfire_grace=30.5,
        on_lease_loss="fail", metadata={"owner": "ops", "ü": "ß"},
        last_run=T0, next_run=T0 + timedelta(minutes=90), run_count=12, error_count=3,
        last_error="ValueError: boom", last_status=RunStatus.FAILED,
    )
    fields.update(kw)
    return Task(**fields)


def test_task_round_trip_keeps_every_field() -> None:
    t = full_task()
    d = task_to_dict(t, handler_ref="pkg.jobs:report", last_scheduled=T0)
    back = task_from_dict(d)
    for name in ("id", "name", "description", "handler", "schedule", "enabled", "priority",
                 "dependencies", "retry", "max_instances", "on_lease_loss", "metadata",
                 "last_run", "next_run", "run_count", "error_count", "last_error",
                 "last_status"):
        assert getattr(back, name) == getattr(t, name), name
    assert back.timeout == timedelta(minutes=3)
    assert back.misfire_grace == timedelta(seconds=30.5)
    assert state_from_dict(d)["last_scheduled"] == T0


@pytest.mark.parametrize("schedule", [
    every(seconds=0.25),
    every(hours=1),
    at(datetime(2026, 12, 1, tzinfo=CET), datetime(2026, 12, 2, 3, 4, 5, 678901, tzinfo=UTC)),
    cron("*/15 9-17 * * MON-FRI", timezone="Europe/Berlin", jitter=timedelta(seconds=10)),
    cron("0 */5 * * * *", seconds=True),
])
def test_save_load_save_is_byte_identical(schedule: Schedule) -> None:
    d1 = task_to_dict(full_task(schedule=schedule), handler_ref=None, last_scheduled=T0)
    text1 = dump_json(d1)
    d2 = task_to_dict(task_from_dict(json.loads(text1)), handler_ref=None,
                      last_scheduled=state_from_dict(json.loads(text1))["last_scheduled"])
    assert dump_json(d2) == text1


def test_format_is_plain_json_with_version_and_state() -> None:
    d = task_to_dict(full_task(), handler_ref="pkg.jobs:report")
    assert d["v"] == 1
    assert json.loads(json.dumps(d)) == d  # only JSON types
    assert d["schedule"]["interval"] == 5400.0
    assert d["schedule"]["start_at"] == "2026-03-01T08:00:00+01:00"  # offset kept
    assert d["timeout"] == 180.0 and d["misfire_grace"] == 30.5
    assert d["retry"] == {"max_retries": 5, "delay": 2.0, "backoff": 3.0,
                          "max_delay": 600.0, "jitter": 0.25}
    assert set(d["state"]) == {"last_run", "next_run", "last_scheduled", "run_count",
                               "error_count", "last_error", "last_status"}
    assert d["state"]["last_status"] == "failed"
    assert d["state"]["last_scheduled"] is None


def test_naive_datetimes_are_stored_as_given() -> None:
    naive = datetime(2026, 5, 1, 9, 30)
    d = task_to_dict(full_task(schedule=at(naive)), handler_ref=None)
    assert d["schedule"]["times"] == ["2026-05-01T09:30:00"]
    assert task_from_dict(d).schedule.times == (naive,)


def test_callables_are_not_stored() -> None:
    t = full_task(handler=lambda: None, before_run=lambda ctx: None)
    d = task_to_dict(t, handler_ref=None)
    assert d["handler"] is None and "before_run" not in d
    assert task_from_dict(d).handler is None


def test_unknown_keys_are_ignored_by_the_reader() -> None:
    d = task_to_dict(full_task(), handler_ref=None)
    d["added_in_v1_5"] = {"x": 1}
    d["schedule"]["new_option"] = True
    assert task_from_dict(d).id == "report"


def base_dict() -> dict[str, Any]:
    return task_to_dict(full_task(id="bad-one"), handler_ref=None)


@pytest.mark.parametrize(("mutate", "field"), [
    (lambda d: d.pop("schedule"), "schedule"),
    (lambda d: d.update(priority="high"), "priority"),
    (lambda d: d.update(enabled="yes"), "enabled"),
    (lambda d: d.update(dependencies="a,b"), "dependencies"),
    (lambda d: d.update(metadata={"a": 1}), "metadata"),
    (lambda d: d.update(v=2), "v"),
    (lambda d: d["schedule"].update(interval="soon"), "interval"),
    (lambda d: d["schedule"].update(interval=-5), "schedule"),
    (lambda d: d["schedule"].update(type="weekly"), "schedule"),
    (lambda d: d["state"].update(next_run="tomorrow"), "next_run"),
    (lambda d: d["state"].update(run_count=1.5), "run_count"),
    (lambda d: d["state"].update(last_status="exploded"), "last_status"),
    (lambda d: d["retry"].update(backoff=0.5), "retry"),
])
def test_bad_task_dict_names_task_and_field(mutate: Any, field: str) -> None:
    d = base_dict()
    mutate(d)
    with pytest.raises(StoreError) as e:
        task_from_dict(d)
    assert "'bad-one'" in str(e.value) and field in str(e.value)


def test_bad_cron_in_store_is_a_store_error() -> None:
    d = base_dict()
    d["schedule"] = {"type": "cron", "cron": "61 * * * *"}
    with pytest.raises(StoreError, match=r"'bad-one'.*schedule"):
        task_from_dict(d)


def test_missing_id() -> None:
    with pytest.raises(StoreError, match="'id'"):
        task_from_dict({"v": 1, "schedule": {"type": "interval", "interval": 1}})


def test_minimal_dict_uses_defaults() -> None:
    t = task_from_dict({"v": 1, "id": "m", "schedule": {"type": "interval", "interval": 60}})
    assert t.schedule == Schedule(type=ScheduleType.INTERVAL, interval=timedelta(minutes=1))
    assert (t.priority, t.enabled, t.run_count, t.last_run) == (50, True, 0, None)


def record(**kw: Any) -> RunRecord:
    fields: dict[str, Any] = dict(
        run_id="r-1", task_id="report", scheduled_for=T0,
        started_at=datetime(2026, 3, 1, 13, 0, 1, 5, tzinfo=CET),
        finished_at=T0 + timedelta(seconds=9), status=RunStatus.TIMED_OUT, attempts=3,
        error="TimeoutError: too slow", result={"rows": [1, 2]}, instance_id="h1",
        manual=True,
    )
    fields.update(kw)
    return RunRecord(**fields)


def test_record_round_trip() -> None:
    r = record()
    d = record_to_dict(r)
    assert d["v"] == 1 and d["status"] == "timed_out"
    assert json.loads(dump_json(d)) == d
    assert record_from_dict(json.loads(dump_json(d))) == r


def test_record_result_that_is_not_json_becomes_its_repr() -> None:
    d = record_to_dict(record(result={1, 2}))
    assert d["result"] == "{1, 2}"
    d = record_to_dict(record(result=object()))
    assert isinstance(d["result"], str) and d["result"].startswith("<object")


def test_bad_record_names_run_and_field() -> None:
    d = record_to_dict(record())
    d["scheduled_for"] = "yesterday"
    with pytest.raises(StoreError, match=r"'r-1'.*scheduled_for"):
        record_from_dict(d)
    d = record_to_dict(record())
    d["status"] = "weird"
    with pytest.raises(StoreError, match=r"'r-1'.*status"):
        record_from_dict(d)
