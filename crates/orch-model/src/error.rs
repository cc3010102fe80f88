//! `OrchestrationError`, its stable error codes, and the seed's error response shape.

use crate::diagnostic::{DiagnosticKind, Diagnostics};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::fmt;

/// The result type of orch's libraries.
pub type Result<T, E = OrchestrationError> = std::result::Result<T, E>;

/// Stable machine-readable error codes (the seed's `error_code`). The text of a
/// code never changes once released; new codes may be added.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[non_exhaustive]
pub enum ErrorCode {
    /// No workflow with that name.
    WorkflowNotFound,
    /// No module or action with that name.
    ModuleNotFound,
    /// Resources could not be allocated (in time).
    ResourceUnavailable,
    /// A project with that name or at that path already exists.
    ProjectExists,
    /// The operation is not allowed (a path escaping its directory, file permissions).
    PermissionDenied,
    /// A timeout passed.
    TimeoutExceeded,
    /// A dependency failed, so the work could not run.
    DependencyFailed,
    /// Parameters are missing or malformed.
    InvalidParameters,
    /// The dependencies form a cycle.
    CycleDetected,
    /// A definition failed validation.
    ValidationFailed,
    /// A limit was exceeded.
    LimitExceeded,
    /// Something else was not found (a run, a task, a session, a project).
    NotFound,
    /// Something already exists.
    AlreadyExists,
    /// A workflow run failed.
    WorkflowFailed,
    /// A task failed.
    TaskFailed,
    /// A project operation failed.
    ProjectError,
    /// The store failed.
    StoreError,
    /// The operation does not fit the current state.
    InvalidState,
    /// The work was cancelled.
    Cancelled,
    /// The operation is not supported (yet, or by this backend).
    NotSupported,
    /// An I/O operation failed.
    IoError,
}

impl ErrorCode {
    /// The code's text, e.g. `WORKFLOW_NOT_FOUND`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::WorkflowNotFound => "WORKFLOW_NOT_FOUND",
            Self::ModuleNotFound => "MODULE_NOT_FOUND",
            Self::ResourceUnavailable => "RESOURCE_UNAVAILABLE",
            Self::ProjectExists => "PROJECT_EXISTS",
            Self::PermissionDenied => "PERMISSION_DENIED",
            Self::TimeoutExceeded => "TIMEOUT_EXCEEDED",
            Self::DependencyFailed => "DEPENDENCY_FAILED",
            Self::InvalidParameters => "INVALID_PARAMETERS",
            Self::CycleDetected => "CYCLE_DETECTED",
            Self::ValidationFailed => "VALIDATION_FAILED",
            Self::LimitExceeded => "LIMIT_EXCEEDED",
            Self::NotFound => "NOT_FOUND",
            Self::AlreadyExists => "ALREADY_EXISTS",
            Self::WorkflowFailed => "WORKFLOW_FAILED",
            Self::TaskFailed => "TASK_FAILED",
            Self::ProjectError => "PROJECT_ERROR",
            Self::StoreError => "STORE_ERROR",
            Self::InvalidState => "INVALID_STATE",
            Self::Cancelled => "CANCELLED",
            Self::NotSupported => "NOT_SUPPORTED",
            Self::IoError => "IO_ERROR",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What kind of thing was not found or already exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum EntityKind {
    /// A workflow.
    Workflow,
    /// A module or action.
    Module,
    /// A task.
    Task,
    /// A run.
    Run,
    /// A session.
    Session,
    /// A project.
    Project,
    /// A template.
    Template,
    /// A resource.
    Resource,
    /// An allocation.
    Allocation,
    /// A file.
    File,
}

impl EntityKind {
    /// The lowercase name, e.g. `workflow`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Workflow => "workflow",
            Self::Module => "module",
            Self::Task => "task",
            Self::Run => "run",
            Self::Session => "session",
            Self::Project => "project",
            Self::Template => "template",
            Self::Resource => "resource",
            Self::Allocation => "allocation",
            Self::File => "file",
        }
    }
}

impl fmt::Display for EntityKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error of orch's libraries, by what the caller can do about it.
///
/// A step that ran and failed is *not* an error: it is a `TaskResult` with
/// `success: false`. `Err` is for the engine's own failures and for bad input.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum OrchestrationError {
    /// A definition or request failed validation; every problem is listed.
    #[error("{0}")]
    Validation(Diagnostics),
    /// A workflow could not be executed.
    #[error("workflow execution failed: {message}")]
    WorkflowExecution {
        /// What went wrong.
        message: String,
    },
    /// A task could not be executed (the engine's failure, not the task's).
    #[error("task execution failed: {message}")]
    TaskExecution {
        /// What went wrong.
        message: String,
    },
    /// Resources could not be allocated.
    #[error("resource allocation failed: {message}")]
    ResourceAllocation {
        /// What went wrong.
        message: String,
    },
    /// A project operation failed.
    #[error("project operation failed: {message}")]
    ProjectManagement {
        /// What went wrong.
        message: String,
    },
    /// Something does not exist.
    #[error("{kind} `{name}` not found{}", hint_suffix(.hint))]
    NotFound {
        /// What kind of thing.
        kind: EntityKind,
        /// Its name or id.
        name: String,
        /// How to find the right name, if known.
        hint: Option<String>,
    },
    /// Something exists already.
    #[error("{kind} `{name}` already exists{}", hint_suffix(.hint))]
    AlreadyExists {
        /// What kind of thing.
        kind: EntityKind,
        /// Its name or path.
        name: String,
        /// What to do instead, if known.
        hint: Option<String>,
    },
    /// Parameters are missing or malformed.
    #[error("invalid parameters: {message}")]
    InvalidParameters {
        /// What is wrong and how to fix it.
        message: String,
    },
    /// The operation is not allowed.
    #[error("permission denied: {message}")]
    PermissionDenied {
        /// What was refused and why.
        message: String,
    },
    /// A timeout passed.
    #[error("timed out: {message}")]
    Timeout {
        /// What timed out.
        message: String,
    },
    /// The work was cancelled.
    #[error("cancelled: {message}")]
    Cancelled {
        /// What was cancelled.
        message: String,
    },
    /// The operation does not fit the current state.
    #[error("invalid state: {message}")]
    InvalidState {
        /// What state forbids it.
        message: String,
    },
    /// A limit was exceeded.
    #[error("limit exceeded: {message}")]
    LimitExceeded {
        /// Which limit and how to raise it.
        message: String,
    },
    /// The store failed.
    #[error("store error: {message}")]
    Store {
        /// What failed.
        message: String,
        /// Whether trying again may succeed.
        retryable: bool,
    },
    /// An I/O operation failed.
    #[error("{message}")]
    Io {
        /// What failed, with the path.
        message: String,
    },
    /// Not supported (yet, or by this backend).
    #[error("not supported: {message}")]
    Unsupported {
        /// What is not supported.
        message: String,
    },
}

fn hint_suffix(hint: &Option<String>) -> String {
    match hint {
        Some(h) => format!("; {h}"),
        None => String::new(),
    }
}

/// The seed's error response: `{success: false, error, error_type, error_code, details, suggestions}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorResponse {
    /// Always `false`.
    pub success: bool,
    /// The error message.
    pub error: String,
    /// The error's category, e.g. `ValidationError`.
    pub error_type: String,
    /// The stable code, e.g. `CYCLE_DETECTED`.
    pub error_code: ErrorCode,
    /// Additional details (for validation errors: every problem).
    pub details: Value,
    /// Suggested remediation steps.
    pub suggestions: Vec<String>,
}

impl OrchestrationError {
    /// An `InvalidParameters` error.
    pub fn invalid_parameters(message: impl Into<String>) -> Self {
        Self::InvalidParameters {
            message: message.into(),
        }
    }

    /// A `NotFound` error without a hint.
    pub fn not_found(kind: EntityKind, name: impl Into<String>) -> Self {
        Self::NotFound {
            kind,
            name: name.into(),
            hint: None,
        }
    }

    /// The stable error code.
    pub fn error_code(&self) -> ErrorCode {
        match self {
            Self::Validation(d) => {
                if d.has(DiagnosticKind::Cycle) || d.has(DiagnosticKind::SelfDependency) {
                    ErrorCode::CycleDetected
                } else if d.has(DiagnosticKind::UnknownModule) {
                    ErrorCode::ModuleNotFound
                } else if !d.is_empty()
                    && d.problems.iter().all(|p| p.kind == DiagnosticKind::Limit)
                {
                    ErrorCode::LimitExceeded
                } else {
                    ErrorCode::ValidationFailed
                }
            }
            Self::WorkflowExecution { .. } => ErrorCode::WorkflowFailed,
            Self::TaskExecution { .. } => ErrorCode::TaskFailed,
            Self::ResourceAllocation { .. } => ErrorCode::ResourceUnavailable,
            Self::ProjectManagement { .. } => ErrorCode::ProjectError,
            Self::NotFound {
                kind: EntityKind::Workflow,
                ..
            } => ErrorCode::WorkflowNotFound,
            Self::NotFound {
                kind: EntityKind::Module,
                ..
            } => ErrorCode::ModuleNotFound,
            Self::NotFound { .. } => ErrorCode::NotFound,
            Self::AlreadyExists {
                kind: EntityKind::Project,
                ..
            } => ErrorCode::ProjectExists,
            Self::AlreadyExists { .. } => ErrorCode::AlreadyExists,
            Self::InvalidParameters { .. } => ErrorCode::InvalidParameters,
            Self::PermissionDenied { .. } => ErrorCode::PermissionDenied,
            Self::Timeout { .. } => ErrorCode::TimeoutExceeded,
            Self::Cancelled { .. } => ErrorCode::Cancelled,
            Self::InvalidState { .. } => ErrorCode::InvalidState,
            Self::LimitExceeded { .. } => ErrorCode::LimitExceeded,
            Self::Store { .. } => ErrorCode::StoreError,
            Self::Io { .. } => ErrorCode::IoError,
            Self::Unsupported { .. } => ErrorCode::NotSupported,
        }
    }

    /// The error's category, as the seed's exception class names it.
    pub fn error_type(&self) -> &'static str {
        match self {
            Self::Validation(_) => "ValidationError",
            Self::WorkflowExecution { .. } => "WorkflowExecutionError",
            Self::TaskExecution { .. } => "TaskExecutionError",
            Self::ResourceAllocation { .. } => "ResourceAllocationError",
            Self::ProjectManagement { .. } => "ProjectManagementError",
            Self::NotFound { .. } => "NotFoundError",
            Self::AlreadyExists { .. } => "AlreadyExistsError",
            Self::InvalidParameters { .. } => "InvalidParametersError",
            Self::PermissionDenied { .. } => "PermissionDeniedError",
            Self::Timeout { .. } => "TimeoutError",
            Self::Cancelled { .. } => "CancelledError",
            Self::InvalidState { .. } => "InvalidStateError",
            Self::LimitExceeded { .. } => "LimitExceededError",
            Self::Store { .. } => "StoreError",
            Self::Io { .. } => "IoError",
            Self::Unsupported { .. } => "NotSupportedError",
        }
    }

    /// Whether trying the same operation again may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::Store {
                retryable: true,
                ..
            } | Self::Timeout { .. }
                | Self::ResourceAllocation { .. }
                | Self::Io { .. }
        )
    }

    /// Additional details for the error response.
    pub fn details(&self) -> Value {
        match self {
            Self::Validation(d) => json!({
                "source": d.source,
                "problems": d.problems,
            }),
            Self::NotFound { kind, name, .. } | Self::AlreadyExists { kind, name, .. } => {
                json!({ "kind": kind, "name": name })
            }
            Self::Store { retryable, .. } => json!({ "retryable": retryable }),
            _ => json!({}),
        }
    }

    /// Suggested remediation steps.
    pub fn suggestions(&self) -> Vec<String> {
        let s: &[&str] = match self.error_code() {
            ErrorCode::CycleDetected => &["Remove one dependency of the cycle named in the error."],
            ErrorCode::ModuleNotFound => &[
                "Check the module and action names: docs/actions.md lists the built-in actions; a module of your own is added with `--module NAME=PROGRAM`.",
            ],
            ErrorCode::ValidationFailed => {
                &["Fix each problem listed; `orch validate FILE` shows them with line and column."]
            }
            ErrorCode::LimitExceeded => &[
                "Reduce the input, or raise the limit with `--limit KEY=VALUE` if the input is legitimate.",
            ],
            ErrorCode::WorkflowNotFound => &[
                "Check the name; `orch run` accepts a file path or the name of a workflow in workflows_dir.",
            ],
            ErrorCode::ResourceUnavailable => &[
                "Request less, wait for running work to finish, or raise the capacity in the resources file.",
            ],
            ErrorCode::ProjectExists => {
                &["Choose another name or path, or delete the existing project first."]
            }
            ErrorCode::PermissionDenied => {
                &["Keep paths inside the project or working directory and check file permissions."]
            }
            ErrorCode::TimeoutExceeded => {
                &["Raise the timeout, or find out why the work takes longer than expected."]
            }
            // The message says which parameter is wrong and why: a
            // suggestion that could only say "check the parameters" is left out.
            ErrorCode::StoreError => {
                &["Check the store URL and that the database is reachable and writable."]
            }
            _ => &[],
        };
        if let Self::NotFound { hint: Some(h), .. } | Self::AlreadyExists { hint: Some(h), .. } =
            self
        {
            let mut v = vec![h.clone()];
            v.extend(s.iter().map(|x| (*x).to_owned()));
            return v;
        }
        s.iter().map(|x| (*x).to_owned()).collect()
    }

    /// The seed's error response for this error.
    pub fn to_response(&self) -> ErrorResponse {
        ErrorResponse {
            success: false,
            error: self.to_string(),
            error_type: self.error_type().to_owned(),
            error_code: self.error_code(),
            details: self.details(),
            suggestions: self.suggestions(),
        }
    }
}

impl From<Diagnostics> for OrchestrationError {
    fn from(d: Diagnostics) -> Self {
        Self::Validation(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::Pos;

    #[test]
    fn response_has_the_seed_shape_and_stable_codes() {
        let mut d = Diagnostics::new(Some("wf.yaml".into()));
        d.push(
            DiagnosticKind::Cycle,
            "steps",
            Pos::new(3, 5),
            "cycle: a -> b -> c -> a",
        );
        let e = OrchestrationError::from(d);
        let r = serde_json::to_value(e.to_response()).expect("ser");
        assert_eq!(r["success"], false);
        assert_eq!(r["error_code"], "CYCLE_DETECTED");
        assert_eq!(r["error_type"], "ValidationError");
        assert_eq!(r["details"]["problems"][0]["path"], "steps");
        assert!(r["suggestions"].as_array().is_some_and(|a| !a.is_empty()));
        assert!(
            r["error"]
                .as_str()
                .is_some_and(|s| s.contains("wf.yaml:3:5: steps: cycle"))
        );

        let nf = OrchestrationError::not_found(EntityKind::Workflow, "ai-analysis");
        assert_eq!(nf.error_code().as_str(), "WORKFLOW_NOT_FOUND");
        assert_eq!(nf.to_string(), "workflow `ai-analysis` not found");
        let ex = OrchestrationError::AlreadyExists {
            kind: EntityKind::Project,
            name: "p".into(),
            hint: None,
        };
        assert_eq!(ex.error_code(), ErrorCode::ProjectExists);
        let json = serde_json::to_string(&ErrorCode::ResourceUnavailable).expect("ser");
        assert_eq!(json, "\"RESOURCE_UNAVAILABLE\"");
    }

    #[test]
    fn a_suggestion_says_something_the_message_does_not() {
        // "Check the parameters against the documentation." told nothing.
        let bad = OrchestrationError::InvalidParameters {
            message: "parameter `x` is not declared; declared: who".into(),
        };
        assert!(bad.suggestions().is_empty(), "{:?}", bad.suggestions());
        assert_eq!(bad.to_response().suggestions, Vec::<String>::new());
        // No suggestion names a command orch does not have.
        let missing = OrchestrationError::not_found(EntityKind::Module, "nosuch");
        assert_eq!(missing.error_code(), ErrorCode::ModuleNotFound);
        assert!(
            missing
                .suggestions()
                .iter()
                .all(|s| !s.contains("orch actions")),
            "{:?}",
            missing.suggestions()
        );
    }
}
