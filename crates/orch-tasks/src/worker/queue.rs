//! Concurrency keys of runs submitted to workers, and the slots every run
//! of a key takes, whoever drives it.
//!
//! A key's `limit` slots are named leases of the store (`Store::lead`),
//! `concurrency/KEY/N`, held by a run's id; `lead` is one atomic
//! compare-and-set in every store, so of two runs that try for the last
//! slot at once, one gets it. A run one process drives takes its slot with
//! a short lease its process renews (`orch-engine`'s `concurrency`); a run
//! submitted to workers takes it for [`HELD_FOR`] (a century) and never
//! renews it: its slot is held as long as the run has not ended, however
//! long no worker holds one of its steps (a retry's backoff, every worker
//! down). Whether a slot is held is read from its holder's run in the store
//! ([`holds`]): a holder whose run ended (completed, failed, cancelled,
//! timed out), whose process died (interrupted), or that no longer exists,
//! holds nothing, and whoever wants the slot gives it up for it
//! ([`take_slot`]).
//!
//! A submitted run whose workflow has a key is created owned by
//! [`QUEUED_OWNER`], which claims pass over, with a [`RecordKind::RunQueued`]
//! record that names its key ([`submit_queued`], or [`queue_run`] for a run
//! recorded already, such as a retry). Its submitter, then the workers (each
//! pass of [`admit_queued`]), try to take a slot for it ([`admit`]): once
//! one is taken, the run's timeout starts, and it is handed to the workers
//! ([`SUBMITTED_OWNER`]) whose claims then take its steps. When every slot is
//! taken, its `on_conflict` decides: `queue` waits; `cancel_running` cancels
//! the holders' runs (as `orch cancel` does) and waits for them to end;
//! `skip` ends the run at once with every step skipped, naming the holders.
//! Cancelling a queued run ends it at once (nothing of it ran).

use super::definitions::{RunContext, deadline};
use chrono::{DateTime, Utc};
use orch_model::store::{
    Finished, QUEUED_OWNER, Record, RecordKind, RunRecord, SUBMITTED_OWNER, StoredEvent,
    TaskOutcome,
};
use orch_model::{OnConflict, OrchestrationError, RunId, Store, TaskStatus, WorkflowStatus};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::time::Duration;

/// How long a submitted run's slot lease is taken for: a century, never
/// renewed; the slot is free once its run has ended ([`holds`]).
pub const HELD_FOR: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// How often a worker looks at the queued runs ([`admit_queued`]).
pub const LOOK_EVERY: Duration = Duration::from_millis(250);

/// A lease that ends later than this from now was taken for a submitted
/// run (a driven run's lease is renewed for 30 s at a time).
const SHORT_LEASES_END_WITHIN: Duration = Duration::from_secs(3600);

/// How long a [`RecordKind::RunQueued`] record may wait for its run to be
/// created (its submitter writes it first) before it is taken for one
/// whose run will never come.
const RECORD_WITHOUT_RUN: Duration = Duration::from_secs(600);

/// A run's rendered concurrency key, its limit and its policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunKey {
    /// The key, rendered with the run's parameters.
    pub key: String,
    /// How many runs of the key may run at once (at least 1).
    pub limit: u32,
    /// What the run does when every slot is taken.
    pub on_conflict: OnConflict,
}

/// A [`RecordKind::RunQueued`] record's data.
#[derive(Debug, Serialize, Deserialize)]
struct Queued {
    key: String,
    limit: u32,
    on_conflict: String,
}

impl RunKey {
    fn record(&self, run: RunId) -> Record {
        Record {
            kind: RecordKind::RunQueued,
            key: run.to_string(),
            data: json!(Queued {
                key: self.key.clone(),
                limit: self.limit,
                on_conflict: self.on_conflict.as_str().to_owned(),
            }),
            updated_at: Utc::now(),
        }
    }

    fn of_record(r: &Record) -> Option<Self> {
        let q: Queued = serde_json::from_value(r.data.clone()).ok()?;
        Some(Self {
            key: q.key,
            limit: q.limit.max(1),
            on_conflict: q.on_conflict.parse().ok()?,
        })
    }
}

/// The lease of slot `i` of `key`.
pub fn slot_name(key: &str, i: u32) -> String {
    format!("concurrency/{key}/{i}")
}

/// Whether run `r` holds the slots it took: it has not ended, and it is
/// submitted to workers, queued, or driven by a process that is alive.
pub fn holds(r: &RunRecord) -> bool {
    r.status == WorkflowStatus::Running
        && r.owner.as_deref().is_some_and(|o| {
            o == SUBMITTED_OWNER || o == QUEUED_OWNER || crate::run::owner_alive(o)
        })
}

/// What trying for a slot came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Slot {
    /// This slot (its lease's name) is the holder's now.
    Taken(String),
    /// Every slot is held, by these runs.
    Full(Vec<String>),
}

/// Takes a slot of `key` for `holder` (a run's id) with a lease of `ttl`:
/// the slot it holds already, else a free one; a slot whose holder no
/// longer holds it ([`holds`]) is given up for it first.
///
/// # Errors
/// The store's (`Unsupported` for a store without leases).
pub async fn take_slot(
    store: &dyn Store,
    key: &RunKey,
    holder: &str,
    ttl: Duration,
) -> Result<Slot, OrchestrationError> {
    // A few rounds: a slot given up here may be taken by another meanwhile.
    for _ in 0..4 {
        let now = Utc::now();
        let mut leaders = Vec::with_capacity(key.limit as usize);
        for i in 0..key.limit {
            let name = slot_name(&key.key, i);
            let l = store.leader(&name, now).await?;
            if l.as_ref().is_some_and(|(h, _)| h == holder) {
                // Its own (a run taken again, a second look of its admitter).
                if store.lead(&name, holder, ttl, now).await? {
                    return Ok(Slot::Taken(name));
                }
            }
            leaders.push((name, l));
        }
        for (name, l) in &leaders {
            if l.is_none() && store.lead(name, holder, ttl, now).await? {
                return Ok(Slot::Taken(name.clone()));
            }
        }
        let mut holders = Vec::new();
        let mut freed = false;
        for (name, l) in leaders {
            let Some((h, until)) = l else {
                freed = true;
                continue;
            };
            if held(store, &h, until, now).await? {
                holders.push(h);
            } else {
                // Only if it is still `h`'s: another may have taken it since.
                store.resign(&name, &h).await?;
                freed = true;
            }
        }
        if !freed {
            return Ok(Slot::Full(holders));
        }
    }
    Ok(Slot::Full(Vec::new()))
}

/// Whether the slot lease of `holder`, ending at `until`, is held.
async fn held(
    store: &dyn Store,
    holder: &str,
    until: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<bool, OrchestrationError> {
    let Ok(id) = holder.parse::<RunId>() else {
        // Not a run's: its lease decides.
        return Ok(true);
    };
    Ok(match store.get_run_brief(id).await? {
        Some(r) if holds(&r) => true,
        Some(r) => still_running_on_a_worker(store, &r, now).await,
        // A run one process drives takes its slot before it is recorded:
        // its short lease decides. A submitted run is recorded first, so a
        // long lease whose run is gone (deleted) holds nothing.
        None => until <= crate::worker::stop::after(now, SHORT_LEASES_END_WITHIN),
    })
}

/// Whether a live worker still lists a step of the submitted run `r`,
/// which ended lately, as running: a run cancelled in the store ends
/// before its workers have stopped its steps' processes (they look every
/// 250 ms), and its slot is held until they have (as their records say,
/// rewritten within a second of a change).
async fn still_running_on_a_worker(store: &dyn Store, r: &RunRecord, now: DateTime<Utc>) -> bool {
    let lately = r.finished_at.is_none_or(|f| {
        now.signed_duration_since(f)
            .to_std()
            .is_ok_and(|d| d < Duration::from_secs(60))
            || f > now
    });
    // A completed run's steps all completed or were skipped: each ended
    // with its process, and the slot is free at once (a worker's record may
    // still list the last step for up to a second).
    if r.owner.as_deref() != Some(SUBMITTED_OWNER)
        || !lately
        || r.status == WorkflowStatus::Completed
    {
        return false;
    }
    super::list_workers(store, now).await.is_ok_and(|ws| {
        ws.iter()
            .any(|w| !w.lost && w.record.running.iter().any(|t| t.run == r.id))
    })
}

/// What [`admit`] did with a queued run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// It holds a slot and is the workers' now.
    Admitted,
    /// Every slot is held (by these runs): it waits.
    Waiting(Vec<String>),
    /// Every slot was held (by these runs) and its policy is `skip`: it
    /// ended with every step skipped.
    Skipped(Vec<String>),
    /// It was cancelled while it waited (it ended cancelled), or it had
    /// ended.
    Ended,
    /// Its process has not handed it over yet (a retry records its kept
    /// steps first), or its run is not recorded (yet).
    NotYet,
}

/// Records a submitted run of a keyed workflow as waiting for a slot:
/// [`submit`](super::submit) with the run created owned by [`QUEUED_OWNER`]
/// and its [`RecordKind::RunQueued`] record written first; then tries for
/// a slot once ([`admit`]), so that a free key hands the run to the
/// workers at once and `skip` is decided now.
///
/// # Errors
/// As [`submit`](super::submit); the store's.
pub async fn submit_queued(
    store: &dyn Store,
    wf: &orch_model::ValidWorkflow,
    registry: &crate::action::ActionRegistry,
    params: &serde_json::Map<String, serde_json::Value>,
    settings: &orch_model::RunSettings,
    id: RunId,
    key: &RunKey,
) -> Result<Admission, OrchestrationError> {
    need_leaders(store)?;
    super::submit::submit_owned(
        store,
        wf,
        registry,
        params,
        settings,
        id,
        Some(key.record(id)),
    )
    .await?;
    waiting_event(store, id, key, admit(store, id, key).await?).await
}

/// Queues run `id`, recorded already and owned by this process (a retry
/// whose kept steps are recorded), for a slot of `key`, then tries for one
/// once ([`admit`]).
///
/// # Errors
/// The store's.
pub async fn queue_run(
    store: &dyn Store,
    id: RunId,
    key: &RunKey,
) -> Result<Admission, OrchestrationError> {
    need_leaders(store)?;
    store.put_record(key.record(id)).await?;
    store.set_owner(id, Some(QUEUED_OWNER.to_owned())).await?;
    waiting_event(store, id, key, admit(store, id, key).await?).await
}

fn need_leaders(store: &dyn Store) -> Result<(), OrchestrationError> {
    if store.capabilities().leaders {
        return Ok(());
    }
    Err(OrchestrationError::Unsupported {
        message: format!(
            "the {} store keeps no leases, so it cannot hold a concurrency key for runs of workers",
            store.backend()
        ),
    })
}

/// For a run that waits: a `queued` event in its log, naming its key and
/// the runs that hold it. Gives `a` back.
async fn waiting_event(
    store: &dyn Store,
    id: RunId,
    key: &RunKey,
    a: Admission,
) -> Result<Admission, OrchestrationError> {
    if let Admission::Waiting(holders) = &a {
        let e = StoredEvent {
            seq: 0,
            at: Utc::now(),
            kind: "queued".into(),
            task: None,
            data: json!({
                "key": key.key,
                "limit": key.limit,
                "on_conflict": key.on_conflict.as_str(),
                "held_by": holders,
            }),
        };
        let _ = store.append_events(id, vec![e]).await;
    }
    Ok(a)
}

/// Tries to take a slot of `key` for the queued run `id` (see the module's
/// documentation). Safe to call from any number of processes at once: the
/// slot's lease is one compare-and-set, and handing the run over twice is
/// the same as once.
///
/// # Errors
/// The store's.
pub async fn admit(
    store: &dyn Store,
    id: RunId,
    key: &RunKey,
) -> Result<Admission, OrchestrationError> {
    let rkey = id.to_string();
    // Not recorded yet (its submitter writes the queued record first, then
    // the run), or gone: nothing to do now.
    let Some(r) = store.get_run_brief(id).await? else {
        return Ok(Admission::NotYet);
    };
    if r.status != WorkflowStatus::Running {
        store.remove_record(RecordKind::RunQueued, &rkey).await?;
        return Ok(Admission::Ended);
    }
    match r.owner.as_deref() {
        Some(QUEUED_OWNER) => {}
        Some(SUBMITTED_OWNER) => {
            store.remove_record(RecordKind::RunQueued, &rkey).await?;
            return Ok(Admission::Admitted);
        }
        _ => return Ok(Admission::NotYet),
    }
    if store.cancel_requested(id).await? {
        end_cancelled(store, id).await?;
        return Ok(Admission::Ended);
    }
    match take_slot(store, key, &rkey, HELD_FOR).await? {
        Slot::Taken(_) => {
            mark_admitted(store, id).await?;
            store
                .set_owner(id, Some(SUBMITTED_OWNER.to_owned()))
                .await?;
            // A cancel that came meanwhile found it queued and ended it:
            // the workers see it ended, and its slot is free.
            store.remove_record(RecordKind::RunQueued, &rkey).await?;
            Ok(Admission::Admitted)
        }
        Slot::Full(holders) => match key.on_conflict {
            OnConflict::Queue => Ok(Admission::Waiting(holders)),
            OnConflict::CancelRunning => {
                for h in &holders {
                    if let Ok(hid) = h.parse::<RunId>() {
                        cancel_holder(store, hid).await;
                    }
                }
                Ok(Admission::Waiting(holders))
            }
            OnConflict::Skip => {
                let why = format!(
                    "skipped: the concurrency key `{}` is held by run {} (limit {}, on_conflict: skip)",
                    key.key,
                    holders.join(", "),
                    key.limit
                );
                skip_all(store, id, why).await?;
                store.remove_record(RecordKind::RunQueued, &rkey).await?;
                Ok(Admission::Skipped(holders))
            }
        },
    }
}

/// Asks the run `id`, which holds a slot wanted by a `cancel_running` run,
/// to stop, once: a submitted or queued run is cancelled in the store (as
/// `orch cancel` does, [`super::cancel`]); a process's run is asked (its
/// process stops it).
async fn cancel_holder(store: &dyn Store, id: RunId) {
    if store.cancel_requested(id).await.unwrap_or(true) {
        return;
    }
    let Ok(Some(r)) = store.get_run_brief(id).await else {
        return;
    };
    tracing::warn!(run = %id, "cancelling the run that holds the concurrency key (on_conflict: cancel_running)");
    let running = || async {
        store
            .tasks(id)
            .await
            .is_ok_and(|ts| ts.iter().any(|t| t.status == TaskStatus::Running))
    };
    let _ = match r.owner.as_deref() {
        // Its workers stop its running steps (within 250 ms) and then end
        // it, so that it ends once their processes have.
        Some(SUBMITTED_OWNER) if running().await => store.request_cancel(id).await,
        // Nothing of it runs: it ends now (as `orch cancel` ends it).
        Some(SUBMITTED_OWNER | QUEUED_OWNER) => super::cancel(store, id).await,
        // Its process stops it.
        _ => store.request_cancel(id).await,
    };
}

/// Ends the queued run `id` cancelled: nothing of it ran.
async fn end_cancelled(store: &dyn Store, id: RunId) -> Result<(), OrchestrationError> {
    let now = Utc::now();
    store.cancel_run(id, now).await?;
    store.finish_run(id, WorkflowStatus::Cancelled, now).await?;
    store
        .remove_record(RecordKind::RunQueued, &id.to_string())
        .await?;
    Ok(())
}

/// Whether `id` is queued (owned by [`QUEUED_OWNER`]); then a cancel ends
/// it at once ([`super::cancel`]).
pub(crate) async fn cancel_if_queued(
    store: &dyn Store,
    id: RunId,
) -> Result<bool, OrchestrationError> {
    let queued = store
        .get_run_brief(id)
        .await?
        .is_some_and(|r| r.owner.as_deref() == Some(QUEUED_OWNER));
    if queued {
        end_cancelled(store, id).await?;
    }
    Ok(queued)
}

/// Every task of run `id` that has not ended, skipped with `why`; the run
/// ends completed.
async fn skip_all(store: &dyn Store, id: RunId, why: String) -> Result<(), OrchestrationError> {
    let tasks = store.tasks(id).await?;
    let done: Vec<Finished> = tasks
        .iter()
        .filter(|t| !t.status.is_terminal())
        .map(|t| Finished {
            index: t.index,
            attempt: 0,
            retries: 0,
            outcome: TaskOutcome::Skipped {
                reason: why.clone(),
            },
        })
        .collect();
    let now = Utc::now();
    if let Err(e) = store.finish_tasks(id, done, now).await {
        // Another admitter skipped it, or a cancel ended it, meanwhile.
        if store
            .get_run_brief(id)
            .await?
            .is_some_and(|r| r.status == WorkflowStatus::Running)
        {
            return Err(e);
        }
        return Ok(());
    }
    if store
        .get_run_brief(id)
        .await?
        .is_some_and(|r| r.status == WorkflowStatus::Running)
    {
        store.finish_run(id, WorkflowStatus::Completed, now).await?;
    }
    Ok(())
}

/// Notes in the run's context that it holds a slot of its key (so that a
/// cancel lets its workers end it once they have stopped its steps'
/// processes: [`super::cancel`]), and restarts its timeout: it counts from
/// now, when it got its slot (as a run one process drives counts it from
/// when it got its slot, not while it waited).
async fn mark_admitted(store: &dyn Store, id: RunId) -> Result<(), OrchestrationError> {
    let key = id.to_string();
    let Some(mut rec) = store.record(RecordKind::RunContext, &key).await? else {
        return Ok(());
    };
    let Ok(mut ctx) = serde_json::from_value::<RunContext>(rec.data.clone()) else {
        return Ok(());
    };
    ctx.holds_slot = true;
    if ctx.settings.run_timeout_ms.is_some() {
        ctx.deadline = deadline(Utc::now(), &ctx.settings);
    }
    rec.data = serde_json::to_value(&ctx).map_err(|e| OrchestrationError::Store {
        message: format!("the run's context does not serialize: {e}"),
        retryable: false,
    })?;
    rec.updated_at = Utc::now();
    store.put_record(rec).await
}

/// One pass over the queued runs of the store: [`admit`] for each, oldest
/// first. Returns how many were handed to the workers. A record whose run
/// ended (or never came) is removed.
///
/// # Errors
/// The store's, listing the queued runs (one run's error is logged and
/// the pass goes on).
pub async fn admit_queued(store: &dyn Store) -> Result<usize, OrchestrationError> {
    if !store.capabilities().records || !store.capabilities().leaders {
        return Ok(0);
    }
    let mut recs = store.records(RecordKind::RunQueued).await?;
    recs.sort_by_key(|r| r.updated_at);
    let mut admitted = 0;
    for rec in recs {
        let Ok(id) = rec.key.parse::<RunId>() else {
            continue;
        };
        let Some(key) = RunKey::of_record(&rec) else {
            tracing::warn!(run = %id, "a queued run's record does not read; it is left as it is");
            continue;
        };
        match admit(store, id, &key).await {
            Ok(Admission::Admitted) => admitted += 1,
            Ok(Admission::NotYet) => {
                // A record without its run: the run is being recorded (it
                // is written after the record), or never came (its
                // submitter died between the two) or was deleted; only a
                // record that old is taken for one whose run will not
                // come. (A run that exists and ended had its record
                // removed by `admit`.)
                let old = Utc::now() - rec.updated_at
                    > chrono::Duration::from_std(RECORD_WITHOUT_RUN).unwrap_or_default();
                if old && matches!(store.get_run_brief(id).await, Ok(None)) {
                    let _ = store.remove_record(RecordKind::RunQueued, &rec.key).await;
                }
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(run = %id, error = %e, "a queued run could not be looked at");
            }
        }
    }
    Ok(admitted)
}
