//! The data the `Store` contract moves: runs and tasks to create, stored
//! records, claims, outcomes, events, cache entries.

use crate::enums::{ResourceType, TaskPriority, TaskStatus, WorkflowStatus};
use crate::ids::RunId;
use crate::resources::ResourceRequest;
use crate::task::TaskResult;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::time::Duration;

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
    /// The process that drives the run (`None`: nobody yet, as for a run
    /// submitted to workers), recorded with the run itself so that no
    /// reader ever sees the new run without its owner (and takes it for
    /// interrupted).
    #[serde(default)]
    pub owner: Option<String>,
    /// At most how many of its tasks claims hand out at once, to all
    /// claimers together (a submitted run's `max_parallel`; 1 for a
    /// sequential one). `None`: no limit. A run one process drives limits
    /// itself and leaves this `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_parallel: Option<u32>,
}

/// The owner of a run submitted to workers ([`NewRun::owner`]): no one
/// process drives it; the workers of the store do. Claims and reclaims
/// hand out the tasks of such runs (and of runs with no owner) only: a run
/// a process drives (its owner is that process, `PID:START@HOST`) is never
/// claimed by a worker of the same store.
pub const SUBMITTED_OWNER: &str = "workers";

/// The owner of a submitted run that waits for a slot of its workflow's
/// concurrency key: no process drives it, and claims pass over it (its
/// owner is neither [`SUBMITTED_OWNER`] nor nobody), so none of its steps
/// starts until a worker (or its submitter) takes a slot for it and hands
/// it to the workers ([`SUBMITTED_OWNER`]). A [`RecordKind::RunQueued`]
/// record keyed by the run's id says which key it waits for.
pub const QUEUED_OWNER: &str = "queued";

/// A task of a new run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewTask {
    /// The step's name.
    pub name: String,
    /// Indices of the tasks it waits for.
    pub deps: Vec<u32>,
    /// Claim order among ready tasks.
    pub priority: TaskPriority,
    /// What it takes of a worker's capacity while it runs (its step's
    /// resource request, [`ResourceAmounts::of`]); empty: nothing. A claim
    /// hands it only to a worker that has this much free.
    #[serde(default, skip_serializing_if = "ResourceAmounts::is_empty")]
    pub needs: ResourceAmounts,
    /// What a worker needs to run the task without reading the run's whole
    /// definition (a submitted run's step, as JSON text the worker writes
    /// and reads; the store keeps it as it is and hands it out with the
    /// task's claims, [`Claim::spec`]). `None` for a run this process
    /// drives: its definition is in memory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<String>,
}

/// Amounts of resources by kind, in each kind's unit (cores for `cpu`, GiB
/// for `memory` and `disk`, a count for `gpu`; other kinds: the sum of
/// what a request names of them). The same type says what a task needs
/// (a kind it does not name: none) and what a worker has free (a kind it
/// does not name: unlimited).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ResourceAmounts(pub BTreeMap<ResourceType, f64>);

/// Slack in comparisons of amounts (sums of fractions of cores or GiB).
const AMOUNT_EPSILON: f64 = 1e-9;

impl ResourceAmounts {
    /// The key of a step's request that is a kind's amount (`cpu.cores`,
    /// `memory.gb`, `disk.gb`, `gpu.count`); other kinds add up their keys.
    pub fn unit_key(kind: ResourceType) -> Option<&'static str> {
        match kind {
            ResourceType::Cpu => Some("cores"),
            ResourceType::Memory | ResourceType::Disk => Some("gb"),
            ResourceType::Gpu => Some("count"),
            _ => None,
        }
    }

    /// How much of `kind` a request asks for: its amount in the kind's unit,
    /// else the sum of what it asks of the kind.
    pub fn demand(req: &ResourceRequest, kind: ResourceType) -> f64 {
        let Some(m) = req.0.get(&kind) else {
            return 0.0;
        };
        match Self::unit_key(kind).and_then(|k| m.get(k)) {
            Some(v) => *v,
            None => m.values().sum(),
        }
    }

    /// What a step's resource request takes of a worker (kinds asked for
    /// with a positive amount).
    pub fn of(req: &ResourceRequest) -> Self {
        Self(
            req.0
                .keys()
                .map(|&k| (k, Self::demand(req, k)))
                .filter(|(_, v)| *v > 0.0)
                .collect(),
        )
    }

    /// Adds `amount` of `kind`, builder style.
    #[must_use]
    pub fn with(mut self, kind: ResourceType, amount: f64) -> Self {
        self.0.insert(kind, amount);
        self
    }

    /// Whether no kind is named (as needs: nothing; as what is free:
    /// nothing limited). A kind named with 0 is not empty: as what is free,
    /// none of it.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The amount of `kind` (0 when not named).
    pub fn get(&self, kind: ResourceType) -> f64 {
        self.0.get(&kind).copied().unwrap_or(0.0)
    }

    /// As what is free: whether `needs` fits (every kind named here is at
    /// least what `needs` asks of it; kinds not named are not limited).
    pub fn fits(&self, needs: &ResourceAmounts) -> bool {
        self.0
            .iter()
            .all(|(&k, &free)| needs.get(k) <= free + AMOUNT_EPSILON)
    }

    /// As what is free: takes `needs` if it fits (the greedy step of a
    /// claim: candidates in claim order, each taken if it fits what the
    /// ones before it left). False, and nothing taken, when it does not.
    pub fn take_if_fits(&mut self, needs: &ResourceAmounts) -> bool {
        if !self.fits(needs) {
            return false;
        }
        for (k, free) in &mut self.0 {
            *free = (*free - needs.get(*k)).max(0.0);
        }
        true
    }

    /// The amounts in the order of [`ResourceType::ALL`] (0 for a kind not
    /// named): a compact row for a store; `None` when it needs nothing.
    pub fn to_dense(&self) -> Option<Vec<f64>> {
        self.0
            .values()
            .any(|v| *v > 0.0)
            .then(|| ResourceType::ALL.iter().map(|&k| self.get(k)).collect())
    }

    /// The amounts of a row written by [`ResourceAmounts::to_dense`].
    pub fn from_dense(row: &[f64]) -> Self {
        Self(
            ResourceType::ALL
                .iter()
                .zip(row)
                .filter(|(_, v)| **v > 0.0)
                .map(|(&k, &v)| (k, v))
                .collect(),
        )
    }
}

/// What a worker asks of [`ClaimStore::claim`](super::ClaimStore::claim).
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimRequest {
    /// The worker: the lease holder's name.
    pub worker: String,
    /// Most tasks to hand out.
    pub max: usize,
    /// Each claim's lease, from the claim's `now`.
    pub lease: Duration,
    /// What the worker has free: tasks are handed out in claim order while
    /// their needs fit what the ones before them left (a task that does not
    /// fit is passed over and stays ready). A kind not named is not
    /// limited; empty: nothing is.
    pub free: ResourceAmounts,
}

impl ClaimRequest {
    /// Up to `max` tasks for `worker`, each with a lease of `lease`, whatever
    /// their needs.
    pub fn new(worker: impl Into<String>, max: usize, lease: Duration) -> Self {
        Self {
            worker: worker.into(),
            max,
            lease,
            free: ResourceAmounts::default(),
        }
    }

    /// Only what fits `free`, builder style.
    #[must_use]
    pub fn fitting(mut self, free: ResourceAmounts) -> Self {
        self.free = free;
        self
    }
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
    /// A scheduled workflow's state (the last tick dealt with, counts),
    /// keyed by the workflow's name; written by the scheduler that leads.
    Schedule,
    /// A paused schedule, keyed by the workflow's name (no record: active).
    SchedulePause,
    /// One tick of a schedule (fired, missed, failed), keyed by
    /// `WORKFLOW@TIME`; made with `create_record`, so a tick is claimed once.
    ScheduleTick,
    /// What the workers of a submitted run need of it besides its steps
    /// (its settings, parameters and secrets section), keyed by the run's
    /// id: read once per run by each worker, instead of the whole
    /// definition.
    RunContext,
    /// When the steps of a cancelled submitted run that run after a stop
    /// (`finally:`, `run_if: always`, ...) must have ended: its cancel grace
    /// from the cancel, keyed by the run's id; made with `create_record` by
    /// whoever saw the cancel first, so that every worker stops at the same
    /// time.
    RunStop,
    /// A submitted run that waits for a slot of its concurrency key (its
    /// owner is [`QUEUED_OWNER`]): the rendered key, the limit and the
    /// policy, keyed by the run's id; removed when the run gets a slot,
    /// is skipped, or ends.
    RunQueued,
}

impl RecordKind {
    /// The kind's name, as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Session => "session",
            Self::Project => "project",
            Self::Worker => "worker",
            Self::Schedule => "schedule",
            Self::SchedulePause => "schedule_pause",
            Self::ScheduleTick => "schedule_tick",
            Self::RunContext => "run_context",
            Self::RunStop => "run_stop",
            Self::RunQueued => "run_queued",
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    /// What the task takes of the worker's capacity ([`NewTask::needs`]).
    #[serde(default, skip_serializing_if = "ResourceAmounts::is_empty")]
    pub needs: ResourceAmounts,
    /// The task's [`NewTask::spec`], as the run was created with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<String>,
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
