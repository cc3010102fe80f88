//! The Rust examples of docs/actions.md, compiled and run: each test holds one example verbatim
//! (`crates/orch-cli/tests/examples.rs` checks that the page and this file agree, line by line).

use orch_model::{Format, Limits, load_workflow};
use orch_tasks::{RunOptions, run_workflow};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// Runs one step `text.shout` with `text` through `registry`; it must
/// succeed, and its result is returned.
fn shout_step(registry: &orch_tasks::ActionRegistry, text: &str) -> serde_json::Value {
    let wf = load_workflow(
        &format!(
            "name: shout\nsteps:\n  - {{ name: s, module: text, action: shout, parameters: {{ text: {text} }} }}\n"
        ),
        Format::Yaml,
        &Limits::default(),
        None,
    )
    .expect("valid");
    let report = rt()
        .block_on(run_workflow(&wf, registry, RunOptions::default(), None))
        .expect("runs");
    assert!(report.succeeded(), "{report:?}");
    let result = report.steps[0].result.as_ref().expect("result");
    result.data.clone()
}

// The examples keep the page's layout, so that the page and this file agree.
#[rustfmt::skip]
#[test]
fn a_user_action_is_registered_and_runs() {
    // docs/actions.md, the first example:
    use async_trait::async_trait;
    use orch_tasks::{Action, ActionContext, ActionError, ActionRegistry};
    use serde_json::Value;
    use std::sync::Arc;

    #[derive(Debug)]
    struct Shout;

    #[async_trait]
    impl Action for Shout {
        async fn run(&self, params: Value, _ctx: &ActionContext) -> Result<Value, ActionError> {
            let text = params["text"].as_str().ok_or_else(|| ActionError::invalid_parameters("`text` is required"))?;
            Ok(Value::String(text.to_uppercase()))
        }
    }

    let mut registry = ActionRegistry::with_builtins();
    registry.register("text", "shout", Arc::new(Shout));
    // End of the example.
    assert_eq!(shout_step(&registry, "hello"), Value::String("HELLO".into()));
}

#[rustfmt::skip]
#[test]
fn an_action_that_never_waits_offers_run_now() {
    use async_trait::async_trait;
    use orch_tasks::{Action, ActionContext, ActionError, ActionRegistry};
    use serde_json::Value;
    use std::sync::Arc;

    #[derive(Debug)]
    struct Shout;

    // docs/actions.md, the second example:
    use orch_tasks::Immediate;

    impl Immediate for Shout {
        fn run_now(&self, params: Value, _ctx: &ActionContext) -> Result<Value, ActionError> {
            let text = params["text"].as_str().ok_or_else(|| ActionError::invalid_parameters("`text` is required"))?;
            Ok(Value::String(text.to_uppercase()))
        }
    }

    #[async_trait]
    impl Action for Shout {
        async fn run(&self, params: Value, ctx: &ActionContext) -> Result<Value, ActionError> {
            self.run_now(params, ctx)
        }
        fn immediate(&self) -> Option<&dyn Immediate> {
            Some(self)
        }
    }
    // End of the example.
    let ctx = ActionContext::detached("s", std::path::Path::new("."));
    let got = Shout
        .immediate()
        .expect("immediate")
        .run_now(serde_json::json!({"text": "hi"}), &ctx)
        .expect("ran");
    assert_eq!(got, Value::String("HI".into()));
    let mut registry = ActionRegistry::with_builtins();
    registry.register("text", "shout", Arc::new(Shout));
    assert_eq!(shout_step(&registry, "hey"), Value::String("HEY".into()));
}
