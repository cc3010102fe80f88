//! `core.noop`, `core.sleep`, `core.fail`, `core.set`: actions for wiring, tests and demos.

use crate::action::{Action, ActionContext, ActionError};
use async_trait::async_trait;
use serde_json::{Value, json};
use std::time::Duration;

/// Returns its parameters.
#[derive(Debug)]
pub struct Noop;

#[async_trait]
impl Action for Noop {
    async fn run(&self, params: Value, _ctx: &ActionContext) -> Result<Value, ActionError> {
        Ok(params)
    }
}

/// Sleeps `ms` milliseconds (cancellable); returns `{slept_ms}`.
#[derive(Debug)]
pub struct Sleep;

#[async_trait]
impl Action for Sleep {
    async fn run(&self, params: Value, ctx: &ActionContext) -> Result<Value, ActionError> {
        let ms = params.get("ms").and_then(Value::as_u64).ok_or_else(|| {
            ActionError::invalid_parameters("`ms` must be a non-negative integer of milliseconds")
        })?;
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(ms)) => Ok(json!({ "slept_ms": ms })),
            () = ctx.cancel.cancelled() => Err(ActionError::retryable("Cancelled", "the sleep was cancelled")),
        }
    }
}

/// Fails with `message` (`retryable: true` by default; set `retryable: false`
/// for a permanent failure).
#[derive(Debug)]
pub struct Fail;

#[async_trait]
impl Action for Fail {
    async fn run(&self, params: Value, _ctx: &ActionContext) -> Result<Value, ActionError> {
        let message = params
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("failed on purpose (core.fail)");
        let retryable = params
            .get("retryable")
            .and_then(Value::as_bool)
            .unwrap_or(true);
        let e = if retryable {
            ActionError::retryable("Failure", message)
        } else {
            ActionError::permanent("Failure", message)
        };
        Err(e)
    }
}

/// Returns `value`.
#[derive(Debug)]
pub struct Set;

#[async_trait]
impl Action for Set {
    async fn run(&self, params: Value, _ctx: &ActionContext) -> Result<Value, ActionError> {
        params
            .get("value")
            .cloned()
            .ok_or_else(|| ActionError::invalid_parameters("`value` is required"))
    }
}
