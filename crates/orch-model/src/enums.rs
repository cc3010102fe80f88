//! The status, priority and type enumerations of the seed API, and the task state machine.
//!
//! Every enum serializes in snake_case (`"in_use"`, `"external_api"`), parses
//! from the same text, and lists its variants in `ALL` so that error messages
//! can say which values are accepted.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

macro_rules! text_enum {
    ($(#[$doc:meta])* $name:ident $([$($extra:ident),*])? { $($(#[$vdoc:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize $($(, $extra)*)?)]
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            $($(#[$vdoc])* $variant),+
        }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The snake_case text of the variant, as serialized.
            pub fn as_str(&self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }

            /// The accepted texts, comma-separated, for error messages.
            pub fn expected() -> String {
                Self::ALL.iter().map(|v| v.as_str()).collect::<Vec<_>>().join(", ")
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = String;

            fn from_str(s: &str) -> Result<Self, String> {
                let lower = s.trim().to_ascii_lowercase();
                Self::ALL
                    .iter()
                    .copied()
                    .find(|v| v.as_str() == lower)
                    .ok_or_else(|| format!("`{s}` is not a valid {}; expected one of: {}", stringify!($name), Self::expected()))
            }
        }
    };
}

text_enum!(
    /// How well a component works, ordered from best to worst, so that the
    /// status of several components is the greatest (`HealthStatus::worst`,
    /// in `health.rs`). Serialized as the seed's `health_check()` reports it.
    HealthStatus [Default] {
        /// Everything works.
        #[default]
        Healthy => "healthy",
        /// Something needs attention, but work runs.
        Degraded => "degraded",
        /// Something does not work.
        Unhealthy => "unhealthy",
    }
);

text_enum!(
    /// The life cycle of a workflow (seed: `WorkflowStatus`).
    WorkflowStatus [Default] {
        /// Being designed.
        #[default]
        Draft => "draft",
        /// Ready for execution.
        Ready => "ready",
        /// Executing.
        Running => "running",
        /// Execution paused.
        Paused => "paused",
        /// Finished successfully.
        Completed => "completed",
        /// Finished with a failure.
        Failed => "failed",
        /// Cancelled.
        Cancelled => "cancelled",
    }
);

text_enum!(
    /// The state of one task (seed: `TaskStatus`); transitions are governed by
    /// [`TaskStatus::can_transition_to`].
    TaskStatus [Default] {
        /// Waiting for its dependencies.
        #[default]
        Pending => "pending",
        /// Dependencies satisfied; waiting for a slot (or for a retry's backoff).
        Ready => "ready",
        /// Executing.
        Running => "running",
        /// Finished successfully (possibly from the cache).
        Completed => "completed",
        /// Finished with a failure (including a timeout), retries exhausted.
        Failed => "failed",
        /// Cancelled before or while running.
        Cancelled => "cancelled",
        /// Not run: its condition was false or an upstream step did not succeed.
        Skipped => "skipped",
    }
);

/// The transition table: `TRANSITIONS[from][to]`, in the order of `TaskStatus::ALL`.
///
/// - pending → ready (dependencies done), skipped (upstream did not succeed), cancelled;
/// - ready → running, completed (cache hit), skipped (condition false), failed
///   (parameters could not be resolved), cancelled;
/// - running → completed, failed, cancelled, ready (a retry waits for its backoff,
///   or a run resumed after a crash runs the interrupted task again);
/// - completed, failed, cancelled and skipped are terminal.
const TRANSITIONS: [[bool; 7]; 7] = {
    const F: bool = false;
    const T: bool = true;
    [
        // to: pending ready running completed failed cancelled skipped
        [F, T, F, F, F, T, T], // from pending
        [F, F, T, T, T, T, T], // from ready
        [F, T, F, T, T, T, F], // from running
        [F, F, F, F, F, F, F], // from completed
        [F, F, F, F, F, F, F], // from failed
        [F, F, F, F, F, F, F], // from cancelled
        [F, F, F, F, F, F, F], // from skipped
    ]
};

impl TaskStatus {
    #[inline]
    fn index(self) -> usize {
        match self {
            TaskStatus::Pending => 0,
            TaskStatus::Ready => 1,
            TaskStatus::Running => 2,
            TaskStatus::Completed => 3,
            TaskStatus::Failed => 4,
            TaskStatus::Cancelled => 5,
            TaskStatus::Skipped => 6,
        }
    }

    /// Whether a task in state `self` may move to `next`. This table is the
    /// only definition of the task life cycle; every crate uses it.
    #[inline]
    pub fn can_transition_to(self, next: TaskStatus) -> bool {
        TRANSITIONS[self.index()][next.index()]
    }

    /// Whether the state is final (nothing can leave it).
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            TaskStatus::Completed
                | TaskStatus::Failed
                | TaskStatus::Cancelled
                | TaskStatus::Skipped
        )
    }

    /// Moves `self` to `next` if the table allows it.
    ///
    /// # Errors
    /// Returns an [`OrchestrationError`](crate::OrchestrationError) of kind
    /// `InvalidState` naming both states when the transition is forbidden;
    /// `self` is unchanged then.
    pub fn transition(&mut self, next: TaskStatus) -> Result<(), crate::OrchestrationError> {
        if self.can_transition_to(next) {
            *self = next;
            Ok(())
        } else {
            Err(crate::OrchestrationError::InvalidState {
                message: format!("a task cannot go from `{self}` to `{next}`"),
            })
        }
    }
}

/// Task priority (seed: `TaskPriority`, `LOW=1 .. CRITICAL=4`). Ordered, so
/// `Critical > High > Normal > Low`. Serializes as its name; deserializes from
/// its name or from the seed's integer 1–4.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskPriority {
    /// Low priority (1).
    Low = 1,
    /// Normal priority (2), the default.
    #[default]
    Normal = 2,
    /// High priority (3).
    High = 3,
    /// Critical priority (4).
    Critical = 4,
}

impl TaskPriority {
    /// Every priority, lowest first.
    pub const ALL: &'static [TaskPriority] = &[Self::Low, Self::Normal, Self::High, Self::Critical];

    /// The snake_case name.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Low => "low",
            Self::Normal => "normal",
            Self::High => "high",
            Self::Critical => "critical",
        }
    }

    /// The seed's integer value, 1 (low) to 4 (critical).
    pub fn value(&self) -> u8 {
        *self as u8
    }

    /// The priority with the seed's integer value.
    pub fn from_value(v: i64) -> Option<Self> {
        match v {
            1 => Some(Self::Low),
            2 => Some(Self::Normal),
            3 => Some(Self::High),
            4 => Some(Self::Critical),
            _ => None,
        }
    }
}

impl fmt::Display for TaskPriority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TaskPriority {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim().to_ascii_lowercase();
        Self::ALL
            .iter()
            .copied()
            .find(|p| p.as_str() == t)
            .or_else(|| t.parse::<i64>().ok().and_then(Self::from_value))
            .ok_or_else(|| {
                format!("`{s}` is not a valid priority; expected low, normal, high or critical (or 1 to 4)")
            })
    }
}

impl<'de> Deserialize<'de> for TaskPriority {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Repr {
            Int(i64),
            Text(String),
        }
        match Repr::deserialize(d)? {
            Repr::Int(v) => Self::from_value(v).ok_or_else(|| {
                serde::de::Error::custom(format!("priority {v} is out of range 1 to 4"))
            }),
            Repr::Text(t) => t.parse().map_err(serde::de::Error::custom),
        }
    }
}

text_enum!(
    /// The life cycle of a project (seed: `ProjectStatus`).
    ProjectStatus [Default] {
        /// In planning.
        #[default]
        Planning => "planning",
        /// Actively worked on.
        Active => "active",
        /// Paused.
        Paused => "paused",
        /// Completed.
        Completed => "completed",
        /// Archived.
        Archived => "archived",
        /// Failed.
        Failed => "failed",
    }
);

text_enum!(
    /// The kind of a project (seed: `ProjectType`).
    ProjectType [Default] {
        /// AI-powered code analysis.
        AiAnalysis => "ai_analysis",
        /// A web application.
        WebApplication => "web_application",
        /// A data pipeline.
        DataPipeline => "data_pipeline",
        /// A machine-learning model.
        MlModel => "ml_model",
        /// Documentation.
        Documentation => "documentation",
        /// Research.
        Research => "research",
        /// Anything else.
        #[default]
        Custom => "custom",
    }
);

text_enum!(
    /// The kind of a resource (seed: `ResourceType`, the exported one with 11 kinds).
    ResourceType {
        /// CPU cores.
        Cpu => "cpu",
        /// System memory.
        Memory => "memory",
        /// Disk storage.
        Disk => "disk",
        /// Network bandwidth.
        Network => "network",
        /// File access.
        File => "file",
        /// Database connections.
        Database => "database",
        /// External API quota (rate limited).
        ExternalApi => "external_api",
        /// GPUs.
        Gpu => "gpu",
        /// Queue slots.
        Queue => "queue",
        /// Named locks.
        Lock => "lock",
        /// Counting semaphores.
        Semaphore => "semaphore",
    }
);

text_enum!(
    /// The state of a resource (seed: `ResourceStatus`).
    ResourceStatus [Default] {
        /// Available for allocation.
        #[default]
        Available => "available",
        /// Fully in use.
        InUse => "in_use",
        /// Reserved.
        Reserved => "reserved",
        /// Under maintenance.
        Maintenance => "maintenance",
        /// Unavailable.
        Unavailable => "unavailable",
    }
);

text_enum!(
    /// How a session or run schedules its tasks (SPEC §5).
    ExecutionMode [Default] {
        /// One task at a time, in topological and priority order.
        Sequential => "sequential",
        /// Up to `max_parallel_tasks` at once.
        #[default]
        Parallel => "parallel",
        /// Parallel, and a task starts only when its resource request fits.
        ResourceAware => "resource_aware",
    }
);

text_enum!(
    /// A step's trigger rule: which outcomes of its dependencies let it run.
    RunIf [Default] {
        /// Run only when every dependency completed successfully (the default).
        #[default]
        Success => "success",
        /// Run only when at least one dependency failed.
        Failure => "failure",
        /// Run once every dependency has finished, whatever the outcome.
        Always => "always",
        /// Run only when every upstream step (direct or not) completed.
        AllSuccess => "all_success",
        /// Run once every upstream step has ended, whatever the outcome.
        AllDone => "all_done",
        /// Run only when at least one upstream step (direct or not) failed.
        OneFailed => "one_failed",
        /// Run only when no upstream step failed or was cancelled (each
        /// completed or was skipped).
        NoneFailed => "none_failed",
    }
);

impl RunIf {
    /// Whether the rule looks at every upstream step (the steps this one
    /// depends on, directly or not), not only the direct dependencies.
    pub fn over_upstream(self) -> bool {
        matches!(
            self,
            Self::AllSuccess | Self::AllDone | Self::OneFailed | Self::NoneFailed
        )
    }

    /// Whether a step with this rule still runs once its run was cancelled
    /// or timed out (within the run's cancel grace): the rules that can be
    /// met when an upstream step did not succeed.
    pub fn runs_after_stop(self) -> bool {
        matches!(
            self,
            Self::Always | Self::AllDone | Self::Failure | Self::OneFailed
        )
    }
}

text_enum!(
    /// Where a step stands in its workflow: the main graph, or the steps a
    /// workflow runs after it (`on_failure:`, `finally:`).
    Phase [Default] {
        /// A step of `steps:`.
        #[default]
        Main => "main",
        /// A step of `on_failure:`: runs after the main steps when one of
        /// them failed (or the run timed out).
        OnFailure => "on_failure",
        /// A step of `finally:`: runs after the main and `on_failure` steps,
        /// whatever happened, also after a cancel (within the cancel grace).
        Finally => "finally",
    }
);

impl Phase {
    /// Whether this is the main graph.
    pub fn is_main(&self) -> bool {
        *self == Self::Main
    }

    /// The trigger rule a step of this phase gets when it sets none.
    pub fn default_run_if(self) -> RunIf {
        match self {
            Self::Main => RunIf::Success,
            Self::OnFailure => RunIf::OneFailed,
            Self::Finally => RunIf::AllDone,
        }
    }
}

text_enum!(
    /// The comparison of a `when` condition.
    ConditionOp {
        /// Equal (JSON equality).
        Eq => "eq",
        /// Not equal.
        Ne => "ne",
        /// Greater than (numbers, or strings compared as text).
        Gt => "gt",
        /// Greater than or equal.
        Ge => "ge",
        /// Less than.
        Lt => "lt",
        /// Less than or equal.
        Le => "le",
        /// A string contains a substring, a list contains an element, or a map has a key.
        Contains => "contains",
        /// The reference resolves to a value (not null).
        Exists => "exists",
        /// The value is truthy (not null, false, 0, "", [] or {}).
        Truthy => "truthy",
    }
);

text_enum!(
    /// How the delay between retries grows.
    BackoffKind [Default] {
        /// The same delay every time.
        Constant => "constant",
        /// `initial_delay × attempt`.
        Linear => "linear",
        /// `initial_delay × 2^(attempt-1)`.
        #[default]
        Exponential => "exponential",
    }
);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn enums_serialize_in_snake_case() {
        assert_eq!(
            serde_json::to_string(&ResourceType::ExternalApi).expect("ser"),
            "\"external_api\""
        );
        assert_eq!(
            serde_json::to_string(&ResourceStatus::InUse).expect("ser"),
            "\"in_use\""
        );
        assert_eq!(
            serde_json::to_string(&TaskPriority::High).expect("ser"),
            "\"high\""
        );
        assert_eq!(
            "AI_ANALYSIS".parse::<ProjectType>(),
            Ok(ProjectType::AiAnalysis)
        );
        let err = "bogus".parse::<TaskStatus>().expect_err("unknown");
        assert!(err.contains("expected one of: pending, ready"), "{err}");
        assert_eq!(ResourceType::ALL.len(), 11);
        assert_eq!(WorkflowStatus::ALL.len(), 7);
    }

    #[test]
    fn priority_accepts_seed_integers_and_orders() {
        let p: TaskPriority = serde_json::from_str("3").expect("int");
        assert_eq!(p, TaskPriority::High);
        let p: TaskPriority = serde_json::from_str("\"critical\"").expect("text");
        assert_eq!(p, TaskPriority::Critical);
        assert!(serde_json::from_str::<TaskPriority>("9").is_err());
        assert!(TaskPriority::Critical > TaskPriority::High);
        assert!(TaskPriority::Normal > TaskPriority::Low);
    }

    #[test]
    fn happy_path_transitions() {
        let mut s = TaskStatus::Pending;
        for next in [
            TaskStatus::Ready,
            TaskStatus::Running,
            TaskStatus::Ready,
            TaskStatus::Running,
            TaskStatus::Completed,
        ] {
            s.transition(next).expect("allowed");
        }
        assert_eq!(s, TaskStatus::Completed);
        let err = s.transition(TaskStatus::Running).expect_err("terminal");
        assert!(
            err.to_string().contains("from `completed` to `running`"),
            "{err}"
        );
        assert_eq!(s, TaskStatus::Completed);
        assert!(!TaskStatus::Pending.can_transition_to(TaskStatus::Running));
    }

    fn status() -> impl Strategy<Value = TaskStatus> {
        proptest::sample::select(TaskStatus::ALL)
    }

    proptest! {
        #[test]
        fn no_transition_leaves_a_terminal_state(from in status(), to in status()) {
            if from.is_terminal() {
                prop_assert!(!from.can_transition_to(to));
            }
        }

        #[test]
        fn random_walks_never_leave_terminal_states(steps in proptest::collection::vec(status(), 0..40)) {
            let mut s = TaskStatus::Pending;
            let mut terminal_at: Option<TaskStatus> = None;
            for next in steps {
                let before = s;
                let ok = s.transition(next).is_ok();
                if let Some(t) = terminal_at {
                    prop_assert!(!ok);
                    prop_assert_eq!(s, t);
                }
                if !ok {
                    prop_assert_eq!(s, before);
                }
                if s.is_terminal() {
                    terminal_at = Some(s);
                }
                prop_assert!(s != TaskStatus::Pending || before == TaskStatus::Pending);
            }
        }
    }
}
