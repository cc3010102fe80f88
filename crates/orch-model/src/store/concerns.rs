//! The optional concerns of the `Store` contract, each a trait of its own:
//! a backend implements the ones it supports and returns itself from the
//! matching accessor of `Store` (`claims`, `record_store`, `cache_store`).

use super::types::{
    CacheEntry, Claim, ClaimRequest, Record, RecordKind, StoredEvent, TaskOutcome, TaskRecord,
};
use crate::error::Result;
use crate::ids::RunId;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::time::Duration;

/// Claims with leases and fencing: workers pull ready tasks.
///
/// - `claim` hands out up to `req.max` ready tasks, highest priority first,
///   then the oldest run, then lowest index, across runs, each only if its
///   [`needs`](super::NewTask::needs) fit what `req.free` has left after the
///   tasks handed out before it (greedy, in claim order; a task that does
///   not fit is passed over and stays ready for a worker with more free).
///   Each becomes `running` with `attempt` incremented (the fencing token)
///   and a lease until `now + req.lease`. A backend that cannot compare
///   needs ([`ClaimStore::fits_capacity`] false) refuses a request with a
///   limited `free` with `Unsupported`.
/// - `heartbeat` renews a lease; it returns false (and changes nothing) when
///   the claim is stale (another attempt took over, or the task finished).
/// - `complete` is one transaction: the task becomes terminal with its
///   outcome, its dependents are released, and the run ends with its last
///   task. A stale claim is rejected with `InvalidState` and changes nothing.
/// - `complete_many` completes a batch in one transaction, each claim on
///   its own account: a stale one is refused (its entry is `InvalidState`)
///   and the others complete. The events are appended in the same
///   transaction when every claim completed; otherwise none is (the caller
///   appends what describes the ones that did).
/// - `release_claim` hands a claim back: the task is ready again at once,
///   without waiting for its lease to lapse (and without reclaiming anyone
///   else's lapsed lease); its next claim gets the next attempt number (a
///   fencing token is never given twice). False when the claim is stale.
/// - `reclaim_expired` makes every running task whose lease ended before
///   `now` ready again (its next claim gets the next attempt number).
/// - `task_records` reads a few tasks of a run (a claimed task's
///   dependencies), in the order given, leaving out indices the run does
///   not have.
#[async_trait]
pub trait ClaimStore: Send + Sync {
    /// Claims ready tasks that fit `req.free`.
    async fn claim(&self, req: &ClaimRequest, now: DateTime<Utc>) -> Result<Vec<Claim>>;
    /// Whether `claim` compares tasks' needs with what the claimer has free
    /// (otherwise a request with a limited `free` is `Unsupported`, and the
    /// claimer has to check each task's needs itself).
    fn fits_capacity(&self) -> bool {
        false
    }
    /// Renews a lease; false when the claim is stale.
    async fn heartbeat(&self, claim: &Claim, lease: Duration, now: DateTime<Utc>) -> Result<bool>;
    /// Finishes a claimed task and releases its dependents, atomically.
    async fn complete(&self, claim: &Claim, outcome: TaskOutcome, now: DateTime<Utc>)
    -> Result<()>;
    /// Completes many claims (of any runs) in one transaction, then appends
    /// `events` (to their runs) in it when every claim completed. Returns
    /// one answer per claim, in order; `Err` only when the store failed
    /// (then nothing changed).
    async fn complete_many(
        &self,
        done: Vec<(Claim, TaskOutcome)>,
        events: Vec<(RunId, StoredEvent)>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Result<()>>>;
    /// Hands a claim back: ready again now; false when the claim is stale.
    async fn release_claim(&self, claim: &Claim, now: DateTime<Utc>) -> Result<bool>;
    /// Makes tasks with lapsed leases ready again; returns how many.
    async fn reclaim_expired(&self, now: DateTime<Utc>) -> Result<usize>;
    /// The tasks `indices` of a run, in the order given.
    async fn task_records(&self, run: RunId, indices: &[u32]) -> Result<Vec<TaskRecord>>;
}

/// Wakes idle workers when work may be ready (PostgreSQL's LISTEN/NOTIFY).
#[async_trait]
pub trait WakeStore: Send + Sync {
    /// Returns when work may have become ready, or after `timeout` at the
    /// latest: true when woken by the store, false at the timeout.
    async fn wait_for_work(&self, timeout: Duration) -> Result<bool>;
}

/// Records that the layers above the scheduler keep (engine sessions,
/// projects): JSON documents by kind and key.
#[async_trait]
pub trait RecordStore: Send + Sync {
    /// Saves a record, replacing the one of the same kind and key.
    async fn put_record(&self, record: Record) -> Result<()>;
    /// Saves a record only if none of its kind and key exists, atomically
    /// (of many callers with the same key, exactly one gets true); false,
    /// and nothing changed, when one exists.
    async fn create_record(&self, record: Record) -> Result<bool>;
    /// Removes a record; false when there was none.
    async fn remove_record(&self, kind: RecordKind, key: &str) -> Result<bool>;
    /// Removes a record only when it was last written (its `updated_at`)
    /// before `before`, atomically: a record written again since, with a
    /// later `updated_at`, is kept. False when there was none or it is not
    /// that old. (What prunes the records of workers gone for good: one
    /// that comes back and writes its record keeps it.)
    async fn remove_record_before(
        &self,
        kind: RecordKind,
        key: &str,
        before: DateTime<Utc>,
    ) -> Result<bool>;
    /// Every record of a kind, oldest write first.
    async fn records(&self, kind: RecordKind) -> Result<Vec<Record>>;
    /// The record of a kind and key. The default reads every record of the
    /// kind; a backend with an index answers from it.
    async fn record(&self, kind: RecordKind, key: &str) -> Result<Option<Record>> {
        Ok(self.records(kind).await?.into_iter().find(|r| r.key == key))
    }
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
