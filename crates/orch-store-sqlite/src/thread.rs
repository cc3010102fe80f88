//! The store's thread: it commits in groups everything queued (each request
//! in a savepoint of one transaction), then answers each request. A small
//! request finds the connection free and nothing queued most of the time:
//! it then runs on its caller's thread (`call_small`), saving two thread
//! switches.

use crate::SqliteStore;
use crate::error::{lost, sql_err, store_err};
use crate::open::{Conn, SqliteOptions, connect, file_id};
use orch_model::{OrchestrationError, Result};
use rusqlite::Connection;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, mpsc};

/// Most requests committed in one transaction.
const GROUP_LIMIT: usize = 512;

type Deliver = Box<dyn FnOnce(Option<&OrchestrationError>) + Send>;
/// One request: given the connection (or why there is none), it does its
/// work and says whether to keep its changes, and how to answer after the commit.
pub(crate) type Work = Box<
    dyn FnOnce(std::result::Result<&Connection, &OrchestrationError>) -> (bool, Deliver) + Send,
>;

/// Runs one statement through the connection's statement cache (a
/// transaction's `BEGIN`, `COMMIT` and savepoints are run for every request;
/// parsing them each time showed in profiles).
fn exec_cached(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}

/// The connection and what became of the database, shared by the store's
/// thread and the callers that run a small request on their own thread.
pub(crate) struct Slot {
    conn: Option<Conn>,
    /// Set when the database file was deleted or replaced: every later
    /// request gets this error, and nothing runs.
    gone: Option<OrchestrationError>,
    /// Set with `gone`; read without the lock by the pool of readers.
    noticed: Arc<AtomicBool>,
    /// The writing connection's file, set when it is opened; read without
    /// the lock by the pool of readers.
    file: Arc<OnceLock<(u64, u64)>>,
    path: PathBuf,
    options: SqliteOptions,
}

/// What the store's thread and its callers share.
pub(crate) struct Shared {
    pub(crate) slot: Mutex<Slot>,
    /// Requests sent to the thread and not yet answered: a caller runs its
    /// request itself only when none is waiting (so that requests keep their
    /// order).
    pub(crate) queued: AtomicUsize,
    /// As [`Slot::file`] (the same cell).
    file: Arc<OnceLock<(u64, u64)>>,
}

impl Shared {
    /// The device and inode of the file the writing connection opened:
    /// `None` before it is open (a lazily opened store) and for a read-only
    /// store. Read without the connection's lock: a caller answered by the
    /// store's thread must not find the connection busy delivering the
    /// answers and give its read to the thread, whose write transaction
    /// waits for any other process's writer (seen in CI).
    pub(crate) fn writer_file(&self) -> Option<(u64, u64)> {
        self.file.get().copied()
    }
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("queued", &self.queued.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// The store's thread: group commit of everything queued.
fn serve(shared: Arc<Shared>, rx: mpsc::Receiver<Work>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < GROUP_LIMIT {
            match rx.try_recv() {
                Ok(w) => batch.push(w),
                Err(_) => break,
            }
        }
        let n = batch.len();
        let mut slot = shared
            .slot
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        commit_group(&mut slot, batch);
        drop(slot);
        shared.queued.fetch_sub(n, Ordering::AcqRel);
    }
}

/// Runs `batch` in one transaction (each request in a savepoint when there
/// are several), commits once, then answers each request. With no
/// connection yet (a lazily opened store), it connects first.
fn commit_group(slot: &mut Slot, batch: Vec<Work>) {
    if let Some(err) = &slot.gone {
        for w in batch {
            let (_, deliver) = w(Err(err));
            deliver(None);
        }
        return;
    }
    if slot.conn.is_none() {
        match connect(&slot.path, slot.options) {
            Ok(c) => {
                if let Some(id) = c.file {
                    let _ = slot.file.set(id);
                }
                slot.conn = Some(c);
            }
            Err(err) => {
                for w in batch {
                    let (_, deliver) = w(Err(&err));
                    deliver(None);
                }
                return;
            }
        }
    }
    let Some(held) = slot.conn.as_ref() else {
        return;
    };
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
        return;
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
        match file_id(&slot.path) {
            Ok(now) if now == id => {}
            now => {
                let e = lost(&slot.path, now);
                slot.gone = Some(e.clone());
                slot.noticed.store(true, Ordering::Release);
                err = Some(e);
            }
        }
    }
    for d in deliveries {
        d(err.as_ref());
    }
}

impl SqliteStore {
    pub(crate) fn start(path: &Path, options: SqliteOptions, conn: Option<Conn>) -> Result<Self> {
        let (tx, rx) = mpsc::channel::<Work>();
        let noticed = Arc::new(AtomicBool::new(false));
        let file = Arc::new(OnceLock::new());
        if let Some(id) = conn.as_ref().and_then(|c| c.file) {
            let _ = file.set(id);
        }
        let shared = Arc::new(Shared {
            file: file.clone(),
            slot: Mutex::new(Slot {
                conn,
                gone: None,
                noticed: noticed.clone(),
                file,
                path: path.to_path_buf(),
                options,
            }),
            queued: AtomicUsize::new(0),
        });
        let theirs = shared.clone();
        let thread = std::thread::Builder::new()
            .name("orch-sqlite".into())
            .spawn(move || serve(theirs, rx))
            .map_err(|e| store_err("cannot start the store thread", e))?;
        Ok(Self {
            path: path.to_path_buf(),
            options,
            shared,
            readers: crate::readers::Readers::new(noticed),
            briefs: crate::stamp::Briefs::default(),
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    /// Runs `f` on the store's thread inside the current group transaction;
    /// the answer comes after the commit. An `Err` from `f` rolls back only
    /// its own changes.
    pub(crate) async fn call<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        self.call_keeping(f, false).await
    }

    /// [`SqliteStore::call`] for a small request (a turn of a journaled
    /// run, a claim): when nothing waits for the store's thread and the
    /// connection is free, it runs right here, on the caller's thread, in a
    /// transaction of its own; otherwise it joins the thread's next group.
    /// A chain of steps commits once per step: the two thread switches a
    /// request costs were about half of that commit's time.
    pub(crate) async fn call_small<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        self.call_small_keeping(f, false).await
    }

    /// [`SqliteStore::call_small`] with [`SqliteStore::call_keeping`]'s
    /// `keep_on_error`: a short read (one run's record) served on the
    /// caller's thread when the connection is free, without the two thread
    /// switches of a request to the store's thread.
    pub(crate) async fn call_small_keeping<T, F>(&self, f: F, keep_on_error: bool) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let (work, answer) = Self::work(f, keep_on_error);
        match self.run_here(work) {
            // Ran (and answered) here.
            None => answer
                .await
                .map_err(|_| store_err("closed", "the request ended without an answer"))?,
            Some(work) => self.send(work, answer).await,
        }
    }

    /// Runs `work` on this thread if nothing is queued and the connection
    /// is free; gives it back otherwise.
    fn run_here(&self, work: Work) -> Option<Work> {
        if self.shared.queued.load(Ordering::Acquire) != 0 {
            return Some(work);
        }
        let Ok(mut slot) = self.shared.slot.try_lock() else {
            return Some(work);
        };
        // Checked again under the lock: the thread takes the lock before it
        // lowers the count.
        if self.shared.queued.load(Ordering::Acquire) != 0 {
            return Some(work);
        }
        commit_group(&mut slot, vec![work]);
        None
    }

    /// Queues `work` for the store's thread and waits for its answer.
    async fn send<T>(
        &self,
        work: Work,
        answer: tokio::sync::oneshot::Receiver<Result<T>>,
    ) -> Result<T> {
        let tx = self
            .tx
            .as_ref()
            .ok_or_else(|| store_err("closed", "the store is shut down"))?;
        self.shared.queued.fetch_add(1, Ordering::AcqRel);
        if tx.send(work).is_err() {
            self.shared.queued.fetch_sub(1, Ordering::AcqRel);
            return Err(store_err("closed", "the store thread has stopped"));
        }
        answer
            .await
            .map_err(|_| store_err("closed", "the store thread stopped before answering"))?
    }

    /// A request and where its answer arrives after the commit.
    #[allow(clippy::type_complexity)]
    fn work<T, F>(f: F, keep_on_error: bool) -> (Work, tokio::sync::oneshot::Receiver<Result<T>>)
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
        (work, answer)
    }

    /// [`SqliteStore::call`]; with `keep_on_error`, the changes `f` made stay
    /// even when it fails (a read that quarantined a row it could not read).
    pub(crate) async fn call_keeping<T, F>(&self, f: F, keep_on_error: bool) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let (work, answer) = Self::work(f, keep_on_error);
        self.send(work, answer).await
    }
}
