//! `orch-engine`: the `OrchestrationEngine` facade (layer L5): sessions and modes, configuration, events, status, health.
//!
//! The engine ties the managers together: a [`WorkflowManager`] for
//! `workflows_dir`, a [`ProjectManager`] for `projects_dir`, and the
//! machine's (or the resources file's) [`ResourceManager`]. Work runs in
//! sessions, which fix the mode, the parallelism, a timeout and the
//! resources held while the session lives.
//!
//! ```
//! use orch_engine::{OrchestrationEngine, SessionOptions};
//! use orch_model::{ExecutionMode, Workflow, WorkflowStep};
//! use serde_json::json;
//!
//! let dir = tempfile::tempdir().unwrap();
//! let engine = OrchestrationEngine::builder().home(dir.path()).work_dir(dir.path()).build().unwrap();
//! engine.workflow_manager().add_workflow(
//!     &Workflow::new("hello", "").step(WorkflowStep::new("greet", "core", "set").param("value", json!("hi"))),
//! ).unwrap();
//! let session = engine.create_session(SessionOptions { mode: ExecutionMode::Sequential, ..Default::default() }).unwrap();
//! let rt = tokio::runtime::Runtime::new().unwrap();
//! let result = rt.block_on(engine.execute_workflow("hello", Some(&session), Default::default())).unwrap();
//! assert!(result.success);
//! assert_eq!(result.results["greet"], json!("hi"));
//! assert_eq!(engine.health_check().overall_status, "healthy");
//! ```

pub mod cache;
pub mod config;

pub use cache::StoreCache;
pub use config::EngineConfig;

use chrono::{DateTime, Utc};
use orch_model::{
    AllocationId, EntityKind, ExecutionMode, OrchestrationError, ResourceRequest, RunId, SessionId,
    Store, Task, TaskResult, TaskStatus, WorkflowStatus,
};
use orch_projects::ProjectManager;
use orch_resources::ResourceManager;
use orch_tasks::{ActionRegistry, Event, RunReport};
use orch_workflows::{ExecuteOptions, PerformanceSummary, WorkflowManager};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, Semaphore, broadcast};
use tokio_util::sync::CancellationToken;

/// How a session runs its work (seed: `create_session`'s arguments).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SessionOptions {
    /// Who the session is for.
    pub user_id: String,
    /// `sequential`, `parallel` or `resource_aware`.
    pub mode: ExecutionMode,
    /// Most tasks one workflow runs at once (default: the engine's `max_workers`, 4).
    pub max_parallel_tasks: Option<usize>,
    /// Most workflows the session runs at once (default 2); more wait their turn.
    pub max_parallel_workflows: usize,
    /// Seconds the session lives; work still running then is cancelled (default: the engine's `session_timeout`).
    pub timeout_seconds: Option<u64>,
    /// Resources held for the session's whole life (the seed's shape); in
    /// `resource_aware` mode its tasks share exactly these.
    pub resource_requirements: ResourceRequest,
    /// Free-form metadata.
    pub metadata: Map<String, Value>,
}

impl Default for SessionOptions {
    fn default() -> Self {
        Self {
            user_id: "system".into(),
            mode: ExecutionMode::Parallel,
            max_parallel_tasks: None,
            max_parallel_workflows: 2,
            timeout_seconds: None,
            resource_requirements: ResourceRequest::default(),
            metadata: Map::new(),
        }
    }
}

/// A session's life-cycle state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionStatus {
    /// Accepting work.
    Active,
    /// Closed by `close_session` (or after a one-off run).
    Closed,
    /// Its timeout passed.
    Expired,
}

/// A session as `get_session` reports it (and as the store records it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Session {
    /// Its id.
    pub session_id: SessionId,
    /// Who it is for.
    pub user_id: String,
    /// Its mode.
    pub mode: ExecutionMode,
    /// Most tasks per workflow.
    pub max_parallel_tasks: usize,
    /// Most workflows at once.
    pub max_parallel_workflows: usize,
    /// Its lifetime in seconds.
    pub timeout_seconds: u64,
    /// What it holds.
    pub resource_requirements: ResourceRequest,
    /// Free-form metadata.
    pub metadata: Map<String, Value>,
    /// Active, closed or expired.
    pub status: SessionStatus,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it ended.
    pub closed_at: Option<DateTime<Utc>>,
    /// Workflows it has run.
    pub workflows_executed: u64,
    /// Workflows running in it now.
    pub running_workflows: usize,
}

struct SessionState {
    info: Session,
    permits: Arc<Semaphore>,
    cancel: CancellationToken,
    resources: Option<Arc<ResourceManager>>,
    allocations: Vec<AllocationId>,
    deadline: Instant,
}

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

/// Something that happened in the engine; serialized with a `type` tag.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum EngineEvent {
    /// A session was created.
    SessionCreated {
        /// The session.
        session_id: SessionId,
        /// Its user.
        user_id: String,
        /// When.
        timestamp: DateTime<Utc>,
    },
    /// A session was closed or expired.
    SessionClosed {
        /// The session.
        session_id: SessionId,
        /// `closed`, `expired` or `shutdown`.
        reason: String,
        /// When.
        timestamp: DateTime<Utc>,
    },
    /// A workflow run started (it holds one of its session's workflow slots).
    WorkflowStarted {
        /// The session.
        session_id: SessionId,
        /// The workflow.
        workflow: String,
        /// The run.
        run_id: RunId,
        /// When.
        timestamp: DateTime<Utc>,
    },
    /// A workflow run ended.
    WorkflowCompleted {
        /// The session.
        session_id: SessionId,
        /// The workflow.
        workflow: String,
        /// The run.
        run_id: RunId,
        /// Whether it succeeded.
        success: bool,
        /// Seconds it took.
        execution_time: f64,
        /// When.
        timestamp: DateTime<Utc>,
    },
    /// A task's attempt started.
    TaskStarted {
        /// The run.
        run_id: RunId,
        /// The step.
        task: String,
        /// The attempt, from 1.
        attempt: u32,
        /// When.
        timestamp: DateTime<Utc>,
    },
    /// A task succeeded (or was served from the cache).
    TaskCompleted {
        /// The run.
        run_id: RunId,
        /// The step.
        task: String,
        /// Whether the result came from the cache.
        cached: bool,
        /// When.
        timestamp: DateTime<Utc>,
    },
    /// A task failed for good.
    TaskFailed {
        /// The run.
        run_id: RunId,
        /// The step.
        task: String,
        /// The kind of failure.
        error_type: String,
        /// What went wrong.
        message: String,
        /// When.
        timestamp: DateTime<Utc>,
    },
    /// A task's attempt failed and it will be retried.
    TaskRetrying {
        /// The run.
        run_id: RunId,
        /// The step.
        task: String,
        /// The attempt that failed.
        attempt: u32,
        /// Seconds until the next attempt.
        delay: f64,
        /// When.
        timestamp: DateTime<Utc>,
    },
    /// A task was skipped.
    TaskSkipped {
        /// The run.
        run_id: RunId,
        /// The step.
        task: String,
        /// Why.
        reason: String,
        /// When.
        timestamp: DateTime<Utc>,
    },
    /// A task was cancelled.
    TaskCancelled {
        /// The run.
        run_id: RunId,
        /// The step.
        task: String,
        /// When.
        timestamp: DateTime<Utc>,
    },
}

/// Every event type, as `EngineEvent::kind` names it.
pub const EVENT_KINDS: &[&str] = &[
    "session_created",
    "session_closed",
    "workflow_started",
    "workflow_completed",
    "task_started",
    "task_completed",
    "task_failed",
    "task_retrying",
    "task_skipped",
    "task_cancelled",
];

impl EngineEvent {
    /// The event's type, e.g. `task_started`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::SessionCreated { .. } => "session_created",
            Self::SessionClosed { .. } => "session_closed",
            Self::WorkflowStarted { .. } => "workflow_started",
            Self::WorkflowCompleted { .. } => "workflow_completed",
            Self::TaskStarted { .. } => "task_started",
            Self::TaskCompleted { .. } => "task_completed",
            Self::TaskFailed { .. } => "task_failed",
            Self::TaskRetrying { .. } => "task_retrying",
            Self::TaskSkipped { .. } => "task_skipped",
            Self::TaskCancelled { .. } => "task_cancelled",
        }
    }

    fn from_run(run_id: RunId, ev: &Event) -> Option<Self> {
        let timestamp = Utc::now();
        Some(match ev {
            Event::TaskStarted { name, attempt, .. } => Self::TaskStarted {
                run_id,
                task: name.to_string(),
                attempt: *attempt,
                timestamp,
            },
            Event::TaskSucceeded { name, .. } => Self::TaskCompleted {
                run_id,
                task: name.to_string(),
                cached: false,
                timestamp,
            },
            Event::TaskCached { name, .. } => Self::TaskCompleted {
                run_id,
                task: name.to_string(),
                cached: true,
                timestamp,
            },
            Event::TaskFailed {
                name,
                error_type,
                message,
                ..
            } => Self::TaskFailed {
                run_id,
                task: name.to_string(),
                error_type: error_type.clone(),
                message: message.clone(),
                timestamp,
            },
            Event::TaskRetrying {
                name,
                attempt,
                delay,
                ..
            } => Self::TaskRetrying {
                run_id,
                task: name.to_string(),
                attempt: *attempt,
                delay: delay.as_secs_f64(),
                timestamp,
            },
            Event::TaskSkipped { name, reason, .. } => Self::TaskSkipped {
                run_id,
                task: name.to_string(),
                reason: reason.clone(),
                timestamp,
            },
            Event::TaskCancelled { name, .. } => Self::TaskCancelled {
                run_id,
                task: name.to_string(),
                timestamp,
            },
            _ => return None,
        })
    }
}

/// One component's health.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ComponentHealth {
    /// `healthy`, `degraded` or `unhealthy`.
    pub status: String,
    /// Figures behind the status.
    pub details: Value,
}

/// The four components the seed's health check reports.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HealthComponents {
    /// Definitions and runs.
    pub workflow_manager: ComponentHealth,
    /// Task execution.
    pub task_orchestrator: ComponentHealth,
    /// Projects and templates.
    pub project_manager: ComponentHealth,
    /// Resources.
    pub resource_manager: ComponentHealth,
}

/// The seed's `health_check()`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HealthReport {
    /// `healthy`, `degraded` (something needs attention) or `unhealthy` (something does not work).
    pub overall_status: String,
    /// When it was taken.
    pub timestamp: DateTime<Utc>,
    /// Per component.
    pub components: HealthComponents,
    /// One line per problem, saying what and where.
    pub issues: Vec<String>,
}

/// The seed's `get_system_status()`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SystemStatus {
    /// When it was taken.
    pub timestamp: DateTime<Utc>,
    /// `{active_sessions, event_handlers: {type: count}}`.
    pub orchestration_engine: Value,
    /// `{total_workflows, running_workflows}`.
    pub workflow_manager: Value,
    /// `{total_tasks, pending, running, completed, failed}` over the runs remembered.
    pub task_orchestrator: Value,
    /// The projects summary.
    pub project_manager: Value,
    /// The resource usage.
    pub resource_manager: Value,
    /// Engine metrics, when `performance_monitoring` is on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub performance: Option<Value>,
}

/// Counters since the engine started.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct EngineMetrics {
    /// Seconds since the engine was built.
    pub uptime_seconds: f64,
    /// Sessions created.
    pub sessions_created: u64,
    /// Sessions active now.
    pub active_sessions: usize,
    /// Workflow runs finished.
    pub workflows_executed: u64,
    /// Of which succeeded.
    pub workflows_succeeded: u64,
    /// Of which did not.
    pub workflows_failed: u64,
    /// Workflow runs going on now.
    pub workflows_running: usize,
    /// Tasks that completed.
    pub tasks_completed: u64,
    /// Tasks that failed.
    pub tasks_failed: u64,
    /// Retries scheduled.
    pub tasks_retried: u64,
    /// Mean seconds per finished workflow run.
    pub average_workflow_seconds: f64,
}

type Handler = Arc<dyn Fn(&EngineEvent) + Send + Sync>;

/// The tasks `execute_task` ran, for the status.
#[derive(Debug, Default, Clone, Copy)]
struct TaskCounts {
    running: usize,
    completed: usize,
    failed: usize,
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

#[derive(Default)]
struct Counters {
    sessions: AtomicU64,
    workflows: AtomicU64,
    succeeded: AtomicU64,
    failed: AtomicU64,
    tasks_completed: AtomicU64,
    tasks_failed: AtomicU64,
    tasks_retried: AtomicU64,
    workflow_micros: AtomicU64,
}

struct Inner {
    config: EngineConfig,
    home: PathBuf,
    workflows: WorkflowManager,
    projects: ProjectManager,
    resources: Arc<ResourceManager>,
    store: Arc<dyn Store>,
    store_url: String,
    max_workers: usize,
    session_timeout: u64,
    sessions: Mutex<HashMap<SessionId, SessionState>>,
    /// Ended sessions still in `sessions`, oldest first (locked after `sessions`).
    ended: Mutex<VecDeque<SessionId>>,
    /// How many ended sessions `sessions` keeps.
    session_history: usize,
    /// Runs the tasks of `execute_task`; `shutdown` stops it.
    tasks: orch_tasks::TaskOrchestrator,
    /// Tasks of `execute_task`: running now, completed, failed.
    task_counts: Mutex<TaskCounts>,
    /// `execute_task` calls running now (`running` counts workflows).
    tasks_running: AtomicUsize,
    events: broadcast::Sender<EngineEvent>,
    handlers: Mutex<Vec<(String, Handler)>>,
    accepting: AtomicBool,
    running: AtomicUsize,
    idle: Notify,
    shutdown: CancellationToken,
    counters: Counters,
    started: Instant,
    /// Writes session records to the store.
    records: orch_tasks::RecordWriter,
}

/// Builds an [`OrchestrationEngine`].
#[derive(Debug, Default)]
pub struct EngineBuilder {
    config: EngineConfig,
    home: Option<PathBuf>,
    work_dir: Option<PathBuf>,
    registry: Option<ActionRegistry>,
    use_env: bool,
}

impl EngineBuilder {
    /// The seed's configuration (keys left unset keep their defaults).
    #[must_use]
    pub fn config(mut self, config: EngineConfig) -> Self {
        self.config = config;
        self
    }

    /// Reads the seed's JSON configuration file.
    ///
    /// # Errors
    /// As [`EngineConfig::from_file`].
    pub fn config_file(mut self, path: &Path) -> Result<Self, OrchestrationError> {
        self.config = EngineConfig::from_file(path)?;
        Ok(self)
    }

    /// Also reads `ORCH_HOME`, `ORCH_MAX_WORKERS`, `ORCH_STORE_URL` and the
    /// `CODOMYRMEX_*` aliases (values in the config win).
    #[must_use]
    pub fn from_env(mut self) -> Self {
        self.use_env = true;
        self
    }

    /// The home directory the defaults live under (default `$ORCH_HOME` or `./.orch`).
    #[must_use]
    pub fn home(mut self, dir: impl Into<PathBuf>) -> Self {
        self.home = Some(dir.into());
        self
    }

    /// Where workflows that are not part of a project run (default: the current directory).
    #[must_use]
    pub fn work_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.work_dir = Some(dir.into());
        self
    }

    /// The actions available (default: the built-ins).
    #[must_use]
    pub fn registry(mut self, registry: ActionRegistry) -> Self {
        self.registry = Some(registry);
        self
    }

    /// Builds the engine. Nothing is written until work asks for it.
    ///
    /// # Errors
    /// `InvalidParameters` for bad configuration; `Unsupported` for a store
    /// URL other than `memory://`; `Io` for unreadable directories or resources file.
    pub fn build(self) -> Result<OrchestrationEngine, OrchestrationError> {
        let mut config = self.config;
        let env_home = if self.use_env {
            Some(config.apply_env(&|k| std::env::var(k).ok())?)
        } else {
            None
        };
        let home = self
            .home
            .or(env_home)
            .unwrap_or_else(|| PathBuf::from(".orch"));
        let store_url = config
            .store_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", home.join("orch.db").display()));
        let store = open_store(&store_url)?;
        let max_workers = config.max_workers.unwrap_or(4).max(1);
        let registry = self.registry.unwrap_or_else(ActionRegistry::with_builtins);
        let resources = match &config.resource_config {
            Some(p) => Arc::new(ResourceManager::load(p)?),
            None => {
                let default = home.join("resources.json");
                if default.is_file() {
                    Arc::new(ResourceManager::load(&default)?)
                } else {
                    Arc::new(ResourceManager::detect())
                }
            }
        };
        // `cache: true` steps share one result cache in the store, unless turned off.
        let cache: Option<Arc<dyn orch_tasks::ResultCache>> = if config.cache == Some(false) {
            None
        } else {
            Some(Arc::new(StoreCache::new(store.clone())?))
        };
        let work_dir = self.work_dir.unwrap_or_else(|| PathBuf::from("."));
        let mut wb = WorkflowManager::builder(
            config
                .workflows_dir
                .clone()
                .unwrap_or_else(|| home.join("workflows")),
        )
        .registry(registry.clone())
        .work_dir(work_dir.clone())
        .max_parallel(max_workers)
        .resources(resources.clone())
        .store(store.clone());
        if let Some(c) = &cache {
            wb = wb.cache(c.clone());
        }
        let workflows = wb.build()?;
        // The workflows that templates name are available by name too, unless
        // workflows_dir defines its own of the same name.
        orch_projects::add_template_workflows(&workflows)?;
        let tasks = orch_tasks::TaskOrchestrator::new(orch_tasks::OrchestratorConfig {
            registry: Arc::new(workflows.registry().clone()),
            work_dir,
            max_parallel_tasks: max_workers,
            ..orch_tasks::OrchestratorConfig::default()
        });
        let mut pb = ProjectManager::builder(
            config
                .projects_dir
                .clone()
                .unwrap_or_else(|| home.join("projects")),
        )
        .templates_dir(
            config
                .templates_dir
                .clone()
                .unwrap_or_else(|| home.join("templates")),
        )
        .registry(registry)
        .store(store.clone());
        if let Some(c) = cache {
            pb = pb.cache(c);
        }
        let projects = pb.build()?;
        let (events, _) = broadcast::channel(4096);
        let store_for_records = store.clone();
        let cleanup = Duration::from_secs(config.cleanup_interval.unwrap_or(300).max(1));
        let session_history = config
            .session_history
            .unwrap_or(orch_workflows::RUN_HISTORY);
        let engine = OrchestrationEngine {
            inner: Arc::new(Inner {
                session_timeout: config.session_timeout.unwrap_or(3600),
                config,
                home,
                workflows,
                projects,
                resources,
                store,
                store_url,
                max_workers,
                sessions: Mutex::new(HashMap::new()),
                ended: Mutex::new(VecDeque::new()),
                session_history,
                tasks,
                task_counts: Mutex::new(TaskCounts::default()),
                tasks_running: AtomicUsize::new(0),
                events,
                handlers: Mutex::new(Vec::new()),
                accepting: AtomicBool::new(true),
                running: AtomicUsize::new(0),
                idle: Notify::new(),
                shutdown: CancellationToken::new(),
                counters: Counters::default(),
                started: Instant::now(),
                records: orch_tasks::RecordWriter::new(store_for_records)?,
            }),
        };
        // Expired sessions are also ended on every call; this sweep every
        // `cleanup_interval` releases their resources when nobody calls. It
        // runs when the engine is built inside a tokio runtime and ends with
        // the engine.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let weak = Arc::downgrade(&engine.inner);
            rt.spawn(async move {
                loop {
                    tokio::time::sleep(cleanup).await;
                    let Some(inner) = weak.upgrade() else { break };
                    OrchestrationEngine { inner }.sweep();
                }
            });
        }
        Ok(engine)
    }
}

/// The orchestration facade (seed: `OrchestrationEngine`). Cloning is cheap and shares everything.
#[derive(Clone)]
pub struct OrchestrationEngine {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for OrchestrationEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrchestrationEngine")
            .field("home", &self.inner.home)
            .field("max_workers", &self.inner.max_workers)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Leaves one of the engine's running counts (`running` for workflows,
/// `tasks_running` for `execute_task`) when dropped, also when the future is
/// dropped; wakes `shutdown` when nothing runs any more.
struct RunningGuard<'a>(&'a Inner, &'a AtomicUsize);

impl<'a> RunningGuard<'a> {
    fn enter(inner: &'a Inner, count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        Self(inner, count)
    }
}

impl Inner {
    /// Workflows and tasks running now.
    fn busy(&self) -> usize {
        self.running.load(Ordering::SeqCst) + self.tasks_running.load(Ordering::SeqCst)
    }
}

impl Drop for RunningGuard<'_> {
    fn drop(&mut self) {
        self.1.fetch_sub(1, Ordering::SeqCst);
        if self.0.busy() == 0 {
            self.0.idle.notify_waiters();
        }
    }
}

impl OrchestrationEngine {
    /// A builder.
    pub fn builder() -> EngineBuilder {
        EngineBuilder::default()
    }

    /// The engine's workflow manager.
    pub fn workflow_manager(&self) -> &WorkflowManager {
        &self.inner.workflows
    }

    /// The engine's project manager.
    pub fn project_manager(&self) -> &ProjectManager {
        &self.inner.projects
    }

    /// The engine's resources.
    pub fn resource_manager(&self) -> &Arc<ResourceManager> {
        &self.inner.resources
    }

    /// Where runs are recorded.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    /// The store's URL (`sqlite://$ORCH_HOME/orch.db` unless configured).
    pub fn store_url(&self) -> &str {
        &self.inner.store_url
    }

    /// The configuration it was built with (environment applied).
    pub fn config(&self) -> &EngineConfig {
        &self.inner.config
    }

    /// The home directory the defaults live under.
    pub fn home(&self) -> &Path {
        &self.inner.home
    }

    fn emit(&self, ev: EngineEvent) {
        let kind = ev.kind();
        let handlers: Vec<Handler> = lock(&self.inner.handlers)
            .iter()
            .filter(|(k, _)| k == kind || k == "*")
            .map(|(_, h)| h.clone())
            .collect();
        for h in handlers {
            // A failing handler must not break the engine or other handlers.
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| h(&ev)));
        }
        let _ = self.inner.events.send(ev);
    }

    /// A receiver of every event from now on. A receiver that falls more
    /// than 4,096 events behind skips the oldest ones (it is told so by
    /// `RecvError::Lagged`).
    pub fn subscribe(&self) -> broadcast::Receiver<EngineEvent> {
        self.inner.events.subscribe()
    }

    /// Calls `handler` for every event of type `kind` (or every event for `"*"`).
    ///
    /// # Errors
    /// `InvalidParameters` for an unknown event type (the message lists them).
    pub fn register_handler(
        &self,
        kind: &str,
        handler: impl Fn(&EngineEvent) + Send + Sync + 'static,
    ) -> Result<(), OrchestrationError> {
        if kind != "*" && !EVENT_KINDS.contains(&kind) {
            return Err(OrchestrationError::invalid_parameters(format!(
                "unknown event type `{kind}`; the types are {} (or `*` for all)",
                EVENT_KINDS.join(", ")
            )));
        }
        lock(&self.inner.handlers).push((kind.to_owned(), Arc::new(handler)));
        Ok(())
    }

    fn check_accepting(&self) -> Result<(), OrchestrationError> {
        if self.inner.accepting.load(Ordering::SeqCst) {
            Ok(())
        } else {
            Err(OrchestrationError::InvalidState {
                message: "the engine is shutting down and accepts no new work".into(),
            })
        }
    }

    /// Creates a session (seed: `create_session`). Its resource
    /// requirements are allocated now and held until it closes.
    ///
    /// # Errors
    /// `InvalidParameters` for zero parallelism or a bad request;
    /// `ResourceAllocation` (`RESOURCE_UNAVAILABLE`) when the resources are
    /// not free; `InvalidState` during shutdown.
    pub fn create_session(&self, opts: SessionOptions) -> Result<SessionId, OrchestrationError> {
        self.check_accepting()?;
        self.sweep();
        if opts.max_parallel_workflows == 0 || opts.max_parallel_tasks == Some(0) {
            return Err(OrchestrationError::invalid_parameters(
                "max_parallel_tasks and max_parallel_workflows must be at least 1",
            ));
        }
        if opts.timeout_seconds == Some(0) {
            return Err(OrchestrationError::invalid_parameters(
                "timeout_seconds must be at least 1 (leave it out for the engine's session_timeout)",
            ));
        }
        let id = SessionId::new();
        let user = format!("session:{id}");
        let mut allocations = Vec::new();
        if !opts.resource_requirements.is_empty() {
            match self
                .inner
                .resources
                .try_allocate(&user, &opts.resource_requirements)?
            {
                Some(a) => allocations.push(a.id),
                None => {
                    return Err(OrchestrationError::ResourceAllocation {
                        message: format!(
                            "the session's resource requirements are not free now; in use: {}",
                            self.inner.resources.get_resource_usage(None)
                        ),
                    });
                }
            }
        }
        // In resource_aware mode the session's tasks share exactly what it holds.
        let resources = match opts.mode {
            ExecutionMode::ResourceAware if !opts.resource_requirements.is_empty() => {
                let rs = opts
                    .resource_requirements
                    .0
                    .iter()
                    .map(|(kind, caps)| {
                        let caps: Vec<(&str, f64)> =
                            caps.iter().map(|(k, v)| (k.as_str(), *v)).collect();
                        let kind_name = serde_json::to_value(kind)
                            .ok()
                            .and_then(|v| v.as_str().map(str::to_owned))
                            .unwrap_or_default();
                        ResourceManager::resource(&format!("session_{kind_name}"), *kind, &caps)
                    })
                    .collect();
                Some(Arc::new(ResourceManager::with_resources(rs)?))
            }
            ExecutionMode::ResourceAware => Some(self.inner.resources.clone()),
            _ => None,
        };
        let timeout = opts.timeout_seconds.unwrap_or(self.inner.session_timeout);
        let info = Session {
            session_id: id,
            user_id: opts.user_id.clone(),
            mode: opts.mode,
            max_parallel_tasks: opts.max_parallel_tasks.unwrap_or(self.inner.max_workers),
            max_parallel_workflows: opts.max_parallel_workflows,
            timeout_seconds: timeout,
            resource_requirements: opts.resource_requirements,
            metadata: opts.metadata,
            status: SessionStatus::Active,
            created_at: Utc::now(),
            closed_at: None,
            workflows_executed: 0,
            running_workflows: 0,
        };
        lock(&self.inner.sessions).insert(
            id,
            SessionState {
                permits: Arc::new(Semaphore::new(info.max_parallel_workflows)),
                info,
                cancel: self.inner.shutdown.child_token(),
                resources,
                allocations,
                deadline: Instant::now() + Duration::from_secs(timeout),
            },
        );
        self.inner.counters.sessions.fetch_add(1, Ordering::Relaxed);
        self.record_session(&id);
        self.emit(EngineEvent::SessionCreated {
            session_id: id,
            user_id: opts.user_id,
            timestamp: Utc::now(),
        });
        Ok(id)
    }

    /// A session's state.
    pub fn get_session(&self, id: &SessionId) -> Option<Session> {
        self.sweep();
        lock(&self.inner.sessions).get(id).map(|s| s.info.clone())
    }

    /// Every active session and the last `session_history` ended ones
    /// (config; default 1000), oldest first.
    pub fn list_sessions(&self) -> Vec<Session> {
        self.sweep();
        let mut v: Vec<Session> = lock(&self.inner.sessions)
            .values()
            .map(|s| s.info.clone())
            .collect();
        v.sort_by_key(|s| s.created_at);
        v
    }

    /// Closes a session: its running work is cancelled and its resources are
    /// released. Returns false when it was not active.
    pub fn close_session(&self, id: &SessionId) -> bool {
        self.end_session(id, SessionStatus::Closed, "closed")
    }

    fn end_session(&self, id: &SessionId, status: SessionStatus, reason: &str) -> bool {
        let allocations = {
            let mut sessions = lock(&self.inner.sessions);
            let Some(s) = sessions.get_mut(id) else {
                return false;
            };
            if s.info.status != SessionStatus::Active {
                return false;
            }
            s.info.status = status;
            s.info.closed_at = Some(Utc::now());
            s.cancel.cancel();
            s.permits.close();
            std::mem::take(&mut s.allocations)
        };
        self.record_session(id);
        self.forget_ended(*id);
        if !allocations.is_empty() {
            self.inner
                .resources
                .deallocate_resources(&format!("session:{id}"), Some(&allocations));
        }
        self.emit(EngineEvent::SessionClosed {
            session_id: *id,
            reason: reason.to_owned(),
            timestamp: Utc::now(),
        });
        true
    }

    /// Remembers that `id` ended, and forgets the oldest ended sessions
    /// beyond `session_history` (their records stay in the store).
    fn forget_ended(&self, id: SessionId) {
        let mut sessions = lock(&self.inner.sessions);
        let mut ended = lock(&self.inner.ended);
        ended.push_back(id);
        while ended.len() > self.inner.session_history {
            if let Some(old) = ended.pop_front() {
                sessions.remove(&old);
            }
        }
    }

    /// Queues the session's current state for the store.
    fn record_session(&self, id: &SessionId) {
        let Some(info) = lock(&self.inner.sessions).get(id).map(|s| s.info.clone()) else {
            return;
        };
        if let Ok(data) = serde_json::to_value(&info) {
            self.inner.records.put(orch_model::Record {
                kind: orch_model::RecordKind::Session,
                key: id.to_string(),
                data,
                updated_at: Utc::now(),
            });
        }
    }

    /// Every session recorded in the store, by this process and earlier ones
    /// sharing the store, oldest change first (a session still marked active
    /// there belonged to a process that ended without closing it, or is
    /// active in another process). Session records that do not parse are
    /// skipped.
    ///
    /// # Errors
    /// The store's error.
    pub async fn session_history(&self) -> Result<Vec<Session>, OrchestrationError> {
        let store = self.inner.store.clone();
        let inner = self.inner.clone();
        // Everything queued so far is written first (the wait blocks briefly).
        tokio::task::spawn_blocking(move || inner.records.flush())
            .await
            .map_err(|e| OrchestrationError::Io {
                message: format!("waiting for session records: {e}"),
            })?;
        Ok(store
            .records(orch_model::RecordKind::Session)
            .await?
            .into_iter()
            .filter_map(|r| serde_json::from_value(r.data).ok())
            .collect())
    }

    /// Ends every session whose timeout passed and releases every resource
    /// allocation whose expiry passed; returns how many sessions ended.
    /// Runs every `cleanup_interval` while the engine lives.
    pub fn sweep(&self) -> usize {
        self.inner.resources.release_expired();
        let now = Instant::now();
        let expired: Vec<SessionId> = lock(&self.inner.sessions)
            .iter()
            .filter(|(_, s)| s.info.status == SessionStatus::Active && s.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        expired
            .iter()
            .filter(|id| self.end_session(id, SessionStatus::Expired, "expired"))
            .count()
    }

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
        if self.inner.workflows.get_workflow(name).is_none() {
            self.inner.workflows.reload()?;
        }
        // Unknown names fail before a session is touched.
        self.inner.workflows.execution_order(name)?;
        let wm = self.inner.workflows.clone();
        let label = name.to_owned();
        let (sid, report) = self
            .in_session(session, name, move |opts| async move {
                wm.execute(&label, ExecuteOptions { params, ..opts }).await
            })
            .await?;
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
        let wm = self.inner.workflows.clone();
        let name = wf.name.clone();
        let (sid, report) = self
            .in_session(session, &name, move |opts| async move {
                wm.execute_definition(&wf, opts).await
            })
            .await?;
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
        if self.inner.projects.get_project(project).is_none() {
            self.inner.projects.reload()?;
        }
        let pm = self.inner.projects.clone();
        let (p, w) = (project.to_owned(), workflow.to_owned());
        let (sid, report) = self
            .in_session(session, workflow, move |opts| async move {
                pm.execute_project_workflow_with(&p, &w, ExecuteOptions { params, ..opts })
                    .await
            })
            .await?;
        Ok(to_result(sid, &report))
    }

    /// Runs `f` under a session's rules: its mode and parallelism, a slot
    /// among its `max_parallel_workflows`, its remaining time, its resources.
    async fn in_session<F, Fut>(
        &self,
        session: Option<&SessionId>,
        workflow: &str,
        f: F,
    ) -> Result<(SessionId, RunReport), OrchestrationError>
    where
        F: FnOnce(ExecuteOptions) -> Fut,
        Fut: std::future::Future<Output = Result<RunReport, OrchestrationError>>,
    {
        self.check_accepting()?;
        self.sweep();
        let (sid, one_off) = match session {
            Some(id) => (*id, false),
            None => (self.create_session(SessionOptions::default())?, true),
        };
        let result = self.run_in(sid, workflow, f).await;
        if one_off {
            self.close_session(&sid);
        }
        result
    }

    async fn run_in<F, Fut>(
        &self,
        sid: SessionId,
        workflow: &str,
        f: F,
    ) -> Result<(SessionId, RunReport), OrchestrationError>
    where
        F: FnOnce(ExecuteOptions) -> Fut,
        Fut: std::future::Future<Output = Result<RunReport, OrchestrationError>>,
    {
        let (permits, cancel, mode, max_parallel, resources) = {
            let sessions = lock(&self.inner.sessions);
            let s = sessions
                .get(&sid)
                .ok_or_else(|| OrchestrationError::NotFound {
                    kind: EntityKind::Session,
                    name: sid.to_string(),
                    hint: Some("create one with create_session".into()),
                })?;
            if s.info.status != SessionStatus::Active {
                return Err(OrchestrationError::InvalidState {
                    message: format!(
                        "session {sid} is {}; create a new session",
                        if s.info.status == SessionStatus::Expired {
                            "expired"
                        } else {
                            "closed"
                        }
                    ),
                });
            }
            (
                s.permits.clone(),
                s.cancel.clone(),
                s.info.mode,
                s.info.max_parallel_tasks,
                s.resources.clone(),
            )
        };
        // Wait for one of the session's workflow slots (first come, first served).
        let _permit =
            permits
                .acquire_owned()
                .await
                .map_err(|_| OrchestrationError::InvalidState {
                    message: format!("session {sid} ended while the workflow waited for a slot"),
                })?;
        // A shutdown that began while this workflow waited for its slot: it
        // is new work, and is refused like any other.
        self.check_accepting()?;
        let deadline = lock(&self.inner.sessions).get(&sid).map(|s| s.deadline);
        let remaining = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        if remaining == Some(Duration::ZERO) {
            self.sweep();
            return Err(OrchestrationError::InvalidState {
                message: format!("session {sid} expired"),
            });
        }
        let _running = RunningGuard::enter(&self.inner, &self.inner.running);
        if let Some(s) = lock(&self.inner.sessions).get_mut(&sid) {
            s.info.running_workflows += 1;
        }
        let run_id = RunId::new();
        let started = Instant::now();
        self.emit(EngineEvent::WorkflowStarted {
            session_id: sid,
            workflow: workflow.to_owned(),
            run_id,
            timestamp: Utc::now(),
        });
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(RunId, Event)>();
        let me = self.clone();
        let forward = tokio::spawn(async move {
            while let Some((rid, ev)) = rx.recv().await {
                match &ev {
                    Event::TaskSucceeded { .. } | Event::TaskCached { .. } => {
                        me.inner
                            .counters
                            .tasks_completed
                            .fetch_add(1, Ordering::Relaxed);
                    }
                    Event::TaskFailed { .. } => {
                        me.inner
                            .counters
                            .tasks_failed
                            .fetch_add(1, Ordering::Relaxed);
                    }
                    Event::TaskRetrying { .. } => {
                        me.inner
                            .counters
                            .tasks_retried
                            .fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {}
                }
                if let Some(e) = EngineEvent::from_run(rid, &ev) {
                    me.emit(e);
                }
            }
        });
        let opts = ExecuteOptions {
            mode: Some(mode),
            max_parallel: Some(max_parallel),
            timeout: remaining,
            cancel: Some(cancel.child_token()),
            events: Some(tx),
            run_id: Some(run_id),
            resources,
            ..ExecuteOptions::default()
        };
        let result = f(opts).await;
        let _ = forward.await;
        let elapsed = started.elapsed();
        let success = result.as_ref().is_ok_and(RunReport::succeeded);
        let c = &self.inner.counters;
        c.workflows.fetch_add(1, Ordering::Relaxed);
        if success { &c.succeeded } else { &c.failed }.fetch_add(1, Ordering::Relaxed);
        c.workflow_micros.fetch_add(
            u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        if let Some(s) = lock(&self.inner.sessions).get_mut(&sid) {
            s.info.running_workflows = s.info.running_workflows.saturating_sub(1);
            s.info.workflows_executed += 1;
        }
        self.record_session(&sid);
        self.emit(EngineEvent::WorkflowCompleted {
            session_id: sid,
            workflow: workflow.to_owned(),
            run_id,
            success,
            execution_time: elapsed.as_secs_f64(),
            timestamp: Utc::now(),
        });
        let report = result?;
        Ok((sid, report))
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

    /// Counters since the engine started.
    pub fn get_metrics(&self) -> EngineMetrics {
        let c = &self.inner.counters;
        let runs = c.workflows.load(Ordering::Relaxed);
        EngineMetrics {
            uptime_seconds: self.inner.started.elapsed().as_secs_f64(),
            sessions_created: c.sessions.load(Ordering::Relaxed),
            active_sessions: self.active_sessions(),
            workflows_executed: runs,
            workflows_succeeded: c.succeeded.load(Ordering::Relaxed),
            workflows_failed: c.failed.load(Ordering::Relaxed),
            workflows_running: self.inner.running.load(Ordering::SeqCst),
            tasks_completed: c.tasks_completed.load(Ordering::Relaxed),
            tasks_failed: c.tasks_failed.load(Ordering::Relaxed),
            tasks_retried: c.tasks_retried.load(Ordering::Relaxed),
            average_workflow_seconds: if runs == 0 {
                0.0
            } else {
                c.workflow_micros.load(Ordering::Relaxed) as f64 / 1e6 / runs as f64
            },
        }
    }

    fn active_sessions(&self) -> usize {
        lock(&self.inner.sessions)
            .values()
            .filter(|s| s.info.status == SessionStatus::Active)
            .count()
    }

    /// The state of every component (seed: `get_system_status`).
    pub fn get_system_status(&self) -> SystemStatus {
        self.sweep();
        let mut handlers: BTreeMap<String, usize> = BTreeMap::new();
        for (k, _) in lock(&self.inner.handlers).iter() {
            *handlers.entry(k.clone()).or_insert(0) += 1;
        }
        let wm = &self.inner.workflows;
        let runs = wm.runs();
        let (mut total, mut pending, mut running, mut completed, mut failed) = (0, 0, 0, 0, 0);
        for r in &runs {
            let p = r.progress;
            total += p.total_steps;
            running += p.running_steps;
            completed += p.completed_steps;
            failed += p.failed_steps;
            if r.status == WorkflowStatus::Running {
                pending += p
                    .total_steps
                    .saturating_sub(p.running_steps + p.completed_steps + p.failed_steps);
            }
        }
        // The tasks of execute_task, since the engine started.
        let t = *lock(&self.inner.task_counts);
        total += t.running + t.completed + t.failed;
        running += t.running;
        completed += t.completed;
        failed += t.failed;
        let summary = self.inner.projects.get_projects_summary();
        SystemStatus {
            timestamp: Utc::now(),
            orchestration_engine: json!({
                "active_sessions": self.active_sessions(),
                "event_handlers": handlers,
            }),
            workflow_manager: json!({
                "total_workflows": wm.list_workflows().len(),
                "running_workflows": wm.running_count(),
            }),
            task_orchestrator: json!({
                "total_tasks": total,
                "pending": pending,
                "running": running,
                "completed": completed,
                "failed": failed,
            }),
            project_manager: json!({
                "total_projects": summary.total_projects,
                "by_status": summary.by_status,
                "by_type": summary.by_type,
                "recent_activity": summary.recent_activity,
                "templates": self.inner.projects.list_templates(),
            }),
            resource_manager: self.inner.resources.get_resource_usage(None),
            performance: (self.inner.config.performance_monitoring != Some(false))
                .then(|| serde_json::to_value(self.get_metrics()).unwrap_or(Value::Null)),
        }
    }

    /// Checks every component (seed: `health_check`). `degraded` means
    /// something needs attention but work runs (a definition that does not
    /// load, a resource over 90 % used, shutting down); `unhealthy` means
    /// something does not work (a directory that cannot be read).
    pub fn health_check(&self) -> HealthReport {
        self.sweep();
        let mut issues = Vec::new();
        let wm = &self.inner.workflows;
        let wm_dir = wm.workflows_dir().to_path_buf();
        let mut wm_status = "healthy";
        if let Err(e) = wm.reload() {
            issues.push(format!("workflow_manager: {e}"));
            wm_status = "unhealthy";
        }
        let wm_problems = wm.load_problems();
        if !wm_problems.is_empty() && wm_status == "healthy" {
            wm_status = "degraded";
        }
        issues.extend(
            wm_problems
                .iter()
                .map(|p| format!("workflow_manager: definition does not load: {p}")),
        );

        let pm = &self.inner.projects;
        let mut pm_status = "healthy";
        if let Err(e) = pm.reload() {
            issues.push(format!("project_manager: {e}"));
            pm_status = "unhealthy";
        }
        let pm_problems = pm.load_problems();
        if !pm_problems.is_empty() && pm_status == "healthy" {
            pm_status = "degraded";
        }
        issues.extend(pm_problems.iter().map(|p| format!("project_manager: {p}")));

        let accepting = self.inner.accepting.load(Ordering::SeqCst);
        let to_status = if accepting { "healthy" } else { "degraded" };
        if !accepting {
            issues.push(
                "task_orchestrator: the engine is shutting down; no new work is accepted".into(),
            );
        }
        let rm = self.inner.resources.health_check();
        let rm_status = rm["overall_status"]
            .as_str()
            .unwrap_or("unhealthy")
            .to_owned();
        if let Some(list) = rm["issues"].as_array() {
            issues.extend(
                list.iter()
                    .filter_map(Value::as_str)
                    .map(|i| format!("resource_manager: {i}")),
            );
        }
        let m = self.get_metrics();
        let statuses = [wm_status, to_status, pm_status, rm_status.as_str()];
        let overall = if statuses.contains(&"unhealthy") {
            "unhealthy"
        } else if statuses.contains(&"degraded") {
            "degraded"
        } else {
            "healthy"
        };
        HealthReport {
            overall_status: overall.to_owned(),
            timestamp: Utc::now(),
            components: HealthComponents {
                workflow_manager: ComponentHealth {
                    status: wm_status.to_owned(),
                    details: json!({
                        "workflows_dir": wm_dir.display().to_string(),
                        "total_workflows": wm.list_workflows().len(),
                        "invalid_definitions": wm_problems.len(),
                        "running_workflows": wm.running_count(),
                    }),
                },
                task_orchestrator: ComponentHealth {
                    status: to_status.to_owned(),
                    details: json!({
                        "accepting_work": accepting,
                        "running_workflows": m.workflows_running,
                        "tasks_completed": m.tasks_completed,
                        "tasks_failed": m.tasks_failed,
                    }),
                },
                project_manager: ComponentHealth {
                    status: pm_status.to_owned(),
                    details: json!({
                        "projects_dir": pm.projects_dir().display().to_string(),
                        "total_projects": pm.list_projects().len(),
                        "templates": pm.list_templates().len(),
                        "problems": pm_problems.len(),
                    }),
                },
                resource_manager: ComponentHealth {
                    status: rm_status,
                    details: rm["resources"].clone(),
                },
            },
            issues,
        }
    }

    /// Stops accepting work, waits up to `grace` for running workflows to
    /// finish, then cancels what still runs and waits for it to stop (its
    /// processes are killed); ends every session. Returns true when
    /// everything finished within `grace` on its own.
    pub async fn shutdown(&self, grace: Duration) -> bool {
        self.inner.accepting.store(false, Ordering::SeqCst);
        let deadline = tokio::time::Instant::now() + grace;
        let finished = loop {
            let idle = self.inner.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            if self.inner.busy() == 0 {
                break true;
            }
            if tokio::time::timeout_at(deadline, idle).await.is_err() {
                break self.inner.busy() == 0;
            }
        };
        if !finished {
            self.inner.shutdown.cancel();
            // The tasks of execute_task: their processes are stopped too.
            self.inner.tasks.stop_execution();
            loop {
                let idle = self.inner.idle.notified();
                tokio::pin!(idle);
                idle.as_mut().enable();
                if self.inner.busy() == 0 {
                    break;
                }
                idle.await;
            }
        }
        let ids: Vec<SessionId> = lock(&self.inner.sessions).keys().copied().collect();
        for id in ids {
            self.end_session(&id, SessionStatus::Closed, "shutdown");
        }
        finished
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
            self.in_session(None, &label, move |opts| async move {
                pm.execute_project_workflow_with(&p, &w, ExecuteOptions { params, ..opts })
                    .await
            })
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

/// Opens a store by URL: `memory://` (in this process only) or
/// `sqlite://PATH` (durable; created with owner-only permissions), with
/// options after `?`: `mode=ro` (read-only), `max_page_count=N` (see
/// `orch_store_sqlite::SqliteOptions`).
///
/// # Errors
/// `Unsupported` for another scheme (PostgreSQL is not built yet);
/// `InvalidParameters` for an unknown option; the store's error when it
/// cannot be opened.
pub fn open_store(url: &str) -> Result<Arc<dyn Store>, OrchestrationError> {
    open_store_as(url, false)
}

/// [`open_store`] for a command that only reads: an SQLite database is
/// opened read-only (no file created, no migration, no write, no write
/// lock taken), so a database in a read-only file or directory can be read.
///
/// # Errors
/// As [`open_store`].
pub fn open_store_read_only(url: &str) -> Result<Arc<dyn Store>, OrchestrationError> {
    open_store_as(url, true)
}

fn open_store_as(url: &str, read_only: bool) -> Result<Arc<dyn Store>, OrchestrationError> {
    if url == "memory://" || url == "memory" {
        Ok(Arc::new(orch_tasks::MemoryStore::new()))
    } else if url.starts_with("sqlite://") {
        let (path, mut options) = orch_store_sqlite::SqliteStore::parse_url(url)?;
        options.read_only |= read_only;
        // Opened on first use: commands that never touch runs create no database.
        Ok(Arc::new(orch_store_sqlite::SqliteStore::open_lazy_with(
            &path, options,
        )?))
    } else {
        Err(OrchestrationError::Unsupported {
            message: format!(
                "store `{url}`: use sqlite://PATH (the default, sqlite://$ORCH_HOME/orch.db) or memory://; postgres:// is not built yet"
            ),
        })
    }
}

/// The seed's result dictionary from a run's report.
fn to_result(session_id: SessionId, r: &RunReport) -> WorkflowRunResult {
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
fn complex_definition(
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
