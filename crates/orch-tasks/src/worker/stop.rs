//! How a submitted run stops on its workers after a cancel or its timeout,
//! as a run one process drives does (`crate::run::grace`): when its
//! workflow has steps that run after a stop (`run_if: always`, `all_done`,
//! `failure`, `one_failed`, which includes `finally:` and `on_failure:`
//! steps), those still run until the run's cancel grace ends; every other
//! step is stopped (a cancel) or fails with `TimeoutError` (the timeout),
//! and one not yet started ends `cancelled` when it is claimed, so that the
//! graph drains through the store as usual (a cancelled step releases its
//! dependents). When the grace ends, whatever is left is cancelled and the
//! run ends. A run whose workflow has no such step stops at once.
//!
//! Every worker must stop at the same time: the grace of a timeout ends at
//! the run's deadline plus the grace; that of a cancel at the time the
//! canceller (or the first worker that saw the cancel) wrote down in the
//! run's [`RecordKind::RunStop`] record.

use super::definitions::RunDef;
use chrono::{DateTime, Utc};
use orch_model::store::{Record, RecordKind};
use orch_model::{RunId, Store, WorkflowStatus};
use serde_json::json;
use std::time::Duration;

/// A run on its way to a stop.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Stopping {
    /// When the steps that run after a stop must have ended.
    pub(crate) until: DateTime<Utc>,
    /// The run's timeout stopped it (it ends failed), else a cancel.
    pub(crate) timed_out: bool,
}

impl Stopping {
    /// What the run ends as when its grace is over.
    pub(crate) fn status(self) -> WorkflowStatus {
        if self.timed_out {
            WorkflowStatus::Failed
        } else {
            WorkflowStatus::Cancelled
        }
    }
}

/// `t` plus `d`, the latest time there is when that does not fit.
pub(crate) fn after(t: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(d)
        .ok()
        .and_then(|d| t.checked_add_signed(d))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// When a step of the run of `def` must have ended, if it must: a
/// `survivor` (a step that runs after a stop, in a run with a grace) when
/// the run's stop (`stopping`, or its deadline) plus the grace is over; any
/// other at the run's deadline.
pub(crate) fn stop_at(
    def: &RunDef,
    survivor: bool,
    stopping: Option<Stopping>,
) -> Option<Stopping> {
    match (survivor, stopping, def.deadline, def.grace) {
        (true, Some(st), _, _) => Some(st),
        (true, None, Some(d), Some(g)) => Some(Stopping {
            until: after(d, g),
            timed_out: true,
        }),
        (false, _, Some(d), _) => Some(Stopping {
            until: d,
            timed_out: true,
        }),
        _ => None,
    }
}

/// Completes when `stop_at` is reached; never without one.
pub(crate) async fn reached(stop_at: Option<Stopping>) {
    match stop_at {
        Some(st) => {
            let left = (st.until - Utc::now()).to_std().unwrap_or_default();
            tokio::time::sleep(left).await;
        }
        None => std::future::pending().await,
    }
}

/// Whether the run of `def` is stopping: past its deadline, or cancelled
/// (asked of the store; only for a run with a grace, whose tasks a cancel
/// leaves to its workers).
pub(crate) async fn stopping(store: &dyn Store, run: RunId, def: &RunDef) -> Option<Stopping> {
    let grace = def.grace?;
    let now = Utc::now();
    if let Some(d) = def.deadline.filter(|d| now >= *d) {
        return Some(Stopping {
            until: after(d, grace),
            timed_out: true,
        });
    }
    if store.cancel_requested(run).await.unwrap_or(false) {
        return Some(Stopping {
            until: cancel_until(store, run, grace).await,
            timed_out: false,
        });
    }
    None
}

/// When the grace of the cancelled run `run` ends: as its
/// [`RecordKind::RunStop`] record says, or (no record yet) `grace` from now,
/// written down for the others.
pub(crate) async fn cancel_until(store: &dyn Store, run: RunId, grace: Duration) -> DateTime<Utc> {
    let now = Utc::now();
    let mine = after(now, grace);
    let key = run.to_string();
    let rec = Record {
        kind: RecordKind::RunStop,
        key: key.clone(),
        data: json!({ "until": mine }),
        updated_at: now,
    };
    match store.create_record(rec).await {
        Ok(true) => mine,
        _ => match store.record(RecordKind::RunStop, &key).await {
            Ok(Some(r)) => r
                .data
                .get("until")
                .and_then(|v| serde_json::from_value(v.clone()).ok())
                .unwrap_or(mine),
            _ => mine,
        },
    }
}

/// Cancels the submitted run `run`: asked in the store (its workers see
/// it within a fraction of a second); when its workflow has steps that run
/// after a stop, their grace starts now and the workers stop the run
/// through it; otherwise every task that is not final is cancelled and the
/// run marked cancelled at once (a worker running one of its steps stops
/// it at its next look). A run that waits for a slot of its concurrency
/// key ends cancelled at once. False when the run was not running.
///
/// # Errors
/// The store's.
pub async fn cancel(store: &dyn Store, run: RunId) -> Result<bool, orch_model::OrchestrationError> {
    if !store.request_cancel(run).await? {
        return Ok(false);
    }
    let context = match store.record(RecordKind::RunContext, &run.to_string()).await {
        Ok(Some(r)) => serde_json::from_value::<super::definitions::RunContext>(r.data).ok(),
        _ => None,
    };
    // Only a run with a fan-out over a list known at run time has items'
    // runs: others are not looked for (that lists every run of the store).
    if context.as_ref().is_some_and(|c| c.items_runs) {
        cancel_items_runs(store, run).await;
    }
    // A run queued for its concurrency key has run nothing: it ends now.
    if super::queue::cancel_if_queued(store, run).await? {
        return Ok(true);
    }
    let holds_slot = context.as_ref().is_some_and(|c| c.holds_slot);
    let grace = context.and_then(|c| c.grace_ms).map(Duration::from_millis);
    if let Some(grace) = grace {
        cancel_until(store, run, grace).await;
        return Ok(true);
    }
    // A run holding a slot of its concurrency key, with a step running, is
    // left to its workers (the cancel is asked above): they stop its steps'
    // processes, then end it, so that the next run of its key starts once
    // they are gone, not while one may still run (as with
    // `on_conflict: cancel_running`).
    if holds_slot
        && store
            .get_run_brief(run)
            .await?
            .is_some_and(|r| r.tasks.running > 0)
    {
        return Ok(true);
    }
    let now = Utc::now();
    store.cancel_run(run, now).await?;
    store
        .finish_run(run, WorkflowStatus::Cancelled, now)
        .await?;
    Ok(true)
}

/// Cancels the runs of items that fan-out steps of `run` submitted to the
/// workers (`fanout.rs`), still running: the step that waits for them
/// cancels them too, but it may be on a worker that died.
async fn cancel_items_runs(store: &dyn Store, run: RunId) {
    let Ok(runs) = store.list_runs().await else {
        return;
    };
    for r in runs {
        if r.parent == Some(run)
            && r.status == WorkflowStatus::Running
            && r.owner.as_deref() == Some(super::SUBMITTED_OWNER)
        {
            let _ = Box::pin(cancel(store, r.id)).await;
        }
    }
}
