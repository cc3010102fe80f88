//! Issue 10, item 11: a zero timeout is refused where the Rust API takes one
//! outside a definition (definitions are checked by orch-model's validation).

use orch_model::{Limits, Task, Workflow, WorkflowStep};
use orch_tasks::orchestrator::{TaskOptions, TaskOrchestrator};
use orch_tasks::{ActionRegistry, RunOptions, run_workflow};
use std::time::Duration;

#[test]
fn a_zero_run_timeout_is_refused_before_anything_runs() {
    let mut wf = Workflow::new("w", "");
    wf.add_step(WorkflowStep::new("a", "core", "noop"));
    let wf = orch_model::definition::validate(wf, &Limits::default()).expect("valid");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let opts = RunOptions {
        run_timeout: Some(Duration::ZERO),
        ..RunOptions::default()
    };
    let err = rt
        .block_on(run_workflow(
            &wf,
            &ActionRegistry::with_builtins(),
            opts,
            None,
        ))
        .expect_err("refused");
    assert!(err.to_string().contains("must be positive"), "{err}");
}

#[test]
fn a_task_with_a_zero_timeout_is_refused_when_created() {
    let o = TaskOrchestrator::default();
    let err = o
        .create_task(
            "a",
            "core",
            "noop",
            TaskOptions {
                timeout: Some(Duration::ZERO),
                ..TaskOptions::default()
            },
        )
        .expect_err("refused");
    assert!(err.to_string().contains("must be positive"), "{err}");
    let mut task = Task::new("b", "core", "noop");
    task.timeout = Some(Duration::ZERO);
    let err = o.add_task(task).expect_err("refused");
    assert!(err.to_string().contains("must be positive"), "{err}");
    // A positive timeout is accepted.
    o.create_task(
        "c",
        "core",
        "noop",
        TaskOptions {
            timeout: Some(Duration::from_millis(1)),
            ..TaskOptions::default()
        },
    )
    .expect("accepted");
}
