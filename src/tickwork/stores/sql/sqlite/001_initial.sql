-- tickwork SQLite schema, version 1.
-- Migrations are applied in file-name order, each in one transaction together with the
-- row that records its version in schema_version.

CREATE TABLE schema_version (
    version    INTEGER PRIMARY KEY,
    applied_at TEXT NOT NULL
);

-- One row per task. ``spec`` is the task dict (tickwork._serde, format v1) as JSON text,
-- stored and returned exactly as given; ``seq`` keeps insertion order for load_tasks.
CREATE TABLE tasks (
    id         TEXT PRIMARY KEY,
    seq        INTEGER NOT NULL UNIQUE,
    spec       TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

-- One row per execution (or skipped/missed occurrence). ``seq`` is the recorded order
-- (retention keeps the newest N recorded per task); ``sort_ts`` is started_at, else
-- scheduled_for, in epoch seconds: history is ordered by (sort_ts, seq), newest first.
CREATE TABLE runs (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id        TEXT NOT NULL UNIQUE,
    task_id       TEXT NOT NULL,
    sort_ts       REAL NOT NULL,
    scheduled_for TEXT NOT NULL,
    started_at    TEXT,
    finished_at   TEXT,
    status        TEXT NOT NULL,
    attempts      INTEGER NOT NULL,
    error         TEXT,
    result        TEXT,  -- JSON text; NULL for None
    instance_id   TEXT,
    manual        INTEGER NOT NULL DEFAULT 0
);

-- History of one task, newest first.
CREATE INDEX runs_task_time ON runs (task_id, sort_ts DESC, seq DESC);
-- History of all tasks, newest first; also the age sweep (keep_days).
CREATE INDEX runs_time ON runs (sort_ts DESC, seq DESC);
-- Retention by count: the N-th newest recorded run of a task.
CREATE INDEX runs_task_seq ON runs (task_id, seq);
