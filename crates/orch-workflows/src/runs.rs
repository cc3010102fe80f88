//! Runs: executing a workflow through `orch-tasks`, live progress counted from its events, status and a bounded history.

use crate::WorkflowManager;
use crate::perf::RunPerf;
use chrono::{DateTime, Utc};
use orch_model::store::TaskRecord;
use orch_model::{
    ExecutionMode, OrchestrationError, RunId, TaskStatus, ValidWorkflow, Workflow, WorkflowStatus,
};
use orch_resources::ResourceManager;
use orch_tasks::{Event, EventSink, Fanout, ResultCache, RunOptions, RunReport, run_workflow};
use serde::Serialize;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc::UnboundedSender;
use tokio_util::sync::CancellationToken;

/// How many finished runs the manager remembers.
pub const RUN_HISTORY: usize = 1000;

/// Step counts of a run (seed: the `progress` of `get_workflow_status`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Progress {
    /// Steps in the workflow.
    pub total_steps: usize,
    /// Steps that succeeded.
    pub completed_steps: usize,
    /// Steps that failed.
    pub failed_steps: usize,
    /// Steps running now.
    pub running_steps: usize,
}

/// The status of a workflow's latest run (seed: `get_workflow_status`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WorkflowStatusReport {
    /// The workflow.
    pub name: String,
    /// `draft`/`ready` when it never ran; otherwise its latest run's status.
    pub status: WorkflowStatus,
    /// Step counts of the latest run.
    pub progress: Progress,
    /// When the latest run started.
    pub start_time: Option<DateTime<Utc>>,
    /// When it ended.
    pub end_time: Option<DateTime<Utc>>,
    /// Why it failed, if it did.
    pub error_message: Option<String>,
}

/// One run, as the manager remembers it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunRecord {
    /// The run.
    pub run_id: RunId,
    /// The workflow it runs.
    pub workflow: String,
    /// The run that started it through `workflow.run`, if any.
    pub parent: Option<RunId>,
    /// Running, completed, failed or cancelled.
    pub status: WorkflowStatus,
    /// Step counts, live while it runs.
    pub progress: Progress,
    /// When it started.
    pub start_time: DateTime<Utc>,
    /// When it ended.
    pub end_time: Option<DateTime<Utc>>,
    /// Why it failed, if it did.
    pub error_message: Option<String>,
}

/// How one execution differs from the manager's defaults.
#[derive(Debug, Clone, Default)]
pub struct ExecuteOptions {
    /// Parameter values.
    pub params: Map<String, Value>,
    /// Execution mode (default: the manager's).
    pub mode: Option<ExecutionMode>,
    /// Most steps at once (default: the manager's).
    pub max_parallel: Option<usize>,
    /// Where the steps work (default: the manager's work directory).
    pub work_dir: Option<PathBuf>,
    /// `${project.path}`.
    pub project_path: Option<String>,
    /// Limit on the whole run.
    pub timeout: Option<Duration>,
    /// How long steps that run after a stop may still run once the run was
    /// cancelled or timed out (`RunOptions::cancel_grace`).
    pub cancel_grace: Option<Duration>,
    /// Cancels the run.
    pub cancel: Option<CancellationToken>,
    /// Receives every event of the run, with its run id.
    pub events: Option<UnboundedSender<(RunId, Event)>>,
    /// Takes every event of the run, synchronously, in order, after the
    /// manager has counted it (the engine's counters and events).
    pub sink: Option<Arc<dyn EventSink>>,
    /// The run's id (default: a new one).
    pub run_id: Option<RunId>,
    /// Resources for `resource_aware` mode (default: the manager's).
    pub resources: Option<Arc<ResourceManager>>,
    /// The result cache of `cache: true` steps (default: the manager's).
    pub cache: Option<Arc<dyn ResultCache>>,
    /// Resume run `run_id` of the manager's store from these records of its
    /// tasks (`Store::tasks`), after taking it over (`Store::take_over`).
    pub resume: Option<Vec<TaskRecord>>,
}

impl WorkflowManager {
    /// Runs a workflow to the end with these parameter values (seed: `execute_workflow`).
    ///
    /// # Errors
    /// As [`WorkflowManager::execute`].
    pub async fn execute_workflow(
        &self,
        name: &str,
        params: Map<String, Value>,
    ) -> Result<RunReport, OrchestrationError> {
        self.execute(
            name,
            ExecuteOptions {
                params,
                ..ExecuteOptions::default()
            },
        )
        .await
    }

    /// Runs a workflow to the end. A step that fails is part of the report, not an error.
    ///
    /// # Errors
    /// `NotFound` for an unknown workflow; `Validation` for unknown modules or
    /// a workflow that calls itself; `InvalidParameters` for missing or
    /// undeclared parameters. Nothing has run when an error is returned.
    pub async fn execute(
        &self,
        name: &str,
        opts: ExecuteOptions,
    ) -> Result<RunReport, OrchestrationError> {
        self.check_calls(name)?;
        self.run(name, opts, None).await
    }

    /// Runs a workflow that is not one of the manager's (it is neither saved
    /// nor listed), with the same checks, history, progress and actions as a
    /// known one: it is read back as the loader would read it, its literal
    /// `workflow.run` calls are followed, and the run is remembered under
    /// the workflow's name ([`WorkflowManager::get_workflow_status`],
    /// [`WorkflowManager::get_performance_summary`]). The engine's
    /// `execute_complex_workflow` runs through it.
    ///
    /// # Errors
    /// `Validation` with every problem of the definition; otherwise as
    /// [`WorkflowManager::execute`]. Nothing has run when an error is returned.
    pub async fn execute_definition(
        &self,
        wf: &Workflow,
        opts: ExecuteOptions,
    ) -> Result<RunReport, OrchestrationError> {
        let valid = Arc::new(self.as_loaded(wf)?);
        self.check_definition_calls(&valid)?;
        self.run_valid(valid, opts, None).await
    }

    /// Reads a workflow built in memory back as the loader would read it,
    /// and follows its literal `workflow.run` calls (a call to itself, or a
    /// cycle through the known workflows, is an error).
    ///
    /// # Errors
    /// `Validation` with every problem of the definition; `InvalidParameters`
    /// for a call cycle.
    pub fn check_definition(&self, wf: &Workflow) -> Result<ValidWorkflow, OrchestrationError> {
        let valid = self.as_loaded(wf)?;
        self.check_definition_calls(&valid)?;
        Ok(valid)
    }

    /// Runs a workflow already read and validated (from a file, or a
    /// project's), with the manager's actions, store, cache and history, as
    /// a known one runs; its `workflow.run` steps call the manager's
    /// workflows.
    ///
    /// # Errors
    /// As [`WorkflowManager::execute`]. Nothing has run when an error is returned.
    pub async fn execute_valid(
        &self,
        wf: Arc<ValidWorkflow>,
        opts: ExecuteOptions,
    ) -> Result<RunReport, OrchestrationError> {
        self.run_valid(wf, opts, None).await
    }

    pub(crate) async fn run(
        &self,
        name: &str,
        opts: ExecuteOptions,
        parent: Option<(RunId, Vec<String>)>,
    ) -> Result<RunReport, OrchestrationError> {
        let wf = self.valid(name)?;
        self.run_valid(wf, opts, parent).await
    }

    async fn run_valid(
        &self,
        wf: Arc<ValidWorkflow>,
        opts: ExecuteOptions,
        parent: Option<(RunId, Vec<String>)>,
    ) -> Result<RunReport, OrchestrationError> {
        let name_owned = wf.workflow().name.clone();
        let name = name_owned.as_str();
        let params = orch_tasks::prepare(&wf, &self.inner.registry, &opts.params)?;
        let run_id = opts.run_id.unwrap_or_default();
        let total = wf.workflow().steps.len();
        let stack = match &parent {
            Some((_, s)) => {
                let mut s = s.clone();
                s.push(name.to_owned());
                s
            }
            None => vec![name.to_owned()],
        };
        {
            let mut st = self.state();
            st.runs.insert(
                run_id,
                RunRecord {
                    run_id,
                    workflow: name.to_owned(),
                    parent: parent.as_ref().map(|p| p.0),
                    status: WorkflowStatus::Running,
                    progress: Progress {
                        total_steps: total,
                        ..Progress::default()
                    },
                    start_time: Utc::now(),
                    end_time: None,
                    error_message: None,
                },
            );
            st.latest.insert(name.to_owned(), run_id);
            st.stacks.insert(run_id, stack);
        }
        // Progress is counted from the run's events as they happen, then
        // they go on to the caller's sink and channel: one stream.
        let mut next: Vec<Arc<dyn EventSink>> = Vec::new();
        if let Some(s) = opts.sink.clone() {
            next.push(s);
        }
        if let Some(tx) = opts.events.clone() {
            next.push(Arc::new(tx));
        }
        let progress = Arc::new(ProgressSink {
            manager: self.clone(),
            running: std::sync::Mutex::new(vec![false; total]),
            next: Fanout(next),
        });
        let run_opts = RunOptions {
            run_id,
            mode: opts.mode.unwrap_or(self.inner.mode),
            max_parallel: opts.max_parallel.unwrap_or(self.inner.max_parallel),
            params,
            work_dir: opts.work_dir.unwrap_or_else(|| self.inner.work_dir.clone()),
            run_timeout: opts.timeout,
            cancel_grace: opts.cancel_grace,
            cancel: opts.cancel.unwrap_or_default(),
            project_path: opts.project_path,
            resources: opts.resources.or_else(|| self.inner.resources.clone()),
            cache: opts.cache.or_else(|| self.inner.cache.clone()),
            store: self.inner.store.clone(),
            resume: opts.resume,
            parent: parent.as_ref().map(|p| p.0),
            sink: Some(progress.clone()),
            ..RunOptions::default()
        };
        // Driven as a task of its own (see `orch_tasks::drive`: a step's
        // dependents start on the worker that finished it).
        let me = self.clone();
        let perf_wf = wf.clone();
        // Every run, a sub-workflow's too, in an INFO span (tracing).
        let span = tracing::info_span!("run", run = %run_id, workflow = %name, steps = total);
        tracing::info!(parent: &span, "run started");
        let result = orch_tasks::drive(async move {
            run_workflow(&wf, &me.inner.registry, run_opts, None).await
        });
        let result = tracing::Instrument::instrument(result, span.clone()).await;
        match &result {
            Ok(r) => {
                let seconds = r.duration.as_secs_f64();
                tracing::info!(parent: &span, status = %r.status, seconds, "run ended");
            }
            Err(e) => tracing::info!(parent: &span, error = %e, "run did not start"),
        }
        drop(progress);
        let mut st = self.state();
        st.stacks.remove(&run_id);
        if let Some(rec) = st.runs.get_mut(&run_id) {
            rec.end_time = Some(Utc::now());
            rec.progress.running_steps = 0;
            match &result {
                Ok(r) => {
                    rec.status = r.status;
                    rec.progress.completed_steps = r
                        .steps
                        .iter()
                        .filter(|s| s.status == TaskStatus::Completed)
                        .count();
                    rec.progress.failed_steps = r
                        .steps
                        .iter()
                        .filter(|s| s.status == TaskStatus::Failed)
                        .count();
                    rec.error_message = r.error.clone().or_else(|| failure_summary(r));
                }
                Err(e) => {
                    rec.status = WorkflowStatus::Failed;
                    rec.error_message = Some(e.to_string());
                }
            }
        }
        let perf = match &result {
            Ok(r) => RunPerf::of(r, &perf_wf),
            Err(_) => RunPerf {
                seconds: st.runs.get(&run_id).map_or(0.0, |rec| {
                    rec.end_time
                        .and_then(|e| (e - rec.start_time).to_std().ok())
                        .map_or(0.0, |d| d.as_secs_f64())
                }),
                modules: BTreeMap::new(),
            },
        };
        st.perf.insert(run_id, perf);
        st.finished.push_back(run_id);
        while st.finished.len() > RUN_HISTORY {
            if let Some(old) = st.finished.pop_front() {
                st.runs.remove(&old);
                st.perf.remove(&old);
            }
        }
        drop(st);
        result
    }

    pub(crate) fn count(&self, run_id: RunId, ev: &Event, running: &mut [bool]) {
        let mut st = self.state();
        let Some(rec) = st.runs.get_mut(&run_id) else {
            return;
        };
        let p = &mut rec.progress;
        let mut stop = |t: u32| {
            if let Some(r) = running.get_mut(t as usize) {
                if *r {
                    *r = false;
                    p.running_steps -= 1;
                }
            }
        };
        match ev {
            Event::TaskStarted { task, .. } => {
                if let Some(r) = running.get_mut(*task as usize) {
                    if !*r {
                        *r = true;
                        p.running_steps += 1;
                    }
                }
            }
            Event::TaskRetrying { task, .. } => stop(*task),
            Event::TaskSucceeded { task, .. } | Event::TaskCached { task, .. } => {
                stop(*task);
                p.completed_steps += 1;
            }
            Event::TaskFailed { task, .. } => {
                stop(*task);
                p.failed_steps += 1;
            }
            Event::TaskCancelled { task, .. } => stop(*task),
            _ => {}
        }
    }

    /// The status of a workflow's latest run, or of the definition when it
    /// never ran; `None` for an unknown workflow (seed: `get_workflow_status`).
    pub fn get_workflow_status(&self, name: &str) -> Option<WorkflowStatusReport> {
        let st = self.state();
        let entry = st.workflows.get(name);
        let rec = st.latest.get(name).and_then(|id| st.runs.get(id));
        match (entry, rec) {
            (_, Some(r)) => Some(WorkflowStatusReport {
                name: name.to_owned(),
                status: r.status,
                progress: r.progress,
                start_time: Some(r.start_time),
                end_time: r.end_time,
                error_message: r.error_message.clone(),
            }),
            (Some(e), None) => Some(WorkflowStatusReport {
                name: name.to_owned(),
                status: e.workflow.workflow().status,
                progress: Progress {
                    total_steps: e.workflow.workflow().steps.len(),
                    ..Progress::default()
                },
                start_time: None,
                end_time: None,
                error_message: None,
            }),
            (None, None) => None,
        }
    }

    /// A run by id (running or among the last [`RUN_HISTORY`] finished).
    pub fn get_run(&self, run_id: RunId) -> Option<RunRecord> {
        self.state().runs.get(&run_id).cloned()
    }

    /// Every remembered run, oldest first.
    pub fn runs(&self) -> Vec<RunRecord> {
        let mut v: Vec<RunRecord> = self.state().runs.values().cloned().collect();
        v.sort_by_key(|r| (r.start_time, r.run_id));
        v
    }

    /// How many runs are running now.
    pub fn running_count(&self) -> usize {
        self.state()
            .runs
            .values()
            .filter(|r| r.status == WorkflowStatus::Running)
            .count()
    }
}

/// The first failed step's error, for a run's `error_message`.
pub(crate) fn failure_summary(r: &RunReport) -> Option<String> {
    r.steps
        .iter()
        .find(|s| s.status == TaskStatus::Failed)
        .map(|s| {
            let msg = s
                .result
                .as_ref()
                .and_then(|x| x.error_message.clone())
                .unwrap_or_default();
            format!("step `{}` failed: {msg}", s.name)
        })
}

/// The manager's consumer of a run's events: counts its progress, then
/// hands each event on.
struct ProgressSink {
    manager: WorkflowManager,
    /// Which steps run now.
    running: std::sync::Mutex<Vec<bool>>,
    next: Fanout,
}

impl std::fmt::Debug for ProgressSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProgressSink").finish_non_exhaustive()
    }
}

impl EventSink for ProgressSink {
    fn event(&self, run: RunId, event: Event) {
        {
            let mut running = self
                .running
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            self.manager.count(run, &event, &mut running);
        }
        self.next.event(run, event);
    }
}
