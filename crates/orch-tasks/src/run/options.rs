//! What a run is given and what it reports: `RunOptions`, `RunReport`, `StepReport`.

use crate::cache::ResultCache;
use chrono::{DateTime, Utc};
use orch_model::CompactString;
use orch_model::store::TaskRecord;
use orch_model::{ExecutionMode, RunId, Store, TaskResult, TaskStatus, WorkflowStatus};
use orch_resources::ResourceManager;
use serde_json::{Map, Value};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How to run a workflow.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The run's id.
    pub run_id: RunId,
    /// Sequential, parallel or resource-aware.
    pub mode: ExecutionMode,
    /// Most steps running at once in `parallel` mode.
    pub max_parallel: usize,
    /// Parameter values; they override the workflow's declared defaults.
    pub params: Map<String, Value>,
    /// Where actions run.
    pub work_dir: PathBuf,
    /// Limit on the whole run; when it passes, everything running is stopped.
    pub run_timeout: Option<Duration>,
    /// How long steps that run after a stop (`run_if: always`, `finally:`,
    /// ...) may still run once the run was cancelled or timed out; `None`:
    /// the workflow's `cancel_grace`, else [`DEFAULT_CANCEL_GRACE`](super::DEFAULT_CANCEL_GRACE).
    pub cancel_grace: Option<Duration>,
    /// Time between SIGTERM and SIGKILL when a process is stopped.
    pub kill_grace: Duration,
    /// Most bytes of stdout and of stderr kept per process.
    pub output_limit: usize,
    /// Cancels the run: running steps are stopped, nothing new starts.
    pub cancel: CancellationToken,
    /// `${project.path}`, when the run belongs to a project.
    pub project_path: Option<String>,
    /// The project's name, when the run belongs to a project (kept in the
    /// store's saved run, for whoever resumes it).
    pub project_name: Option<String>,
    /// The resources `resource_aware` mode allocates from (the machine's,
    /// detected, when absent).
    pub resources: Option<Arc<ResourceManager>>,
    /// Where `cache: true` steps look up and store results (no caching when absent).
    pub cache: Option<Arc<dyn ResultCache>>,
    /// Where the run is recorded (none when absent). With a durable store,
    /// every completion is committed before its dependents start, and the
    /// run can be resumed after a crash.
    pub store: Option<Arc<dyn Store>>,
    /// Resume the run `run_id` of `store` from these records of its tasks
    /// (`Store::tasks`): finished steps keep their outcome and do not run
    /// again; steps that were running run once more.
    pub resume: Option<Vec<TaskRecord>>,
    /// Where attempts run (`None`: [`crate::executor::default_executor`],
    /// in this process, with retries, timeouts and panics caught).
    pub executor: Option<Arc<dyn crate::executor::Executor>>,
    /// The run that started this one through a `workflow.run` step
    /// (recorded as the store run's parent); `None` for a top-level run.
    pub parent: Option<RunId>,
    /// The run's secrets, read by the caller; `None`: read from the
    /// workflow's `secrets:` when the run starts (`crate::secrets`).
    pub secrets: Option<Arc<crate::secrets::Secrets>>,
    /// Takes every event of the run, synchronously and in order (the
    /// workflow manager's progress, the engine's counters), besides the
    /// channel `run_workflow` may be given.
    pub sink: Option<Arc<dyn crate::event::EventSink>>,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            run_id: RunId::new(),
            mode: ExecutionMode::Parallel,
            max_parallel: 4,
            params: Map::new(),
            work_dir: PathBuf::from("."),
            run_timeout: None,
            cancel_grace: None,
            kill_grace: Duration::from_secs(2),
            output_limit: 1024 * 1024,
            cancel: CancellationToken::new(),
            project_path: None,
            project_name: None,
            resources: None,
            cache: None,
            store: None,
            resume: None,
            parent: None,
            sink: None,
            secrets: None,
            executor: None,
        }
    }
}

/// What happened to one step.
#[derive(Debug, Clone, PartialEq)]
pub struct StepReport {
    /// The step's name.
    pub name: CompactString,
    /// Its final state.
    pub status: TaskStatus,
    /// Attempts started.
    pub attempts: u32,
    /// When the run created it.
    pub created_at: DateTime<Utc>,
    /// When it became ready.
    pub ready_at: Option<DateTime<Utc>>,
    /// When its last attempt started.
    pub started_at: Option<DateTime<Utc>>,
    /// When it reached its final state.
    pub finished_at: Option<DateTime<Utc>>,
    /// Its outcome (absent for skipped and never-started steps).
    pub result: Option<TaskResult>,
    /// Why it was skipped or cancelled, if it was.
    pub note: Option<String>,
}

/// What happened in a run.
#[derive(Debug, Clone, PartialEq)]
pub struct RunReport {
    /// The run.
    pub run_id: RunId,
    /// The workflow's name.
    pub workflow: String,
    /// Completed, failed or cancelled.
    pub status: WorkflowStatus,
    /// Wall time.
    pub duration: Duration,
    /// Every step, in definition order.
    pub steps: Vec<StepReport>,
    /// Why the run failed as a whole (a run timeout), if it did.
    pub error: Option<String>,
}

impl RunReport {
    /// Whether every step completed or was skipped and none failed.
    pub fn succeeded(&self) -> bool {
        self.status == WorkflowStatus::Completed
    }
}
