//! Runs of the store after the fact: their derived state, finding one by id,
//! taking an interrupted one over to resume it, and cancelling one from
//! another process.

#[allow(clippy::wildcard_imports)]
use super::*;
use crate::run::ResumeInfo;
use orch_model::ValidWorkflow;
use orch_model::store::{RunRecord, TakeOver, TaskRecord};

pub use orch_model::store::RunState;

/// The state of a run of the store (see [`RunState`]): its owner's
/// liveness is checked on this machine (`orch_tasks::run::owner_alive`).
pub fn run_state(r: &RunRecord) -> RunState {
    // A submitted run is the workers' (`SUBMITTED_OWNER`, or `QUEUED_OWNER`
    // while it waits for its concurrency key): running while its status
    // says so. Only a running run's owner matters (looking
    // reads /proc), so an ended one is not looked at.
    let alive = r.status == orch_model::WorkflowStatus::Running
        && r.owner.as_deref().is_some_and(|o| {
            o == orch_tasks::worker::SUBMITTED_OWNER
                || o == orch_model::store::QUEUED_OWNER
                || orch_tasks::run::owner_alive(o)
        });
    RunState::derive(r.status, alive)
}

/// The state to show for a run: `queued` for a submitted run that waits
/// for a slot of its concurrency key (its status is `running`, its owner
/// `QUEUED_OWNER`), otherwise the name of its [`run_state`].
pub fn shown_state(r: &RunRecord) -> &'static str {
    if r.status == orch_model::WorkflowStatus::Running
        && r.owner.as_deref() == Some(orch_model::store::QUEUED_OWNER)
    {
        return "queued";
    }
    run_state(r).as_str()
}

/// An owner (`PID:START@HOST`) in words: `process PID on HOST`.
pub fn owner_words(owner: &str) -> String {
    match owner.split_once('@') {
        Some((id, host)) => {
            let pid = id.split_once(':').map_or(id, |(pid, _)| pid);
            format!("process {pid} on {host}")
        }
        None => format!("`{owner}`"),
    }
}

/// What resuming a run needs, read back from the store.
#[derive(Debug)]
pub(crate) struct Resumed {
    pub(crate) run_id: RunId,
    pub(crate) workflow: Arc<ValidWorkflow>,
    pub(crate) work_dir: PathBuf,
    pub(crate) project_path: Option<String>,
    pub(crate) params: Map<String, Value>,
    pub(crate) tasks: Vec<TaskRecord>,
    /// How it ran (mode, parallelism, run timeout), kept when it resumes.
    pub(crate) settings: orch_model::RunSettings,
}

fn invalid(message: String) -> OrchestrationError {
    OrchestrationError::InvalidState { message }
}

/// Takes run `id` over for this process (one compare-and-set in the store:
/// of two resumes of one run, one goes on, the other runs nothing), cancels
/// the sub-workflow runs it had started, stops the processes its dead owner
/// left running, and reads back what it needs to go on.
pub(crate) async fn take_over_for_resume(
    engine: &OrchestrationEngine,
    id: RunId,
) -> Result<(Resumed, ResumeInfo), OrchestrationError> {
    let store = engine.store().clone();
    let r = store
        .get_run(id)
        .await?
        .ok_or_else(|| OrchestrationError::NotFound {
            kind: EntityKind::Run,
            name: id.to_string(),
            hint: Some("`orch runs list` shows the runs".into()),
        })?;
    match run_state(&r) {
        RunState::Interrupted => {}
        RunState::Running => {
            return Err(invalid(format!(
                "run {} is still running (process {}); wait for it, or stop it with `orch cancel {}`",
                r.id,
                r.owner.as_deref().unwrap_or("?"),
                r.id
            )));
        }
        other => {
            return Err(invalid(format!(
                "run {} already ended ({other}); there is nothing to resume",
                r.id
            )));
        }
    }
    // A sub-workflow's run whose parent is unfinished: resuming the parent
    // runs its `workflow.run` step again (a new child run), so resuming the
    // child alone would do its work twice.
    if let Some(p) = r.parent {
        let parent = store.get_run(p).await.ok().flatten();
        if let Some(state) = parent
            .as_ref()
            .map(run_state)
            .filter(|s| matches!(s, RunState::Interrupted | RunState::Running))
        {
            return Err(invalid(format!(
                "run {} is a sub-workflow run of run {p}, which is {state}; resume that one (`orch resume {p}`): its step runs the sub-workflow again",
                r.id
            )));
        }
    }
    // The stored definition is read before the run is taken over: a run
    // that cannot be resumed is left as it was.
    let saved = orch_model::SavedRun::from_json(&r.definition).map_err(|e| {
        invalid(format!(
            "the stored definition of run {} cannot be resumed: {}",
            r.id,
            match e {
                OrchestrationError::InvalidState { message } => message,
                other => other.to_string(),
            }
        ))
    })?;
    let orch_model::SavedRun {
        workflow: wf,
        settings,
    } = saved;
    let work_dir = settings
        .work_dir
        .clone()
        .or_else(|| std::env::current_dir().ok())
        .unwrap_or_else(|| PathBuf::from("."));
    let project_path = settings.project_path.clone();
    let me = orch_tasks::run::process_identity();
    match store.take_over(r.id, r.owner.as_deref(), &me).await? {
        TakeOver::Taken => {}
        TakeOver::Ended { status } => {
            return Err(invalid(format!(
                "run {} already ended ({}); there is nothing to resume",
                r.id,
                status.as_str()
            )));
        }
        TakeOver::Held { owner } => {
            let by = owner.map(|o| format!(" by {}", owner_words(&o)));
            return Err(invalid(format!(
                "run {} is already being resumed{}; nothing was run. Wait for it (`orch runs show {}`), or stop it with `orch cancel {}`",
                r.id,
                by.unwrap_or_default(),
                r.id,
                r.id
            )));
        }
    }
    // The run is this process's now: the sub-workflow runs it had started
    // are superseded by those its steps start again.
    let superseded = supersede_children(&store, r.id, &me).await;
    let tasks = store.tasks(r.id).await?;
    // Processes the run's dead owner left running (a background job, a
    // `setsid` child) are stopped before any step runs again.
    let grace = Duration::from_secs(2);
    let (owner, run) = (r.owner.clone(), r.id);
    let orphans = tokio::task::spawn_blocking(move || {
        orch_tasks::process::sweep_orphans(run, owner.as_deref(), grace)
    })
    .await
    .unwrap_or(0);
    let (superseded, supersede_error) = match superseded {
        Ok(children) => {
            for (child, owner) in &children {
                // Mostly the same dead owner, already swept above.
                if owner != &r.owner {
                    let (c, o) = (*child, owner.clone());
                    let _ = tokio::task::spawn_blocking(move || {
                        orch_tasks::process::sweep_orphans(c, o.as_deref(), grace)
                    })
                    .await;
                }
            }
            (children.into_iter().map(|(c, _)| c).collect(), None)
        }
        Err(e) => (Vec::new(), Some(e.to_string())),
    };
    let info = ResumeInfo {
        done: tasks.iter().filter(|t| t.status.is_terminal()).count(),
        total: tasks.len(),
        interrupted: tasks
            .iter()
            .filter(|t| t.status == TaskStatus::Running)
            .count(),
        orphans_stopped: orphans,
        superseded,
        supersede_error,
        retry_of: None,
    };
    Ok((
        Resumed {
            run_id: r.id,
            workflow: Arc::new(wf),
            work_dir,
            project_path,
            params: r.params.clone(),
            tasks,
            settings,
        },
        info,
    ))
}

/// Sub-workflow runs that `parent` (a run just taken over by a resume)
/// started before it was interrupted, and their own, that were interrupted
/// with it: each is taken over from its dead owner and cancelled, since the
/// resumed run's `workflow.run` step runs again and starts a new one.
/// Returns each cancelled run with the owner it had (whose processes are to
/// be stopped). A child that ended, or that another process drives, is left
/// as it is.
async fn supersede_children(
    store: &Arc<dyn Store>,
    parent: RunId,
    me: &str,
) -> orch_model::Result<Vec<(RunId, Option<String>)>> {
    let runs = store.list_runs().await?;
    let mut below = vec![parent];
    let mut cancelled = Vec::new();
    while let Some(p) = below.pop() {
        for c in runs.iter().filter(|r| r.parent == Some(p)) {
            below.push(c.id);
            if run_state(c) != RunState::Interrupted {
                continue;
            }
            if store.take_over(c.id, c.owner.as_deref(), me).await? == TakeOver::Taken {
                let now = Utc::now();
                store.cancel_run(c.id, now).await?;
                store
                    .finish_run(c.id, WorkflowStatus::Cancelled, now)
                    .await?;
                store.set_owner(c.id, None).await?;
                cancelled.push((c.id, c.owner.clone()));
            }
        }
    }
    Ok(cancelled)
}

/// What [`OrchestrationEngine::cancel_run`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelOutcome {
    /// The run was running; its process stopped it within the wait.
    Stopped,
    /// The run was asked to stop and had not within the wait (it will, at
    /// its process's next check).
    Asked,
    /// The run was interrupted (its process gone): it is marked cancelled.
    MarkedCancelled,
}

impl OrchestrationEngine {
    /// Cancels a run of the store, from any process: a running run is asked
    /// to stop (its process sees it within a quarter of a second and stops
    /// its running steps) and waited for up to `wait`; an interrupted one is
    /// marked cancelled.
    ///
    /// # Errors
    /// `NotFound` for an unknown run; `InvalidState` for a run that already
    /// ended; the store's errors.
    pub async fn cancel_run(
        &self,
        id: RunId,
        wait: Duration,
    ) -> Result<CancelOutcome, OrchestrationError> {
        let store = self.store().clone();
        let r = store
            .get_run(id)
            .await?
            .ok_or_else(|| OrchestrationError::NotFound {
                kind: EntityKind::Run,
                name: id.to_string(),
                hint: Some("`orch runs list` shows the runs".into()),
            })?;
        match run_state(&r) {
            RunState::Running
                if matches!(
                    r.owner.as_deref(),
                    Some(orch_tasks::worker::SUBMITTED_OWNER | orch_model::store::QUEUED_OWNER)
                ) =>
            {
                // No process drives it to see the request: it is cancelled
                // in the store, and the workers running its steps stop them
                // at their next heartbeat.
                crate::submit::cancel_submitted(store.as_ref(), r.id).await?;
                Ok(CancelOutcome::Stopped)
            }
            RunState::Running => {
                store.request_cancel(r.id).await?;
                let deadline = tokio::time::Instant::now() + wait;
                loop {
                    let now = store.get_run(r.id).await?;
                    if now
                        .as_ref()
                        .is_none_or(|x| x.status != WorkflowStatus::Running)
                    {
                        return Ok(CancelOutcome::Stopped);
                    }
                    if tokio::time::Instant::now() >= deadline {
                        return Ok(CancelOutcome::Asked);
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            RunState::Interrupted => {
                let now = Utc::now();
                store.cancel_run(r.id, now).await?;
                store
                    .finish_run(r.id, WorkflowStatus::Cancelled, now)
                    .await?;
                Ok(CancelOutcome::MarkedCancelled)
            }
            other => Err(invalid(format!(
                "run {} already ended ({other}); there is nothing to cancel",
                r.id
            ))),
        }
    }
}
