//! Retrying a failed or cancelled run (`RunTarget::Retry`, `orch retry`): a new run of the same definition and parameters that keeps the old run's completed steps and runs the rest.
//!
//! The new run is recorded in the store with its link to the old one
//! (`RunSettings::retry_of`, in its saved definition), its kept steps are
//! recorded completed with the old results, level by level (so each is
//! ready when it is started), and it then goes on as a resumed run does:
//! the scheduler takes the kept steps' outcomes as they are and runs the
//! others. A step runs again when it did not complete (failed, cancelled,
//! skipped because of them, or never started), when it is the `from` step,
//! or when anything it depends on runs again.

#[allow(clippy::wildcard_imports)]
use super::*;
use crate::resume::{Resumed, run_state};
use crate::run::ResumeInfo;
use orch_model::ValidWorkflow;
use orch_model::store::{Finished, RunState, TaskOutcome};

fn invalid(message: String) -> OrchestrationError {
    OrchestrationError::InvalidState { message }
}

/// Which steps of a run of `wf` run again, given each step's status in the
/// old run and the step to start from: those that did not complete, `from`,
/// and everything downstream of them.
pub(crate) fn steps_to_run(
    wf: &ValidWorkflow,
    status: &[TaskStatus],
    from: Option<u32>,
) -> Vec<bool> {
    let n = wf.workflow().steps.len();
    let mut again: Vec<bool> = (0..n)
        .map(|i| status.get(i) != Some(&TaskStatus::Completed) || from == Some(i as u32))
        .collect();
    // Levels are in dependency order: a step's dependencies are decided first.
    for level in wf.levels().iter() {
        for &i in level {
            if !again[i as usize] && wf.graph().deps(i).iter().any(|&d| again[d as usize]) {
                again[i as usize] = true;
            }
        }
    }
    again
}

/// Records a retry of run `old` (failed or cancelled) as a new run whose
/// kept steps are completed with the old results, and returns what
/// resuming it needs.
pub(crate) async fn prepare_retry(
    engine: &OrchestrationEngine,
    old: RunId,
    from: Option<&str>,
) -> Result<(Resumed, ResumeInfo), OrchestrationError> {
    let store = engine.store().clone();
    let r = store
        .get_run(old)
        .await?
        .ok_or_else(|| OrchestrationError::NotFound {
            kind: EntityKind::Run,
            name: old.to_string(),
            hint: Some("`orch runs list` shows the runs".into()),
        })?;
    match run_state(&r) {
        RunState::Failed | RunState::Cancelled => {}
        RunState::Interrupted => {
            return Err(invalid(format!(
                "run {old} was interrupted, not ended: resume it (`orch resume {old}`) to finish it where it stopped"
            )));
        }
        RunState::Running => {
            return Err(invalid(format!(
                "run {old} is still running; wait for it to end, or cancel it (`orch cancel {old}`), then retry it"
            )));
        }
        other => {
            return Err(invalid(format!(
                "run {old} {other}; only a failed or cancelled run can be retried (run the workflow again for a new run)"
            )));
        }
    }
    if r.parent.is_some() {
        return Err(invalid(format!(
            "run {old} is a sub-workflow run; retry the run that started it"
        )));
    }
    let saved = orch_model::SavedRun::from_json(&r.definition).map_err(|e| {
        invalid(format!(
            "the stored definition of run {old} cannot be retried: {e}"
        ))
    })?;
    let orch_model::SavedRun {
        workflow: wf,
        mut settings,
    } = saved;
    let old_tasks = store.tasks(old).await?;
    let n = wf.workflow().steps.len();
    if old_tasks.len() != n {
        return Err(invalid(format!(
            "run {old} has {} tasks in the store but its workflow has {n} steps",
            old_tasks.len()
        )));
    }
    let from = match from {
        None => None,
        Some(name) => Some(
            wf.workflow()
                .steps
                .iter()
                .position(|s| s.name == name)
                .map(|i| i as u32)
                .ok_or_else(|| {
                    OrchestrationError::invalid_parameters(format!(
                        "--from `{name}`: run {old} has no step of that name (`orch runs show {old} --all` lists them)"
                    ))
                })?,
        ),
    };
    let mut status = vec![TaskStatus::Pending; n];
    for t in &old_tasks {
        if let Some(s) = status.get_mut(t.index as usize) {
            *s = t.status;
        }
    }
    let again = steps_to_run(&wf, &status, from);
    // What the scheduler would refuse is refused before anything is recorded.
    orch_tasks::prepare(&wf, engine.inner.workflows.registry(), &r.params)?;

    // The new run: the same definition and parameters, linked to the old one.
    let id = RunId::new();
    settings.retry_of = Some(old);
    // On a store whose workers claim the steps, the run is cut for them
    // (each task with its step, the run's context record); they get it once
    // its kept steps are recorded (`run.rs` hands it over).
    let mut run = if store.capabilities().distributed_claim {
        let (run, context) = orch_tasks::worker::for_workers(id, &wf, r.params.clone(), &settings)?;
        store.put_record(context).await?;
        run
    } else {
        orch_tasks::worker::new_run(id, &wf, r.params.clone(), &settings, None)?
    };
    // This process holds it until then: no worker of the store claims its
    // steps, and no reader sees it ownerless.
    run.owner = Some(orch_tasks::run::process_identity());
    store.create_run(run, Utc::now()).await?;
    // The kept steps, completed with their old results, level by level.
    let mut results: Vec<Option<TaskResult>> = vec![None; n];
    for t in old_tasks {
        let i = t.index as usize;
        if i < n && !again[i] {
            results[i] = t.result;
        }
    }
    let mut kept = 0;
    for level in wf.levels().iter() {
        let batch: Vec<u32> = level
            .iter()
            .copied()
            .filter(|&i| !again[i as usize])
            .collect();
        if batch.is_empty() {
            continue;
        }
        let now = Utc::now();
        let attempts = store
            .start_tasks(id, &batch, "retry", Duration::from_secs(60), now)
            .await?;
        let done = batch
            .iter()
            .zip(attempts)
            .map(|(&i, attempt)| Finished {
                index: i,
                attempt,
                retries: 0,
                outcome: TaskOutcome::Succeeded {
                    result: results[i as usize].take().unwrap_or_else(|| TaskResult {
                        success: true,
                        ..TaskResult::default()
                    }),
                },
            })
            .collect();
        store.finish_tasks(id, done, Utc::now()).await?;
        kept += batch.len();
    }
    let work_dir = settings
        .work_dir
        .clone()
        .or_else(|| std::env::current_dir().ok())
        .unwrap_or_else(|| PathBuf::from("."));
    let tasks = store.tasks(id).await?;
    let info = ResumeInfo {
        done: kept,
        total: n,
        interrupted: 0,
        orphans_stopped: 0,
        superseded: Vec::new(),
        supersede_error: None,
        retry_of: Some(old),
    };
    Ok((
        Resumed {
            run_id: id,
            workflow: Arc::new(wf),
            work_dir,
            project_path: settings.project_path.clone(),
            params: r.params,
            tasks,
            settings,
        },
        info,
    ))
}

#[cfg(test)]
mod tests {
    use super::steps_to_run;
    use orch_model::{Limits, TaskStatus, Workflow, WorkflowStep};

    #[test]
    fn failed_steps_and_their_downstream_run_again() {
        // a -> b -> c, a -> d; e alone.
        let wf = Workflow::new("w", "")
            .step(WorkflowStep::new("a", "core", "noop"))
            .step(WorkflowStep::new("b", "core", "noop").after("a"))
            .step(WorkflowStep::new("c", "core", "noop").after("b"))
            .step(WorkflowStep::new("d", "core", "noop").after("a"))
            .step(WorkflowStep::new("e", "core", "noop"));
        let wf = orch_model::definition::validate(wf, &Limits::default()).expect("valid");
        use TaskStatus::{Completed as C, Failed as F, Skipped as S};
        // b failed, c was skipped because of it: both run again; a, d, e are kept.
        assert_eq!(
            steps_to_run(&wf, &[C, F, S, C, C], None),
            vec![false, true, true, false, false]
        );
        // From a: everything downstream of a, even completed, runs again.
        assert_eq!(
            steps_to_run(&wf, &[C, C, C, C, C], Some(0)),
            vec![true, true, true, true, false]
        );
    }
}
