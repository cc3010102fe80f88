//! The result cache on a worker: a `cache:` step of a submitted run is
//! looked up in the store's cache with the same key a run one process
//! drives computes (its action, its resolved parameters, its dependencies'
//! results in order, and the digest of its `cache.files`), served from it
//! on a hit, and stored on success.

use super::definitions::ClaimStep;
use crate::cache::{cache_key, files_digest, with_files};
use crate::resolve::Scope;
use chrono::Utc;
use orch_model::store::{CacheEntry, TaskRecord};
use orch_model::{Store, TaskResult, TaskStatus};
use serde_json::Value;
use std::path::Path;

/// What the cache says of a claimed step.
pub(crate) enum Lookup {
    /// Not cached: no `cache:`, a store without a cache, or files that
    /// cannot be digested.
    Off,
    /// A stored result, served as the step's.
    Hit(TaskResult),
    /// Run it, and store what it returns under this key.
    Miss(String),
}

/// The cache key of the step of `cs` with its resolved `params` and its
/// dependencies' records `deps`; `None` when it is not cached (no
/// `cache:`, a store without a cache, files that cannot be digested).
pub(crate) fn key_of(
    store: &dyn Store,
    cs: &ClaimStep<'_>,
    params: &Value,
    deps: &[TaskRecord],
    work_dir: &Path,
    scope: &dyn Scope,
) -> Option<String> {
    let step = cs.step();
    let spec = step.cache.as_deref()?;
    if !store.capabilities().cache {
        return None;
    }
    // The dependencies' results in the graph's order, as the local run has them.
    let upstream: Vec<&Value> = cs
        .deps
        .iter()
        .map(|&d| {
            deps.iter()
                .find(|t| t.index == d)
                .filter(|t| t.status == TaskStatus::Completed)
                .and_then(|t| t.result.as_ref())
                .filter(|r| r.success)
                .map_or(&Value::Null, |r| &r.data)
        })
        .collect();
    let mut key = cache_key(&step.module, &step.action, params, &upstream);
    if !spec.files.is_empty() {
        match files_digest(work_dir, &spec.files, scope) {
            Ok(files) => key = with_files(key, &files),
            Err(why) => {
                tracing::warn!(step = %step.name, "the step runs without the cache: {why}");
                return None;
            }
        }
    }
    Some(key.to_string())
}

/// Looks `key` up for the step of `cs` (its `cache.ttl` bounds the age of
/// what is served); `no_cache` (the run's `--no-cache`) serves nothing.
pub(crate) async fn look_up(
    store: &dyn Store,
    cs: &ClaimStep<'_>,
    key: Option<String>,
    no_cache: bool,
) -> Lookup {
    let Some(key) = key else {
        return Lookup::Off;
    };
    if no_cache {
        return Lookup::Miss(key);
    }
    let since = cs
        .step()
        .cache
        .as_deref()
        .and_then(|s| s.ttl)
        .and_then(|t| chrono::Duration::from_std(t).ok())
        .map(|t| Utc::now() - t);
    match store.cache_get(&key).await {
        Ok(Some(e)) if since.is_none_or(|s| e.created_at >= s) => Lookup::Hit(TaskResult {
            success: true,
            data: e.value,
            cached: true,
            ..TaskResult::default()
        }),
        // A store error is a miss: the step runs.
        _ => Lookup::Miss(key),
    }
}

/// Stores a step's successful result under `key` (a failure to store is
/// not the step's).
pub(crate) async fn store_result(store: &dyn Store, key: String, data: &Value) {
    let entry = CacheEntry {
        key,
        value: data.clone(),
        created_at: Utc::now(),
    };
    if let Err(e) = store.cache_put(entry).await {
        tracing::warn!("a result was not cached: {e}");
    }
}
