//! `MemoryStore`: the in-process implementation of the `Store` contract (`memory://`).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use orch_model::store::{
    self, CacheEntry, CacheStore, ClaimRequest, ClaimStore, Lease, Record, RecordKind, RecordStore,
    ResourceAmounts, RunRecord, StoredEvent, TakeOver, TaskCounts, TaskRecord,
};
use orch_model::{
    Claim, EntityKind, NewRun, OrchestrationError, Result, RunId, Store, StoreCapabilities,
    TaskOutcome, TaskStatus, WorkflowStatus,
};
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

mod claims;

#[derive(Debug)]
struct RunState {
    record: RunRecord,
    tasks: Vec<TaskRecord>,
    dependents: Vec<Vec<u32>>,
    /// What each task takes of a worker's capacity (empty when no task
    /// needs anything).
    needs: Vec<ResourceAmounts>,
    /// Each task's spec for workers (empty when no task has one).
    specs: Vec<Option<String>>,
    /// At most how many of its tasks claims hand out at once.
    max_parallel: Option<u32>,
    events: Vec<StoredEvent>,
    order: u64,
    /// Tasks not yet in a final state (so "is the run done?" costs O(1)).
    open: usize,
}

#[derive(Debug, Default)]
struct Inner {
    runs: BTreeMap<RunId, RunState>,
    cache: BTreeMap<String, CacheEntry>,
    created: u64,
    /// Records by kind and key, with the order of their last write.
    records: std::collections::HashMap<(RecordKind, String), (u64, Record)>,
    write_seq: u64,
}

impl Inner {
    /// The run `run`, or `NotFound`.
    fn run_mut(&mut self, run: RunId) -> Result<&mut RunState> {
        self.runs
            .get_mut(&run)
            .ok_or_else(|| OrchestrationError::not_found(EntityKind::Run, run.to_string()))
    }
}

/// Everything in memory, behind one lock: each method is one transaction.
#[derive(Debug, Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
    /// Steps' output chunks (`memory_output.rs`), under a lock of their
    /// own: appending output never waits for the scheduler's calls.
    output: Mutex<crate::memory_output::Chunks>,
    /// Named leases (`memory_leader.rs`).
    leases: Mutex<crate::memory_leader::Leases>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// The named leases.
    pub(crate) fn leases(&self) -> std::sync::MutexGuard<'_, crate::memory_leader::Leases> {
        self.leases
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether run `run` has a task `task`.
    pub(crate) fn has_task(&self, run: RunId, task: u32) -> bool {
        self.lock()
            .runs
            .get(&run)
            .is_some_and(|r| (task as usize) < r.tasks.len())
    }

    pub(crate) fn output_chunks(&self) -> std::sync::MutexGuard<'_, crate::memory_output::Chunks> {
        self.output
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn lease_until(now: DateTime<Utc>, lease: Duration) -> DateTime<Utc> {
    now + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::MAX)
}

fn stale(what: &str, claim: &Claim) -> OrchestrationError {
    OrchestrationError::InvalidState {
        message: format!(
            "{what}: attempt {} of task `{}` is no longer current",
            claim.attempt, claim.name
        ),
    }
}

/// Whether task `i` may end in `next` with this attempt (the shared rule).
fn check_finish(run: &RunState, i: u32, attempt: u32, next: TaskStatus) -> Result<()> {
    let t = run
        .tasks
        .get(i as usize)
        .ok_or_else(|| OrchestrationError::InvalidState {
            message: format!("finish: the run has no task {i}"),
        })?;
    store::check_finish(&t.name, t.status, t.attempt, attempt, next)
}

/// Finishes task `i` of `run` (attempt 0: a task that never started) and
/// releases its dependents.
fn finish_one(
    run: &mut RunState,
    i: u32,
    name_for_errors: Option<&Claim>,
    attempt: u32,
    retries: u32,
    outcome: TaskOutcome,
    now: DateTime<Utc>,
) -> Result<()> {
    check_finish(run, i, attempt, outcome.status()).map_err(|e| match name_for_errors {
        Some(c) => stale("complete", c),
        None => e,
    })?;
    apply_finish(run, i, attempt, retries, outcome, now);
    Ok(())
}

/// Finishes task `i` and releases its dependents, once `check_finish` said
/// it may (a task that never started may end from `pending`, through `ready`).
fn apply_finish(
    run: &mut RunState,
    i: u32,
    attempt: u32,
    retries: u32,
    outcome: TaskOutcome,
    now: DateTime<Utc>,
) {
    let t = &mut run.tasks[i as usize];
    t.status = outcome.status();
    t.lease = None;
    t.finished_at = Some(now);
    if attempt > 0 {
        t.attempt = t.attempt.saturating_add(retries);
    }
    run.open = run.open.saturating_sub(1);
    match outcome {
        TaskOutcome::Succeeded { result } | TaskOutcome::Failed { result } => {
            t.result = Some(result)
        }
        TaskOutcome::Skipped { reason } => t.note = Some(reason),
        TaskOutcome::Cancelled => {}
    }
    for &j in &run.dependents[i as usize] {
        let d = &mut run.tasks[j as usize];
        d.remaining = d.remaining.saturating_sub(1);
        if d.remaining == 0 && d.status == TaskStatus::Pending {
            let _ = d.status.transition(TaskStatus::Ready);
        }
    }
}

fn finish_run_if_done(run: &mut RunState, now: DateTime<Utc>) {
    if run.record.status != WorkflowStatus::Running || run.open > 0 {
        return;
    }
    if let Some(status) = store::final_status(&TaskCounts::of(&run.tasks)) {
        run.record.status = status;
        run.record.finished_at = Some(now);
    }
}

/// A run without its definition (which is not copied), with its counts.
fn brief(r: &RunState) -> RunRecord {
    let x = &r.record;
    RunRecord {
        id: x.id,
        workflow: x.workflow.clone(),
        status: x.status,
        created_at: x.created_at,
        finished_at: x.finished_at,
        params: x.params.clone(),
        definition: String::new(),
        owner: x.owner.clone(),
        cancel_requested: x.cancel_requested,
        parent: x.parent,
        // Each task's state only: no result is copied.
        tasks: TaskCounts::of(&r.tasks),
    }
}

#[async_trait]
impl Store for MemoryStore {
    fn capabilities(&self) -> StoreCapabilities {
        StoreCapabilities {
            durable: false,
            distributed_claim: false,
            notify: false,
            claims: true,
            records: true,
            cache: true,
            take_over: true,
            output: true,
            leaders: true,
        }
    }

    fn backend(&self) -> &'static str {
        "memory"
    }

    fn output_store(&self) -> Option<&dyn store::OutputStore> {
        Some(self)
    }

    fn leaders(&self) -> Option<&dyn store::LeaderStore> {
        Some(self)
    }

    fn claims(&self) -> Option<&dyn ClaimStore> {
        Some(self)
    }

    fn record_store(&self) -> Option<&dyn RecordStore> {
        Some(self)
    }

    fn cache_store(&self) -> Option<&dyn CacheStore> {
        Some(self)
    }

    async fn create_run(&self, run: NewRun, now: DateTime<Utc>) -> Result<()> {
        let mut inner = self.lock();
        if inner.runs.contains_key(&run.id) {
            return Err(OrchestrationError::AlreadyExists {
                kind: EntityKind::Run,
                name: run.id.to_string(),
                hint: None,
            });
        }
        let n = run.tasks.len();
        if let Some(t) = run
            .tasks
            .iter()
            .find(|t| t.deps.iter().any(|&d| d as usize >= n))
        {
            return Err(OrchestrationError::invalid_parameters(format!(
                "task `{}` depends on a task index out of range",
                t.name
            )));
        }
        let mut dependents = vec![Vec::new(); n];
        for (i, t) in run.tasks.iter().enumerate() {
            for &d in &t.deps {
                dependents[d as usize].push(i as u32);
            }
        }
        let tasks: Vec<TaskRecord> = run
            .tasks
            .iter()
            .enumerate()
            .map(|(i, t)| TaskRecord {
                run: run.id,
                index: i as u32,
                name: t.name.clone(),
                status: if t.deps.is_empty() {
                    TaskStatus::Ready
                } else {
                    TaskStatus::Pending
                },
                attempt: 0,
                remaining: t.deps.len() as u32,
                priority: t.priority,
                lease: None,
                result: None,
                note: None,
                started_at: None,
                finished_at: None,
            })
            .collect();
        let needs: Vec<ResourceAmounts> = if run.tasks.iter().all(|t| t.needs.is_empty()) {
            Vec::new()
        } else {
            run.tasks.iter().map(|t| t.needs.clone()).collect()
        };
        let specs: Vec<Option<String>> = if run.tasks.iter().all(|t| t.spec.is_none()) {
            Vec::new()
        } else {
            run.tasks.iter().map(|t| t.spec.clone()).collect()
        };
        inner.created += 1;
        let order = inner.created;
        let record = RunRecord {
            id: run.id,
            workflow: run.workflow,
            status: WorkflowStatus::Running,
            created_at: now,
            finished_at: None,
            params: run.params,
            definition: run.definition,
            owner: run.owner,
            cancel_requested: false,
            parent: run.parent,
            tasks: TaskCounts::default(),
        };
        inner.runs.insert(
            run.id,
            RunState {
                open: tasks.len(),
                record,
                tasks,
                dependents,
                needs,
                specs,
                max_parallel: run.max_parallel,
                events: Vec::new(),
                order,
            },
        );
        Ok(())
    }

    async fn get_run(&self, id: RunId) -> Result<Option<RunRecord>> {
        Ok(self.lock().runs.get(&id).map(|r| RunRecord {
            tasks: TaskCounts::of(&r.tasks),
            ..r.record.clone()
        }))
    }

    async fn get_run_brief(&self, id: RunId) -> Result<Option<RunRecord>> {
        Ok(self.lock().runs.get(&id).map(brief))
    }

    async fn list_runs(&self) -> Result<Vec<RunRecord>> {
        let inner = self.lock();
        let mut runs: Vec<&RunState> = inner.runs.values().collect();
        runs.sort_by_key(|r| std::cmp::Reverse(r.order));
        Ok(runs.into_iter().map(brief).collect())
    }

    async fn tasks(&self, run: RunId) -> Result<Vec<TaskRecord>> {
        Ok(self
            .lock()
            .runs
            .get(&run)
            .map(|r| r.tasks.clone())
            .unwrap_or_default())
    }

    async fn start_tasks(
        &self,
        run: RunId,
        tasks: &[u32],
        worker: &str,
        lease: Duration,
        now: DateTime<Utc>,
    ) -> Result<Vec<u32>> {
        let mut inner = self.lock();
        let r = inner.run_mut(run)?;
        // All or nothing: every entry checked first, a task named twice
        // included (its second mention would find it running).
        let mut seen = rustc_hash::FxHashSet::default();
        for &i in tasks {
            if !seen.insert(i) {
                return Err(OrchestrationError::InvalidState {
                    message: format!("start: task {i} is named twice"),
                });
            }
            match r.tasks.get(i as usize) {
                Some(t) => store::check_start(&t.name, t.status)?,
                None => {
                    return Err(OrchestrationError::InvalidState {
                        message: format!("start: the run has no task {i}"),
                    });
                }
            }
        }
        let mut out = Vec::with_capacity(tasks.len());
        for &i in tasks {
            let t = &mut r.tasks[i as usize];
            t.status.transition(TaskStatus::Running)?;
            t.attempt += 1;
            t.started_at = Some(now);
            t.lease = Some(Lease {
                worker: worker.to_owned(),
                until: lease_until(now, lease),
            });
            out.push(t.attempt);
        }
        Ok(out)
    }

    async fn finish_tasks(
        &self,
        run: RunId,
        done: Vec<orch_model::Finished>,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let mut inner = self.lock();
        let r = inner.run_mut(run)?;
        // All or nothing: check every entry first (each task at most once),
        // then apply them all; applying a checked entry cannot fail.
        let mut seen = rustc_hash::FxHashSet::default();
        seen.reserve(done.len());
        for f in &done {
            if !seen.insert(f.index) {
                return Err(OrchestrationError::InvalidState {
                    message: format!("finish: task {} appears twice in one batch", f.index),
                });
            }
            check_finish(r, f.index, f.attempt, f.outcome.status())?;
        }
        for f in done {
            apply_finish(r, f.index, f.attempt, f.retries, f.outcome, now);
        }
        finish_run_if_done(r, now);
        Ok(())
    }

    async fn requeue_running(&self, run: RunId) -> Result<usize> {
        let mut inner = self.lock();
        let r = inner.run_mut(run)?;
        let mut n = 0;
        for t in &mut r.tasks {
            if t.status == TaskStatus::Running && t.status.transition(TaskStatus::Ready).is_ok() {
                t.lease = None;
                n += 1;
            }
        }
        if n > 0 && r.record.status != WorkflowStatus::Running {
            r.record.status = WorkflowStatus::Running;
            r.record.finished_at = None;
        }
        Ok(n)
    }

    async fn finish_run(
        &self,
        run: RunId,
        status: WorkflowStatus,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let mut inner = self.lock();
        let r = inner.run_mut(run)?;
        r.record.status = status;
        r.record.finished_at = Some(now);
        Ok(())
    }

    async fn set_owner(&self, run: RunId, owner: Option<String>) -> Result<()> {
        let mut inner = self.lock();
        let r = inner.run_mut(run)?;
        r.record.owner = owner;
        Ok(())
    }

    async fn take_over(&self, run: RunId, expected: Option<&str>, owner: &str) -> Result<TakeOver> {
        // Compared and set under the store's one lock.
        let mut inner = self.lock();
        let r = inner.run_mut(run)?;
        if r.record.status != WorkflowStatus::Running {
            return Ok(TakeOver::Ended {
                status: r.record.status,
            });
        }
        if r.record.owner.as_deref() != expected {
            return Ok(TakeOver::Held {
                owner: r.record.owner.clone(),
            });
        }
        r.record.owner = Some(owner.to_owned());
        Ok(TakeOver::Taken)
    }

    async fn request_cancel(&self, run: RunId) -> Result<bool> {
        let mut inner = self.lock();
        let r = inner.run_mut(run)?;
        if r.record.status != WorkflowStatus::Running {
            return Ok(false);
        }
        r.record.cancel_requested = true;
        Ok(true)
    }

    async fn cancel_requested(&self, run: RunId) -> Result<bool> {
        // Without copying the run record (and its definition) as `get_run` would.
        Ok(self
            .lock()
            .runs
            .get(&run)
            .is_some_and(|r| r.record.cancel_requested))
    }

    async fn cancel_run(&self, run: RunId, now: DateTime<Utc>) -> Result<()> {
        let mut inner = self.lock();
        let r = inner.run_mut(run)?;
        for t in &mut r.tasks {
            if !t.status.is_terminal() && t.status.transition(TaskStatus::Cancelled).is_ok() {
                t.lease = None;
                t.finished_at = Some(now);
                r.open = r.open.saturating_sub(1);
            }
        }
        finish_run_if_done(r, now);
        Ok(())
    }

    async fn append_events(&self, run: RunId, events: Vec<StoredEvent>) -> Result<()> {
        let mut inner = self.lock();
        let r = inner.run_mut(run)?;
        for mut e in events {
            e.seq = r.events.len() as u64 + 1;
            r.events.push(e);
        }
        Ok(())
    }

    async fn events(&self, run: RunId, after: u64) -> Result<Vec<StoredEvent>> {
        Ok(self
            .lock()
            .runs
            .get(&run)
            .map(|r| r.events.iter().filter(|e| e.seq > after).cloned().collect())
            .unwrap_or_default())
    }
}

#[async_trait]
impl RecordStore for MemoryStore {
    async fn put_record(&self, record: Record) -> Result<()> {
        let mut inner = self.lock();
        inner.write_seq += 1;
        let seq = inner.write_seq;
        inner
            .records
            .insert((record.kind, record.key.clone()), (seq, record));
        Ok(())
    }

    async fn create_record(&self, record: Record) -> Result<bool> {
        let mut inner = self.lock();
        if inner
            .records
            .contains_key(&(record.kind, record.key.clone()))
        {
            return Ok(false);
        }
        inner.write_seq += 1;
        let seq = inner.write_seq;
        inner
            .records
            .insert((record.kind, record.key.clone()), (seq, record));
        Ok(true)
    }

    async fn remove_record(&self, kind: RecordKind, key: &str) -> Result<bool> {
        Ok(self
            .lock()
            .records
            .remove(&(kind, key.to_owned()))
            .is_some())
    }

    async fn remove_record_before(
        &self,
        kind: RecordKind,
        key: &str,
        before: DateTime<Utc>,
    ) -> Result<bool> {
        let mut inner = self.lock();
        let k = (kind, key.to_owned());
        if inner
            .records
            .get(&k)
            .is_some_and(|(_, r)| r.updated_at < before)
        {
            inner.records.remove(&k);
            return Ok(true);
        }
        Ok(false)
    }

    async fn records(&self, kind: RecordKind) -> Result<Vec<Record>> {
        let inner = self.lock();
        let mut v: Vec<&(u64, Record)> = inner
            .records
            .values()
            .filter(|(_, r)| r.kind == kind)
            .collect();
        v.sort_by_key(|(seq, _)| *seq);
        Ok(v.into_iter().map(|(_, r)| r.clone()).collect())
    }

    async fn record(&self, kind: RecordKind, key: &str) -> Result<Option<Record>> {
        let inner = self.lock();
        Ok(inner
            .records
            .get(&(kind, key.to_owned()))
            .map(|(_, r)| r.clone()))
    }
}

#[async_trait]
impl CacheStore for MemoryStore {
    async fn cache_get(&self, key: &str) -> Result<Option<CacheEntry>> {
        Ok(self.lock().cache.get(key).cloned())
    }

    async fn cache_put(&self, entry: CacheEntry) -> Result<()> {
        self.lock().cache.insert(entry.key.clone(), entry);
        Ok(())
    }

    async fn cache_list(&self) -> Result<Vec<CacheEntry>> {
        Ok(self.lock().cache.values().cloned().collect())
    }

    async fn cache_clear(&self) -> Result<usize> {
        let mut inner = self.lock();
        let n = inner.cache.len();
        inner.cache.clear();
        Ok(n)
    }
}
