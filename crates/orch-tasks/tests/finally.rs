//! Steps that run after a failure or a stop: trigger rules over every
//! upstream step, `on_failure:` and `finally:`, `run_if: always` after a
//! cancel or a run timeout within the cancel grace, and the grace's end.

mod common;

use async_trait::async_trait;
use common::{rt, yaml};
use orch_model::{Store, TaskStatus, WorkflowStatus};
use orch_tasks::{
    Action, ActionContext, ActionError, ActionRegistry, MemoryStore, RunOptions, RunReport,
    run_workflow,
};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Waits until its flag is set (then succeeds) or its token fires (then
/// fails, which the run reads as cancelled); marks itself started.
#[derive(Debug, Default)]
struct Gate {
    started: AtomicBool,
    open: AtomicBool,
}

#[async_trait]
impl Action for Gate {
    async fn run(&self, _: Value, ctx: &ActionContext) -> Result<Value, ActionError> {
        self.started.store(true, Ordering::SeqCst);
        loop {
            if self.open.load(Ordering::SeqCst) {
                return Ok(json!("opened"));
            }
            if ctx.cancel.is_cancelled() {
                return Err(ActionError::permanent("Cancelled", "stopped"));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

fn registry(gate: &Arc<Gate>) -> ActionRegistry {
    let mut r = ActionRegistry::with_builtins();
    r.register("test", "gate", gate.clone());
    // A gate that never opens.
    r.register("test", "hold", Arc::new(Gate::default()));
    r
}

fn status(r: &RunReport, name: &str) -> TaskStatus {
    r.steps
        .iter()
        .find(|s| s.name == name)
        .map(|s| s.status)
        .unwrap_or_else(|| panic!("no step {name}"))
}

fn note(r: &RunReport, name: &str) -> String {
    let s = r.steps.iter().find(|s| s.name == name).expect("step");
    s.note.clone().unwrap_or_default()
}

fn run(text: &str, opts: RunOptions) -> RunReport {
    let gate = Arc::new(Gate::default());
    rt().block_on(run_workflow(&yaml(text), &registry(&gate), opts, None))
        .expect("run starts")
}

/// Runs `text`, cancelling the run once `gate` started (the gate itself is
/// opened afterwards, when `open_after` is set).
fn run_cancelled(text: &str, opts: RunOptions, gate: &Arc<Gate>, open_after: bool) -> RunReport {
    let wf = yaml(text);
    let reg = registry(gate);
    let cancel = opts.cancel.clone();
    let g = gate.clone();
    rt().block_on(async move {
        let watcher = tokio::spawn(async move {
            while !g.started.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            cancel.cancel();
            if open_after {
                g.open.store(true, Ordering::SeqCst);
            }
        });
        let report = run_workflow(&wf, &reg, opts, None)
            .await
            .expect("run starts");
        watcher.abort();
        report
    })
}

#[test]
fn each_trigger_rule_reads_every_upstream_step_not_only_the_dependencies() {
    // `a` failed two levels up; the direct dependency `b` completed.
    let r = run(
        "name: up\nsteps:\n\
         - {name: a, module: core, action: fail, parameters: {retryable: false}}\n\
         - {name: b, module: core, action: noop, dependencies: [a], conditions: {run_if: always}}\n\
         - {name: one_failed, module: core, action: noop, dependencies: [b], conditions: {run_if: one_failed}}\n\
         - {name: failure, module: core, action: noop, dependencies: [b], conditions: {run_if: failure}}\n\
         - {name: none_failed, module: core, action: noop, dependencies: [b], conditions: {run_if: none_failed}}\n\
         - {name: all_success, module: core, action: noop, dependencies: [b], conditions: {run_if: all_success}}\n\
         - {name: all_done, module: core, action: noop, dependencies: [b], conditions: {run_if: all_done}}\n\
         - {name: success, module: core, action: noop, dependencies: [b]}\n\
         - {name: deeper, module: core, action: noop, dependencies: [one_failed], conditions: {run_if: one_failed}}\n",
        RunOptions::default(),
    );
    assert_eq!(status(&r, "a"), TaskStatus::Failed);
    assert_eq!(status(&r, "b"), TaskStatus::Completed);
    assert_eq!(status(&r, "one_failed"), TaskStatus::Completed);
    assert_eq!(status(&r, "failure"), TaskStatus::Skipped);
    assert_eq!(status(&r, "none_failed"), TaskStatus::Skipped);
    assert_eq!(
        note(&r, "none_failed"),
        "an upstream step failed (run_if: none_failed)"
    );
    assert_eq!(status(&r, "all_success"), TaskStatus::Skipped);
    assert_eq!(status(&r, "all_done"), TaskStatus::Completed);
    assert_eq!(status(&r, "success"), TaskStatus::Completed);
    // Three levels up still counts.
    assert_eq!(status(&r, "deeper"), TaskStatus::Completed);

    // Nothing failed; a step two levels up was skipped.
    let r = run(
        "name: up2\nparameters: {go: false}\nsteps:\n\
         - {name: a, module: core, action: noop, conditions: {when: {ref: '${params.go}'}}}\n\
         - {name: b, module: core, action: noop, dependencies: [a], conditions: {run_if: always}}\n\
         - {name: none_failed, module: core, action: noop, dependencies: [b], conditions: {run_if: none_failed}}\n\
         - {name: all_success, module: core, action: noop, dependencies: [b], conditions: {run_if: all_success}}\n\
         - {name: one_failed, module: core, action: noop, dependencies: [b], conditions: {run_if: one_failed}}\n",
        RunOptions::default(),
    );
    assert_eq!(status(&r, "a"), TaskStatus::Skipped);
    assert_eq!(status(&r, "none_failed"), TaskStatus::Completed);
    assert_eq!(status(&r, "all_success"), TaskStatus::Skipped);
    assert_eq!(
        note(&r, "all_success"),
        "not every upstream step completed (skipped; run_if: all_success)"
    );
    assert_eq!(status(&r, "one_failed"), TaskStatus::Skipped);
    assert_eq!(r.status, WorkflowStatus::Completed);
}

const HOOKS: &str = "\
name: hooks
parameters: {fail: false}
steps:
  - {name: build, module: core, action: noop}
  - name: test
    module: core
    action: fail
    parameters: {retryable: false}
    dependencies: [build]
    conditions: {when: {ref: '${params.fail}'}}
on_failure:
  - {name: alert, module: core, action: set, parameters: {value: '${test.status}'}}
finally:
  - {name: cleanup, module: core, action: noop}
";

#[test]
fn on_failure_steps_run_only_when_a_main_step_failed_and_finally_always() {
    let ok = run(HOOKS, RunOptions::default());
    assert_eq!(ok.status, WorkflowStatus::Completed);
    assert_eq!(status(&ok, "alert"), TaskStatus::Skipped);
    assert_eq!(
        note(&ok, "alert"),
        "no upstream step failed (run_if: one_failed)"
    );
    assert_eq!(status(&ok, "cleanup"), TaskStatus::Completed);

    let mut params = serde_json::Map::new();
    params.insert("fail".into(), json!(true));
    let failed = run(
        HOOKS,
        RunOptions {
            params,
            ..RunOptions::default()
        },
    );
    assert_eq!(failed.status, WorkflowStatus::Failed);
    assert_eq!(status(&failed, "test"), TaskStatus::Failed);
    assert_eq!(status(&failed, "alert"), TaskStatus::Completed);
    let alert = failed
        .steps
        .iter()
        .find(|s| s.name == "alert")
        .expect("alert");
    assert_eq!(
        alert.result.as_ref().map(|r| r.data.clone()),
        Some(json!("failed"))
    );
    assert_eq!(status(&failed, "cleanup"), TaskStatus::Completed);
}

const STOPPED: &str = "\
name: stopped
steps:
  - {name: long, module: test, action: gate}
  - {name: next, module: core, action: noop, dependencies: [long]}
  - {name: after, module: core, action: noop, dependencies: [long], conditions: {run_if: always}}
  - {name: after_next, module: core, action: noop, dependencies: [next], conditions: {run_if: all_done}}
  - {name: clean_only, module: core, action: noop, dependencies: [next], conditions: {run_if: none_failed}}
on_failure:
  - {name: alert, module: core, action: noop}
finally:
  - {name: cleanup, module: core, action: noop}
  - {name: report, module: core, action: sleep, parameters: {ms: 20}, dependencies: [cleanup]}
";

#[test]
fn a_cancel_runs_always_and_finally_steps_within_the_grace() {
    let gate = Arc::new(Gate::default());
    let r = run_cancelled(STOPPED, RunOptions::default(), &gate, false);
    assert_eq!(r.status, WorkflowStatus::Cancelled);
    assert_eq!(status(&r, "long"), TaskStatus::Cancelled);
    assert_eq!(status(&r, "next"), TaskStatus::Cancelled);
    assert_eq!(note(&r, "next"), "the run was stopped before it started");
    assert_eq!(status(&r, "after"), TaskStatus::Completed);
    // Below a cancelled step, through the graph.
    assert_eq!(status(&r, "after_next"), TaskStatus::Completed);
    assert_eq!(status(&r, "clean_only"), TaskStatus::Cancelled);
    // A cancel is not a failure.
    assert_eq!(status(&r, "alert"), TaskStatus::Skipped);
    assert_eq!(status(&r, "cleanup"), TaskStatus::Completed);
    assert_eq!(status(&r, "report"), TaskStatus::Completed);
}

#[test]
fn a_step_that_runs_after_a_stop_is_not_stopped_by_the_cancel() {
    // `side` runs beside `long` from the start; the cancel comes while it
    // runs, and it goes on to complete when its gate opens.
    let gate = Arc::new(Gate::default());
    let r = run_cancelled(
        "name: side\nsteps:\n\
         - {name: long, module: core, action: sleep, parameters: {ms: 60000}}\n\
         - {name: side, module: test, action: gate, conditions: {run_if: always}}\n",
        RunOptions::default(),
        &gate,
        true,
    );
    assert_eq!(status(&r, "long"), TaskStatus::Cancelled);
    assert_eq!(status(&r, "side"), TaskStatus::Completed);
    assert_eq!(r.status, WorkflowStatus::Cancelled);
}

#[test]
fn the_grace_ends_what_still_runs_and_a_zero_grace_starts_nothing() {
    // The finally step waits on a gate that never opens: the grace ends it.
    // (`long` comes after `first`, so that the cancel, sent once `long`
    // runs, finds `first` completed however slow the machine is.)
    let gate = Arc::new(Gate::default());
    let r = run_cancelled(
        "name: g\ncancel_grace: 200ms\nsteps:\n\
         - {name: first, module: core, action: noop}\n\
         - {name: long, module: test, action: gate, dependencies: [first]}\n\
         finally:\n\
         - {name: stuck, module: test, action: hold}\n\
         - {name: last, module: core, action: noop, dependencies: [stuck]}\n",
        RunOptions::default(),
        &gate,
        false,
    );
    assert_eq!(status(&r, "long"), TaskStatus::Cancelled);
    assert_eq!(status(&r, "first"), TaskStatus::Completed);
    let stuck = r.steps.iter().find(|s| s.name == "stuck").expect("stuck");
    assert_eq!(stuck.status, TaskStatus::Cancelled);
    assert!(stuck.started_at.is_some(), "it ran until the grace ended");
    assert_eq!(status(&r, "last"), TaskStatus::Cancelled);
    assert_eq!(r.status, WorkflowStatus::Cancelled);

    // The run's setting wins over the workflow's: no grace at all.
    let cancel = CancellationToken::new();
    cancel.cancel();
    let r = run(
        "name: z\ncancel_grace: 1h\nsteps:\n\
         - {name: a, module: core, action: noop}\n\
         finally:\n\
         - {name: cleanup, module: core, action: noop}\n",
        RunOptions {
            cancel,
            cancel_grace: Some(Duration::ZERO),
            ..RunOptions::default()
        },
    );
    assert_eq!(status(&r, "cleanup"), TaskStatus::Cancelled);
    assert_eq!(r.status, WorkflowStatus::Cancelled);
}

#[test]
fn a_run_timeout_fails_what_ran_and_runs_on_failure_and_finally_steps() {
    let r = run(
        "name: t\nsteps:\n\
         - {name: long, module: core, action: sleep, parameters: {ms: 60000}}\n\
         - {name: next, module: core, action: noop, dependencies: [long]}\n\
         on_failure:\n\
         - {name: alert, module: core, action: set, parameters: {value: '${long.status}'}}\n\
         finally:\n\
         - {name: cleanup, module: core, action: noop}\n",
        RunOptions {
            run_timeout: Some(Duration::from_millis(200)),
            ..RunOptions::default()
        },
    );
    assert_eq!(r.status, WorkflowStatus::Failed);
    assert!(r.error.as_deref().is_some_and(|e| e.contains("timeout")));
    let long = r.steps.iter().find(|s| s.name == "long").expect("long");
    assert_eq!(long.status, TaskStatus::Failed);
    let result = long.result.as_ref().expect("result");
    assert_eq!(result.error_type.as_deref(), Some("TimeoutError"));
    assert!(
        result
            .error_message
            .as_deref()
            .is_some_and(|m| m.contains("the run's timeout")),
        "{result:?}"
    );
    assert_eq!(status(&r, "next"), TaskStatus::Cancelled);
    assert_eq!(status(&r, "alert"), TaskStatus::Completed);
    assert_eq!(status(&r, "cleanup"), TaskStatus::Completed);
}

#[test]
fn a_cancel_asked_through_the_store_runs_finally_steps_and_records_them() {
    let store = Arc::new(MemoryStore::new());
    let gate = Arc::new(Gate::default());
    let reg = registry(&gate);
    let wf = yaml(STOPPED);
    let opts = RunOptions {
        store: Some(store.clone()),
        ..RunOptions::default()
    };
    let run_id = opts.run_id;
    let rt = rt();
    let report = rt.block_on(async {
        let s = store.clone();
        let g = gate.clone();
        let asker = tokio::spawn(async move {
            while !g.started.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            // As `orch cancel` from another process: a request in the store.
            s.request_cancel(run_id).await.expect("request")
        });
        let report = run_workflow(&wf, &reg, opts, None).await.expect("runs");
        assert!(asker.await.expect("asker"), "the run was running");
        report
    });
    assert_eq!(report.status, WorkflowStatus::Cancelled);
    assert_eq!(status(&report, "cleanup"), TaskStatus::Completed);
    let (run, tasks) = rt.block_on(async {
        (
            store.get_run(run_id).await.expect("get").expect("run"),
            store.tasks(run_id).await.expect("tasks"),
        )
    });
    assert_eq!(run.status, WorkflowStatus::Cancelled);
    let by_name = |n: &str| tasks.iter().find(|t| t.name == n).expect("task").status;
    assert_eq!(by_name("long"), TaskStatus::Cancelled);
    assert_eq!(by_name("after"), TaskStatus::Completed);
    assert_eq!(by_name("cleanup"), TaskStatus::Completed);
    assert_eq!(by_name("report"), TaskStatus::Completed);
    assert_eq!(by_name("alert"), TaskStatus::Skipped);
}

/// Fails its first `fail` attempts (retryably), then succeeds.
#[derive(Debug)]
struct FailFirst {
    fail: u32,
    seen: std::sync::atomic::AtomicU32,
}

#[async_trait]
impl Action for FailFirst {
    async fn run(&self, _: Value, _: &ActionContext) -> Result<Value, ActionError> {
        if self.seen.fetch_add(1, Ordering::SeqCst) < self.fail {
            return Err(ActionError::retryable("Flaky", "not this time"));
        }
        Ok(json!("passed"))
    }
}

#[test]
fn a_step_that_passed_after_failing_is_marked_flaky() {
    let mut reg = ActionRegistry::with_builtins();
    for (name, fail) in [("twice", 2), ("never", 0)] {
        reg.register(
            "test",
            name,
            Arc::new(FailFirst {
                fail,
                seen: 0.into(),
            }),
        );
    }
    let wf = yaml(
        "name: flaky\ndefaults: {max_retries: 3, retry: {initial_delay: 0s}}\nsteps:\n\
         - {name: shaky, module: test, action: twice}\n\
         - {name: steady, module: test, action: never}\n\
         - {name: broken, module: core, action: fail, parameters: {retryable: true}}\n",
    );
    let store = Arc::new(MemoryStore::new());
    let opts = RunOptions {
        store: Some(store.clone()),
        ..RunOptions::default()
    };
    let run_id = opts.run_id;
    let rt = rt();
    let r = rt
        .block_on(run_workflow(&wf, &reg, opts, None))
        .expect("runs");
    let result = |n: &str| {
        r.steps
            .iter()
            .find(|s| s.name == n)
            .and_then(|s| s.result.clone())
            .expect("result")
    };
    let shaky = result("shaky");
    assert_eq!(shaky.flaky(), Some(2));
    assert_eq!(shaky.metadata.get("flaky"), Some(&json!(true)));
    assert_eq!(result("steady").flaky(), None);
    assert_eq!(result("broken").flaky(), None, "a failure is not flaky");
    // The store keeps it with the result.
    let tasks = rt.block_on(store.tasks(run_id)).expect("tasks");
    let stored = tasks.iter().find(|t| t.name == "shaky").expect("task");
    assert_eq!(stored.result.as_ref().and_then(|r| r.flaky()), Some(2));
    assert_eq!(stored.attempt, 3);
}
