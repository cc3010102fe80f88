//! `Task` and `TaskResult`, the seed's unit of work and its outcome.

use crate::definition::RetryPolicy;
use crate::duration::serde_secs;
use crate::enums::{TaskPriority, TaskStatus};
use crate::ids::TaskId;
use crate::map::CompactMap;
use crate::resources::ResourceRequest;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::time::Duration;

/// One unit of work (seed: `Task`): an action with parameters, dependencies,
/// a priority and a life cycle governed by [`TaskStatus::can_transition_to`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Task {
    /// Unique id.
    pub id: TaskId,
    /// Name; `${NAME.result}` refers to its result.
    pub name: String,
    /// What it does.
    pub description: String,
    /// Module of the action.
    pub module: String,
    /// The action.
    pub action: String,
    /// Parameters; strings may hold `${...}` references.
    pub parameters: Map<String, Value>,
    /// Tasks that must finish first.
    pub dependencies: Vec<TaskId>,
    /// Scheduling priority.
    pub priority: TaskPriority,
    /// What it needs while it runs.
    pub resources: ResourceRequest,
    /// Longest time one attempt may take.
    #[serde(with = "serde_secs::option")]
    pub timeout: Option<Duration>,
    /// Retries after a retryable failure.
    pub max_retries: u32,
    /// Delays between attempts.
    pub retry: RetryPolicy,
    /// Whether the result may come from the cache.
    pub cache: bool,
    /// Current state.
    pub status: TaskStatus,
    /// Attempts started so far (the seed's `retry_count` counts retries; this counts every attempt).
    pub attempts: u32,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When its dependencies were satisfied.
    pub ready_at: Option<DateTime<Utc>>,
    /// When its last attempt started.
    pub started_at: Option<DateTime<Utc>>,
    /// When it reached a terminal state.
    pub completed_at: Option<DateTime<Utc>>,
    /// Its outcome, once finished.
    pub result: Option<TaskResult>,
    /// Free-form tags.
    pub tags: Vec<String>,
    /// Free-form metadata.
    pub metadata: Map<String, Value>,
}

impl Default for Task {
    fn default() -> Self {
        Self {
            id: TaskId::new(),
            name: String::new(),
            description: String::new(),
            module: String::new(),
            action: String::new(),
            parameters: Map::new(),
            dependencies: Vec::new(),
            priority: TaskPriority::Normal,
            resources: ResourceRequest::default(),
            timeout: None,
            max_retries: 0,
            retry: RetryPolicy::default(),
            cache: false,
            status: TaskStatus::Pending,
            attempts: 0,
            created_at: Utc::now(),
            ready_at: None,
            started_at: None,
            completed_at: None,
            result: None,
            tags: Vec::new(),
            metadata: Map::new(),
        }
    }
}

impl Task {
    /// A pending task running `module.action`. As in the seed, an empty name
    /// becomes `module.action`.
    pub fn new(
        name: impl Into<String>,
        module: impl Into<String>,
        action: impl Into<String>,
    ) -> Self {
        let mut t = Self {
            name: name.into(),
            module: module.into(),
            action: action.into(),
            ..Self::default()
        };
        if t.name.is_empty() {
            t.name = format!("{}.{}", t.module, t.action);
        }
        t
    }

    /// Wall time of the last attempt, when it has started and finished.
    pub fn execution_time(&self) -> Option<Duration> {
        let (start, end) = (self.started_at?, self.completed_at?);
        (end - start).to_std().ok()
    }

    /// Whether another attempt is allowed after a failure.
    pub fn can_retry(&self) -> bool {
        self.attempts <= self.max_retries
    }
}

/// The outcome of one task (seed: `TaskResult`). A failed task is a result
/// with `success: false`, not an error.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct TaskResult {
    /// Whether the task succeeded.
    pub success: bool,
    /// The action's output (for `shell.exec`: `{exit_code, stdout, stderr}`).
    pub data: Value,
    /// What went wrong, on failure.
    pub error_message: Option<String>,
    /// The kind of failure, e.g. `TimeoutError`, `ExitCode`, `ValidationError`.
    pub error_type: Option<String>,
    /// Seconds the task took.
    pub execution_time: f64,
    /// Peak memory of the task in MiB, when measured (0 otherwise).
    pub memory_usage: f64,
    /// Whether the result came from the cache instead of running.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub cached: bool,
    /// Additional facts (attempts, exit signal, ...).
    pub metadata: CompactMap,
}

impl TaskResult {
    /// A successful result.
    pub fn ok(data: Value) -> Self {
        Self {
            success: true,
            data,
            ..Self::default()
        }
    }

    /// How many attempts failed before this successful one, when a retry
    /// passed after failures (the step is flaky): `metadata.flaky` and
    /// `metadata.failed_attempts`, as the retry layer records them.
    pub fn flaky(&self) -> Option<u32> {
        if !self.success || self.metadata.get("flaky") != Some(&Value::Bool(true)) {
            return None;
        }
        let n = self.metadata.get("failed_attempts").and_then(Value::as_u64);
        Some(n.map_or(1, |n| u32::try_from(n).unwrap_or(u32::MAX)))
    }

    /// A failed result.
    pub fn failed(error_type: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            success: false,
            error_type: Some(error_type.into()),
            error_message: Some(message.into()),
            ..Self::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_shapes() {
        let t = Task::new("", "static_analysis", "analyze_code_quality");
        assert_eq!(t.name, "static_analysis.analyze_code_quality");
        let json = serde_json::to_value(&t).expect("ser");
        assert_eq!(json["status"], "pending");
        assert_eq!(json["priority"], "normal");
        let back: Task = serde_json::from_value(json).expect("de");
        assert_eq!(back, t);

        let r = serde_json::to_value(TaskResult::failed("TimeoutError", "took longer than 5s"))
            .expect("ser");
        for key in [
            "success",
            "data",
            "error_message",
            "error_type",
            "execution_time",
            "memory_usage",
            "metadata",
        ] {
            assert!(r.get(key).is_some(), "missing {key} in {r}");
        }
        assert_eq!(r["success"], false);
        assert!(r.get("cached").is_none());
        assert_eq!(r["metadata"], serde_json::json!({}));

        // Metadata reads and writes as a map, and round-trips.
        let mut ok = TaskResult::ok(Value::Null);
        assert!(ok.metadata.is_empty());
        assert_eq!(ok, TaskResult::ok(Value::Null));
        ok.metadata.insert("attempts".into(), serde_json::json!(2));
        assert_ne!(ok, TaskResult::ok(Value::Null));
        let json = serde_json::to_value(&ok).expect("ser");
        assert_eq!(json["metadata"], serde_json::json!({"attempts": 2}));
        let back: TaskResult = serde_json::from_value(json).expect("de");
        assert_eq!(back, ok);
        assert_eq!(back.metadata.clone().into_map().len(), 1);
        // An empty map given in equals the default.
        assert_eq!(CompactMap::from(Map::new()), CompactMap::default());
    }
}
