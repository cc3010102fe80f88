//! The `Action` trait, its context and error, and the `ActionRegistry` keyed by `module.action`.

use async_trait::async_trait;
use orch_model::{CompactString, RunId};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// What an action knows about the run it works for.
#[derive(Debug, Clone)]
pub struct ActionContext {
    /// The run.
    pub run_id: RunId,
    /// The step's name.
    pub step: CompactString,
    /// The action's name within its module (what an external module is asked to do).
    pub action: CompactString,
    /// The attempt, starting at 1.
    pub attempt: u32,
    /// The directory actions work in and file actions are confined to.
    pub work_dir: Arc<Path>,
    /// Cancelled when the step times out or the run is cancelled. Actions that
    /// wait or run processes must watch it and stop promptly.
    pub cancel: CancellationToken,
    /// How long a process gets between SIGTERM and SIGKILL.
    pub kill_grace: Duration,
    /// The most bytes of stdout and of stderr an action keeps.
    pub output_limit: usize,
    /// Where a process's output is kept while it runs (chunks in the
    /// run's store, `crate::output`); `None`: only in the result.
    pub output: Option<crate::output::StepOutput>,
    /// The run's secrets, when it has any: those the step declared (set on
    /// the processes it starts) and the masker of its output and result.
    pub secrets: Option<crate::secrets::StepSecrets>,
}

impl ActionContext {
    /// A context for running one action outside a run (tests, `execute_task`).
    pub fn detached(step: &str, work_dir: &Path) -> Self {
        Self {
            run_id: RunId::new(),
            step: CompactString::from(step),
            action: CompactString::default(),
            attempt: 1,
            work_dir: Arc::from(work_dir),
            cancel: CancellationToken::new(),
            kill_grace: Duration::from_secs(2),
            output_limit: 1024 * 1024,
            output: None,
            secrets: None,
        }
    }
}

/// Why an action failed. A failed action is a task result, not an engine error.
#[derive(Debug, Clone, PartialEq)]
pub struct ActionError {
    /// The kind of failure, e.g. `ExitCode`, `TimeoutError`, `InvalidParameters`.
    pub error_type: String,
    /// What went wrong.
    pub message: String,
    /// Whether another attempt may succeed (a bad parameter will not).
    pub retryable: bool,
    /// Data to keep with the failure (for `shell.exec`: `{exit_code, stdout, stderr}`),
    /// boxed to keep the error small.
    pub data: Option<Box<Value>>,
}

impl ActionError {
    /// A failure that another attempt may fix.
    pub fn retryable(error_type: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            error_type: error_type.into(),
            message: message.into(),
            retryable: true,
            data: None,
        }
    }

    /// A failure that no retry will fix (bad parameters, a refused path).
    pub fn permanent(error_type: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            error_type: error_type.into(),
            message: message.into(),
            retryable: false,
            data: None,
        }
    }

    /// Bad parameters: permanent.
    pub fn invalid_parameters(message: impl Into<String>) -> Self {
        Self::permanent("InvalidParameters", message)
    }

    /// Attaches data to the failure.
    #[must_use]
    pub fn with_data(mut self, data: Value) -> Self {
        self.data = Some(Box::new(data));
        self
    }
}

impl fmt::Display for ActionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.error_type, self.message)
    }
}

impl std::error::Error for ActionError {}

/// One action, such as `shell.exec`.
///
/// # Contract
/// `run` receives the step's parameters with every `${...}` already resolved
/// and returns the step's result as JSON, or an [`ActionError`].
///
/// # Cancellation
/// When `ctx.cancel` fires (timeout or cancellation), the action must stop
/// promptly and release what it holds; a process-running action kills its
/// whole process group (SIGTERM, `ctx.kill_grace`, SIGKILL) and reaps it
/// before returning.
///
/// # Implementing
/// Validate parameters first and fail with [`ActionError::invalid_parameters`]
/// (not retried). Never splice parameter values into shell source text.
#[async_trait]
pub trait Action: Send + Sync + fmt::Debug {
    /// Runs the action.
    async fn run(&self, params: Value, ctx: &ActionContext) -> Result<Value, ActionError>;

    /// The same work as [`run`](Action::run), done at once, for an action
    /// that never waits (`core.noop`, `core.set`, a pure computation);
    /// `None`, the default, for one that may. The scheduler runs a step whose
    /// action offers this and that has no timeout and no retries by calling
    /// [`Immediate::run_now`] on the coordinator: no future, no task and no
    /// clone of the run's handles. Its result, errors and panics are treated
    /// exactly as those of `run`, which should do the same (simplest: call
    /// `run_now` from `run`).
    fn immediate(&self) -> Option<&dyn Immediate> {
        None
    }

    /// The parameters the action takes (names, types, which are required),
    /// which `orch validate` checks steps against and `orch schema` shows;
    /// `None`, the default, declares nothing and any parameters pass.
    fn spec(&self) -> Option<&'static orch_model::ActionSpec> {
        None
    }
}

/// An action that finishes without waiting (see [`Action::immediate`]).
pub trait Immediate: Send + Sync {
    /// Runs the action to the end and returns its result.
    ///
    /// # Errors
    /// As [`Action::run`].
    fn run_now(&self, params: Value, ctx: &ActionContext) -> Result<Value, ActionError>;
}

/// Actions by `module.action`; users register their own.
#[derive(Debug, Clone, Default)]
pub struct ActionRegistry {
    /// module → action → implementation (looked up without allocating).
    actions: BTreeMap<String, BTreeMap<String, Arc<dyn Action>>>,
    /// Whole modules served by one implementation (external programs).
    modules: BTreeMap<String, Arc<dyn Action>>,
}

impl ActionRegistry {
    /// An empty registry.
    pub fn empty() -> Self {
        Self::default()
    }

    /// A registry with every built-in action (`core.*`, `shell.*`).
    pub fn with_builtins() -> Self {
        let mut r = Self::default();
        crate::builtin::register(&mut r);
        r
    }

    /// Registers (or replaces) `module.action`.
    pub fn register(&mut self, module: &str, action: &str, implementation: Arc<dyn Action>) {
        self.actions
            .entry(module.to_owned())
            .or_default()
            .insert(action.to_owned(), implementation);
    }

    /// Registers one implementation for every action of `module` (an
    /// external program receives the action's name with its parameters).
    /// A `module.action` registered with [`ActionRegistry::register`] wins.
    pub fn register_module(&mut self, module: &str, implementation: Arc<dyn Action>) {
        self.modules.insert(module.to_owned(), implementation);
    }

    /// The action for `module.action`.
    pub fn get(&self, module: &str, action: &str) -> Option<Arc<dyn Action>> {
        self.actions
            .get(module)
            .and_then(|m| m.get(action))
            .or_else(|| self.modules.get(module))
            .cloned()
    }

    /// Whether `module.action` is registered.
    pub fn contains(&self, module: &str, action: &str) -> bool {
        self.actions
            .get(module)
            .is_some_and(|m| m.contains_key(action))
            || self.modules.contains_key(module)
    }

    /// What a definition may name, as data: every registered `module.action`
    /// with its declared parameters, and each module served whole.
    pub fn catalog(&self) -> orch_model::ActionCatalog {
        let mut c = orch_model::ActionCatalog::new();
        for (m, acts) in &self.actions {
            for (a, imp) in acts {
                c.add_action(m, a, imp.spec());
            }
        }
        for m in self.modules.keys() {
            c.add_module(m);
        }
        c
    }

    /// Every registered `module.action` (and `module.*` for whole modules), sorted.
    pub fn names(&self) -> impl Iterator<Item = String> + '_ {
        let mut all: Vec<String> = self
            .actions
            .iter()
            .flat_map(|(m, acts)| acts.keys().map(move |a| format!("{m}.{a}")))
            .collect();
        all.extend(self.modules.keys().map(|m| format!("{m}.*")));
        all.sort();
        all.into_iter()
    }
}
