//! Logs, traces and metrics of the real binary: `-v`, `-vv`, `-q` and `RUST_LOG` on standard error, and `orch serve`'s `GET /metrics` in the Prometheus text format after a run (over HTTP on loopback).

mod common;
mod serving;

use common::orch_cmd;
use serving::{Serve, request, serve};
use std::path::Path;

const WF: &str = "name: logged\nsteps:\n  - name: first\n    module: core\n    action: set\n    parameters: { value: 1 }\n  - name: second\n    module: shell\n    action: exec\n    parameters: { program: echo, args: [hi] }\n    dependencies: [first]\n";

/// `orch ARGS` in `dir` with `RUST_LOG` as given (unset: None): exit code, stdout, stderr.
fn run(dir: &Path, args: &[&str], rust_log: Option<&str>) -> (i32, String, String) {
    let mut c = orch_cmd(dir);
    c.env_remove("RUST_LOG");
    if let Some(v) = rust_log {
        c.env("RUST_LOG", v);
    }
    let out = c.args(args).output().expect("runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn workflow() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("wf.yaml"), WF).expect("write");
    dir
}

#[test]
fn verbose_flags_log_runs_and_attempts_on_stderr_and_the_default_does_not() {
    let dir = workflow();
    let (code, out, quiet_default) = run(dir.path(), &["run", "wf.yaml"], None);
    assert_eq!(code, 0, "{out}{quiet_default}");
    for level in ["INFO", "DEBUG", "TRACE"] {
        assert!(
            !quiet_default.contains(level),
            "no log lines by default: {quiet_default}"
        );
    }

    let (code, out_v, err) = run(dir.path(), &["-v", "run", "wf.yaml"], None);
    assert_eq!(code, 0, "{err}");
    // The run's span and its start and end, at INFO; the table is unchanged.
    let started = err
        .lines()
        .find(|l| l.contains(" INFO ") && l.contains("run started"))
        .unwrap_or_else(|| panic!("a run-started line: {err}"));
    assert!(started.contains("run{run="), "{started}");
    assert!(started.contains("workflow=logged"), "{started}");
    assert!(
        err.lines().any(|l| l.contains(" INFO ")
            && l.contains("run ended")
            && l.contains("status=completed")),
        "{err}"
    );
    assert!(!err.contains("DEBUG"), "-v is INFO: {err}");
    assert_eq!(
        out_v.lines().filter(|l| l.contains("completed")).count(),
        out.lines().filter(|l| l.contains("completed")).count(),
        "stdout is the same:\n{out}\n{out_v}"
    );

    // -vv: a span per attempt, inside the run's.
    let (code, _, err) = run(dir.path(), &["-vv", "run", "wf.yaml"], None);
    assert_eq!(code, 0, "{err}");
    let attempt = err
        .lines()
        .find(|l| l.contains("DEBUG") && l.contains("attempt ended") && l.contains("step=second"))
        .unwrap_or_else(|| panic!("an attempt line: {err}"));
    assert!(
        attempt.contains("run{run="),
        "nested in the run's span: {attempt}"
    );
    assert!(attempt.contains("status=completed"), "{attempt}");
}

#[test]
fn rust_log_decides_when_set_and_a_bad_one_is_refused() {
    let dir = workflow();
    let (code, _, err) = run(dir.path(), &["run", "wf.yaml"], Some("orch_tasks=debug"));
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("attempt ended"), "orch_tasks at DEBUG: {err}");
    assert!(
        !err.contains("run started"),
        "orch_workflows stays off: {err}"
    );

    let (code, out, err) = run(dir.path(), &["run", "wf.yaml"], Some("orch=loud"));
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        err.contains("RUST_LOG=\"orch=loud\" is not a valid filter"),
        "{err}"
    );
    assert!(out.is_empty(), "nothing ran: {out}");
}

#[test]
fn quiet_leaves_the_table_and_drops_the_live_progress() {
    let dir = workflow();
    let (code, out, err) = run(dir.path(), &["run", "wf.yaml"], None);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("first: started"), "progress by default: {err}");
    let (code, out_q, err_q) = run(dir.path(), &["-q", "run", "wf.yaml"], None);
    assert_eq!(code, 0, "{err_q}");
    assert!(err_q.is_empty(), "-q: nothing on stderr: {err_q}");
    assert!(
        out_q.contains("workflow `logged` completed"),
        "the table still prints: {out_q}"
    );
    assert_eq!(out.lines().count(), out_q.lines().count(), "{out}\n{out_q}");
    let (code, _, err) = common::run(dir.path(), &["-q", "-v", "run", "wf.yaml"]);
    assert_eq!(code, 2, "-q and -v conflict: {err}");
}

#[test]
fn orch_serve_serves_a_runs_metrics_in_the_prometheus_format() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = serve(dir.path(), &["--store", "memory://"], &[]);
    let def = serde_json::json!({"definition": WF, "wait": true}).to_string();
    let (status, body) = request(&s, "POST", "/runs", &def);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"state\":\"completed\""), "{body}");

    let (status, text) = request(&s, "GET", "/metrics", "");
    assert_eq!(status, 200, "{text}");
    let has = |line: &str| {
        assert!(
            text.lines().any(|l| l == line),
            "no line `{line}` in:\n{text}"
        );
    };
    has("# TYPE orch_runs_finished_total counter");
    has("orch_runs_started_total 1");
    has("orch_runs_finished_total{status=\"completed\"} 1");
    has("orch_runs_running 0");
    has("orch_attempts_started_total 2");
    has("orch_attempts_finished_total{status=\"succeeded\"} 2");
    has("orch_steps_finished_total{status=\"completed\"} 2");
    has("orch_steps_ready 0");
    has("orch_steps_running 0");
    has("# TYPE orch_attempt_duration_seconds histogram");
    has("orch_attempt_duration_seconds_count{status=\"succeeded\"} 2");
    has("orch_attempt_duration_seconds_bucket{status=\"succeeded\",le=\"+Inf\"} 2");
    has("orch_store_call_duration_seconds_count{op=\"create_run\"} 1");
    has("orch_workers{state=\"running\"} 0");
    assert!(
        text.contains("# HELP orch_attempts_started_total Attempts started"),
        "{text}"
    );

    // Without the token: 401.
    let anonymous = Serve {
        child: std::process::Command::new("true").spawn().expect("true"),
        addr: s.addr.clone(),
        token: "wrong".into(),
    };
    assert_eq!(request(&anonymous, "GET", "/metrics", "").0, 401);
}
