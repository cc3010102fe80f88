//! A small pool of read-only connections for short reads (one run's
//! record, a run's stored events, a cancel flag): in WAL mode a reader
//! never waits for the writer, so such a read runs on its caller's thread
//! even while the store's thread is committing, without the two thread
//! switches of a request sent there and without holding up the writes
//! queued behind it.
//!
//! Every read through the pool answers only what the writing connection
//! would have answered:
//! - it is one read transaction, begun after every write whose answer was
//!   given (an answer comes after its commit, and a WAL reader sees every
//!   commit made before its transaction began);
//! - the database's path must still name the file the writing connection
//!   opened (checked after the read, as the store's thread checks after a
//!   commit, and at most every [`RECHECK`]: the `stat` of the path was a
//!   twentieth of the time of `GET /runs/{id}` under load); otherwise the request is given to
//!   the store's thread, which reports the file deleted or replaced. Once
//!   the store knows its file is gone, no read goes through the pool. A
//!   file deleted or replaced by someone else may thus give, for at most
//!   [`RECHECK`], the answers it gave just before, never anything written
//!   after;
//! - a read that fails (a row that cannot be decoded, which the writing
//!   connection sets aside; a busy or broken database) is done again on the
//!   store's thread, whose answer is the one given.
//!
//! With no free pooled connection (each is used by one caller at a time),
//! a read-only store, or a store whose database is not open yet (a lazily
//! opened one), the request goes the usual way.

use crate::SqliteStore;
use crate::open::file_id;
use orch_model::Result;
use rusqlite::{Connection, OpenFlags};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Most pooled connections (each keeps its own page cache).
const MOST: usize = 8;

/// How long a check that the path names the store's file holds for reads.
pub(crate) const RECHECK: Duration = Duration::from_millis(50);

/// The read-only connections, opened when first needed.
pub(crate) struct Readers {
    slots: Vec<Mutex<Option<Connection>>>,
    /// Where the next caller starts looking for a free slot.
    next: AtomicUsize,
    /// The device and inode of the file the writing connection opened.
    file: OnceLock<(u64, u64)>,
    /// Set when the store's thread found its file deleted or replaced.
    gone: Arc<AtomicBool>,
    /// When the path was last seen naming the file, as milliseconds after
    /// `since`, plus one (0: never).
    checked: AtomicU64,
    since: Instant,
}

impl std::fmt::Debug for Readers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Readers")
            .field("slots", &self.slots.len())
            .finish_non_exhaustive()
    }
}

impl Readers {
    /// A pool of as many connections as the machine has cores (2 to
    /// [`MOST`]): reads run on the callers' threads, of which an async
    /// runtime has one per core.
    pub(crate) fn new(gone: Arc<AtomicBool>) -> Self {
        let n = std::thread::available_parallelism()
            .map_or(2, std::num::NonZero::get)
            .clamp(2, MOST);
        Self {
            slots: (0..n).map(|_| Mutex::new(None)).collect(),
            next: AtomicUsize::new(0),
            file: OnceLock::new(),
            gone,
            checked: AtomicU64::new(0),
            since: Instant::now(),
        }
    }

    /// The writing connection's file, once known.
    pub(crate) fn file(&self) -> Option<(u64, u64)> {
        self.file.get().copied()
    }

    /// Records the writing connection's file (the first one given stays).
    pub(crate) fn set_file(&self, id: (u64, u64)) {
        let _ = self.file.set(id);
    }

    /// Runs `f` in a read transaction on a free pooled connection of the
    /// database at `path`. `None`: not done (no free connection, the
    /// writer's file not known, a failure, or the path naming another file
    /// now): the caller gives the request to the store's thread.
    pub(crate) fn read<T>(
        &self,
        path: &Path,
        f: impl FnOnce(&Connection) -> Result<T>,
    ) -> Option<T> {
        self.read_on(path, |conn| in_transaction(conn, f))
    }

    /// As [`Readers::read`], for `f` that runs one statement: the
    /// statement is its own read transaction (no `BEGIN` and `COMMIT`).
    pub(crate) fn read_one<T>(
        &self,
        path: &Path,
        f: impl FnOnce(&Connection) -> Result<T>,
    ) -> Option<T> {
        self.read_on(path, |conn| f(conn).ok())
    }

    fn read_on<T>(&self, path: &Path, f: impl FnOnce(&Connection) -> Option<T>) -> Option<T> {
        let file = self.file()?;
        if self.gone.load(Ordering::Acquire) {
            return None;
        }
        let n = self.slots.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let mut slot = (0..n).find_map(|k| self.slots[(start + k) % n].try_lock().ok())?;
        if slot.is_none() {
            *slot = Some(open_reader(path).ok()?);
        }
        let conn = slot.as_ref()?;
        let out = f(conn);
        if out.is_none() {
            // Whatever went wrong, a fresh connection next time.
            *slot = None;
            return None;
        }
        drop(slot);
        // The read is good only from the file the store writes.
        if self.names_file(path, file) {
            out
        } else {
            None
        }
    }

    /// Whether what was read from the store's file may be given: the store
    /// has not found its file gone, and `path` named the writing
    /// connection's file within the last [`RECHECK`].
    pub(crate) fn still_ours(&self, path: &Path) -> bool {
        match self.file() {
            Some(file) => !self.gone.load(Ordering::Acquire) && self.names_file(path, file),
            None => false,
        }
    }

    /// Whether `path` names `file` (checked at most every [`RECHECK`]).
    fn names_file(&self, path: &Path, file: (u64, u64)) -> bool {
        let now = u64::try_from(self.since.elapsed().as_millis()).unwrap_or(u64::MAX);
        let last = self.checked.load(Ordering::Relaxed);
        if last != 0 && now.saturating_sub(last - 1) < RECHECK.as_millis() as u64 {
            return true;
        }
        match file_id(path) {
            Ok(id) if id == file => {
                self.checked.store(now + 1, Ordering::Relaxed);
                true
            }
            _ => false,
        }
    }
}

/// `f` in one read transaction (`BEGIN` ... `COMMIT`): its statements see
/// one state of the database.
fn in_transaction<T>(conn: &Connection, f: impl FnOnce(&Connection) -> Result<T>) -> Option<T> {
    conn.prepare_cached("BEGIN").ok()?.execute([]).ok()?;
    let out = f(conn);
    let end = conn
        .prepare_cached("COMMIT")
        .and_then(|mut s| s.execute([]));
    if end.is_err() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    match (out, end) {
        (Ok(v), Ok(_)) => Some(v),
        _ => None,
    }
}

/// A read-only connection to the (WAL) database at `path`, which the store's
/// writing connection has opened and migrated.
fn open_reader(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    // A WAL reader is hardly ever told "busy" (while a crashed writer's log
    // is recovered): it then gives the request to the store's thread
    // rather than hold its caller's thread.
    conn.busy_timeout(Duration::from_millis(20))?;
    // Pages come from the operating system's cache through the map, as the
    // writing connection's do; a smaller page cache of its own each.
    conn.execute_batch(
        "PRAGMA cache_size = -16384; PRAGMA mmap_size = 268435456; PRAGMA temp_store = MEMORY;",
    )?;
    conn.set_prepared_statement_cache_capacity(32);
    Ok(conn)
}

impl SqliteStore {
    /// A short read (`f` reads a few rows): through a pooled read-only
    /// connection on this thread when [`Readers::read`] can, otherwise as
    /// [`SqliteStore::call_small_keeping`] does (which also runs `f` again
    /// when the pooled read failed, so that its errors and the rows it sets
    /// aside are the writing connection's).
    pub(crate) async fn read_small<T, F>(&self, f: F, keep_on_error: bool) -> Result<T>
    where
        T: Send + 'static,
        F: Fn(&Connection) -> Result<T> + Clone + Send + 'static,
    {
        self.read_pooled(f, keep_on_error, false).await
    }

    /// As [`SqliteStore::read_small`], for `f` that runs one statement
    /// ([`Readers::read_one`]).
    pub(crate) async fn read_statement<T, F>(&self, f: F, keep_on_error: bool) -> Result<T>
    where
        T: Send + 'static,
        F: Fn(&Connection) -> Result<T> + Clone + Send + 'static,
    {
        self.read_pooled(f, keep_on_error, true).await
    }

    /// `f` on a pooled reader (in a transaction of its own unless it is
    /// `one_statement`), else on the store's thread.
    async fn read_pooled<T, F>(&self, f: F, keep_on_error: bool, one_statement: bool) -> Result<T>
    where
        T: Send + 'static,
        F: Fn(&Connection) -> Result<T> + Clone + Send + 'static,
    {
        if !self.options.read_only && self.writer_file().is_some() {
            let pooled = if one_statement {
                self.readers.read_one(&self.path, f.clone())
            } else {
                self.readers.read(&self.path, f.clone())
            };
            if let Some(v) = pooled {
                return Ok(v);
            }
        }
        self.call_small_keeping(f, keep_on_error).await
    }

    /// The database's change stamp ([`crate::stamp`]), when reads may be
    /// answered from what was read under it: a store that writes, whose
    /// connection has the database open.
    pub(crate) fn unchanged_stamp(&self) -> Option<crate::stamp::Stamp> {
        if self.options.read_only || self.writer_file().is_none() {
            return None;
        }
        self.briefs.stamp(&self.path)
    }

    /// The file the writing connection opened, once it is open.
    fn writer_file(&self) -> Option<(u64, u64)> {
        if let Some(id) = self.readers.file() {
            return Some(id);
        }
        let id = self.shared.writer_file()?;
        self.readers.set_file(id);
        Some(id)
    }
}
