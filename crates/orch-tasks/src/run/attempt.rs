//! One step's attempts: the outcome a step comes to, an immediate action run on
//! the coordinator, and `Job` (timeout, retries with backoff, panics caught,
//! cancellation).

use super::state::State;
use crate::action::{Action, ActionContext, ActionError};
use crate::event::Event;
use chrono::{DateTime, Utc};
use orch_model::{RetryPolicy, TaskResult, TaskStatus};
use serde_json::Value;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedSender;

/// What one step's attempts came to.
pub(crate) struct Outcome {
    pub(crate) task: u32,
    pub(crate) status: TaskStatus,
    pub(crate) attempts: u32,
    pub(crate) started_at: Option<DateTime<Utc>>,
    pub(crate) finished_at: DateTime<Utc>,
    pub(crate) result: TaskResult,
}

/// Runs step `i`'s single attempt with its immediate action (`Action::immediate`;
/// a plain step: no timeout, no retries) on the coordinator, as `Job::run`
/// would: the same events, times, result and panic handling.
pub(super) fn run_immediate(st: &mut State<'_>, i: u32, k: usize, params: Value) -> Outcome {
    let name = st.name(i);
    let ctx = &mut st.ctx;
    ctx.step.clone_from(&name);
    ctx.action.clone_from(&st.actions.names[k]);
    ctx.attempt = 1;
    if let Some(tx) = &st.events {
        let _ = tx.send(Event::TaskStarted {
            task: i,
            name,
            attempt: 1,
        });
    }
    let t0 = Instant::now();
    let started_at = wall_clock(st.epoch, t0);
    let r = match st.actions.impls[k].immediate() {
        Some(a) => {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| a.run_now(params, &st.ctx)))
                .unwrap_or_else(|payload| Err(panic_error(payload.as_ref())))
        }
        None => Err(ActionError::permanent(
            "InternalError",
            "the action stopped offering to run at once",
        )),
    };
    let took = t0.elapsed();
    let finished_at = later(started_at, took);
    let status = match &r {
        Ok(_) => TaskStatus::Completed,
        Err(_) if st.ctx.cancel.is_cancelled() => TaskStatus::Cancelled,
        Err(_) => TaskStatus::Failed,
    };
    Outcome {
        task: i,
        status,
        attempts: 1,
        started_at: Some(started_at),
        finished_at,
        result: attempt_result(r, took.as_secs_f64()),
    }
}

/// Where monotonic instant `at` falls on the wall clock, given the same moment
/// on both (`epoch`): attempt times are read once, monotonically.
pub(super) fn wall_clock(epoch: (DateTime<Utc>, Instant), at: Instant) -> DateTime<Utc> {
    later(epoch.0, at.duration_since(epoch.1))
}

/// `t` plus a monotonic duration (the end of an attempt is its start plus the
/// time it took: no second wall-clock read).
pub(super) fn later(t: DateTime<Utc>, took: Duration) -> DateTime<Utc> {
    t + chrono::Duration::from_std(took).unwrap_or_default()
}

/// The result of an attempt that took `elapsed` seconds.
pub(super) fn attempt_result(r: Result<Value, ActionError>, elapsed: f64) -> TaskResult {
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

/// A panic inside an action as a failed attempt (`ActionPanic`, not retried).
pub(super) fn panic_error(payload: &(dyn std::any::Any + Send)) -> ActionError {
    let msg = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_owned());
    ActionError::permanent("ActionPanic", format!("the action panicked: {msg}"))
}

/// Turns a panic inside an action into a failed attempt (`ActionPanic`, not
/// retried), so that one broken action cannot take the run down with it.
pub(super) struct CatchPanic<F>(F);

impl<F: Future<Output = Result<Value, ActionError>> + Unpin> Future for CatchPanic<F> {
    type Output = Result<Value, ActionError>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let inner = &mut self.0;
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            std::pin::Pin::new(inner).poll(cx)
        })) {
            Ok(p) => p,
            Err(payload) => std::task::Poll::Ready(Err(panic_error(payload.as_ref()))),
        }
    }
}

/// One step's attempts: timeouts, retries with backoff, cancellation. Shared
/// by the workflow scheduler and the `TaskOrchestrator`.
pub(crate) struct Job {
    pub(crate) task: u32,
    pub(crate) action: Arc<dyn Action>,
    pub(crate) params: Value,
    pub(crate) timeout: Option<Duration>,
    pub(crate) max_retries: u32,
    pub(crate) retry: RetryPolicy,
    /// The step's name is `ctx.step`; `ctx.cancel` is the run's token.
    pub(crate) ctx: ActionContext,
    pub(crate) events: Option<UnboundedSender<Event>>,
    /// The same moment on the wall clock and the monotonic clock: attempt
    /// times are read once, monotonically, and placed on the wall clock from it.
    pub(crate) epoch: (DateTime<Utc>, Instant),
}

impl Job {
    /// Sends an event, building it only when someone listens.
    pub(super) fn emit(&self, e: impl FnOnce() -> Event) {
        if let Some(tx) = &self.events {
            let _ = tx.send(e());
        }
    }

    pub(super) async fn attempt(&self, params: Value) -> Result<Value, ActionError> {
        let fut = CatchPanic(self.action.run(params, &self.ctx));
        let Some(limit) = self.timeout else {
            return fut.await;
        };
        // Boxed so that steps without a timeout (most) carry a small future.
        Box::pin(async move {
            tokio::pin!(fut);
            tokio::select! {
                r = &mut fut => r,
                () = tokio::time::sleep(limit) => {
                    // Ask the action to stop (it kills its processes), and wait for it to do so.
                    self.ctx.cancel.cancel();
                    let _ = fut.await;
                    Err(ActionError::retryable("TimeoutError", format!("the step took longer than its timeout of {}", orch_model::duration::format_duration(limit))))
                }
            }
        })
        .await
    }

    pub(crate) async fn run(mut self) -> Outcome {
        // A step with a timeout gets a token of its own per attempt, so that
        // stopping one attempt does not cancel the run; others use the run's.
        // The run's token is kept aside only then; otherwise it stays in the
        // context (one clone less per step: each clone of a token takes a lock).
        let run_cancel = self.timeout.map(|_| self.ctx.cancel.clone());
        let mut rng = self.ctx.run_id.0.as_u128() as u64
            ^ (u64::from(self.task) << 32)
            ^ 0x9E37_79B9_7F4A_7C15;
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            self.ctx.attempt = attempt;
            if let Some(run) = &run_cancel {
                self.ctx.cancel = run.child_token();
            }
            let t0 = Instant::now();
            let started_at = wall_clock(self.epoch, t0);
            self.emit(|| Event::TaskStarted {
                task: self.task,
                name: self.ctx.step.clone(),
                attempt,
            });
            // The last attempt allowed takes the parameters; earlier ones get a copy.
            let params = if attempt > self.max_retries {
                std::mem::take(&mut self.params)
            } else {
                self.params.clone()
            };
            let r = self.attempt(params).await;
            let took = t0.elapsed();
            let elapsed = took.as_secs_f64();
            let finished_at = later(started_at, took);
            match r {
                Ok(data) => {
                    return Outcome {
                        task: self.task,
                        status: TaskStatus::Completed,
                        attempts: attempt,
                        started_at: Some(started_at),
                        finished_at,
                        result: attempt_result(Ok(data), elapsed),
                    };
                }
                Err(e) => {
                    let run = run_cancel.as_ref().unwrap_or(&self.ctx.cancel).clone();
                    let status = if run.is_cancelled() {
                        Some(TaskStatus::Cancelled)
                    } else if !e.retryable || attempt > self.max_retries {
                        Some(TaskStatus::Failed)
                    } else {
                        let mut delay = self.retry.delay(attempt);
                        if self.retry.jitter {
                            // "Equal jitter": between half and all of the delay.
                            rng ^= rng << 13;
                            rng ^= rng >> 7;
                            rng ^= rng << 17;
                            let frac = 0.5 + (rng % 1000) as f64 / 2000.0;
                            delay = delay.mul_f64(frac);
                        }
                        self.emit(|| Event::TaskRetrying {
                            task: self.task,
                            name: self.ctx.step.clone(),
                            attempt,
                            delay,
                            message: e.to_string(),
                        });
                        // Boxed: only retried steps carry the timer in their future.
                        let cancelled = Box::pin(async {
                            tokio::select! {
                                () = tokio::time::sleep(delay) => false,
                                () = run.cancelled() => true,
                            }
                        })
                        .await;
                        cancelled.then_some(TaskStatus::Cancelled)
                    };
                    if let Some(status) = status {
                        return Outcome {
                            task: self.task,
                            status,
                            attempts: attempt,
                            started_at: Some(started_at),
                            finished_at,
                            result: attempt_result(Err(e), elapsed),
                        };
                    }
                }
            }
        }
    }
}
