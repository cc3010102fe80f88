//! The `Store` contract: durable runs, tasks, claims with leases and fencing, events and cache entries.
//!
//! orch-model defines the contract; backends implement it beside it
//! (in-memory in orch-tasks, SQLite and PostgreSQL in their own crates), and
//! only the engine and the CLI pick one. The conformance suite
//! (`orch_model::testkit`, feature `testkit`) runs against every backend.

use crate::enums::{TaskPriority, TaskStatus, WorkflowStatus};
use crate::error::Result;
use crate::ids::RunId;
use crate::task::TaskResult;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::fmt;
use std::time::Duration;

/// What a backend can do, so callers need not guess.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreCapabilities {
    /// Data survives the process.
    pub durable: bool,
    /// Several processes (machines) may claim work from it at once.
    pub distributed_claim: bool,
    /// Waiting workers are woken on new work (otherwise they poll).
    pub notify: bool,
}

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
    /// empty in the records of [`Store::list_runs`].
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

/// The answer of [`Store::take_over`].
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

/// A task that reached its final state, for [`Store::finish_tasks`].
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
}

impl RecordKind {
    /// The kind's name, as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Session => "session",
            Self::Project => "project",
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

/// Durable state of runs and the hand-out of work.
///
/// # Contract
/// - `create_run` stores a run and its tasks at once; tasks without
///   dependencies are `ready`, the others `pending` with `remaining` set.
/// - `claim` hands out up to `max` ready tasks, highest priority first, then
///   lowest index, across runs; each becomes `running` with `attempt`
///   incremented (the fencing token) and a lease until `now + lease`.
/// - `heartbeat` renews a lease; it returns false (and changes nothing) when
///   the claim is stale (another attempt took over, or the task finished).
/// - `complete` is one transaction: the task becomes terminal with its
///   outcome, each dependent's `remaining` drops by one, and dependents
///   reaching zero become `ready`; when every task of the run is terminal, the
///   run is `completed` (no failure), `failed` or `cancelled`. A stale claim
///   is rejected with `InvalidState` and changes nothing.
/// - `reclaim_expired` makes every running task whose lease ended before
///   `now` ready again (its next claim gets the next attempt number).
/// - `cancel_run` cancels every task that is not terminal.
/// - `start_tasks` is the local scheduler's claim: the named tasks, which
///   must all be `ready`, become `running` with the next attempt number; all
///   or nothing.
/// - `finish_tasks` is `complete` for many tasks of one run in one
///   transaction, in order; an entry with attempt 0 finishes a task that
///   never started (it must be neither running nor terminal).
/// - `requeue_running` makes a run's running tasks ready again, keeping
///   their attempt numbers (resuming after the driving process died).
/// - `finish_run` sets a run's final status when its driver knows better
///   (a run timeout is a failure even if its tasks were cancelled).
/// - `take_over` is a compare-and-set of a run's owner: the run becomes the
///   caller's only if it is still `running` and its owner is still the one
///   the caller saw (the dead process it means to replace). Of any number
///   of concurrent take-overs from the same owner, exactly one wins; the
///   others learn who holds the run. A resumed run is taken over before
///   anything of it runs.
/// - `list_runs` and `get_run` give each run's [`TaskCounts`], counted
///   without reading any task's result, and its `parent` as `create_run`
///   was given it.
/// - Events get consecutive `seq` numbers per run, from 1, in append order.
///
/// # Cancellation
/// Every method is one transaction: a future dropped before it completes
/// either applied all of its changes or none.
///
/// # Implementing
/// Map backend errors to `OrchestrationError::Store` (retryable when trying
/// again may help); never expose a driver's error type. Run
/// `orch_model::testkit::conformance` (feature `testkit`) in the backend's tests.
#[async_trait]
pub trait Store: Send + Sync + fmt::Debug {
    /// What the backend can do.
    fn capabilities(&self) -> StoreCapabilities;
    /// Stores a new run.
    async fn create_run(&self, run: NewRun, now: DateTime<Utc>) -> Result<()>;
    /// One run.
    async fn get_run(&self, id: RunId) -> Result<Option<RunRecord>>;
    /// Every run, newest first, each without its definition (`definition`
    /// is empty: a definition can be hundreds of MiB; `get_run` has it),
    /// with its task counts (no task's result is read).
    async fn list_runs(&self) -> Result<Vec<RunRecord>>;
    /// The newest `limit` runs, as [`Store::list_runs`] gives them. A
    /// backend that can stop early (and count fewer tasks) should.
    async fn recent_runs(&self, limit: usize) -> Result<Vec<RunRecord>> {
        let mut runs = self.list_runs().await?;
        runs.truncate(limit);
        Ok(runs)
    }
    /// The tasks of a run, by index.
    async fn tasks(&self, run: RunId) -> Result<Vec<TaskRecord>>;
    /// Claims ready tasks.
    async fn claim(
        &self,
        worker: &str,
        max: usize,
        lease: Duration,
        now: DateTime<Utc>,
    ) -> Result<Vec<Claim>>;
    /// Renews a lease; false when the claim is stale.
    async fn heartbeat(&self, claim: &Claim, lease: Duration, now: DateTime<Utc>) -> Result<bool>;
    /// Finishes a claimed task and releases its dependents, atomically.
    async fn complete(&self, claim: &Claim, outcome: TaskOutcome, now: DateTime<Utc>)
    -> Result<()>;
    /// Makes tasks with lapsed leases ready again; returns how many.
    async fn reclaim_expired(&self, now: DateTime<Utc>) -> Result<usize>;
    /// Cancels what is left of a run.
    async fn cancel_run(&self, run: RunId, now: DateTime<Utc>) -> Result<()>;
    /// Appends events to a run's log (their `seq` is assigned by the store).
    async fn append_events(&self, run: RunId, events: Vec<StoredEvent>) -> Result<()>;
    /// Starts ready tasks of a run; returns their new attempt numbers, in order.
    async fn start_tasks(
        &self,
        run: RunId,
        tasks: &[u32],
        worker: &str,
        lease: Duration,
        now: DateTime<Utc>,
    ) -> Result<Vec<u32>>;
    /// Finishes tasks of a run and releases their dependents, atomically.
    async fn finish_tasks(&self, run: RunId, done: Vec<Finished>, now: DateTime<Utc>)
    -> Result<()>;
    /// `finish_tasks`, then `append_events`: what a journaled run commits
    /// after each turn. When the finish fails, no event is appended. A
    /// backend that can do both in one transaction (one commit) should; this
    /// default makes the two calls.
    async fn finish_and_append(
        &self,
        run: RunId,
        done: Vec<Finished>,
        events: Vec<StoredEvent>,
        now: DateTime<Utc>,
    ) -> Result<()> {
        if !done.is_empty() {
            self.finish_tasks(run, done, now).await?;
        }
        if !events.is_empty() {
            self.append_events(run, events).await?;
        }
        Ok(())
    }
    /// `finish_and_append`, then `start_tasks` of `start` (tasks that the
    /// finish made ready, or that were ready before): a journaled run's
    /// whole turn. Returns the new attempt numbers of `start`, in order.
    /// A backend that can do it in one transaction (one commit: the finish
    /// is durable exactly when its dependents are recorded as started)
    /// should; this default makes the two calls, so that a failed start
    /// leaves the finish committed.
    #[allow(clippy::too_many_arguments)]
    async fn finish_and_start(
        &self,
        run: RunId,
        done: Vec<Finished>,
        events: Vec<StoredEvent>,
        start: &[u32],
        worker: &str,
        lease: Duration,
        now: DateTime<Utc>,
    ) -> Result<Vec<u32>> {
        self.finish_and_append(run, done, events, now).await?;
        if start.is_empty() {
            return Ok(Vec::new());
        }
        self.start_tasks(run, start, worker, lease, now).await
    }
    /// Makes a run's running tasks ready again; returns how many.
    async fn requeue_running(&self, run: RunId) -> Result<usize>;
    /// Sets a run's final status and end time.
    async fn finish_run(
        &self,
        run: RunId,
        status: WorkflowStatus,
        now: DateTime<Utc>,
    ) -> Result<()>;
    /// Records the process driving a run (`None` when it let go).
    async fn set_owner(&self, run: RunId, owner: Option<String>) -> Result<()>;
    /// Makes `owner` the run's owner if, atomically, the run is still
    /// `running` and its owner is still `expected` (`None`: no owner
    /// recorded). See [`TakeOver`] for the answers; `NotFound` for an
    /// unknown run. A backend that cannot compare and set in one step must
    /// not pretend to: this default refuses with `Unsupported`.
    async fn take_over(&self, run: RunId, expected: Option<&str>, owner: &str) -> Result<TakeOver> {
        let _ = (run, expected, owner);
        Err(crate::error::OrchestrationError::Unsupported {
            message: format!(
                "this store ({:?}) cannot take over a run atomically, so a run cannot be resumed from it safely",
                self.capabilities()
            ),
        })
    }
    /// Asks a run's owner to cancel it; false when the run is already finished.
    async fn request_cancel(&self, run: RunId) -> Result<bool>;
    /// Whether someone asked for the run to be cancelled (polled by its owner).
    async fn cancel_requested(&self, run: RunId) -> Result<bool> {
        Ok(self.get_run(run).await?.is_some_and(|r| r.cancel_requested))
    }
    /// Rows the backend could not read and set aside, one line each.
    async fn problems(&self) -> Result<Vec<String>> {
        Ok(Vec::new())
    }
    /// A run's events with `seq > after`, in order.
    async fn events(&self, run: RunId, after: u64) -> Result<Vec<StoredEvent>>;
    /// Saves a record, replacing the one of the same kind and key.
    async fn put_record(&self, record: Record) -> Result<()>;
    /// Removes a record; false when there was none.
    async fn remove_record(&self, kind: RecordKind, key: &str) -> Result<bool>;
    /// Every record of a kind, oldest write first.
    async fn records(&self, kind: RecordKind) -> Result<Vec<Record>>;
    /// A cached result.
    async fn cache_get(&self, key: &str) -> Result<Option<CacheEntry>>;
    /// Stores a cached result (replacing one with the same key).
    async fn cache_put(&self, entry: CacheEntry) -> Result<()>;
    /// Every cached result.
    async fn cache_list(&self) -> Result<Vec<CacheEntry>>;
    /// Removes every cached result; returns how many.
    async fn cache_clear(&self) -> Result<usize>;
}
