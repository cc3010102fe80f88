-- Version 1: runs, their definitions, tasks, events, records, the cache.
-- Never edit a released migration; add the next one.

-- One row a run. `ord` orders runs (claims take older runs first) and keys
-- their tasks and events. `open_tasks` counts the tasks not yet final:
-- the transaction that brings it to 0 sets the run's final status (the row
-- lock on the run serializes the last completions). `last_seq` numbers
-- the run's events.
CREATE TABLE runs (
    ord bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id uuid NOT NULL UNIQUE,
    workflow text NOT NULL,
    status text NOT NULL,
    created_at timestamptz NOT NULL,
    finished_at timestamptz,
    params text NOT NULL,
    owner text,
    cancel_requested boolean NOT NULL DEFAULT false,
    parent uuid,
    open_tasks bigint NOT NULL,
    last_seq bigint NOT NULL DEFAULT 0
);

-- A run's definition (JSON text, up to hundreds of MiB) apart from its row,
-- so that updates of the row do not copy it.
CREATE TABLE definitions (
    run_ord bigint PRIMARY KEY REFERENCES runs (ord) ON DELETE CASCADE,
    text text NOT NULL
);

-- One row a task. `remaining` counts the dependencies not yet finished;
-- `dependents` lists the indices that wait for this task; `attempt` is the
-- fencing token of the current claim; `worker` and `lease_until` the lease.
CREATE TABLE tasks (
    run_ord bigint NOT NULL REFERENCES runs (ord) ON DELETE CASCADE,
    idx integer NOT NULL,
    name text NOT NULL,
    status text NOT NULL,
    priority smallint NOT NULL,
    attempt integer NOT NULL DEFAULT 0,
    remaining integer NOT NULL,
    dependents integer[],
    worker text,
    lease_until timestamptz,
    result text,
    note text,
    started_at timestamptz,
    finished_at timestamptz,
    PRIMARY KEY (run_ord, idx)
);

-- The claim reads this partial index in its order: only ready rows are in it.
CREATE INDEX tasks_ready ON tasks (priority DESC, run_ord, idx) WHERE status = 'ready';
-- Leases to reclaim.
CREATE INDEX tasks_leases ON tasks (lease_until) WHERE status = 'running';

CREATE TABLE events (
    run_ord bigint NOT NULL REFERENCES runs (ord) ON DELETE CASCADE,
    seq bigint NOT NULL,
    at timestamptz NOT NULL,
    kind text NOT NULL,
    task integer,
    data text NOT NULL,
    PRIMARY KEY (run_ord, seq)
);

CREATE SEQUENCE records_seq;
CREATE TABLE records (
    kind text NOT NULL,
    key text NOT NULL,
    data text NOT NULL,
    updated_at timestamptz NOT NULL,
    seq bigint NOT NULL,
    PRIMARY KEY (kind, key)
);

CREATE TABLE cache (
    key text PRIMARY KEY,
    value text NOT NULL,
    created_at timestamptz NOT NULL
);
