//! The journal of a run kept in a `Store`: the run recorded at its start (or
//! taken over on resume), each turn's starts and final states committed
//! together before dependents are released, and cancellation asked through the
//! store.

use super::identity::process_identity;
use super::options::{RunOptions, StepReport};
use super::state::State;
use crate::event::Event;
use chrono::{DateTime, Utc};
use orch_model::store::{Progress, StoredEvent};
use orch_model::{
    Finished, OrchestrationError, RunId, RunSettings, Store, TaskOutcome, ValidWorkflow,
};
use serde_json::{Map, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// The store side of a journaled run: outcomes waiting to be committed, and
/// the completions whose dependents wait for that commit.
pub(super) struct Journal {
    pub(super) store: Arc<dyn Store>,
    pub(super) run_id: RunId,
    /// Final states to commit, in order.
    pub(super) finished: Vec<Finished>,
    /// Steps whose dependents are released once `finished` is committed.
    pub(super) deferred: Vec<(u32, DateTime<Utc>, bool)>,
    /// The store's attempt number of each step's current attempt.
    pub(super) attempts: Vec<u32>,
    /// Attempts made before this process took the run over (resume).
    pub(super) prior: Vec<u32>,
    /// Events to append with the next commit.
    pub(super) events: Vec<StoredEvent>,
    /// When the store was last asked whether someone wants the run cancelled.
    pub(super) last_poll: Instant,
}

impl Journal {
    /// Consumes one of the run's events (`State::record`): a step's final
    /// state becomes a record to commit with the turn, read from the event
    /// and from the step's report (its result). Other events change nothing
    /// here: starts are recorded by the coordinator at the commit barrier
    /// (`flush`, `record_starts`).
    pub(super) fn observe(&mut self, e: &Event, report: &StepReport) {
        let result = || report.result.clone().unwrap_or_default();
        // A step that started ends with the attempt the store gave its
        // start (`STARTED`, filled in by `flush`); one that never started,
        // with 0.
        let (index, attempt, retries, outcome) = match e {
            Event::TaskSucceeded { task, attempts, .. } => (
                *task,
                STARTED,
                attempts.saturating_sub(1),
                TaskOutcome::Succeeded { result: result() },
            ),
            Event::TaskCached { task, .. } => {
                (*task, 0, 0, TaskOutcome::Succeeded { result: result() })
            }
            Event::TaskFailed { task, attempts, .. } => (
                *task,
                if *attempts == 0 { 0 } else { STARTED },
                attempts.saturating_sub(1),
                TaskOutcome::Failed { result: result() },
            ),
            Event::TaskSkipped { task, reason, .. } => (
                *task,
                0,
                0,
                TaskOutcome::Skipped {
                    reason: reason.clone(),
                },
            ),
            Event::TaskCancelled { task, attempts, .. } => (
                *task,
                if *attempts == 0 { 0 } else { STARTED },
                attempts.saturating_sub(1),
                TaskOutcome::Cancelled,
            ),
            _ => return,
        };
        self.finished.push(Finished {
            index,
            attempt,
            retries,
            outcome,
        });
    }
}

/// Commits what the journal holds (the steps `started` in this turn, which
/// are recorded as started first, and every final state), then releases the
/// dependents of the committed steps; repeats while releasing produces more
/// final states (skips). Every completion is committed before its
/// dependents start.
pub(super) async fn flush(
    st: &mut State<'_>,
    dependents: &orch_model::graph::DepGraph,
    started: &[u32],
) -> Result<(), OrchestrationError> {
    let mut started = started;
    loop {
        let Some(j) = st.journal.as_mut() else {
            return Ok(());
        };
        if started.is_empty()
            && j.finished.is_empty()
            && j.deferred.is_empty()
            && j.events.is_empty()
        {
            return Ok(());
        }
        let now = Utc::now();
        let starting = std::mem::take(&mut started);
        if !starting.is_empty() {
            // The store gives a started task its next attempt number: the
            // one after the attempt it holds (checked below).
            for &i in starting {
                j.attempts[i as usize] += 1;
            }
            // One event per turn: which steps started, with their attempt numbers.
            let attempts = &j.attempts;
            let list = starting.iter().map(|&i| (i, attempts[i as usize]));
            j.events.push(Progress::started(now, list));
        }
        let mut done = std::mem::take(&mut j.finished);
        for f in &mut done {
            if f.attempt == STARTED {
                f.attempt = j.attempts[f.index as usize];
            }
        }
        let deferred = std::mem::take(&mut j.deferred);
        let mut events = std::mem::take(&mut j.events);
        if !done.is_empty() {
            // One event per commit: which steps ended how.
            let ended = done
                .iter()
                .map(|f| (f.index, f.outcome.status(), f.attempt));
            events.push(Progress::finished(now, ended));
        }
        let (store, run) = (j.store.clone(), j.run_id);
        // One request: the turn's starts, then its finishes (a step started
        // in this turn ends with the attempt the start gives it) and their
        // events; a durable store commits them together.
        let given = crate::telemetry::timed(
            "start_and_finish",
            store.start_and_finish(run, starting, "local", LEASE, done, events, now),
        )
        .await?;
        fix_attempts(st, starting, &given);
        for (i, at, cancelled) in deferred {
            st.finish(i, dependents, cancelled, at);
        }
    }
}

/// Records the attempt numbers the store gave `started`; false when one
/// differs from the number expected.
pub(super) fn fix_attempts(st: &mut State<'_>, started: &[u32], given: &[u32]) -> bool {
    let Some(j) = st.journal.as_mut() else {
        return true;
    };
    let mut same = given.len() == started.len();
    for (&i, &a) in started.iter().zip(given) {
        let mine = &mut j.attempts[i as usize];
        if *mine != a {
            *mine = a;
            same = false;
        }
    }
    same
}

/// The lease a local start takes (the run's owner, not the lease, says
/// whether it is still driven).
pub(super) const LEASE: Duration = Duration::from_secs(3600);

/// How often a journaled run asks its store whether someone wants it cancelled.
pub(super) const CANCEL_POLL: Duration = Duration::from_millis(250);

/// `Finished::attempt` of a step that started: replaced by its attempt
/// number when the journal is committed.
pub(super) const STARTED: u32 = u32::MAX;

/// Records a new run in the store: its tasks and its saved definition.
/// Called before the run's per-step state is built, so that the
/// definition's text and the task list, as large as the workflow, are gone
/// before the reports take their place.
pub(super) async fn create_run(
    wf: &ValidWorkflow,
    params: &Map<String, Value>,
    store: &dyn Store,
    opts: &RunOptions,
    now: DateTime<Utc>,
) -> Result<(), OrchestrationError> {
    // What a resumed run needs, written straight to JSON text.
    let settings = RunSettings {
        work_dir: Some(opts.work_dir.clone()),
        project_path: opts.project_path.clone(),
        project_name: opts.project_name.clone(),
        mode: Some(opts.mode),
        max_parallel: Some(opts.max_parallel),
        run_timeout_ms: opts
            .run_timeout
            .map(|t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX)),
        retry_of: None,
        no_cache: false,
    };
    let mut run = crate::worker::new_run(opts.run_id, wf, params.clone(), &settings, opts.parent)?;
    // This process drives it from the start: no reader sees it ownerless.
    run.owner = Some(process_identity());
    crate::telemetry::timed("create_run", store.create_run(run, now)).await
}

/// The journal of a run in `store`: a new run (already recorded by
/// [`create_run`]), or a run being resumed, whose steps' recorded outcomes
/// are applied to `st` first. Either way the run becomes this process's.
pub(super) async fn open_journal(
    st: &mut State<'_>,
    store: Arc<dyn Store>,
    opts: &RunOptions,
) -> Result<Journal, OrchestrationError> {
    let wf = st.wf;
    let n = wf.workflow().steps.len();
    let mut prior = vec![0u32; n];
    if let Some(records) = &opts.resume {
        if records.len() != n {
            return Err(OrchestrationError::InvalidState {
                message: format!(
                    "run {} has {} tasks in the store but its workflow has {n} steps",
                    opts.run_id,
                    records.len()
                ),
            });
        }
        store.requeue_running(opts.run_id).await?;
        for r in records {
            let i = r.index as usize;
            prior[i] = r.attempt;
            if r.status.is_terminal() {
                st.status[i] = r.status;
                let rep = &mut st.reports[i];
                rep.status = r.status;
                rep.attempts = r.attempt;
                rep.started_at = r.started_at;
                rep.finished_at = r.finished_at;
                rep.result.clone_from(&r.result);
                rep.note.clone_from(&r.note);
            }
        }
        // Dependencies that already ended no longer hold anything back.
        for i in 0..n {
            st.remaining[i] = wf
                .graph()
                .deps(i as u32)
                .iter()
                .filter(|&&d| !st.status[d as usize].is_terminal())
                .count() as u32;
        }
    }
    store
        .set_owner(opts.run_id, Some(process_identity()))
        .await?;
    Ok(Journal {
        store,
        run_id: opts.run_id,
        finished: Vec::new(),
        deferred: Vec::new(),
        attempts: prior.clone(),
        prior,
        events: Vec::new(),
        last_poll: Instant::now(),
    })
}

/// Between turns of a journaled run: commit what completed, and ask the
/// store (at most every `CANCEL_POLL`) whether someone cancelled the run.
pub(super) async fn journal_turn(
    st: &mut State<'_>,
    dependents: &orch_model::graph::DepGraph,
    cancel: &CancellationToken,
) -> Result<(), OrchestrationError> {
    flush(st, dependents, &[]).await?;
    let Some(j) = st.journal.as_mut() else {
        return Ok(());
    };
    if j.last_poll.elapsed() >= CANCEL_POLL && !cancel.is_cancelled() {
        j.last_poll = Instant::now();
        if j.store.cancel_requested(j.run_id).await? {
            cancel.cancel();
        }
    }
    Ok(())
}

/// Records `batch` as started, committed, before any of it runs (steps that
/// may wait: every run of such a step is a recorded attempt). Their attempt
/// numbers come from the store; the `tasks_started` event goes with the
/// next commit.
pub(super) async fn record_starts(
    st: &mut State<'_>,
    batch: &[u32],
) -> Result<(), OrchestrationError> {
    let Some(j) = st.journal.as_mut() else {
        return Ok(());
    };
    let now = Utc::now();
    let given = crate::telemetry::timed(
        "start_tasks",
        j.store.start_tasks(j.run_id, batch, "local", LEASE, now),
    )
    .await?;
    for (&i, &a) in batch.iter().zip(&given) {
        j.attempts[i as usize] = a;
    }
    j.events.push(Progress::started(
        now,
        batch.iter().copied().zip(given.iter().copied()),
    ));
    Ok(())
}
