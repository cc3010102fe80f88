//! Where an attempt runs: the [`Executor`] seam between the coordinator and
//! the work.
//!
//! The coordinator submits attempts in batches ([`Executor::submit`]) and
//! receives outcomes in batches: those known at once in the `done` list it
//! passes, the others later through its [`OutcomeSink`]. Whether an attempt
//! runs in this process or on another machine is the executor's business.
//!
//! [`LocalExecutor`] runs attempts in this process: an immediate action as a
//! function call ([`Executor::run_now`]), any other action polled once on the
//! caller's thread (most in-process actions finish there) and, when it waits,
//! spawned onto the tokio runtime.
//!
//! Attempt policy wraps an executor, as tower's layers wrap a service:
//! [`Retry`] (another attempt after a retryable failure, with backoff and
//! jitter), [`Timeout`] (an attempt past its step's limit is cancelled and
//! fails with `TimeoutError`), [`CatchPanic`] (a panicking action is a failed
//! attempt, `ActionPanic`, not a dead run). Cancellation is each attempt's
//! token ([`ActionContext::cancel`]). [`default_executor`] is the stack every
//! run uses unless told otherwise: `Retry<Timeout<CatchPanic<LocalExecutor>>>`.
//!
//! An executor of one's own (a thread pool, a remote worker pool) implements
//! `submit`, and gets the same policy by being wrapped in the same layers.

mod layers;

pub use layers::{CatchPanic, Retry, Timeout};

use crate::action::{Action, ActionContext, ActionError, Immediate};
use crate::event::Event;
use chrono::{DateTime, Utc};
use orch_model::{RetryPolicy, TaskResult, TaskStatus};
use serde_json::Value;
use std::fmt;
use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedSender;
use tokio_util::sync::CancellationToken;

/// What a step's attempts may do: a limit per attempt and retries.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AttemptPolicy {
    /// Limit per attempt ([`Timeout`]).
    pub timeout: Option<Duration>,
    /// Attempts after the first one that may follow a retryable failure ([`Retry`]).
    pub max_retries: u32,
    /// The backoff between attempts.
    pub retry: RetryPolicy,
}

/// One attempt of one step, as the coordinator hands it to an executor.
#[derive(Debug)]
pub struct Attempt {
    /// The step (its index in the workflow; `u32::MAX` for a task run on its own).
    pub task: u32,
    /// The action.
    pub action: Arc<dyn Action>,
    /// Its parameters, every `${...}` resolved.
    pub params: Value,
    /// What the attempts of the step may do.
    pub policy: AttemptPolicy,
    /// The action's context: `ctx.attempt` is this attempt's number (from
    /// 1), `ctx.cancel` the token that stops it.
    pub ctx: ActionContext,
    /// The run's own token, when `ctx.cancel` is a token of the attempt's
    /// (a [`Timeout`] gives each attempt one, so that stopping an attempt
    /// does not cancel the run). An attempt that fails after this token
    /// fired was cancelled.
    pub run_cancel: Option<CancellationToken>,
    /// Where `TaskStarted` and `TaskRetrying` go, when someone listens.
    pub events: Option<crate::event::Emitter>,
    /// The same moment on the wall clock and the monotonic clock: attempt
    /// times are read once, monotonically, and placed on the wall clock from it.
    pub epoch: (DateTime<Utc>, Instant),
}

impl Attempt {
    /// Whether the run (not only this attempt) was cancelled.
    pub fn run_cancelled(&self) -> bool {
        self.run_cancel
            .as_ref()
            .unwrap_or(&self.ctx.cancel)
            .is_cancelled()
    }

    /// Sends an event, building it only when someone listens.
    pub fn emit(&self, e: impl FnOnce() -> Event) {
        if let Some(tx) = &self.events {
            tx.send(e());
        }
    }
}

/// What a step's attempt (or, through [`Retry`], its attempts) came to.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The step.
    pub task: u32,
    /// `completed`, `failed` or `cancelled`.
    pub status: TaskStatus,
    /// The number of the last attempt made.
    pub attempts: u32,
    /// When the last attempt started.
    pub started_at: Option<DateTime<Utc>>,
    /// When it ended.
    pub finished_at: DateTime<Utc>,
    /// Its result (failed: the error).
    pub result: TaskResult,
    /// Whether another attempt may succeed (a failure the action called retryable).
    pub retryable: bool,
}

/// Where an executor delivers the outcomes it did not know at once.
pub trait OutcomeSink: Send + Sync {
    /// Takes one outcome (from any thread; must not block).
    fn deliver(&self, outcome: Outcome);
}

/// An [`OutcomeSink`] that sends into a channel (the coordinator's: it
/// receives outcomes in batches with `recv_many`).
#[derive(Debug, Clone)]
pub struct ChannelSink(pub UnboundedSender<Outcome>);

impl OutcomeSink for ChannelSink {
    fn deliver(&self, outcome: Outcome) {
        let _ = self.0.send(outcome);
    }
}

/// Where attempts run (SPEC §8a): in this process ([`LocalExecutor`]) or
/// elsewhere. Every submitted attempt comes to exactly one [`Outcome`], in
/// `done` or through `later`.
pub trait Executor: Send + Sync + fmt::Debug {
    /// Starts `attempts`. Outcomes known before this returns are appended to
    /// `done`; every other one is delivered to `later` when it is known.
    fn submit(&self, attempts: Vec<Attempt>, done: &mut Vec<Outcome>, later: &Arc<dyn OutcomeSink>);

    /// Whether [`Executor::run_now`] runs attempts on the caller's thread
    /// (a local executor: yes; one that runs attempts elsewhere: no, the
    /// default, and such attempts are submitted as any other).
    fn runs_now(&self) -> bool {
        false
    }

    /// Runs an attempt of an action that finishes without waiting, on the
    /// caller's thread, for a step with the default policy (no timeout, no
    /// retries): a function call, no future and no task. Called only when
    /// [`Executor::runs_now`] says so. The caller emits the attempt's events
    /// and times it.
    ///
    /// # Errors
    /// The action's.
    fn run_now(
        &self,
        action: &dyn Immediate,
        params: Value,
        ctx: &ActionContext,
    ) -> Result<Value, ActionError> {
        action.run_now(params, ctx)
    }
}

/// Runs attempts in this process: polled once on the caller's thread, and
/// spawned onto the current tokio runtime when they wait. Panics are not
/// caught here (wrap it in [`CatchPanic`]); an attempt whose task ends
/// without an outcome (it panicked) is reported failed all the same.
#[derive(Debug, Default, Clone, Copy)]
pub struct LocalExecutor;

impl Executor for LocalExecutor {
    fn submit(
        &self,
        attempts: Vec<Attempt>,
        done: &mut Vec<Outcome>,
        later: &Arc<dyn OutcomeSink>,
    ) {
        for a in attempts {
            let (task, attempt) = (a.task, a.ctx.attempt);
            let mut fut = Box::pin(run_attempt(a));
            let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
            // Polled once here: an in-process action usually finishes now.
            match fut.as_mut().poll(&mut cx) {
                std::task::Poll::Ready(out) => done.push(out),
                std::task::Poll::Pending => {
                    // Polled again on the runtime with a real waker; futures
                    // re-register on every poll.
                    let mut guard = Unfinished {
                        sink: later.clone(),
                        task,
                        attempt,
                        sent: false,
                    };
                    tokio::spawn(async move {
                        let out = fut.await;
                        guard.sent = true;
                        guard.sink.deliver(out);
                    });
                }
            }
        }
    }

    fn runs_now(&self) -> bool {
        true
    }
}

/// One attempt, in this process: `TaskStarted`, the action, its outcome.
/// The action runs in a DEBUG span `attempt` (nearly free when that level
/// is off), a child of the run's span when the attempt starts in it.
async fn run_attempt(mut a: Attempt) -> Outcome {
    let span = tracing::debug_span!("attempt", run = %a.ctx.run_id, step = %a.ctx.step, attempt = a.ctx.attempt);
    let t0 = Instant::now();
    let started_at = wall_clock(a.epoch, t0);
    a.emit(|| Event::TaskStarted {
        task: a.task,
        name: a.ctx.step.clone(),
        attempt: a.ctx.attempt,
    });
    let params = std::mem::take(&mut a.params);
    let r = tracing::Instrument::instrument(a.action.run(params, &a.ctx), span.clone()).await;
    let out = outcome(&a, r, started_at, t0.elapsed());
    tracing::debug!(parent: &span, status = %out.status, seconds = out.result.execution_time, "attempt ended");
    out
}

/// Delivers a failure for an attempt whose task ended without an outcome
/// (its action panicked outside [`CatchPanic`]), so that no run waits for
/// it forever.
struct Unfinished {
    sink: Arc<dyn OutcomeSink>,
    task: u32,
    attempt: u32,
    sent: bool,
}

impl Drop for Unfinished {
    fn drop(&mut self) {
        if !self.sent {
            let now = Utc::now();
            self.sink.deliver(Outcome {
                task: self.task,
                status: TaskStatus::Failed,
                attempts: self.attempt,
                started_at: None,
                finished_at: now,
                result: TaskResult::failed(
                    "ActionPanic",
                    "the attempt's task ended without an outcome",
                ),
                retryable: false,
            });
        }
    }
}

/// The outcome of attempt `a` that returned `r` after `took`.
pub(crate) fn outcome(
    a: &Attempt,
    mut r: Result<Value, ActionError>,
    started_at: DateTime<Utc>,
    took: Duration,
) -> Outcome {
    // Before anything is reported, retried, stored or shown.
    if let Some(s) = &a.ctx.secrets {
        s.masker().mask_result(&mut r);
    }
    let (status, retryable) = match &r {
        Ok(_) => (TaskStatus::Completed, false),
        Err(_) if a.run_cancelled() => (TaskStatus::Cancelled, false),
        Err(e) => (TaskStatus::Failed, e.retryable),
    };
    Outcome {
        task: a.task,
        status,
        attempts: a.ctx.attempt,
        started_at: Some(started_at),
        finished_at: later(started_at, took),
        result: attempt_result(r, took.as_secs_f64()),
        retryable,
    }
}

/// The stack every run uses unless told otherwise:
/// `Retry<Timeout<CatchPanic<LocalExecutor>>>` (one, shared).
pub fn default_executor() -> Arc<dyn Executor> {
    static DEFAULT: OnceLock<Arc<dyn Executor>> = OnceLock::new();
    DEFAULT
        .get_or_init(|| Arc::new(Retry::new(Timeout::new(CatchPanic::new(LocalExecutor)))))
        .clone()
}

/// Where monotonic instant `at` falls on the wall clock, given the same moment
/// on both (`epoch`): attempt times are read once, monotonically.
pub(crate) fn wall_clock(epoch: (DateTime<Utc>, Instant), at: Instant) -> DateTime<Utc> {
    later(epoch.0, at.duration_since(epoch.1))
}

/// `t` plus a monotonic duration (the end of an attempt is its start plus the
/// time it took: no second wall-clock read).
pub(crate) fn later(t: DateTime<Utc>, took: Duration) -> DateTime<Utc> {
    t + chrono::Duration::from_std(took).unwrap_or_default()
}

/// The result of an attempt that took `elapsed` seconds.
pub(crate) fn attempt_result(r: Result<Value, ActionError>, elapsed: f64) -> TaskResult {
    match r {
        Ok(data) => TaskResult {
            success: true,
            data,
            execution_time: elapsed,
            ..TaskResult::default()
        },
        Err(e) => TaskResult {
            success: false,
            data: e.data.map_or(Value::Null, |d| *d),
            error_message: Some(e.message),
            error_type: Some(e.error_type),
            execution_time: elapsed,
            ..TaskResult::default()
        },
    }
}
