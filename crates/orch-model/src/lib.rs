//! `orch-model`: the data model of orch, with no I/O and no async runtime.
//!
//! It holds everything the other crates agree on: ids ([`TaskId`], [`RunId`],
//! ...), the seed's enums ([`TaskStatus`] with its state machine,
//! [`TaskPriority`], ...), the data types ([`Workflow`], [`WorkflowStep`],
//! [`Task`], [`TaskResult`], [`Project`], [`Resource`]), errors
//! ([`OrchestrationError`] and the seed's [`ErrorResponse`]), the workflow
//! definition format with its validation, the `${...}` reference grammar
//! ([`reference`](mod@reference)), the dependency graph ([`graph`]), the input [`Limits`],
//! and the [`Store`] contract that every backend implements (its conformance
//! suite is `testkit`, behind the feature of that name).
//!
//! Reading a definition returns every problem at once, each with a path and,
//! for text, a line and column:
//!
//! ```
//! use orch_model::{Format, Limits, load_workflow};
//!
//! let yaml = r#"
//! name: report
//! parameters: { path: ./src }
//! steps:
//!   - name: count
//!     module: shell
//!     action: exec
//!     parameters: { program: wc, args: ["-l", "${params.path}"] }
//!   - name: publish
//!     module: core
//!     action: set
//!     parameters: { value: "${count.result.stdout}" }
//! "#;
//! let wf = load_workflow(yaml, Format::Yaml, &Limits::default(), Some("report.yaml")).unwrap();
//! // `publish` uses `count`'s result, so it runs after it.
//! assert_eq!(wf.execution_order(), vec![vec!["count"], vec!["publish"]]);
//!
//! let bad = "name: w\nsteps:\n  - name: a\n    module: core\n    action: noop\n    dependecies: [b]\n";
//! let problems = load_workflow(bad, Format::Yaml, &Limits::default(), Some("w.yaml")).unwrap_err();
//! let first = problems.lines().next().unwrap();
//! assert_eq!(first, "w.yaml:6:5: steps[0].dependecies: unknown field `dependecies` in a step; did you mean `dependencies`?");
//! ```

pub mod actions;
pub mod definition;
pub mod diagnostic;
pub mod duration;
pub mod enums;
pub mod error;
pub mod graph;
mod health;
pub mod ids;
pub mod limits;
pub mod map;
pub mod node;
pub mod project;
pub mod reference;
pub mod resources;
mod saved_run;
pub mod store;
pub mod task;
#[cfg(feature = "testkit")]
pub mod testkit;

pub use actions::{ActionCatalog, ActionSpec, ParamSpec, ParamType};
pub use compact_str::CompactString;
pub use definition::{
    CacheSpec, Concurrency, Conditions, OnConflict, RetryPolicy, SecretDecl, SecretSource,
    SourceMap, StepDefaults, ValidWorkflow, When, Workflow, WorkflowStep,
};
pub use diagnostic::{Diagnostic, DiagnosticKind, Diagnostics};
pub use enums::Phase;
pub use enums::{
    BackoffKind, ConditionOp, ExecutionMode, ProjectStatus, ProjectType, ResourceStatus,
    ResourceType, RunIf, TaskPriority, TaskStatus, WorkflowStatus,
};
pub use error::{EntityKind, ErrorCode, ErrorResponse, OrchestrationError, Result};
pub use health::HealthStatus;
pub use ids::{AllocationId, EventId, ProjectId, RunId, SessionId, TaskId};
pub use limits::Limits;
pub use map::CompactMap;
pub use node::{Format, Pos};
pub use project::{Project, Resource};
pub use resources::ResourceRequest;
pub use saved_run::{RunSettings, SavedRun, cut};
pub use store::{
    Claim, Finished, NewRun, NewTask, Record, RecordKind, Store, StoreCapabilities, TaskOutcome,
};
pub use task::{Task, TaskResult};

/// Parses, decodes and validates a definition in one call.
///
/// `source` names the file in the diagnostics.
///
/// # Errors
/// Every problem found, sorted by position, each formatted by
/// [`Diagnostics::lines`] as `FILE:LINE:COL: PATH: message`.
pub fn load_workflow(
    text: &str,
    format: Format,
    limits: &Limits,
    source: Option<&str>,
) -> std::result::Result<ValidWorkflow, Diagnostics> {
    definition::load(text, format, limits, source)
}

/// Like [`load_workflow`], also checking every step's `module.action` and
/// parameters against `actions` (an unknown module or action, a missing,
/// unknown or mistyped parameter), each at its line and column.
///
/// # Errors
/// Every problem found, sorted by position.
pub fn load_workflow_with(
    text: &str,
    format: Format,
    limits: &Limits,
    source: Option<&str>,
    actions: &ActionCatalog,
) -> std::result::Result<ValidWorkflow, Diagnostics> {
    definition::load_with(text, format, limits, source, Some(actions))
}
