//! What a `TaskOrchestrator` is configured with and reports: the options of
//! `create_task`, the orchestrator's configuration, and its statistics.

use crate::action::ActionRegistry;
use crate::executor::Executor;
use orch_model::{ExecutionMode, ResourceRequest, RetryPolicy, TaskId, TaskPriority};
use orch_resources::ResourceManager;
use serde::Serialize;
use serde_json::{Map, Value};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Options of `create_task` (the seed's keyword arguments).
#[derive(Debug, Clone, Default)]
pub struct TaskOptions {
    /// Action parameters; strings may hold `${NAME.result}` references.
    pub parameters: Map<String, Value>,
    /// Tasks that must complete first (created before this one).
    pub dependencies: Vec<TaskId>,
    /// Scheduling priority.
    pub priority: TaskPriority,
    /// Limit per attempt.
    pub timeout: Option<Duration>,
    /// Retries after retryable failures.
    pub max_retries: u32,
    /// Backoff between attempts.
    pub retry: RetryPolicy,
    /// What the task needs while it runs (in `resource_aware` mode).
    pub resources: ResourceRequest,
    /// Free-form tags.
    pub tags: Vec<String>,
    /// Free-form metadata.
    pub metadata: Map<String, Value>,
}

/// How a `TaskOrchestrator` runs tasks.
#[derive(Debug, Clone)]
pub struct OrchestratorConfig {
    /// Sequential, parallel or resource-aware.
    pub mode: ExecutionMode,
    /// Most tasks at once (the seed's `max_workers`, default 4).
    pub max_parallel_tasks: usize,
    /// The actions tasks may use.
    pub registry: Arc<ActionRegistry>,
    /// The resources of `resource_aware` mode (the machine's when absent).
    pub resources: Option<Arc<ResourceManager>>,
    /// Where actions run.
    pub work_dir: PathBuf,
    /// Where attempts run (`None`: [`crate::executor::default_executor`]).
    pub executor: Option<Arc<dyn Executor>>,
}

impl Default for OrchestratorConfig {
    fn default() -> Self {
        Self {
            mode: ExecutionMode::Parallel,
            max_parallel_tasks: 4,
            registry: Arc::new(ActionRegistry::with_builtins()),
            resources: None,
            work_dir: PathBuf::from("."),
            executor: None,
        }
    }
}

/// The seed's `get_execution_stats()`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExecutionStats {
    /// Tasks created.
    pub total_tasks: usize,
    /// Waiting for dependencies.
    pub pending: usize,
    /// Waiting for a slot.
    pub ready: usize,
    /// Running now.
    pub running: usize,
    /// Completed.
    pub completed: usize,
    /// Failed.
    pub failed: usize,
    /// Cancelled.
    pub cancelled: usize,
    /// Skipped (a dependency did not complete).
    pub skipped: usize,
    /// Seconds spent in finished tasks.
    pub total_execution_time: f64,
    /// Average seconds per finished task.
    pub average_execution_time: f64,
}
