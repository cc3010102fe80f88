//! `orch-workflows`: the `WorkflowManager` (layer L3): definitions on disk, runs and their progress, sub-workflows.
//!
//! A [`WorkflowManager`] reads every definition (`.yaml`, `.yml`, `.json`,
//! `.toml`) of its `workflows_dir`, saves new ones atomically as JSON (the
//! seed's saved format), runs them through `orch-tasks`, records every run
//! with its id and live progress, and gives the action `workflow.run` to its
//! steps, so that a workflow can run another one. A workflow that would call
//! itself, directly or through others, is refused before anything runs.
//!
//! ```
//! use orch_model::{Workflow, WorkflowStep};
//! use orch_workflows::WorkflowManager;
//! use serde_json::json;
//!
//! let dir = tempfile::tempdir().unwrap();
//! let manager = WorkflowManager::builder(dir.path()).work_dir(dir.path()).build().unwrap();
//! let wf = manager
//!     .create_workflow("greet", "says hello")
//!     .step(WorkflowStep::new("hello", "core", "set").param("value", json!("hello")));
//! manager.save_workflow(&wf).unwrap();
//! assert_eq!(manager.list_workflows(), vec!["greet"]);
//!
//! let rt = tokio::runtime::Runtime::new().unwrap();
//! let report = rt.block_on(manager.execute_workflow("greet", Default::default())).unwrap();
//! assert!(report.succeeded());
//! let status = manager.get_workflow_status("greet").unwrap();
//! assert_eq!(status.progress.completed_steps, 1);
//! ```

use chrono::{DateTime, Utc};
use orch_model::{
    EntityKind, ExecutionMode, Format, Limits, OrchestrationError, RunId, TaskStatus,
    ValidWorkflow, Workflow, WorkflowStatus, load_workflow,
};
use orch_resources::ResourceManager;
use orch_tasks::{
    Action, ActionContext, ActionError, ActionRegistry, Event, ResultCache, RunOptions, RunReport,
    run_workflow,
};
use serde::Serialize;
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;
use tokio::sync::mpsc::{UnboundedSender, unbounded_channel};
use tokio_util::sync::CancellationToken;

/// How deep sub-workflows may nest.
pub const MAX_SUB_WORKFLOW_DEPTH: usize = 16;
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
    /// Cancels the run.
    pub cancel: Option<CancellationToken>,
    /// Receives every event of the run, with its run id.
    pub events: Option<UnboundedSender<(RunId, Event)>>,
    /// The run's id (default: a new one).
    pub run_id: Option<RunId>,
    /// Resources for `resource_aware` mode (default: the manager's).
    pub resources: Option<Arc<ResourceManager>>,
}

/// A workflow known to the manager.
#[derive(Debug, Clone)]
struct Entry {
    workflow: Arc<ValidWorkflow>,
    path: Option<PathBuf>,
}

#[derive(Debug, Default)]
struct State {
    workflows: BTreeMap<String, Entry>,
    problems: Vec<String>,
    runs: HashMap<RunId, RunRecord>,
    finished: VecDeque<RunId>,
    latest: HashMap<String, RunId>,
    /// The chain of workflows each live run belongs to (outermost first).
    stacks: HashMap<RunId, Vec<String>>,
    /// What each finished run in `runs` took, for the performance summary.
    perf: HashMap<RunId, RunPerf>,
}

/// The timings of one finished run.
#[derive(Debug, Clone, Default)]
struct RunPerf {
    seconds: f64,
    modules: BTreeMap<String, ModuleUsage>,
}

impl RunPerf {
    fn of(r: &RunReport, wf: &ValidWorkflow) -> Self {
        let module_of: HashMap<&str, &str> = wf
            .workflow()
            .steps
            .iter()
            .map(|s| (s.name.as_str(), s.module.as_str()))
            .collect();
        let mut modules: BTreeMap<String, ModuleUsage> = BTreeMap::new();
        for s in &r.steps {
            let Some(res) = &s.result else { continue };
            // Steps that ran: not skipped, not cancelled before starting, not served from the cache.
            if s.attempts == 0 || res.cached {
                continue;
            }
            let Some(module) = module_of.get(s.name.as_str()) else {
                continue;
            };
            let u = modules.entry((*module).to_owned()).or_default();
            u.count += 1;
            u.total_time += res.execution_time;
        }
        Self {
            seconds: r.duration.as_secs_f64(),
            modules,
        }
    }
}

/// How often a module's actions ran and for how long (seed: `module_usage_stats`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct ModuleUsage {
    /// Steps of this module that ran (a cached or skipped step did not run).
    pub count: u64,
    /// Seconds they took, summed.
    pub total_time: f64,
}

/// Run durations (seed: `performance_stats`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct DurationStats {
    /// Finished runs.
    pub count: usize,
    /// Their seconds, summed.
    pub total_time: f64,
    /// Mean seconds per run (0 without runs).
    pub average_time: f64,
    /// The shortest run's seconds (0 without runs).
    pub min_time: f64,
    /// The longest run's seconds (0 without runs).
    pub max_time: f64,
}

/// What finished runs took (seed: `get_performance_summary`), over the runs
/// the manager remembers (the last [`RUN_HISTORY`] finished).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PerformanceSummary {
    /// The workflow summarized; `None` for every workflow.
    pub workflow: Option<String>,
    /// Finished runs counted.
    pub total_workflows_executed: usize,
    /// Of which completed.
    pub successful_executions: usize,
    /// Of which failed (a step failed, the run timed out or could not start).
    pub failed_executions: usize,
    /// Of which were cancelled.
    pub cancelled_executions: usize,
    /// Mean seconds per finished run.
    pub average_execution_time: f64,
    /// Run durations.
    pub performance_stats: DurationStats,
    /// Per module: how many steps ran and their seconds.
    pub module_usage_stats: BTreeMap<String, ModuleUsage>,
}

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    limits: Limits,
    registry: ActionRegistry,
    work_dir: PathBuf,
    mode: ExecutionMode,
    max_parallel: usize,
    resources: Option<Arc<ResourceManager>>,
    cache: Option<Arc<dyn ResultCache>>,
    store: Option<Arc<dyn orch_model::Store>>,
    state: Mutex<State>,
}

/// Builds a [`WorkflowManager`].
#[derive(Debug)]
pub struct WorkflowManagerBuilder {
    dir: PathBuf,
    limits: Limits,
    registry: Option<ActionRegistry>,
    work_dir: PathBuf,
    mode: ExecutionMode,
    max_parallel: usize,
    resources: Option<Arc<ResourceManager>>,
    cache: Option<Arc<dyn ResultCache>>,
    store: Option<Arc<dyn orch_model::Store>>,
}

impl WorkflowManagerBuilder {
    /// Where runs are recorded (a durable store makes them resumable).
    #[must_use]
    pub fn store(mut self, store: Arc<dyn orch_model::Store>) -> Self {
        self.store = Some(store);
        self
    }

    /// Input limits for definitions.
    #[must_use]
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// The actions steps may use (default: the built-ins). `workflow.run` is added.
    #[must_use]
    pub fn registry(mut self, registry: ActionRegistry) -> Self {
        self.registry = Some(registry);
        self
    }

    /// Where steps work by default (default: the current directory).
    #[must_use]
    pub fn work_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.work_dir = dir.into();
        self
    }

    /// The default execution mode.
    #[must_use]
    pub fn mode(mut self, mode: ExecutionMode) -> Self {
        self.mode = mode;
        self
    }

    /// The default most steps at once.
    #[must_use]
    pub fn max_parallel(mut self, n: usize) -> Self {
        self.max_parallel = n.max(1);
        self
    }

    /// Resources for `resource_aware` runs.
    #[must_use]
    pub fn resources(mut self, rm: Arc<ResourceManager>) -> Self {
        self.resources = Some(rm);
        self
    }

    /// A cache for `cache: true` steps.
    #[must_use]
    pub fn cache(mut self, cache: Arc<dyn ResultCache>) -> Self {
        self.cache = Some(cache);
        self
    }

    /// Reads every definition in the directory (a missing directory holds none).
    ///
    /// # Errors
    /// `Io` when the directory exists but cannot be read. Definitions that do
    /// not load are not an error: each is reported by [`WorkflowManager::load_problems`].
    pub fn build(self) -> Result<WorkflowManager, OrchestrationError> {
        let registry = self.registry.unwrap_or_else(ActionRegistry::with_builtins);
        let inner = Arc::new_cyclic(|weak: &Weak<Inner>| {
            let mut registry = registry;
            registry.register(
                "workflow",
                "run",
                Arc::new(SubWorkflow {
                    inner: weak.clone(),
                }),
            );
            Inner {
                dir: self.dir,
                limits: self.limits,
                registry,
                work_dir: self.work_dir,
                mode: self.mode,
                max_parallel: self.max_parallel,
                resources: self.resources,
                cache: self.cache,
                store: self.store,
                state: Mutex::new(State::default()),
            }
        });
        let manager = WorkflowManager { inner };
        manager.reload()?;
        Ok(manager)
    }
}

/// Workflow definitions, their runs and progress (seed: `WorkflowManager`).
/// Cloning is cheap and shares everything.
#[derive(Debug, Clone)]
pub struct WorkflowManager {
    inner: Arc<Inner>,
}

fn io(what: &str, path: &Path, e: &std::io::Error) -> OrchestrationError {
    OrchestrationError::Io {
        message: format!("{what} `{}`: {e}", path.display()),
    }
}

fn not_found(name: &str, known: &BTreeMap<String, Entry>) -> OrchestrationError {
    let names: Vec<&str> = known.keys().map(String::as_str).collect();
    OrchestrationError::NotFound {
        kind: EntityKind::Workflow,
        name: name.to_owned(),
        hint: Some(if names.is_empty() {
            "no workflows are defined; add a definition to the workflows directory".to_owned()
        } else {
            format!("known workflows: {}", names.join(", "))
        }),
    }
}

impl WorkflowManager {
    /// A builder for a manager whose definitions live in `workflows_dir`.
    pub fn builder(workflows_dir: impl Into<PathBuf>) -> WorkflowManagerBuilder {
        WorkflowManagerBuilder {
            dir: workflows_dir.into(),
            limits: Limits::default(),
            registry: None,
            work_dir: PathBuf::from("."),
            mode: ExecutionMode::Parallel,
            max_parallel: 4,
            resources: None,
            cache: None,
            store: None,
        }
    }

    /// A manager with default settings for `workflows_dir`.
    ///
    /// # Errors
    /// As [`WorkflowManagerBuilder::build`].
    pub fn new(workflows_dir: impl Into<PathBuf>) -> Result<Self, OrchestrationError> {
        Self::builder(workflows_dir).build()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the maps half-updated in
        // a way that matters more than losing them; keep serving.
        self.inner
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The directory definitions are read from and saved to.
    pub fn workflows_dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Where runs are recorded, if anywhere.
    pub fn store(&self) -> Option<&Arc<dyn orch_model::Store>> {
        self.inner.store.as_ref()
    }

    /// The actions steps may use (the built-ins, the user's, and `workflow.run`).
    pub fn registry(&self) -> &ActionRegistry {
        &self.inner.registry
    }

    /// The input limits definitions are read with.
    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    /// The directory runs work in unless told otherwise.
    pub fn work_dir(&self) -> &Path {
        &self.inner.work_dir
    }

    /// Reads the directory again: definitions saved by others appear, deleted ones go.
    /// Workflows added with [`WorkflowManager::add_workflow`] stay.
    ///
    /// # Errors
    /// `Io` when the directory exists but cannot be listed.
    pub fn reload(&self) -> Result<(), OrchestrationError> {
        let dir = &self.inner.dir;
        let mut found: BTreeMap<String, Entry> = BTreeMap::new();
        let mut problems = Vec::new();
        match std::fs::read_dir(dir) {
            Ok(entries) => {
                let mut paths: Vec<PathBuf> = entries
                    .filter_map(Result::ok)
                    .map(|e| e.path())
                    .filter(|p| p.is_file() && Format::from_path(p).is_some())
                    .collect();
                paths.sort();
                for p in paths {
                    match self.load_file(&p) {
                        Ok(wf) => {
                            let name = wf.workflow().name.clone();
                            if let Some(other) = found.get(&name) {
                                problems.push(format!(
                                    "{}: defines workflow `{name}`, already defined by {}; rename one of them",
                                    p.display(),
                                    other.path.as_deref().unwrap_or(Path::new("?")).display()
                                ));
                                continue;
                            }
                            found.insert(
                                name,
                                Entry {
                                    workflow: Arc::new(wf),
                                    path: Some(p),
                                },
                            );
                        }
                        Err(e) => problems.push(e),
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io("cannot list workflows directory", dir, &e)),
        }
        let mut st = self.state();
        for (name, e) in &st.workflows {
            if e.path.is_none() && !found.contains_key(name) {
                found.insert(name.clone(), e.clone());
            }
        }
        st.workflows = found;
        st.problems = problems;
        Ok(())
    }

    fn load_file(&self, p: &Path) -> Result<ValidWorkflow, String> {
        let shown = p.display().to_string();
        let meta = std::fs::metadata(p).map_err(|e| format!("{shown}: {e}"))?;
        if meta.len() > self.inner.limits.max_definition_bytes {
            return Err(format!(
                "{shown}: {} bytes is over the definition size limit of {} bytes",
                meta.len(),
                self.inner.limits.max_definition_bytes
            ));
        }
        let text = std::fs::read_to_string(p).map_err(|e| format!("{shown}: {e}"))?;
        let format = Format::from_path(p).unwrap_or(Format::Json);
        load_workflow(&text, format, &self.inner.limits, Some(&shown))
            .map_err(|d| d.lines().collect::<Vec<_>>().join("\n"))
    }

    /// Reads `wf` back the way [`WorkflowManager::reload`] reads a saved
    /// file: its canonical JSON through the loader, with the same limits, so
    /// that nothing is accepted now that the loader would refuse after a restart.
    fn as_loaded(&self, wf: &Workflow) -> Result<ValidWorkflow, OrchestrationError> {
        let mut text = wf.to_json_pretty();
        text.push('\n');
        let shown = format!("workflow `{}`", wf.name);
        let max = self.inner.limits.max_definition_bytes;
        if text.len() as u64 > max {
            return Err(OrchestrationError::invalid_parameters(format!(
                "{shown}: its saved form is {} bytes, over the definition size limit of {max} bytes; split it into sub-workflows or raise the limit",
                text.len()
            )));
        }
        load_workflow(&text, Format::Json, &self.inner.limits, Some(&shown))
            .map_err(OrchestrationError::Validation)
    }

    /// Definitions in the directory that did not load, one message each (with file, line and column).
    pub fn load_problems(&self) -> Vec<String> {
        self.state().problems.clone()
    }

    /// A new, empty workflow (seed: `create_workflow`); add steps with
    /// [`Workflow::step`], then [`WorkflowManager::save_workflow`] or
    /// [`WorkflowManager::add_workflow`] it.
    pub fn create_workflow(&self, name: &str, description: &str) -> Workflow {
        Workflow::new(name, description)
    }

    fn check(&self, wf: &Workflow) -> Result<ValidWorkflow, OrchestrationError> {
        // The loader's rules, not only validation's: a workflow with no steps
        // validates but is refused by the loader.
        let valid = self.as_loaded(wf)?;
        orch_tasks::prepare(&valid, &self.inner.registry, &Map::new())
            .map(|_| ())
            .or_else(|e| match e {
                // Parameters without defaults are given at run time; only module problems count here.
                OrchestrationError::InvalidParameters { .. } => Ok(()),
                other => Err(other),
            })?;
        Ok(valid)
    }

    /// Validates `wf` and keeps it in memory only (it is gone after a restart).
    ///
    /// # Errors
    /// `Validation` with every problem; `AlreadyExists` when a workflow of that name is known.
    pub fn add_workflow(&self, wf: &Workflow) -> Result<(), OrchestrationError> {
        let valid = self.check(wf)?;
        let mut st = self.state();
        if st.workflows.contains_key(&wf.name) {
            return Err(OrchestrationError::AlreadyExists {
                kind: EntityKind::Workflow,
                name: wf.name.clone(),
                hint: Some("choose another name, or save_workflow to replace a saved one".into()),
            });
        }
        st.workflows.insert(
            wf.name.clone(),
            Entry {
                workflow: Arc::new(valid),
                path: None,
            },
        );
        Ok(())
    }

    /// Validates `wf` and writes it to `<workflows_dir>/<name>.json`
    /// atomically (replacing an earlier version saved there); returns the path.
    ///
    /// # Errors
    /// `Validation` with every problem (nothing is written); `AlreadyExists`
    /// when another file defines a workflow of that name; `Io` when writing fails.
    pub fn save_workflow(&self, wf: &Workflow) -> Result<PathBuf, OrchestrationError> {
        let valid = self.check(wf)?;
        let path = self.inner.dir.join(format!("{}.json", wf.name));
        if let Some(existing) = self.state().workflows.get(&wf.name) {
            if let Some(p) = &existing.path {
                if p != &path {
                    return Err(OrchestrationError::AlreadyExists {
                        kind: EntityKind::Workflow,
                        name: wf.name.clone(),
                        hint: Some(format!("it is defined in {}; edit that file", p.display())),
                    });
                }
            }
        }
        std::fs::create_dir_all(&self.inner.dir)
            .map_err(|e| io("cannot create workflows directory", &self.inner.dir, &e))?;
        let mut text = wf.to_json_pretty();
        text.push('\n');
        orch_tasks::fs::write_atomically(&path, text.as_bytes(), false)
            .map_err(|e| io("cannot write", &path, &e))?;
        self.state().workflows.insert(
            wf.name.clone(),
            Entry {
                workflow: Arc::new(valid),
                path: Some(path.clone()),
            },
        );
        Ok(path)
    }

    /// Names of every known workflow, sorted (seed: `list_workflows`).
    pub fn list_workflows(&self) -> Vec<String> {
        self.state().workflows.keys().cloned().collect()
    }

    /// A workflow's definition.
    pub fn get_workflow(&self, name: &str) -> Option<Workflow> {
        self.state()
            .workflows
            .get(name)
            .map(|e| e.workflow.workflow().clone())
    }

    /// A workflow's validated definition (what runs).
    pub fn get_valid(&self, name: &str) -> Option<Arc<ValidWorkflow>> {
        self.state().workflows.get(name).map(|e| e.workflow.clone())
    }

    /// The file a workflow was read from, if it came from one.
    pub fn workflow_path(&self, name: &str) -> Option<PathBuf> {
        self.state()
            .workflows
            .get(name)
            .and_then(|e| e.path.clone())
    }

    fn valid(&self, name: &str) -> Result<Arc<ValidWorkflow>, OrchestrationError> {
        let st = self.state();
        st.workflows
            .get(name)
            .map(|e| e.workflow.clone())
            .ok_or_else(|| not_found(name, &st.workflows))
    }

    /// Checks that a workflow can run: its modules exist and it does not call itself through sub-workflows.
    ///
    /// # Errors
    /// `NotFound`, `Validation`, or `Validation` with a `CycleDetected` problem.
    pub fn validate(&self, name: &str) -> Result<(), OrchestrationError> {
        let wf = self.valid(name)?;
        orch_tasks::prepare(&wf, &self.inner.registry, &Map::new())
            .map(|_| ())
            .or_else(|e| match e {
                OrchestrationError::InvalidParameters { .. } => Ok(()),
                other => Err(other),
            })?;
        self.check_calls(name)
    }

    /// The steps level by level: each level's steps may run together (seed: `get_workflow_execution_order`).
    ///
    /// # Errors
    /// `NotFound` for an unknown workflow.
    pub fn execution_order(&self, name: &str) -> Result<Vec<Vec<String>>, OrchestrationError> {
        Ok(self.valid(name)?.execution_order())
    }

    /// The workflow as a Mermaid flowchart.
    ///
    /// # Errors
    /// `NotFound` for an unknown workflow.
    pub fn to_mermaid(&self, name: &str) -> Result<String, OrchestrationError> {
        Ok(self.valid(name)?.to_mermaid())
    }

    /// The workflow as a Graphviz DOT digraph.
    ///
    /// # Errors
    /// `NotFound` for an unknown workflow.
    pub fn to_dot(&self, name: &str) -> Result<String, OrchestrationError> {
        Ok(self.valid(name)?.to_dot())
    }

    /// Follows the literal `workflow.run` calls from `name`; a path back to a
    /// workflow already on it is an error naming the whole chain.
    fn check_calls(&self, name: &str) -> Result<(), OrchestrationError> {
        fn visit(
            st: &State,
            name: &str,
            path: &mut Vec<String>,
            done: &mut Vec<String>,
        ) -> Result<(), Vec<String>> {
            if let Some(at) = path.iter().position(|p| p == name) {
                let mut cycle = path[at..].to_vec();
                cycle.push(name.to_owned());
                return Err(cycle);
            }
            if done.iter().any(|d| d == name) {
                return Ok(());
            }
            let Some(e) = st.workflows.get(name) else {
                return Ok(());
            };
            path.push(name.to_owned());
            for s in &e.workflow.workflow().steps {
                if s.module == "workflow" && s.action == "run" {
                    if let Some(Value::String(callee)) = s.parameters.get("workflow") {
                        if !callee.contains("${") {
                            visit(st, callee, path, done)?;
                        }
                    }
                }
            }
            path.pop();
            done.push(name.to_owned());
            Ok(())
        }
        let st = self.state();
        visit(&st, name, &mut Vec::new(), &mut Vec::new()).map_err(|cycle| {
            let mut d = orch_model::Diagnostics::new(None);
            d.push(
                orch_model::DiagnosticKind::Cycle,
                format!("workflow `{name}`"),
                orch_model::Pos::UNKNOWN,
                format!(
                    "workflow `{}` calls itself through sub-workflows: {}; remove one of these `workflow.run` steps",
                    cycle[0],
                    cycle.join(" -> ")
                ),
            );
            OrchestrationError::Validation(d)
        })
    }

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
        for s in &valid.workflow().steps {
            if s.module == "workflow" && s.action == "run" {
                if let Some(Value::String(callee)) = s.parameters.get("workflow") {
                    if callee == &wf.name {
                        return Err(OrchestrationError::invalid_parameters(format!(
                            "workflow `{}` calls itself in step `{}`; remove that `workflow.run` step",
                            wf.name, s.name
                        )));
                    }
                    if !callee.contains("${") {
                        self.check_calls(callee)?;
                    }
                }
            }
        }
        self.run_valid(valid, opts, None).await
    }

    async fn run(
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
        // Progress is counted from the run's events, then passed on to the caller's listener.
        let (tx, mut rx) = unbounded_channel::<Event>();
        let me = self.clone();
        let forward = opts.events.clone();
        let counter = tokio::spawn(async move {
            let mut running = vec![false; total];
            while let Some(ev) = rx.recv().await {
                me.count(run_id, &ev, &mut running);
                if let Some(f) = &forward {
                    let _ = f.send((run_id, ev));
                }
            }
        });
        let run_opts = RunOptions {
            run_id,
            mode: opts.mode.unwrap_or(self.inner.mode),
            max_parallel: opts.max_parallel.unwrap_or(self.inner.max_parallel),
            params,
            work_dir: opts.work_dir.unwrap_or_else(|| self.inner.work_dir.clone()),
            run_timeout: opts.timeout,
            cancel: opts.cancel.unwrap_or_default(),
            project_path: opts.project_path,
            resources: opts.resources.or_else(|| self.inner.resources.clone()),
            cache: self.inner.cache.clone(),
            store: self.inner.store.clone(),
            parent: parent.as_ref().map(|p| p.0),
            ..RunOptions::default()
        };
        // Driven as a task of its own (see `orch_tasks::drive`: a step's
        // dependents start on the worker that finished it).
        let me = self.clone();
        let perf_wf = wf.clone();
        let result = orch_tasks::drive(async move {
            run_workflow(&wf, &me.inner.registry, run_opts, Some(tx)).await
        })
        .await;
        // The sender was moved into the run and is dropped by now: the counter drains and ends.
        let _ = counter.await;
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

    fn count(&self, run_id: RunId, ev: &Event, running: &mut [bool]) {
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

    /// What the remembered finished runs of `workflow` (of every workflow
    /// when `None`) took: counts by outcome, run durations and seconds per
    /// module (seed: `get_performance_summary`). Always available: timings
    /// come from the runs' own reports, not from a separate monitor.
    pub fn get_performance_summary(&self, workflow: Option<&str>) -> PerformanceSummary {
        let st = self.state();
        let mut stats = DurationStats::default();
        let (mut ok, mut failed, mut cancelled) = (0, 0, 0);
        let mut modules: BTreeMap<String, ModuleUsage> = BTreeMap::new();
        for id in &st.finished {
            let (Some(rec), Some(perf)) = (st.runs.get(id), st.perf.get(id)) else {
                continue;
            };
            if workflow.is_some_and(|w| w != rec.workflow) {
                continue;
            }
            match rec.status {
                WorkflowStatus::Completed => ok += 1,
                WorkflowStatus::Cancelled => cancelled += 1,
                _ => failed += 1,
            }
            let t = perf.seconds;
            stats.min_time = if stats.count == 0 {
                t
            } else {
                stats.min_time.min(t)
            };
            stats.max_time = stats.max_time.max(t);
            stats.count += 1;
            stats.total_time += t;
            for (m, u) in &perf.modules {
                let e = modules.entry(m.clone()).or_default();
                e.count += u.count;
                e.total_time += u.total_time;
            }
        }
        if stats.count > 0 {
            stats.average_time = stats.total_time / stats.count as f64;
        }
        PerformanceSummary {
            workflow: workflow.map(str::to_owned),
            total_workflows_executed: stats.count,
            successful_executions: ok,
            failed_executions: failed,
            cancelled_executions: cancelled,
            average_execution_time: stats.average_time,
            performance_stats: stats,
            module_usage_stats: modules,
        }
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
fn failure_summary(r: &RunReport) -> Option<String> {
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

/// `workflow.run {workflow, parameters}` → `{run_id, workflow, status, results: {step: data}}`.
#[derive(Debug)]
struct SubWorkflow {
    inner: Weak<Inner>,
}

#[async_trait::async_trait]
impl Action for SubWorkflow {
    async fn run(&self, params: Value, ctx: &ActionContext) -> Result<Value, ActionError> {
        let Some(inner) = self.inner.upgrade() else {
            return Err(ActionError::permanent(
                "Unavailable",
                "the workflow manager is gone",
            ));
        };
        let manager = WorkflowManager { inner };
        let name = params
            .get("workflow")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                ActionError::invalid_parameters(
                    "`workflow` (the name of the workflow to run) is required",
                )
            })?
            .to_owned();
        let sub_params = match params.get("parameters") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(m)) => m.clone(),
            Some(other) => {
                return Err(ActionError::invalid_parameters(format!(
                    "`parameters` must be an object, found {other}"
                )));
            }
        };
        let stack = manager
            .state()
            .stacks
            .get(&ctx.run_id)
            .cloned()
            .unwrap_or_default();
        if stack.contains(&name) {
            let mut chain = stack.clone();
            chain.push(name.clone());
            return Err(ActionError::permanent(
                "CycleDetected",
                format!(
                    "workflow `{name}` would call itself: {}",
                    chain.join(" -> ")
                ),
            ));
        }
        if stack.len() >= MAX_SUB_WORKFLOW_DEPTH {
            return Err(ActionError::permanent(
                "LimitExceeded",
                format!(
                    "sub-workflows nest deeper than {MAX_SUB_WORKFLOW_DEPTH}: {}",
                    stack.join(" -> ")
                ),
            ));
        }
        let opts = ExecuteOptions {
            params: sub_params,
            work_dir: Some(ctx.work_dir.to_path_buf()),
            cancel: Some(ctx.cancel.child_token()),
            ..ExecuteOptions::default()
        };
        let report = Box::pin(manager.run(&name, opts, Some((ctx.run_id, stack))))
            .await
            .map_err(|e| ActionError::permanent(e.error_type(), e.to_string()))?;
        let results: Map<String, Value> = report
            .steps
            .iter()
            .filter_map(|s| {
                s.result
                    .as_ref()
                    .filter(|r| r.success)
                    .map(|r| (s.name.to_string(), r.data.clone()))
            })
            .collect();
        let out = json!({
            "run_id": report.run_id.to_string(),
            "workflow": name,
            "status": report.status,
            "results": results,
        });
        if report.succeeded() {
            Ok(out)
        } else {
            let why = report
                .error
                .clone()
                .or_else(|| failure_summary(&report))
                .unwrap_or_else(|| format!("it ended {:?}", report.status));
            Err(ActionError::permanent(
                "SubWorkflowFailed",
                format!("sub-workflow `{name}` did not succeed: {why}"),
            )
            .with_data(out))
        }
    }
}
