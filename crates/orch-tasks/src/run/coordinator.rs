//! The main loop: `run_workflow` starts ready steps by priority within the
//! mode's limits, collects their outcomes, and ends the run; `drive` runs it as
//! a task of the runtime.

use super::attempt::run_immediate;
use super::journal::{CANCEL_POLL, create_run, flush, journal_turn, open_journal, record_starts};
use super::options::{RunOptions, RunReport, StepReport};
use super::preflight::{check_resources, lookup_actions, merge_params};
use super::queue::Hot;
use super::state::State;
use crate::action::{ActionContext, ActionRegistry};
use crate::event::Event;
use crate::executor::{Attempt, AttemptPolicy, ChannelSink, Outcome, OutcomeSink};
use crate::release::{ReadyQueue, slot_limit};
use chrono::Utc;
use orch_model::CompactString;
use orch_model::{ExecutionMode, OrchestrationError, TaskStatus, ValidWorkflow, WorkflowStatus};
use orch_resources::ResourceManager;
use serde_json::{Map, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedSender;
use tokio_util::sync::CancellationToken;

/// Drives `run` (typically a `run_workflow` future that owns its inputs)
/// as a task of the current tokio runtime, and waits for it. Dropping the
/// returned future aborts the task, as dropping `run` itself would.
///
/// Why: a future polled by `Runtime::block_on` runs on the caller's thread,
/// so every step that finishes on a worker must wake that thread (about
/// 35 µs on a 2-core VM, measured by `scheduler-report`). Driven from a task,
/// the coordinator is woken on the worker that finished the step (tokio's
/// LIFO slot), and dependency-to-dependent latency drops to about 1 µs.
///
/// # Errors
/// `run`'s own error, or `TaskExecution` when the task panicked.
///
/// # Panics
/// Outside a tokio runtime, as `tokio::spawn` does.
pub async fn drive<T, F>(run: F) -> Result<T, OrchestrationError>
where
    T: Send + 'static,
    F: std::future::Future<Output = Result<T, OrchestrationError>> + Send + 'static,
{
    struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);
    impl<T> Drop for AbortOnDrop<T> {
        fn drop(&mut self) {
            self.0.abort();
        }
    }
    // The run's task goes on in the caller's span (the run's, see orch-workflows).
    let mut task = AbortOnDrop(tokio::spawn(tracing::Instrument::in_current_span(run)));
    match (&mut task.0).await {
        Ok(r) => r,
        Err(e) => Err(OrchestrationError::TaskExecution {
            message: format!("the run's task ended abnormally: {e}"),
        }),
    }
}

/// Runs a validated workflow to the end and reports every step.
///
/// # Errors
/// Only for problems found before anything runs: unknown modules, bad
/// parameters, or a mode that is not supported yet. A step that runs and
/// fails is part of the report, not an error.
pub async fn run_workflow(
    wf: &ValidWorkflow,
    registry: &ActionRegistry,
    opts: RunOptions,
    events: Option<UnboundedSender<Event>>,
) -> Result<RunReport, OrchestrationError> {
    // One stream: the channel and the options' sink get every event, in order.
    let emitter = match (opts.sink.clone(), events) {
        (Some(s), Some(tx)) => Some(crate::event::Emitter::new(
            opts.run_id,
            Arc::new(crate::event::Fanout(vec![s, Arc::new(tx)])),
        )),
        (Some(s), None) => Some(crate::event::Emitter::new(opts.run_id, s)),
        (None, Some(tx)) => Some(crate::event::Emitter::new(opts.run_id, Arc::new(tx))),
        (None, None) => None,
    };
    let resources = match (opts.mode, &opts.resources) {
        (ExecutionMode::ResourceAware, Some(rm)) => Some(rm.clone()),
        (ExecutionMode::ResourceAware, None) => Some(Arc::new(ResourceManager::detect())),
        _ => None,
    };
    if let Some(rm) = &resources {
        check_resources(wf, rm)?;
    }
    let actions = lookup_actions(wf, registry)?;
    let params = merge_params(wf, &opts.params)?;
    if let Some(Err(m)) = opts.run_timeout.map(orch_model::duration::check_timeout) {
        // As a step's: 0 would stop the run before anything ran.
        return Err(OrchestrationError::invalid_parameters(format!(
            "run timeout: {m}"
        )));
    }
    let w = wf.workflow();
    let n = w.steps.len();
    // Read before anything is recorded: a secret that cannot be read stops the run here.
    let secrets = crate::secrets::for_run(w, opts.secrets.as_ref(), &opts.work_dir)?;
    let created = Utc::now();
    let start = Instant::now();
    if let (Some(store), None) = (&opts.store, &opts.resume) {
        // Recorded first: the definition's text and the task list are gone
        // before the per-step state below is built.
        create_run(wf, &params, store.as_ref(), &opts, created).await?;
    }
    let dependents = wf.graph().dependents();
    // One pass over the definition: the reports, and what the scheduler
    // reads of each step (so that the run itself leaves the definition alone).
    let mut reports = Vec::with_capacity(n);
    let mut hot = Vec::with_capacity(n);
    for s in &w.steps {
        reports.push(StepReport {
            name: s.name.clone(),
            status: TaskStatus::Pending,
            attempts: 0,
            created_at: created,
            ready_at: None,
            started_at: None,
            finished_at: None,
            result: None,
            note: None,
        });
        hot.push(Hot::of(s));
    }
    // The run's own token: the caller's cancels it, and so does dropping
    // the run (attempts still running stop: their actions watch it).
    let cancel = opts.cancel.child_token();
    let _stop_on_drop = cancel.clone().drop_guard();
    let mut st = State {
        wf,
        run_id: opts.run_id,
        project_path: opts.project_path.clone(),
        params,
        index: std::cell::OnceCell::new(),
        actions,
        hot,
        ctx: ActionContext {
            run_id: opts.run_id,
            step: CompactString::default(),
            action: CompactString::default(),
            attempt: 1,
            work_dir: Arc::from(opts.work_dir.as_path()),
            cancel: cancel.clone(),
            kill_grace: opts.kill_grace,
            output_limit: opts.output_limit,
            output: None,
            secrets: secrets.as_ref().map(|s| s.for_step(&[])),
        },
        executor: opts
            .executor
            .clone()
            .unwrap_or_else(crate::executor::default_executor),
        work_dir: Arc::from(opts.work_dir.as_path()),
        status: vec![TaskStatus::Pending; n],
        reports,
        remaining: (0..n as u32)
            .map(|i| wf.graph().deps(i).len() as u32)
            .collect(),
        ready: ReadyQueue::default(),
        resolved: vec![None; n],
        allocations: if resources.is_some() {
            vec![None; n]
        } else {
            Vec::new()
        },
        cache_keys: if opts.cache.is_some() {
            vec![None; n]
        } else {
            Vec::new()
        },
        work: Vec::new(),
        journal: None,
        output: opts
            .store
            .as_ref()
            .and_then(crate::output::OutputWriter::for_store),
        epoch: (created, start),
        events: emitter,
        dynamic: None,
        upstream: crate::upstream::UpstreamMemo::default(),
        grace: false,
        survive: None,
    };
    st.dynamic = super::fanout::Dynamic::of(&st.hot, registry, &opts);
    let mut stop = super::grace::Stop::new(&mut st, &opts);
    if let Some(store) = &opts.store {
        st.journal = Some(open_journal(&mut st, store.clone(), &opts).await?);
    }
    st.emit(|| Event::RunStarted {
        run_id: opts.run_id,
        total: n,
    });
    let limit = slot_limit(opts.mode, opts.max_parallel);
    for i in 0..n as u32 {
        if st.remaining[i as usize] == 0
            && st.status[i as usize] == TaskStatus::Pending
            && st.release(i, created)
        {
            st.finish(i, &dependents, false, created);
        }
    }
    let deadline = opts.run_timeout.map(|t| tokio::time::Instant::now() + t);
    let mut timed_out = false;
    // Attempts that did not finish when submitted report here, in batches.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Outcome>();
    let sink: Arc<dyn OutcomeSink> = Arc::new(ChannelSink(tx));
    let mut set = Running {
        count: 0,
        rx: &mut rx,
    };
    let mut arrived: Vec<Outcome> = Vec::new();
    // Journaled: the steps started in this turn, recorded in one commit.
    let mut started: Vec<u32> = Vec::new();
    // Journaled: steps of this turn that may wait, started once recorded.
    let mut to_spawn: Vec<u32> = Vec::new();
    let sequential = opts.mode == ExecutionMode::Sequential;
    loop {
        if st.journal.is_some() {
            if let Err(e) = journal_turn(&mut st, &dependents, &cancel).await {
                return Err(abandon(&cancel, &mut set, e).await);
            }
        }
        // Once the run's token fired: its cancel grace, then the stop.
        let seen = cancel.is_cancelled();
        if seen {
            stop.begin(&mut st, &dependents);
        }
        let stopping = seen && !stop.in_grace();
        let mut blocked = Vec::new();
        // Checked before every step that follows a spawned one, and every 64
        // steps during a run of inline completions (reading the token takes a
        // lock): nothing is spawned after a cancellation has been seen.
        let mut since_check = 0u32;
        // Steps taken in this turn; a journaled turn ends in one commit.
        let mut taken = 0usize;
        while taken < TURN {
            if since_check == 0 {
                if cancel.is_cancelled() && !stop.in_grace() {
                    break;
                }
                if !timed_out && deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
                    timed_out = true;
                    cancel.cancel();
                    break;
                }
            }
            since_check = (since_check + 1) % 64;
            let Some(i) = st.ready.pop() else {
                break;
            };
            if let Some(cache) = opts
                .cache
                .as_deref()
                .filter(|_| st.hot[i as usize].is(Hot::CACHE))
            {
                if st.serve_from_cache(i, cache) {
                    let now = st.reports[i as usize].finished_at.unwrap_or(created);
                    st.done(i, &dependents, cancel.is_cancelled(), now);
                    continue;
                }
            }
            // `max_parallel` bounds the steps that wait (spawned); a step that
            // finishes at once (an immediate action of a plain step) is never
            // running beside another, so it needs no slot, except in
            // sequential mode, where nothing starts beside a running step.
            let needs_slot = sequential || !st.is_inline(i);
            if needs_slot && set.count + to_spawn.len() >= limit {
                st.ready.put_back(&[i], |k| st.hot[k as usize].priority);
                break;
            }
            if let Some(rm) = &resources {
                let req = &wf.workflow().steps[i as usize].resources;
                if !req.is_empty() {
                    match rm.try_allocate(&format!("{}:{}", opts.run_id, st.name_str(i)), req) {
                        Ok(Some(a)) => st.allocations[i as usize] = Some(a.id),
                        // Does not fit now: let smaller ready steps go first, retry after a release.
                        Ok(None) | Err(_) => {
                            blocked.push(i);
                            continue;
                        }
                    }
                }
            }
            taken += 1;
            if st.journal.is_some() {
                if needs_slot && !st.is_inline(i) {
                    // A step that may wait (and do things outside this
                    // process) is recorded as started before it runs:
                    // every run of it is a recorded attempt. Below.
                    to_spawn.push(i);
                    continue;
                }
                // Finishes now: recorded as started with its finish, below.
                started.push(i);
            }
            if let Some(out) = start_step(&mut st, i, &opts, &sink, &mut set) {
                st.release_resources(i, resources.as_deref(), opts.run_id);
                // Not cancelled as of the last check: cancellation cannot be
                // observed between starting and completing an inline step.
                let cancelled = out.status == TaskStatus::Cancelled;
                st.complete(out, &dependents, cancelled, opts.cache.as_deref());
            } else {
                since_check = 0;
            }
        }
        let all_blocked = !blocked.is_empty();
        st.ready.put_back(&blocked, |k| st.hot[k as usize].priority);
        if !to_spawn.is_empty() {
            // Their starts committed first, then they run.
            if let Err(e) = record_starts(&mut st, &to_spawn).await {
                return Err(abandon(&cancel, &mut set, e).await);
            }
            for i in to_spawn.drain(..) {
                if let Some(out) = start_step(&mut st, i, &opts, &sink, &mut set) {
                    st.release_resources(i, resources.as_deref(), opts.run_id);
                    let cancelled = out.status == TaskStatus::Cancelled;
                    st.complete(out, &dependents, cancelled, opts.cache.as_deref());
                }
            }
            if let Err(e) = flush(&mut st, &dependents, &started).await {
                return Err(abandon(&cancel, &mut set, e).await);
            }
            started.clear();
            continue;
        }
        if !started.is_empty() {
            // One turn, two requests: the steps it started, then what of them
            // (and of earlier ones) finished, after which their dependents
            // are released. A crash before the commit re-runs the turn's
            // steps: none of them counts as done until it is committed.
            let flushed = flush(&mut st, &dependents, &started).await;
            started.clear();
            if let Err(e) = flushed {
                return Err(abandon(&cancel, &mut set, e).await);
            }
            continue;
        }
        if taken == TURN {
            // The turn ended at its bound, not for want of work.
            continue;
        }
        if st
            .journal
            .as_ref()
            .is_some_and(|j| !j.deferred.is_empty() || !j.finished.is_empty())
        {
            continue;
        }
        if set.count == 0 && (stopping || st.ready.is_empty()) {
            break;
        }
        if set.count == 0 && all_blocked {
            // Everything ready waits for capacity held outside this run: look again shortly.
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(50)) => {}
                () = cancel.cancelled(), if !seen => {}
            }
            continue;
        }
        let grace_end = stop.deadline();
        tokio::select! {
            got = set.rx.recv_many(&mut arrived, 4096), if set.count > 0 => {
                // Every step that finished meanwhile: one commit for all.
                set.count -= got;
                for out in arrived.drain(..) {
                    let out = match opts.run_timeout.filter(|_| timed_out) {
                        Some(limit) => super::grace::Stop::timed_out(&st, out, limit),
                        None => out,
                    };
                    st.release_resources(out.task, resources.as_deref(), opts.run_id);
                    st.complete(out, &dependents, cancel.is_cancelled(), opts.cache.as_deref());
                }
            }
            () = tokio::time::sleep(CANCEL_POLL), if st.journal.is_some() => {}
            () = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            }, if !timed_out && deadline.is_some() => {
                timed_out = true;
                cancel.cancel();
            }
            () = async {
                match grace_end {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            }, if grace_end.is_some() => stop.expire(&mut st),
            () = cancel.cancelled(), if !seen => {}
        }
    }
    // Whatever never started was cancelled (or could not run).
    let now = Utc::now();
    for i in 0..n as u32 {
        if !st.status[i as usize].is_terminal() {
            st.set_status(i, TaskStatus::Cancelled);
            st.reports[i as usize].finished_at = Some(now);
            let name = st.name(i);
            st.record(Event::TaskCancelled {
                task: i,
                name,
                attempts: 0,
            });
        }
    }
    let any_failed = st.status.contains(&TaskStatus::Failed);
    let any_cancelled = st.status.contains(&TaskStatus::Cancelled);
    let status = if timed_out || any_failed {
        WorkflowStatus::Failed
    } else if any_cancelled {
        WorkflowStatus::Cancelled
    } else {
        WorkflowStatus::Completed
    };
    if let Some(j) = &mut st.journal {
        // Nothing is deferred any more: every step is final.
        j.deferred.clear();
        let store = j.store.clone();
        flush(&mut st, &dependents, &[]).await?;
        crate::telemetry::timed(
            "finish_run",
            store.finish_run(opts.run_id, status, Utc::now()),
        )
        .await?;
    }
    let duration = start.elapsed();
    st.emit(|| Event::RunFinished {
        run_id: opts.run_id,
        status,
        duration,
    });
    let error = timed_out.then(|| {
        format!(
            "the run exceeded its timeout of {:?}",
            opts.run_timeout.unwrap_or_default()
        )
    });
    Ok(RunReport {
        run_id: opts.run_id,
        workflow: w.name.clone(),
        status,
        duration,
        steps: st.reports,
        error,
    })
}

/// Most steps started in one turn of the coordinator: a journaled run
/// commits each turn's starts and finishes together.
pub(super) const TURN: usize = 65_536;

/// The store failed mid-run: stop every running step (their processes are
/// killed) and give the error back. The run stays `running` in the store and
/// can be resumed.
pub(super) async fn abandon(
    cancel: &CancellationToken,
    set: &mut Running<'_>,
    e: OrchestrationError,
) -> OrchestrationError {
    cancel.cancel();
    while set.count > 0 {
        if set.rx.recv().await.is_none() {
            break;
        }
        set.count -= 1;
    }
    e
}

/// The attempts submitted and not yet reported, and where they report.
pub(super) struct Running<'a> {
    pub(super) count: usize,
    pub(super) rx: &'a mut tokio::sync::mpsc::UnboundedReceiver<Outcome>,
}

/// Starts step `i`. An immediate action of a plain step runs right here
/// (`Executor::run_now`); any other step is submitted to the run's executor.
/// An outcome known at once is returned; otherwise the step counts as
/// running until its outcome arrives.
pub(super) fn start_step(
    st: &mut State<'_>,
    i: u32,
    opts: &RunOptions,
    sink: &Arc<dyn OutcomeSink>,
    set: &mut Running<'_>,
) -> Option<Outcome> {
    if st.hot[i as usize].is(Hot::DYNAMIC) {
        st.set_status(i, TaskStatus::Running);
        return super::fanout::start_items(st, i, sink, set);
    }
    let params = st.resolved[i as usize]
        .take()
        .map_or_else(|| Value::Object(Map::new()), |b| *b);
    st.set_status(i, TaskStatus::Running);
    let k = st.actions.of[i as usize] as usize;
    let params = if st.is_inline(i) {
        match run_immediate(st, i, k, params) {
            Ok(out) => return Some(out),
            // The executor runs nothing here: submitted as any other step.
            Err(params) => params,
        }
    } else {
        params
    };
    let name = st.name(i);
    // A plain step (no timeout, no retries) needs nothing more of its definition.
    let policy = if st.hot[i as usize].is(Hot::PLAIN) {
        AttemptPolicy::default()
    } else {
        let step = &st.wf.workflow().steps[i as usize];
        AttemptPolicy {
            timeout: step.timeout,
            max_retries: step.max_retries,
            retry: step.retry.clone(),
        }
    };
    let attempt = Attempt {
        task: i,
        action: st.actions.impls[k].clone(),
        params,
        policy,
        ctx: ActionContext {
            run_id: opts.run_id,
            step: name,
            action: st.actions.names[k].clone(),
            attempt: 1,
            work_dir: st.work_dir.clone(),
            cancel: st.token_for(i),
            kill_grace: opts.kill_grace,
            output_limit: opts.output_limit,
            output: st.output.as_ref().map(|w| {
                let attempt = st.journal.as_ref().map_or(1, |j| j.attempts[i as usize]);
                w.step(opts.run_id, i, attempt)
            }),
            secrets: st.ctx.secrets.as_ref().map(|s| {
                let names = &st.wf.workflow().steps[i as usize].secrets;
                if names.is_empty() {
                    s.clone()
                } else {
                    s.with_env(names)
                }
            }),
        },
        run_cancel: None,
        events: st.events.clone(),
        epoch: st.epoch,
    };
    let mut done = Vec::new();
    st.executor.submit(vec![attempt], &mut done, sink);
    match done.pop() {
        Some(out) => Some(out),
        None => {
            set.count += 1;
            None
        }
    }
}
