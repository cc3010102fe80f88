//! Step processes: what escapes a step's process group (`setsid`) is stopped
//! with the step, every process is marked, output is capped where it is
//! stored, and an external module's answer that is too large says so.

mod common;

use common::{process_gone, rt, wait_gone, yaml};
use orch_model::{TaskStatus, ValidWorkflow, WorkflowStatus};
use orch_tasks::{
    Action, ActionContext, ActionRegistry, External, RunOptions, RunReport, run_workflow,
};
use serde_json::{Value, json};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

fn run(wf: &ValidWorkflow, opts: RunOptions) -> RunReport {
    rt().block_on(run_workflow(
        wf,
        &ActionRegistry::with_builtins(),
        opts,
        None,
    ))
    .expect("run starts")
}

fn read_pid(path: &Path) -> i32 {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .trim()
        .parse()
        .expect("a pid")
}

fn kill_if_alive(pid: i32) {
    if !process_gone(pid) {
        let _ = std::process::Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status();
    }
}

/// Options for a run in `dir`.
fn in_dir(dir: &Path) -> RunOptions {
    RunOptions {
        work_dir: dir.to_path_buf(),
        ..RunOptions::default()
    }
}

/// The pid a step wrote to `DIR/escaped.pid`, and whether that process is
/// gone within a bounded wait (it is killed afterwards if not, so that no
/// test leaves it behind).
fn escaped_gone(dir: &Path) -> (i32, bool) {
    let escaped = read_pid(&dir.join("escaped.pid"));
    let gone = wait_gone(escaped);
    kill_if_alive(escaped);
    (escaped, gone)
}

#[test]
fn a_timeout_stops_a_child_that_left_the_process_group_with_setsid() {
    let dir = tempfile::tempdir().expect("tempdir");
    let wf = yaml(
        "name: t\nsteps:\n  - name: slow\n    module: shell\n    action: script\n    timeout: 1s\n    parameters:\n      script: 'setsid sleep 1000 & echo $! > escaped.pid; echo $$ > leader.pid; sleep 1000'\n",
    );
    let opts = RunOptions {
        kill_grace: Duration::from_millis(300),
        ..in_dir(dir.path())
    };
    let report = run(&wf, opts);
    assert_eq!(report.status, WorkflowStatus::Failed);
    let r = report.steps[0].result.clone().expect("result");
    assert_eq!(r.error_type.as_deref(), Some("TimeoutError"), "{r:?}");
    let leader = read_pid(&dir.path().join("leader.pid"));
    let (escaped, escaped_gone) = escaped_gone(dir.path());
    let leader_gone = wait_gone(leader);
    assert!(
        leader_gone,
        "the step's shell (pid {leader}) survived the timeout"
    );
    assert!(
        escaped_gone,
        "the `setsid sleep 1000` (pid {escaped}) survived its step's timeout"
    );
}

#[test]
fn a_setsid_child_is_stopped_when_its_step_ends() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Its output goes elsewhere, so no pipe keeps the step waiting: only the
    // marker can find it once the step's shell has exited.
    let wf = yaml(
        "name: t\nsteps:\n  - name: quick\n    module: shell\n    action: script\n    timeout: 60s\n    parameters:\n      script: 'setsid sleep 1000 > /dev/null 2>&1 < /dev/null & echo $! > escaped.pid'\n",
    );
    let opts = in_dir(dir.path());
    let report = run(&wf, opts);
    assert_eq!(report.status, WorkflowStatus::Completed, "{report:?}");
    let (escaped, gone) = escaped_gone(dir.path());
    assert!(
        gone,
        "the `setsid sleep 1000` (pid {escaped}) outlived its step"
    );
}

#[test]
fn a_setsid_child_holding_the_output_pipe_does_not_keep_the_step_waiting() {
    let dir = tempfile::tempdir().expect("tempdir");
    let wf = yaml(
        "name: t\nsteps:\n  - name: quick\n    module: shell\n    action: script\n    timeout: 60s\n    parameters:\n      script: 'setsid sleep 1000 & echo $! > escaped.pid; echo done'\n",
    );
    let opts = in_dir(dir.path());
    let report = run(&wf, opts);
    let (escaped, gone) = escaped_gone(dir.path());
    assert_eq!(report.status, WorkflowStatus::Completed, "{report:?}");
    let r = report.steps[0].result.clone().expect("result");
    assert_eq!(r.data["stdout"], "done\n");
    assert!(
        gone,
        "the `setsid sleep 1000` (pid {escaped}) outlived its step"
    );
}

#[test]
fn every_step_process_carries_the_run_the_step_and_the_attempt() {
    let dir = tempfile::tempdir().expect("tempdir");
    let wf = yaml(
        "name: t\nsteps:\n  - name: show\n    module: shell\n    action: script\n    parameters:\n      script: 'echo \"$ORCH_RUN_ID $ORCH_STEP $ORCH_ATTEMPT\"; test -n \"$ORCH_OWNER\" && test -n \"$ORCH_PROCESS_TOKEN\"'\n",
    );
    let opts = in_dir(dir.path());
    let run_id = opts.run_id;
    let report = run(&wf, opts);
    assert_eq!(report.status, WorkflowStatus::Completed, "{report:?}");
    let r = report.steps[0].result.clone().expect("result");
    assert_eq!(r.data["stdout"], format!("{run_id} show 1\n"));
}

#[test]
fn a_step_may_not_set_the_marker_variables() {
    let dir = tempfile::tempdir().expect("tempdir");
    let wf = yaml(
        "name: t\nsteps:\n  - name: hide\n    module: shell\n    action: exec\n    parameters:\n      program: 'true'\n      env: { ORCH_PROCESS_TOKEN: x }\n",
    );
    let opts = in_dir(dir.path());
    let report = run(&wf, opts);
    assert_eq!(report.steps[0].status, TaskStatus::Failed);
    let r = report.steps[0].result.clone().expect("result");
    assert_eq!(r.error_type.as_deref(), Some("InvalidParameters"));
    let msg = r.error_message.unwrap_or_default();
    assert!(msg.contains("ORCH_PROCESS_TOKEN"), "{msg}");
}

#[test]
fn a_mebibyte_of_nul_bytes_is_stored_in_at_most_a_mebibyte() {
    let dir = tempfile::tempdir().expect("tempdir");
    let wf = yaml(
        "name: t\nsteps:\n  - name: zeros\n    module: shell\n    action: exec\n    parameters:\n      program: head\n      args: ['-c', '1048576', '/dev/zero']\n",
    );
    let opts = in_dir(dir.path());
    let limit = opts.output_limit;
    assert_eq!(limit, 1024 * 1024);
    let report = run(&wf, opts);
    assert_eq!(report.status, WorkflowStatus::Completed, "{report:?}");
    let data = report.steps[0].result.clone().expect("result").data;
    let stored = serde_json::to_string(&data["stdout"]).expect("json");
    // The JSON string with its two quotes.
    assert!(
        stored.len() <= limit + 2,
        "stdout takes {} bytes of JSON",
        stored.len()
    );
    // As many NULs as fit, each stored as `\u0000`.
    assert_eq!(
        data["stdout"].as_str().map(str::len),
        Some(limit / 6),
        "{}",
        &stored[..40]
    );
    assert_eq!(data["stdout_truncated"], true);
    // The whole result (what the store keeps) stays near the limit too.
    let whole = serde_json::to_string(&data).expect("json").len();
    assert!(whole < limit + 200, "the result takes {whole} bytes");
}

#[test]
fn output_that_fits_is_stored_whole_and_not_marked_truncated() {
    let dir = tempfile::tempdir().expect("tempdir");
    let wf = yaml(
        "name: t\nsteps:\n  - name: text\n    module: shell\n    action: script\n    parameters:\n      script: 'printf \"a\\tb\\001é\\n\"; printf \"\\377\" >&2'\n",
    );
    let opts = RunOptions {
        output_limit: 64,
        ..in_dir(dir.path())
    };
    let report = run(&wf, opts);
    assert_eq!(report.status, WorkflowStatus::Completed, "{report:?}");
    let data = report.steps[0].result.clone().expect("result").data;
    assert_eq!(data["stdout"], "a\tb\u{1}é\n");
    assert_eq!(data["stdout_truncated"], false);
    // A byte that is not UTF-8 is stored as U+FFFD.
    assert_eq!(data["stderr"], "\u{FFFD}");
    assert_eq!(data["stderr_truncated"], false);
}

fn big_answer_module(bytes: usize) -> External {
    External {
        program: "sh".into(),
        args: vec![
            "-c".into(),
            format!(
                "cat > /dev/null; printf '\"'; head -c {bytes} /dev/zero | tr '\\0' a; printf '\"'"
            ),
        ],
    }
}

fn ask(module: &External, output_limit: usize) -> Result<Value, orch_tasks::ActionError> {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut ctx = ActionContext::detached("ask", dir.path());
    ctx.output_limit = output_limit;
    rt().block_on(module.run(json!({}), &ctx))
}

#[test]
fn an_external_answer_over_the_limit_says_it_is_too_large() {
    let err = ask(&big_answer_module(1024 * 1024 + 10), 1024 * 1024)
        .expect_err("the answer is larger than the limit");
    assert_eq!(err.error_type, "ProtocolError");
    assert!(
        err.message.contains("more than 1048576 bytes"),
        "{}",
        err.message
    );
    assert!(!err.message.contains("EOF"), "{}", err.message);
    assert!(!err.retryable);
}

#[test]
fn an_external_answer_within_the_limit_is_the_result() {
    let answer = ask(&big_answer_module(1000), 1002).expect("an answer of 1002 bytes fits");
    assert_eq!(answer.as_str().map(str::len), Some(1000));
}

#[test]
fn an_external_module_in_a_run_reports_the_large_answer_as_its_failure() {
    let mut reg = ActionRegistry::with_builtins();
    reg.register_module("big", Arc::new(big_answer_module(5000)));
    let wf = yaml("name: t\nsteps:\n  - { name: ask, module: big, action: answer }\n");
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = RunOptions {
        output_limit: 4096,
        ..in_dir(dir.path())
    };
    let report = rt()
        .block_on(run_workflow(&wf, &reg, opts, None))
        .expect("run starts");
    let r = report.steps[0].result.clone().expect("result");
    assert_eq!(r.error_type.as_deref(), Some("ProtocolError"));
    assert!(
        r.error_message
            .as_deref()
            .is_some_and(|m| m.contains("more than 4096 bytes")),
        "{r:?}"
    );
}

/// Moves its worker's runtime core to another thread (`block_in_place`):
/// the thread it ran on becomes a blocking-pool thread, which exits once
/// idle for the runtime's keep-alive.
#[derive(Debug)]
struct RetireWorker;

#[async_trait::async_trait]
impl Action for RetireWorker {
    async fn run(&self, _: Value, _: &ActionContext) -> Result<Value, orch_tasks::ActionError> {
        // Long enough for the new thread to take the core over.
        tokio::task::block_in_place(|| std::thread::sleep(Duration::from_millis(100)));
        tokio::time::sleep(Duration::from_millis(500)).await;
        Ok(Value::Null)
    }
}

#[test]
fn a_step_survives_the_retirement_of_the_worker_thread_that_started_it() {
    // One worker, retired threads exit after 1 ms: had the worker forked the
    // step's process, the parent-death signal would kill it when the worker
    // retires and exits.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_keep_alive(Duration::from_millis(1))
        .enable_all()
        .build()
        .expect("runtime");
    let mut reg = ActionRegistry::with_builtins();
    reg.register("test", "retire", Arc::new(RetireWorker));
    let wf = yaml(
        "name: t\nsteps:\n  - { name: long, module: shell, action: script, parameters: { script: 'sleep 2' } }\n  - { name: retire, module: test, action: retire }\n",
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = in_dir(dir.path());
    // Driven on a worker, as orch run drives its runs.
    let report = rt
        .block_on(orch_tasks::drive(async move {
            run_workflow(&wf, &reg, opts, None).await
        }))
        .expect("run starts");
    assert_eq!(report.status, WorkflowStatus::Completed, "{report:?}");
}
