//! `core.noop`, `core.sleep`, `core.fail`, `core.set`, `core.coalesce`: actions for wiring,
//! tests and demos.

use crate::action::{Action, ActionContext, ActionError, Immediate};
use async_trait::async_trait;
use serde_json::{Value, json};
use std::time::Duration;

/// `Action` for an action that never waits: `run` is its `Immediate::run_now`,
/// which it offers to the scheduler (`Action::immediate`).
macro_rules! immediate_action {
    ($t:ty, $spec:path) => {
        #[async_trait]
        impl Action for $t {
            async fn run(&self, params: Value, ctx: &ActionContext) -> Result<Value, ActionError> {
                self.run_now(params, ctx)
            }
            fn immediate(&self) -> Option<&dyn Immediate> {
                Some(self)
            }
            fn spec(&self) -> Option<&'static orch_model::ActionSpec> {
                Some(&$spec)
            }
        }
    };
}

/// Returns its parameters.
#[derive(Debug)]
pub struct Noop;

immediate_action!(Noop, super::specs::NOOP);

impl Immediate for Noop {
    fn run_now(&self, params: Value, _ctx: &ActionContext) -> Result<Value, ActionError> {
        Ok(params)
    }
}

/// Sleeps `ms` milliseconds (cancellable); returns `{slept_ms}`.
#[derive(Debug)]
pub struct Sleep;

#[async_trait]
impl Action for Sleep {
    fn spec(&self) -> Option<&'static orch_model::ActionSpec> {
        Some(&super::specs::SLEEP)
    }

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

immediate_action!(Fail, super::specs::FAIL);

impl Immediate for Fail {
    fn run_now(&self, params: Value, _ctx: &ActionContext) -> Result<Value, ActionError> {
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

immediate_action!(Set, super::specs::SET);

impl Immediate for Set {
    fn run_now(&self, params: Value, _ctx: &ActionContext) -> Result<Value, ActionError> {
        params
            .get("value")
            .cloned()
            .ok_or_else(|| ActionError::invalid_parameters("`value` is required"))
    }
}

/// Returns the first of `values` that is given: not `null` and not the
/// empty string (`"${params.data_path}"` falling back to
/// `"${params.code_path}"`, say). None given is a parameter error.
#[derive(Debug)]
pub struct Coalesce;

immediate_action!(Coalesce, super::specs::COALESCE);

impl Immediate for Coalesce {
    fn run_now(&self, params: Value, _ctx: &ActionContext) -> Result<Value, ActionError> {
        let Some(values) = params.get("values").and_then(Value::as_array) else {
            return Err(ActionError::invalid_parameters(
                "`values` is required: a list, of which the first that is not null or \"\" is returned",
            ));
        };
        values
            .iter()
            .find(|v| !v.is_null() && v.as_str() != Some(""))
            .cloned()
            .ok_or_else(|| {
                ActionError::invalid_parameters(format!(
                    "every one of the {} `values` is null or \"\"; give at least one",
                    values.len()
                ))
            })
    }
}

#[cfg(test)]
mod coalesce_tests {
    use super::*;

    fn run(params: Value) -> Result<Value, ActionError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        rt.block_on(Coalesce.run(
            params,
            &ActionContext::detached("pick", std::path::Path::new(".")),
        ))
    }

    #[test]
    fn the_first_value_given_wins_and_keeps_its_type() {
        assert_eq!(
            run(json!({"values": [null, "", "./data", "./src"]})).expect("given"),
            json!("./data")
        );
        assert_eq!(run(json!({"values": ["", 3]})).expect("given"), json!(3));
        assert_eq!(
            run(json!({"values": [[], "x"]})).expect("given"),
            json!([]),
            "an empty list is a value"
        );
    }

    #[test]
    fn nothing_given_is_a_parameter_error() {
        let e = run(json!({"values": [null, ""]})).expect_err("none");
        assert!(e.to_string().contains("null or"), "{e}");
        let e = run(json!({"value": 1})).expect_err("no list");
        assert!(e.to_string().contains("`values` is required"), "{e}");
    }
}
