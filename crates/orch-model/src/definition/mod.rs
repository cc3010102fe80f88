//! Workflow definitions: the types, reading them from YAML/JSON/TOML, and validation.
//!
//! The format (SPEC §4, `docs/workflow-format.md`) is a superset of the seed's
//! saved-workflow JSON. Reading goes text → [`Node`](crate::node::Node) tree →
//! [`Workflow`] (`decode`, reporting every problem with path, line and column)
//! → [`ValidWorkflow`] (`validate`: names, dependencies, cycles, references,
//! execution levels).

mod cache;
mod concurrency;
mod decode;
mod expand;
mod fanout;
mod hooks;
mod names;
pub mod schedule;
mod schema;
mod secrets;
mod validate;

pub use cache::{CacheSpec, check_cache_glob};
pub use concurrency::{Concurrency, MAX_CONCURRENCY_LIMIT, OnConflict};
pub use decode::{SourceMap, from_value, parse_definition, parse_definition_with_source};
pub use fanout::{FanOut, Items, expand_items, first_item, resolve_outside_items};
pub use names::{NameKind, check_name, display_snippet};
pub use schema::{SCHEMA_ID, workflow_schema};
pub use secrets::{IN_PROCESS_MODULES, SecretDecl, SecretSource, check_secret_name};
pub use validate::{ValidWorkflow, validate, validate_with_sources};

/// Parses, decodes and validates in one pass over the problems: decoding and
/// semantic problems are reported together.
///
/// # Errors
/// Every problem found, sorted by position.
pub fn load(
    text: &str,
    format: crate::node::Format,
    limits: &crate::limits::Limits,
    source: Option<&str>,
) -> Result<ValidWorkflow, crate::diagnostic::Diagnostics> {
    load_with(text, format, limits, source, None)
}

/// Like [`load`], also checking each step's `module.action` and parameters
/// against `actions` when given (see [`ActionCatalog`](crate::actions::ActionCatalog)).
///
/// # Errors
/// Every problem found, sorted by position.
pub fn load_with(
    text: &str,
    format: crate::node::Format,
    limits: &crate::limits::Limits,
    source: Option<&str>,
    actions: Option<&crate::actions::ActionCatalog>,
) -> Result<ValidWorkflow, crate::diagnostic::Diagnostics> {
    match decode::decode_partial(text, format, limits, source, actions) {
        (Some((wf, map)), diags) => validate::validate_into(wf, &map, limits, diags),
        (None, mut diags) => {
            diags.sort();
            Err(diags)
        }
    }
}

use crate::duration::serde_secs;
use crate::enums::{BackoffKind, ConditionOp, Phase, RunIf, TaskPriority, WorkflowStatus};
use crate::resources::ResourceRequest;
use compact_str::CompactString;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::time::Duration;

/// A workflow: a named DAG of steps (seed: `Workflow`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Workflow {
    /// Unique name (letters, digits, `_`, `-`, `.`; see `docs/workflow-format.md`).
    pub name: String,
    /// What the workflow does.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// The definition's version, free text. Default `"1.0"`.
    pub version: String,
    /// Declared inputs with their defaults; `${params.NAME}` may only name these.
    /// A `null` default marks a parameter that must be given at run time.
    #[serde(skip_serializing_if = "Map::is_empty")]
    pub parameters: Map<String, Value>,
    /// Environment variables that `${env.NAME}` may read (an allow-list).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    /// At most how many runs of one key run at once, and what a run does
    /// when they are all taken (boxed: most workflows have none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<Box<Concurrency>>,
    /// Secrets steps may receive as environment variables (names and where
    /// their values are read; never the values).
    #[serde(
        skip_serializing_if = "Vec::is_empty",
        serialize_with = "secrets::serialize_decls"
    )]
    pub secrets: Vec<SecretDecl>,
    /// Values every step gets unless it sets its own (already merged into
    /// `steps`). Not in a saved run's definition: its steps hold them, and
    /// applying them again when it is read would undo a step's own value
    /// that the short form leaves out (`max_retries: 0` under a default of 2).
    #[serde(skip_serializing_if = "saved::no_defaults")]
    pub defaults: StepDefaults,
    /// The steps, in definition order: those of `steps:`, then those of
    /// `on_failure:` and `finally:` (each step says which in `phase`), then
    /// the items of fan-out steps (generated, never written: see [`FanOut`]).
    #[serde(serialize_with = "fanout::written_steps")]
    pub steps: Vec<WorkflowStep>,
    /// How long `run_if: always` (and other rules that run after a failure)
    /// and `finally:` steps may still run once the run was cancelled or
    /// timed out; `None`: the run's own setting, else 30 s.
    #[serde(skip_serializing_if = "Option::is_none", with = "serde_secs::option")]
    pub cancel_grace: Option<Duration>,
    /// The workflow's status (seed: `WorkflowStatus`), `draft` by default.
    pub status: WorkflowStatus,
    /// Free-form metadata.
    #[serde(skip_serializing_if = "Map::is_empty")]
    pub metadata: Map<String, Value>,
    /// When the workflow starts by itself (`orch serve` and `orch worker` fire it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schedule: Option<schedule::Schedule>,
}

/// Defaults for steps; a step's own value wins.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct StepDefaults {
    /// Default timeout.
    #[serde(skip_serializing_if = "Option::is_none", with = "serde_secs::option")]
    pub timeout: Option<Duration>,
    /// Default number of retries.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_retries: Option<u32>,
    /// Default retry policy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryPolicy>,
    /// Default priority.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority: Option<TaskPriority>,
    /// Default for `cache`, written as a step's is (`true`, `false`, or
    /// `{files: [GLOB...], ttl: DURATION}`): `None` when not set,
    /// `Some(None)` for `false`, `Some(Some(options))` for caching on.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "cache::serialize_default_cache"
    )]
    pub cache: Option<Option<Box<CacheSpec>>>,
    /// Default resource request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequest>,
}

impl StepDefaults {
    /// Whether no default is set.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// The short form of a step's JSON: while a run's definition is saved
/// (`SavedRun::write_json`), the fields the seed's shape always shows are
/// left out when they hold their default (a million-step definition is half
/// as long), which reading fills back in. Everywhere else every field of the
/// seed's shape is written.
pub(crate) mod saved {
    use super::{CompactString, Duration};
    use std::cell::Cell;

    thread_local! {
        static SHORT: Cell<bool> = const { Cell::new(false) };
    }

    /// Runs `f` with the short form on (on this thread).
    pub(crate) fn short<R>(f: impl FnOnce() -> R) -> R {
        struct Reset(bool);
        impl Drop for Reset {
            fn drop(&mut self) {
                SHORT.with(|c| c.set(self.0));
            }
        }
        let _reset = Reset(SHORT.with(|c| c.replace(true)));
        f()
    }

    fn on() -> bool {
        SHORT.with(Cell::get)
    }

    pub(crate) fn empty_map(m: &crate::map::CompactMap) -> bool {
        on() && m.is_empty()
    }

    pub(crate) fn empty_list(v: &[CompactString]) -> bool {
        on() && v.is_empty()
    }

    pub(crate) fn no_timeout(t: &Option<Duration>) -> bool {
        on() && t.is_none()
    }

    pub(crate) fn zero(n: &u32) -> bool {
        on() && *n == 0
    }

    thread_local! {
        /// Whether the workflow being written wrote a `defaults: cache:`
        /// (its `defaults` are written before its `steps`).
        static DEFAULT_CACHE: Cell<bool> = const { Cell::new(false) };
    }

    pub(crate) fn no_defaults(d: &super::StepDefaults) -> bool {
        let skip = on() || d.is_empty();
        DEFAULT_CACHE.with(|c| c.set(!skip && d.cache.is_some()));
        skip
    }

    /// A step without caching writes `cache: false` when the defaults
    /// written set a cache: read back without it, the step would take the
    /// default.
    pub(crate) fn no_cache(c: &Option<Box<super::CacheSpec>>) -> bool {
        c.is_none() && !DEFAULT_CACHE.with(Cell::get)
    }
}

/// One step of a workflow (seed: `WorkflowStep`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WorkflowStep {
    /// Unique within the workflow: letters, digits, `_` and `-`. Names,
    /// modules, actions and dependencies are [`CompactString`]s: up to 24
    /// bytes they live inline, so a typical step's strings cost no allocation.
    pub name: CompactString,
    /// The module providing the action (`shell`, `core`, `fs`, ...).
    pub module: CompactString,
    /// The action within the module (`exec`, `noop`, ...).
    pub action: CompactString,
    /// What the step does.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// The action's parameters, a JSON object; strings may hold `${...}`
    /// references. A [`CompactMap`](crate::CompactMap): reads and writes as a
    /// `Map`, one pointer while empty.
    #[serde(skip_serializing_if = "saved::empty_map")]
    pub parameters: crate::map::CompactMap,
    /// Names of the steps this one waits for (references to a step's result add
    /// implicit dependencies on top of these).
    #[serde(skip_serializing_if = "saved::empty_list")]
    pub dependencies: Vec<CompactString>,
    /// When the step runs.
    #[serde(skip_serializing_if = "Conditions::is_default")]
    pub conditions: Conditions,
    /// The main graph (`steps:`), or `on_failure:` or `finally:`.
    #[serde(skip_serializing_if = "Phase::is_main")]
    pub phase: Phase,
    /// Longest time one attempt may take; `None` means no limit.
    #[serde(with = "serde_secs::option", skip_serializing_if = "saved::no_timeout")]
    pub timeout: Option<Duration>,
    /// The seed's persisted retry counter; accepted for compatibility, always
    /// 0 in definitions (attempts are counted per run).
    #[serde(skip_serializing_if = "saved::zero")]
    pub retry_count: u32,
    /// How many times a retryable failure is retried (0 = run once).
    #[serde(skip_serializing_if = "saved::zero")]
    pub max_retries: u32,
    /// How long to wait between attempts.
    #[serde(skip_serializing_if = "RetryPolicy::is_default")]
    pub retry: RetryPolicy,
    /// Scheduling priority among ready steps.
    #[serde(skip_serializing_if = "is_normal")]
    pub priority: TaskPriority,
    /// What the step needs while it runs (in `resource_aware` mode).
    #[serde(skip_serializing_if = "ResourceRequest::is_empty")]
    pub resources: ResourceRequest,
    /// Whether (`Some`) and how the step's result may be served from the
    /// cache (boxed: most steps have no cache options).
    #[serde(
        skip_serializing_if = "saved::no_cache",
        serialize_with = "cache::serialize_cache"
    )]
    pub cache: Option<Box<CacheSpec>>,
    /// Secrets (declared in the workflow's `secrets:`) the step's process
    /// gets as environment variables of the same names.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<CompactString>,
    /// `for_each:` or `matrix:` (run once per item), or which item a
    /// generated step is (boxed: most steps have none).
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub fan_out: Option<Box<FanOut>>,
}

fn is_normal(p: &TaskPriority) -> bool {
    *p == TaskPriority::Normal
}

/// How the delay between attempts grows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryPolicy {
    /// Constant, linear or exponential (the default).
    pub backoff: BackoffKind,
    /// Delay before the first retry. Default 1 s.
    #[serde(with = "serde_secs")]
    pub initial_delay: Duration,
    /// The cap on any delay. Default 60 s.
    #[serde(with = "serde_secs")]
    pub max_delay: Duration,
    /// Growth factor of `exponential` backoff. Default 2.
    pub multiplier: f64,
    /// Whether delays are randomized ("full jitter" between half and all of the delay).
    pub jitter: bool,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            backoff: BackoffKind::Exponential,
            initial_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(60),
            multiplier: 2.0,
            jitter: false,
        }
    }
}

impl RetryPolicy {
    /// Whether this is the default policy.
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }

    /// The delay before retry number `retry` (1 for the first retry), before
    /// jitter, capped at `max_delay`. Saturating: never overflows.
    pub fn delay(&self, retry: u32) -> Duration {
        let n = retry.max(1);
        let base = self.initial_delay.as_secs_f64();
        let secs = match self.backoff {
            BackoffKind::Constant => base,
            BackoffKind::Linear => base * f64::from(n),
            BackoffKind::Exponential => {
                base * self
                    .multiplier
                    .powi(i32::try_from(n - 1).unwrap_or(i32::MAX))
            }
        };
        let capped = secs.min(self.max_delay.as_secs_f64());
        Duration::try_from_secs_f64(capped).unwrap_or(self.max_delay)
    }
}

/// When a step runs: a trigger rule and an optional test on a value.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Conditions {
    /// Which outcomes of the dependencies let the step run.
    pub run_if: RunIf,
    /// An optional comparison; when false the step is `skipped` (boxed: most
    /// steps have none, and a step stays small).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub when: Option<Box<When>>,
}

impl Conditions {
    /// Whether these are the default conditions (`run_if: success`, no `when`).
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

/// A comparison `ref op value`, e.g. `${analyze.result.files} gt 0`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct When {
    /// Exactly one `${...}` reference.
    #[serde(rename = "ref")]
    pub reference: String,
    /// The comparison.
    pub op: ConditionOp,
    /// The value compared with (not needed by `exists` and `truthy`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
}

impl Workflow {
    /// A new, empty workflow (seed: `create_workflow(name, description)`); add
    /// steps with [`Workflow::step`] or [`Workflow::add_step`].
    pub fn new(name: impl Into<String>, description: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            description: description.into(),
            version: "1.0".into(),
            parameters: Map::new(),
            env: Vec::new(),
            secrets: Vec::new(),
            concurrency: None,
            defaults: StepDefaults::default(),
            steps: Vec::new(),
            cancel_grace: None,
            status: WorkflowStatus::Draft,
            metadata: Map::new(),
            schedule: None,
        }
    }

    /// Adds a step, builder style.
    #[must_use]
    pub fn step(mut self, step: WorkflowStep) -> Self {
        self.steps.push(step);
        self
    }

    /// Adds a step.
    pub fn add_step(&mut self, step: WorkflowStep) -> &mut Self {
        self.steps.push(step);
        self
    }

    /// Declares a parameter with its default, builder style.
    #[must_use]
    pub fn param(mut self, name: impl Into<String>, default: Value) -> Self {
        self.parameters.insert(name.into(), default);
        self
    }

    /// The step with this name.
    pub fn get_step(&self, name: &str) -> Option<&WorkflowStep> {
        self.steps.iter().find(|s| s.name == name)
    }

    /// The definition as pretty JSON (the canonical saved form; it loads back
    /// unchanged).
    pub fn to_json_pretty(&self) -> String {
        // Serializing these types cannot fail: every map key is a string and
        // every float is finite after validation; fall back to the compact form.
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    }
}

impl WorkflowStep {
    /// A step running `module.action` with default settings.
    pub fn new(
        name: impl Into<CompactString>,
        module: impl Into<CompactString>,
        action: impl Into<CompactString>,
    ) -> Self {
        Self {
            name: name.into(),
            module: module.into(),
            action: action.into(),
            description: String::new(),
            parameters: crate::map::CompactMap::default(),
            dependencies: Vec::new(),
            conditions: Conditions::default(),
            phase: Phase::Main,
            timeout: None,
            retry_count: 0,
            max_retries: 0,
            retry: RetryPolicy::default(),
            priority: TaskPriority::Normal,
            resources: ResourceRequest::default(),
            cache: None,
            secrets: Vec::new(),
            fan_out: None,
        }
    }

    /// Sets one parameter, builder style.
    #[must_use]
    pub fn param(mut self, key: impl Into<String>, value: Value) -> Self {
        self.parameters.insert(key.into(), value);
        self
    }

    /// Adds a dependency, builder style.
    #[must_use]
    pub fn after(mut self, dependency: impl Into<CompactString>) -> Self {
        self.dependencies.push(dependency.into());
        self
    }

    /// Sets the timeout, builder style.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Sets the priority, builder style.
    #[must_use]
    pub fn priority(mut self, priority: TaskPriority) -> Self {
        self.priority = priority;
        self
    }

    /// Sets the number of retries, builder style.
    #[must_use]
    pub fn retries(mut self, max_retries: u32) -> Self {
        self.max_retries = max_retries;
        self
    }

    /// Sets the resource request, builder style.
    #[must_use]
    pub fn resources(mut self, resources: ResourceRequest) -> Self {
        self.resources = resources;
        self
    }

    /// Sets the trigger rule, builder style.
    #[must_use]
    pub fn run_if(mut self, run_if: RunIf) -> Self {
        self.conditions.run_if = run_if;
        self
    }

    /// Makes this an `on_failure:` or `finally:` step, builder style; a step
    /// still at the default trigger rule gets its phase's default
    /// (`one_failed`, `all_done`).
    #[must_use]
    pub fn phase(mut self, phase: Phase) -> Self {
        self.phase = phase;
        if self.conditions.run_if == RunIf::Success {
            self.conditions.run_if = phase.default_run_if();
        }
        self
    }

    /// Enables result caching, builder style.
    #[must_use]
    pub fn cached(mut self) -> Self {
        self.cache = Some(Box::default());
        self
    }

    /// Gives the step's process a declared secret, builder style.
    #[must_use]
    pub fn secret(mut self, name: impl Into<CompactString>) -> Self {
        self.secrets.push(name.into());
        self
    }

    /// `module.action`, the key of the action registry.
    pub fn action_key(&self) -> String {
        format!("{}.{}", self.module, self.action)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delays_follow_the_policy_and_cap() {
        let mut p = RetryPolicy {
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
            ..Default::default()
        };
        assert_eq!(p.delay(1), Duration::from_millis(100));
        assert_eq!(p.delay(2), Duration::from_millis(200));
        assert_eq!(p.delay(4), Duration::from_millis(800));
        assert_eq!(p.delay(5), Duration::from_secs(1));
        assert_eq!(p.delay(u32::MAX), Duration::from_secs(1));
        p.backoff = BackoffKind::Linear;
        assert_eq!(p.delay(3), Duration::from_millis(300));
        p.backoff = BackoffKind::Constant;
        assert_eq!(p.delay(7), Duration::from_millis(100));
    }
}
