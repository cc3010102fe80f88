//! The optional concerns of the `Store` contract, each a trait of its own:
//! a backend implements the ones it supports and returns itself from the
//! matching accessor of `Store` (`claims`, `record_store`, `cache_store`).

use super::types::{CacheEntry, Claim, Record, RecordKind, TaskOutcome};
use crate::error::Result;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::time::Duration;

/// Claims with leases and fencing: workers pull ready tasks.
///
/// - `claim` hands out up to `max` ready tasks, highest priority first, then
///   lowest index, across runs; each becomes `running` with `attempt`
///   incremented (the fencing token) and a lease until `now + lease`.
/// - `heartbeat` renews a lease; it returns false (and changes nothing) when
///   the claim is stale (another attempt took over, or the task finished).
/// - `complete` is one transaction: the task becomes terminal with its
///   outcome, its dependents are released, and the run ends with its last
///   task. A stale claim is rejected with `InvalidState` and changes nothing.
/// - `reclaim_expired` makes every running task whose lease ended before
///   `now` ready again (its next claim gets the next attempt number).
#[async_trait]
pub trait ClaimStore: Send + Sync {
    /// Claims ready tasks.
    async fn claim(
        &self,
        worker: &str,
        max: usize,
        lease: Duration,
        now: DateTime<Utc>,
    ) -> Result<Vec<Claim>>;
    /// Renews a lease; false when the claim is stale.
    async fn heartbeat(&self, claim: &Claim, lease: Duration, now: DateTime<Utc>) -> Result<bool>;
    /// Finishes a claimed task and releases its dependents, atomically.
    async fn complete(&self, claim: &Claim, outcome: TaskOutcome, now: DateTime<Utc>)
    -> Result<()>;
    /// Makes tasks with lapsed leases ready again; returns how many.
    async fn reclaim_expired(&self, now: DateTime<Utc>) -> Result<usize>;
}

/// Records that the layers above the scheduler keep (engine sessions,
/// projects): JSON documents by kind and key.
#[async_trait]
pub trait RecordStore: Send + Sync {
    /// Saves a record, replacing the one of the same kind and key.
    async fn put_record(&self, record: Record) -> Result<()>;
    /// Removes a record; false when there was none.
    async fn remove_record(&self, kind: RecordKind, key: &str) -> Result<bool>;
    /// Every record of a kind, oldest write first.
    async fn records(&self, kind: RecordKind) -> Result<Vec<Record>>;
}

/// The result cache: results by key (64 hex digits of blake3).
#[async_trait]
pub trait CacheStore: Send + Sync {
    /// A cached result.
    async fn cache_get(&self, key: &str) -> Result<Option<CacheEntry>>;
    /// Stores a cached result (replacing one with the same key).
    async fn cache_put(&self, entry: CacheEntry) -> Result<()>;
    /// Every cached result.
    async fn cache_list(&self) -> Result<Vec<CacheEntry>>;
    /// Removes every cached result; returns how many.
    async fn cache_clear(&self) -> Result<usize>;
}
