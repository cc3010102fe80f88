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

mod builder;
mod catalog;
mod perf;
mod runs;
mod sub_workflow;

pub use builder::WorkflowManagerBuilder;
pub use perf::{DurationStats, ModuleUsage, PerformanceSummary};
pub use runs::{ExecuteOptions, Progress, RUN_HISTORY, RunRecord, WorkflowStatusReport};
pub use sub_workflow::{MAX_SUB_WORKFLOW_DEPTH, RUN_SPEC};

use catalog::Entry;
use orch_model::{ExecutionMode, Limits, OrchestrationError, RunId};
use orch_resources::ResourceManager;
use orch_tasks::{ActionRegistry, ResultCache};
use perf::RunPerf;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

/// What the manager knows, behind one lock: the catalog (`workflows`,
/// `problems`) and the runs (the rest).
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

/// The manager's settings and state, shared by its clones and (weakly) by `workflow.run`.
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

/// Workflow definitions, their runs and progress (seed: `WorkflowManager`).
/// Cloning is cheap and shares everything.
#[derive(Debug, Clone)]
pub struct WorkflowManager {
    inner: Arc<Inner>,
}

/// An `Io` error naming what failed and the path.
fn io(what: &str, path: &Path, e: &std::io::Error) -> OrchestrationError {
    OrchestrationError::Io {
        message: format!("{what} `{}`: {e}", path.display()),
    }
}

impl WorkflowManager {
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
}
