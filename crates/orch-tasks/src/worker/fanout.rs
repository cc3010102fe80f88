//! A fan-out step over a list known only at run time (`for_each:
//! "${STEP.result...}"`) claimed by a worker.
//!
//! As in a run one process drives (`crate::run` fan-out), the list is
//! resolved when the step starts and its items run as a run of their own,
//! recorded with this run as its parent and named `WORKFLOW.STEP`: here
//! that run is submitted to the workers of the store, so its items are
//! spread across them like any run's steps. Its first task is the fan-out
//! step itself, which gathers the items by the scheduler's rule; what it
//! comes to is the step's outcome, its result metadata naming the items'
//! run (`items_run`).
//!
//! - **One items' run per step.** Its id is derived from the parent run's
//!   and the step's index ([`crate::run::items_run_id`]): a worker that takes
//!   the step over (the first one died, or stopped and handed it back) finds
//!   the run the first one made and waits for it; nothing runs twice.
//! - **Waiting costs no slot.** While its items run, the step holds its
//!   claim (renewing the lease) and looks at the items' run every
//!   `cancel_poll`; it does not count against the worker's `--slots` (a
//!   worker with one slot still runs the items), nor hold resources (a
//!   fan-out step's task asks for none: its items do). A worker that stops
//!   hands such a step back at once; its items go on.
//! - **Stops reach the items.** A cancel of the parent run, the parent's
//!   timeout, or the step ending elsewhere cancels the items' run.

use super::Shared;
use super::claim::{End, end_run, failed, finish, hand_back};
use super::definitions::{ClaimScope, ClaimStep, RunDef};
use super::stop::{self, Stopping};
use crate::resolve::resolve_string;
use chrono::Utc;
use orch_model::store::TaskRecord;
use orch_model::{Claim, RunId, TaskOutcome, TaskResult, TaskStatus, WorkflowStatus};
use serde_json::{Map, Value};
use std::sync::atomic::Ordering;
use std::time::Instant;

/// Counts a waiting fan-out step while it lives (see the module docs).
struct Waiting<'a>(&'a Shared);

impl<'a> Waiting<'a> {
    fn new(sh: &'a Shared) -> Self {
        sh.waiting.fetch_add(1, Ordering::Relaxed);
        Self(sh)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Runs the items of the claimed fan-out step over a list known at run
/// time (the step was released: its trigger rule and `when` hold), and
/// completes the step with what they come to.
pub(crate) async fn run_items(
    sh: &Shared,
    claim: &Claim,
    def: &RunDef,
    cs: &ClaimStep<'_>,
    deps: &[TaskRecord],
    stopping: Option<Stopping>,
) -> End {
    let store = sh.store.as_ref();
    let child = crate::run::items_run_id(claim.run, claim.index);
    match store.get_run_brief(child).await {
        Ok(Some(_)) => {}
        Ok(None) => match create(sh, claim, def, cs, deps, child).await {
            Ok(()) => {}
            Err(Made::Store) => return End::StoreError,
            Err(Made::Refused(message)) => {
                return finish(sh, claim, failed("FanOutError", message)).await;
            }
        },
        Err(_) => return End::StoreError,
    }
    let _waiting = Waiting::new(sh);
    // When the step must have ended: the run's deadline, or, for a step
    // that runs after a stop, the end of the grace.
    let survivor = def.grace.is_some() && cs.step().conditions.run_if.runs_after_stop();
    let mut stop_at = stop::stop_at(def, survivor, stopping);
    let mut cancel_seen = stopping.is_some_and(|st| !st.timed_out);
    let mut beat = tokio::time::interval(sh.opts.lease / 3);
    beat.tick().await;
    let mut look = tokio::time::interval(sh.opts.cancel_poll);
    look.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing_since: Option<Instant> = None;
    loop {
        tokio::select! {
            () = sh.stopping.cancelled() => {
                // The worker stops: another one takes the step over and
                // waits for the same items.
                return hand_back(sh, claim).await;
            }
            _ = beat.tick() => {
                match store.heartbeat(claim, sh.opts.lease, Utc::now()).await {
                    Ok(true) => failing_since = None,
                    Ok(false) => {
                        // Stale: taken over (the items go on for the new
                        // holder), or ended elsewhere (the run was
                        // cancelled or timed out): then the items stop.
                        let ended = store
                            .task_records(claim.run, &[claim.index])
                            .await
                            .is_ok_and(|t| t.first().is_some_and(|t| t.status.is_terminal()));
                        if ended {
                            let _ = stop::cancel(store, child).await;
                        }
                        return End::Stale;
                    }
                    Err(_) => {
                        let since = *failing_since.get_or_insert_with(Instant::now);
                        if since.elapsed() >= sh.opts.lease {
                            return End::Stale;
                        }
                    }
                }
            }
            _ = look.tick() => {
                if let Ok(t) = store.task_records(child, &[0]).await {
                    if let Some(t) = t.into_iter().next().filter(|t| t.status.is_terminal()) {
                        return finish(sh, claim, outcome_of(t, child)).await;
                    }
                }
                if !cancel_seen && store.cancel_requested(claim.run).await.unwrap_or(false) {
                    cancel_seen = true;
                    match def.grace {
                        None => {
                            let _ = stop::cancel(store, child).await;
                            return end_run(sh, claim, WorkflowStatus::Cancelled).await;
                        }
                        Some(g) => {
                            let until = stop::cancel_until(store, claim.run, g).await;
                            if !survivor {
                                let _ = stop::cancel(store, child).await;
                                return finish(sh, claim, TaskOutcome::Cancelled).await;
                            }
                            // A step that runs after a stop: its items run
                            // on until the grace ends.
                            if stop_at.is_none_or(|st| until < st.until) {
                                stop_at = Some(Stopping { until, timed_out: false });
                            }
                        }
                    }
                }
            }
            () = stop::reached(stop_at) => {
                let _ = stop::cancel(store, child).await;
                let st = stop_at.unwrap_or(Stopping { until: Utc::now(), timed_out: true });
                if survivor {
                    let end = finish(sh, claim, TaskOutcome::Cancelled).await;
                    end_run(sh, claim, st.status()).await;
                    return end;
                }
                let limit =
                    std::time::Duration::from_millis(def.settings.run_timeout_ms.unwrap_or(0));
                let mut result = TaskResult::default();
                crate::run::stopped_by_timeout(&mut result, limit);
                result
                    .metadata
                    .insert("items_run".into(), Value::String(child.to_string()));
                let end = finish(sh, claim, TaskOutcome::Failed { result }).await;
                if matches!(end, End::Completed(_)) && def.grace.is_none() {
                    end_run(sh, claim, WorkflowStatus::Failed).await;
                }
                return end;
            }
        }
    }
}

/// Why the items' run was not made.
enum Made {
    /// The store failed: the claim lapses and the step is tried again.
    Store,
    /// The list is not one (or too long), or the items do not validate:
    /// the step fails with this.
    Refused(String),
}

/// Makes the items' run `child`: the list and the step's other references
/// resolved against its dependencies' records, the items expanded and the
/// run submitted to the workers with the claim's run as its parent.
async fn create(
    sh: &Shared,
    claim: &Claim,
    def: &RunDef,
    cs: &ClaimStep<'_>,
    deps: &[TaskRecord],
    child: RunId,
) -> Result<(), Made> {
    let store = sh.store.as_ref();
    let scope = ClaimScope {
        def,
        run: claim.run,
        deps,
    };
    let wf = crate::run::items_workflow(&cs.workflow().name, cs.step(), &mut |s| {
        resolve_string(s, &scope)
    })
    .map_err(Made::Refused)?;
    let mut settings = def.settings.clone();
    // The parent's timeout bounds the items: its step cancels them.
    settings.run_timeout_ms = None;
    settings.retry_of = None;
    let (mut run, context) = super::for_workers(child, &wf, Map::new(), &settings)
        .map_err(|e| Made::Refused(e.to_string()))?;
    run.parent = Some(claim.run);
    store.put_record(context).await.map_err(|_| Made::Store)?;
    if let Err(e) = store.create_run(run, Utc::now()).await {
        // Made meanwhile by another attempt of this step (a stale one)?
        return match store.get_run_brief(child).await {
            Ok(Some(_)) => Ok(()),
            _ if e.is_retryable() => Err(Made::Store),
            _ => Err(Made::Refused(format!(
                "the items' run could not be recorded: {e}"
            ))),
        };
    }
    store
        .set_owner(child, Some(super::SUBMITTED_OWNER.to_owned()))
        .await
        .map_err(|_| Made::Store)?;
    Ok(())
}

/// What the step comes to: what the items' fan-out step (`t`, the first
/// task of the items' run) came to, with `items_run` in its result's
/// metadata.
fn outcome_of(t: TaskRecord, child: RunId) -> TaskOutcome {
    let tag = |mut r: TaskResult| {
        r.metadata
            .insert("items_run".into(), Value::String(child.to_string()));
        r
    };
    match t.status {
        TaskStatus::Completed => TaskOutcome::Succeeded {
            result: tag(t
                .result
                .unwrap_or_else(|| TaskResult::ok(Value::Array(Vec::new())))),
        },
        TaskStatus::Skipped => TaskOutcome::Skipped {
            reason: t
                .note
                .unwrap_or_else(|| "every item was skipped".to_owned()),
        },
        TaskStatus::Cancelled => TaskOutcome::Cancelled,
        _ => TaskOutcome::Failed {
            result: tag(t.result.unwrap_or_else(|| {
                TaskResult::failed("FanOutError", "the items' run ended without a result")
            })),
        },
    }
}
