"""The store conformance suite: every ``TaskStore`` backend must pass these checks.

A backend provides a *factory* bound to one fresh location (a file, a schema): each call
opens the store at that location, so calling it again after ``close()`` is a reopen and
must see everything written before. ``keep_runs_per_task`` is passed through so that
retention can be checked with small numbers. A memory store's factory returns the same
instance every time (its ``close`` keeps the data).

Use it directly::

    check_store(lambda: (lambda **kw: SqliteTaskStore(new_tmp_path(), **kw)))

or, to get one pytest test per check::

    @pytest.mark.parametrize("check", STORE_CHECKS, ids=lambda c: c.__name__)
    def test_sqlite(check, tmp_path):
        check(lambda **kw: SqliteTaskStore(tmp_path / "t.db", **kw))

The suite imports nothing outside the standard library and never sleeps.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Protocol

from .._model import Priority, RetryPolicy, RunRecord, RunStatus, Task, at, every
from .._serde import dump_json, task_to_dict
from ..stores.base import TaskDict, TaskStore, record_runs

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
CET = timezone(timedelta(hours=1))


class StoreFactory(Protocol):
    def __call__(self, *, keep_runs_per_task: int | None = 1000) -> TaskStore:
        """Open the store under test at this factory's (one, fixed) location."""
        ...


def _fail(msg: str) -> AssertionError:
    return AssertionError(f"store conformance: {msg}")


def _eq(got: Any, want: Any, what: str) -> None:
    if got != want:
        raise _fail(f"{what}:\n  got  {got!r:.600}\n  want {want!r:.600}")


def _same_bytes(got: list[TaskDict], want: list[TaskDict], what: str) -> None:
    _eq([dump_json(t) for t in got], [dump_json(t) for t in want], what)


def _reopen(store: TaskStore, factory: StoreFactory, **kw: Any) -> TaskStore:
    store.close()
    return factory(**kw)


# ------------------------------------------------------------------------ sample data


def sample_task(task_id: str, **fields: Any) -> TaskDict:
    """A realistic task dict (``_serde`` format) with every field set."""
    t = Task(
        id=task_id,
        name=fields.pop("name", f"Task {task_id}"),
        description="sample",
        handler=None,
        schedule=fields.pop("schedule", every(minutes=5, jitter=1.5)),
        priority=Priority.HIGH,
        dependencies=fields.pop("dependencies", []),
        retry=RetryPolicy(max_retries=2, delay=timedelta(seconds=1.5)),
        timeout=timedelta(minutes=10),
        metadata=fields.pop("metadata", {"team": "ops"}),
        last_run=NOW - timedelta(minutes=5),
        next_run=NOW + timedelta(minutes=5),
        run_count=fields.pop("run_count", 7),
        error_count=1,
        last_error="ValueError: boom",
        last_status=RunStatus.FAILED,
    )
    return task_to_dict(t, handler_ref=fields.pop("handler_ref", "pkg.mod:fn"),
                        last_scheduled=NOW - timedelta(minutes=5))


def sample_tasks() -> list[TaskDict]:
    once = at(datetime(2026, 12, 1, 0, 0, tzinfo=CET), datetime(2026, 12, 2, 0, 0, tzinfo=UTC))
    cron_like = sample_task("cron-task")
    # Written by hand: stores treat dicts as opaque, so the suite needs no cron engine.
    cron_like["schedule"] = {"type": "cron", "interval": None, "times": [],
                             "cron": "0 0 * * *", "timezone": "Europe/Berlin",
                             "seconds": False, "start_at": None, "jitter": None,
                             "fixed_rate": False}
    orphan = sample_task("orphan", handler_ref=None)
    orphan["x_future_field"] = {"nested": [1, 2.5, None, True, "é"]}  # unknown keys survive
    return [
        sample_task("interval-task"),
        sample_task("once-task", schedule=once, dependencies=["interval-task"]),
        cron_like,
        orphan,
    ]


def run(
    run_id: str,
    task_id: str = "interval-task",
    *,
    minute: int = 0,
    status: RunStatus = RunStatus.SUCCEEDED,
    started: bool = True,
    result: Any = None,
) -> RunRecord:
    """A run record at ``NOW + minute``."""
    at_ = NOW + timedelta(minutes=minute)
    return RunRecord(
        run_id=run_id, task_id=task_id, scheduled_for=at_,
        started_at=at_ + timedelta(seconds=1) if started else None,
        finished_at=at_ + timedelta(seconds=3) if started else None,
        status=status, attempts=1 if started else 0,
        error=None if status is RunStatus.SUCCEEDED else "ValueError: boom",
        result=result, instance_id="host-1", manual=False,
    )


# ----------------------------------------------------------------------------- checks


def check_empty(factory: StoreFactory) -> None:
    s = factory()
    _eq(s.load_tasks(), [], "a new store has no tasks")
    _eq(s.get_history(), [], "a new store has no history")
    s.close()


def check_task_round_trip(factory: StoreFactory) -> None:
    tasks = sample_tasks()
    s = factory()
    for t in tasks:
        s.upsert_task(t, NOW)
    _same_bytes(s.load_tasks(), tasks, "tasks read back byte-identical")
    s = _reopen(s, factory)
    _same_bytes(s.load_tasks(), tasks, "tasks read back byte-identical after reopen")
    s.close()


def check_insertion_order(factory: StoreFactory) -> None:
    s = factory()
    ids = ["m", "a", "z", "b"]
    for i in ids:
        s.upsert_task(sample_task(i), NOW)
    _eq([t["id"] for t in s.load_tasks()], ids, "load_tasks keeps insertion order")
    s = _reopen(s, factory)
    _eq([t["id"] for t in s.load_tasks()], ids, "insertion order after reopen")
    s.close()


def check_upsert_replaces(factory: StoreFactory) -> None:
    s = factory()
    s.upsert_task(sample_task("a"), NOW)
    s.upsert_task(sample_task("b"), NOW)
    new = sample_task("a", name="renamed", run_count=99)
    s.upsert_task(new, NOW)
    s = _reopen(s, factory)
    got = s.load_tasks()
    _eq([t["id"] for t in got], ["a", "b"], "upsert of an existing id keeps one copy, in place")
    _same_bytes(got[:1], [new], "upsert replaces the whole dict")
    s.close()


def check_returns_copies(factory: StoreFactory) -> None:
    s = factory()
    t = sample_task("a")
    s.upsert_task(t, NOW)
    t["name"] = "changed after upsert"
    got = s.load_tasks()
    got[0]["name"] = "changed after load"
    got[0]["state"]["run_count"] = -1
    _eq(s.load_tasks()[0]["name"], "Task a", "the store keeps its own copy of task dicts")
    _eq(s.load_tasks()[0]["state"]["run_count"], 7, "nested values are copied too")
    s.close()


def check_delete(factory: StoreFactory) -> None:
    s = factory()
    for i in ("a", "b", "c"):
        s.upsert_task(sample_task(i), NOW)
    s.delete_task("b", NOW)
    s.delete_task("never-existed", NOW)  # no error
    _eq([t["id"] for t in s.load_tasks()], ["a", "c"], "delete removes only that task")
    s = _reopen(s, factory)
    _eq([t["id"] for t in s.load_tasks()], ["a", "c"], "delete is durable")
    s.close()


def check_delete_keeps_history(factory: StoreFactory) -> None:
    s = factory()
    s.record_run(sample_task("a"), run("r1", "a"), NOW)
    s.delete_task("a", NOW)
    _eq(s.load_tasks(), [], "task deleted")
    _eq([r.run_id for r in s.get_history("a")], ["r1"], "history outlives the task")
    s.close()


def check_replace_tasks(factory: StoreFactory) -> None:
    s = factory()
    for i in ("a", "b", "c"):
        s.upsert_task(sample_task(i), NOW)
    new = [sample_task("d"), sample_task("b", name="new b"), sample_task("e")]
    s.replace_tasks(new, NOW)
    _same_bytes(s.load_tasks(), new, "replace_tasks makes the set exactly the given tasks")
    s = _reopen(s, factory)
    _same_bytes(s.load_tasks(), new, "replace_tasks is durable")
    s.replace_tasks([], NOW)
    _eq(s.load_tasks(), [], "replace_tasks([]) empties the store")
    s.close()


def check_record_run_updates_task(factory: StoreFactory) -> None:
    s = factory()
    s.upsert_task(sample_task("a", run_count=0), NOW)
    s.upsert_task(sample_task("b", run_count=0), NOW)
    after = sample_task("a", run_count=1)
    rec = run("r1", "a")
    s.record_run(after, rec, NOW)
    s = _reopen(s, factory)
    got = s.load_tasks()
    _same_bytes(got, [after, sample_task("b", run_count=0)],
                "record_run writes the task's new state (and nothing else)")
    _eq(s.get_history(), [rec], "record_run appends the record")
    s.record_run(None, run("r2", "a", minute=1), NOW)
    _same_bytes(s.load_tasks()[:1], [after], "record_run(None, ...) leaves tasks alone")
    _eq([r.run_id for r in s.get_history()], ["r2", "r1"], "second record appended")
    s.close()


def check_record_runs_batch(factory: StoreFactory) -> None:
    """The optional ``record_runs`` (group commit) has the effect of ``record_run`` per
    item, in order; stores without it are served by the fallback in ``base.record_runs``."""
    s = factory(keep_runs_per_task=2)
    s.upsert_task(sample_task("a", run_count=0), NOW)
    s.upsert_task(sample_task("b", run_count=0), NOW)
    a1, a2 = sample_task("a", run_count=1), sample_task("a", run_count=2)
    b1 = sample_task("b", run_count=1)
    items: list[tuple[TaskDict | None, RunRecord]] = [
        (a1, run("a-1", "a", minute=1)),
        (b1, run("b-1", "b", minute=2)),
        (a2, run("a-2", "a", minute=3)),  # the later state of the same task wins
        (None, run("a-3", "a", minute=4)),  # retention counts within the batch too
        (None, run("b-1", "b", minute=2, status=RunStatus.FAILED)),  # same run id: update
    ]
    record_runs(s, items, NOW)
    record_runs(s, [], NOW)  # an empty batch is no error
    s = _reopen(s, factory, keep_runs_per_task=2)
    _same_bytes(s.load_tasks(), [a2, b1], "record_runs writes each task's latest state")
    _eq([r.run_id for r in s.get_history()], ["a-3", "a-2", "b-1"],
        "record_runs appends in order, with retention")
    _eq(s.get_history("b")[0].status, RunStatus.FAILED, "record_runs updates a same run_id")
    s.close()


def check_record_update_same_run_id(factory: StoreFactory) -> None:
    s = factory()
    running = run("r1", minute=0, status=RunStatus.RUNNING)
    s.record_run(None, running, NOW)
    s.record_run(None, run("r2", minute=1), NOW)
    done = run("r1", minute=0, status=RunStatus.FAILED, result={"rows": 3})
    s.record_run(None, done, NOW)
    s = _reopen(s, factory)
    hist = s.get_history()
    _eq([r.run_id for r in hist], ["r2", "r1"], "an update does not add a second record")
    _eq(hist[1], done, "the update replaces every field")
    s.close()


def check_record_fields_round_trip(factory: StoreFactory) -> None:
    s = factory()
    recs = [
        run("ok", result={"n": 1, "list": [1, 2.5, "x"], "u": "ü"}),
        run("failed", minute=1, status=RunStatus.FAILED, result=None),
        run("skipped", minute=2, status=RunStatus.SKIPPED, started=False),
        run("timed-out", minute=3, status=RunStatus.TIMED_OUT, result="partial"),
        RunRecord(run_id="manual", task_id="interval-task",
                  scheduled_for=datetime(2026, 3, 1, 14, 0, tzinfo=CET),
                  started_at=datetime(2026, 3, 1, 14, 0, 0, 123456, tzinfo=CET),
                  finished_at=None, status=RunStatus.RUNNING, attempts=2, error=None,
                  result=[1, None, True], instance_id=None, manual=True),
    ]
    for r in recs:
        s.record_run(None, r, NOW)
    s = _reopen(s, factory)
    got = {r.run_id: r for r in s.get_history(limit=10)}
    for r in recs:
        _eq(got.get(r.run_id), r, f"record {r.run_id!r} reads back equal")
        g = got[r.run_id]
        _eq(g.scheduled_for.utcoffset(), r.scheduled_for.utcoffset(), "offsets are kept")
    s.close()


def check_history_order_filter_limit(factory: StoreFactory) -> None:
    s = factory()
    # recorded out of time order; "skip" has no started_at and sorts by scheduled_for
    for rid, task, minute in [("r3", "a", 3), ("r1", "a", 1), ("b2", "b", 2),
                              ("r5", "a", 5), ("b4", "b", 4)]:
        s.record_run(None, run(rid, task, minute=minute), NOW)
    s.record_run(None, run("skip", "a", minute=4, status=RunStatus.SKIPPED, started=False), NOW)
    s = _reopen(s, factory)
    _eq([r.run_id for r in s.get_history()], ["r5", "b4", "skip", "r3", "b2", "r1"],
        "history is newest first (started_at, else scheduled_for)")
    _eq([r.run_id for r in s.get_history("a")], ["r5", "skip", "r3", "r1"], "filter by task")
    _eq([r.run_id for r in s.get_history("a", limit=2)], ["r5", "skip"], "limit, per task")
    _eq([r.run_id for r in s.get_history(limit=3)], ["r5", "b4", "skip"], "limit, all tasks")
    _eq(s.get_history("nobody"), [], "unknown task has no history")
    s.close()


def check_history_ties_newest_recorded_first(factory: StoreFactory) -> None:
    s = factory()
    for rid in ("t1", "t2", "t3"):
        s.record_run(None, run(rid, minute=0), NOW)
    _eq([r.run_id for r in s.get_history()], ["t3", "t2", "t1"],
        "equal times: the later recorded comes first")
    s.close()


def check_retention(factory: StoreFactory) -> None:
    s = factory(keep_runs_per_task=5)
    for i in range(12):
        s.record_run(None, run(f"a{i:02d}", "a", minute=i), NOW)
        if i < 3:
            s.record_run(None, run(f"b{i}", "b", minute=i), NOW)
    want_a = [f"a{i:02d}" for i in range(11, 6, -1)]
    _eq([r.run_id for r in s.get_history("a", limit=100)], want_a,
        "keep_runs_per_task=5 keeps the newest 5 of a task")
    _eq([r.run_id for r in s.get_history("b", limit=100)], ["b2", "b1", "b0"],
        "other tasks keep theirs")
    s.record_run(None, run("a11", "a", minute=11, status=RunStatus.FAILED), NOW)
    _eq(len(s.get_history("a", limit=100)), 5, "updating a record does not prune another")
    s = _reopen(s, factory, keep_runs_per_task=5)
    _eq(len(s.get_history(limit=100)), 8, "retention holds after reopen")
    s.close()


def check_unicode(factory: StoreFactory) -> None:
    # The scheduler restricts ids to ASCII, but stores must not care what an id holds.
    ids = ["tâche-é", "任务-1", "emoji-🚀", "quote\"back\\slash", "sp ace"]
    tasks = [sample_task(i, name=f"名前 {i}", metadata={"ключ": "значение ✓"}) for i in ids]
    s = factory()
    for t in tasks:
        s.upsert_task(t, NOW)
    for i in ids:
        s.record_run(None, run(f"run-{i}", i), NOW)
    s = _reopen(s, factory)
    _same_bytes(s.load_tasks(), tasks, "unicode ids, names and metadata round trip")
    _eq([r.run_id for r in s.get_history("任务-1")], ["run-任务-1"], "unicode task filter")
    s.delete_task("emoji-🚀", NOW)
    _eq(len(s.load_tasks()), len(ids) - 1, "delete by unicode id")
    s.close()


def check_large_metadata(factory: StoreFactory) -> None:
    big = {f"key-{i}": "v" * 1000 + str(i) for i in range(1000)}  # ~1 MB
    t = sample_task("big", metadata=big)
    s = factory()
    s.upsert_task(t, NOW)
    s.upsert_task(sample_task("small"), NOW)
    s.record_run(t, run("big-run", "big", result={"blob": "x" * 100_000}), NOW)
    s = _reopen(s, factory)
    _same_bytes(s.load_tasks()[:1], [t], "1 MB of metadata round trips")
    _eq(len(s.get_history("big")[0].result["blob"]), 100_000, "a large result round trips")
    s.close()


def check_close_idempotent(factory: StoreFactory) -> None:
    s = factory()
    s.upsert_task(sample_task("a"), NOW)
    s.close()
    s.close()
    s = factory()
    _eq([t["id"] for t in s.load_tasks()], ["a"], "data survives close + reopen")
    s.close()


STORE_CHECKS: tuple[Callable[[StoreFactory], None], ...] = (
    check_empty,
    check_task_round_trip,
    check_insertion_order,
    check_upsert_replaces,
    check_returns_copies,
    check_delete,
    check_delete_keeps_history,
    check_replace_tasks,
    check_record_run_updates_task,
    check_record_runs_batch,
    check_record_update_same_run_id,
    check_record_fields_round_trip,
    check_history_order_filter_limit,
    check_history_ties_newest_recorded_first,
    check_retention,
    check_unicode,
    check_large_metadata,
    check_close_idempotent,
)


def check_store(make_factory: Callable[[], StoreFactory]) -> None:
    """Run every check, each on a fresh location from ``make_factory()``.

    Raises ``AssertionError`` naming the first check that failed and what differed.
    """
    for check in STORE_CHECKS:
        try:
            check(make_factory())
        except AssertionError as e:
            raise AssertionError(f"{check.__name__}: {e}") from e
