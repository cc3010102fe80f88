//! The closed set of events a run emits; the CLI and (later) the store consume them.

use orch_model::CompactString;
use orch_model::{RunId, TaskStatus, WorkflowStatus};
use std::time::Duration;

/// Something that happened in a run. Steps are named by their index in the
/// workflow and by name.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// The run started.
    RunStarted {
        /// The run.
        run_id: RunId,
        /// How many steps it has.
        total: usize,
    },
    /// A step's dependencies are done and its parameters resolved; it waits for a slot.
    TaskReady {
        /// Step index.
        task: u32,
        /// Step name.
        name: CompactString,
    },
    /// An attempt started.
    TaskStarted {
        /// Step index.
        task: u32,
        /// Step name.
        name: CompactString,
        /// The attempt, from 1.
        attempt: u32,
    },
    /// The step succeeded.
    TaskSucceeded {
        /// Step index.
        task: u32,
        /// Step name.
        name: CompactString,
        /// Attempts it took.
        attempts: u32,
        /// Time of the last attempt.
        duration: Duration,
    },
    /// The step failed for good (retries exhausted, or not retryable).
    TaskFailed {
        /// Step index.
        task: u32,
        /// Step name.
        name: CompactString,
        /// Attempts it took.
        attempts: u32,
        /// The kind of failure.
        error_type: String,
        /// What went wrong.
        message: String,
    },
    /// An attempt failed and another one follows after `delay`.
    TaskRetrying {
        /// Step index.
        task: u32,
        /// Step name.
        name: CompactString,
        /// The attempt that failed.
        attempt: u32,
        /// The wait before the next attempt.
        delay: Duration,
        /// Why the attempt failed.
        message: String,
    },
    /// The step will not run.
    TaskSkipped {
        /// Step index.
        task: u32,
        /// Step name.
        name: CompactString,
        /// Why.
        reason: String,
    },
    /// The step was cancelled.
    TaskCancelled {
        /// Step index.
        task: u32,
        /// Step name.
        name: CompactString,
    },
    /// The step's result came from the cache (emitted once result caching is
    /// implemented; it is part of the contract now so consumers handle it).
    TaskCached {
        /// Step index.
        task: u32,
        /// Step name.
        name: CompactString,
    },
    /// The run ended.
    RunFinished {
        /// The run.
        run_id: RunId,
        /// How it ended: completed, failed or cancelled.
        status: WorkflowStatus,
        /// How long it took.
        duration: Duration,
    },
}

impl Event {
    /// The step the event is about, if any.
    pub fn task(&self) -> Option<u32> {
        match self {
            Event::TaskReady { task, .. }
            | Event::TaskStarted { task, .. }
            | Event::TaskSucceeded { task, .. }
            | Event::TaskFailed { task, .. }
            | Event::TaskRetrying { task, .. }
            | Event::TaskSkipped { task, .. }
            | Event::TaskCancelled { task, .. }
            | Event::TaskCached { task, .. } => Some(*task),
            Event::RunStarted { .. } | Event::RunFinished { .. } => None,
        }
    }

    /// The state a step is in after this event, if it is about a step.
    pub fn task_status(&self) -> Option<TaskStatus> {
        match self {
            Event::TaskReady { .. } | Event::TaskRetrying { .. } => Some(TaskStatus::Ready),
            Event::TaskStarted { .. } => Some(TaskStatus::Running),
            Event::TaskSucceeded { .. } | Event::TaskCached { .. } => Some(TaskStatus::Completed),
            Event::TaskFailed { .. } => Some(TaskStatus::Failed),
            Event::TaskSkipped { .. } => Some(TaskStatus::Skipped),
            Event::TaskCancelled { .. } => Some(TaskStatus::Cancelled),
            Event::RunStarted { .. } | Event::RunFinished { .. } => None,
        }
    }
}
