//! Schedules: the workflows of the engine's workflows directory that say
//! `schedule:` start by themselves (docs/schedules.md).
//!
//! A [`Scheduler`] (started by [`OrchestrationEngine::scheduler`] in `orch
//! serve` and `orch worker`) makes passes: each takes or renews the store's
//! lease `scheduler` (a compare-and-set, [`Store::lead`]); the process that
//! holds it reads every schedule's state, plans the due ticks by the
//! schedule's catch-up policy ([`plan()`]), and fires each one by first
//! creating its tick record with `create_record` (an atomic insert-if-absent
//! keyed `WORKFLOW@TIME`) and only then starting its run, with
//! `${schedule.time}` set. So one process fires each tick even when several
//! run, and a tick is fired at most once even across a change of leader or
//! clocks that disagree: a process that stops between the claim and the
//! run leaves the tick `firing`, without a run (at most once, never twice).
//! Missed ticks are recorded as ranges. Passes take the time as a
//! parameter ([`Scheduler::pass`]); the loop reads it from a [`Clock`], so
//! tests drive time explicitly.
//!
//! `manual.rs` holds what users ask for: listing, pausing, resuming,
//! triggering and backfilling.

mod manual;
pub mod plan;
pub mod records;
pub mod recover;

pub use manual::{BackfillOptions, BackfillTick, ScheduleInfo};
pub use plan::{Missed, Plan, plan};
pub use records::{Pause, ScheduleState, TickCause, TickRecord, TickState, tick_key, tick_text};
pub use recover::Recovered;

use crate::{OrchestrationEngine, RunHandle, RunRequest, RunTarget};
use chrono::{DateTime, Utc};
use orch_model::definition::schedule::{SCHEDULE_TIME_PARAM, Schedule};
use orch_model::{OrchestrationError, RunId, Store, ValidWorkflow};
use serde_json::{Map, Value};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

/// The store lease the firing process holds.
pub const LEASE: &str = "scheduler";

/// Where the scheduler's loop reads the time.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Now.
    fn now(&self) -> DateTime<Utc>;
}

/// The system's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// How a scheduler runs.
#[derive(Debug, Clone)]
pub struct SchedulerOptions {
    /// Its name as the lease's holder and in tick records (default
    /// `HOST-PID-RANDOM`; `orch worker` gives its worker id).
    pub holder: String,
    /// The lease's length: another process takes over at most this long
    /// (plus `poll`) after the holder stops renewing. Default 15 s. A tick
    /// left `firing` this long without its run is taken over by the leader.
    pub lease: Duration,
    /// Longest wait between passes (a pause, a resume or a new workflow is
    /// seen within it); the leader also wakes at each tick. Default 1 s.
    pub poll: Duration,
    /// How often the workflows directory is read again. Default 10 s.
    pub reload_every: Duration,
    /// Submit runs to the store's workers instead of running them here
    /// (`orch worker`). A store that distributes claims submits anyway.
    pub detach: bool,
    /// Tick records kept per workflow (older ones are pruned). Default 100.
    pub history: usize,
    /// Where the loop reads the time.
    pub clock: Arc<dyn Clock>,
}

impl Default for SchedulerOptions {
    fn default() -> Self {
        Self {
            holder: orch_tasks::worker::worker_id(),
            lease: Duration::from_secs(15),
            poll: Duration::from_secs(1),
            reload_every: Duration::from_secs(10),
            detach: false,
            history: 100,
            clock: Arc::new(SystemClock),
        }
    }
}

/// A tick fired by a pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fired {
    /// The workflow.
    pub workflow: String,
    /// The tick.
    pub tick: DateTime<Utc>,
    /// Its run.
    pub run: RunId,
    /// Whether it was a catch-up of a missed tick.
    pub late: bool,
}

/// What one pass did.
#[derive(Debug, Clone, Default)]
pub struct PassReport {
    /// Whether this process held the lease (nothing else happens without it).
    pub leader: bool,
    /// Ticks fired.
    pub fired: Vec<Fired>,
    /// Ticks whose run could not start: workflow, tick, why.
    pub failed: Vec<(String, DateTime<Utc>, String)>,
    /// Ticks missed, per workflow.
    pub missed: Vec<(String, Missed)>,
    /// Due ticks another process had claimed already (a leader that lost
    /// its lease while firing): workflow, tick.
    pub taken: Vec<(String, DateTime<Utc>)>,
    /// Ticks left `firing` by a process that stopped, taken over by this
    /// pass (`recover.rs`).
    pub recovered: Vec<Recovered>,
    /// Problems that did not stop the pass (one schedule's store error).
    pub errors: Vec<String>,
    /// The next tick of any active schedule.
    pub next: Option<DateTime<Utc>>,
}

/// Fires schedules ([`OrchestrationEngine::scheduler`] runs one in a loop).
#[derive(Debug)]
pub struct Scheduler {
    engine: OrchestrationEngine,
    opts: SchedulerOptions,
    /// Runs of this process started by ticks, driven to their end.
    runs: tokio::sync::Mutex<JoinSet<()>>,
    /// When this process last looked for ticks left `firing`.
    last_recovery: std::sync::Mutex<Option<DateTime<Utc>>>,
}

/// How often the leader looks for ticks left `firing` (at most).
const RECOVER_EVERY: chrono::TimeDelta = chrono::TimeDelta::seconds(5);

/// A scheduler running ([`OrchestrationEngine::scheduler`]).
#[derive(Debug)]
pub struct SchedulerHandle {
    holder: String,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl SchedulerHandle {
    /// Its name as the lease's holder.
    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// Asks it to stop: no more passes, and the lease is given up (another
    /// process takes over at once). Runs it started go on.
    pub fn stop(&self) {
        self.stop.cancel();
    }

    /// Waits for it to stop.
    pub async fn join(self) {
        let _ = self.task.await;
    }
}

impl OrchestrationEngine {
    /// Starts a scheduler on the current tokio runtime: it fires the
    /// schedules of the engine's workflows until stopped (or the engine
    /// shuts down).
    ///
    /// # Errors
    /// `Unsupported` when the store keeps no records (ticks are records).
    pub fn scheduler(&self, opts: SchedulerOptions) -> Result<SchedulerHandle, OrchestrationError> {
        let s = Scheduler::new(self.clone(), opts)?;
        let holder = s.opts.holder.clone();
        let stop = self.inner.shutdown.child_token();
        let task = tokio::spawn(s.run(stop.clone()));
        Ok(SchedulerHandle { holder, stop, task })
    }

    /// The workflows of the engine's catalog that have a schedule, by name.
    pub fn scheduled_workflows(&self) -> Vec<(String, Arc<ValidWorkflow>)> {
        let wm = self.workflow_manager();
        wm.list_workflows()
            .into_iter()
            .filter_map(|n| {
                let v = wm.get_valid(&n)?;
                v.workflow().schedule.is_some().then_some((n, v))
            })
            .collect()
    }
}

/// A run of a scheduled workflow started for no tick (`orch run`, the
/// API) has the time it starts (whole seconds) as `${schedule.time}`.
pub(crate) fn default_time(
    wf: &ValidWorkflow,
    params: &mut Map<String, Value>,
    now: DateTime<Utc>,
) {
    if wf.workflow().schedule.is_some() && !params.contains_key(SCHEDULE_TIME_PARAM) {
        use chrono::SubsecRound;
        params.insert(
            SCHEDULE_TIME_PARAM.to_owned(),
            Value::String(tick_text(now.trunc_subsecs(0))),
        );
    }
}

/// The schedule of a workflow known to be scheduled.
fn schedule_of(wf: &ValidWorkflow) -> Option<&Schedule> {
    wf.workflow().schedule.as_ref()
}

/// Why schedules cannot work on a store without records.
pub(crate) fn need_records(store: &dyn Store) -> Result<(), OrchestrationError> {
    if store.capabilities().records {
        Ok(())
    } else {
        Err(OrchestrationError::Unsupported {
            message: format!(
                "the {} store keeps no records, and schedules record their ticks there; use sqlite:// or postgres://",
                store.backend()
            ),
        })
    }
}

/// The run of a tick: claims the tick's record (`create_record`), then
/// starts the run with `${schedule.time}` and records the outcome.
/// `Ok(None)` when the tick was claimed already.
pub(crate) async fn fire(
    engine: &OrchestrationEngine,
    wf: Arc<ValidWorkflow>,
    tick: DateTime<Utc>,
    cause: TickCause,
    by: &str,
    now: DateTime<Utc>,
    detach: bool,
) -> Result<Option<(RunId, RunHandle)>, (RunId, String)> {
    let name = wf.workflow().name.clone();
    let store = engine.store();
    let run = RunId::new();
    let mut rec = TickRecord::new(&name, tick, TickState::Firing, cause, by, now);
    rec.run = Some(run);
    match store.create_record(rec.to_record()).await {
        Ok(true) => {}
        Ok(false) => return Ok(None),
        Err(e) => return Err((run, format!("cannot claim the tick: {e}"))),
    }
    start_claimed(engine, wf, rec, detach).await
}

/// Starts the run of a tick whose record `rec` (state `firing`, with its
/// run id) this process holds, and records the outcome. `Ok(None)` when
/// the tick is not this process's any more (the leader took it over, see
/// `recover.rs`) or its run exists already (started by another process
/// with the same id: the store refuses a second).
pub(crate) async fn start_claimed(
    engine: &OrchestrationEngine,
    wf: Arc<ValidWorkflow>,
    mut rec: TickRecord,
    detach: bool,
) -> Result<Option<(RunId, RunHandle)>, (RunId, String)> {
    let run = rec.run.unwrap_or_default();
    rec.run = Some(run);
    let store = engine.store();
    // Still ours? A process that stalled for longer than the lease after
    // its claim may have been taken over.
    let key = tick_key(&rec.workflow, rec.tick);
    match store
        .record(orch_model::RecordKind::ScheduleTick, &key)
        .await
    {
        Ok(Some(r)) => {
            let now: Option<TickRecord> = serde_json::from_value(r.data).ok();
            if !now
                .is_some_and(|n| n.state == TickState::Firing && n.by == rec.by && n.run == rec.run)
            {
                return Ok(None);
            }
        }
        Ok(None) => return Ok(None),
        Err(e) => return Err((run, format!("cannot read the tick's record: {e}"))),
    }
    let mut params = Map::new();
    params.insert(
        SCHEDULE_TIME_PARAM.to_owned(),
        Value::String(tick_text(rec.tick)),
    );
    let mut req = RunRequest::new(RunTarget::Valid(wf)).params(params);
    req.run_id = Some(run);
    req.detach = detach;
    let started = engine.run(req).await;
    match started {
        Ok(handle) => {
            rec.state = TickState::Fired;
            // The run is started: a failure to note it leaves `firing`
            // (the leader notes it later: the run exists).
            let _ = store.put_record(rec.to_record()).await;
            Ok(Some((run, handle)))
        }
        Err(_) if matches!(store.get_run(run).await, Ok(Some(_))) => {
            // Another process started the run of this id: the tick fired.
            rec.state = TickState::Fired;
            let _ = store.put_record(rec.to_record()).await;
            Ok(None)
        }
        Err(e) => {
            let msg = e.to_string();
            rec.state = TickState::Failed;
            rec.error = Some(msg.clone());
            let _ = store.put_record(rec.to_record()).await;
            Err((run, msg))
        }
    }
}

impl Scheduler {
    /// A scheduler of `engine`'s workflows.
    ///
    /// # Errors
    /// `Unsupported` when the store keeps no records.
    pub fn new(
        engine: OrchestrationEngine,
        opts: SchedulerOptions,
    ) -> Result<Self, OrchestrationError> {
        need_records(engine.store().as_ref())?;
        Ok(Self {
            engine,
            opts,
            runs: tokio::sync::Mutex::new(JoinSet::new()),
            last_recovery: std::sync::Mutex::new(None),
        })
    }

    /// Its options.
    pub fn options(&self) -> &SchedulerOptions {
        &self.opts
    }

    /// One pass at `now`: takes or renews the lease, and when it holds it,
    /// fires and records what is due. Runs started here go on as tasks of
    /// the current runtime (submitted ones are left to the workers).
    ///
    /// # Errors
    /// The store's, when the lease or the schedules' records cannot be read.
    pub async fn pass(&self, now: DateTime<Utc>) -> Result<PassReport, OrchestrationError> {
        let store = self.engine.store().clone();
        let mut report = PassReport::default();
        let scheduled = self.engine.scheduled_workflows();
        // Nothing to fire and no tick to take over: no need to lead (leading
        // is a write a second, which an idle `orch serve` need not make).
        let mut early = None;
        if scheduled.is_empty() {
            let stale = self.stale_ticks(now).await?;
            if stale.is_empty() {
                return Ok(report);
            }
            early = Some(stale);
        }
        let leads = if store.capabilities().leaders {
            store
                .lead(LEASE, &self.opts.holder, self.opts.lease, now)
                .await?
        } else {
            // One process alone with its store (memory://).
            true
        };
        if !leads {
            return Ok(report);
        }
        report.leader = true;
        let mut stale = match early {
            Some(stale) => stale,
            None => self.stale_ticks(now).await?,
        };
        if scheduled.is_empty() && stale.is_empty() {
            return Ok(report);
        }
        let states = records::states(store.as_ref()).await?;
        let pauses = records::pauses(store.as_ref()).await?;
        // Stale ticks of workflows that no longer have a schedule: missed.
        let gone: Vec<String> = stale
            .keys()
            .filter(|w| !scheduled.iter().any(|(n, _)| n == *w))
            .cloned()
            .collect();
        for name in gone {
            let ticks = stale.remove(&name).unwrap_or_default();
            let mut state = ScheduleState::default();
            if let Err(e) = self
                .recover(&name, None, &mut state, ticks, now, false, &mut report)
                .await
            {
                report
                    .errors
                    .push(format!("ticks of `{name}` left firing: {e}"));
            }
        }
        for (name, wf) in scheduled {
            let Some(s) = schedule_of(&wf) else { continue };
            let paused = pauses.contains_key(&name);
            if !paused {
                if let Some(n) = s.next_after(now) {
                    report.next = Some(report.next.map_or(n, |m| m.min(n)));
                }
            }
            let mut state = states.get(&name).cloned().unwrap_or_default();
            let mut dirty = false;
            if let Some(ticks) = stale.remove(&name) {
                match self
                    .recover(
                        &name,
                        Some(&wf),
                        &mut state,
                        ticks,
                        now,
                        paused,
                        &mut report,
                    )
                    .await
                {
                    Ok(changed) => dirty = changed,
                    Err(e) => report
                        .errors
                        .push(format!("ticks of `{name}` left firing: {e}")),
                }
            }
            if let Err(e) = self
                .one(&name, &wf, &mut state, now, paused, dirty, &mut report)
                .await
            {
                report.errors.push(format!("schedule of `{name}`: {e}"));
            }
        }
        Ok(report)
    }

    /// The `firing` tick records older than the lease, by workflow, at
    /// most every [`RECOVER_EVERY`] (none in between).
    async fn stale_ticks(
        &self,
        now: DateTime<Utc>,
    ) -> Result<std::collections::HashMap<String, Vec<TickRecord>>, OrchestrationError> {
        let mut out = std::collections::HashMap::new();
        {
            let mut last = self
                .last_recovery
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if last.is_some_and(|l| l <= now && now < l + RECOVER_EVERY) {
                return Ok(out);
            }
            *last = Some(now);
        }
        let bound = chrono::TimeDelta::from_std(self.opts.lease).unwrap_or(chrono::TimeDelta::MAX);
        for t in records::ticks(self.engine.store().as_ref(), None).await? {
            if t.state == TickState::Firing
                && t.at.checked_add_signed(bound).is_some_and(|b| b <= now)
            {
                out.entry(t.workflow.clone())
                    .or_insert_with(Vec::new)
                    .push(t);
            }
        }
        for v in out.values_mut() {
            v.sort_by_key(|t| t.tick);
        }
        Ok(out)
    }

    /// Deals with one schedule's due ticks and writes its state (also when
    /// nothing is due but `dirty` says it changed).
    #[allow(clippy::too_many_arguments)]
    async fn one(
        &self,
        name: &str,
        wf: &Arc<ValidWorkflow>,
        state: &mut ScheduleState,
        now: DateTime<Utc>,
        paused: bool,
        dirty: bool,
        report: &mut PassReport,
    ) -> Result<(), OrchestrationError> {
        let store = self.engine.store().clone();
        let Some(s) = schedule_of(wf) else {
            return Ok(());
        };
        let Some(mark) = state.mark else {
            // First seen now: ticks from here on are due, none before.
            state.mark = Some(now);
            return records::put_state(store.as_ref(), name, state, now).await;
        };
        let p = plan(s, mark, now, paused);
        if p.is_empty() {
            if dirty {
                return records::put_state(store.as_ref(), name, state, now).await;
            }
            return Ok(());
        }
        let missed = match p.missed {
            Some(m) => self.not_recorded(name, s, m).await?,
            None => None,
        };
        if let Some(m) = missed {
            let cause = if paused {
                TickCause::Paused
            } else {
                TickCause::CatchUp
            };
            let mut rec = TickRecord::new(
                name,
                m.first,
                TickState::Missed,
                cause,
                &self.opts.holder,
                now,
            );
            rec.last = (m.last != m.first).then_some(m.last);
            rec.count = m.count;
            rec.more = m.more;
            // A range already recorded (by a leader before) stays as it was.
            if store.create_record(rec.to_record()).await? {
                state.since_prune += 1;
            }
            state.missed += m.count;
            report.missed.push((name.to_owned(), m));
        }
        for (tick, late) in p.fire {
            let cause = if late {
                TickCause::CatchUp
            } else {
                TickCause::Schedule
            };
            match fire(
                &self.engine,
                wf.clone(),
                tick,
                cause,
                &self.opts.holder,
                now,
                self.opts.detach,
            )
            .await
            {
                Ok(Some((run, handle))) => {
                    state.fired += 1;
                    state.since_prune += 1;
                    state.last_fired = Some((tick, run));
                    report.fired.push(Fired {
                        workflow: name.to_owned(),
                        tick,
                        run,
                        late,
                    });
                    self.drive(handle).await;
                }
                Ok(None) => report.taken.push((name.to_owned(), tick)),
                Err((_, e)) => {
                    state.failed += 1;
                    state.since_prune += 1;
                    tracing::warn!(workflow = name, tick = %tick_text(tick), error = %e, "a scheduled run did not start");
                    report.failed.push((name.to_owned(), tick, e));
                }
            }
        }
        state.mark = p.mark.max(Some(mark));
        if state.since_prune as usize >= self.opts.history.div_ceil(2).max(1) {
            records::prune(store.as_ref(), name, self.opts.history).await?;
            state.since_prune = 0;
        }
        records::put_state(store.as_ref(), name, state, now).await
    }

    /// The ticks of `m` that no scheduler has recorded. A leader that
    /// stopped after it recorded a tick (claimed, fired) and before it wrote
    /// the schedule's new mark leaves ticks after the mark that were dealt
    /// with: they are not missed, and the range's record, keyed by its
    /// first tick, would otherwise collide with that tick's record and not
    /// be written at all. Read only when ticks were missed (rare: after a
    /// stop, a lapsed lease or a pause).
    async fn not_recorded(
        &self,
        name: &str,
        s: &Schedule,
        m: Missed,
    ) -> Result<Option<Missed>, OrchestrationError> {
        let done = records::ticks(self.engine.store().as_ref(), Some(name))
            .await?
            .into_iter()
            // The scheduler's own records: a trigger or a backfill may
            // record any tick and says nothing of the ticks before it.
            .filter(|t| {
                matches!(
                    t.cause,
                    TickCause::Schedule | TickCause::CatchUp | TickCause::Paused
                ) && t.tick <= m.last
            })
            .map(|t| t.last.unwrap_or(t.tick).min(m.last))
            .max();
        Ok(match done {
            Some(d) => plan::after_recorded(s, m, d),
            None => Some(m),
        })
    }

    /// Keeps a run started here going to its end (dropping its handle
    /// would abort it); a submitted run is the workers'.
    async fn drive(&self, handle: RunHandle) {
        if self.opts.detach || self.engine.store().capabilities().distributed_claim {
            return;
        }
        let mut runs = self.runs.lock().await;
        while runs.try_join_next().is_some() {}
        runs.spawn(async move {
            let _ = handle.report().await;
        });
    }

    /// Waits for the runs this scheduler started here to end (tests, and
    /// a caller that stops the process only after them).
    pub async fn wait_for_runs(&self) {
        let mut runs = self.runs.lock().await;
        while runs.join_next().await.is_some() {}
    }

    /// Passes until `shutdown`: the leader wakes at the next tick or after
    /// `poll`, whichever is first; the others try for the lease every
    /// `poll`. On the way out the lease is given up.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut last_reload = tokio::time::Instant::now();
        let mut failures = 0u32;
        while !shutdown.is_cancelled() {
            if last_reload.elapsed() >= self.opts.reload_every {
                let _ = self.engine.workflow_manager().reload();
                last_reload = tokio::time::Instant::now();
            }
            let now = self.opts.clock.now();
            let mut wait = self.opts.poll;
            match self.pass(now).await {
                Ok(r) => {
                    failures = 0;
                    for e in &r.errors {
                        tracing::warn!(error = %e, "schedules");
                    }
                    if let Some(next) = r.next.filter(|_| r.leader) {
                        let until = next.signed_duration_since(self.opts.clock.now());
                        wait = wait.min(until.to_std().unwrap_or(Duration::ZERO));
                    }
                }
                Err(e) => {
                    // A store that fails is tried again, less often.
                    failures = failures.saturating_add(1);
                    tracing::warn!(error = %e, "schedules: a pass failed");
                    wait = self.opts.poll * failures.clamp(1, 10);
                }
            }
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = shutdown.cancelled() => {}
            }
        }
        let store = self.engine.store();
        if store.capabilities().leaders {
            let _ = store.resign(LEASE, &self.opts.holder).await;
        }
        // Runs started here are not waited for: the engine's shutdown
        // gives them its grace period.
        let mut runs = self.runs.into_inner();
        runs.detach_all();
    }
}
