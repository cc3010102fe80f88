//! A worker's record in the store (`RecordKind::Worker`): who it is, its
//! slots and capacity, what it runs and when it was last seen; and the list
//! of workers that `orch status` and `orch health` show, with those silent
//! for two lease periods marked lost.

use chrono::{DateTime, Utc};
use orch_model::store::{Record, RecordKind};
use orch_model::{RunId, Store};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// A task a worker runs (or holds, waiting for capacity).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldTask {
    /// Its run.
    pub run: RunId,
    /// The step's index.
    pub index: u32,
    /// The step's name.
    pub step: String,
    /// The claim's attempt number.
    pub attempt: u32,
    /// When the worker claimed it.
    pub since: DateTime<Utc>,
}

/// What a worker writes about itself, renewed every few seconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerRecord {
    /// Its id (`HOST-PID-RANDOM`), also the lease holder's name in claims.
    pub id: String,
    /// The machine it runs on.
    pub host: String,
    /// Its process id.
    pub pid: u32,
    /// Most attempts it runs at once.
    pub slots: usize,
    /// What it declared it can hold at once (kind → amount); empty: unlimited.
    pub capacity: BTreeMap<String, f64>,
    /// Its lease in milliseconds: silent for two of them, it is lost.
    pub lease_ms: u64,
    /// The tasks it holds now.
    pub running: Vec<HeldTask>,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// When it last wrote this record.
    pub last_seen: DateTime<Utc>,
    /// `running`, or `stopping` once asked to stop.
    pub state: String,
}

/// A worker as status and health show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerStatus {
    /// What it last wrote.
    #[serde(flatten)]
    pub record: WorkerRecord,
    /// Whether it has been silent for two lease periods (its tasks are
    /// reclaimed once their leases end).
    pub lost: bool,
}

impl WorkerStatus {
    /// `running`, `stopping` or `lost`.
    pub fn state(&self) -> &str {
        if self.lost {
            "lost"
        } else {
            &self.record.state
        }
    }
}

/// The machine's name.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

/// A new worker id: `HOST-PID-RANDOM` (the random part from a new UUID's
/// random bits, so that two workers of one process differ).
pub fn worker_id() -> String {
    let uuid = RunId::new().to_string();
    let random: String = uuid.chars().rev().filter(|c| *c != '-').take(6).collect();
    format!("{}-{}-{random}", hostname(), std::process::id())
}

/// Writes (or renews) a worker's record.
///
/// # Errors
/// The store's.
pub async fn put_worker(store: &dyn Store, record: &WorkerRecord) -> orch_model::Result<()> {
    let data = serde_json::to_value(record).map_err(|e| orch_model::OrchestrationError::Store {
        message: format!("worker record of `{}` does not serialize: {e}", record.id),
        retryable: false,
    })?;
    store
        .put_record(Record {
            kind: RecordKind::Worker,
            key: record.id.clone(),
            data,
            updated_at: record.last_seen,
        })
        .await
}

/// Every worker recorded in the store, oldest record first, each marked
/// lost when its last word is older than two of its lease periods at `now`.
/// A store that keeps no records has no workers. A record that does not
/// read as a worker's is left out.
///
/// # Errors
/// The store's (other than not keeping records).
pub async fn list_workers(
    store: &dyn Store,
    now: DateTime<Utc>,
) -> orch_model::Result<Vec<WorkerStatus>> {
    if store.record_store().is_none() {
        return Ok(Vec::new());
    }
    let records = store.records(RecordKind::Worker).await?;
    Ok(records
        .into_iter()
        .filter_map(|r| serde_json::from_value::<WorkerRecord>(r.data).ok())
        .map(|record| {
            let silent = now.signed_duration_since(record.last_seen);
            let limit = Duration::from_millis(record.lease_ms.saturating_mul(2));
            let lost = silent.to_std().is_ok_and(|s| s > limit);
            WorkerStatus { record, lost }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_name_the_host_and_process_and_differ() {
        let (a, b) = (worker_id(), worker_id());
        assert_ne!(a, b);
        assert!(a.starts_with(&format!("{}-{}-", hostname(), std::process::id())));
    }
}
