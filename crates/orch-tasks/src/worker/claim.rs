//! One claimed task on a worker: its run's definition, the release rule
//! (`crate::release::decide`), its share of the worker's capacity, the
//! attempt through the executor with its lease renewed, and the completion
//! (or, when the claim went stale, nothing).

use super::Shared;
use super::cache::{self, Lookup};
use super::complete::Completion;
use super::definitions::{ClaimScope, ClaimStep, RunDef};
use super::stop::{self, Stopping};
use crate::action::ActionContext;
use crate::executor::{Attempt, AttemptPolicy, Outcome, OutcomeSink};
use crate::release::{Gate, Release, decide};
use chrono::Utc;
use orch_model::store::{ResourceAmounts, StoredEvent, TaskRecord};
use orch_model::{Claim, OrchestrationError, TaskOutcome, TaskResult, TaskStatus, WorkflowStatus};
use serde_json::{Map, Value, json};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

/// How a claim ended on this worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum End {
    /// Completed in the store with this final state.
    Completed(TaskStatus),
    /// The claim went stale (lease lost, task finished or cancelled
    /// elsewhere): its outcome was dropped.
    Stale,
    /// Handed back (the worker stops, or the step can never fit it).
    HandedBack,
    /// The store failed; the lease will lapse and the task be reclaimed.
    StoreError,
}

/// Delivers the one outcome of one attempt into a oneshot channel.
struct OneShot(Mutex<Option<oneshot::Sender<Outcome>>>);

impl OutcomeSink for OneShot {
    fn deliver(&self, outcome: Outcome) {
        let tx = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(tx) = tx {
            let _ = tx.send(outcome);
        }
    }
}

/// Serves one claim to its end. `reserved`: the claim's needs were taken
/// from the worker's pool when it arrived (they are given back here).
/// `deps`: its dependencies' records when they were read with its batch.
pub(crate) async fn serve(
    sh: Arc<Shared>,
    claim: Claim,
    reserved: bool,
    deps: Option<Vec<TaskRecord>>,
) -> End {
    let end = serve_inner(&sh, &claim, reserved, deps).await;
    if reserved {
        sh.pool.give(&claim.needs);
    }
    sh.release_held(&claim);
    end
}

async fn serve_inner(
    sh: &Shared,
    claim: &Claim,
    reserved: bool,
    pre: Option<Vec<TaskRecord>>,
) -> End {
    let store = sh.store.as_ref();
    let def = match sh.defs.get(store, claim).await {
        Ok(d) => d,
        Err(e) if e.is_retryable() => return End::StoreError,
        Err(e) => {
            let msg = format!("the worker cannot read the run's saved definition: {e}");
            return finish(sh, claim, failed("DefinitionError", msg)).await;
        }
    };
    // A run on its way to a stop (see `stop.rs`).
    let stopping = if def.grace.is_some() {
        stop::stopping(store, claim.run, &def).await
    } else if def.deadline.is_some_and(|d| Utc::now() >= d) {
        // The run's timeout has passed: nothing more of it starts.
        return end_run(sh, claim, WorkflowStatus::Failed).await;
    } else {
        None
    };
    if let Some(st) = stopping.filter(|st| Utc::now() >= st.until) {
        // Its grace is over: what is left of it is cancelled.
        return end_run(sh, claim, st.status()).await;
    }
    let cs = match def.step_of(claim) {
        Ok(cs) => cs,
        Err(e) => return finish(sh, claim, failed("DefinitionError", e.to_string())).await,
    };
    let step = cs.step();
    if stopping.is_some() && !step.conditions.run_if.runs_after_stop() {
        // Stopping: only the steps that run after a stop still start.
        return finish(sh, claim, TaskOutcome::Cancelled).await;
    }
    // The release rule, over the dependencies' final states as stored.
    let deps = if let Some(d) = pre.filter(|d| d.len() == cs.deps.len()) {
        d
    } else if cs.deps.is_empty() {
        Vec::new()
    } else {
        match store.task_records(claim.run, &cs.deps).await {
            Ok(d) => d,
            Err(_) => return End::StoreError,
        }
    };
    if let Some(outcome) = fan_out(step, &deps) {
        return finish(sh, claim, outcome).await;
    }
    let dynamic = matches!(
        step.fan_out.as_deref(),
        Some(orch_model::definition::FanOut::Ref(_))
    );
    // A rule over every upstream step reads them all.
    let upstream = if step.conditions.run_if.over_upstream() {
        match store.task_records(claim.run, &cs.upstream()).await {
            Ok(r) => crate::upstream::Upstream::of_all(r.iter().map(|t| t.status)),
            Err(_) => return End::StoreError,
        }
    } else {
        crate::upstream::Upstream::ALL_COMPLETED
    };
    let decided = {
        let scope = ClaimScope {
            def: &def,
            run: claim.run,
            deps: &deps,
        };
        let gate = Gate {
            run_if: step.conditions.run_if,
            upstream,
            when: step.conditions.when.as_deref(),
            // A list known at run time: its `${item}` is resolved per item.
            params: (!step.parameters.is_empty() && !dynamic).then(|| {
                (
                    step.module.as_str(),
                    step.action.as_str(),
                    &*step.parameters,
                )
            }),
        };
        let states = deps.iter().map(|t| (t.status, t.name.as_str()));
        decide(gate, states, &scope)
    };
    let params = match decided {
        Release::Run(_) if dynamic => {
            sh.starts.started(claim).await;
            return super::fanout::run_items(sh, claim, &def, &cs, &deps, stopping).await;
        }
        Release::Run(p) => Value::Object(p.unwrap_or_else(Map::new)),
        Release::Skip(reason) => return finish(sh, claim, TaskOutcome::Skipped { reason }).await,
        Release::Fail(message) => {
            return finish(sh, claim, failed("ReferenceError", message)).await;
        }
    };
    let Some(action) = sh.registry.get(&step.module, &step.action) else {
        let msg = format!(
            "worker {} has no action `{}.{}` (an external module is registered with --module NAME=PROGRAM)",
            sh.opts.id, step.module, step.action
        );
        return finish(sh, claim, failed("ModuleNotFound", msg)).await;
    };
    // The result cache, with the key a run one process drives computes.
    let key = {
        let scope = ClaimScope {
            def: &def,
            run: claim.run,
            deps: &deps,
        };
        let work_dir = sh.work_dir_for(&def);
        cache::key_of(store, &cs, &params, &deps, &work_dir, &scope)
    };
    let cache_key = match cache::look_up(store, &cs, key, def.settings.no_cache).await {
        Lookup::Hit(result) => return finish(sh, claim, TaskOutcome::Succeeded { result }).await,
        Lookup::Miss(key) => Some(key),
        Lookup::Off => None,
    };
    let attempt = Prepared {
        def: &def,
        cs: &cs,
        action,
        params,
        cache_key,
        stopping,
    };
    let token = sh.hard.child_token();
    if reserved {
        // Its share was taken when the store handed it out.
        return run_attempt(sh, claim, attempt, token).await;
    }
    // A store that does not fit claims to capacities: the worker checks.
    // Its share of the worker's capacity: never more than declared.
    let too_small = sh.pool.capacity().too_small_for(&step.resources);
    if !too_small.is_empty() {
        sh.backoff.store(true, std::sync::atomic::Ordering::Relaxed);
        return hand_back(sh, claim).await;
    }
    let needs = ResourceAmounts::of(&step.resources);
    {
        let take = sh.pool.take(&needs);
        tokio::pin!(take);
        loop {
            tokio::select! {
                () = &mut take => break,
                () = token.cancelled() => return hand_back(sh, claim).await,
                () = tokio::time::sleep(sh.opts.lease / 3) => {
                    match store.heartbeat(claim, sh.opts.lease, Utc::now()).await {
                        Ok(true) => {}
                        Ok(false) => return End::Stale,
                        Err(_) => {}
                    }
                }
            }
        }
    }
    let end = run_attempt(sh, claim, attempt, token).await;
    sh.pool.give(&needs);
    end
}

/// What an attempt of a claimed step runs with.
struct Prepared<'a> {
    def: &'a RunDef,
    cs: &'a ClaimStep<'a>,
    action: Arc<dyn crate::action::Action>,
    params: Value,
    /// Where a success is cached.
    cache_key: Option<String>,
    /// The run's stop, when it was on its way to one at the claim.
    stopping: Option<Stopping>,
}

/// Why the run (not the worker) stopped an attempt.
#[derive(Debug, Clone, Copy)]
enum Cut {
    /// Cancelled, and the run has no grace: it ends now.
    RunCancelled,
    /// Cancelled, and the run has a grace this step does not run in.
    StepCancelled,
    /// The run's timeout, for a step that does not run after a stop.
    TimedOut,
    /// The grace of a step that runs after a stop ended.
    GraceOver(Stopping),
}

/// The attempt itself, its lease renewed every lease/3 while it runs.
async fn run_attempt(sh: &Shared, claim: &Claim, p: Prepared<'_>, token: CancellationToken) -> End {
    let Prepared {
        def,
        cs,
        action,
        params,
        cache_key,
        stopping,
    } = p;
    let store = sh.store.as_ref();
    let step = cs.step();
    // Its attempt starts: followers are told now, not at the claim.
    sh.starts.started(claim).await;
    let work_dir = sh.work_dir_for(def);
    // Read where the step runs, as a local run reads them when it starts.
    let secrets = match crate::secrets::for_attempt(cs.workflow(), step, &work_dir) {
        Ok(s) => s,
        Err(e) => return finish(sh, claim, failed("SecretError", e.to_string())).await,
    };
    let (tx, mut rx) = oneshot::channel();
    let sink: Arc<dyn OutcomeSink> = Arc::new(OneShot(Mutex::new(Some(tx))));
    let attempt = Attempt {
        task: claim.index,
        action,
        params,
        policy: AttemptPolicy {
            timeout: step.timeout,
            max_retries: step.max_retries,
            retry: step.retry.clone(),
        },
        ctx: ActionContext {
            run_id: claim.run,
            step: step.name.clone(),
            action: step.action.clone(),
            attempt: 1,
            work_dir,
            cancel: token.clone(),
            kill_grace: sh.opts.kill_grace,
            output_limit: sh.opts.output_limit,
            output: sh
                .output
                .as_ref()
                .map(|w| w.step(claim.run, claim.index, claim.attempt)),
            secrets,
        },
        run_cancel: None,
        events: None,
        epoch: (Utc::now(), Instant::now()),
    };
    let mut done = Vec::new();
    sh.executor.submit(vec![attempt], &mut done, &sink);
    // Why the attempt was stopped, when it was: by the worker, or by the run.
    let mut stopped: Option<End> = None;
    let mut cut: Option<Cut> = None;
    // A step that runs after a stop runs until the grace ends; any other
    // until the run's deadline.
    let survivor = def.grace.is_some() && step.conditions.run_if.runs_after_stop();
    let mut stop_at: Option<Stopping> = stop::stop_at(def, survivor, stopping);
    let mut cancel_seen = stopping.is_some_and(|st| !st.timed_out);
    let outcome = match done.pop() {
        Some(o) => Some(o),
        None => {
            let mut beat = tokio::time::interval(sh.opts.lease / 3);
            beat.tick().await;
            // Whether someone asked to cancel the run: asked far more often
            // than the lease is renewed, so that a cancel reaches a running
            // step within a fraction of a second.
            let mut watch = tokio::time::interval(sh.opts.cancel_poll);
            watch.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            watch.tick().await;
            let mut failing_since: Option<Instant> = None;
            loop {
                tokio::select! {
                    o = &mut rx => break o.ok(),
                    () = sh.hard.cancelled(), if stopped.is_none() => {
                        stopped = Some(End::HandedBack);
                        token.cancel();
                    }
                    _ = beat.tick(), if stopped.is_none() => {
                        let now = Utc::now();
                        match store.heartbeat(claim, sh.opts.lease, now).await {
                            Ok(true) => failing_since = None,
                            Ok(false) => {
                                // Stale: another attempt took over, or the
                                // task ended (its run was cancelled).
                                stopped = Some(End::Stale);
                                token.cancel();
                                continue;
                            }
                            Err(_) => {
                                // The store may come back; past the lease,
                                // the task is someone else's.
                                let since = *failing_since.get_or_insert_with(Instant::now);
                                if since.elapsed() >= sh.opts.lease {
                                    stopped = Some(End::Stale);
                                    token.cancel();
                                }
                                continue;
                            }
                        }
                    }
                    () = stop::reached(stop_at), if stopped.is_none() && cut.is_none() => {
                        cut = stop_at.map(|st| if survivor { Cut::GraceOver(st) } else { Cut::TimedOut });
                        token.cancel();
                    }
                    _ = watch.tick(), if stopped.is_none() && cut.is_none() && !cancel_seen => {
                        if store.cancel_requested(claim.run).await.unwrap_or(false) {
                            cancel_seen = true;
                            match def.grace {
                                None => {
                                    cut = Some(Cut::RunCancelled);
                                    token.cancel();
                                }
                                Some(g) if survivor => {
                                    // It runs on, until the grace ends.
                                    let until = stop::cancel_until(store, claim.run, g).await;
                                    if stop_at.is_none_or(|st| until < st.until) {
                                        stop_at = Some(Stopping { until, timed_out: false });
                                    }
                                }
                                Some(g) => {
                                    // The grace starts for the others.
                                    stop::cancel_until(store, claim.run, g).await;
                                    cut = Some(Cut::StepCancelled);
                                    token.cancel();
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    match stopped {
        Some(End::HandedBack) => return hand_back(sh, claim).await,
        Some(other) => return other,
        None => {}
    }
    match cut {
        None => {}
        Some(Cut::RunCancelled) => {
            // The run was asked to stop: this worker ends it in the store
            // (its other tasks are cancelled; their workers see it at their
            // next look). Its own claim is cancelled with it.
            return end_run(sh, claim, WorkflowStatus::Cancelled).await;
        }
        Some(Cut::StepCancelled) => {
            return finish(sh, claim, stored_or_cancelled(outcome)).await;
        }
        Some(Cut::TimedOut) => {
            // The run's timeout stopped the step: it failed so (as in a run
            // one process drives). Without a grace the run ends failed at
            // once, what is left of it cancelled; with one, the steps that
            // run after a stop still run.
            let limit = std::time::Duration::from_millis(def.settings.run_timeout_ms.unwrap_or(0));
            let to_store = match outcome {
                // It ended by itself just as the timeout came.
                Some(o) if o.status != TaskStatus::Cancelled => stored(o),
                other => {
                    let mut result = other.map_or_else(TaskResult::default, |o| o.result);
                    crate::run::stopped_by_timeout(&mut result, limit);
                    TaskOutcome::Failed { result }
                }
            };
            let end = finish(sh, claim, to_store).await;
            if matches!(end, End::Completed(_)) && def.grace.is_none() {
                end_run(sh, claim, WorkflowStatus::Failed).await;
            }
            return end;
        }
        Some(Cut::GraceOver(st)) => {
            // The grace is over: this step is stopped, and what is left of
            // the run cancelled.
            let end = finish(sh, claim, stored_or_cancelled(outcome)).await;
            end_run(sh, claim, st.status()).await;
            return end;
        }
    }
    let outcome = match outcome {
        // Stopped because the worker stops: handed back, not cancelled.
        Some(o) if o.status == TaskStatus::Cancelled && sh.hard.is_cancelled() => {
            return hand_back(sh, claim).await;
        }
        Some(o) => o,
        None => {
            return finish(
                sh,
                claim,
                failed("ActionPanic", "the attempt ended without an outcome"),
            )
            .await;
        }
    };
    if let (Some(key), TaskStatus::Completed) = (cache_key, outcome.status) {
        cache::store_result(store, key, &outcome.result.data).await;
    }
    finish(sh, claim, stored(outcome)).await
}

/// An attempt the run stopped: what it ended with when it ended by itself
/// just then, else cancelled.
fn stored_or_cancelled(outcome: Option<Outcome>) -> TaskOutcome {
    match outcome {
        Some(o) if o.status != TaskStatus::Cancelled => stored(o),
        _ => TaskOutcome::Cancelled,
    }
}

/// What the store records of an attempt's outcome.
fn stored(outcome: Outcome) -> TaskOutcome {
    match outcome.status {
        TaskStatus::Completed => TaskOutcome::Succeeded {
            result: outcome.result,
        },
        TaskStatus::Cancelled => TaskOutcome::Cancelled,
        _ => TaskOutcome::Failed {
            result: outcome.result,
        },
    }
}

pub(crate) fn failed(kind: &str, message: impl Into<String>) -> TaskOutcome {
    TaskOutcome::Failed {
        result: TaskResult::failed(kind, message.into()),
    }
}

/// Ends the claim's run in the store with `status` (asked to cancel, or
/// past its timeout): what is left of it is cancelled, this claim with it
/// when it is still open (the workers of its other tasks see it at their
/// next heartbeat).
pub(crate) async fn end_run(sh: &Shared, claim: &Claim, status: WorkflowStatus) -> End {
    let store = sh.store.as_ref();
    let now = Utc::now();
    let _ = store.cancel_run(claim.run, now).await;
    let _ = store.finish_run(claim.run, status, now).await;
    events_finished(sh, claim, TaskStatus::Cancelled).await;
    End::Completed(TaskStatus::Cancelled)
}

/// Completes the claim with `outcome` (fenced by its attempt number in the
/// store), in a batch with the other outcomes that arrive meanwhile, with a
/// `tasks_finished` event.
pub(crate) async fn finish(sh: &Shared, claim: &Claim, outcome: TaskOutcome) -> End {
    let status = outcome.status();
    let (reply, answer) = oneshot::channel();
    let sent = sh.completions.send(Completion {
        claim: claim.clone(),
        outcome,
        reply,
    });
    if sent.is_err() {
        return End::StoreError;
    }
    match answer.await {
        Ok(Ok(())) => End::Completed(status),
        Ok(Err(OrchestrationError::InvalidState { .. })) => End::Stale,
        Ok(Err(_)) | Err(_) => End::StoreError,
    }
}

/// The `tasks_finished` event a journaled run would record, so that
/// followers of the run see it.
async fn events_finished(sh: &Shared, claim: &Claim, status: TaskStatus) {
    let e = StoredEvent {
        seq: 0,
        at: Utc::now(),
        kind: "tasks_finished".into(),
        task: Some(claim.index),
        data: json!({
            "tasks": [[claim.index, status.as_str(), claim.attempt]],
            "worker": sh.opts.id,
        }),
    };
    // Progress only: the completion is what counts.
    let _ = sh.store.append_events(claim.run, vec![e]).await;
}

/// Gives the claim back: the task is ready again at once for any worker
/// (its next claim has the next attempt number).
pub(crate) async fn hand_back(sh: &Shared, claim: &Claim) -> End {
    match sh.store.release_claim(claim, Utc::now()).await {
        Ok(true) => End::HandedBack,
        Ok(false) => End::Stale,
        Err(_) => End::StoreError,
    }
}

/// A fan-out step claimed by a worker: a literal one gathers its items (its
/// dependencies, read above) by the scheduler's rule; a list known at run
/// time is released as any step, then runs its items (`fanout.rs`).
fn fan_out(
    step: &orch_model::WorkflowStep,
    items: &[orch_model::store::TaskRecord],
) -> Option<TaskOutcome> {
    use orch_model::definition::FanOut;
    match step.fan_out.as_deref()? {
        FanOut::Item { .. } | FanOut::Ref(_) => None,
        FanOut::List(_) | FanOut::Matrix(_) => Some(
            match crate::run::gathered(items.iter().map(|t| {
                let data = t
                    .result
                    .as_ref()
                    .filter(|r| t.status == TaskStatus::Completed && r.success)
                    .map(|r| &r.data);
                (t.status, t.name.as_str(), data, t.note.as_deref())
            })) {
                crate::run::Gathered::Completed(data) => TaskOutcome::Succeeded {
                    result: TaskResult::ok(data),
                },
                crate::run::Gathered::Skipped(reason) => TaskOutcome::Skipped { reason },
                crate::run::Gathered::Failed(message, data) => {
                    let mut result = TaskResult::failed("FanOutError", message);
                    result.data = data;
                    TaskOutcome::Failed { result }
                }
            },
        ),
    }
}
