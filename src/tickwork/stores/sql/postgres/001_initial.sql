-- tickwork PostgreSQL schema, version 1 (cluster mode; see docs/cluster.md).
-- Migrations are applied in file-name order, each in one transaction together with the
-- row that records its version in tw_schema_version, under an advisory lock so that
-- several instances starting at once migrate exactly once.

CREATE TABLE tw_schema_version (
    version    int PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
);

-- Live instances (heartbeat_at is renewed with the batched run heartbeat).
CREATE TABLE tw_instance (
    id           text PRIMARY KEY,
    host         text,
    pid          int,
    started_at   timestamptz NOT NULL DEFAULT now(),
    heartbeat_at timestamptz NOT NULL DEFAULT now()
);

-- One row per task. ``spec`` is the task dict (tickwork._serde) as JSON *text*, returned
-- byte-for-byte (jsonb would reorder keys). The other columns are extracted from it on
-- upsert for the cluster statements; in cluster mode next_run and last_status are then
-- owned by the database (materialise / complete), not by the dict.
CREATE TABLE tw_task (
    id              text PRIMARY KEY,
    seq             bigserial NOT NULL UNIQUE,       -- insertion order for load_tasks
    spec            text NOT NULL,
    enabled         bool NOT NULL DEFAULT true,
    priority        int NOT NULL DEFAULT 50,
    max_instances   int NOT NULL DEFAULT 1,
    dependencies    text[] NOT NULL DEFAULT '{}',
    misfire_grace   double precision,                -- seconds; NULL = collapse
    on_lease_loss   text NOT NULL DEFAULT 'retry',
    max_retries     int NOT NULL DEFAULT 0,
    retry_delay     double precision NOT NULL DEFAULT 0,
    retry_backoff   double precision NOT NULL DEFAULT 1,
    retry_max_delay double precision NOT NULL DEFAULT 3600,
    next_run        timestamptz,                     -- next nominal occurrence not yet materialised
    last_status     text,                            -- latest execution outcome (dependencies)
    rev             bigint NOT NULL DEFAULT 1,       -- bumped by every upsert (optimistic lock)
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX tw_task_due ON tw_task (next_run) WHERE enabled AND next_run IS NOT NULL;

CREATE SEQUENCE tw_fence;

-- One row per execution: the cluster queue (status pending/running) and the history
-- (every other status) in one table, so that an outcome and its queue row are one write.
-- ``queued`` rows were materialised by the cluster (identity task + planned time +
-- manual, UNIQUE); rows written by record_run (single-process schedulers) are not.
-- No foreign key to tw_task: history outlives its task.
CREATE TABLE tw_run (
    seq           bigserial PRIMARY KEY,               -- recorded order (retention, ties)
    run_id        text NOT NULL UNIQUE DEFAULT gen_random_uuid()::text,
    task_id       text NOT NULL,
    scheduled_for timestamptz NOT NULL,
    manual        bool NOT NULL DEFAULT false,
    queued        bool NOT NULL DEFAULT false,
    status        text NOT NULL DEFAULT 'pending',
    priority      int NOT NULL DEFAULT 50,
    exclusive     bool NOT NULL DEFAULT true,          -- max_instances = 1
    not_before    timestamptz NOT NULL DEFAULT now(),  -- retry backoff
    attempts      int NOT NULL DEFAULT 0,
    fence         bigint,
    instance_id   text,
    lease_until   timestamptz,
    started_at    timestamptz,
    finished_at   timestamptz,
    error         text,
    result        text,                                -- JSON text; NULL for None
    -- The ISO spellings record_run was given, so offsets (and naive times) round trip;
    -- cleared whenever the cluster rewrites the timestamp.
    scheduled_text text,
    started_text   text,
    finished_text  text,
    sort_ts       timestamptz GENERATED ALWAYS AS (COALESCE(started_at, scheduled_for)) STORED
);
CREATE UNIQUE INDEX tw_run_occurrence ON tw_run (task_id, scheduled_for, manual) WHERE queued;
CREATE INDEX tw_run_ready ON tw_run (priority DESC, scheduled_for, seq) WHERE status = 'pending';
CREATE INDEX tw_run_lease ON tw_run (lease_until) WHERE status = 'running';
CREATE INDEX tw_run_task_status ON tw_run (task_id, status) WHERE status IN ('pending', 'running');
-- The claim's "oldest ready run of its task" probe.
CREATE INDEX tw_run_task_pending ON tw_run (task_id, scheduled_for, seq) WHERE status = 'pending';
-- max_instances = 1: at most one running row per exclusive task, enforced by the database.
CREATE UNIQUE INDEX tw_run_one ON tw_run (task_id) WHERE status = 'running' AND exclusive;
CREATE INDEX tw_run_task_time ON tw_run (task_id, sort_ts DESC, seq DESC);
CREATE INDEX tw_run_time ON tw_run (sort_ts DESC, seq DESC);
CREATE INDEX tw_run_task_seq ON tw_run (task_id, seq);
