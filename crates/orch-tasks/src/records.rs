//! `RecordWriter`: writes [`Record`]s (sessions, projects) to a store from
//! code that is not async.
//!
//! The engine's `create_session` and the project manager's calls are plain
//! functions, while `Store` is async. The writer owns a thread with a small
//! runtime of its own that writes what it is sent, in order; `flush` waits
//! until everything sent before it is written, and dropping the writer
//! writes what is queued before the thread ends, so a record sent before a
//! process exits normally is in the store.

use orch_model::{OrchestrationError, Record, RecordKind, Store};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

enum Job {
    Put(Record),
    Remove(RecordKind, String),
    Flush(mpsc::Sender<()>),
}

/// Writes records to a store in the background, in the order they are sent.
pub struct RecordWriter {
    tx: Mutex<Option<mpsc::Sender<Job>>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    errors: Arc<Mutex<Vec<String>>>,
}

impl std::fmt::Debug for RecordWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordWriter").finish_non_exhaustive()
    }
}

/// The most write failures kept for [`RecordWriter::errors`].
const ERRORS_KEPT: usize = 16;

impl RecordWriter {
    /// A writer to `store`.
    ///
    /// # Errors
    /// `Io` when the thread or its runtime cannot be started.
    pub fn new(store: Arc<dyn Store>) -> Result<Self, OrchestrationError> {
        let (tx, rx) = mpsc::channel::<Job>();
        let errors = Arc::new(Mutex::new(Vec::new()));
        let kept = errors.clone();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| OrchestrationError::Io {
                message: format!("cannot start the record writer's runtime: {e}"),
            })?;
        let thread = std::thread::Builder::new()
            .name("orch-records".into())
            .spawn(move || {
                for job in rx {
                    let failed = match job {
                        Job::Put(r) => {
                            let what = format!("{} `{}`", r.kind.as_str(), r.key);
                            rt.block_on(store.put_record(r)).err().map(|e| (what, e))
                        }
                        Job::Remove(kind, key) => {
                            let what = format!("removing {} `{key}`", kind.as_str());
                            rt.block_on(store.remove_record(kind, &key))
                                .err()
                                .map(|e| (what, e))
                        }
                        Job::Flush(done) => {
                            let _ = done.send(());
                            None
                        }
                    };
                    if let Some((what, e)) = failed {
                        let mut v = kept
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner);
                        if v.len() == ERRORS_KEPT {
                            v.remove(0);
                        }
                        v.push(format!("{what} was not recorded: {e}"));
                    }
                }
            })
            .map_err(|e| OrchestrationError::Io {
                message: format!("cannot start the record writer: {e}"),
            })?;
        Ok(Self {
            tx: Mutex::new(Some(tx)),
            thread: Mutex::new(Some(thread)),
            errors,
        })
    }

    fn send(&self, job: Job) {
        if let Some(tx) = self
            .tx
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_ref()
        {
            // The thread only ends when the sender is dropped, so this cannot fail.
            let _ = tx.send(job);
        }
    }

    /// Queues a record to be saved (replacing one of the same kind and key).
    pub fn put(&self, record: Record) {
        self.send(Job::Put(record));
    }

    /// Queues the removal of a record.
    pub fn remove(&self, kind: RecordKind, key: &str) {
        self.send(Job::Remove(kind, key.to_owned()));
    }

    /// Waits until everything queued before this call is written. Blocks the
    /// calling thread (briefly: one store write per queued record).
    pub fn flush(&self) {
        let (done, wait) = mpsc::channel();
        self.send(Job::Flush(done));
        let _ = wait.recv();
    }

    /// The latest writes that failed, one line each (oldest first).
    pub fn errors(&self) -> Vec<String> {
        self.errors
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

impl Drop for RecordWriter {
    fn drop(&mut self) {
        // Closing the channel lets the thread write what is queued, then end.
        drop(
            self.tx
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .take(),
        );
        if let Some(t) = self
            .thread
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
        {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryStore;
    use serde_json::json;

    fn rec(key: &str, n: i64) -> Record {
        Record {
            kind: RecordKind::Session,
            key: key.to_owned(),
            data: json!({"n": n}),
            updated_at: chrono::Utc::now(),
        }
    }

    fn read(store: &MemoryStore) -> Vec<(String, i64)> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        rt.block_on(store.records(RecordKind::Session))
            .expect("records")
            .into_iter()
            .map(|r| (r.key, r.data["n"].as_i64().unwrap_or(-1)))
            .collect()
    }

    #[test]
    fn writes_land_in_order_and_flush_waits_for_them() {
        let store = Arc::new(MemoryStore::new());
        let w = RecordWriter::new(store.clone()).expect("writer");
        w.put(rec("a", 1));
        w.put(rec("b", 2));
        w.put(rec("a", 3));
        w.remove(RecordKind::Session, "b");
        w.flush();
        assert_eq!(read(&store), vec![("a".to_owned(), 3)]);
        assert!(w.errors().is_empty());
    }

    #[test]
    fn dropping_the_writer_writes_what_is_queued() {
        let store = Arc::new(MemoryStore::new());
        {
            let w = RecordWriter::new(store.clone()).expect("writer");
            for i in 0..100 {
                w.put(rec(&format!("k{i:03}"), i));
            }
        }
        assert_eq!(read(&store).len(), 100);
    }

    #[test]
    fn it_works_from_inside_an_async_runtime_too() {
        let store = Arc::new(MemoryStore::new());
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .expect("runtime");
        let w = rt.block_on(async {
            let w = RecordWriter::new(store.clone()).expect("writer");
            w.put(rec("x", 7));
            w
        });
        w.flush();
        assert_eq!(read(&store), vec![("x".to_owned(), 7)]);
    }
}
