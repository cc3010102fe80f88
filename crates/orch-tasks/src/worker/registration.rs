//! A worker's record in the store (`RecordKind::Worker`): who it is, its
//! slots and capacity, what it runs and when it was last seen; and the list
//! of workers that `orch status` and `orch health` show, with those silent
//! for two lease periods marked lost.
//!
//! A worker removes its record when it stops; one killed outright cannot.
//! Its record is kept while it matters (lost: its steps wait for their
//! leases to lapse and another worker to take them over), then forgotten:
//! silent for two leases and its retention (`forget_after`, in the record;
//! by default ten leases, at least a minute), it is left out of the list
//! ([`read_workers`] says which were), and the reclaimer of a live worker
//! removes its record ([`forget_lost_workers`]).

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
    /// How long its record is kept once it is lost, in milliseconds; then
    /// it is forgotten. Absent (a record of an older version): the default
    /// for its lease ([`default_forget_after`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forget_after_ms: Option<u64>,
}

/// How long a lost worker's record is kept by default: ten of its leases,
/// at least a minute.
pub fn default_forget_after(lease: Duration) -> Duration {
    lease.saturating_mul(10).max(Duration::from_secs(60))
}

impl WorkerRecord {
    /// Silent for longer than this, it is lost: two of its leases.
    pub fn lost_after(&self) -> Duration {
        Duration::from_millis(self.lease_ms.saturating_mul(2))
    }

    /// How long its record is kept once it is lost.
    pub fn forget_after(&self) -> Duration {
        self.forget_after_ms.map_or_else(
            || default_forget_after(Duration::from_millis(self.lease_ms)),
            Duration::from_millis,
        )
    }

    /// Silent for longer than this, it is forgotten: lost, and for longer
    /// than its retention.
    pub fn forgotten_after(&self) -> Duration {
        self.lost_after().saturating_add(self.forget_after())
    }

    /// When it is forgotten unless it writes its record again (`None`:
    /// beyond the calendar).
    pub fn forget_at(&self) -> Option<DateTime<Utc>> {
        chrono::Duration::from_std(self.forgotten_after())
            .ok()
            .and_then(|d| self.last_seen.checked_add_signed(d))
    }

    /// How long it has been silent at `now` (zero when it wrote later).
    fn silent(&self, now: DateTime<Utc>) -> Duration {
        now.signed_duration_since(self.last_seen)
            .to_std()
            .unwrap_or_default()
    }
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

/// The workers a store has records of, at some time.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Workers {
    /// The workers to show, oldest record first, lost ones marked.
    pub listed: Vec<WorkerStatus>,
    /// The records of workers lost for longer than their retention: left
    /// out of `listed` (gone, as far as status and health go) whether or
    /// not anyone removed them yet.
    pub forgotten: Vec<WorkerRecord>,
}

/// Every worker recorded in the store at `now` ([`Workers`]): a worker whose
/// last word is older than two of its lease periods is lost; one silent for
/// longer than that and its retention is forgotten. A store that keeps no
/// records has no workers. A record that does not read as a worker's is
/// left out.
///
/// # Errors
/// The store's (other than not keeping records).
pub async fn read_workers(store: &dyn Store, now: DateTime<Utc>) -> orch_model::Result<Workers> {
    let mut out = Workers::default();
    if store.record_store().is_none() {
        return Ok(out);
    }
    for record in store
        .records(RecordKind::Worker)
        .await?
        .into_iter()
        .filter_map(|r| serde_json::from_value::<WorkerRecord>(r.data).ok())
    {
        let silent = record.silent(now);
        if silent > record.forgotten_after() {
            out.forgotten.push(record);
        } else {
            let lost = silent > record.lost_after();
            out.listed.push(WorkerStatus { record, lost });
        }
    }
    Ok(out)
}

/// The workers to show at `now` ([`read_workers`]'s `listed`: forgotten
/// ones left out).
///
/// # Errors
/// The store's (other than not keeping records).
pub async fn list_workers(
    store: &dyn Store,
    now: DateTime<Utc>,
) -> orch_model::Result<Vec<WorkerStatus>> {
    Ok(read_workers(store, now).await?.listed)
}

/// Removes the records of the workers forgotten at `now` (lost for longer
/// than their retention); returns how many. Each is removed only if it was
/// not written since it was read (`remove_record_before`), so a worker
/// that comes back (it was stopped, or cut off from the store) keeps its
/// record. A store that keeps no records has none to remove.
///
/// # Errors
/// The store's (other than not keeping records).
pub async fn forget_lost_workers(
    store: &dyn Store,
    now: DateTime<Utc>,
) -> orch_model::Result<usize> {
    let mut removed = 0;
    for record in read_workers(store, now).await?.forgotten {
        let Some(before) = chrono::Duration::from_std(record.forgotten_after())
            .ok()
            .and_then(|d| now.checked_sub_signed(d))
        else {
            continue;
        };
        if store
            .remove_record_before(RecordKind::Worker, &record.id, before)
            .await?
        {
            removed += 1;
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(
        id: &str,
        lease_ms: u64,
        forget_after_ms: Option<u64>,
        at: DateTime<Utc>,
    ) -> WorkerRecord {
        WorkerRecord {
            id: id.to_owned(),
            host: "h".into(),
            pid: 1,
            slots: 1,
            capacity: BTreeMap::new(),
            lease_ms,
            running: Vec::new(),
            started_at: at,
            last_seen: at,
            state: "running".into(),
            forget_after_ms,
        }
    }

    fn secs(s: i64) -> chrono::Duration {
        chrono::Duration::seconds(s)
    }

    #[test]
    fn the_retention_is_ten_leases_at_least_a_minute_unless_the_record_says() {
        let t = Utc::now();
        assert_eq!(
            default_forget_after(Duration::from_secs(30)),
            Duration::from_secs(300)
        );
        assert_eq!(
            default_forget_after(Duration::from_secs(2)),
            Duration::from_secs(60)
        );
        // An older version's record (no retention) gets the default of its lease.
        let old = record("old", 30_000, None, t);
        assert_eq!(old.lost_after(), Duration::from_secs(60));
        assert_eq!(old.forgotten_after(), Duration::from_secs(360));
        assert_eq!(old.forget_at(), Some(t + secs(360)));
        let short = record("short", 1_000, Some(3_000), t);
        assert_eq!(short.forgotten_after(), Duration::from_secs(5));
        // Huge values saturate instead of overflowing.
        let huge = record("huge", u64::MAX, Some(u64::MAX), t);
        assert_eq!(huge.forget_at(), None);
    }

    #[test]
    fn a_silent_worker_is_lost_then_forgotten_and_only_then_removed() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let store = crate::MemoryStore::new();
            let t = Utc::now();
            // Lease 1 s, kept 3 s once lost: lost after 2 s, forgotten after 5 s.
            put_worker(&store, &record("w", 1_000, Some(3_000), t))
                .await
                .expect("put");
            // No retention recorded: lost after 2 s, forgotten after 62 s.
            put_worker(&store, &record("old", 1_000, None, t))
                .await
                .expect("put");
            let st = &store;
            let at = |s| async move { read_workers(st, t + secs(s)).await.expect("read") };
            let states = |w: &Workers| {
                (
                    w.listed
                        .iter()
                        .map(|s| (s.record.id.clone(), s.state().to_owned()))
                        .collect::<Vec<_>>(),
                    w.forgotten.iter().map(|r| r.id.clone()).collect::<Vec<_>>(),
                )
            };
            let pair = |id: &str, state: &str| (id.to_owned(), state.to_owned());
            assert_eq!(
                states(&at(2).await),
                (vec![pair("w", "running"), pair("old", "running")], vec![])
            );
            assert_eq!(
                states(&at(3).await),
                (vec![pair("w", "lost"), pair("old", "lost")], vec![])
            );
            assert_eq!(
                states(&at(5).await),
                (vec![pair("w", "lost"), pair("old", "lost")], vec![])
            );
            assert_eq!(
                states(&at(6).await),
                (vec![pair("old", "lost")], vec!["w".to_owned()])
            );
            assert_eq!(
                states(&at(63).await),
                (vec![], vec!["w".to_owned(), "old".to_owned()])
            );
            // Pruning removes only what is forgotten at its time.
            assert_eq!(
                forget_lost_workers(&store, t + secs(5))
                    .await
                    .expect("none yet"),
                0
            );
            assert_eq!(
                forget_lost_workers(&store, t + secs(6)).await.expect("one"),
                1
            );
            let keys: Vec<String> = store
                .records(RecordKind::Worker)
                .await
                .expect("records")
                .into_iter()
                .map(|r| r.key)
                .collect();
            assert_eq!(keys, vec!["old"]);
            // A worker that comes back writes its record again and is kept.
            put_worker(&store, &record("old", 1_000, None, t + secs(70)))
                .await
                .expect("back");
            assert_eq!(
                forget_lost_workers(&store, t + secs(71))
                    .await
                    .expect("none"),
                0
            );
            assert_eq!(
                states(&at(71).await),
                (vec![pair("old", "running")], vec![])
            );
        });
    }

    #[test]
    fn ids_name_the_host_and_process_and_differ() {
        let (a, b) = (worker_id(), worker_id());
        assert_ne!(a, b);
        assert!(a.starts_with(&format!("{}-{}-", hostname(), std::process::id())));
    }
}
