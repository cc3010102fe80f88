//! The seed's run API: `execute_workflow`, `execute_complex_workflow`, `execute_project_workflow`, `execute_task`.

#[allow(clippy::wildcard_imports)]
use super::*;
/// The result of running a workflow (seed: `execute_workflow`'s dictionary).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WorkflowRunResult {
    /// Whether every step succeeded or was skipped.
    pub success: bool,
    /// The session it ran in.
    pub session_id: SessionId,
    /// How many steps completed.
    pub executed_steps: usize,
    /// Names of the steps that failed.
    pub failed_steps: Vec<String>,
    /// Each completed step's result data, by step name.
    pub results: Map<String, Value>,
    /// Seconds the run took.
    pub execution_time: f64,
    /// Why it did not succeed, when it did not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The tasks `execute_task` ran, for the status.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct TaskCounts {
    pub(crate) running: usize,
    pub(crate) completed: usize,
    pub(crate) failed: usize,
}

/// The result of [`OrchestrationEngine::execute_complex_workflow`] (seed:
/// its dictionary, with `success` true only when every step succeeded or
/// was skipped by its own condition).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ComplexWorkflowResult {
    /// Whether the run completed: no step failed, nothing was cancelled.
    pub success: bool,
    /// The session it ran in.
    pub session_id: SessionId,
    /// The run (in the workflow manager's history under the definition's name).
    pub run_id: RunId,
    /// The definition's `name` (default `complex-workflow`).
    pub workflow: String,
    /// Every step's result in the seed's `TaskResult` shape, by step name;
    /// `null` for a step that never ran (skipped or cancelled before it started).
    pub results: Map<String, Value>,
    /// The seed's `get_execution_stats()` over this run's steps.
    pub execution_stats: orch_tasks::ExecutionStats,
    /// Seconds the run took.
    pub execution_time: f64,
    /// Why it did not succeed, when it did not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl OrchestrationEngine {
    /// Runs a workflow of `workflows_dir` in a session (a new one, closed
    /// afterwards, when none is given) (seed: `execute_workflow`). A step
    /// that fails makes `success` false; it is not an error.
    ///
    /// # Errors
    /// `NotFound` for an unknown workflow or session; `InvalidState` for a
    /// closed or expired session or during shutdown; the workflow manager's
    /// errors for invalid parameters or definitions.
    pub async fn execute_workflow(
        &self,
        name: &str,
        session: Option<&SessionId>,
        params: Map<String, Value>,
    ) -> Result<WorkflowRunResult, OrchestrationError> {
        let mut req = RunRequest::new(RunTarget::Name(name.to_owned())).params(params);
        req.session = session.copied();
        let handle = self.run(req).await?;
        let sid = handle.session_id();
        let report = handle.report().await?;
        Ok(to_result(sid, &report))
    }

    /// Runs a workflow given as data (seed: `execute_complex_workflow`) in a
    /// session (a new one, closed afterwards, when none is given), within the
    /// session's rules and remaining time. The definition is the seed's
    /// shape, `{"steps": [{name, module, action, parameters?}, ...],
    /// "dependencies": {step: [step, ...]}}`: the dependencies map is added
    /// to each step's own `dependencies`, and any other key is read as in a
    /// workflow file (`name`, default `complex-workflow`; `description`,
    /// `parameters`, and per step `timeout`, `max_retries`, `conditions`,
    /// ...). `parallel_groups` is accepted when every name in it is a step;
    /// what runs together follows from the dependencies and the session's
    /// parallelism. The workflow is not saved; its run is remembered under
    /// its name like any other. A step that fails makes `success` false; it
    /// is not an error.
    ///
    /// # Errors
    /// `InvalidParameters` for a definition that is not an object or whose
    /// `dependencies` or `parallel_groups` do not fit its steps;
    /// `Validation` with every problem the workflow loader finds; as
    /// [`OrchestrationEngine::execute_workflow`] for sessions and shutdown.
    /// Nothing has run when an error is returned.
    pub async fn execute_complex_workflow(
        &self,
        definition: &Value,
        session: Option<&SessionId>,
    ) -> Result<ComplexWorkflowResult, OrchestrationError> {
        let wf = complex_definition(definition, self.inner.workflows.limits())?;
        // Through the one door, as every run.
        let mut req = RunRequest::new(RunTarget::Workflow(Box::new(wf)));
        req.session = session.copied();
        let handle = self.run(req).await?;
        let sid = handle.session_id();
        let report = handle.report().await?;
        let plain = to_result(sid, &report);
        let mut results = Map::new();
        let mut stats = orch_tasks::ExecutionStats {
            total_tasks: report.steps.len(),
            pending: 0,
            ready: 0,
            running: 0,
            completed: 0,
            failed: 0,
            cancelled: 0,
            skipped: 0,
            total_execution_time: 0.0,
            average_execution_time: 0.0,
        };
        let mut timed = 0usize;
        for s in &report.steps {
            match s.status {
                TaskStatus::Completed => stats.completed += 1,
                TaskStatus::Failed => stats.failed += 1,
                TaskStatus::Cancelled => stats.cancelled += 1,
                TaskStatus::Skipped => stats.skipped += 1,
                TaskStatus::Running => stats.running += 1,
                TaskStatus::Ready => stats.ready += 1,
                _ => stats.pending += 1,
            }
            let ran = s.result.as_ref().filter(|_| s.attempts > 0);
            if let Some(r) = ran {
                stats.total_execution_time += r.execution_time;
                timed += 1;
            }
            results.insert(
                s.name.to_string(),
                ran.and_then(|r| serde_json::to_value(r).ok())
                    .unwrap_or(Value::Null),
            );
        }
        if timed > 0 {
            stats.average_execution_time = stats.total_execution_time / timed as f64;
        }
        Ok(ComplexWorkflowResult {
            success: plain.success,
            session_id: sid,
            run_id: report.run_id,
            workflow: report.workflow.clone(),
            results,
            execution_stats: stats,
            execution_time: plain.execution_time,
            error: plain.error,
        })
    }

    /// The workflow a complex-workflow definition describes (what
    /// [`OrchestrationEngine::execute_complex_workflow`] runs), read and
    /// checked with the engine's limits, for a caller that starts it through
    /// [`OrchestrationEngine::run`] (to follow or cancel it).
    ///
    /// # Errors
    /// As [`OrchestrationEngine::execute_complex_workflow`] for the definition.
    pub fn complex_workflow(
        &self,
        definition: &Value,
    ) -> Result<orch_model::Workflow, OrchestrationError> {
        complex_definition(definition, self.inner.workflows.limits())
    }

    /// What the workflow runs remembered by the engine's workflow manager
    /// took, for one workflow or all (seed: `get_performance_summary`): see
    /// [`WorkflowManager::get_performance_summary`]. Project workflows run in
    /// their projects' own managers and are not counted here.
    pub fn get_performance_summary(&self, workflow: Option<&str>) -> PerformanceSummary {
        self.inner.workflows.get_performance_summary(workflow)
    }

    /// Runs one of a project's workflows in a session (seed: `execute_project_workflow`).
    ///
    /// # Errors
    /// As [`OrchestrationEngine::execute_workflow`], and the project manager's.
    pub async fn execute_project_workflow(
        &self,
        project: &str,
        workflow: &str,
        session: Option<&SessionId>,
        params: Map<String, Value>,
    ) -> Result<WorkflowRunResult, OrchestrationError> {
        let mut req = RunRequest::new(RunTarget::Project {
            project: project.to_owned(),
            workflow: workflow.to_owned(),
        })
        .params(params);
        req.session = session.copied();
        let handle = self.run(req).await?;
        let sid = handle.session_id();
        let report = handle.report().await?;
        Ok(to_result(sid, &report))
    }

    /// Runs one task on its own with the engine's actions (seed:
    /// `execute_task`), in the engine's working directory, through the
    /// engine's task orchestrator: it counts in `get_system_status`
    /// (`task_orchestrator`) and `get_metrics` (`tasks_completed`,
    /// `tasks_failed`), its start and end are events (`task_started`, then
    /// `task_completed` or `task_failed`, with a run id of its own), and
    /// `shutdown` waits for it, then stops it. During shutdown nothing runs:
    /// the result is a failure of type `InvalidState`.
    pub async fn execute_task(&self, task: &Task) -> TaskResult {
        if let Err(e) = self.check_accepting() {
            return TaskResult::failed("InvalidState", e.to_string());
        }
        let _running = RunningGuard::enter(&self.inner, &self.inner.tasks_running);
        lock(&self.inner.task_counts).running += 1;
        let run_id = RunId::new();
        self.emit(EngineEvent::TaskStarted {
            run_id,
            task: task.name.clone(),
            attempt: 1,
            timestamp: Utc::now(),
        });
        // Counted as finished even when this future is dropped mid-task.
        struct Finish<'a>(&'a Inner, Option<bool>);
        impl Drop for Finish<'_> {
            fn drop(&mut self) {
                let mut c = lock(&self.0.task_counts);
                c.running = c.running.saturating_sub(1);
                let counter = if self.1 == Some(true) {
                    c.completed += 1;
                    &self.0.counters.tasks_completed
                } else {
                    c.failed += 1;
                    &self.0.counters.tasks_failed
                };
                counter.fetch_add(1, Ordering::Relaxed);
            }
        }
        let mut finish = Finish(&self.inner, None);
        let result = self.inner.tasks.execute_task(task).await;
        finish.1 = Some(result.success);
        drop(finish);
        self.emit(if result.success {
            EngineEvent::TaskCompleted {
                run_id,
                task: task.name.clone(),
                cached: false,
                timestamp: Utc::now(),
            }
        } else {
            EngineEvent::TaskFailed {
                run_id,
                task: task.name.clone(),
                error_type: result.error_type.clone().unwrap_or_default(),
                message: result.error_message.clone().unwrap_or_default(),
                timestamp: Utc::now(),
            }
        });
        result
    }

    /// Creates a project from a template (default `ai_analysis`) and runs
    /// one of the template's workflows in it, in a session of its own, as
    /// [`OrchestrationEngine::execute_project_workflow`] does (seed:
    /// `create_project_from_workflow`). See
    /// [`ProjectManager::create_project_from_workflow`] for the milestone
    /// and for what `run` holds.
    ///
    /// # Errors
    /// As [`ProjectManager::create_project_from_workflow`]; `InvalidState`
    /// during shutdown (nothing is created then).
    pub async fn create_project_from_workflow(
        &self,
        name: &str,
        workflow: &str,
        template: Option<&str>,
        params: Map<String, Value>,
    ) -> Result<orch_projects::ProjectFromWorkflow, OrchestrationError> {
        self.check_accepting()?;
        let pm = self.inner.projects.clone();
        let (p, w) = (name.to_owned(), workflow.to_owned());
        let run = || async move {
            let label = w.clone();
            self.in_session(
                None,
                &label,
                RunOverrides::default(),
                move |opts| async move {
                    pm.execute_project_workflow_with(&p, &w, ExecuteOptions { params, ..opts })
                        .await
                },
            )
            .await
            .map(|(_, report)| report)
        };
        self.inner
            .projects
            .create_project_from_workflow_with(
                name,
                workflow,
                template,
                None,
                orch_projects::CreateOptions::default(),
                run,
            )
            .await
    }
}

/// The seed's result dictionary from a run's report.
pub(crate) fn to_result(session_id: SessionId, r: &RunReport) -> WorkflowRunResult {
    let failed: Vec<String> = r
        .steps
        .iter()
        .filter(|s| s.status == TaskStatus::Failed)
        .map(|s| s.name.to_string())
        .collect();
    let results: Map<String, Value> = r
        .steps
        .iter()
        .filter(|s| s.status == TaskStatus::Completed)
        .filter_map(|s| {
            s.result
                .as_ref()
                .map(|x| (s.name.to_string(), x.data.clone()))
        })
        .collect();
    let error = (!r.succeeded()).then(|| {
        r.error.clone().unwrap_or_else(|| {
            if failed.is_empty() {
                format!(
                    "the run ended {}",
                    serde_json::to_value(r.status)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_default()
                )
            } else {
                let first = r.steps.iter().find(|s| s.status == TaskStatus::Failed);
                let msg = first
                    .and_then(|s| s.result.as_ref())
                    .and_then(|x| x.error_message.clone())
                    .unwrap_or_default();
                format!("step(s) {} failed; first: {msg}", failed.join(", "))
            }
        })
    });
    WorkflowRunResult {
        success: r.succeeded(),
        session_id,
        executed_steps: results.len(),
        failed_steps: failed,
        results,
        execution_time: r.duration.as_secs_f64(),
        error,
    }
}

/// The name of a complex workflow whose definition gives none.
pub const COMPLEX_WORKFLOW_NAME: &str = "complex-workflow";

/// The seed's `execute_complex_workflow` definition as a workflow: the
/// `dependencies` map joins each step's own list, `parallel_groups` is
/// checked and dropped, everything else is read by the workflow loader.
pub(crate) fn complex_definition(
    definition: &Value,
    limits: &orch_model::Limits,
) -> Result<orch_model::Workflow, OrchestrationError> {
    let bad = |m: String| {
        OrchestrationError::invalid_parameters(format!("complex workflow definition: {m}"))
    };
    let Some(obj) = definition.as_object() else {
        return Err(bad(format!(
            "expected an object {{\"steps\": [...], \"dependencies\": {{...}}}}, found {definition}"
        )));
    };
    let mut doc = obj.clone();
    doc.entry("name")
        .or_insert_with(|| Value::String(COMPLEX_WORKFLOW_NAME.to_owned()));
    let deps = doc.remove("dependencies");
    let groups = doc.remove("parallel_groups");
    let names: Vec<String> = doc
        .get("steps")
        .and_then(Value::as_array)
        .map(|steps| {
            steps
                .iter()
                .filter_map(|s| s.get("name").and_then(Value::as_str).map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let known = |n: &str| names.iter().any(|x| x == n);
    let list = |what: &str, v: &Value| -> Result<Vec<String>, OrchestrationError> {
        v.as_array()
            .and_then(|a| {
                a.iter()
                    .map(|x| x.as_str().map(str::to_owned))
                    .collect::<Option<Vec<_>>>()
            })
            .ok_or_else(|| bad(format!("{what} must be a list of step names, found {v}")))
    };
    match deps {
        None | Some(Value::Null) => {}
        Some(Value::Object(map)) => {
            for (step, before) in &map {
                if !known(step) {
                    return Err(bad(format!(
                        "`dependencies` names `{step}`, which is not a step; the steps: {}",
                        names.join(", ")
                    )));
                }
                let before = list(&format!("`dependencies.{step}`"), before)?;
                let steps = doc
                    .get_mut("steps")
                    .and_then(Value::as_array_mut)
                    .into_iter()
                    .flatten();
                for s in steps.filter(|s| s.get("name").and_then(Value::as_str) == Some(step)) {
                    let Some(s) = s.as_object_mut() else { continue };
                    let own = s
                        .entry("dependencies")
                        .or_insert_with(|| Value::Array(Vec::new()));
                    let Some(own) = own.as_array_mut() else {
                        return Err(bad(format!(
                            "step `{step}`: `dependencies` must be a list of step names"
                        )));
                    };
                    for d in &before {
                        if !own.iter().any(|x| x.as_str() == Some(d)) {
                            own.push(Value::String(d.clone()));
                        }
                    }
                }
            }
        }
        Some(other) => {
            return Err(bad(format!(
                "`dependencies` must be an object {{step: [steps it waits for]}}, found {other}"
            )));
        }
    }
    match groups {
        None | Some(Value::Null) => {}
        Some(Value::Array(gs)) => {
            for (i, g) in gs.iter().enumerate() {
                for n in list(&format!("`parallel_groups[{i}]`"), g)? {
                    if !known(&n) {
                        return Err(bad(format!(
                            "`parallel_groups[{i}]` names `{n}`, which is not a step; the steps: {}",
                            names.join(", ")
                        )));
                    }
                }
            }
        }
        Some(other) => {
            return Err(bad(format!(
                "`parallel_groups` must be a list of lists of step names, found {other}"
            )));
        }
    }
    let text = Value::Object(doc).to_string();
    orch_model::load_workflow(
        &text,
        orch_model::Format::Json,
        limits,
        Some("complex workflow definition"),
    )
    .map(|v| v.workflow().clone())
    .map_err(OrchestrationError::Validation)
}
