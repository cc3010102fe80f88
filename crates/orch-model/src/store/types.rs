//! The data the `Store` contract moves: runs and tasks to create, stored
//! records, claims, outcomes, events, cache entries.

use crate::enums::{TaskPriority, TaskStatus, WorkflowStatus};
use crate::ids::RunId;
use crate::task::TaskResult;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A run to create, with its tasks in definition order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewRun {
    /// The run's id.
    pub id: RunId,
    /// The workflow's name.
    pub workflow: String,
    /// The definition, as JSON text (so a run can be resumed from the store
    /// alone). Text, not a `Value`: a store keeps it as it is, and building
    /// a tree of a million steps only to write it out again costs more than
    /// the rest of creating the run.
    pub definition: String,
    /// Parameter values.
    pub params: Map<String, Value>,
    /// The tasks; dependencies are indices into this list.
    pub tasks: Vec<NewTask>,
    /// The run that started this one through a `workflow.run` step (a
    /// sub-workflow's run), or `None` for a top-level run. Kept as given:
    /// the store does not check that such a run exists.
    #[serde(default)]
    pub parent: Option<RunId>,
}

/// A task of a new run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewTask {
    /// The step's name.
    pub name: String,
    /// Indices of the tasks it waits for.
    pub deps: Vec<u32>,
    /// Claim order among ready tasks.
    pub priority: TaskPriority,
}

/// A stored run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// The run's id.
    pub id: RunId,
    /// The workflow's name.
    pub workflow: String,
    /// Running until every task is terminal; then completed, failed or cancelled.
    pub status: WorkflowStatus,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When its last task finished.
    pub finished_at: Option<DateTime<Utc>>,
    /// Parameter values.
    pub params: Map<String, Value>,
    /// The definition, as JSON text (as [`NewRun::definition`] gave it);
    /// empty in the records of [`Store::list_runs`](super::Store::list_runs).
    pub definition: String,
    /// The process driving the run (`pid:START@HOST`), while one does.
    pub owner: Option<String>,
    /// Whether someone asked the run's owner to cancel it.
    pub cancel_requested: bool,
    /// The run that started this one through a `workflow.run` step, as
    /// [`NewRun::parent`] gave it; `None` for a top-level run.
    #[serde(default)]
    pub parent: Option<RunId>,
    /// How many of its tasks are in each state (counted by the store
    /// without reading any task's result).
    #[serde(default)]
    pub tasks: TaskCounts,
}

/// How many tasks of a run are in each state: what a listing of runs shows,
/// counted by the store (an SQL aggregate, or counters it keeps) without
/// reading the tasks' results.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskCounts {
    /// Waiting for dependencies.
    pub pending: u32,
    /// Ready to start.
    pub ready: u32,
    /// Running (or interrupted while running).
    pub running: u32,
    /// Succeeded.
    pub completed: u32,
    /// Failed.
    pub failed: u32,
    /// Cancelled.
    pub cancelled: u32,
    /// Skipped.
    pub skipped: u32,
}

impl TaskCounts {
    /// Counts one more task in state `s`.
    pub fn add(&mut self, s: TaskStatus, n: u32) {
        let slot = match s {
            TaskStatus::Pending => &mut self.pending,
            TaskStatus::Ready => &mut self.ready,
            TaskStatus::Running => &mut self.running,
            TaskStatus::Completed => &mut self.completed,
            TaskStatus::Failed => &mut self.failed,
            TaskStatus::Cancelled => &mut self.cancelled,
            TaskStatus::Skipped => &mut self.skipped,
        };
        *slot = slot.saturating_add(n);
    }

    /// Every task of the run.
    pub fn total(&self) -> u32 {
        self.not_done().saturating_add(self.done())
    }

    /// Tasks in a final state (completed, failed, cancelled, skipped).
    pub fn done(&self) -> u32 {
        self.completed
            .saturating_add(self.failed)
            .saturating_add(self.cancelled)
            .saturating_add(self.skipped)
    }

    fn not_done(&self) -> u32 {
        self.pending
            .saturating_add(self.ready)
            .saturating_add(self.running)
    }

    /// The counts of `tasks`.
    pub fn of<'a>(tasks: impl IntoIterator<Item = &'a TaskRecord>) -> Self {
        let mut c = Self::default();
        for t in tasks {
            c.add(t.status, 1);
        }
        c
    }
}

/// The answer of [`Store::take_over`](super::Store::take_over).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum TakeOver {
    /// The caller owns the run now.
    Taken,
    /// The run is still running but its owner is no longer the one expected:
    /// someone else took it over first (`owner` is who holds it now).
    Held {
        /// The run's owner now.
        owner: Option<String>,
    },
    /// The run has ended; there is nothing to take over.
    Ended {
        /// How it ended.
        status: WorkflowStatus,
    },
}

/// A stored task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskRecord {
    /// Its run.
    pub run: RunId,
    /// Its index in the run.
    pub index: u32,
    /// The step's name.
    pub name: String,
    /// Its state.
    pub status: TaskStatus,
    /// Attempts claimed so far (the fencing token of the current one).
    pub attempt: u32,
    /// Dependencies not yet finished.
    pub remaining: u32,
    /// Claim order among ready tasks.
    pub priority: TaskPriority,
    /// Who holds it and until when, while running.
    pub lease: Option<Lease>,
    /// Its outcome, once finished.
    pub result: Option<TaskResult>,
    /// Why it was skipped, if it was.
    pub note: Option<String>,
    /// When its latest attempt started.
    pub started_at: Option<DateTime<Utc>>,
    /// When it reached its final state.
    pub finished_at: Option<DateTime<Utc>>,
}

/// A task that reached its final state, for [`Store::finish_tasks`](super::Store::finish_tasks).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finished {
    /// Its index in the run.
    pub index: u32,
    /// The attempt that ended (the fencing token), or 0 for a task that never
    /// started (skipped, cancelled, or failed before it could start).
    pub attempt: u32,
    /// Attempts made after the first within this start (a step retried twice
    /// that then succeeds: 2). The task's recorded attempt count grows by
    /// this much, so that it counts every time the step ran.
    #[serde(default)]
    pub retries: u32,
    /// How it ended.
    pub outcome: TaskOutcome,
}

/// What a [`Record`] describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordKind {
    /// An engine session (the engine's `Session`, as JSON).
    Session,
    /// A project: its name, root directory and last known state.
    Project,
    /// A worker (`orch worker`): its slots, capacity, what it runs and when
    /// it was last seen, keyed by its id.
    Worker,
}

impl RecordKind {
    /// The kind's name, as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Session => "session",
            Self::Project => "project",
            Self::Worker => "worker",
        }
    }
}

/// A record that a layer above the scheduler keeps in the store (sessions,
/// projects), so that it outlives the process: a JSON document under a key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// What it describes.
    pub kind: RecordKind,
    /// Its key within the kind (a session id, a project name).
    pub key: String,
    /// The document.
    pub data: Value,
    /// When it was last written.
    pub updated_at: DateTime<Utc>,
}

/// A worker's hold on a running task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// The worker.
    pub worker: String,
    /// When the hold lapses unless renewed.
    pub until: DateTime<Utc>,
}

/// A claimed task: run it, renew the lease, then complete it with this claim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    /// Its run.
    pub run: RunId,
    /// Its index.
    pub index: u32,
    /// The step's name.
    pub name: String,
    /// The attempt number: the fencing token. A write with an older attempt is rejected.
    pub attempt: u32,
    /// The worker holding it.
    pub worker: String,
}

/// How a claimed task ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum TaskOutcome {
    /// It succeeded.
    Succeeded {
        /// The result.
        result: TaskResult,
    },
    /// It failed for good.
    Failed {
        /// The failure.
        result: TaskResult,
    },
    /// Its trigger rule or condition said no.
    Skipped {
        /// Why.
        reason: String,
    },
    /// It was cancelled.
    Cancelled,
}

impl TaskOutcome {
    /// The terminal state it leads to.
    pub fn status(&self) -> TaskStatus {
        match self {
            TaskOutcome::Succeeded { .. } => TaskStatus::Completed,
            TaskOutcome::Failed { .. } => TaskStatus::Failed,
            TaskOutcome::Skipped { .. } => TaskStatus::Skipped,
            TaskOutcome::Cancelled => TaskStatus::Cancelled,
        }
    }
}

/// A recorded event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredEvent {
    /// Its position in the run's event log, from 1 (assigned by the store).
    pub seq: u64,
    /// When it happened.
    pub at: DateTime<Utc>,
    /// Its kind, e.g. `task_started`.
    pub kind: String,
    /// The task it is about, if any.
    pub task: Option<u32>,
    /// Details.
    pub data: Value,
}

/// A cached result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CacheEntry {
    /// The key (64 hex digits of blake3).
    pub key: String,
    /// The result.
    pub value: Value,
    /// When it was stored.
    pub created_at: DateTime<Utc>,
}
