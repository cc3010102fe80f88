//! The `Store` contract: durable runs, tasks, claims with leases and fencing, events and cache entries.
//!
//! orch-model defines the contract; backends implement it beside it
//! (in-memory in orch-tasks, SQLite and PostgreSQL in their own crates), and
//! only the engine and the CLI pick one. The contract is grouped by concern
//! (runs, the local journal, events; optional: claims, records, the cache),
//! the rules every backend applies are pure functions here (`rules.rs`), and
//! the conformance suite (`orch_model::testkit`, feature `testkit`) runs
//! against every backend, one test per rule.

mod concerns;
mod leader;
mod output;
mod progress;
mod rules;
mod types;
mod url;

pub use concerns::{CacheStore, ClaimStore, RecordStore, WakeStore};
pub use leader::{LeaderStore, lease_end};
pub use output::{
    CHUNK_BYTES, FLUSH_INTERVAL, OutputChunk, OutputSoFar, OutputStore, OutputStream,
};
pub use progress::{Progress, TASKS_FINISHED, TASKS_STARTED};
pub use rules::{
    Concern, RunState, check_finish, check_start, final_status, started_attempts, store_error,
    unsupported,
};
pub use types::{
    CacheEntry, Claim, ClaimRequest, Finished, Lease, NewRun, NewTask, QUEUED_OWNER, Record,
    RecordKind, ResourceAmounts, RunRecord, SUBMITTED_OWNER, StoredEvent, TakeOver, TaskCounts,
    TaskOutcome, TaskRecord,
};
pub use url::redact_url;

use crate::enums::WorkflowStatus;
use crate::error::Result;
use crate::ids::RunId;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
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
    /// Claims with leases and fencing work ([`ClaimStore`]), if only
    /// within this process.
    #[serde(default)]
    pub claims: bool,
    /// Records of the layers above are kept ([`RecordStore`]).
    #[serde(default)]
    pub records: bool,
    /// Results can be cached ([`CacheStore`]).
    #[serde(default)]
    pub cache: bool,
    /// A run can be taken over atomically ([`Store::take_over`]), so it can
    /// be resumed safely.
    #[serde(default)]
    pub take_over: bool,
    /// A step's output is kept while it is produced ([`OutputStore`]).
    #[serde(default)]
    pub output: bool,
    /// Named leases elect one holder at a time ([`LeaderStore`]).
    #[serde(default)]
    pub leaders: bool,
}

impl StoreCapabilities {
    /// Whether the backend supports `concern`.
    pub fn supports(&self, concern: Concern) -> bool {
        match concern {
            Concern::Claims => self.claims,
            Concern::Records => self.records,
            Concern::Cache => self.cache,
            Concern::TakeOver => self.take_over,
            Concern::Output => self.output,
            Concern::Leaders => self.leaders,
        }
    }
}

/// Durable state of runs and the hand-out of work.
///
/// # Contract
/// - `create_run` stores a run and its tasks at once; tasks without
///   dependencies are `ready`, the others `pending` with `remaining` set.
/// - `claim` hands out up to `max` ready tasks, highest priority first, then
///   lowest index, across runs, each only if its needs fit what the
///   claimer has left free; each becomes `running` with `attempt`
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
/// # Concerns
/// The contract is grouped by concern. Every backend keeps **runs**, the
/// **local journal** (what a run driven by one process commits) and
/// **events**: the methods of those sections have no default (or a default
/// built on the others). **Claims** ([`ClaimStore`]), **records**
/// ([`RecordStore`]), the **cache** ([`CacheStore`]) and steps' **output**
/// while it is produced ([`OutputStore`]) are traits of their own: a
/// backend that supports one implements it and returns itself from the
/// accessor ([`Store::claims`], [`Store::record_store`],
/// [`Store::cache_store`], [`Store::output_store`]);
/// [`Store::capabilities`] says the same. Callers
/// call the methods on `Store` as before (`store.claim(..)`): for a concern
/// the backend leaves out, they fail with `Unsupported` naming the backend
/// and the concern ([`unsupported`]). `take_over` is optional the same way
/// (its default refuses).
///
/// # Implementing
/// Map backend errors to `OrchestrationError::Store` with [`store_error`]
/// (the message names the backend and carries the source error; retryable
/// when trying again may help); never expose a driver's error type. Apply
/// the shared rules instead of copying them: [`check_finish`] and
/// [`check_start`] (fencing and the task life cycle), [`final_status`] (a
/// run's status from its tasks). Run the conformance suite in the backend's
/// tests: `orch_model::store_conformance_tests!(make_store())` (feature
/// `testkit`) makes one test per rule.
#[async_trait]
pub trait Store: Send + Sync + fmt::Debug {
    // ----- What the backend is -----

    /// The backend's name, for messages (`memory`, `sqlite`, ...).
    fn backend(&self) -> &'static str {
        "custom"
    }
    /// What the backend can do.
    fn capabilities(&self) -> StoreCapabilities;

    // ----- Runs (every backend) -----

    /// Stores a new run.
    async fn create_run(&self, run: NewRun, now: DateTime<Utc>) -> Result<()>;
    /// One run.
    async fn get_run(&self, id: RunId) -> Result<Option<RunRecord>>;
    /// One run without its definition (`definition` is empty, as
    /// [`Store::list_runs`] gives runs), with its task counts: for a
    /// caller that shows a run's state. A backend that can skip reading
    /// the definition should.
    async fn get_run_brief(&self, id: RunId) -> Result<Option<RunRecord>> {
        Ok(self.get_run(id).await?.map(|r| RunRecord {
            definition: String::new(),
            ..r
        }))
    }
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
    /// The tasks `indices` of a run, in the order given (an index the run
    /// does not have is left out): what a worker reads of a claimed task's
    /// dependencies. This default asks the backend's claims
    /// ([`ClaimStore::task_records`]), else reads every task of the run with
    /// [`Store::tasks`].
    async fn task_records(&self, run: RunId, indices: &[u32]) -> Result<Vec<TaskRecord>> {
        if let Some(c) = self.claims() {
            return c.task_records(run, indices).await;
        }
        let all = self.tasks(run).await?;
        Ok(indices
            .iter()
            .filter_map(|&i| all.get(i as usize).filter(|t| t.index == i).cloned())
            .collect())
    }
    /// Cancels what is left of a run.
    async fn cancel_run(&self, run: RunId, now: DateTime<Utc>) -> Result<()>;
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
    /// not pretend to: this default refuses with `Unsupported` (and its
    /// capabilities say `take_over: false`).
    async fn take_over(&self, run: RunId, expected: Option<&str>, owner: &str) -> Result<TakeOver> {
        let _ = (run, expected, owner);
        Err(unsupported(self.backend(), Concern::TakeOver, "take_over"))
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

    // ----- The local journal: a run driven by one process (every backend) -----

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
    /// A locally driven run's turn: `start_tasks` of `start`, then
    /// `finish_and_append` of `done` and `events`. An entry of `done` whose
    /// task is in `start` ends with the attempt this start gives it (its own
    /// `attempt` is not read); the others are fenced as `finish_tasks` says.
    /// Returns the attempt numbers of `start`, in order. A backend that can
    /// do it in one transaction (one commit: a step started and finished in
    /// the same turn is recorded as both, or as neither) should; this
    /// default makes the two calls, so that a failed finish leaves the start
    /// committed.
    #[allow(clippy::too_many_arguments)]
    async fn start_and_finish(
        &self,
        run: RunId,
        start: &[u32],
        worker: &str,
        lease: Duration,
        mut done: Vec<Finished>,
        events: Vec<StoredEvent>,
        now: DateTime<Utc>,
    ) -> Result<Vec<u32>> {
        let given = if start.is_empty() {
            Vec::new()
        } else {
            self.start_tasks(run, start, worker, lease, now).await?
        };
        started_attempts(start, &given, &mut done);
        self.finish_and_append(run, done, events, now).await?;
        Ok(given)
    }
    /// Makes a run's running tasks ready again; returns how many.
    async fn requeue_running(&self, run: RunId) -> Result<usize>;

    // ----- Events (every backend) -----

    /// Appends events to a run's log (their `seq` is assigned by the store).
    async fn append_events(&self, run: RunId, events: Vec<StoredEvent>) -> Result<()>;
    /// A run's events with `seq > after`, in order.
    async fn events(&self, run: RunId, after: u64) -> Result<Vec<StoredEvent>>;

    // ----- Optional concerns: each a trait of its own -----

    /// The backend's claims, if it supports them.
    fn claims(&self) -> Option<&dyn ClaimStore> {
        None
    }
    /// The backend's records, if it keeps them.
    fn record_store(&self) -> Option<&dyn RecordStore> {
        None
    }
    /// The backend's result cache, if it has one.
    fn cache_store(&self) -> Option<&dyn CacheStore> {
        None
    }
    /// What wakes idle workers when work may be ready, if the backend can
    /// (otherwise workers poll).
    fn wake(&self) -> Option<&dyn WakeStore> {
        None
    }
    /// The backend's output chunks, if it keeps a step's output while it
    /// is produced. A wrapper store must forward this (and the other
    /// accessors), or the concern is lost behind it.
    fn output_store(&self) -> Option<&dyn OutputStore> {
        None
    }
    /// The backend's named leases, if it can elect one holder at a time.
    fn leaders(&self) -> Option<&dyn LeaderStore> {
        None
    }

    // ----- Claims (optional: `claims()`; `Unsupported` without) -----

    /// Claims ready tasks that fit what the worker has free
    /// ([`ClaimStore::claim`]).
    async fn claim(&self, req: &ClaimRequest, now: DateTime<Utc>) -> Result<Vec<Claim>> {
        match self.claims() {
            Some(c) => c.claim(req, now).await,
            None => Err(unsupported(self.backend(), Concern::Claims, "claim")),
        }
    }
    /// Renews a lease; false when the claim is stale ([`ClaimStore::heartbeat`]).
    async fn heartbeat(&self, claim: &Claim, lease: Duration, now: DateTime<Utc>) -> Result<bool> {
        match self.claims() {
            Some(c) => c.heartbeat(claim, lease, now).await,
            None => Err(unsupported(self.backend(), Concern::Claims, "heartbeat")),
        }
    }
    /// Finishes a claimed task and releases its dependents, atomically
    /// ([`ClaimStore::complete`]).
    async fn complete(
        &self,
        claim: &Claim,
        outcome: TaskOutcome,
        now: DateTime<Utc>,
    ) -> Result<()> {
        match self.claims() {
            Some(c) => c.complete(claim, outcome, now).await,
            None => Err(unsupported(self.backend(), Concern::Claims, "complete")),
        }
    }
    /// Completes many claims in one transaction, with `events` when all
    /// completed; one answer per claim ([`ClaimStore::complete_many`]).
    async fn complete_many(
        &self,
        done: Vec<(Claim, TaskOutcome)>,
        events: Vec<(RunId, StoredEvent)>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Result<()>>> {
        match self.claims() {
            Some(c) => c.complete_many(done, events, now).await,
            None => Err(unsupported(
                self.backend(),
                Concern::Claims,
                "complete_many",
            )),
        }
    }
    /// Hands a claim back, ready again now; false when it is stale
    /// ([`ClaimStore::release_claim`]).
    async fn release_claim(&self, claim: &Claim, now: DateTime<Utc>) -> Result<bool> {
        match self.claims() {
            Some(c) => c.release_claim(claim, now).await,
            None => Err(unsupported(
                self.backend(),
                Concern::Claims,
                "release_claim",
            )),
        }
    }
    /// Makes tasks with lapsed leases ready again; returns how many
    /// ([`ClaimStore::reclaim_expired`]).
    async fn reclaim_expired(&self, now: DateTime<Utc>) -> Result<usize> {
        match self.claims() {
            Some(c) => c.reclaim_expired(now).await,
            None => Err(unsupported(
                self.backend(),
                Concern::Claims,
                "reclaim_expired",
            )),
        }
    }

    // ----- Leaders (optional: `leaders()`; `Unsupported` without) -----

    /// Takes or renews a named lease ([`LeaderStore::lead`]).
    async fn lead(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        match self.leaders() {
            Some(l) => l.lead(name, holder, ttl, now).await,
            None => Err(unsupported(self.backend(), Concern::Leaders, "lead")),
        }
    }
    /// Gives a named lease up ([`LeaderStore::resign`]).
    async fn resign(&self, name: &str, holder: &str) -> Result<bool> {
        match self.leaders() {
            Some(l) => l.resign(name, holder).await,
            None => Err(unsupported(self.backend(), Concern::Leaders, "resign")),
        }
    }
    /// Who holds a named lease ([`LeaderStore::leader`]).
    async fn leader(
        &self,
        name: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<(String, DateTime<Utc>)>> {
        match self.leaders() {
            Some(l) => l.leader(name, now).await,
            None => Err(unsupported(self.backend(), Concern::Leaders, "leader")),
        }
    }

    // ----- Output (optional: `output_store()`; `Unsupported` without) -----

    /// Appends chunks of steps' output ([`OutputStore::append_output`]).
    async fn append_output(&self, chunks: Vec<OutputChunk>) -> Result<()> {
        match self.output_store() {
            Some(o) => o.append_output(chunks).await,
            None => Err(unsupported(
                self.backend(),
                Concern::Output,
                "append_output",
            )),
        }
    }
    /// A step's chunks after a cursor ([`OutputStore::output`]).
    async fn output(
        &self,
        run: RunId,
        task: u32,
        after: u64,
        limit: usize,
    ) -> Result<Vec<OutputChunk>> {
        match self.output_store() {
            Some(o) => o.output(run, task, after, limit).await,
            None => Err(unsupported(self.backend(), Concern::Output, "output")),
        }
    }

    // ----- Records (optional: `record_store()`; `Unsupported` without) -----

    /// Saves a record, replacing the one of the same kind and key.
    async fn put_record(&self, record: Record) -> Result<()> {
        match self.record_store() {
            Some(r) => r.put_record(record).await,
            None => Err(unsupported(self.backend(), Concern::Records, "put_record")),
        }
    }
    /// Saves a record only if none of its kind and key exists, atomically
    /// ([`RecordStore::create_record`]); false when one exists.
    async fn create_record(&self, record: Record) -> Result<bool> {
        match self.record_store() {
            Some(r) => r.create_record(record).await,
            None => Err(unsupported(
                self.backend(),
                Concern::Records,
                "create_record",
            )),
        }
    }
    /// Removes a record; false when there was none.
    async fn remove_record(&self, kind: RecordKind, key: &str) -> Result<bool> {
        match self.record_store() {
            Some(r) => r.remove_record(kind, key).await,
            None => Err(unsupported(
                self.backend(),
                Concern::Records,
                "remove_record",
            )),
        }
    }
    /// Removes a record only when it was last written before `before`,
    /// atomically ([`RecordStore::remove_record_before`]).
    async fn remove_record_before(
        &self,
        kind: RecordKind,
        key: &str,
        before: DateTime<Utc>,
    ) -> Result<bool> {
        match self.record_store() {
            Some(r) => r.remove_record_before(kind, key, before).await,
            None => Err(unsupported(
                self.backend(),
                Concern::Records,
                "remove_record_before",
            )),
        }
    }
    /// Every record of a kind, oldest write first.
    async fn records(&self, kind: RecordKind) -> Result<Vec<Record>> {
        match self.record_store() {
            Some(r) => r.records(kind).await,
            None => Err(unsupported(self.backend(), Concern::Records, "records")),
        }
    }
    /// The record of a kind and key ([`RecordStore::record`]).
    async fn record(&self, kind: RecordKind, key: &str) -> Result<Option<Record>> {
        match self.record_store() {
            Some(r) => r.record(kind, key).await,
            None => Err(unsupported(self.backend(), Concern::Records, "record")),
        }
    }

    // ----- The result cache (optional: `cache_store()`; `Unsupported` without) -----

    /// A cached result.
    async fn cache_get(&self, key: &str) -> Result<Option<CacheEntry>> {
        match self.cache_store() {
            Some(c) => c.cache_get(key).await,
            None => Err(unsupported(self.backend(), Concern::Cache, "cache_get")),
        }
    }
    /// Stores a cached result (replacing one with the same key).
    async fn cache_put(&self, entry: CacheEntry) -> Result<()> {
        match self.cache_store() {
            Some(c) => c.cache_put(entry).await,
            None => Err(unsupported(self.backend(), Concern::Cache, "cache_put")),
        }
    }
    /// Every cached result.
    async fn cache_list(&self) -> Result<Vec<CacheEntry>> {
        match self.cache_store() {
            Some(c) => c.cache_list().await,
            None => Err(unsupported(self.backend(), Concern::Cache, "cache_list")),
        }
    }
    /// Removes every cached result; returns how many.
    async fn cache_clear(&self) -> Result<usize> {
        match self.cache_store() {
            Some(c) => c.cache_clear().await,
            None => Err(unsupported(self.backend(), Concern::Cache, "cache_clear")),
        }
    }
}
