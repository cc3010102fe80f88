//! A step's attempt on the coordinator: an immediate action of a plain step,
//! run through the executor's [`Executor::run_now`](crate::executor::Executor::run_now).

use super::state::State;
use crate::action::ActionError;
use crate::event::Event;
use crate::executor::{Outcome, attempt_result, later, wall_clock};
use orch_model::TaskStatus;
use serde_json::Value;
use std::time::Instant;

/// Runs step `i`'s single attempt with its immediate action (`Action::immediate`;
/// a plain step: no timeout, no retries) on the coordinator, as a submitted
/// attempt would run: the same events, times and result. `Err(params)` when
/// the run's executor runs nothing on the caller's thread.
pub(super) fn run_immediate(
    st: &mut State<'_>,
    i: u32,
    k: usize,
    params: Value,
) -> Result<Outcome, Value> {
    if !st.executor.runs_now() {
        return Err(params);
    }
    let name = st.name(i);
    let ctx = &mut st.ctx;
    ctx.step.clone_from(&name);
    ctx.action.clone_from(&st.actions.names[k]);
    ctx.attempt = 1;
    // The attempt's DEBUG span, as a submitted attempt's (nearly free when that level is off).
    let span = tracing::debug_span!("attempt", run = %ctx.run_id, step = %ctx.step, attempt = 1);
    let _in_span = span.enter();
    if let Some(tx) = &st.events {
        tx.send(Event::TaskStarted {
            task: i,
            name,
            attempt: 1,
        });
    }
    let t0 = Instant::now();
    let started_at = wall_clock(st.epoch, t0);
    let mut r = match st.actions.impls[k].immediate() {
        Some(a) => st.executor.run_now(a, params, &st.ctx),
        None => Err(ActionError::permanent(
            "InternalError",
            "the action stopped offering to run at once",
        )),
    };
    if let Some(s) = &st.ctx.secrets {
        s.masker().mask_result(&mut r);
    }
    let took = t0.elapsed();
    let finished_at = later(started_at, took);
    let status = match &r {
        Ok(_) => TaskStatus::Completed,
        Err(_) if st.ctx.cancel.is_cancelled() => TaskStatus::Cancelled,
        Err(_) => TaskStatus::Failed,
    };
    tracing::debug!(status = %status, seconds = took.as_secs_f64(), "attempt ended");
    Ok(Outcome {
        task: i,
        status,
        attempts: 1,
        started_at: Some(started_at),
        finished_at,
        result: attempt_result(r, took.as_secs_f64()),
        retryable: false,
    })
}
