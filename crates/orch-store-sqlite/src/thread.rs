//! The store's thread: it owns the connection and commits in groups
//! everything queued (each request in a savepoint of one transaction), then
//! answers each request.

use crate::SqliteStore;
use crate::error::{lost, sql_err, store_err};
use crate::open::{Conn, SqliteOptions, connect, file_id};
use orch_model::{OrchestrationError, Result};
use rusqlite::Connection;
use std::path::{Path, PathBuf};
use std::sync::mpsc;

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
    pub(crate) fn start(path: &Path, options: SqliteOptions, conn: Option<Conn>) -> Result<Self> {
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

    /// [`SqliteStore::call`]; with `keep_on_error`, the changes `f` made stay
    /// even when it fails (a read that quarantined a row it could not read).
    pub(crate) async fn call_keeping<T, F>(&self, f: F, keep_on_error: bool) -> Result<T>
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
