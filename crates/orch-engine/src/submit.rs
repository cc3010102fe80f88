//! Submitted runs: recorded in the store for its workers instead of driven
//! here (`RunRequest::detach`, or a store whose capabilities say
//! `distributed_claim`), and followed from the store: its events become the
//! handle's [`Event`]s, and its tasks the final report.

#[allow(clippy::wildcard_imports)]
use super::*;
use orch_model::store::{Progress, StoredEvent, TaskRecord};
use orch_model::{CompactString, RunSettings, ValidWorkflow};
use orch_tasks::StepReport;
use std::collections::HashMap;
use tokio::sync::mpsc::UnboundedSender;
use tokio::task::JoinHandle;

/// What a submitted run needs from the request the engine resolved.
pub(crate) struct Submission {
    pub(crate) run_id: RunId,
    pub(crate) wf: Arc<ValidWorkflow>,
    pub(crate) work_dir: PathBuf,
    pub(crate) params: Map<String, Value>,
    pub(crate) project_path: Option<String>,
    pub(crate) project_name: Option<String>,
    pub(crate) mode: Option<ExecutionMode>,
    pub(crate) max_parallel: Option<usize>,
    pub(crate) run_timeout: Option<Duration>,
    pub(crate) no_cache: bool,
    /// Its concurrency key: it waits for a slot before the workers get it.
    pub(crate) key: Option<crate::concurrency::KeySpec>,
}

/// Most time between two looks at the store while following a run.
const FOLLOW_MAX: Duration = Duration::from_millis(500);
/// Least time between two looks at the store while following a run.
const FOLLOW_MIN: Duration = Duration::from_millis(20);

impl OrchestrationEngine {
    /// Records the run for the store's workers and starts following it:
    /// returns the session it was submitted in (closed at once: the run
    /// outlives this process) and the task that follows it to its report.
    pub(crate) async fn submit(
        &self,
        s: Submission,
        cancel: CancellationToken,
        events: Option<UnboundedSender<Event>>,
    ) -> Result<(SessionId, JoinHandle<Result<RunReport, OrchestrationError>>), OrchestrationError>
    {
        let settings = RunSettings {
            work_dir: Some(s.work_dir),
            project_path: s.project_path,
            project_name: s.project_name,
            mode: s.mode,
            max_parallel: s.max_parallel,
            run_timeout_ms: s
                .run_timeout
                .map(|t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX)),
            retry_of: None,
            no_cache: s.no_cache,
        };
        let store = self.inner.store.as_ref();
        let registry = self.inner.workflows.registry();
        if let Some(key) = &s.key {
            let a = orch_tasks::worker::queue::submit_queued(
                store, &s.wf, registry, &s.params, &settings, s.run_id, key,
            )
            .await?;
            note_admission(s.run_id, key, &a, events.as_ref());
        } else {
            orch_tasks::worker::submit(store, &s.wf, registry, &s.params, &settings, s.run_id)
                .await?;
        }
        self.follow_submitted(s.run_id, s.wf, s.mode, s.max_parallel, cancel, events)
    }

    /// Hands run `id`, recorded by this process, to the store's workers:
    /// at once, or, with a concurrency key, once it holds a slot (queued
    /// until then, see `orch_tasks::worker::queue`).
    pub(crate) async fn hand_to_workers(
        &self,
        id: RunId,
        key: Option<crate::concurrency::KeySpec>,
        events: Option<&UnboundedSender<Event>>,
    ) -> Result<(), OrchestrationError> {
        let store = self.inner.store.as_ref();
        match key {
            None => {
                store
                    .set_owner(id, Some(orch_tasks::worker::SUBMITTED_OWNER.to_owned()))
                    .await
            }
            Some(key) => {
                let a = orch_tasks::worker::queue::queue_run(store, id, &key).await?;
                note_admission(id, &key, &a, events);
                Ok(())
            }
        }
    }

    /// Follows run `run_id`, which the store's workers run: the session it
    /// counts in (closed at once: the run outlives this process) and the
    /// task that follows it to its report.
    pub(crate) fn follow_submitted(
        &self,
        run_id: RunId,
        wf: Arc<ValidWorkflow>,
        mode: Option<ExecutionMode>,
        max_parallel: Option<usize>,
        cancel: CancellationToken,
        events: Option<UnboundedSender<Event>>,
    ) -> Result<(SessionId, JoinHandle<Result<RunReport, OrchestrationError>>), OrchestrationError>
    {
        let sid = self.create_session(SessionOptions {
            mode: mode.unwrap_or(ExecutionMode::Parallel),
            max_parallel_tasks: max_parallel,
            ..SessionOptions::default()
        })?;
        self.close_session(&sid);
        let store = self.inner.store.clone();
        let task = self.spawn(follow(store, run_id, wf, events, cancel));
        Ok((sid, task))
    }
}

/// Says what the submitter's first try for a slot of the run's key came to:
/// in the log, and a wait on the run's `events` (for its user).
fn note_admission(
    run: RunId,
    key: &crate::concurrency::KeySpec,
    a: &orch_tasks::worker::queue::Admission,
    events: Option<&UnboundedSender<Event>>,
) {
    use orch_tasks::worker::queue::Admission;
    match a {
        Admission::Waiting(holders) => {
            if let Some(tx) = events {
                let _ = tx.send(crate::concurrency::waiting(run, key, holders.clone()));
            }
            tracing::info!(run = %run, key = %key.key, limit = key.limit, holders = %holders.join(", "), "the run waits for a slot of its concurrency key (queued; the workers start it when a slot is free)");
        }
        Admission::Skipped(holders) => {
            tracing::info!(run = %run, key = %key.key, holders = %holders.join(", "), "the run was skipped: its concurrency key is held (on_conflict: skip)");
        }
        Admission::Admitted | Admission::Ended | Admission::NotYet => {}
    }
}

/// Follows run `id` in `store` until it ends: its stored events are sent
/// as [`Event`]s, `cancel` cancels it in the store, and its tasks make the
/// report. The store is read with a backoff from 20 to 500 ms while
/// nothing happens.
pub(crate) async fn follow(
    store: Arc<dyn Store>,
    id: RunId,
    wf: Arc<ValidWorkflow>,
    events: Option<UnboundedSender<Event>>,
    cancel: CancellationToken,
) -> Result<RunReport, OrchestrationError> {
    let started = Instant::now();
    let steps = &wf.workflow().steps;
    let name = |i: u32| -> CompactString {
        steps
            .get(i as usize)
            .map(|s| s.name.clone())
            .unwrap_or_default()
    };
    let send = |e: Event| {
        if let Some(tx) = &events {
            let _ = tx.send(e);
        }
    };
    send(Event::RunStarted {
        run_id: id,
        total: steps.len(),
    });
    let mut after = 0u64;
    // When each running step's attempt started (its event's time), for the
    // duration of its end.
    let mut began = HashMap::new();
    let mut wait = FOLLOW_MIN;
    let mut asked = false;
    let record = loop {
        if cancel.is_cancelled() && !asked {
            asked = true;
            cancel_submitted(store.as_ref(), id).await?;
        }
        let got = store.events(id, after).await?;
        if let Some(last) = got.last() {
            after = last.seq;
        }
        if events.is_some() {
            for e in &got {
                for ev in translate(store.as_ref(), id, e, &name, &mut began).await {
                    send(ev);
                }
            }
        }
        if !got.is_empty() {
            wait = FOLLOW_MIN;
            continue;
        }
        let r = store
            .get_run_brief(id)
            .await?
            .ok_or_else(|| OrchestrationError::not_found(EntityKind::Run, id.to_string()))?;
        if r.status != WorkflowStatus::Running {
            // Its last events were appended after its last task ended.
            for e in &store.events(id, after).await? {
                for ev in translate(store.as_ref(), id, e, &name, &mut began).await {
                    send(ev);
                }
            }
            break r;
        }
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = cancel.cancelled(), if !asked => {}
        }
        wait = (wait * 2).min(FOLLOW_MAX);
    };
    let tasks = store.tasks(id).await?;
    let shown = orch_tasks::run::Shown::of(&wf);
    let report = RunReport {
        run_id: id,
        workflow: record.workflow.clone(),
        status: record.status,
        duration: started.elapsed(),
        steps: tasks
            .into_iter()
            .map(|t| step_report(t, record.created_at, &shown))
            .collect(),
        error: None,
    };
    send(Event::RunFinished {
        run_id: id,
        status: report.status,
        duration: report.duration,
    });
    Ok(report)
}

/// Cancels a submitted run in the store ([`orch_tasks::worker::cancel`]):
/// asked, for the workers to see; the steps that run after a stop get the
/// workflow's cancel grace, otherwise everything not final is cancelled at
/// once.
pub(crate) async fn cancel_submitted(
    store: &dyn Store,
    id: RunId,
) -> Result<(), OrchestrationError> {
    orch_tasks::worker::cancel(store, id).await.map(|_| ())
}

/// A step's report made from its task's record, as `shown` shows it (a
/// step skipped or gathering its items on a worker made no attempt).
pub(crate) fn step_report(
    mut t: TaskRecord,
    created_at: DateTime<Utc>,
    shown: &orch_tasks::run::Shown,
) -> StepReport {
    shown.task(&mut t);
    StepReport {
        name: CompactString::from(t.name.as_str()),
        status: t.status,
        attempts: t.attempt,
        created_at,
        ready_at: None,
        started_at: t.started_at,
        finished_at: t.finished_at,
        result: t.result,
        note: t.note,
    }
}

/// The [`Event`]s of one stored event (`tasks_started`, `tasks_finished`,
/// as journaled runs and workers record them). Failures and skips read the
/// task's record for their message. `began` keeps when each step's attempt
/// started (the time of its `tasks_started` event): a step's end takes its
/// duration from it (zero for a start this follower did not see).
async fn translate(
    store: &dyn Store,
    run: RunId,
    e: &StoredEvent,
    name: &(dyn Fn(u32) -> CompactString + Sync),
    began: &mut HashMap<u32, DateTime<Utc>>,
) -> Vec<Event> {
    let Some(progress) = Progress::read(e) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    match progress {
        Progress::Started(list) => {
            out.reserve(list.len());
            for (i, a) in list {
                began.insert(i, e.at);
                out.push(Event::TaskStarted {
                    task: i,
                    name: name(i),
                    attempt: a,
                });
            }
        }
        Progress::Finished(list) => {
            out.reserve(list.len());
            for (i, status, a) in list {
                let duration = began
                    .remove(&i)
                    .and_then(|at| (e.at - at).to_std().ok())
                    .unwrap_or(Duration::ZERO);
                let rec = || async {
                    store
                        .task_records(run, &[i])
                        .await
                        .ok()
                        .and_then(|mut v| v.pop())
                };
                out.push(match status {
                    TaskStatus::Completed => Event::TaskSucceeded {
                        task: i,
                        name: name(i),
                        attempts: a,
                        duration,
                    },
                    TaskStatus::Skipped => Event::TaskSkipped {
                        task: i,
                        name: name(i),
                        reason: rec().await.and_then(|r| r.note).unwrap_or_default(),
                    },
                    TaskStatus::Cancelled => Event::TaskCancelled {
                        task: i,
                        name: name(i),
                        attempts: a,
                    },
                    _ => {
                        let r = rec().await.and_then(|r| r.result);
                        Event::TaskFailed {
                            task: i,
                            name: name(i),
                            attempts: a,
                            error_type: r
                                .as_ref()
                                .and_then(|r| r.error_type.clone())
                                .unwrap_or_default(),
                            message: r.and_then(|r| r.error_message).unwrap_or_default(),
                            duration,
                        }
                    }
                });
            }
        }
    }
    out
}
