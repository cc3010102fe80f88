//! A worker: claims ready tasks from a shared [`Store`] and runs them (SPEC
//! §7, §8a): what `orch worker` runs, on as many machines as the store
//! reaches.
//!
//! The loop claims up to its free slots at once (`Store::claim` with a
//! lease and what is free of its declared [`Capacity`]: the store hands out
//! only what fits), and serves each claim on a task of its own:
//! 1. the run's definition is read once per run (`get_run`, `SavedRun`) and
//!    kept in a bounded cache;
//! 2. the release rule decides ([`crate::release::decide`]: the trigger rule
//!    over the dependencies' final states as stored, `when`, `${...}` from
//!    their results and the run's parameters): a step that is skipped, or
//!    whose references do not resolve, is completed so at once;
//! 3. the step holds its share of the worker's declared [`Capacity`] from
//!    its claim on (with a store whose claims cannot fit capacities, the
//!    worker checks: a step that can never fit is handed back for another
//!    worker, one that does not fit now waits);
//! 4. the attempt runs through an [`Executor`] (default
//!    [`default_executor`](crate::executor::default_executor), with the
//!    step's timeout and retries), its lease renewed every lease/3. A renewal
//!    the store refuses means the claim is stale (its lease lapsed and the
//!    task was reclaimed, or its run was cancelled): the attempt is
//!    cancelled (its process group killed) and its outcome dropped. A run
//!    someone asked to cancel is cancelled by the worker that notices it.
//!    Its `tasks_started` event is appended as the attempt starts, not at
//!    the claim: a step skipped at release, or one that only gathers its
//!    fan-out's items, makes no attempt and tells no start;
//! 5. the outcome is completed (the store fences it by attempt number) with
//!    the outcomes of other claims that ended meanwhile, in one
//!    `complete_many` with the `tasks_finished` event that tells followers
//!    of the run.
//!
//! One worker at a time, elected through the store's named lease
//! [`REAPER`] ([`Store::lead`]), reclaims lapsed leases (`reclaim_expired`)
//! every `reclaim_every`; the lease lapses three periods after its holder
//! stops, and another worker takes the job over (a store without leases
//! leaves every worker to reclaim). In the same pass it removes the records
//! of workers lost for longer than their retention
//! ([`forget_lost_workers`]: killed outright, they could not). Every worker
//! writes its [`WorkerRecord`] every few seconds. On shutdown it
//! claims nothing more, waits up to its grace period for what runs, and
//! hands back what still runs (its lease ends at once, so another worker
//! takes it over without waiting for the lease).
//!
//! An idle worker waits for the store's wake-up ([`Store::wake`], e.g.
//! PostgreSQL's LISTEN/NOTIFY) or its poll interval, whichever comes first;
//! another source of wake-ups plugs in through [`WakeUp`].

mod cache;
mod capacity;
mod claim;
mod complete;
mod definitions;
mod fanout;
pub mod queue;
mod registration;
mod started;
mod stop;
mod submit;

pub use capacity::{Capacity, demand};
pub use registration::{
    HeldTask, WorkerRecord, WorkerStatus, Workers, default_forget_after, forget_lost_workers,
    hostname, list_workers, put_worker, read_workers, worker_id,
};
pub use stop::cancel;
pub use submit::{SUBMITTED_OWNER, for_workers, new_run, submit};

use crate::action::ActionRegistry;
use crate::executor::Executor;
use async_trait::async_trait;
use chrono::Utc;
use claim::End;
use definitions::{Definitions, RunDef};
use orch_model::store::{ClaimRequest, Concern};
use orch_model::{Claim, OrchestrationError, RecordKind, RunId, Store, TaskStatus};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// The name of the store lease whose holder reclaims lapsed claims.
pub const REAPER: &str = "reaper";

/// How a worker works.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// Its id, also the lease holder's name (default: [`worker_id`]).
    pub id: String,
    /// Most tasks it holds at once.
    pub slots: usize,
    /// What it can hold at once (default: unlimited).
    pub capacity: Capacity,
    /// The lease of each claim; renewed every third of it.
    pub lease: Duration,
    /// How long an idle worker waits before claiming again.
    pub poll: Duration,
    /// On shutdown, how long running attempts may go on before they are
    /// stopped and handed back.
    pub grace: Duration,
    /// How often it writes its record (at least twice a lease, whatever
    /// this says).
    pub register_every: Duration,
    /// How often it reclaims lapsed leases (when it leads: one worker at a
    /// time does, elected through the store where it can).
    pub reclaim_every: Duration,
    /// How often a running step's run is checked for a cancel request.
    pub cancel_poll: Duration,
    /// Where steps work: this directory for every run; `None`: the
    /// directory the run was submitted from when it exists here, else the
    /// worker's current directory.
    pub work_dir: Option<PathBuf>,
    /// Time between SIGTERM and SIGKILL when a step's process is stopped.
    pub kill_grace: Duration,
    /// Most bytes of stdout and of stderr kept per process.
    pub output_limit: usize,
    /// Where attempts run (`None`: the default stack).
    pub executor: Option<Arc<dyn Executor>>,
    /// What wakes an idle worker before its poll interval ends (`None`: it polls).
    pub wake: Option<Arc<dyn WakeUp>>,
    /// Most run definitions kept parsed.
    pub definitions: usize,
    /// How long its record is kept once it is lost (killed outright, its
    /// machine gone: silent for two leases), for status and health to show
    /// it; then the reclaimer of a live worker removes it, and readers leave
    /// it out even before. `None`: [`default_forget_after`] of its lease.
    pub forget_after: Option<Duration>,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        Self {
            id: worker_id(),
            slots: 4,
            capacity: Capacity::default(),
            lease: Duration::from_secs(30),
            poll: Duration::from_millis(200),
            grace: Duration::from_secs(30),
            register_every: Duration::from_secs(5),
            reclaim_every: Duration::from_secs(5),
            cancel_poll: Duration::from_millis(250),
            work_dir: None,
            kill_grace: Duration::from_secs(2),
            output_limit: 1024 * 1024,
            executor: None,
            wake: None,
            definitions: 64,
            forget_after: None,
        }
    }
}

/// Wakes an idle worker when new work may be ready (a store's notifications,
/// e.g. PostgreSQL's LISTEN/NOTIFY). Without one, the worker polls.
#[async_trait]
pub trait WakeUp: Send + Sync + std::fmt::Debug {
    /// Returns when work may be ready, or after `timeout` at the latest.
    async fn wait_for_work(&self, timeout: Duration);
}

/// What a worker did, when it stops.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WorkerSummary {
    /// Tasks claimed.
    pub claimed: u64,
    /// Completed (succeeded) by it.
    pub completed: u64,
    /// Failed by it (including steps whose references did not resolve).
    pub failed: u64,
    /// Skipped at release.
    pub skipped: u64,
    /// Cancelled (their run was cancelled).
    pub cancelled: u64,
    /// Claims that went stale; their outcome was dropped.
    pub stale: u64,
    /// Claims handed back (on shutdown, or too big for its capacity).
    pub handed_back: u64,
    /// Claims left to lapse because the store failed.
    pub store_errors: u64,
}

/// What every claim of a worker shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) registry: Arc<ActionRegistry>,
    pub(crate) executor: Arc<dyn Executor>,
    pub(crate) opts: WorkerOptions,
    pub(crate) defs: Definitions,
    pub(crate) pool: capacity::Pool,
    /// Cancelled when the grace period of a shutdown is over: attempts stop
    /// and are handed back.
    pub(crate) hard: CancellationToken,
    /// What it holds now, for its record.
    held: Mutex<BTreeMap<(RunId, u32), HeldTask>>,
    cwd: PathBuf,
    /// Set when a claim was handed back for want of capacity: the loop
    /// waits its poll interval before claiming again.
    pub(crate) backoff: std::sync::atomic::AtomicBool,
    /// Whether the store's claims fit what the worker has free (then each
    /// claim's needs are taken from the pool as it arrives).
    pub(crate) fitted: bool,
    /// Where claims put their outcomes, completed in batches.
    pub(crate) completions: complete::Queue,
    queue: Mutex<Option<tokio::sync::mpsc::UnboundedReceiver<complete::Completion>>>,
    /// Where claims tell that their attempt starts, appended in batches.
    pub(crate) starts: started::Starts,
    /// Where the output of its steps goes while they run, in batches.
    pub(crate) output: Option<crate::output::OutputWriter>,
    /// Fan-out steps waiting for their items' run: they take no slot.
    pub(crate) waiting: std::sync::atomic::AtomicUsize,
    /// Cancelled when the worker starts to stop (waiting steps hand back).
    pub(crate) stopping: CancellationToken,
}

impl Shared {
    fn hold(&self, c: &Claim) {
        self.held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(
                (c.run, c.index),
                HeldTask {
                    run: c.run,
                    index: c.index,
                    step: c.name.clone(),
                    attempt: c.attempt,
                    since: Utc::now(),
                },
            );
    }

    pub(crate) fn release_held(&self, c: &Claim) {
        self.held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&(c.run, c.index));
    }

    /// Where a run's steps work on this worker.
    pub(crate) fn work_dir_for(&self, def: &RunDef) -> Arc<Path> {
        let dir = match (&self.opts.work_dir, &def.settings.work_dir) {
            (Some(d), _) => d.clone(),
            (None, Some(d)) if d.is_dir() => d.clone(),
            _ => self.cwd.clone(),
        };
        Arc::from(dir.as_path())
    }
}

/// A worker of a store (see the module's documentation).
#[derive(Debug)]
pub struct Worker {
    shared: Arc<Shared>,
    started_at: chrono::DateTime<Utc>,
}

impl Worker {
    /// A worker claiming from `store`, running the actions of `registry`.
    ///
    /// # Errors
    /// `Unsupported` when the store does not hand out claims;
    /// `InvalidParameters` for zero slots or a lease under 30 ms.
    pub fn new(
        store: Arc<dyn Store>,
        registry: Arc<ActionRegistry>,
        opts: WorkerOptions,
    ) -> Result<Self, OrchestrationError> {
        if !store.capabilities().supports(Concern::Claims) {
            return Err(OrchestrationError::Unsupported {
                message: format!(
                    "the {} store does not hand out claims, so no worker can serve it; use a store that does (sqlite://PATH on one machine, postgres://... across machines)",
                    store.backend()
                ),
            });
        }
        if opts.slots == 0 {
            return Err(OrchestrationError::invalid_parameters(
                "a worker needs at least one slot",
            ));
        }
        if opts.lease < Duration::from_millis(30) {
            return Err(OrchestrationError::invalid_parameters(format!(
                "a worker's lease of {:?} is too short (at least 30ms; it is renewed every third of it)",
                opts.lease
            )));
        }
        let executor = opts
            .executor
            .clone()
            .unwrap_or_else(crate::executor::default_executor);
        let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
        let fitted = store.claims().is_some_and(|c| c.fits_capacity());
        let (completions, queue) = tokio::sync::mpsc::unbounded_channel();
        let output = crate::output::OutputWriter::for_store(&store);
        let starts = started::Starts::new(store.clone(), opts.id.clone());
        Ok(Self {
            shared: Arc::new(Shared {
                output,
                store,
                registry,
                executor,
                defs: Definitions::new(opts.definitions),
                pool: capacity::Pool::new(opts.capacity.clone()),
                hard: CancellationToken::new(),
                held: Mutex::new(BTreeMap::new()),
                cwd,
                backoff: std::sync::atomic::AtomicBool::new(false),
                fitted,
                completions,
                queue: Mutex::new(Some(queue)),
                starts,
                waiting: std::sync::atomic::AtomicUsize::new(0),
                stopping: CancellationToken::new(),
                opts,
            }),
            started_at: Utc::now(),
        })
    }

    /// Its id.
    pub fn id(&self) -> &str {
        &self.shared.opts.id
    }

    /// Its record as of now.
    pub fn record(&self, state: &str) -> WorkerRecord {
        let o = &self.shared.opts;
        WorkerRecord {
            id: o.id.clone(),
            host: hostname(),
            pid: std::process::id(),
            slots: o.slots,
            capacity: o.capacity.to_map(),
            lease_ms: u64::try_from(o.lease.as_millis()).unwrap_or(u64::MAX),
            running: self
                .shared
                .held
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .values()
                .cloned()
                .collect(),
            started_at: self.started_at,
            last_seen: Utc::now(),
            state: state.to_owned(),
            forget_after_ms: Some(
                u64::try_from(
                    o.forget_after
                        .unwrap_or_else(|| default_forget_after(o.lease))
                        .as_millis(),
                )
                .unwrap_or(u64::MAX),
            ),
        }
    }

    async fn register(&self, state: &str) {
        if self.shared.store.record_store().is_some() {
            // Its record is for people; the work goes on without it.
            let _ = put_worker(self.shared.store.as_ref(), &self.record(state)).await;
        }
    }

    /// Claims and runs tasks until `shutdown` is cancelled, then stops as
    /// the module says, removes its record and reports what it did.
    ///
    /// Store errors while claiming do not end the worker: it tries again
    /// after its poll interval (a store that comes back finds it working).
    pub async fn run(self, shutdown: CancellationToken) -> WorkerSummary {
        let sh = self.shared.clone();
        let queue = sh
            .queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        let completer = queue.map(|q| tokio::spawn(complete::batches(sh.clone(), q)));
        let mut summary = WorkerSummary::default();
        let mut running: JoinSet<End> = JoinSet::new();
        let mut next_register = tokio::time::Instant::now();
        let mut next_reclaim = tokio::time::Instant::now();
        let mut next_admit = tokio::time::Instant::now();
        let mut failures = 0u32;
        // What it holds changed since its record was written: the record is
        // written again soon (at most once a second), not at every claim.
        let mut changed = false;
        // Written at least twice a lease: a live worker is never silent for
        // the two leases that make it lost, however short its lease.
        let register_every = sh.opts.register_every.min(sh.opts.lease / 2);
        let soon = register_every.min(Duration::from_secs(1));
        let mut last_register = tokio::time::Instant::now();
        while !shutdown.is_cancelled() {
            while let Some(r) = running.try_join_next() {
                count(&mut summary, r);
                changed = true;
            }
            let now = tokio::time::Instant::now();
            if now >= next_register || (changed && now >= last_register + soon) {
                self.register("running").await;
                last_register = now;
                changed = false;
                next_register = now + register_every;
            }
            if now >= next_reclaim {
                // One worker at a time reclaims: the one that holds the
                // store's `reaper` lease (renewed at each pass; it lapses
                // three passes after its holder stops). A store without
                // leases leaves every worker to reclaim, which is safe.
                let leads = sh
                    .store
                    .lead(REAPER, &sh.opts.id, sh.opts.reclaim_every * 3, Utc::now())
                    .await
                    .unwrap_or(true);
                if leads {
                    let _ = sh.store.reclaim_expired(Utc::now()).await;
                    // And forgets the workers lost for longer than their
                    // retention (killed outright: they cannot remove
                    // their records themselves).
                    match forget_lost_workers(sh.store.as_ref(), Utc::now()).await {
                        Ok(0) => {}
                        Ok(n) => tracing::info!(
                            workers = n,
                            "removed the records of workers lost for longer than their retention"
                        ),
                        Err(e) => {
                            tracing::debug!(error = %e, "the lost workers' records could not be pruned");
                        }
                    }
                }
                next_reclaim = now + sh.opts.reclaim_every;
            }
            if now >= next_admit {
                // Runs queued for a slot of their concurrency key.
                if let Err(e) = queue::admit_queued(sh.store.as_ref()).await {
                    tracing::debug!(error = %e, "the queued runs could not be listed");
                }
                next_admit = now + queue::LOOK_EVERY;
            }
            let busy = running
                .len()
                .saturating_sub(sh.waiting.load(std::sync::atomic::Ordering::Relaxed));
            let free = sh.opts.slots.saturating_sub(busy);
            let mut claimed = 0;
            if free > 0 {
                let mut req = ClaimRequest::new(sh.opts.id.as_str(), free, sh.opts.lease);
                if sh.fitted {
                    req.free = sh.pool.free();
                }
                match sh.store.claim(&req, Utc::now()).await {
                    Ok(claims) => {
                        failures = 0;
                        claimed = claims.len();
                        summary.claimed += claims.len() as u64;
                        let mut deps = definitions::prefetch_deps(sh.store.as_ref(), &claims).await;
                        for c in claims {
                            sh.hold(&c);
                            // The store handed it out as fitting what is
                            // free: its share is held from now on.
                            let reserved = sh.fitted && sh.pool.try_take(&c.needs);
                            let pre = deps.remove(&(c.run, c.index));
                            running.spawn(claim::serve(sh.clone(), c, reserved, pre));
                        }
                        changed |= claimed > 0;
                    }
                    Err(_) => failures = failures.saturating_add(1),
                }
            }
            if sh.backoff.swap(false, std::sync::atomic::Ordering::Relaxed) {
                // A claim was too big for this worker and handed back: it
                // would be claimed again at once.
            } else if claimed == free && free > 0 {
                // There may be more: claim again at once.
                continue;
            }
            // Backs off while the store fails (up to 16 poll intervals).
            let wait = sh.opts.poll * failures.clamp(1, 16);
            let wake = sh.opts.wake.clone();
            let store_wake = sh.store.wake();
            tokio::select! {
                r = running.join_next(), if !running.is_empty() => {
                    if let Some(r) = r {
                        count(&mut summary, r);
                        changed = true;
                    }
                }
                () = async {
                    match (wake, store_wake) {
                        (Some(w), _) => w.wait_for_work(wait).await,
                        (None, Some(w)) => {
                            if w.wait_for_work(wait).await.is_err() {
                                tokio::time::sleep(wait).await;
                            }
                        }
                        (None, None) => tokio::time::sleep(wait).await,
                    }
                } => {}
                () = tokio::time::sleep_until(if changed {
                    next_register.min(last_register + soon)
                } else {
                    next_register
                }) => {}
                () = shutdown.cancelled() => {}
            }
        }
        // Stopping: nothing new is claimed; what runs gets the grace period,
        // and another worker takes over reclaiming at once.
        self.register("stopping").await;
        sh.stopping.cancel();
        let _ = sh.store.resign(REAPER, &sh.opts.id).await;
        let deadline = tokio::time::Instant::now() + sh.opts.grace;
        loop {
            tokio::select! {
                r = running.join_next() => match r {
                    Some(r) => count(&mut summary, r),
                    None => break,
                },
                () = tokio::time::sleep_until(deadline) => {
                    // Past the grace period: stopped and handed back.
                    sh.hard.cancel();
                    while let Some(r) = running.join_next().await {
                        count(&mut summary, r);
                    }
                    break;
                }
            }
        }
        if let Some(c) = completer {
            // Every claim has its answer: the queue is empty.
            c.abort();
        }
        if sh.store.record_store().is_some() {
            let _ = sh
                .store
                .remove_record(RecordKind::Worker, &sh.opts.id)
                .await;
        }
        summary
    }
}

fn count(s: &mut WorkerSummary, r: Result<End, tokio::task::JoinError>) {
    match r {
        Ok(End::Completed(TaskStatus::Completed)) => s.completed += 1,
        Ok(End::Completed(TaskStatus::Skipped)) => s.skipped += 1,
        Ok(End::Completed(TaskStatus::Cancelled)) => s.cancelled += 1,
        Ok(End::Completed(_)) => s.failed += 1,
        Ok(End::Stale) => s.stale += 1,
        Ok(End::HandedBack) => s.handed_back += 1,
        Ok(End::StoreError) | Err(_) => s.store_errors += 1,
    }
}
