"""API.md section 3: every method, every error, before and after start()."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from typing import Any

import pytest

from tickwork import (
    CronSyntaxError,
    DependencyError,
    DuplicateTaskError,
    EventType,
    InvalidScheduleError,
    Priority,
    RunStatus,
    Schedule,
    Scheduler,
    SchedulerError,
    Task,
    TaskContext,
    TaskNotFoundError,
    TaskState,
    at,
    cron,
    every,
)
from tickwork.testing import FakeClock, run_until, settle

from .conftest import T0, Calls, Recorder, at_s


def noop() -> None:
    return None


def mk(tid: str, **kw: Any) -> Task:
    kw.setdefault("handler", noop)
    kw.setdefault("schedule", every(minutes=5))
    return Task(id=tid, **kw)


@pytest.fixture(params=["before_start", "after_start"])
def s(request: pytest.FixtureRequest, clock: FakeClock) -> Any:
    sch = Scheduler(clock=clock, timezone="UTC")
    if request.param == "after_start":
        sch.start()
    yield sch
    sch.stop(timeout=5)


def test_add_get_list_remove(s: Scheduler) -> None:
    snap = s.add_task(mk("b", name="B", priority=Priority.HIGH))
    s.add_task(mk("a"))
    s.add_task(mk("c"))
    settle(s)  # started: interval tasks run at once; read them after those runs
    assert snap.id == "b" and snap.name == "B" and snap.priority == 100
    assert [t.id for t in s.list_tasks()] == ["a", "b", "c"]
    assert s.get_task("a").next_run is not None
    assert s.get_task("a").next_run.tzinfo is not None  # type: ignore[union-attr]
    s.remove_task("b")
    assert [t.id for t in s.list_tasks()] == ["a", "c"]
    with pytest.raises(TaskNotFoundError):
        s.get_task("b")
    with pytest.raises(TaskNotFoundError):
        s.remove_task("b")
    assert s.get_stats()["total_tasks"] == 2


def test_task_not_found_is_keyerror(s: Scheduler) -> None:
    for call in (s.get_task, s.remove_task, s.enable_task, s.disable_task, s.run_now):
        with pytest.raises(KeyError):
            call("nope")
    with pytest.raises(TaskNotFoundError):
        s.update_task("nope", priority=1)
    assert issubclass(TaskNotFoundError, SchedulerError)


def test_snapshots_are_copies(s: Scheduler) -> None:
    original = mk("t", metadata={"k": "v"}, dependencies=[])
    s.add_task(original)
    assert original.run_count == 0 and original.next_run is None  # not mutated
    original.metadata["k"] = "changed"
    original.priority = 1
    snap = s.get_task("t")
    assert snap.metadata == {"k": "v"} and snap.priority == 50
    snap.metadata["x"] = "y"
    snap.dependencies.append("zzz")
    snap.priority = 7
    snap.enabled = False
    again = s.get_task("t")
    assert again.metadata == {"k": "v"} and again.dependencies == []
    assert again.priority == 50 and again.enabled
    lst = s.list_tasks()
    lst[0].metadata["q"] = "r"
    assert s.list_tasks()[0].metadata == {"k": "v"}


@pytest.mark.parametrize(
    ("task", "needle"),
    [
        (Task(id="", handler=noop, schedule=every(minutes=1)), "task.id"),
        (Task(id="bad id!", handler=noop, schedule=every(minutes=1)), "task.id"),
        (Task(id="x" * 201, handler=noop, schedule=every(minutes=1)), "task.id"),
        (Task(id="t", schedule=every(minutes=1)), "handler"),
        (Task(id="t", handler=42, schedule=every(minutes=1)), "task.handler"),  # type: ignore[arg-type]
        (Task(id="t", handler=noop, schedule=every(minutes=1), priority="hi"),  # type: ignore[arg-type]
         "task.priority"),
        (Task(id="t", handler=noop, schedule=every(minutes=1), max_instances=0),
         "task.max_instances"),
        (Task(id="t", handler=noop, schedule=every(minutes=1), timeout=-1), "task.timeout"),
        (Task(id="t", handler=noop, schedule=every(minutes=1), metadata={"a": 1}),  # type: ignore[dict-item]
         "task.metadata"),
        (Task(id="t", handler=noop, schedule=every(minutes=1), enabled="yes"),  # type: ignore[arg-type]
         "task.enabled"),
        (Task(id="t", handler=noop, schedule="every 5m"), "task.schedule"),  # type: ignore[arg-type]
    ],
)
def test_add_task_value_errors_name_the_field(s: Scheduler, task: Task, needle: str) -> None:
    with pytest.raises(ValueError, match=needle.replace(".", r"\.")):
        s.add_task(task)
    assert s.list_tasks() == []


def test_duplicate(s: Scheduler) -> None:
    s.add_task(mk("t"))
    with pytest.raises(DuplicateTaskError, match="'t'"):
        s.add_task(mk("t"))


def test_dependency_errors(s: Scheduler) -> None:
    with pytest.raises(DependencyError, match="unknown dependency 'ghost'"):
        s.add_task(mk("a", dependencies=["ghost"]))
    with pytest.raises(DependencyError, match="itself"):
        s.add_task(mk("a", dependencies=["a"]))
    s.add_task(mk("a"))
    s.add_task(mk("b", dependencies=["a"]))
    s.add_task(mk("c", dependencies=["b"]))
    with pytest.raises(DependencyError, match="cycle"):
        s.update_task("a", dependencies=["c"])
    assert s.get_task("a").dependencies == []
    with pytest.raises(DependencyError, match="'b'"):
        s.remove_task("a")
    s.remove_task("c")
    s.remove_task("b")
    s.remove_task("a")


@pytest.mark.parametrize(
    ("build", "needle"),
    [
        (lambda: every(seconds=0), "interval"),
        (lambda: every(seconds=-5), "interval"),
        (lambda: Schedule(type="interval", interval=timedelta(0)), "interval"),  # type: ignore[arg-type]
        (lambda: at(), "times"),
        (lambda: Schedule(type="once", times=()), "times"),  # type: ignore[arg-type]
        (lambda: cron("61 * * * *"), "minute"),
        (lambda: cron("* * *"), "field"),
        (lambda: cron("0 0 * * *", timezone="Mars/Olympus"), "Mars/Olympus"),
    ],
)
def test_invalid_schedules(build: Any, needle: str) -> None:
    with pytest.raises(InvalidScheduleError, match=needle):
        build()
    assert issubclass(CronSyntaxError, InvalidScheduleError)
    assert issubclass(InvalidScheduleError, ValueError)


def test_bad_cron_is_cron_syntax_error() -> None:
    with pytest.raises(CronSyntaxError):
        cron("0 0 * * 8")


def test_enable_disable(s: Scheduler, clock: FakeClock) -> None:
    s.add_task(mk("t"))
    snap = s.disable_task("t")
    assert snap.enabled is False and snap.next_run is None and snap.state is TaskState.DISABLED
    assert s.get_stats()["enabled_tasks"] == 0
    s.disable_task("t")  # idempotent
    clock.advance(42)
    snap = s.enable_task("t")
    assert snap.enabled and snap.next_run == at_s(42)  # planned from now
    assert s.get_stats()["enabled_tasks"] == 1


def test_update_task(s: Scheduler) -> None:
    s.add_task(mk("a"))
    s.add_task(mk("t"))
    snap = s.update_task("t", priority=7, name="N", metadata={"x": "1"},
                         schedule=every(hours=2, start_at=at_s(600)), dependencies=["a"],
                         timeout=5.0)
    assert snap.priority == 7 and snap.name == "N" and snap.metadata == {"x": "1"}
    assert snap.next_run == at_s(600) and snap.dependencies == ["a"]
    assert snap.timeout == timedelta(seconds=5)
    snap = s.update_task("t", enabled=False)
    assert not snap.enabled and snap.next_run is None
    with pytest.raises(ValueError, match="run_count"):
        s.update_task("t", run_count=3)
    with pytest.raises(ValueError, match="id"):
        s.update_task("t", id="u")
    with pytest.raises(ValueError, match=r"task\.priority"):
        s.update_task("t", priority="x")
    assert s.get_task("t").priority == 7


def test_set_max_retries_and_delay_validate(s: Scheduler) -> None:
    with pytest.raises(ValueError, match="max_retries"):
        s.set_max_retries(-1)
    with pytest.raises(ValueError, match="retry_delay"):
        s.set_retry_delay("soon")  # type: ignore[arg-type]
    s.set_max_retries(5)
    s.set_retry_delay(timedelta(seconds=10))
    assert s._engine.planner.default_retry.max_retries == 5
    assert s._engine.planner.default_retry.delay == timedelta(seconds=10)


def test_register_handler_and_orphan(s: Scheduler, clock: FakeClock) -> None:
    with pytest.raises(ValueError, match="register_handler"):
        s.register_handler("", noop)
    with pytest.raises(ValueError, match="not callable"):
        s.register_handler("x", 3)  # type: ignore[arg-type]
    calls = Calls(clock)
    s.register_handler("t", calls)
    s.add_task(Task(id="t", schedule=every(minutes=1)))  # handler found by id
    s.start()
    run_until(s, clock, at_s(1))
    assert calls.count == 1


def test_subscribe_and_unsubscribe(s: Scheduler) -> None:
    rec = Recorder()
    unsub = s.subscribe(rec, events=[EventType.TASK_ADDED, "task_removed"])
    s.add_task(mk("t"))
    s.disable_task("t")
    s.remove_task("t")
    assert rec.types() == ["task_added", "task_removed"]
    unsub()
    s.add_task(mk("u"))
    assert rec.types() == ["task_added", "task_removed"]
    with pytest.raises(ValueError, match="events"):
        s.subscribe(rec, events=["nope"])
    with pytest.raises(ValueError, match="callable"):
        s.subscribe(42)  # type: ignore[arg-type]


def test_task_decorator(s: Scheduler, clock: FakeClock) -> None:
    @s.task(every(minutes=1), id="deco", priority=9)
    def job() -> str:
        return "hi"

    assert job() == "hi"  # returned unchanged
    assert s.get_task("deco").priority == 9

    @s.task(every(minutes=1))
    def other() -> None: ...

    assert [t.id for t in s.list_tasks()] == sorted(
        ["deco", f"{other.__module__}.test_task_decorator.locals.other"])


def test_context_manager_and_idempotent_start_stop(clock: FakeClock) -> None:
    rec = Recorder()
    with Scheduler(clock=clock, timezone="UTC") as s:
        s.subscribe(rec)
        assert s.running
        s.start()
        s.start()
    assert not s.running
    s.stop()
    s.stop()
    assert rec.types().count("scheduler_stopped") == 1
    # restartable
    s.start()
    assert s.running
    s.stop()


def test_run_now(s: Scheduler, clock: FakeClock) -> None:
    calls = Calls(clock)
    s.add_task(Task(id="t", handler=calls, schedule=every(hours=1, start_at=at_s(3600))))
    s.run_now("t")
    s.start()
    settle(s)
    assert calls.count == 1
    assert s.get_task("t").next_run == at_s(3600)
    rec = s.get_history("t")[0]
    assert rec.manual and rec.status is RunStatus.SUCCEEDED


def test_get_stats_keys(s: Scheduler) -> None:
    st = s.get_stats()
    for k in ("total_tasks", "enabled_tasks", "running_tasks", "total_runs", "total_errors",
              "total_retries", "total_skipped", "total_missed"):
        assert st[k] == 0


def test_get_history_validates_limit(s: Scheduler) -> None:
    with pytest.raises(ValueError, match="limit"):
        s.get_history(limit=-1)


def test_save_tasks_without_store(s: Scheduler) -> None:
    with pytest.raises(SchedulerError, match="no store"):
        s.save_tasks()
    assert s.load_tasks() == 0


# ----- 4.1 handlers ------------------------------------------------------------------

def test_handler_shapes_and_context(clock: FakeClock) -> None:
    s = Scheduler(clock=clock, timezone="UTC")
    seen: dict[str, Any] = {}

    def h0() -> int:
        seen["h0"] = True
        return 1

    def h1(ctx: TaskContext) -> dict[str, int]:
        seen["h1"] = ctx
        return {"a": 1}

    async def a0() -> list[int]:
        seen["a0"] = True
        return [1, 2]

    async def a1(ctx: TaskContext) -> object:
        seen["a1"] = ctx
        return object()

    for f in (h0, h1, a0, a1):
        s.add_task(Task(id=f.__name__, handler=f, schedule=at(at_s(30))))
    with s:
        run_until(s, clock, at_s(31))
    assert set(seen) == {"h0", "h1", "a0", "a1"}
    ctx = seen["h1"]
    assert ctx.task_id == "h1" and ctx.attempt == 1
    assert ctx.scheduled_for == at_s(30) and ctx.started_at == at_s(30)
    assert ctx.deadline is None and ctx.cancelled is False
    assert ctx.run_key == "h1@2026-01-01T00:00:30+0000"
    assert ctx.wait(0) is False
    ctx.logger.info("works")
    results = {r.task_id: r.result for r in s.get_history()}
    assert results["h0"] == 1 and results["h1"] == {"a": 1} and results["a0"] == [1, 2]
    assert results["a1"].startswith("<object object")
    assert all(r.status is RunStatus.SUCCEEDED for r in s.get_history())


def test_result_repr_cut_to_1k(sched: Scheduler, clock: FakeClock) -> None:
    class Big:
        def __repr__(self) -> str:
            return "x" * 5000

    sched.add_task(Task(id="b", handler=lambda: Big(), schedule=at(at_s(0))))
    sched.add_task(Task(id="j", handler=lambda: {"k": [1, "two", None]}, schedule=at(at_s(0))))
    with sched:
        settle(sched)
    res = {r.task_id: r.result for r in sched.get_history()}
    assert res["b"] == "x" * 1024
    assert res["j"] == {"k": [1, "two", None]}
    json.dumps(res["j"])


def test_deadline_in_context(sched: Scheduler, clock: FakeClock) -> None:
    calls = Calls(clock)
    sched.add_task(Task(id="d", handler=calls, schedule=at(at_s(0)), timeout=30))
    with sched:
        settle(sched)
    assert calls.ctxs[0].deadline == T0 + timedelta(seconds=30)


def test_async_scheduler_methods_exist() -> None:
    from tickwork import AsyncScheduler

    names = [n for n in dir(Scheduler) if not n.startswith("_") and callable(getattr(Scheduler, n))]
    for n in names:
        assert hasattr(AsyncScheduler, n), n
    assert asyncio.iscoroutinefunction(AsyncScheduler.add_task)
