//! `StoreCache`: the result cache of `cache: true` steps, kept in the engine's store.
//!
//! The scheduler asks its [`ResultCache`] synchronously, from the task that
//! coordinates a run, while `Store` is async. The cache owns a thread with a
//! small runtime of its own that performs the store calls; a lookup sends its
//! request there and waits for the answer. That works on every kind of tokio
//! runtime (a current-thread runtime included, where `block_in_place` would
//! panic), and a store that fails only costs a re-run: a failed lookup is a
//! miss, a failed write is dropped.

use chrono::{DateTime, Utc};
use orch_model::store::CacheEntry;
use orch_model::{OrchestrationError, Store};
use orch_tasks::{CacheKey, ResultCache};
use serde_json::Value;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

enum Job {
    Get(String, Option<DateTime<Utc>>, mpsc::Sender<Option<Value>>),
    Put(CacheEntry),
    List(mpsc::Sender<Vec<CacheEntry>>),
    Clear(mpsc::Sender<usize>),
}

/// The engine's result cache: the store's cache entries, shared by every
/// workflow the engine runs (its own, its projects', their sub-workflows)
/// and by `orch run`, which keeps its cache in the same store.
pub struct StoreCache {
    tx: Mutex<mpsc::Sender<Job>>,
}

impl std::fmt::Debug for StoreCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreCache").finish_non_exhaustive()
    }
}

impl StoreCache {
    /// A cache in `store`.
    ///
    /// # Errors
    /// `Io` when its thread or runtime cannot be started.
    pub fn new(store: Arc<dyn Store>) -> Result<Self, OrchestrationError> {
        let (tx, rx) = mpsc::channel::<Job>();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| OrchestrationError::Io {
                message: format!("cannot start the result cache's runtime: {e}"),
            })?;
        std::thread::Builder::new()
            .name("orch-cache".into())
            .spawn(move || {
                // Ends when the cache (the only sender) is dropped.
                for job in rx {
                    match job {
                        Job::Get(key, since, reply) => {
                            let v = rt
                                .block_on(store.cache_get(&key))
                                .ok()
                                .flatten()
                                .filter(|e| since.is_none_or(|s| e.created_at >= s))
                                .map(|e| e.value);
                            let _ = reply.send(v);
                        }
                        Job::Put(entry) => {
                            let _ = rt.block_on(store.cache_put(entry));
                        }
                        Job::List(reply) => {
                            let _ = reply.send(rt.block_on(store.cache_list()).unwrap_or_default());
                        }
                        Job::Clear(reply) => {
                            let _ = reply.send(rt.block_on(store.cache_clear()).unwrap_or(0));
                        }
                    }
                }
            })
            .map_err(|e| OrchestrationError::Io {
                message: format!("cannot start the result cache: {e}"),
            })?;
        Ok(Self { tx: Mutex::new(tx) })
    }

    fn send(&self, job: Job) {
        // The thread only ends when this sender is dropped, so this cannot fail.
        let _ = self
            .tx
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .send(job);
    }
}

impl ResultCache for StoreCache {
    fn get(&self, key: &CacheKey, stored_since: Option<DateTime<Utc>>) -> Option<Value> {
        let (reply, answer) = mpsc::channel();
        self.send(Job::Get(key.to_string(), stored_since, reply));
        answer.recv().ok().flatten()
    }

    fn put(&self, key: &CacheKey, value: &Value) {
        self.send(Job::Put(CacheEntry {
            key: key.to_string(),
            value: value.clone(),
            created_at: chrono::Utc::now(),
        }));
    }

    fn list(&self) -> Vec<(CacheKey, u64)> {
        let (reply, answer) = mpsc::channel();
        self.send(Job::List(reply));
        answer
            .recv()
            .unwrap_or_default()
            .into_iter()
            .filter_map(|e| CacheKey::parse(&e.key).map(|k| (k, e.value.to_string().len() as u64)))
            .collect()
    }

    fn clear(&self) -> usize {
        let (reply, answer) = mpsc::channel();
        self.send(Job::Clear(reply));
        answer.recv().unwrap_or(0)
    }
}

/// A cache that stores new results and serves none (`--no-cache`: every
/// `cache: true` step runs, and what it returns replaces the cached value).
#[derive(Debug)]
pub struct WriteOnly(pub Arc<dyn ResultCache>);

impl ResultCache for WriteOnly {
    fn get(&self, _key: &CacheKey, _stored_since: Option<DateTime<Utc>>) -> Option<Value> {
        None
    }

    fn put(&self, key: &CacheKey, value: &Value) {
        self.0.put(key, value);
    }

    fn list(&self) -> Vec<(CacheKey, u64)> {
        self.0.list()
    }

    fn clear(&self) -> usize {
        self.0.clear()
    }
}
