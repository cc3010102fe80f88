//! Concurrency keys: a workflow's `concurrency: {key, limit, on_conflict}` lets at most `limit` runs of one rendered key run at once, across every process that shares the store.
//!
//! Each of a key's `limit` slots is a named lease of the store
//! (`Store::lead`, the same leases that elect a reclaimer or a schedule's
//! firer), `concurrency/KEY/N`, held by the run's id. A run takes a free
//! slot before its first step and gives it back when it ends; while it
//! runs, its process renews the lease every [`RENEW_EVERY`]. A process that
//! dies stops renewing, and its slot is free again [`SLOT_TTL`] later, or at
//! once when a run that wants it finds the holder's run ended or
//! interrupted in the store. A resumed run takes its own slot back (a
//! lease's holder may renew it). Runs submitted to workers take the same
//! slots from the store without a process to renew them
//! (`orch_tasks::worker::queue`): their lease is long, and they hold it
//! while their run has not ended.
//!
//! When every slot is taken, `on_conflict` decides: `queue` waits (looking
//! again every [`LOOK_AGAIN`]; cancelling the run stops the wait; the run's
//! events get one [`Event::RunWaiting`] for its user, and the log a line),
//! `cancel_running` asks the holders' runs to stop (as `orch cancel` does)
//! and waits for a slot, `skip` runs no step (every step is skipped, and
//! the run is not recorded).

use crate::OrchestrationEngine;
use chrono::Utc;
use orch_model::{
    OnConflict, OrchestrationError, RunId, Store, TaskStatus, ValidWorkflow, WorkflowStatus,
};
use orch_tasks::worker::queue::{RunKey, Slot as Taken, take_slot};
use orch_tasks::{Event, RunReport, StepReport};
use serde_json::{Map, Value};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc::UnboundedSender;
use tokio_util::sync::CancellationToken;

/// How long a slot stays held without a renewal.
pub const SLOT_TTL: Duration = Duration::from_secs(30);
/// How often a running run renews its slot.
pub const RENEW_EVERY: Duration = Duration::from_secs(10);
/// How often a waiting run looks for a free slot.
pub const LOOK_AGAIN: Duration = Duration::from_millis(250);

/// A run's rendered key and its workflow's settings.
pub(crate) type KeySpec = RunKey;

/// The concurrency key of a run of `wf` with `params`, if it has one.
///
/// # Errors
/// `InvalidParameters` when the key does not render.
pub(crate) fn key_of(
    wf: &ValidWorkflow,
    params: &Map<String, Value>,
) -> Result<Option<KeySpec>, OrchestrationError> {
    let Some(c) = wf.workflow().concurrency.as_deref() else {
        return Ok(None);
    };
    // The run's values over the workflow's defaults, as the run will see them.
    let mut all = wf.workflow().parameters.clone();
    all.extend(params.iter().map(|(k, v)| (k.clone(), v.clone())));
    let key = c.render_key(&all).map_err(|m| {
        OrchestrationError::invalid_parameters(format!("the concurrency key `{}`: {m}", c.key))
    })?;
    Ok(Some(KeySpec {
        key,
        limit: c.limit.max(1),
        on_conflict: c.on_conflict,
    }))
}

/// What entering a run's key came to.
#[derive(Debug)]
pub(crate) enum Entered {
    /// The workflow has no key.
    Free,
    /// A slot, held until [`Entered::leave`].
    Held(Slot),
    /// Every slot was taken and the policy is `skip`: the run's report.
    Skipped(RunReport),
}

impl Entered {
    /// Gives the slot back, if one is held.
    pub(crate) async fn leave(self) {
        if let Entered::Held(s) = self {
            s.leave().await;
        }
    }
}

/// A held slot and the task that renews it.
#[derive(Debug)]
pub(crate) struct Slot {
    store: Arc<dyn Store>,
    name: String,
    holder: String,
    renew: tokio::task::JoinHandle<()>,
    left: bool,
}

impl Slot {
    fn hold(store: Arc<dyn Store>, name: String, holder: String) -> Self {
        let renew = tokio::spawn({
            let (store, name, holder) = (store.clone(), name.clone(), holder.clone());
            async move {
                let mut tick = tokio::time::interval(RENEW_EVERY);
                tick.tick().await;
                loop {
                    tick.tick().await;
                    match store.lead(&name, &holder, SLOT_TTL, Utc::now()).await {
                        Ok(true) => {}
                        Ok(false) => {
                            tracing::warn!(slot = %name, run = %holder, "a run lost its concurrency slot (it was not renewed in time)");
                        }
                        Err(e) => {
                            tracing::warn!(slot = %name, run = %holder, error = %e, "a concurrency slot could not be renewed");
                        }
                    }
                }
            }
        });
        Self {
            store,
            name,
            holder,
            renew,
            left: false,
        }
    }

    async fn leave(mut self) {
        self.left = true;
        self.renew.abort();
        if let Err(e) = self.store.resign(&self.name, &self.holder).await {
            tracing::warn!(slot = %self.name, error = %e, "a concurrency slot could not be given back; it frees itself when its lease ends");
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.renew.abort();
        if !self.left {
            // The run's task was dropped (aborted): give the slot back if a
            // runtime is there to do it; otherwise its lease runs out.
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                let (store, name, holder) =
                    (self.store.clone(), self.name.clone(), self.holder.clone());
                rt.spawn(async move {
                    let _ = store.resign(&name, &holder).await;
                });
            }
        }
    }
}

/// The event that tells that run `run_id` waits for a slot of `spec`'s
/// key, held by `holders`.
pub(crate) fn waiting(run_id: RunId, spec: &KeySpec, holders: Vec<String>) -> Event {
    Event::RunWaiting {
        run_id,
        key: spec.key.clone(),
        limit: spec.limit,
        holders,
        on_conflict: spec.on_conflict,
    }
}

/// Takes a slot of the run's key (see the module's documentation); the
/// wait is told on `events` (the run's, when someone follows them).
///
/// # Errors
/// The store's (a store without leases answers `Unsupported`);
/// `Cancelled` when `cancel` fires while the run waits.
pub(crate) async fn enter(
    engine: &OrchestrationEngine,
    spec: Option<KeySpec>,
    run_id: RunId,
    wf: &ValidWorkflow,
    cancel: &CancellationToken,
    events: Option<&UnboundedSender<Event>>,
) -> Result<Entered, OrchestrationError> {
    let Some(spec) = spec else {
        return Ok(Entered::Free);
    };
    let store = engine.store().clone();
    let holder = run_id.to_string();
    let mut asked: HashSet<String> = HashSet::new();
    let mut told = false;
    loop {
        // A slot it holds, a free one, or one whose holder's run ended or
        // whose process died (its run is interrupted in the store).
        let holders = match take_slot(store.as_ref(), &spec, &holder, SLOT_TTL).await? {
            Taken::Taken(name) => return Ok(Entered::Held(Slot::hold(store, name, holder))),
            Taken::Full(holders) => holders,
        };
        let held_by = holders.join(", ");
        match spec.on_conflict {
            OnConflict::Skip => {
                return Ok(Entered::Skipped(skipped(
                    run_id,
                    wf,
                    format!(
                        "skipped: the concurrency key `{}` is held by run {held_by} (limit {}, on_conflict: skip)",
                        spec.key, spec.limit
                    ),
                )));
            }
            OnConflict::CancelRunning => {
                for h in &holders {
                    if asked.insert(h.clone()) {
                        if let Ok(id) = h.parse::<RunId>() {
                            tracing::info!(run = %run_id, key = %spec.key, holder = %h, "asking the run that holds the concurrency key to stop (on_conflict: cancel_running)");
                            // It may have ended meanwhile: then there is nothing to stop.
                            let _ = engine.cancel_run(id, Duration::ZERO).await;
                        }
                    }
                }
            }
            OnConflict::Queue => {}
        }
        if !told {
            told = true;
            // A log line; what shows the run tells its user from the event.
            tracing::info!(run = %run_id, key = %spec.key, limit = spec.limit, holders = %held_by, "the run waits for a slot of its concurrency key");
            if let Some(tx) = events {
                let _ = tx.send(waiting(run_id, &spec, holders));
            }
        }
        tokio::select! {
            () = tokio::time::sleep(LOOK_AGAIN) => {}
            () = cancel.cancelled() => {
                return Err(OrchestrationError::Cancelled {
                    message: format!(
                        "run {run_id} was cancelled while it waited for the concurrency key `{}`",
                        spec.key
                    ),
                });
            }
        }
    }
}

/// The report of a run that did not run: every step skipped, with `why`.
fn skipped(run_id: RunId, wf: &ValidWorkflow, why: String) -> RunReport {
    let now = Utc::now();
    RunReport {
        run_id,
        workflow: wf.workflow().name.clone(),
        status: WorkflowStatus::Completed,
        duration: Duration::ZERO,
        steps: wf
            .workflow()
            .steps
            .iter()
            .map(|s| StepReport {
                name: s.name.clone(),
                status: TaskStatus::Skipped,
                attempts: 0,
                created_at: now,
                ready_at: None,
                started_at: None,
                finished_at: Some(now),
                result: None,
                note: Some(why.clone()),
            })
            .collect(),
        error: None,
    }
}
