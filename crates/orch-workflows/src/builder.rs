//! `WorkflowManagerBuilder`: the manager's settings, and registering `workflow.run` with a weak reference back to it.

use crate::sub_workflow::SubWorkflow;
use crate::{Inner, State, WorkflowManager};
use orch_model::{ExecutionMode, Limits, OrchestrationError};
use orch_resources::ResourceManager;
use orch_tasks::{ActionRegistry, ResultCache};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, Weak};

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
}
