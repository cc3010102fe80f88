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
//! assert!(engine.health_check().overall_status.is_healthy());
//! ```

pub mod cache;
pub mod config;
pub mod metrics;
pub mod schedule;

pub use cache::StoreCache;
pub use config::EngineConfig;

mod backends;
mod builder;
mod concurrency;
mod events;
mod health;
mod items;
mod resume;
mod retry;
mod run;
mod seed;
mod sessions;
mod submit;
mod worker;

pub use backends::{OpenOptions, StoreOpener, StoreRegistry, open_store, open_store_read_only};
// What callers of the engine name without depending on the layers below it.
pub use builder::EngineBuilder;
use events::Handler;
pub use events::{EVENT_KINDS, EngineEvent};
pub use health::{
    ComponentHealth, EngineMetrics, EngineStatus, HealthComponents, HealthReport, ProjectsStatus,
    SystemStatus, TasksStatus, WorkflowsStatus,
};
pub use items::{StepItems, fan_out_items, report_with_items};
pub use orch_projects::{CreateOptions, ProjectUpdate};
pub use orch_resources::ResourceManager;
pub use orch_tasks::worker::{
    Capacity, HeldTask, SUBMITTED_OWNER, WorkerOptions, WorkerRecord, WorkerStatus, WorkerSummary,
};
pub use orch_tasks::{ActionRegistry, Event, External, RunReport, StepReport, process, run::Shown};
pub use resume::{CancelOutcome, RunState, owner_words, run_state, shown_state};
pub use run::{
    ResumeInfo, RunHandle, RunRequest, RunTarget, enclosing_project, enclosing_project_for,
};
use seed::TaskCounts;

/// What a definition may name when it runs with `registry`'s actions in an
/// engine: the registry's catalog with `workflow.run`, which every engine
/// adds (for checking definitions without building an engine).
pub fn action_catalog(registry: &ActionRegistry) -> orch_model::ActionCatalog {
    let mut c = registry.catalog();
    c.add_action("workflow", "run", Some(&orch_workflows::RUN_SPEC));
    c
}
pub use seed::{COMPLEX_WORKFLOW_NAME, ComplexWorkflowResult, WorkflowRunResult};
use sessions::{RunOverrides, SessionState};
pub use sessions::{Session, SessionOptions, SessionStatus};
pub use worker::{WorkerHandle, WorkerReport, worker_report};

use chrono::{DateTime, Utc};
use orch_model::{
    AllocationId, EntityKind, ExecutionMode, OrchestrationError, ResourceRequest, RunId, SessionId,
    Store, Task, TaskResult, TaskStatus, WorkflowStatus,
};
use orch_projects::ProjectManager;

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
    /// The result cache of `cache: true` steps (none when turned off).
    cache: Option<Arc<dyn orch_tasks::ResultCache>>,
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
    /// The runtime runs are spawned on, when set
    /// ([`OrchestrationEngine::spawn_runs_on`]); otherwise the caller's.
    runtime: std::sync::OnceLock<tokio::runtime::Handle>,
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

    /// What definitions run by this engine may name: its actions (with
    /// `workflow.run`) and their declared parameters.
    pub fn action_catalog(&self) -> orch_model::ActionCatalog {
        self.inner.workflows.registry().catalog()
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

    /// The store's URL (`sqlite://$ORCH_HOME/orch.db` unless configured),
    /// as it may be shown: a password in it reads `***`
    /// ([`orch_model::store::redact_url`]; the configuration has it whole).
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

    /// Spawns the task of every run started from now on on `rt`'s runtime,
    /// whichever runtime the caller is on: a server that answers on a
    /// runtime of its own (`orch serve`) keeps the runs it starts off its
    /// threads, and they go on when that runtime ends. Without it a run's
    /// task is spawned on the runtime of the call that starts it. Set once:
    /// false (and nothing changed) when it was set before.
    pub fn spawn_runs_on(&self, rt: tokio::runtime::Handle) -> bool {
        self.inner.runtime.set(rt).is_ok()
    }

    /// Spawns `f` on the runs' runtime ([`Self::spawn_runs_on`]), or on
    /// the caller's: for a task that belongs with the runs, such as one
    /// that holds a run's handle until the run ends.
    pub fn spawn<F>(&self, f: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        match self.inner.runtime.get() {
            Some(rt) => rt.spawn(f),
            None => tokio::spawn(f),
        }
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
}

impl OrchestrationEngine {
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
}
