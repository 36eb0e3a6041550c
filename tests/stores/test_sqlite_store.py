"""SqliteTaskStore specifics: pragmas, migrations, bad files, atomicity, retention."""

from __future__ import annotations

import sqlite3
import threading
from datetime import timedelta
from pathlib import Path

import pytest

import tickwork.stores.sqlite as sq
from tickwork._errors import StoreError
from tickwork.stores import SqliteTaskStore
from tickwork.testing.store_suite import NOW, run, sample_task


def raw(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path, isolation_level=None)


def test_wal_and_full_sync(tmp_path: Path) -> None:
    s = SqliteTaskStore(tmp_path / "t.db")
    conn = s._conn
    assert conn is not None
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    s.close()


def test_fresh_file_gets_the_latest_schema(tmp_path: Path) -> None:
    s = SqliteTaskStore(tmp_path / "t.db")
    assert s.schema_version() == sq.migrations()[-1][0] == 1
    s.close()
    s = SqliteTaskStore(tmp_path / "t.db")  # reopening applies nothing twice
    assert raw(tmp_path / "t.db").execute("SELECT COUNT(*) FROM schema_version").fetchone() == (1,)
    s.close()


def test_forward_migrations_apply_in_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = tmp_path / "t.db"
    s = SqliteTaskStore(p)
    s.upsert_task(sample_task("a"), NOW)
    s.close()
    base = sq.migrations()
    later = [
        (3, "003_fill.sql", "UPDATE tasks SET note = note || '+3';\n"),
        (2, "002_note.sql", "-- a comment; with a semicolon\n"
                            "ALTER TABLE tasks ADD COLUMN note TEXT NOT NULL DEFAULT 'v2';\n"),
    ]
    monkeypatch.setattr(sq, "migrations", lambda: sorted(base + later))
    s = SqliteTaskStore(p)
    assert s.schema_version() == 3
    assert raw(p).execute("SELECT id, note FROM tasks").fetchall() == [("a", "v2+3")]
    assert [t["id"] for t in s.load_tasks()] == ["a"]
    s.close()


def test_failed_migration_rolls_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = tmp_path / "t.db"
    SqliteTaskStore(p).close()
    base = sq.migrations()
    bad = (2, "002_bad.sql", "CREATE TABLE extra (x INTEGER);\nINSERT INTO nowhere VALUES (1);\n")
    monkeypatch.setattr(sq, "migrations", lambda: [*base, bad])
    with pytest.raises(StoreError, match="schema migration"):
        SqliteTaskStore(p)
    names = {r[0] for r in raw(p).execute("SELECT name FROM sqlite_master")}
    assert "extra" not in names
    assert raw(p).execute("SELECT MAX(version) FROM schema_version").fetchone() == (1,)


def test_newer_schema_is_refused_and_left_alone(tmp_path: Path) -> None:
    p = tmp_path / "t.db"
    s = SqliteTaskStore(p)
    s.upsert_task(sample_task("a"), NOW)
    s.close()
    raw(p).execute("INSERT INTO schema_version VALUES (99, 'future')")
    before = p.read_bytes()
    with pytest.raises(StoreError, match=rf"{p}.*schema version 99 is newer"):
        SqliteTaskStore(p)
    assert p.read_bytes() == before


def test_not_a_database(tmp_path: Path) -> None:
    p = tmp_path / "t.db"
    content = b"this is not sqlite at all\n" * 200
    p.write_bytes(content)
    with pytest.raises(StoreError, match=rf"{p}.*not a SQLite database"):
        SqliteTaskStore(p)
    assert p.read_bytes() == content


def test_foreign_sqlite_database(tmp_path: Path) -> None:
    p = tmp_path / "other.db"
    raw(p).execute("CREATE TABLE customers (id INTEGER)")
    with pytest.raises(StoreError, match="not a tickwork store"):
        SqliteTaskStore(p)
    assert {r[0] for r in raw(p).execute("SELECT name FROM sqlite_master")} == {"customers"}


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match=r"cannot open|failed"):
        SqliteTaskStore(tmp_path / "no" / "such" / "t.db")


def test_record_run_is_one_transaction(tmp_path: Path) -> None:
    p = tmp_path / "t.db"
    s = SqliteTaskStore(p)
    s.upsert_task(sample_task("a", run_count=0), NOW)
    raw(p).execute("CREATE TRIGGER no_runs BEFORE INSERT ON runs "
                   "BEGIN SELECT RAISE(ABORT, 'disk says no'); END")
    with pytest.raises(StoreError, match="record run failed: disk says no"):
        s.record_run(sample_task("a", run_count=1), run("r1", "a"), NOW)
    assert s.load_tasks()[0]["state"]["run_count"] == 0  # task update rolled back too
    assert s.get_history() == []
    s.close()


def test_two_connections_share_one_file(tmp_path: Path) -> None:
    a, b = SqliteTaskStore(tmp_path / "t.db"), SqliteTaskStore(tmp_path / "t.db")
    a.upsert_task(sample_task("x"), NOW)
    b.record_run(sample_task("y"), run("r", "y"), NOW)
    assert [t["id"] for t in a.load_tasks()] == ["x", "y"]
    assert [r.run_id for r in a.get_history()] == ["r"]
    a.close()
    b.close()


def test_threads_share_one_store(tmp_path: Path) -> None:
    s = SqliteTaskStore(tmp_path / "t.db")
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(25):
                s.record_run(sample_task(f"t{n}"), run(f"r{n}-{i}", f"t{n}", minute=i), NOW)
                s.get_history(f"t{n}", limit=5)
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(s.get_history(limit=1000)) == 150 and len(s.load_tasks()) == 6
    s.close()


def test_closed_store_raises(tmp_path: Path) -> None:
    s = SqliteTaskStore(tmp_path / "t.db")
    s.close()
    with pytest.raises(StoreError, match="closed"):
        s.load_tasks()


def test_retention_by_count_is_exact_and_indexed(tmp_path: Path) -> None:
    p = tmp_path / "t.db"
    s = SqliteTaskStore(p, keep_runs_per_task=3)
    for i in range(10):
        for task in ("a", "b"):
            s.record_run(None, run(f"{task}{i}", task, minute=i), NOW)
    counts = raw(p).execute("SELECT task_id, COUNT(*) FROM runs GROUP BY task_id").fetchall()
    assert sorted(counts) == [("a", 3), ("b", 3)]
    assert [r.run_id for r in s.get_history("a")] == ["a9", "a8", "a7"]
    plan = " ".join(str(r) for r in raw(p).execute(
        "EXPLAIN QUERY PLAN " + sq._PRUNE_TASK, ("a", "a", 3)))
    assert "SCAN runs" not in plan.replace("SCAN runs USING", "")  # never a table scan
    assert "runs_task_seq" in plan
    s.close()


def test_retention_none_keeps_everything(tmp_path: Path) -> None:
    s = SqliteTaskStore(tmp_path / "t.db", keep_runs_per_task=None)
    for i in range(12):
        s.record_run(None, run(f"r{i}", minute=i), NOW)
    assert len(s.get_history(limit=10_000)) == 12
    s.close()


def test_retention_by_age(tmp_path: Path) -> None:
    s = SqliteTaskStore(tmp_path / "t.db", keep_runs_per_task=None, keep_days=1)
    day = timedelta(days=1)
    s.record_run(None, run("old"), NOW + day)  # sweeps: "old" (NOW + 1 s) is still young
    assert [r.run_id for r in s.get_history()] == ["old"]
    # 30 s later "old" has expired, but the sweep runs at most once a minute of ``now``
    s.record_run(None, run("x", minute=24 * 60), NOW + day + timedelta(seconds=30))
    assert [r.run_id for r in s.get_history()] == ["x", "old"]
    s.record_run(None, run("y", minute=24 * 60 + 1), NOW + day + timedelta(minutes=2))
    assert [r.run_id for r in s.get_history()] == ["y", "x"]
    s.close()


def test_bad_retention_settings() -> None:
    with pytest.raises(ValueError, match="keep_runs_per_task"):
        SqliteTaskStore(":memory:", keep_runs_per_task=0)
    with pytest.raises(ValueError, match="keep_days"):
        SqliteTaskStore(":memory:", keep_days=-1)
