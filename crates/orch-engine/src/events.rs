//! The engine's events: what subscribers and handlers receive.

#[allow(clippy::wildcard_imports)]
use super::*;
/// Something that happened in the engine; serialized with a `type` tag.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum EngineEvent {
    /// A session was created.
    SessionCreated {
        /// The session.
        session_id: SessionId,
        /// Its user.
        user_id: String,
        /// When.
        timestamp: DateTime<Utc>,
    },
    /// A session was closed or expired.
    SessionClosed {
        /// The session.
        session_id: SessionId,
        /// `closed`, `expired` or `shutdown`.
        reason: String,
        /// When.
        timestamp: DateTime<Utc>,
    },
    /// A workflow run started (it holds one of its session's workflow slots).
    WorkflowStarted {
        /// The session.
        session_id: SessionId,
        /// The workflow.
        workflow: String,
        /// The run.
        run_id: RunId,
        /// When.
        timestamp: DateTime<Utc>,
    },
    /// A workflow run ended.
    WorkflowCompleted {
        /// The session.
        session_id: SessionId,
        /// The workflow.
        workflow: String,
        /// The run.
        run_id: RunId,
        /// Whether it succeeded.
        success: bool,
        /// Seconds it took.
        execution_time: f64,
        /// When.
        timestamp: DateTime<Utc>,
    },
    /// A task's attempt started.
    TaskStarted {
        /// The run.
        run_id: RunId,
        /// The step.
        task: String,
        /// The attempt, from 1.
        attempt: u32,
        /// When.
        timestamp: DateTime<Utc>,
    },
    /// A task succeeded (or was served from the cache).
    TaskCompleted {
        /// The run.
        run_id: RunId,
        /// The step.
        task: String,
        /// Whether the result came from the cache.
        cached: bool,
        /// When.
        timestamp: DateTime<Utc>,
    },
    /// A task failed for good.
    TaskFailed {
        /// The run.
        run_id: RunId,
        /// The step.
        task: String,
        /// The kind of failure.
        error_type: String,
        /// What went wrong.
        message: String,
        /// When.
        timestamp: DateTime<Utc>,
    },
    /// A task's attempt failed and it will be retried.
    TaskRetrying {
        /// The run.
        run_id: RunId,
        /// The step.
        task: String,
        /// The attempt that failed.
        attempt: u32,
        /// Seconds until the next attempt.
        delay: f64,
        /// When.
        timestamp: DateTime<Utc>,
    },
    /// A task was skipped.
    TaskSkipped {
        /// The run.
        run_id: RunId,
        /// The step.
        task: String,
        /// Why.
        reason: String,
        /// When.
        timestamp: DateTime<Utc>,
    },
    /// A task was cancelled.
    TaskCancelled {
        /// The run.
        run_id: RunId,
        /// The step.
        task: String,
        /// When.
        timestamp: DateTime<Utc>,
    },
}

/// Every event type, as `EngineEvent::kind` names it.
pub const EVENT_KINDS: &[&str] = &[
    "session_created",
    "session_closed",
    "workflow_started",
    "workflow_completed",
    "task_started",
    "task_completed",
    "task_failed",
    "task_retrying",
    "task_skipped",
    "task_cancelled",
];

impl EngineEvent {
    /// The event's type, e.g. `task_started`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::SessionCreated { .. } => "session_created",
            Self::SessionClosed { .. } => "session_closed",
            Self::WorkflowStarted { .. } => "workflow_started",
            Self::WorkflowCompleted { .. } => "workflow_completed",
            Self::TaskStarted { .. } => "task_started",
            Self::TaskCompleted { .. } => "task_completed",
            Self::TaskFailed { .. } => "task_failed",
            Self::TaskRetrying { .. } => "task_retrying",
            Self::TaskSkipped { .. } => "task_skipped",
            Self::TaskCancelled { .. } => "task_cancelled",
        }
    }

    /// The engine event of one of run `run_id`'s events (`orch_tasks::Event`,
    /// the run's one stream); `None` for the events that have no engine
    /// counterpart (a step became ready, the run started or ended: the
    /// engine tells those as `WorkflowStarted` / `WorkflowCompleted`). The
    /// run's id comes beside the event, as every `EventSink` gets it: a
    /// step's event does not repeat it.
    pub fn from_event(run_id: RunId, ev: &Event) -> Option<Self> {
        let timestamp = Utc::now();
        Some(match ev {
            Event::TaskStarted { name, attempt, .. } => Self::TaskStarted {
                run_id,
                task: name.to_string(),
                attempt: *attempt,
                timestamp,
            },
            Event::TaskSucceeded { name, .. } => Self::TaskCompleted {
                run_id,
                task: name.to_string(),
                cached: false,
                timestamp,
            },
            Event::TaskCached { name, .. } => Self::TaskCompleted {
                run_id,
                task: name.to_string(),
                cached: true,
                timestamp,
            },
            Event::TaskFailed {
                name,
                error_type,
                message,
                ..
            } => Self::TaskFailed {
                run_id,
                task: name.to_string(),
                error_type: error_type.clone(),
                message: message.clone(),
                timestamp,
            },
            Event::TaskRetrying {
                name,
                attempt,
                delay,
                ..
            } => Self::TaskRetrying {
                run_id,
                task: name.to_string(),
                attempt: *attempt,
                delay: delay.as_secs_f64(),
                timestamp,
            },
            Event::TaskSkipped { name, reason, .. } => Self::TaskSkipped {
                run_id,
                task: name.to_string(),
                reason: reason.clone(),
                timestamp,
            },
            Event::TaskCancelled { name, .. } => Self::TaskCancelled {
                run_id,
                task: name.to_string(),
                timestamp,
            },
            _ => return None,
        })
    }
}

pub(crate) type Handler = Arc<dyn Fn(&EngineEvent) + Send + Sync>;

impl OrchestrationEngine {
    /// Whether anyone listens to engine events (a subscriber or a handler).
    pub(crate) fn wants_events(&self) -> bool {
        self.inner.events.receiver_count() > 0 || !lock(&self.inner.handlers).is_empty()
    }

    pub(crate) fn emit(&self, ev: EngineEvent) {
        let kind = ev.kind();
        let handlers: Vec<Handler> = lock(&self.inner.handlers)
            .iter()
            .filter(|(k, _)| k == kind || k == "*")
            .map(|(_, h)| h.clone())
            .collect();
        for h in handlers {
            // A failing handler must not break the engine or other handlers.
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| h(&ev)));
        }
        let _ = self.inner.events.send(ev);
    }

    /// A receiver of every event from now on. A receiver that falls more
    /// than 4,096 events behind skips the oldest ones (it is told so by
    /// `RecvError::Lagged`).
    pub fn subscribe(&self) -> broadcast::Receiver<EngineEvent> {
        self.inner.events.subscribe()
    }

    /// Calls `handler` for every event of type `kind` (or every event for `"*"`).
    ///
    /// # Errors
    /// `InvalidParameters` for an unknown event type (the message lists them).
    pub fn register_handler(
        &self,
        kind: &str,
        handler: impl Fn(&EngineEvent) + Send + Sync + 'static,
    ) -> Result<(), OrchestrationError> {
        if kind != "*" && !EVENT_KINDS.contains(&kind) {
            return Err(OrchestrationError::invalid_parameters(format!(
                "unknown event type `{kind}`; the types are {} (or `*` for all)",
                EVENT_KINDS.join(", ")
            )));
        }
        lock(&self.inner.handlers).push((kind.to_owned(), Arc::new(handler)));
        Ok(())
    }
}
