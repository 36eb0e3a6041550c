"""JsonTaskStore specifics: atomic writes, the inter-process lock, corrupt files, Go files."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tickwork._errors import StoreError
from tickwork._model import RunStatus, ScheduleType
from tickwork._serde import task_from_dict
from tickwork.stores import JsonTaskStore
from tickwork.testing.store_suite import NOW, run, sample_task

FIXTURE = Path(__file__).parent / "fixtures" / "seed_tasks.json"
SRC = str(Path(__file__).resolve().parents[2] / "src")


def test_missing_file_is_an_empty_store(tmp_path: Path) -> None:
    s = JsonTaskStore(tmp_path / "none.json")
    assert s.load_tasks() == [] and s.get_history() == []
    assert not (tmp_path / "none.json").exists()  # reading creates nothing


def test_file_layout_one_entry_per_line(tmp_path: Path) -> None:
    p = tmp_path / "t.json"
    s = JsonTaskStore(p)
    s.upsert_task(sample_task("a"), NOW)
    s.record_run(sample_task("b"), run("r1", "b"), NOW)
    lines = p.read_text().splitlines()
    assert lines[0] == '{"v":1,"tasks":['
    assert [json.loads(x.rstrip(","))["id"] for x in lines[1:3]] == ["a", "b"]
    assert lines[3] == '],"runs":['
    assert json.loads(lines[4])["run_id"] == "r1"
    assert lines[5] == "]}"
    assert sorted(os.listdir(tmp_path)) == ["t.json", "t.json.lock"]  # no temp files left


def test_unknown_top_level_keys_are_kept(tmp_path: Path) -> None:
    p = tmp_path / "t.json"
    p.write_text(json.dumps({"v": 1, "tasks": [], "runs": [], "comment": {"by": "ops"}}))
    s = JsonTaskStore(p)
    s.upsert_task(sample_task("a"), NOW)
    assert json.loads(p.read_text())["comment"] == {"by": "ops"}


def test_keeps_file_mode(tmp_path: Path) -> None:
    p = tmp_path / "t.json"
    JsonTaskStore(p).upsert_task(sample_task("a"), NOW)
    os.chmod(p, 0o640)
    JsonTaskStore(p).upsert_task(sample_task("b"), NOW)
    assert p.stat().st_mode & 0o777 == 0o640


# ------------------------------------------------------------------ corrupt files


@pytest.mark.parametrize("content", [
    b'{"v":1,"tasks":[{"id":"a"}',            # truncated
    b"",                                       # empty
    b"\xff\xfe garbage",                       # not UTF-8
    b'{"v":2,"tasks":[],"runs":[]}',           # newer format
    b'{"v":1,"tasks":[{"name":"no id"}],"runs":[]}',
    b'{"v":1,"tasks":[{"id":"a"},{"id":"a"}],"runs":[]}',
    b'{"v":1,"tasks":[],"runs":[{"v":1,"run_id":"r"}]}',
    b'"just a string"',
])
def test_corrupt_file_raises_and_is_never_overwritten(tmp_path: Path, content: bytes) -> None:
    p = tmp_path / "t.json"
    p.write_bytes(content)
    s = JsonTaskStore(p)
    calls: list[Any] = [
        lambda: s.load_tasks(),
        lambda: s.get_history(),
        lambda: s.upsert_task(sample_task("x"), NOW),
        lambda: s.delete_task("a", NOW),
        lambda: s.replace_tasks([], NOW),
        lambda: s.record_run(sample_task("x"), run("r9", "x"), NOW),
    ]
    for call in calls:
        with pytest.raises(StoreError) as e:
            call()
        assert str(p) in str(e.value)
    assert p.read_bytes() == content
    assert sorted(os.listdir(tmp_path)) == ["t.json", "t.json.lock"]


def test_store_recovers_once_the_file_is_fixed(tmp_path: Path) -> None:
    p = tmp_path / "t.json"
    p.write_text("{oops")
    s = JsonTaskStore(p)
    with pytest.raises(StoreError, match="not valid JSON"):
        s.load_tasks()
    p.write_text('{"v":1,"tasks":[{"id":"a"}],"runs":[]}')
    assert s.load_tasks() == [{"id": "a"}]


# ------------------------------------------------------------- failed writes


@pytest.fixture
def populated(tmp_path: Path) -> tuple[JsonTaskStore, Path, bytes]:
    p = tmp_path / "t.json"
    s = JsonTaskStore(p)
    s.upsert_task(sample_task("a"), NOW)
    return s, p, p.read_bytes()


@pytest.mark.parametrize(("target", "err"), [
    ("tempfile.mkstemp", errno.EROFS),     # read-only folder / file system
    ("os.fsync", errno.ENOSPC),            # full disk surfaces at flush/fsync
    ("os.replace", errno.EACCES),
])
def test_failed_write_raises_and_keeps_old_file(
    populated: tuple[JsonTaskStore, Path, bytes], monkeypatch: pytest.MonkeyPatch,
    target: str, err: int,
) -> None:
    s, p, before = populated
    module, name = target.split(".")
    import tickwork.stores.json as js

    def boom(*a: Any, **k: Any) -> Any:
        raise OSError(err, os.strerror(err))

    with monkeypatch.context() as m:
        m.setattr(getattr(js, module), name, boom)
        with pytest.raises(StoreError, match="write failed, file left as it was"):
            s.upsert_task(sample_task("b"), NOW)
    assert p.read_bytes() == before
    assert sorted(os.listdir(p.parent)) == ["t.json", "t.json.lock"]
    # the failed change is not visible either: memory and disk agree
    assert [t["id"] for t in s.load_tasks()] == ["a"]
    s.upsert_task(sample_task("c"), NOW)
    assert [t["id"] for t in JsonTaskStore(p).load_tasks()] == ["a", "c"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_read_only_folder(tmp_path: Path) -> None:
    d = tmp_path / "ro"
    d.mkdir()
    p = d / "t.json"
    s = JsonTaskStore(p)
    s.upsert_task(sample_task("a"), NOW)
    before = p.read_bytes()
    os.chmod(d, 0o555)
    try:
        with pytest.raises(StoreError):
            s.upsert_task(sample_task("b"), NOW)
        assert [t["id"] for t in JsonTaskStore(p).load_tasks()] == ["a"]  # reads still work
    finally:
        os.chmod(d, 0o755)
    assert p.read_bytes() == before


def test_missing_folder_is_a_store_error(tmp_path: Path) -> None:
    s = JsonTaskStore(tmp_path / "nope" / "t.json")
    assert s.load_tasks() == []
    with pytest.raises(StoreError, match="lock file"):
        s.upsert_task(sample_task("a"), NOW)


# --------------------------------------------------------- several writers


def test_two_instances_see_each_others_writes(tmp_path: Path) -> None:
    # Same-size rewrites in a tight loop: inode numbers get reused within one mtime tick,
    # so a stat-only cache check would miss changes; the lock-file token must not.
    p = tmp_path / "t.json"
    a, b = JsonTaskStore(p), JsonTaskStore(p)
    for i in range(100):
        writer, other = (a, b) if i % 2 else (b, a)
        writer.upsert_task(sample_task("x", run_count=10 + i % 10), NOW)
        writer.upsert_task(sample_task(f"t{i:03d}"), NOW)
        assert len(other.load_tasks()) == i + 2
    assert len(a.load_tasks()) == 101


def test_lock_file_token_detects_changes_stat_cannot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Simulate the worst case: a rewrite with the same inode, size and mtime.
    monkeypatch.setattr(JsonTaskStore, "_stamp", lambda self: (1, 2, 3, 4))
    p = tmp_path / "t.json"
    a, b = JsonTaskStore(p), JsonTaskStore(p)
    a.upsert_task(sample_task("x", run_count=1), NOW)
    assert b.load_tasks()[0]["state"]["run_count"] == 1
    a.upsert_task(sample_task("x", run_count=2), NOW)
    assert b.load_tasks()[0]["state"]["run_count"] == 2
    b.upsert_task(sample_task("y"), NOW)
    assert [t["id"] for t in a.load_tasks()] == ["x", "y"]


WRITER = textwrap.dedent("""
    import sys
    from datetime import datetime, timezone
    sys.path.insert(0, sys.argv[3])
    from tickwork.stores import JsonTaskStore
    path, prefix = sys.argv[1], sys.argv[2]
    s = JsonTaskStore(path)
    now = datetime.now(timezone.utc)
    sys.stdin.readline()  # start line: both writers begin together
    for i in range(60):
        s.upsert_task({"v": 1, "id": f"{prefix}-{i}"}, now)
""")


def test_lock_serialises_two_processes(tmp_path: Path) -> None:
    """Two processes doing read-modify-write at once: no update may be lost."""
    # Without the flock about half the updates get lost (checked when this was written).
    p = tmp_path / "t.json"
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(p), name, SRC],
                              stdin=subprocess.PIPE) for name in ("left", "right")]
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write(b"go\n")
        proc.stdin.close()
    for proc in procs:
        assert proc.wait(timeout=60) == 0
    ids = {t["id"] for t in JsonTaskStore(p).load_tasks()}
    assert ids == {f"{n}-{i}" for n in ("left", "right") for i in range(60)}


def test_writer_waits_for_the_lock(tmp_path: Path) -> None:
    import fcntl

    p = tmp_path / "t.json"
    JsonTaskStore(p).upsert_task({"v": 1, "id": "a"}, NOW)
    holder = os.open(str(p) + ".lock", os.O_RDWR)
    fcntl.flock(holder, fcntl.LOCK_EX)
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(p), "late", SRC],
                            stdin=subprocess.PIPE)
    assert proc.stdin is not None
    proc.stdin.write(b"go\n")
    proc.stdin.close()
    try:
        # A negative check needs some wait: the child must still be blocked after it.
        with pytest.raises(subprocess.TimeoutExpired):
            proc.wait(timeout=0.5)
        # read the file directly: a store in this process would wait for our lock too
        assert [t["id"] for t in json.loads(p.read_text())["tasks"]] == ["a"]
    finally:
        fcntl.flock(holder, fcntl.LOCK_UN)
        os.close(holder)
    assert proc.wait(timeout=60) == 0
    assert len(JsonTaskStore(p).load_tasks()) == 61


# ------------------------------------------------------------------ Go format

SEED_EXPECTED = {
    # id: (name, type, interval seconds, priority, deps, run_count, error_count, enabled)
    "wm-cleanup": ("Working Memory Cleanup", "interval", 300.0, 50, [], 288, 2, True),
    "confidence-decay": ("Confidence Decay Calculation", "interval", 3600.0, 50, [], 24, 0, True),
    "daily-backup": ("Daily Backup", "once", None, 50, [], 0, 0, True),
    "daily-task": ("Daily Midnight Job", "cron", None, 50, [], 5, 1, True),
    "critical-task": ("Critical Operation", "interval", 60.0, 100, [], 1200, 0, True),
    "background-task": ("Background Work", "interval", 60.0, 0, [], 0, 0, False),
    "prepare-data": ("Data Preparation", "interval", 600.0, 50, [], 30, 0, True),
    "process-data": ("Data Processing", "interval", 600.0, 50, ["prepare-data"], 29, 0, True),
}


def test_reads_the_seed_go_file(tmp_path: Path) -> None:
    p = tmp_path / "tasks.json"
    shutil.copy(FIXTURE, p)
    tasks = [task_from_dict(d) for d in JsonTaskStore(p).load_tasks()]
    assert [t.id for t in tasks] == list(SEED_EXPECTED)
    for t in tasks:
        name, kind, secs, prio, deps, runs, errs, enabled = SEED_EXPECTED[t.id]
        assert (t.name, t.schedule.type.value, t.priority, t.dependencies) == (
            name, kind, prio, deps), t.id
        assert (t.run_count, t.error_count, t.enabled, t.handler) == (
            runs, errs, enabled, None), t.id
        if secs is not None:
            assert t.schedule.interval == timedelta(seconds=secs), t.id
    by_id = {t.id: t for t in tasks}
    assert by_id["daily-task"].schedule.cron == "0 0 * * *"
    assert by_id["daily-task"].last_error == "backup volume not mounted"
    assert by_id["wm-cleanup"].last_error is None  # Go's "" means no error
    assert by_id["daily-backup"].schedule.times == (
        datetime(2025, 11, 21, 2, 0, tzinfo=UTC),)
    assert by_id["daily-backup"].last_run is None  # Go zero time
    assert by_id["wm-cleanup"].last_run == datetime(2025, 11, 20, 9, 15, 0, 123456, tzinfo=UTC)
    assert by_id["background-task"].next_run is None


def test_go_file_is_rewritten_as_v1_with_a_backup(tmp_path: Path) -> None:
    p = tmp_path / "tasks.json"
    shutil.copy(FIXTURE, p)
    s = JsonTaskStore(p)
    before = s.load_tasks()
    s.record_run(None, run("r1", "wm-cleanup", status=RunStatus.SUCCEEDED), NOW)
    assert (tmp_path / "tasks.json.seed-backup").read_bytes() == FIXTURE.read_bytes()
    data = json.loads(p.read_text())
    assert data["v"] == 1 and data["tasks"] == before
    assert JsonTaskStore(p).load_tasks() == before


def test_go_camel_case_keys_and_nanosecond_intervals(tmp_path: Path) -> None:
    p = tmp_path / "tasks.json"
    p.write_text(json.dumps([{
        "ID": "camel", "Name": "Camel", "Description": "d",
        "Schedule": {"Type": 0, "Interval": 90_000_000_000, "Times": None, "CronSpec": ""},
        "Enabled": True, "Priority": 75, "Dependencies": ["other"],
        "LastRun": "2025-01-02T03:04:05.999999999Z", "NextRun": "0001-01-01T00:00:00Z",
        "RunCount": 3, "ErrorCount": 1, "LastError": {}, "MaxRetries": 4,
    }, {
        "ID": "other", "Schedule": {"Type": "ONCE", "Times": ["2026-01-01T00:00:00+02:00"]},
    }]))
    d = JsonTaskStore(p).load_tasks()
    t = task_from_dict(d[0])
    assert t.schedule.type is ScheduleType.INTERVAL
    assert t.schedule.interval == timedelta(seconds=90)
    assert (t.priority, t.dependencies, t.run_count, t.error_count) == (75, ["other"], 3, 1)
    assert t.last_error is None and t.next_run is None
    assert t.last_run == datetime(2025, 1, 2, 3, 4, 5, 999999, tzinfo=UTC)
    assert d[0]["go_extra"] == {"MaxRetries": 4}  # nothing dropped silently
    o = task_from_dict(d[1])
    assert o.schedule.type is ScheduleType.ONCE and o.enabled


def test_bad_go_file_names_file_and_task(tmp_path: Path) -> None:
    p = tmp_path / "tasks.json"
    content = json.dumps([{"id": "x", "schedule": {"type": "interval", "interval": "soon"}}])
    p.write_text(content)
    with pytest.raises(StoreError, match=r"tasks\.json.*'x'.*interval"):
        JsonTaskStore(p).load_tasks()
    assert p.read_text() == content


def test_retention_by_age_and_count_survive_reopen(tmp_path: Path) -> None:
    p = tmp_path / "t.json"
    s = JsonTaskStore(p, keep_runs_per_task=2, keep_days=1)
    day = timedelta(days=1)
    s.record_run(None, run("old", "b"), NOW + day)  # sweeps: still young
    for i in range(4):
        s.record_run(None, run(f"a{i}", "a", minute=24 * 60 + i), NOW + day)
    assert [r.run_id for r in s.get_history()] == ["a3", "a2", "old"]
    s.record_run(None, run("a4", "a", minute=24 * 60 + 4), NOW + day + timedelta(minutes=2))
    assert [r.run_id for r in JsonTaskStore(p).get_history()] == ["a4", "a3"]
    lines = p.read_text().splitlines()[1:3]  # oldest recorded first in the file
    assert [json.loads(x.rstrip(","))["run_id"] for x in lines] == ["a3", "a4"]
