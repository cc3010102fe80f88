//! `orch-store-sqlite`: the embedded durable store (`sqlite://PATH`), the CLI's default.
//!
//! One connection, owned by a dedicated thread, serves every call in arrival
//! order. The thread commits in groups: it takes every request waiting in its
//! queue, runs each in a savepoint of one transaction, commits once, and only
//! then answers, so an answer always means "durable" (WAL with
//! `synchronous=NORMAL`: a committed transaction survives the process being
//! killed at any moment; a power loss may lose the last ones). Several
//! processes may use one database file: SQLite's locks and a busy timeout
//! keep them apart.
//!
//! The schema has a version (`PRAGMA user_version`) and forward migrations,
//! applied when a database is opened. A row that cannot be read is set aside
//! (its run is marked quarantined and reported by [`Store::problems`]),
//! never a crash; other runs stay usable.
//!
//! Options ([`SqliteOptions`], or a URL's query: `sqlite://PATH?mode=ro`):
//! a read-only store opens the file with `SQLITE_OPEN_READ_ONLY`, applies no
//! migration and never writes (no WAL checkpoint either), so a database
//! in a read-only file or directory can be read; `max_page_count=N` caps the
//! database at N pages (SQLite's `PRAGMA max_page_count`), which makes a
//! full disk easy to reproduce. A full disk (`SQLITE_FULL`, which SQLite
//! also reports for `ENOSPC`) or another I/O failure is an
//! `OrchestrationError::Io`. After each commit the store checks that its
//! path still names the file it opened: a database deleted or replaced
//! while in use fails every later call instead of writing into a file that
//! nobody will read again.
//!
//! ```
//! use orch_model::{NewRun, NewTask, Store, TaskPriority};
//! use orch_store_sqlite::SqliteStore;
//!
//! let dir = tempfile::tempdir().unwrap();
//! let store = SqliteStore::open(&dir.path().join("orch.db")).unwrap();
//! let rt = tokio::runtime::Runtime::new().unwrap();
//! rt.block_on(async {
//!     let id = orch_model::RunId::new();
//!     let task = NewTask { name: "a".into(), deps: vec![], priority: TaskPriority::Normal };
//!     let run = NewRun { id, workflow: "w".into(), definition: "{}".into(), params: Default::default(), tasks: vec![task], parent: None };
//!     store.create_run(run, chrono::Utc::now()).await.unwrap();
//!     assert_eq!(store.list_runs().await.unwrap().len(), 1);
//! });
//! ```

use async_trait::async_trait;
use chrono::{DateTime, TimeZone, Utc};
use orch_model::store::{
    CacheEntry, Lease, Record, RecordKind, RunRecord, StoredEvent, TaskRecord,
};
use orch_model::store::{TakeOver, TaskCounts};
use orch_model::{
    Claim, EntityKind, Finished, NewRun, OrchestrationError, Result, RunId, Store,
    StoreCapabilities, TaskOutcome, TaskPriority, TaskResult, TaskStatus, WorkflowStatus,
};
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

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
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// Most requests committed in one transaction.
const GROUP_LIMIT: usize = 512;

type Deliver = Box<dyn FnOnce(Option<&OrchestrationError>) + Send>;
/// One request: given the connection (or why there is none), it does its
/// work and says whether to keep its changes, and how to answer after the commit.
type Work = Box<
    dyn FnOnce(std::result::Result<&Connection, &OrchestrationError>) -> (bool, Deliver) + Send,
>;

/// The SQLite store. Cheap to share behind an `Arc`; dropping it stops its thread.
#[derive(Debug)]
pub struct SqliteStore {
    path: PathBuf,
    options: SqliteOptions,
    tx: Option<mpsc::Sender<Work>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// How to open a database (in a URL: `sqlite://PATH?mode=ro&max_page_count=N`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SqliteOptions {
    /// Open with `SQLITE_OPEN_READ_ONLY`: no file is created, no migration
    /// runs, nothing is written; every write fails. A missing or empty file
    /// reads as an empty store; one at an older schema version is refused
    /// (it needs a migration, which only a writing open applies).
    pub read_only: bool,
    /// At most this many pages (`PRAGMA max_page_count`; pages are 4 KiB):
    /// a write that would grow the database beyond fails as a full disk does.
    pub max_page_count: Option<u64>,
}

impl SqliteOptions {
    /// These options, read-only.
    #[must_use]
    pub fn read_only(mut self) -> Self {
        self.read_only = true;
        self
    }
}

/// An open connection and what the store thread knows about it.
struct Conn {
    conn: Connection,
    /// Opened read-only (or a stand-in for a missing database).
    read_only: bool,
    /// The device and inode of the database file, to notice it being
    /// deleted or replaced (`None`: not a writable file).
    file: Option<(u64, u64)>,
}

fn store_err(what: &str, e: impl std::fmt::Display) -> OrchestrationError {
    OrchestrationError::Store {
        message: format!("sqlite: {what}: {e}"),
        retryable: false,
    }
}

fn sql_err(e: rusqlite::Error) -> OrchestrationError {
    match e.sqlite_error_code() {
        // SQLite reports ENOSPC as SQLITE_FULL, like a reached max_page_count.
        Some(rusqlite::ErrorCode::DiskFull) => OrchestrationError::Io {
            message: format!(
                "the store's database is full (the disk is full, or the database reached its size limit): sqlite: {e}; free some space, then resume the run with `orch resume RUN`"
            ),
        },
        Some(rusqlite::ErrorCode::SystemIoFailure) => OrchestrationError::Io {
            message: format!("the store's database could not be read or written: sqlite: {e}"),
        },
        Some(rusqlite::ErrorCode::ReadOnly) => OrchestrationError::Store {
            message: format!(
                "sqlite: {e}: the database was opened read-only (a command that only reads), or its file or directory is not writable"
            ),
            retryable: false,
        },
        code => OrchestrationError::Store {
            message: format!("sqlite: {e}"),
            retryable: matches!(
                code,
                Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
            ),
        },
    }
}

/// The device and inode `path` names now.
fn file_id(path: &Path) -> std::io::Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).map(|m| (m.dev(), m.ino()))
}

/// The error of a store whose database file is no longer the one it opened.
fn lost(path: &Path, now: std::io::Result<(u64, u64)>) -> OrchestrationError {
    let what = match now {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => "was deleted",
        Err(_) => "can no longer be found",
        Ok(_) => "was replaced by another file",
    };
    OrchestrationError::Io {
        message: format!(
            "the store's database {} {what} while orch was using it: what it recorded there is lost, and nothing more can be recorded, so the run stops here (start it again with `orch run`)",
            path.display()
        ),
    }
}

fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

fn time(us: i64) -> DateTime<Utc> {
    Utc.timestamp_micros(us).single().unwrap_or_default()
}

fn lease_until(now: DateTime<Utc>, lease: Duration) -> i64 {
    micros(now).saturating_add(i64::try_from(lease.as_micros()).unwrap_or(i64::MAX))
}

fn not_found(run: RunId) -> OrchestrationError {
    OrchestrationError::not_found(EntityKind::Run, run.to_string())
}

fn invalid(message: String) -> OrchestrationError {
    OrchestrationError::InvalidState { message }
}

/// Opens a database as `options` say.
fn connect(path: &Path, options: SqliteOptions) -> Result<Conn> {
    let conn = connect_as(path, options)?;
    // More statements are prepared and kept than rusqlite's default of 16.
    conn.conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

fn connect_as(path: &Path, options: SqliteOptions) -> Result<Conn> {
    if options.read_only {
        return connect_read_only(path);
    }
    let conn = connect_writable(path)?;
    if let Some(n) = options.max_page_count {
        conn.pragma_update(None, "max_page_count", n)
            .map_err(sql_err)?;
    }
    let file =
        file_id(path).map_err(|e| store_err(&format!("cannot inspect {}", path.display()), e))?;
    Ok(Conn {
        conn,
        read_only: false,
        file: Some(file),
    })
}

/// `path` as an SQLite URI filename (`file:` plus the path, with the
/// characters a URI gives a meaning to escaped).
fn uri_path(path: &Path) -> String {
    let mut out = String::from("file:");
    for b in path.as_os_str().as_encoded_bytes() {
        match b {
            b'%' | b'?' | b'#' => out.push_str(&format!("%{b:02X}")),
            _ => out.push(char::from(*b)),
        }
    }
    out
}

/// Whether the database at `path` has a write-ahead log with content.
fn has_log(path: &Path) -> bool {
    let mut log = path.as_os_str().to_owned();
    log.push("-wal");
    std::fs::metadata(&log).is_ok_and(|m| m.len() > 0)
}

/// Opens a database read-only: no file is created, no migration runs,
/// nothing is written. A missing or empty database is an empty store (an
/// in-memory stand-in with the schema, refusing writes).
fn connect_read_only(path: &Path) -> Result<Conn> {
    let empty = || -> Result<Conn> {
        let conn = Connection::open_in_memory().map_err(sql_err)?;
        migrate(&conn)?;
        conn.execute_batch("PRAGMA query_only = 1")
            .map_err(sql_err)?;
        Ok(Conn {
            conn,
            read_only: true,
            file: None,
        })
    };
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return empty(),
        Ok(m) if m.len() == 0 => return empty(),
        _ => {}
    }
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
        | OpenFlags::SQLITE_OPEN_URI
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let check = |conn: &Connection| -> rusqlite::Result<u32> {
        conn.query_row("PRAGMA user_version", [], |r| r.get(0))
    };
    let opened =
        Connection::open_with_flags(uri_path(path), flags).and_then(|c| check(&c).map(|v| (c, v)));
    let (conn, version) = match opened {
        Ok(x) => x,
        // A WAL database closed cleanly has no -wal and -shm files, and a
        // reader cannot create them in a read-only directory (SQLite says
        // "cannot open" or "readonly"): read the file as it is
        // (`immutable`: nobody without write access can be writing it).
        // Not when a log with content is there: `immutable` would ignore
        // it and show an older state without a word.
        Err(e)
            if matches!(
                e.sqlite_error_code(),
                Some(rusqlite::ErrorCode::CannotOpen | rusqlite::ErrorCode::ReadOnly)
            ) && !has_log(path) =>
        {
            let uri = format!("{}?immutable=1", uri_path(path));
            let c = Connection::open_with_flags(&uri, flags)
                .map_err(|e| store_err(&format!("cannot open {} read-only", path.display()), e))?;
            let v = check(&c)
                .map_err(|e| store_err(&format!("cannot open {} read-only", path.display()), e))?;
            (c, v)
        }
        Err(e) if has_log(path) => {
            return Err(store_err(
                &format!("cannot open {} read-only", path.display()),
                format!(
                    "{e}: its write-ahead log ({}-wal) holds changes not yet in the file, and reading them needs a -shm file this process cannot create or update; let someone with write access to the directory fold the log into the file (`sqlite3 {} 'PRAGMA wal_checkpoint(TRUNCATE)'`), or read it where this process can write",
                    path.display(),
                    path.display()
                ),
            ));
        }
        Err(e) => {
            return Err(store_err(
                &format!("cannot open {} read-only", path.display()),
                e,
            ));
        }
    };
    conn.busy_timeout(Duration::from_secs(10))
        .map_err(sql_err)?;
    conn.execute_batch("PRAGMA cache_size = -65536; PRAGMA temp_store = MEMORY;")
        .map_err(sql_err)?;
    if version == 0 {
        let tables: i64 = conn
            .query_row("SELECT COUNT(*) FROM sqlite_master", [], |r| r.get(0))
            .map_err(sql_err)?;
        if tables == 0 {
            return empty();
        }
    }
    if version < SCHEMA_VERSION {
        return Err(store_err(
            "schema",
            format!(
                "the database {} is at schema version {version}, and this orch reads version {SCHEMA_VERSION}; \
                 it needs a migration, which a command that only reads (opening it read-only) does not apply. \
                 Any command that writes to the store (`orch run`, `orch cache clear`) upgrades it, given write access",
                path.display()
            ),
        ));
    }
    if version > SCHEMA_VERSION {
        return Err(store_err(
            "schema",
            format!(
                "the database is at schema version {version}, newer than this orch's {SCHEMA_VERSION}; use a newer orch"
            ),
        ));
    }
    Ok(Conn {
        conn,
        read_only: true,
        file: None,
    })
}

/// Opens (creating it owner-only if needed) and migrates a database.
fn connect_writable(path: &Path) -> Result<Connection> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| store_err(&format!("cannot create {}", dir.display()), e))?;
    }
    if !path.exists() {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .or_else(|e| {
                // Another process created it first: fine.
                if e.kind() == std::io::ErrorKind::AlreadyExists {
                    std::fs::File::open(path)
                } else {
                    Err(e)
                }
            })
            .map_err(|e| store_err(&format!("cannot create {}", path.display()), e))?;
    }
    let conn = Connection::open(path).map_err(sql_err)?;
    conn.busy_timeout(Duration::from_secs(10))
        .map_err(sql_err)?;
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = OFF;
         PRAGMA cache_size = -65536; PRAGMA mmap_size = 268435456; PRAGMA temp_store = MEMORY;
         PRAGMA wal_autocheckpoint = 8192;",
    )
    .map_err(sql_err)?;
    migrate(&conn)?;
    Ok(conn)
}

/// Applies the migrations a database lacks, each in its own transaction.
fn migrate(conn: &Connection) -> Result<()> {
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
    for v in version as usize..MIGRATIONS.len() {
        let step = conn
            .execute_batch(MIGRATIONS[v])
            .and_then(|()| conn.execute_batch(&format!("PRAGMA user_version = {}", v + 1)));
        if let Err(e) = step {
            let _ = conn.execute_batch("ROLLBACK");
            return Err(store_err(&format!("migration to version {}", v + 1), e));
        }
    }
    conn.execute_batch("COMMIT").map_err(sql_err)
}

/// Runs one statement through the connection's statement cache (a
/// transaction's `BEGIN`, `COMMIT` and savepoints are run for every request;
/// parsing them each time showed in profiles).
fn exec_cached(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}

/// The worker thread: group commit of everything queued. With no
/// connection yet (a lazily opened store), it connects on the first request.
fn serve(mut conn: Option<Conn>, path: PathBuf, options: SqliteOptions, rx: mpsc::Receiver<Work>) {
    // Set when the database file was deleted or replaced: every later
    // request gets this error, and nothing runs.
    let mut gone: Option<OrchestrationError> = None;
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < GROUP_LIMIT {
            match rx.try_recv() {
                Ok(w) => batch.push(w),
                Err(_) => break,
            }
        }
        if let Some(err) = &gone {
            for w in batch {
                let (_, deliver) = w(Err(err));
                deliver(None);
            }
            continue;
        }
        if conn.is_none() {
            match connect(&path, options) {
                Ok(c) => conn = Some(c),
                Err(err) => {
                    for w in batch {
                        let (_, deliver) = w(Err(&err));
                        deliver(None);
                    }
                    continue;
                }
            }
        }
        let Some(held) = conn.as_ref() else { continue };
        let conn = &held.conn;
        // A read-only connection takes no write lock (and could not).
        let begin = if held.read_only {
            "BEGIN"
        } else {
            "BEGIN IMMEDIATE"
        };
        if let Err(e) = exec_cached(conn, begin) {
            // Answer every request with the error; nothing ran.
            let err = sql_err(e);
            for w in batch {
                let (_, deliver) = w(Err(&err));
                deliver(None);
            }
            continue;
        }
        let mut deliveries = Vec::with_capacity(batch.len());
        // A lone request needs no savepoint: the transaction is its own,
        // and a failure rolls the whole of it back.
        let single = batch.len() == 1;
        let mut rolled_back = false;
        for w in batch {
            if single {
                let (ok, deliver) = w(Ok(conn));
                if !ok {
                    let _ = exec_cached(conn, "ROLLBACK");
                    rolled_back = true;
                }
                deliveries.push(deliver);
                continue;
            }
            let _ = exec_cached(conn, "SAVEPOINT req");
            let (ok, deliver) = w(Ok(conn));
            if !ok {
                let _ = exec_cached(conn, "ROLLBACK TO req");
            }
            let _ = exec_cached(conn, "RELEASE req");
            deliveries.push(deliver);
        }
        let commit = if rolled_back {
            Ok(())
        } else {
            exec_cached(conn, "COMMIT").map_err(sql_err)
        };
        if commit.is_err() {
            let _ = exec_cached(conn, "ROLLBACK");
        }
        let mut err = commit.err();
        // Committed into the file this store opened: is it still the one
        // its path names? (A deleted database keeps working through the
        // open descriptor, and everything written to it would be lost.)
        if let Some(id) = held.file {
            match file_id(&path) {
                Ok(now) if now == id => {}
                now => {
                    let e = lost(&path, now);
                    gone = Some(e.clone());
                    err = Some(e);
                }
            }
        }
        for d in deliveries {
            d(err.as_ref());
        }
    }
}

impl SqliteStore {
    /// Opens `path` (creating it with owner-only permissions, and its
    /// directory), migrates it to the current schema, and starts the thread.
    ///
    /// # Errors
    /// `Store` when the file cannot be created or opened, or a migration fails.
    pub fn open(path: &Path) -> Result<Self> {
        Self::open_with(path, SqliteOptions::default())
    }

    /// [`SqliteStore::open`] with options (read-only: see [`SqliteOptions`]).
    ///
    /// # Errors
    /// As [`SqliteStore::open`]; read-only, `Store` for a database that
    /// needs a migration.
    pub fn open_with(path: &Path, options: SqliteOptions) -> Result<Self> {
        let conn = connect(path, options)?;
        Self::start(path, options, Some(conn))
    }

    /// Like [`SqliteStore::open`], but touches nothing until the first call:
    /// the file is created and migrated then (and a failure to do so is
    /// that call's error). Commands that never use the store leave no file.
    ///
    /// # Errors
    /// `Store` when the thread cannot start.
    pub fn open_lazy(path: &Path) -> Result<Self> {
        Self::open_lazy_with(path, SqliteOptions::default())
    }

    /// [`SqliteStore::open_lazy`] with options.
    ///
    /// # Errors
    /// `Store` when the thread cannot start.
    pub fn open_lazy_with(path: &Path, options: SqliteOptions) -> Result<Self> {
        Self::start(path, options, None)
    }

    fn start(path: &Path, options: SqliteOptions, conn: Option<Conn>) -> Result<Self> {
        let (tx, rx) = mpsc::channel::<Work>();
        let owned = path.to_path_buf();
        let thread = std::thread::Builder::new()
            .name("orch-sqlite".into())
            .spawn(move || serve(conn, owned, options, rx))
            .map_err(|e| store_err("cannot start the store thread", e))?;
        Ok(Self {
            path: path.to_path_buf(),
            options,
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    /// Opens the store a `sqlite://PATH` URL names.
    ///
    /// # Errors
    /// `InvalidParameters` for another scheme; as [`SqliteStore::open`].
    pub fn open_url(url: &str) -> Result<Self> {
        let (path, options) = Self::parse_url(url)?;
        Self::open_with(&path, options)
    }

    /// [`SqliteStore::open_lazy`] for a `sqlite://PATH` URL.
    ///
    /// # Errors
    /// `InvalidParameters` for another scheme.
    pub fn open_url_lazy(url: &str) -> Result<Self> {
        let (path, options) = Self::parse_url(url)?;
        Self::open_lazy_with(&path, options)
    }

    /// The path and options of a `sqlite://PATH[?OPTION&...]` URL. Options:
    /// `mode=ro` (read-only) or `mode=rw` (the default), `max_page_count=N`.
    ///
    /// # Errors
    /// `InvalidParameters` for another scheme, no path, or an unknown or
    /// malformed option.
    pub fn parse_url(url: &str) -> Result<(PathBuf, SqliteOptions)> {
        let rest = url.strip_prefix("sqlite://").ok_or_else(|| {
            OrchestrationError::invalid_parameters(format!(
                "`{url}` is not a sqlite:// URL; write sqlite://PATH, e.g. sqlite://.orch/orch.db"
            ))
        })?;
        let (path, query) = match rest.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (rest, None),
        };
        if path.is_empty() {
            return Err(OrchestrationError::invalid_parameters(
                "sqlite:// needs a path, e.g. sqlite://.orch/orch.db",
            ));
        }
        let mut options = SqliteOptions::default();
        for pair in query
            .into_iter()
            .flat_map(|q| q.split('&'))
            .filter(|p| !p.is_empty())
        {
            let bad = |why: &str| {
                OrchestrationError::invalid_parameters(format!(
                    "store URL `{url}`: option `{pair}` {why}; the options are mode=ro, mode=rw and max_page_count=N"
                ))
            };
            match pair.split_once('=') {
                Some(("mode", "ro")) => options.read_only = true,
                Some(("mode", "rw")) => options.read_only = false,
                Some(("mode", _)) => return Err(bad("is not ro or rw")),
                Some(("max_page_count", n)) => {
                    options.max_page_count = Some(
                        n.parse()
                            .ok()
                            .filter(|&n: &u64| n > 0)
                            .ok_or_else(|| bad("needs a whole number of pages above 0"))?,
                    );
                }
                _ => return Err(bad("is not known")),
            }
        }
        Ok((PathBuf::from(path), options))
    }

    /// How the store was opened.
    pub fn options(&self) -> SqliteOptions {
        self.options
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` on the store's thread inside the current group transaction;
    /// the answer comes after the commit. An `Err` from `f` rolls back only
    /// its own changes.
    async fn call<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        self.call_keeping(f, false).await
    }

    /// [`SqliteStore::call`]; with `keep_on_error`, the changes `f` made stay
    /// even when it fails (a read that quarantined a row it could not read).
    async fn call_keeping<T, F>(&self, f: F, keep_on_error: bool) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let (reply, answer) = tokio::sync::oneshot::channel::<Result<T>>();
        let work: Work = Box::new(move |conn| {
            let r = match conn {
                Ok(conn) => f(conn),
                Err(e) => Err(e.clone()),
            };
            let ok = r.is_ok() || keep_on_error;
            let deliver: Deliver = Box::new(move |commit_err| {
                let out = match (r, commit_err) {
                    (Ok(_), Some(e)) => Err(e.clone()),
                    (r, _) => r,
                };
                let _ = reply.send(out);
            });
            (ok, deliver)
        });
        self.tx
            .as_ref()
            .ok_or_else(|| store_err("closed", "the store is shut down"))?
            .send(work)
            .map_err(|_| store_err("closed", "the store thread has stopped"))?;
        answer
            .await
            .map_err(|_| store_err("closed", "the store thread stopped before answering"))?
    }
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        // Closing the channel ends the thread after it answered what was queued.
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn parse_status(s: &str) -> std::result::Result<TaskStatus, String> {
    s.parse::<TaskStatus>()
}

fn priority_from(n: i64) -> TaskPriority {
    match n {
        1 => TaskPriority::Low,
        3 => TaskPriority::High,
        4 => TaskPriority::Critical,
        _ => TaskPriority::Normal,
    }
}

/// Sets a run aside: it is reported by `problems` and skipped by listings.
fn quarantine(conn: &Connection, run: &str, reason: &str) -> Result<()> {
    if conn.is_readonly(rusqlite::MAIN_DB).unwrap_or(true) {
        // A read-only store reports the row (the caller's error) and writes nothing.
        return Ok(());
    }
    conn.execute(
        "UPDATE runs SET quarantined = ?2 WHERE id = ?1",
        params![run, reason],
    )
    .map_err(sql_err)?;
    conn.execute(
        "INSERT INTO quarantine (tbl, key, reason, at) VALUES ('runs', ?1, ?2, ?3)",
        params![run, reason, micros(Utc::now())],
    )
    .map_err(sql_err)?;
    Ok(())
}

const RUN_COLUMNS: &str = "id, workflow, status, created_at, finished_at, params, \
    COALESCE((SELECT text FROM definitions d WHERE d.ord = runs.ord), '') AS definition, owner, cancel_requested, parent";
/// As `RUN_COLUMNS`, without reading the definition (listing runs).
const LIST_COLUMNS: &str = "id, workflow, status, created_at, finished_at, params, '' AS definition, owner, cancel_requested, parent";
/// How many columns `RUN_COLUMNS` and `LIST_COLUMNS` name (the next one read is at this index).
const RUN_COLUMN_COUNT: usize = 10;

type RawRun = (
    String,
    String,
    String,
    i64,
    Option<i64>,
    String,
    String,
    Option<String>,
    bool,
    Option<String>,
);

fn raw_run(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawRun> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
        r.get(7)?,
        r.get(8)?,
        r.get(9)?,
    ))
}

fn decode_run(raw: RawRun) -> std::result::Result<RunRecord, String> {
    let (id, workflow, status, created, finished, params, definition, owner, cancel, parent) = raw;
    let id: RunId = id.parse().map_err(|e| format!("bad run id `{id}`: {e}"))?;
    let parent = parent
        .map(|p| {
            p.parse::<RunId>()
                .map_err(|e| format!("bad parent run id `{p}`: {e}"))
        })
        .transpose()?;
    let status = status
        .parse::<WorkflowStatus>()
        .map_err(|e| format!("bad status: {e}"))?;
    let params: Map<String, Value> =
        serde_json::from_str(&params).map_err(|e| format!("bad params JSON: {e}"))?;
    Ok(RunRecord {
        id,
        workflow,
        status,
        created_at: time(created),
        finished_at: finished.map(time),
        params,
        definition,
        owner,
        cancel_requested: cancel,
        parent,
        tasks: TaskCounts::default(),
    })
}

/// How many tasks of the run with `ord` are in each state: an aggregate
/// over the run's key range that reads each row's `status` column only
/// (a task's result lies further on in its row, mostly in overflow pages,
/// and is never read).
fn count_tasks(conn: &Connection, ord: i64) -> Result<TaskCounts> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT status, COUNT(*) FROM tasks
             WHERE key BETWEEN ?1 * 4294967296 AND ?1 * 4294967296 + 4294967295 GROUP BY status",
        )
        .map_err(sql_err)?;
    let rows = stmt
        .query_map(params![ord], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, u32>(1)?))
        })
        .map_err(sql_err)?;
    let mut counts = TaskCounts::default();
    for row in rows {
        let (status, n) = row.map_err(sql_err)?;
        // A task with an unknown state is set aside when its run is read.
        if let Ok(s) = parse_status(&status) {
            counts.add(s, n);
        }
    }
    Ok(counts)
}

/// Reads one run, quarantining it when it cannot be read.
fn read_run(conn: &Connection, run: RunId) -> Result<Option<RunRecord>> {
    let key = run.to_string();
    let raw = conn
        .query_row(
            &format!("SELECT {RUN_COLUMNS}, quarantined, ord FROM runs WHERE id = ?1"),
            params![key],
            |r| {
                Ok((
                    raw_run(r)?,
                    r.get::<_, Option<String>>(RUN_COLUMN_COUNT)?,
                    r.get::<_, i64>(RUN_COLUMN_COUNT + 1)?,
                ))
            },
        )
        .optional()
        .map_err(sql_err)?;
    match raw {
        None => Ok(None),
        Some((_, Some(why), _)) => Err(store_err(
            &format!("run {key} is quarantined"),
            format!("it could not be read: {why}"),
        )),
        Some((raw, None, ord)) => match decode_run(raw) {
            Ok(r) => Ok(Some(RunRecord {
                tasks: count_tasks(conn, ord)?,
                ..r
            })),
            Err(why) => {
                quarantine(conn, &key, &why)?;
                Err(store_err(&format!("run {key} is quarantined"), why))
            }
        },
    }
}

fn decode_task(
    run: RunId,
    r: &rusqlite::Row<'_>,
) -> rusqlite::Result<std::result::Result<TaskRecord, String>> {
    let idx: u32 = r.get(0)?;
    let name: String = r.get(1)?;
    let status: String = r.get(2)?;
    let attempt: u32 = r.get(3)?;
    let remaining: u32 = r.get(4)?;
    let priority: i64 = r.get(5)?;
    let worker: Option<String> = r.get(6)?;
    let until: Option<i64> = r.get(7)?;
    let result: Option<String> = r.get(8)?;
    let note: Option<String> = r.get(9)?;
    let started: Option<i64> = r.get(10)?;
    let finished: Option<i64> = r.get(11)?;
    Ok((|| {
        let status = parse_status(&status).map_err(|e| format!("task {idx}: bad status: {e}"))?;
        let result = result
            .map(|t| serde_json::from_str::<TaskResult>(&t))
            .transpose()
            .map_err(|e| format!("task {idx}: bad result JSON: {e}"))?;
        Ok(TaskRecord {
            run,
            index: idx,
            name,
            status,
            attempt,
            remaining,
            priority: priority_from(priority),
            lease: worker.zip(until).map(|(worker, until)| Lease {
                worker,
                until: time(until),
            }),
            result,
            note,
            started_at: started.map(time),
            finished_at: finished.map(time),
        })
    })())
}

fn read_tasks(conn: &Connection, run: RunId) -> Result<Vec<TaskRecord>> {
    let key = run.to_string();
    let Some(ord) = run_ord(conn, &key)? else {
        return Ok(Vec::new());
    };
    let mut stmt = conn
        .prepare_cached(
            "SELECT idx, name, status, attempt, remaining, priority, lease_worker, lease_until, result, note, started_at, finished_at
             FROM tasks WHERE key BETWEEN ?1 * 4294967296 AND ?1 * 4294967296 + 4294967295 ORDER BY key",
        )
        .map_err(sql_err)?;
    let rows = stmt
        .query_map(params![ord], |r| decode_task(run, r))
        .map_err(sql_err)?;
    let mut out = Vec::new();
    for row in rows {
        match row.map_err(sql_err)? {
            Ok(t) => out.push(t),
            Err(why) => {
                quarantine(conn, &key, &why)?;
                return Err(store_err(&format!("run {key} is quarantined"), why));
            }
        }
    }
    Ok(out)
}

fn task_state(conn: &Connection, ord: i64, idx: u32) -> Result<Option<(String, TaskStatus, u32)>> {
    let row = conn
        .prepare_cached("SELECT name, status, attempt FROM tasks WHERE key = ?1 * 4294967296 + ?2")
        .and_then(|mut s| {
            s.query_row(params![ord, idx], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, u32>(2)?,
                ))
            })
            .optional()
        })
        .map_err(sql_err)?;
    match row {
        None => Ok(None),
        Some((name, status, attempt)) => {
            let status = parse_status(&status).map_err(|e| store_err("task status", e))?;
            Ok(Some((name, status, attempt)))
        }
    }
}

/// Finishes one task, checked, and releases its dependents (inside the
/// caller's transaction).
fn finish_one(
    conn: &Connection,
    run: &str,
    ord: i64,
    idx: u32,
    attempt: u32,
    outcome: TaskOutcome,
    now: DateTime<Utc>,
) -> Result<()> {
    finish_state(conn, ord, idx, attempt, 0, outcome, now)?;
    release_dependents(conn, run, ord, &[idx])
}

/// The dependents of each task of one run, by task index.
type Dependents = std::rc::Rc<Vec<Vec<u32>>>;

thread_local! {
    /// The dependents of each task of the runs this thread worked on last,
    /// so that finishing a task needs no read to find them. They never
    /// change once a run is created; a run missing here is loaded from
    /// the `dependents` column of its tasks. Keyed by the run's id, not its
    /// `ord`: an `ord` taken by a create that rolled back can be taken again
    /// by another process's run.
    static DEPENDENTS: std::cell::RefCell<Vec<(String, Dependents)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// How many runs' dependents the store thread keeps.
const DEPENDENTS_KEPT: usize = 4;

fn remember_dependents(run: &str, dependents: Dependents) {
    DEPENDENTS.with(|c| {
        let mut c = c.borrow_mut();
        c.retain(|(r, _)| r != run);
        if c.len() >= DEPENDENTS_KEPT {
            c.remove(0);
        }
        c.push((run.to_owned(), dependents));
    });
}

/// The dependents of every task of `run`, from memory or from the database.
fn dependents_of(conn: &Connection, run: &str, ord: i64) -> Result<Dependents> {
    if let Some(d) = DEPENDENTS.with(|c| {
        c.borrow()
            .iter()
            .find(|(r, _)| r == run)
            .map(|(_, d)| d.clone())
    }) {
        return Ok(d);
    }
    let n: u32 = conn
        .query_row(
            "SELECT COALESCE(MAX(idx) + 1, 0) FROM tasks WHERE key BETWEEN ?1 * 4294967296 AND ?1 * 4294967296 + 4294967295",
            params![ord],
            |r| r.get(0),
        )
        .map_err(sql_err)?;
    let mut all = vec![Vec::new(); n as usize];
    let mut stmt = conn
        .prepare_cached(
            "SELECT idx, dependents FROM tasks WHERE key BETWEEN ?1 * 4294967296 AND ?1 * 4294967296 + 4294967295 AND dependents IS NOT NULL",
        )
        .map_err(sql_err)?;
    let rows = stmt
        .query_map(params![ord], |r| {
            Ok((r.get::<_, u32>(0)?, r.get::<_, String>(1)?))
        })
        .map_err(sql_err)?;
    for row in rows {
        let (i, list) = row.map_err(sql_err)?;
        let ds: Vec<u32> =
            serde_json::from_str(&list).map_err(|e| store_err("task dependents", e))?;
        if let Some(slot) = all.get_mut(i as usize) {
            *slot = ds;
        }
    }
    let all = std::rc::Rc::new(all);
    remember_dependents(run, all.clone());
    Ok(all)
}

/// Lowers the counters of the dependents of the finished tasks `done` and
/// makes those reaching zero ready: each dependent is updated once, by
/// primary key, however many of its dependencies finished.
fn release_dependents(conn: &Connection, run: &str, ord: i64, done: &[u32]) -> Result<()> {
    if done.is_empty() {
        return Ok(());
    }
    let all = dependents_of(conn, run, ord)?;
    let mut counts: Vec<(u32, i64)> = Vec::new();
    for &i in done {
        if let Some(ds) = all.get(i as usize) {
            counts.extend(ds.iter().map(|&d| (d, 1)));
        }
    }
    if counts.is_empty() {
        return Ok(());
    }
    counts.sort_unstable_by_key(|&(d, _)| d);
    counts.dedup_by(|next, kept| {
        if next.0 == kept.0 {
            kept.1 += next.1;
            true
        } else {
            false
        }
    });
    let mut lower = conn
        .prepare_cached(
            "UPDATE tasks SET remaining = MAX(remaining - ?3, 0),
                 status = CASE WHEN remaining <= ?3 AND status = 'pending' THEN 'ready' ELSE status END
             WHERE key = ?1 * 4294967296 + ?2 AND remaining > 0",
        )
        .map_err(sql_err)?;
    for (d, n) in counts {
        lower.execute(params![ord, d, n]).map_err(sql_err)?;
    }
    Ok(())
}

/// Finishes tasks of a run and releases their dependents (`Store::finish_tasks`).
fn finish_in(conn: &Connection, run: RunId, done: Vec<Finished>, now: DateTime<Utc>) -> Result<()> {
    let key = run.to_string();
    let ord = require_run(conn, &key)?;
    let n = done.len() as u64;
    let mut indices: Vec<u32> = done.iter().map(|f| f.index).collect();
    indices.sort_unstable();
    if indices.windows(2).any(|w| w[0] == w[1]) {
        return Err(invalid("finish: a task appears twice in one batch".into()));
    }
    // One prepared single-row statement per task (a batched
    // `UPDATE .. FROM json_each(..)` made SQLite re-parse the JSON
    // once per row it scanned: quadratic in the batch).
    for f in done {
        finish_state(conn, ord, f.index, f.attempt, f.retries, f.outcome, now)?;
    }
    release_dependents(conn, &key, ord, &indices)?;
    finish_run_if_done(conn, &key, ord, n, now)
}

/// Starts ready tasks of the run with `ord` (`Store::start_tasks`): each
/// is read, then written, by its key (a single `UPDATE .. RETURNING` over
/// the batch made SQLite build a temporary table for the returned rows).
fn start_in(
    conn: &Connection,
    ord: i64,
    tasks: &[u32],
    worker: &str,
    until: i64,
    now: DateTime<Utc>,
) -> Result<Vec<u32>> {
    let mut read = conn
        .prepare_cached("SELECT name, status, attempt FROM tasks WHERE key = ?1 * 4294967296 + ?2")
        .map_err(sql_err)?;
    let mut write = conn
        .prepare_cached(
            "UPDATE tasks SET status = 'running', attempt = ?3, lease_worker = ?4,
                 lease_until = ?5, started_at = ?6
             WHERE key = ?1 * 4294967296 + ?2",
        )
        .map_err(sql_err)?;
    let at = micros(now);
    let mut out = Vec::with_capacity(tasks.len());
    for &i in tasks {
        let row = read
            .query_row(params![ord, i], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, u32>(2)?,
                ))
            })
            .optional()
            .map_err(sql_err)?;
        let Some((name, status, attempt)) = row else {
            return Err(invalid(format!("start: the run has no task {i}")));
        };
        // A task named twice is running by its second mention.
        if status != "ready" {
            return Err(invalid(format!(
                "start: task `{name}` is {status}, not ready (or named twice)"
            )));
        }
        let next = attempt + 1;
        write
            .execute(params![ord, i, next, worker, until, at])
            .map_err(sql_err)?;
        out.push(next);
    }
    Ok(out)
}

/// Appends events to a run's log, numbering them (`Store::append_events`).
fn append_in(conn: &Connection, run: RunId, events: Vec<StoredEvent>) -> Result<()> {
    let key = run.to_string();
    require_run(conn, &key)?;
    let next: u64 = conn
        .prepare_cached("SELECT COALESCE(MAX(seq), 0) + 1 FROM events WHERE run = ?1")
        .and_then(|mut s| s.query_row(params![key], |r| r.get::<_, i64>(0)))
        .map_err(sql_err)? as u64;
    let mut stmt = conn
        .prepare_cached(
            "INSERT INTO events (run, seq, at, kind, task, data) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )
        .map_err(sql_err)?;
    for (i, e) in events.into_iter().enumerate() {
        stmt.execute(params![
            key,
            (next + i as u64) as i64,
            micros(e.at),
            e.kind,
            e.task,
            serde_json::to_string(&e.data).map_err(|x| store_err("event data", x))?
        ])
        .map_err(sql_err)?;
    }
    Ok(())
}

/// Finishes one task, checked, without touching its dependents; `retries`
/// more attempts are added to its count (attempts made within this start).
fn finish_state(
    conn: &Connection,
    ord: i64,
    idx: u32,
    attempt: u32,
    retries: u32,
    outcome: TaskOutcome,
    now: DateTime<Utc>,
) -> Result<()> {
    let next = outcome.status();
    let (result, note) = match outcome {
        TaskOutcome::Succeeded { result } | TaskOutcome::Failed { result } => (
            Some(serde_json::to_string(&result).map_err(|e| store_err("result", e))?),
            None,
        ),
        TaskOutcome::Skipped { reason } => (None, Some(reason)),
        TaskOutcome::Cancelled => (None, None),
    };
    // The common case, a running attempt ending, in one statement; anything
    // else (and every refusal) takes the checked path.
    // (Not `RETURNING`: SQLite builds a temporary table for each statement
    // that returns rows, which costs more than the lookup below.)
    let fast = attempt > 0
        && matches!(next, TaskStatus::Completed | TaskStatus::Failed | TaskStatus::Cancelled)
        && conn
            .prepare_cached(
                "UPDATE tasks SET status = ?3, result = ?4, note = COALESCE(?5, note), finished_at = ?6,
                     lease_worker = NULL, lease_until = NULL, attempt = attempt + ?8
                 WHERE key = ?1 * 4294967296 + ?2 AND status = 'running' AND attempt = ?7",
            )
            .and_then(|mut s| {
                s.execute(params![
                    ord,
                    idx,
                    next.as_str(),
                    result,
                    note,
                    micros(now),
                    attempt,
                    retries
                ])
            })
            .map_err(sql_err)?
            == 1;
    if !fast {
        let Some((name, status, current)) = task_state(conn, ord, idx)? else {
            return Err(invalid(format!("finish: the run has no task {idx}")));
        };
        let fits = if attempt > 0 {
            status == TaskStatus::Running && current == attempt
        } else {
            status != TaskStatus::Running && !status.is_terminal()
        };
        if !fits {
            return Err(invalid(format!(
                "finish: attempt {attempt} of task `{name}` is no longer current (it is {} at attempt {current})",
                status.as_str()
            )));
        }
        let mut check = status;
        if check.transition(next).is_err() {
            let mut via = status;
            if !(attempt == 0
                && status == TaskStatus::Pending
                && via.transition(TaskStatus::Ready).is_ok()
                && via.transition(next).is_ok())
            {
                return Err(invalid(format!(
                    "finish: task `{name}` cannot go from {} to {}",
                    status.as_str(),
                    next.as_str()
                )));
            }
        }
        conn.prepare_cached(
            "UPDATE tasks SET status = ?3, result = ?4, note = COALESCE(?5, note), finished_at = ?6,
                 lease_worker = NULL, lease_until = NULL,
                 attempt = attempt + CASE WHEN ?7 > 0 THEN ?8 ELSE 0 END
             WHERE key = ?1 * 4294967296 + ?2",
        )
        .and_then(|mut s| {
            s.execute(params![
                ord,
                idx,
                next.as_str(),
                result,
                note,
                micros(now),
                attempt,
                retries
            ])
        })
        .map_err(sql_err)?;
    }
    Ok(())
}

/// Counts `done` more tasks of the run as final, and sets the run's final
/// status when none is left.
fn finish_run_if_done(
    conn: &Connection,
    run: &str,
    ord: i64,
    done: u64,
    now: DateTime<Utc>,
) -> Result<()> {
    let open: Option<i64> = conn
        .prepare_cached(
            "UPDATE run_open SET open = MAX(open - ?2, 0) WHERE run = ?1 RETURNING open",
        )
        .and_then(|mut s| {
            s.query_row(params![run, done as i64], |r| r.get(0))
                .optional()
        })
        .map_err(sql_err)?;
    let open = match open {
        Some(n) => n,
        None => {
            // A run from before the counter: count once, and keep the count.
            let n: i64 = conn
                .query_row(
                    "SELECT COUNT(*) FROM tasks WHERE key BETWEEN ?1 * 4294967296 AND ?1 * 4294967296 + 4294967295
                       AND status NOT IN ('completed', 'failed', 'cancelled', 'skipped')",
                    params![ord],
                    |r| r.get(0),
                )
                .map_err(sql_err)?;
            conn.execute(
                "INSERT OR REPLACE INTO run_open (run, open) VALUES (?1, ?2)",
                params![run, n],
            )
            .map_err(sql_err)?;
            n
        }
    };
    if open > 0 {
        return Ok(());
    }
    let (failed, cancelled): (i64, i64) = conn
        .prepare_cached(
            "SELECT SUM(status = 'failed'), SUM(status = 'cancelled') FROM tasks WHERE key BETWEEN ?1 * 4294967296 AND ?1 * 4294967296 + 4294967295",
        )
        .and_then(|mut s| {
            s.query_row(params![ord], |r| {
                Ok((
                    r.get::<_, Option<i64>>(0)?.unwrap_or(0),
                    r.get::<_, Option<i64>>(1)?.unwrap_or(0),
                ))
            })
        })
        .map_err(sql_err)?;
    let status = if failed > 0 {
        WorkflowStatus::Failed
    } else if cancelled > 0 {
        WorkflowStatus::Cancelled
    } else {
        WorkflowStatus::Completed
    };
    conn.prepare_cached(
        "UPDATE runs SET status = ?2, finished_at = ?3 WHERE id = ?1 AND status = 'running'",
    )
    .and_then(|mut s| s.execute(params![run, status.as_str(), micros(now)]))
    .map_err(sql_err)?;
    Ok(())
}

/// Runs, newest first (at most `limit`), without their definitions, with
/// their task counts: no task's result is read.
fn list_in(conn: &Connection, limit: Option<usize>) -> Result<Vec<RunRecord>> {
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {LIST_COLUMNS}, ord FROM runs WHERE quarantined IS NULL ORDER BY ord DESC LIMIT ?1"
        ))
        .map_err(sql_err)?;
    let limit = limit.map_or(-1, |n| i64::try_from(n).unwrap_or(i64::MAX));
    let rows: Vec<(RawRun, i64)> = stmt
        .query_map(params![limit], |r| {
            Ok((raw_run(r)?, r.get(RUN_COLUMN_COUNT)?))
        })
        .map_err(sql_err)?
        .collect::<rusqlite::Result<_>>()
        .map_err(sql_err)?;
    let mut out = Vec::with_capacity(rows.len());
    for (raw, ord) in rows {
        let key = raw.0.clone();
        match decode_run(raw) {
            Ok(r) => out.push(RunRecord {
                tasks: count_tasks(conn, ord)?,
                ..r
            }),
            Err(why) => quarantine(conn, &key, &why)?,
        }
    }
    Ok(out)
}

/// The run's `ord` (the key of its tasks), if there is such a run.
fn run_ord(conn: &Connection, run: &str) -> Result<Option<i64>> {
    conn.prepare_cached("SELECT ord FROM runs WHERE id = ?1")
        .and_then(|mut s| s.query_row(params![run], |r| r.get(0)).optional())
        .map_err(sql_err)
}

/// The run's `ord`, or `NotFound`.
fn require_run(conn: &Connection, run: &str) -> Result<i64> {
    run_ord(conn, run)?.ok_or_else(|| OrchestrationError::not_found(EntityKind::Run, run))
}

#[async_trait]
impl Store for SqliteStore {
    fn capabilities(&self) -> StoreCapabilities {
        StoreCapabilities {
            durable: true,
            distributed_claim: false,
            notify: false,
        }
    }

    async fn create_run(&self, run: NewRun, now: DateTime<Utc>) -> Result<()> {
        self.call(move |conn| {
            let id = run.id.to_string();
            let n = run.tasks.len() as u32;
            for (i, t) in run.tasks.iter().enumerate() {
                if let Some(d) = t.deps.iter().find(|&&d| d >= n || d as usize == i) {
                    return Err(OrchestrationError::invalid_parameters(format!(
                        "task {i} (`{}`) depends on {d}, which is not another task of the run",
                        t.name
                    )));
                }
            }
            let ord: i64 = conn
                .query_row("SELECT COALESCE(MAX(ord), 0) + 1 FROM runs", [], |r| {
                    r.get(0)
                })
                .map_err(sql_err)?;
            conn.execute(
                "INSERT INTO runs (id, ord, workflow, status, created_at, params, parent)
                 VALUES (?1, ?2, ?3, 'running', ?4, ?5, ?6)",
                params![
                    id,
                    ord,
                    run.workflow,
                    micros(now),
                    serde_json::to_string(&run.params).map_err(|e| store_err("params", e))?,
                    run.parent.map(|p| p.to_string()),
                ],
            )
            .map_err(|e| match e.sqlite_error_code() {
                Some(rusqlite::ErrorCode::ConstraintViolation) => {
                    OrchestrationError::AlreadyExists {
                        kind: EntityKind::Run,
                        name: id.clone(),
                        hint: None,
                    }
                }
                _ => sql_err(e),
            })?;
            conn.execute(
                "INSERT OR REPLACE INTO definitions (ord, text) VALUES (?1, ?2)",
                params![ord, run.definition],
            )
            .map_err(sql_err)?;
            conn.execute(
                "INSERT OR REPLACE INTO run_open (run, open) VALUES (?1, ?2)",
                params![id, n as i64],
            )
            .map_err(sql_err)?;
            // Each task's dependents, and its count of distinct dependencies.
            let mut dependents: Vec<Vec<u32>> = vec![Vec::new(); run.tasks.len()];
            let mut remaining = Vec::with_capacity(run.tasks.len());
            for (i, t) in run.tasks.iter().enumerate() {
                let mut deps = t.deps.clone();
                deps.sort_unstable();
                deps.dedup();
                for &d in &deps {
                    dependents[d as usize].push(i as u32);
                }
                remaining.push(deps.len() as u32);
            }
            let mut task = conn
                .prepare_cached(
                    "INSERT INTO tasks (key, run, idx, name, status, attempt, remaining, priority, dependents)
                     VALUES (?1 * 4294967296 + ?2, ?1, ?2, ?3, ?4, 0, ?5, ?6, ?7)",
                )
                .map_err(sql_err)?;
            for (i, t) in run.tasks.iter().enumerate() {
                let status = if t.deps.is_empty() {
                    "ready"
                } else {
                    "pending"
                };
                let ds = &dependents[i];
                let list = if ds.is_empty() {
                    None
                } else {
                    Some(serde_json::to_string(ds).map_err(|e| store_err("dependents", e))?)
                };
                task.execute(params![
                    ord,
                    i as u32,
                    t.name,
                    status,
                    remaining[i],
                    t.priority as i64,
                    list
                ])
                .map_err(sql_err)?;
            }
            remember_dependents(&id, std::rc::Rc::new(dependents));
            Ok(())
        })
        .await
    }

    async fn get_run(&self, id: RunId) -> Result<Option<RunRecord>> {
        self.call_keeping(move |conn| read_run(conn, id), true)
            .await
    }

    async fn list_runs(&self) -> Result<Vec<RunRecord>> {
        self.call(|conn| list_in(conn, None)).await
    }

    async fn recent_runs(&self, limit: usize) -> Result<Vec<RunRecord>> {
        self.call(move |conn| list_in(conn, Some(limit))).await
    }

    async fn tasks(&self, run: RunId) -> Result<Vec<TaskRecord>> {
        self.call_keeping(move |conn| read_tasks(conn, run), true)
            .await
    }

    async fn claim(
        &self,
        worker: &str,
        max: usize,
        lease: Duration,
        now: DateTime<Utc>,
    ) -> Result<Vec<Claim>> {
        let worker = worker.to_owned();
        self.call(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT r.id, t.idx, t.name, t.attempt, t.run FROM runs r JOIN tasks t
                         ON t.key BETWEEN r.ord * 4294967296 AND r.ord * 4294967296 + 4294967295
                     WHERE t.status = 'ready' AND r.status = 'running' AND r.quarantined IS NULL
                     ORDER BY t.priority DESC, r.ord, t.idx LIMIT ?1",
                )
                .map_err(sql_err)?;
            let picked: Vec<(String, u32, String, u32, i64)> = stmt
                .query_map(params![max as i64], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
                })
                .map_err(sql_err)?
                .collect::<rusqlite::Result<_>>()
                .map_err(sql_err)?;
            let mut out = Vec::with_capacity(picked.len());
            for (run, idx, name, attempt, ord) in picked {
                conn.prepare_cached(
                    "UPDATE tasks SET status = 'running', attempt = attempt + 1, lease_worker = ?3,
                         lease_until = ?4, started_at = ?5 WHERE key = ?1 * 4294967296 + ?2",
                )
                .and_then(|mut s| {
                    s.execute(params![
                        ord,
                        idx,
                        worker,
                        lease_until(now, lease),
                        micros(now)
                    ])
                })
                .map_err(sql_err)?;
                out.push(Claim {
                    run: run.parse().map_err(|e| store_err("run id", e))?,
                    index: idx,
                    name,
                    attempt: attempt + 1,
                    worker: worker.clone(),
                });
            }
            Ok(out)
        })
        .await
    }

    async fn heartbeat(&self, claim: &Claim, lease: Duration, now: DateTime<Utc>) -> Result<bool> {
        let c = claim.clone();
        self.call(move |conn| {
            let n = conn
                .execute(
                    "UPDATE tasks SET lease_until = ?4, lease_worker = ?5
                     WHERE key = (SELECT ord FROM runs WHERE id = ?1) * 4294967296 + ?2 AND attempt = ?3
                       AND status = 'running'",
                    params![
                        c.run.to_string(),
                        c.index,
                        c.attempt,
                        lease_until(now, lease),
                        c.worker
                    ],
                )
                .map_err(sql_err)?;
            Ok(n == 1)
        })
        .await
    }

    async fn complete(
        &self,
        claim: &Claim,
        outcome: TaskOutcome,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let c = claim.clone();
        self.call(move |conn| {
            let run = c.run.to_string();
            let ord = require_run(conn, &run)?;
            if c.attempt == 0 {
                return Err(invalid(format!(
                    "complete: attempt 0 of task `{}` was never claimed",
                    c.name
                )));
            }
            finish_one(conn, &run, ord, c.index, c.attempt, outcome, now)?;
            finish_run_if_done(conn, &run, ord, 1, now)
        })
        .await
    }

    async fn reclaim_expired(&self, now: DateTime<Utc>) -> Result<usize> {
        self.call(move |conn| {
            conn.execute(
                "UPDATE tasks SET status = 'ready', lease_worker = NULL, lease_until = NULL
                 WHERE key IN (
                     SELECT t.key FROM runs r JOIN tasks t
                         ON t.key BETWEEN r.ord * 4294967296 AND r.ord * 4294967296 + 4294967295
                     WHERE r.status = 'running' AND t.status = 'running' AND t.lease_until < ?1)",
                params![micros(now)],
            )
            .map_err(sql_err)
        })
        .await
    }

    async fn cancel_run(&self, run: RunId, now: DateTime<Utc>) -> Result<()> {
        self.call(move |conn| {
            let key = run.to_string();
            let ord = require_run(conn, &key)?;
            let n = conn
                .execute(
                    "UPDATE tasks SET status = 'cancelled', lease_worker = NULL, lease_until = NULL,
                     finished_at = ?2
                 WHERE key BETWEEN ?1 * 4294967296 AND ?1 * 4294967296 + 4294967295 AND status NOT IN ('completed', 'failed', 'cancelled', 'skipped')",
                    params![ord, micros(now)],
                )
                .map_err(sql_err)?;
            finish_run_if_done(conn, &key, ord, n as u64, now)
        })
        .await
    }

    async fn start_tasks(
        &self,
        run: RunId,
        tasks: &[u32],
        worker: &str,
        lease: Duration,
        now: DateTime<Utc>,
    ) -> Result<Vec<u32>> {
        let tasks = tasks.to_vec();
        let worker = worker.to_owned();
        self.call(move |conn| {
            let ord = require_run(conn, &run.to_string())?;
            start_in(conn, ord, &tasks, &worker, lease_until(now, lease), now)
        })
        .await
    }

    async fn finish_tasks(
        &self,
        run: RunId,
        done: Vec<Finished>,
        now: DateTime<Utc>,
    ) -> Result<()> {
        self.call(move |conn| finish_in(conn, run, done, now)).await
    }

    async fn finish_and_append(
        &self,
        run: RunId,
        done: Vec<Finished>,
        events: Vec<StoredEvent>,
        now: DateTime<Utc>,
    ) -> Result<()> {
        // One request, one savepoint: both happen or neither, in one commit.
        self.call(move |conn| {
            if !done.is_empty() {
                finish_in(conn, run, done, now)?;
            }
            if !events.is_empty() {
                append_in(conn, run, events)?;
            }
            Ok(())
        })
        .await
    }

    async fn finish_and_start(
        &self,
        run: RunId,
        done: Vec<Finished>,
        events: Vec<StoredEvent>,
        start: &[u32],
        worker: &str,
        lease: Duration,
        now: DateTime<Utc>,
    ) -> Result<Vec<u32>> {
        let start = start.to_vec();
        let worker = worker.to_owned();
        // One request, one savepoint, one commit: the finish, its events and
        // the start of what it released are durable together or not at all.
        self.call(move |conn| {
            if !done.is_empty() {
                finish_in(conn, run, done, now)?;
            }
            if !events.is_empty() {
                append_in(conn, run, events)?;
            }
            if start.is_empty() {
                return Ok(Vec::new());
            }
            let ord = require_run(conn, &run.to_string())?;
            start_in(conn, ord, &start, &worker, lease_until(now, lease), now)
        })
        .await
    }

    async fn requeue_running(&self, run: RunId) -> Result<usize> {
        self.call(move |conn| {
            let key = run.to_string();
            let ord = require_run(conn, &key)?;
            let n = conn
                .execute(
                    "UPDATE tasks SET status = 'ready', lease_worker = NULL, lease_until = NULL
                     WHERE key BETWEEN ?1 * 4294967296 AND ?1 * 4294967296 + 4294967295 AND status = 'running'",
                    params![ord],
                )
                .map_err(sql_err)?;
            if n > 0 {
                conn.execute(
                    "UPDATE runs SET status = 'running', finished_at = NULL WHERE id = ?1",
                    params![key],
                )
                .map_err(sql_err)?;
            }
            Ok(n)
        })
        .await
    }

    async fn finish_run(
        &self,
        run: RunId,
        status: WorkflowStatus,
        now: DateTime<Utc>,
    ) -> Result<()> {
        self.call(move |conn| {
            let n = conn
                .execute(
                    "UPDATE runs SET status = ?2, finished_at = ?3 WHERE id = ?1",
                    params![run.to_string(), status.as_str(), micros(now)],
                )
                .map_err(sql_err)?;
            if n == 0 { Err(not_found(run)) } else { Ok(()) }
        })
        .await
    }

    async fn set_owner(&self, run: RunId, owner: Option<String>) -> Result<()> {
        self.call(move |conn| {
            let n = conn
                .execute(
                    "UPDATE runs SET owner = ?2 WHERE id = ?1",
                    params![run.to_string(), owner],
                )
                .map_err(sql_err)?;
            if n == 0 { Err(not_found(run)) } else { Ok(()) }
        })
        .await
    }

    async fn take_over(&self, run: RunId, expected: Option<&str>, owner: &str) -> Result<TakeOver> {
        let (expected, owner) = (expected.map(str::to_owned), owner.to_owned());
        self.call(move |conn| {
            let key = run.to_string();
            // One statement compares and sets, under the write lock of the
            // transaction (`BEGIN IMMEDIATE`): of two processes, the second
            // sees the first one's owner and changes nothing.
            let n = conn
                .execute(
                    "UPDATE runs SET owner = ?3
                     WHERE id = ?1 AND status = 'running' AND owner IS ?2",
                    params![key, expected, owner],
                )
                .map_err(sql_err)?;
            if n == 1 {
                return Ok(TakeOver::Taken);
            }
            let now: Option<(String, Option<String>)> = conn
                .query_row(
                    "SELECT status, owner FROM runs WHERE id = ?1",
                    params![key],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()
                .map_err(sql_err)?;
            match now {
                None => Err(not_found(run)),
                Some((status, owner)) => match status.parse::<WorkflowStatus>() {
                    Ok(WorkflowStatus::Running) => Ok(TakeOver::Held { owner }),
                    Ok(status) => Ok(TakeOver::Ended { status }),
                    Err(e) => Err(store_err(&format!("run {key}"), format!("bad status: {e}"))),
                },
            }
        })
        .await
    }

    async fn request_cancel(&self, run: RunId) -> Result<bool> {
        self.call(move |conn| {
            let key = run.to_string();
            require_run(conn, &key)?;
            let n = conn
                .execute(
                    "UPDATE runs SET cancel_requested = 1 WHERE id = ?1 AND status = 'running'",
                    params![key],
                )
                .map_err(sql_err)?;
            Ok(n == 1)
        })
        .await
    }

    async fn cancel_requested(&self, run: RunId) -> Result<bool> {
        self.call(move |conn| {
            conn.query_row(
                "SELECT cancel_requested FROM runs WHERE id = ?1",
                params![run.to_string()],
                |r| r.get::<_, bool>(0),
            )
            .optional()
            .map_err(sql_err)
            .map(|v| v.unwrap_or(false))
        })
        .await
    }

    async fn problems(&self) -> Result<Vec<String>> {
        self.call(|conn| {
            let mut stmt = conn
                .prepare("SELECT tbl, key, reason FROM quarantine ORDER BY id")
                .map_err(sql_err)?;
            let rows = stmt
                .query_map([], |r| {
                    Ok(format!(
                        "{} row {} set aside: {}",
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?
                    ))
                })
                .map_err(sql_err)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(sql_err)?;
            Ok(rows)
        })
        .await
    }

    async fn append_events(&self, run: RunId, events: Vec<StoredEvent>) -> Result<()> {
        self.call(move |conn| append_in(conn, run, events)).await
    }
    async fn events(&self, run: RunId, after: u64) -> Result<Vec<StoredEvent>> {
        self.call(move |conn| {
            let mut stmt = conn
                .prepare_cached("SELECT seq, at, kind, task, data FROM events WHERE run = ?1 AND seq > ?2 ORDER BY seq")
                .map_err(sql_err)?;
            let rows = stmt
                .query_map(params![run.to_string(), after as i64], |r| {
                    let data: String = r.get(4)?;
                    Ok(StoredEvent {
                        seq: r.get::<_, i64>(0)? as u64,
                        at: time(r.get(1)?),
                        kind: r.get(2)?,
                        task: r.get(3)?,
                        data: serde_json::from_str(&data).unwrap_or(Value::String(data)),
                    })
                })
                .map_err(sql_err)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(sql_err)?;
            Ok(rows)
        })
        .await
    }

    async fn cache_get(&self, key: &str) -> Result<Option<CacheEntry>> {
        let key = key.to_owned();
        self.call(move |conn| {
            let row = conn
                .query_row(
                    "SELECT value, created_at FROM cache WHERE key = ?1",
                    params![key],
                    |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)),
                )
                .optional()
                .map_err(sql_err)?;
            Ok(row.and_then(|(v, at)| {
                // An unreadable entry is a miss; it is overwritten by the next put.
                serde_json::from_str(&v).ok().map(|value| CacheEntry {
                    key,
                    value,
                    created_at: time(at),
                })
            }))
        })
        .await
    }

    async fn cache_put(&self, entry: CacheEntry) -> Result<()> {
        self.call(move |conn| {
            conn.execute(
                "INSERT OR REPLACE INTO cache (key, value, created_at) VALUES (?1, ?2, ?3)",
                params![
                    entry.key,
                    serde_json::to_string(&entry.value).map_err(|e| store_err("cache value", e))?,
                    micros(entry.created_at)
                ],
            )
            .map_err(sql_err)?;
            Ok(())
        })
        .await
    }

    async fn cache_list(&self) -> Result<Vec<CacheEntry>> {
        self.call(|conn| {
            let mut stmt = conn
                .prepare("SELECT key, value, created_at FROM cache ORDER BY key")
                .map_err(sql_err)?;
            let rows = stmt
                .query_map([], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, i64>(2)?,
                    ))
                })
                .map_err(sql_err)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(sql_err)?;
            Ok(rows
                .into_iter()
                .filter_map(|(key, v, at)| {
                    serde_json::from_str(&v).ok().map(|value| CacheEntry {
                        key,
                        value,
                        created_at: time(at),
                    })
                })
                .collect())
        })
        .await
    }

    async fn cache_clear(&self) -> Result<usize> {
        self.call(|conn| conn.execute("DELETE FROM cache", []).map_err(sql_err))
            .await
    }

    async fn put_record(&self, record: Record) -> Result<()> {
        self.call(move |conn| {
            let data = serde_json::to_string(&record.data).map_err(|e| store_err("record", e))?;
            conn.execute(
                "INSERT OR REPLACE INTO records (kind, key, data, updated_at, seq)
                 VALUES (?1, ?2, ?3, ?4, (SELECT COALESCE(MAX(seq), 0) + 1 FROM records))",
                params![
                    record.kind.as_str(),
                    record.key,
                    data,
                    micros(record.updated_at)
                ],
            )
            .map_err(sql_err)?;
            Ok(())
        })
        .await
    }

    async fn remove_record(&self, kind: RecordKind, key: &str) -> Result<bool> {
        let key = key.to_owned();
        self.call(move |conn| {
            conn.execute(
                "DELETE FROM records WHERE kind = ?1 AND key = ?2",
                params![kind.as_str(), key],
            )
            .map(|n| n > 0)
            .map_err(sql_err)
        })
        .await
    }

    async fn records(&self, kind: RecordKind) -> Result<Vec<Record>> {
        self.call(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT key, data, updated_at FROM records WHERE kind = ?1 ORDER BY seq",
                )
                .map_err(sql_err)?;
            let rows = stmt
                .query_map(params![kind.as_str()], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, i64>(2)?,
                    ))
                })
                .map_err(sql_err)?;
            let mut out = Vec::new();
            for row in rows {
                let (key, data, at) = row.map_err(sql_err)?;
                // A record that does not parse is skipped and reported, not fatal.
                match serde_json::from_str(&data) {
                    Ok(data) => out.push(Record {
                        kind,
                        key,
                        data,
                        updated_at: time(at),
                    }),
                    // Read-only: skipped, and not written down.
                    Err(_) if conn.is_readonly(rusqlite::MAIN_DB).unwrap_or(true) => {}
                    Err(e) => conn
                        .execute(
                            "INSERT INTO quarantine (tbl, key, reason, at)
                             SELECT 'records', ?1, ?2, ?3 WHERE NOT EXISTS
                                 (SELECT 1 FROM quarantine WHERE tbl = 'records' AND key = ?1)",
                            params![
                                format!("{}:{key}", kind.as_str()),
                                format!("bad record JSON: {e}"),
                                micros(Utc::now())
                            ],
                        )
                        .map(|_| ())
                        .map_err(sql_err)?,
                }
            }
            Ok(out)
        })
        .await
    }
}
