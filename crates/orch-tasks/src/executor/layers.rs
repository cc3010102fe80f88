//! Attempt policy as layers around an executor: [`Retry`], [`Timeout`],
//! [`CatchPanic`]. Each is an [`Executor`] wrapping another; a step whose
//! policy does not use a layer passes through it untouched.

use super::{Attempt, Executor, Outcome, OutcomeSink};
use crate::action::{Action, ActionContext, ActionError, Immediate};
use crate::event::Event;
use async_trait::async_trait;
use orch_model::TaskStatus;
use serde_json::Value;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Turns a panic inside an action into a failed attempt (`ActionPanic`, not
/// retried), so that one broken action cannot take the run down with it.
#[derive(Debug, Clone)]
pub struct CatchPanic<E> {
    inner: E,
}

impl<E> CatchPanic<E> {
    /// Catches the panics of `inner`'s attempts.
    pub fn new(inner: E) -> Self {
        Self { inner }
    }
}

impl<E: Executor> Executor for CatchPanic<E> {
    fn submit(
        &self,
        mut attempts: Vec<Attempt>,
        done: &mut Vec<Outcome>,
        later: &Arc<dyn OutcomeSink>,
    ) {
        for a in &mut attempts {
            a.action = Arc::new(PanicSafe(a.action.clone()));
        }
        self.inner.submit(attempts, done, later);
    }

    fn runs_now(&self) -> bool {
        self.inner.runs_now()
    }

    fn run_now(
        &self,
        action: &dyn Immediate,
        params: Value,
        ctx: &ActionContext,
    ) -> Result<Value, ActionError> {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.inner.run_now(action, params, ctx)
        }))
        .unwrap_or_else(|payload| Err(panic_error(payload.as_ref())))
    }
}

/// An action whose panics (in any poll) become `ActionPanic` failures.
#[derive(Debug)]
struct PanicSafe(Arc<dyn Action>);

#[async_trait]
impl Action for PanicSafe {
    async fn run(&self, params: Value, ctx: &ActionContext) -> Result<Value, ActionError> {
        CatchPanicFuture(self.0.run(params, ctx)).await
    }
}

/// A future whose panics become `ActionPanic` failures.
struct CatchPanicFuture<F>(F);

impl<F: Future<Output = Result<Value, ActionError>> + Unpin> Future for CatchPanicFuture<F> {
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

/// A panic inside an action as a failed attempt (`ActionPanic`, not retried).
pub(crate) fn panic_error(payload: &(dyn std::any::Any + Send)) -> ActionError {
    let msg = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_owned());
    ActionError::permanent("ActionPanic", format!("the action panicked: {msg}"))
}

/// Stops an attempt that runs longer than its step's `timeout`: the
/// attempt's own token is cancelled (the action kills its processes), and
/// once the action returned, the attempt fails with `TimeoutError`
/// (retryable). Each attempt with a timeout gets a token of its own, a
/// child of the run's, so that stopping it does not cancel the run.
#[derive(Debug, Clone)]
pub struct Timeout<E> {
    inner: E,
}

impl<E> Timeout<E> {
    /// Applies each attempt's timeout to `inner`'s attempts.
    pub fn new(inner: E) -> Self {
        Self { inner }
    }
}

impl<E: Executor> Executor for Timeout<E> {
    fn submit(
        &self,
        mut attempts: Vec<Attempt>,
        done: &mut Vec<Outcome>,
        later: &Arc<dyn OutcomeSink>,
    ) {
        for a in &mut attempts {
            if let Some(limit) = a.policy.timeout {
                let run = a.run_cancel.take().unwrap_or_else(|| a.ctx.cancel.clone());
                a.ctx.cancel = run.child_token();
                a.run_cancel = Some(run);
                a.action = Arc::new(TimeLimited {
                    inner: a.action.clone(),
                    limit,
                });
            }
        }
        self.inner.submit(attempts, done, later);
    }

    fn runs_now(&self) -> bool {
        self.inner.runs_now()
    }

    fn run_now(
        &self,
        action: &dyn Immediate,
        params: Value,
        ctx: &ActionContext,
    ) -> Result<Value, ActionError> {
        // Only steps without a timeout run now.
        self.inner.run_now(action, params, ctx)
    }
}

/// An action with a time limit (see [`Timeout`]).
#[derive(Debug)]
struct TimeLimited {
    inner: Arc<dyn Action>,
    limit: Duration,
}

#[async_trait]
impl Action for TimeLimited {
    async fn run(&self, params: Value, ctx: &ActionContext) -> Result<Value, ActionError> {
        let fut = self.inner.run(params, ctx);
        tokio::pin!(fut);
        tokio::select! {
            r = &mut fut => r,
            () = tokio::time::sleep(self.limit) => {
                // Ask the action to stop (it kills its processes), and wait for it to do so.
                ctx.cancel.cancel();
                let _ = fut.await;
                Err(ActionError::retryable(
                    "TimeoutError",
                    format!(
                        "the step took longer than its timeout of {}",
                        orch_model::duration::format_duration(self.limit)
                    ),
                ))
            }
        }
    }
}

/// Makes another attempt after a retryable failure, up to the step's
/// `max_retries`, after its backoff (with "equal jitter" when the policy
/// asks: between half and all of the delay). A cancellation during the
/// wait ends the step `cancelled`. Each new attempt goes through the
/// wrapped executor again (its own timeout, its own number).
#[derive(Debug)]
pub struct Retry<E> {
    inner: Arc<E>,
}

impl<E> Retry<E> {
    /// Retries `inner`'s failed attempts as their policy allows.
    pub fn new(inner: E) -> Self {
        Self {
            inner: Arc::new(inner),
        }
    }
}

impl<E: Executor + 'static> Executor for Retry<E> {
    fn submit(
        &self,
        attempts: Vec<Attempt>,
        done: &mut Vec<Outcome>,
        later: &Arc<dyn OutcomeSink>,
    ) {
        let mut plain = Vec::with_capacity(attempts.len());
        for a in attempts {
            if a.policy.max_retries == 0 {
                plain.push(a);
                continue;
            }
            let rng =
                a.ctx.run_id.0.as_u128() as u64 ^ (u64::from(a.task) << 32) ^ 0x9E37_79B9_7F4A_7C15;
            let first = copy(&a);
            let state = Arc::new(Retrying {
                inner: self.inner.clone(),
                runtime: tokio::runtime::Handle::try_current().ok(),
                outer: later.clone(),
                next: Mutex::new((a, rng, 0)),
            });
            state.start(first, done);
        }
        if !plain.is_empty() {
            self.inner.submit(plain, done, later);
        }
    }

    fn runs_now(&self) -> bool {
        self.inner.runs_now()
    }

    fn run_now(
        &self,
        action: &dyn Immediate,
        params: Value,
        ctx: &ActionContext,
    ) -> Result<Value, ActionError> {
        // Only steps without retries run now.
        self.inner.run_now(action, params, ctx)
    }
}

/// A copy of an attempt, for the next one.
fn copy(a: &Attempt) -> Attempt {
    Attempt {
        task: a.task,
        action: a.action.clone(),
        params: a.params.clone(),
        policy: a.policy.clone(),
        ctx: a.ctx.clone(),
        run_cancel: a.run_cancel.clone(),
        events: a.events.clone(),
        epoch: a.epoch,
    }
}

/// One retried step: what its next attempt needs, and where its final
/// outcome goes.
struct Retrying<E> {
    inner: Arc<E>,
    /// Where the wait before the next attempt runs: outcomes may arrive on
    /// any thread (an executor's own), the wait needs the run's runtime.
    runtime: Option<tokio::runtime::Handle>,
    outer: Arc<dyn OutcomeSink>,
    /// The attempt to copy for the next one (its number is the last one's),
    /// the jitter's generator, and how many attempts failed so far.
    next: Mutex<(Attempt, u64, u32)>,
}

impl<E: Executor + 'static> Retrying<E> {
    /// Submits `attempt`; an outcome known at once is settled here (final:
    /// into `done`).
    fn start(self: &Arc<Self>, attempt: Attempt, done: &mut Vec<Outcome>) {
        let sink: Arc<dyn OutcomeSink> = Arc::new(RetrySink(self.clone()));
        let mut now = Vec::new();
        self.inner.submit(vec![attempt], &mut now, &sink);
        for out in now {
            if let Some(out) = self.settle(out) {
                done.push(out);
            }
        }
    }

    /// The outcome, when it is final; otherwise the next attempt is on its way.
    fn settle(self: &Arc<Self>, out: Outcome) -> Option<Outcome> {
        let mut guard = self
            .next
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (template, rng, failures) = &mut *guard;
        let again = out.status == TaskStatus::Failed
            && out.retryable
            && out.attempts <= template.policy.max_retries
            && !template.run_cancelled()
            // Submitted outside a runtime: nothing could wait for the next attempt.
            && self.runtime.is_some();
        if !again {
            return Some(flaky(out, *failures));
        }
        *failures += 1;
        let mut delay = template.policy.retry.delay(out.attempts);
        if template.policy.retry.jitter {
            *rng ^= *rng << 13;
            *rng ^= *rng >> 7;
            *rng ^= *rng << 17;
            let frac = 0.5 + (*rng % 1000) as f64 / 2000.0;
            delay = delay.mul_f64(frac);
        }
        template.emit(|| Event::TaskRetrying {
            task: out.task,
            name: template.ctx.step.clone(),
            attempt: out.attempts,
            delay,
            message: format!(
                "{}: {}",
                out.result.error_type.as_deref().unwrap_or_default(),
                out.result.error_message.as_deref().unwrap_or_default()
            ),
            duration: Duration::try_from_secs_f64(out.result.execution_time).unwrap_or_default(),
        });
        let mut next = copy(template);
        next.ctx.attempt = out.attempts + 1;
        template.ctx.attempt = out.attempts + 1;
        let run = template
            .run_cancel
            .clone()
            .unwrap_or_else(|| template.ctx.cancel.clone());
        drop(guard);
        let me = self.clone();
        let Some(runtime) = self.runtime.clone() else {
            return Some(out);
        };
        runtime.spawn(async move {
            let cancelled = tokio::select! {
                () = tokio::time::sleep(delay) => false,
                () = run.cancelled() => true,
            };
            if cancelled {
                me.outer.deliver(Outcome {
                    status: TaskStatus::Cancelled,
                    retryable: false,
                    ..out
                });
                return;
            }
            let mut done = Vec::new();
            me.start(next, &mut done);
            for out in done {
                me.outer.deliver(out);
            }
        });
        None
    }
}

/// A step that succeeded after `failures` failed attempts is flaky: its
/// result says so (`metadata.flaky`, `metadata.failed_attempts`), for
/// reports, the store and JSON output.
fn flaky(mut out: Outcome, failures: u32) -> Outcome {
    if out.status == TaskStatus::Completed && failures > 0 {
        let m = &mut out.result.metadata;
        m.insert("flaky".into(), Value::Bool(true));
        m.insert("failed_attempts".into(), Value::from(failures));
    }
    out
}

/// The sink a retried step's attempts report to: a final outcome goes on
/// to the run, a retryable failure becomes the next attempt.
struct RetrySink<E>(Arc<Retrying<E>>);

impl<E: Executor + 'static> OutcomeSink for RetrySink<E> {
    fn deliver(&self, outcome: Outcome) {
        if let Some(out) = self.0.settle(outcome) {
            self.0.outer.deliver(out);
        }
    }
}
