//! `orch-store-sqlite`: the embedded durable store (`sqlite://PATH`), the CLI's default.
//!
//! One connection, used by a dedicated thread, serves every call in arrival
//! order. The thread commits in groups: it takes every request waiting in its
//! queue, runs each in a savepoint of one transaction, commits once, and only
//! then answers (a small request, a journaled run's turn, runs on its
//! caller's thread when the connection is free and nothing is queued), so an answer always means "durable" (WAL with
//! `synchronous=NORMAL`: a committed transaction survives the process being
//! killed at any moment; a power loss may lose the last ones). Several
//! processes may use one database file: SQLite's locks and a busy timeout
//! keep them apart. Short reads (one run's record, a run's cancel flag) run
//! on their caller's thread through a small pool of read-only connections,
//! which in WAL mode never wait for the writing one (see `readers.rs`).
//!
//! The schema has a version (`PRAGMA user_version`) and forward migrations,
//! applied when a database is opened. A row that cannot be read is set aside
//! (its run is marked quarantined and reported by [`Store::problems`](orch_model::Store::problems)),
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
//!     let task = NewTask { name: "a".into(), deps: vec![], priority: TaskPriority::Normal, needs: Default::default(), spec: None };
//!     let run = NewRun { id, workflow: "w".into(), definition: "{}".into(), params: Default::default(), tasks: vec![task], parent: None, owner: None, max_parallel: None };
//!     store.create_run(run, chrono::Utc::now()).await.unwrap();
//!     assert_eq!(store.list_runs().await.unwrap().len(), 1);
//! });
//! ```

mod claims;
mod error;
mod finish;
mod leader;
mod open;
mod output;
mod readers;
mod records;
mod rows;
mod schema;
mod stamp;
mod store;
mod thread;

pub use open::SqliteOptions;
pub use schema::{MIGRATIONS, SCHEMA_VERSION};

use std::path::PathBuf;
use std::sync::mpsc;
use thread::Work;

/// The SQLite store. Cheap to share behind an `Arc`; dropping it stops its thread.
#[derive(Debug)]
pub struct SqliteStore {
    path: PathBuf,
    options: SqliteOptions,
    shared: std::sync::Arc<thread::Shared>,
    /// Read-only connections for short reads on the callers' threads.
    readers: readers::Readers,
    /// Runs' brief records kept while the database does not change.
    briefs: stamp::Briefs,
    tx: Option<mpsc::Sender<Work>>,
    thread: Option<std::thread::JoinHandle<()>>,
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
