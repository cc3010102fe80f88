//! The rules every backend applies, as pure functions: whether a task may
//! start or finish (the fencing check), a run's final status from its
//! tasks' states, the derived "interrupted" state of a run, and the errors a
//! backend gives (naming itself).

use super::types::{Finished, TaskCounts};
use crate::enums::{TaskStatus, WorkflowStatus};
use crate::error::{OrchestrationError, Result};
use std::fmt;

/// Whether the task `name`, now `status` at attempt `current`, may end in
/// `next` by the hand of `attempt`.
///
/// `attempt > 0` is the attempt that ran: the task must be running that very
/// attempt (an older one is fenced off: another attempt took over, or the
/// task finished). `attempt == 0` ends a task that never started (skipped,
/// cancelled, or failed before it could start): it must be neither running
/// nor final, and a pending task may end by way of ready. A claimed task
/// (running, its current attempt) may also end `skipped` by way of ready: the
/// worker that claimed it decided at release that it does not run.
///
/// # Errors
/// `InvalidState` saying which rule the finish broke.
pub fn check_finish(
    name: &str,
    status: TaskStatus,
    current: u32,
    attempt: u32,
    next: TaskStatus,
) -> Result<()> {
    let fits = if attempt > 0 {
        status == TaskStatus::Running && current == attempt
    } else {
        status != TaskStatus::Running && !status.is_terminal()
    };
    if !fits {
        return Err(OrchestrationError::InvalidState {
            message: format!(
                "finish: attempt {attempt} of task `{name}` is no longer current (it is {} at attempt {current})",
                status.as_str()
            ),
        });
    }
    let (mut direct, mut via) = (status, status);
    // Two ways go through `ready`: a task that never started may end from
    // `pending`, and a claimed task whose worker decided at release that
    // it does not run (its trigger rule or `when` said no) ends `skipped`
    // with its claim, as if it had been decided before the claim.
    let through_ready = (attempt == 0 && status == TaskStatus::Pending)
        || (attempt > 0 && status == TaskStatus::Running && next == TaskStatus::Skipped);
    let can = direct.transition(next).is_ok()
        || (through_ready
            && via.transition(TaskStatus::Ready).is_ok()
            && via.transition(next).is_ok());
    if can {
        Ok(())
    } else {
        Err(OrchestrationError::InvalidState {
            message: format!(
                "finish: task `{name}` cannot go from {} to {}",
                status.as_str(),
                next.as_str()
            ),
        })
    }
}

/// Whether the task `name`, now `status`, may be started by the local
/// scheduler (`Store::start_tasks`): only a ready task may.
///
/// # Errors
/// `InvalidState` naming the task and its state.
pub fn check_start(name: &str, status: TaskStatus) -> Result<()> {
    if status == TaskStatus::Ready {
        Ok(())
    } else {
        Err(OrchestrationError::InvalidState {
            message: format!(
                "start: task `{name}` is {}, not ready (or named twice)",
                status.as_str()
            ),
        })
    }
}

/// Gives each entry of `done` whose task is in `start` the attempt number
/// the start gave it (`given`, in the order of `start`): what
/// [`Store::start_and_finish`](super::Store::start_and_finish) does between
/// its start and its finish.
pub fn started_attempts(start: &[u32], given: &[u32], done: &mut [Finished]) {
    if start.is_empty() || done.is_empty() {
        return;
    }
    if start.len() <= 8 {
        for f in done {
            if let Some(k) = start.iter().position(|&i| i == f.index) {
                if let Some(&a) = given.get(k) {
                    f.attempt = a;
                }
            }
        }
        return;
    }
    let by_task: rustc_hash::FxHashMap<u32, u32> =
        start.iter().copied().zip(given.iter().copied()).collect();
    for f in done {
        if let Some(&a) = by_task.get(&f.index) {
            f.attempt = a;
        }
    }
}

/// A run's final status from its tasks' counts: `None` while a task is not
/// final; then failed if a task failed, else cancelled if one was
/// cancelled, else completed (skipped tasks do not fail a run).
pub fn final_status(counts: &TaskCounts) -> Option<WorkflowStatus> {
    if counts.done() < counts.total() {
        None
    } else if counts.failed > 0 {
        Some(WorkflowStatus::Failed)
    } else if counts.cancelled > 0 {
        Some(WorkflowStatus::Cancelled)
    } else {
        Some(WorkflowStatus::Completed)
    }
}

/// A run's state as users see it: the store's status, with a run still
/// marked running whose owner is gone shown as interrupted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunState {
    /// Its owner runs it now.
    Running,
    /// Its owner ended before the run did: resuming it continues it.
    Interrupted,
    /// Every step completed or was skipped.
    Completed,
    /// A step failed, or the run timed out.
    Failed,
    /// It was cancelled.
    Cancelled,
    /// Another status of the store (`draft`, `ready`, `paused`).
    Other(WorkflowStatus),
}

impl RunState {
    /// The state of a run whose stored status is `status`; `owner_alive`
    /// says whether the process recorded as its owner still runs (false
    /// when no owner is recorded). Checking that is the caller's business
    /// (orch-model does no I/O): orch-tasks' `run::owner_alive`.
    pub fn derive(status: WorkflowStatus, owner_alive: bool) -> Self {
        match status {
            WorkflowStatus::Running if owner_alive => Self::Running,
            WorkflowStatus::Running => Self::Interrupted,
            WorkflowStatus::Completed => Self::Completed,
            WorkflowStatus::Failed => Self::Failed,
            WorkflowStatus::Cancelled => Self::Cancelled,
            other => Self::Other(other),
        }
    }

    /// The state's name (`running`, `interrupted`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Interrupted => "interrupted",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
            Self::Other(s) => s.as_str(),
        }
    }
}

impl fmt::Display for RunState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A concern of the `Store` contract that a backend may leave out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Concern {
    /// Claims with leases and fencing (`claim`, `heartbeat`, `complete`,
    /// `reclaim_expired`): workers that pull work.
    Claims,
    /// Records of the layers above (sessions, projects).
    Records,
    /// The result cache.
    Cache,
    /// Taking a run over atomically (`take_over`), which resuming needs.
    TakeOver,
    /// Keeping a step's output while it is produced (`append_output`, `output`).
    Output,
    /// Named leases that elect one holder at a time (`lead`, `resign`, `leader`).
    Leaders,
}

impl Concern {
    /// What the concern is, in words.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Claims => "claiming tasks with leases (workers)",
            Self::Records => "keeping records (sessions, projects)",
            Self::Cache => "caching results",
            Self::TakeOver => "taking a run over atomically (resuming a run)",
            Self::Output => "keeping a step's output while it runs",
            Self::Leaders => "electing a leader with a named lease",
        }
    }
}

/// The error of a backend asked for a concern it does not support:
/// `Unsupported`, naming the backend, the concern and the call.
pub fn unsupported(backend: &str, concern: Concern, call: &str) -> OrchestrationError {
    OrchestrationError::Unsupported {
        message: format!(
            "the {backend} store does not support {} (`{call}`); use a store that does (its capabilities say which)",
            concern.as_str()
        ),
    }
}

/// A backend's failure as `OrchestrationError::Store`, its message naming
/// the backend, what it was doing and the source error
/// (`sqlite: cannot open x.db: unable to open database file`).
pub fn store_error(
    backend: &str,
    what: &str,
    source: impl fmt::Display,
    retryable: bool,
) -> OrchestrationError {
    let message = if what.is_empty() {
        format!("{backend}: {source}")
    } else {
        format!("{backend}: {what}: {source}")
    };
    OrchestrationError::Store { message, retryable }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_running_attempt_finishes_and_an_older_one_is_fenced_off() {
        let s = TaskStatus::Running;
        assert!(check_finish("a", s, 2, 2, TaskStatus::Completed).is_ok());
        let e = check_finish("a", s, 2, 1, TaskStatus::Completed).expect_err("stale");
        assert!(e.to_string().contains("no longer current"), "{e}");
        // A task that never started ends without an attempt, pending by way of ready.
        assert!(check_finish("a", TaskStatus::Pending, 0, 0, TaskStatus::Skipped).is_ok());
        assert!(check_finish("a", TaskStatus::Running, 1, 0, TaskStatus::Skipped).is_err());
        assert!(check_finish("a", TaskStatus::Completed, 1, 0, TaskStatus::Skipped).is_err());
        assert!(check_start("a", TaskStatus::Ready).is_ok());
        assert!(check_start("a", TaskStatus::Running).is_err());
    }

    #[test]
    fn a_run_ends_when_its_last_task_does_and_a_failure_outranks_a_cancellation() {
        let mut c = TaskCounts::default();
        c.add(TaskStatus::Completed, 2);
        c.add(TaskStatus::Running, 1);
        assert_eq!(final_status(&c), None);
        c.running = 0;
        c.add(TaskStatus::Skipped, 1);
        assert_eq!(final_status(&c), Some(WorkflowStatus::Completed));
        c.add(TaskStatus::Cancelled, 1);
        assert_eq!(final_status(&c), Some(WorkflowStatus::Cancelled));
        c.add(TaskStatus::Failed, 1);
        assert_eq!(final_status(&c), Some(WorkflowStatus::Failed));
    }

    #[test]
    fn a_running_run_without_a_live_owner_is_interrupted() {
        assert_eq!(
            RunState::derive(WorkflowStatus::Running, true),
            RunState::Running
        );
        assert_eq!(
            RunState::derive(WorkflowStatus::Running, false).as_str(),
            "interrupted"
        );
        assert_eq!(
            RunState::derive(WorkflowStatus::Failed, false),
            RunState::Failed
        );
    }

    #[test]
    fn errors_name_the_backend_and_the_source() {
        let e = store_error("sqlite", "cannot open x.db", "disk I/O error", true);
        assert_eq!(
            e.to_string()
                .matches("sqlite: cannot open x.db: disk I/O error")
                .count(),
            1
        );
        assert!(e.is_retryable());
        let u = unsupported("memory", Concern::Claims, "claim");
        assert_eq!(u.error_code(), crate::error::ErrorCode::NotSupported);
        assert!(
            u.to_string()
                .contains("the memory store does not support claiming"),
            "{u}"
        );
    }
}
