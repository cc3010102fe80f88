//! The schema: its migrations, one a version, applied when a database is opened.

use crate::error::{sql_err, store_err};
use orch_model::Result;
use rusqlite::Connection;

/// The schema, one entry per version: entry `i` takes a database from
/// version `i` to `i + 1`. Never edit an entry; add one.
pub const MIGRATIONS: &[&str] = &[
    // 1: runs, tasks, their dependents, events, cache entries.
    "CREATE TABLE runs (
        id TEXT PRIMARY KEY,
        ord INTEGER NOT NULL,
        workflow TEXT NOT NULL,
        status TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        finished_at INTEGER,
        params TEXT NOT NULL,
        definition TEXT NOT NULL
    );
    CREATE TABLE tasks (
        run TEXT NOT NULL,
        idx INTEGER NOT NULL,
        name TEXT NOT NULL,
        status TEXT NOT NULL,
        attempt INTEGER NOT NULL,
        remaining INTEGER NOT NULL,
        priority INTEGER NOT NULL,
        lease_worker TEXT,
        lease_until INTEGER,
        result TEXT,
        note TEXT,
        started_at INTEGER,
        finished_at INTEGER,
        PRIMARY KEY (run, idx)
    ) WITHOUT ROWID;
    CREATE INDEX tasks_by_status ON tasks (status, priority);
    CREATE TABLE dependents (
        run TEXT NOT NULL,
        idx INTEGER NOT NULL,
        dependent INTEGER NOT NULL,
        PRIMARY KEY (run, idx, dependent)
    ) WITHOUT ROWID;
    CREATE TABLE events (
        run TEXT NOT NULL,
        seq INTEGER NOT NULL,
        at INTEGER NOT NULL,
        kind TEXT NOT NULL,
        task INTEGER,
        data TEXT NOT NULL,
        PRIMARY KEY (run, seq)
    ) WITHOUT ROWID;
    CREATE TABLE cache (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL,
        created_at INTEGER NOT NULL
    );",
    // 2: who drives a run, cancellation requests from other processes, and
    // rows set aside because they could not be read.
    "ALTER TABLE runs ADD COLUMN owner TEXT;
    ALTER TABLE runs ADD COLUMN cancel_requested INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE runs ADD COLUMN quarantined TEXT;
    CREATE TABLE quarantine (
        id INTEGER PRIMARY KEY,
        tbl TEXT NOT NULL,
        key TEXT NOT NULL,
        reason TEXT NOT NULL,
        at INTEGER NOT NULL
    );",
    // 3: a count of each run's tasks not yet final, so that finishing a task
    // need not scan the run (a run without a row is counted on first need).
    // A table of its own: a column of `runs` would sit after the definition,
    // which can span thousands of overflow pages, walked on every access.
    "CREATE TABLE run_open (
        run TEXT PRIMARY KEY,
        open INTEGER NOT NULL
    ) WITHOUT ROWID;",
    // 4: no index on task status: every state change of every task paid
    // for it (about a quarter of a journaled run's time). `claim` and
    // `reclaim_expired` find tasks through the runs that are running (by
    // the key's `run` part; since 7, a key range per run).
    "DROP INDEX tasks_by_status;",
    // 5: each task's dependents as a JSON array on its own row (NULL: none;
    // read once per run and kept by the store thread), instead of one row
    // per edge in `dependents`.
    "ALTER TABLE tasks ADD COLUMN dependents TEXT;
    UPDATE tasks SET dependents = (
        SELECT json_group_array(d.dependent) FROM dependents d
        WHERE d.run = tasks.run AND d.idx = tasks.idx
    ) WHERE EXISTS (SELECT 1 FROM dependents d WHERE d.run = tasks.run AND d.idx = tasks.idx);
    DROP TABLE dependents;",
    // 6: records kept for the layers above: engine sessions, projects.
    "CREATE TABLE records (
        kind TEXT NOT NULL,
        key TEXT NOT NULL,
        data TEXT NOT NULL,
        updated_at INTEGER NOT NULL,
        seq INTEGER NOT NULL,
        PRIMARY KEY (kind, key)
    ) WITHOUT ROWID;",
    // 7: tasks in a rowid table keyed by `ord * 2^32 + idx` (the run's
    // integer `ord`), instead of by the run's 36-character id and the
    // index, which every B-tree descent compared (a third of the store
    // thread's time on a journaled run). A run's tasks are one key range.
    "CREATE UNIQUE INDEX runs_by_ord ON runs (ord);
    CREATE TABLE tasks_by_ord (
        key INTEGER PRIMARY KEY,
        run INTEGER NOT NULL,
        idx INTEGER NOT NULL,
        name TEXT NOT NULL,
        status TEXT NOT NULL,
        attempt INTEGER NOT NULL,
        remaining INTEGER NOT NULL,
        priority INTEGER NOT NULL,
        lease_worker TEXT,
        lease_until INTEGER,
        result TEXT,
        note TEXT,
        started_at INTEGER,
        finished_at INTEGER,
        dependents TEXT
    );
    INSERT INTO tasks_by_ord
        SELECT r.ord * 4294967296 + t.idx, r.ord, t.idx, t.name, t.status, t.attempt, t.remaining, t.priority, t.lease_worker,
               t.lease_until, t.result, t.note, t.started_at, t.finished_at, t.dependents
        FROM tasks t JOIN runs r ON r.id = t.run;
    DROP TABLE tasks;
    ALTER TABLE tasks_by_ord RENAME TO tasks;",
    // 8: the run that started a run through `workflow.run` (NULL: a
    // top-level run, and every run written before this version).
    "ALTER TABLE runs ADD COLUMN parent TEXT;",
    // 9: each run's definition in a table of its own, keyed by the run's
    // `ord`: in `runs` it made every update of a run's row (its owner, its
    // status) rewrite the definition, hundreds of MiB for a million steps.
    "CREATE TABLE definitions (
        ord INTEGER PRIMARY KEY,
        text TEXT NOT NULL
    );
    INSERT INTO definitions (ord, text) SELECT ord, definition FROM runs;
    ALTER TABLE runs DROP COLUMN definition;",
    // 10: steps' output kept while it is produced, in chunks (`output.rs`):
    // keyed by the run's `ord`, the step's index and the chunk's number
    // (from 1 per step); `stream` is 1 (stdout) or 2 (stderr). A rowid
    // table: a chunk may be 64 KiB, too large for a WITHOUT ROWID row.
    "CREATE TABLE output (
        run INTEGER NOT NULL,
        idx INTEGER NOT NULL,
        seq INTEGER NOT NULL,
        attempt INTEGER NOT NULL,
        stream INTEGER NOT NULL,
        data BLOB NOT NULL,
        truncated INTEGER NOT NULL,
        at INTEGER NOT NULL,
        PRIMARY KEY (run, idx, seq)
    );",
    // 11: named leases that elect one holder at a time (`leader.rs`), and
    // what each task takes of a claiming worker's capacity (JSON of its
    // amounts by kind; NULL: nothing), so that claims fit a capacity.
    "CREATE TABLE leases (
        name TEXT PRIMARY KEY,
        holder TEXT NOT NULL,
        until INTEGER NOT NULL
    ) WITHOUT ROWID;
    ALTER TABLE tasks ADD COLUMN needs TEXT;",
    // 12: what a worker needs to run a submitted run's task (its step, as
    // the worker wrote it; NULL for the tasks of a run a process drives),
    // handed out with its claims so that no worker reads the whole
    // definition of a large run; and at most how many tasks of a run
    // claims hand out at once (NULL: no limit).
    "ALTER TABLE tasks ADD COLUMN spec TEXT;
    ALTER TABLE runs ADD COLUMN max_parallel INTEGER;",
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// Applies the migrations a database lacks, each in its own transaction.
pub(crate) fn migrate(conn: &Connection) -> Result<()> {
    // Every pending migration in one transaction: a process killed midway
    // (kill -9) leaves the database as it was, never between two versions
    // (which a command that only reads could not open).
    conn.execute_batch("BEGIN IMMEDIATE").map_err(sql_err)?;
    let version: u32 = match conn.query_row("PRAGMA user_version", [], |r| r.get(0)) {
        Ok(v) => v,
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            return Err(sql_err(e));
        }
    };
    if version > SCHEMA_VERSION {
        let _ = conn.execute_batch("ROLLBACK");
        return Err(store_err(
            "schema",
            format!(
                "the database is at schema version {version}, newer than this orch's {SCHEMA_VERSION}; use a newer orch"
            ),
        ));
    }
    for (v, migration) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let step = conn
            .execute_batch(migration)
            .and_then(|()| conn.execute_batch(&format!("PRAGMA user_version = {}", v + 1)));
        if let Err(e) = step {
            let _ = conn.execute_batch("ROLLBACK");
            return Err(store_err(&format!("migration to version {}", v + 1), e));
        }
    }
    conn.execute_batch("COMMIT").map_err(sql_err)
}
