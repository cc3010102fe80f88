//! WorkflowManager: definitions on disk, runs with progress, sub-workflows.

use orch_model::{
    ErrorCode, OrchestrationError, TaskStatus, Workflow, WorkflowStatus, WorkflowStep,
};
use orch_workflows::{ExecuteOptions, WorkflowManager};
use serde_json::{Map, Value, json};
use std::path::Path;
use std::time::Duration;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

fn manager(dir: &Path) -> WorkflowManager {
    WorkflowManager::builder(dir.join("workflows"))
        .work_dir(dir)
        .build()
        .expect("manager")
}

fn params(v: Value) -> Map<String, Value> {
    v.as_object().cloned().expect("object")
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|r| {
            r.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn saved_workflows_load_back_and_bad_files_are_reported_not_fatal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let m = manager(dir.path());
    assert!(m.list_workflows().is_empty());
    let wf = m
        .create_workflow("custom-analysis", "Custom code analysis workflow")
        .step(WorkflowStep::new("a", "core", "set").param("value", json!(1)))
        .step(WorkflowStep::new("b", "core", "noop").after("a"));
    let path = m.save_workflow(&wf).expect("saved");
    assert_eq!(path, dir.path().join("workflows/custom-analysis.json"));
    // The seed's saved format, written by hand, and a broken file.
    std::fs::write(
        dir.path().join("workflows/seed.json"),
        r#"{"name": "seed", "steps": [{"name": "s", "module": "core", "action": "noop", "parameters": {}, "dependencies": [], "timeout": null, "retry_count": 0, "max_retries": 3}]}"#,
    )
    .expect("write");
    std::fs::write(
        dir.path().join("workflows/broken.yaml"),
        "name: broken\nsteps:\n  - name: x\n    modul: core\n",
    )
    .expect("write");
    // TOML too.
    std::fs::write(
        dir.path().join("workflows/tom.toml"),
        "name = \"tom\"\n\n[[steps]]\nname = \"t\"\nmodule = \"core\"\naction = \"set\"\nparameters = { value = 7 }\n\n[[steps]]\nname = \"u\"\nmodule = \"core\"\naction = \"noop\"\ndependencies = [\"t\"]\n",
    )
    .expect("write");

    let again = manager(dir.path());
    assert_eq!(
        again.list_workflows(),
        vec!["custom-analysis", "seed", "tom"]
    );
    assert_eq!(
        again.execution_order("tom").expect("order"),
        vec![vec!["t".to_owned()], vec!["u".to_owned()]]
    );
    assert_eq!(
        again
            .get_workflow("custom-analysis")
            .expect("loaded")
            .steps
            .len(),
        2
    );
    let problems = again.load_problems();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].contains("broken.yaml:4:5"), "{}", problems[0]);
    assert_eq!(
        again.execution_order("custom-analysis").expect("order"),
        vec![vec!["a".to_owned()], vec!["b".to_owned()]]
    );
    assert!(
        again
            .to_mermaid("custom-analysis")
            .expect("mermaid")
            .contains("n0 --> n1")
    );
    assert!(
        again
            .to_dot("custom-analysis")
            .expect("dot")
            .starts_with("digraph")
    );
}

#[test]
fn an_invalid_workflow_is_not_saved() {
    let dir = tempfile::tempdir().expect("tempdir");
    let m = manager(dir.path());
    let wf = Workflow::new("bad", "")
        .step(WorkflowStep::new("a", "core", "noop").after("missing"))
        .step(WorkflowStep::new("b", "nosuch", "thing"));
    let err = m.save_workflow(&wf).expect_err("invalid");
    assert!(err.to_string().contains("missing"), "{err}");
    assert!(!dir.path().join("workflows").exists(), "nothing written");
    let wf = Workflow::new("bad", "").step(WorkflowStep::new("b", "nosuch", "thing"));
    let err = m.save_workflow(&wf).expect_err("unknown module");
    assert_eq!(err.error_code(), ErrorCode::ModuleNotFound);
    assert!(m.list_workflows().is_empty());
}

#[test]
fn runs_report_results_and_status_and_unknown_names_say_what_exists() {
    let dir = tempfile::tempdir().expect("tempdir");
    let m = manager(dir.path());
    let wf = Workflow::new("calc", "")
        .param("n", json!(2))
        .step(
            WorkflowStep::new("double", "core", "set").param("value", json!({"x": "${params.n}"})),
        )
        .step(
            WorkflowStep::new("show", "core", "set")
                .param("value", json!("x is ${double.result.x}")),
        );
    m.add_workflow(&wf).expect("added");
    let status = m.get_workflow_status("calc").expect("status");
    assert_eq!(status.status, WorkflowStatus::Draft);
    assert_eq!(status.progress.total_steps, 2);
    assert!(status.start_time.is_none());

    let rt = rt();
    let report = rt
        .block_on(m.execute_workflow("calc", params(json!({"n": 7}))))
        .expect("ran");
    assert!(report.succeeded());
    assert_eq!(
        report.steps[1].result.as_ref().expect("result").data,
        json!("x is 7")
    );
    let status = m.get_workflow_status("calc").expect("status");
    assert_eq!(status.status, WorkflowStatus::Completed);
    assert_eq!(
        (
            status.progress.completed_steps,
            status.progress.failed_steps,
            status.progress.running_steps
        ),
        (2, 0, 0)
    );
    assert!(status.end_time >= status.start_time);
    let run = m.get_run(report.run_id).expect("recorded");
    assert_eq!(run.workflow, "calc");
    assert_eq!(m.runs().len(), 1);

    let err = rt
        .block_on(m.execute_workflow("nope", Map::new()))
        .expect_err("unknown");
    assert_eq!(err.error_code(), ErrorCode::WorkflowNotFound);
    assert!(err.to_string().contains("known workflows: calc"), "{err}");
    assert!(m.get_workflow_status("nope").is_none());
}

#[test]
fn a_failed_run_has_an_error_message_naming_the_step() {
    let dir = tempfile::tempdir().expect("tempdir");
    let m = manager(dir.path());
    let wf = Workflow::new("f", "").step(
        WorkflowStep::new("boom", "core", "fail")
            .param("message", json!("disk full"))
            .param("retryable", json!(false)),
    );
    m.add_workflow(&wf).expect("added");
    let report = rt()
        .block_on(m.execute_workflow("f", Map::new()))
        .expect("ran");
    assert!(!report.succeeded());
    let s = m.get_workflow_status("f").expect("status");
    assert_eq!(s.status, WorkflowStatus::Failed);
    assert_eq!(s.progress.failed_steps, 1);
    assert_eq!(
        s.error_message.as_deref(),
        Some("step `boom` failed: disk full")
    );
}

#[test]
fn progress_counts_running_steps_while_the_run_goes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let m = manager(dir.path());
    let wf = Workflow::new("slow", "")
        .step(WorkflowStep::new("quick", "core", "noop"))
        .step(
            WorkflowStep::new("nap", "core", "sleep")
                .param("ms", json!(400))
                .after("quick"),
        );
    m.add_workflow(&wf).expect("added");
    let rt = rt();
    let m2 = m.clone();
    let handle = rt.spawn(async move { m2.execute_workflow("slow", Map::new()).await });
    let mut seen = None;
    for _ in 0..200 {
        std::thread::sleep(Duration::from_millis(5));
        let s = m.get_workflow_status("slow").expect("status");
        if s.progress.running_steps == 1 {
            seen = Some(s);
            break;
        }
    }
    let s = seen.expect("saw the sleep step running");
    assert_eq!(s.status, WorkflowStatus::Running);
    assert_eq!(s.progress.completed_steps, 1);
    assert_eq!(m.running_count(), 1);
    let report = rt.block_on(handle).expect("joined").expect("ran");
    assert!(report.succeeded());
    assert_eq!(m.running_count(), 0);
}

#[test]
fn sub_workflows_pass_parameters_and_results() {
    let dir = tempfile::tempdir().expect("tempdir");
    let m = manager(dir.path());
    m.add_workflow(&Workflow::new("child", "").param("who", Value::Null).step(
        WorkflowStep::new("greet", "core", "set").param("value", json!("hello ${params.who}")),
    ))
    .expect("child");
    m.add_workflow(
        &Workflow::new("parent", "")
            .step(
                WorkflowStep::new("call", "workflow", "run")
                    .param("workflow", json!("child"))
                    .param("parameters", json!({"who": "world"})),
            )
            .step(
                WorkflowStep::new("use", "core", "set")
                    .param("value", json!("${call.result.results.greet}")),
            ),
    )
    .expect("parent");
    let report = rt()
        .block_on(m.execute_workflow("parent", Map::new()))
        .expect("ran");
    assert!(report.succeeded(), "{report:?}");
    assert_eq!(
        report.steps[1].result.as_ref().expect("result").data,
        json!("hello world")
    );
    let runs = m.runs();
    assert_eq!(runs.len(), 2, "the sub-run is recorded too");
    let child = runs
        .iter()
        .find(|r| r.workflow == "child")
        .expect("child run");
    assert_eq!(child.parent, Some(report.run_id));
    assert_eq!(child.status, WorkflowStatus::Completed);
}

#[test]
fn a_workflow_calling_itself_through_another_is_refused_before_anything_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let m = manager(dir.path());
    let writes = |name: &str, callee: &str| {
        Workflow::new(name, "")
            .step(
                WorkflowStep::new("mark", "fs", "write")
                    .param("path", json!(format!("{name}.txt")))
                    .param("content", json!("ran")),
            )
            .step(
                WorkflowStep::new("call", "workflow", "run")
                    .param("workflow", json!(callee))
                    .after("mark"),
            )
    };
    m.add_workflow(&writes("a", "b")).expect("a");
    m.add_workflow(&writes("b", "a")).expect("b");
    let before = files_in(dir.path());
    let err = rt()
        .block_on(m.execute_workflow("a", Map::new()))
        .expect_err("cycle");
    assert_eq!(err.error_code(), ErrorCode::CycleDetected);
    assert!(err.to_string().contains("a -> b -> a"), "{err}");
    assert_eq!(files_in(dir.path()), before, "nothing ran");
    assert!(m.validate("b").is_err());
    assert!(m.runs().is_empty());
}

#[test]
fn a_dynamic_self_call_fails_the_step_instead_of_recursing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let m = manager(dir.path());
    m.add_workflow(
        &Workflow::new("loop", "")
            .param("target", json!("loop"))
            .step(
                WorkflowStep::new("call", "workflow", "run")
                    .param("workflow", json!("${params.target}")),
            ),
    )
    .expect("added");
    let report = rt()
        .block_on(m.execute_workflow("loop", Map::new()))
        .expect("ran");
    assert!(!report.succeeded());
    let r = report.steps[0].result.as_ref().expect("result");
    assert_eq!(r.error_type.as_deref(), Some("CycleDetected"));
    assert!(
        r.error_message
            .as_deref()
            .unwrap_or_default()
            .contains("loop -> loop")
    );
    assert_eq!(report.steps[0].status, TaskStatus::Failed);
}

#[test]
fn missing_parameters_are_an_error_before_the_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let m = manager(dir.path());
    m.add_workflow(
        &Workflow::new("p", "")
            .param("path", Value::Null)
            .step(WorkflowStep::new("a", "core", "noop")),
    )
    .expect("added");
    let err = rt()
        .block_on(m.execute("p", ExecuteOptions::default()))
        .expect_err("missing");
    assert!(
        matches!(err, OrchestrationError::InvalidParameters { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("-p path=VALUE"), "{err}");
}

/// Issue 10 item 17: what `save_workflow` and `add_workflow` accept, the
/// loader reads back after a restart; what the loader would refuse, they refuse.
#[test]
fn save_and_add_refuse_what_the_loader_would_refuse_after_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let m = manager(dir.path());
    let empty = m.create_workflow("empty", "no steps");
    for e in [
        m.save_workflow(&empty).expect_err("no steps"),
        m.add_workflow(&empty).expect_err("no steps"),
    ] {
        assert!(matches!(e, OrchestrationError::Validation(_)), "{e}");
        assert!(e.to_string().contains("at least one step"), "{e}");
    }
    assert!(m.list_workflows().is_empty());
    assert!(
        files_in(&dir.path().join("workflows")).is_empty(),
        "nothing written"
    );

    // The loader's size limit applies to what would be saved.
    let small = WorkflowManager::builder(dir.path().join("workflows"))
        .limits(orch_model::Limits {
            max_definition_bytes: 300,
            ..orch_model::Limits::default()
        })
        .build()
        .expect("manager");
    let big = Workflow::new("big", "x".repeat(400)).step(WorkflowStep::new("a", "core", "noop"));
    let e = small.save_workflow(&big).expect_err("too big to load back");
    assert!(e.to_string().contains("size limit of 300 bytes"), "{e}");
    assert!(small.add_workflow(&big).is_err());
    assert!(files_in(&dir.path().join("workflows")).is_empty());

    // What is accepted loads back, in a new manager, unchanged.
    let ok = Workflow::new("ok", "")
        .step(WorkflowStep::new("a", "core", "set").param("value", json!("$${literal}")));
    m.save_workflow(&ok).expect("saved");
    let again = manager(dir.path());
    assert!(
        again.load_problems().is_empty(),
        "{:?}",
        again.load_problems()
    );
    assert_eq!(
        again.get_workflow("ok").expect("loaded"),
        m.get_workflow("ok").expect("known")
    );
}

/// Issue 10 item 22: a workflow given as data runs like a known one and is
/// remembered under its name, without being listed or saved.
#[test]
fn a_workflow_given_as_data_runs_without_being_saved() {
    let dir = tempfile::tempdir().expect("tempdir");
    let m = manager(dir.path());
    m.add_workflow(
        &Workflow::new("child", "")
            .step(WorkflowStep::new("c", "core", "set").param("value", json!(3))),
    )
    .expect("added");
    let wf = Workflow::new("adhoc", "")
        .step(WorkflowStep::new("call", "workflow", "run").param("workflow", json!("child")))
        .step(
            WorkflowStep::new("after", "core", "set")
                .param("value", json!("${call.result.results.c}")),
        );
    let report = rt()
        .block_on(m.execute_definition(&wf, ExecuteOptions::default()))
        .expect("ran");
    assert!(report.succeeded(), "{report:?}");
    assert_eq!(m.list_workflows(), vec!["child"], "not added");
    assert!(!dir.path().join("workflows").exists(), "not saved");
    let status = m.get_workflow_status("adhoc").expect("remembered by name");
    assert_eq!(status.status, WorkflowStatus::Completed);
    assert_eq!(status.progress.completed_steps, 2);
    // Invalid definitions are refused before anything runs.
    let e = rt()
        .block_on(m.execute_definition(&Workflow::new("none", ""), ExecuteOptions::default()))
        .expect_err("no steps");
    assert!(matches!(e, OrchestrationError::Validation(_)), "{e}");
    let selfish = Workflow::new("selfish", "")
        .step(WorkflowStep::new("me", "workflow", "run").param("workflow", json!("selfish")));
    let e = rt()
        .block_on(m.execute_definition(&selfish, ExecuteOptions::default()))
        .expect_err("calls itself");
    assert!(e.to_string().contains("calls itself"), "{e}");
    assert!(m.get_workflow_status("none").is_none() && m.get_workflow_status("selfish").is_none());
}

/// Issue 10 item 22: the seed's `get_performance_summary`, for real.
#[test]
fn the_performance_summary_comes_from_the_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let m = manager(dir.path());
    let empty = serde_json::to_value(m.get_performance_summary(None)).expect("json");
    assert_eq!(
        empty,
        json!({
            "workflow": null,
            "total_workflows_executed": 0,
            "successful_executions": 0,
            "failed_executions": 0,
            "cancelled_executions": 0,
            "average_execution_time": 0.0,
            "performance_stats": {"count": 0, "total_time": 0.0, "average_time": 0.0, "min_time": 0.0, "max_time": 0.0},
            "module_usage_stats": {}
        })
    );
    m.add_workflow(
        &Workflow::new("w", "")
            .step(WorkflowStep::new("a", "core", "noop"))
            .step(
                WorkflowStep::new("b", "shell", "exec")
                    .param("program", json!("true"))
                    .after("a"),
            ),
    )
    .expect("added");
    m.add_workflow(
        &Workflow::new("f", "")
            .step(WorkflowStep::new("x", "core", "fail").param("retryable", json!(false))),
    )
    .expect("added");
    let rt = rt();
    for n in ["w", "w", "f"] {
        rt.block_on(m.execute_workflow(n, Map::new())).expect("ran");
    }
    let s = m.get_performance_summary(None);
    assert_eq!(
        (
            s.total_workflows_executed,
            s.successful_executions,
            s.failed_executions,
            s.cancelled_executions
        ),
        (3, 2, 1, 0)
    );
    assert_eq!(s.module_usage_stats["core"].count, 3);
    assert_eq!(s.module_usage_stats["shell"].count, 2);
    assert!(s.module_usage_stats["shell"].total_time > 0.0);
    assert!(
        s.performance_stats.min_time > 0.0
            && s.performance_stats.min_time <= s.performance_stats.max_time
    );
    let w = m.get_performance_summary(Some("w"));
    assert_eq!((w.total_workflows_executed, w.failed_executions), (2, 0));
    assert_eq!(w.module_usage_stats["core"].count, 2);
}
