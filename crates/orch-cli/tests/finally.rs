//! `finally:`, `on_failure:` and `run_if: always` steps through the binary:
//! after `orch cancel` from another process, after a run timeout, and how
//! `orch run --json` and `orch runs show` show them and flaky steps.

mod common;

use common::{orch_cmd, run};
use serde_json::Value;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

fn show_json(dir: &Path) -> Value {
    let (code, out, err) = run(dir, &["runs", "show", "last", "--json"]);
    assert_eq!(code, 0, "{err}");
    serde_json::from_str(&out).expect("json")
}

fn task<'a>(v: &'a Value, name: &str) -> &'a Value {
    v["tasks"]
        .as_array()
        .and_then(|t| t.iter().find(|t| t["name"] == name))
        .unwrap_or_else(|| panic!("no task {name} in {v:#}"))
}

const HOOKED: &str = r#"name: hooked
cancel_grace: 20s
steps:
  - { name: nap, module: shell, action: exec, parameters: { program: sleep, args: ["1000"] } }
  - { name: after, module: fs, action: write, parameters: { path: after.txt, content: x }, dependencies: [nap] }
  - name: noted
    module: fs
    action: write
    parameters: { path: noted.txt, content: "nap ${nap.status}" }
    conditions: { run_if: always }
on_failure:
  - { name: alert, module: fs, action: write, parameters: { path: alert.txt, content: "nap ${nap.status}" } }
finally:
  - { name: cleanup, module: fs, action: write, parameters: { path: cleanup.txt, content: done } }
"#;

#[test]
fn a_finally_step_runs_after_orch_cancel_from_another_process() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    std::fs::write(d.join("hooked.yaml"), HOOKED).expect("write");
    let mut child = orch_cmd(d)
        .args(["run", "hooked.yaml"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    // Wait until the long step runs.
    let start = Instant::now();
    loop {
        let (_, out, _) = run(d, &["runs", "show", "last", "--json"]);
        if serde_json::from_str::<Value>(&out).is_ok_and(|v| task(&v, "nap")["status"] == "running")
        {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the run did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let (code, out, err) = run(d, &["cancel", "last"]);
    assert_eq!(code, 0, "{out}{err}");
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(1), "a cancelled run exits 1");
    let v = show_json(d);
    assert_eq!(v["status"], "cancelled");
    assert_eq!(task(&v, "nap")["status"], "cancelled");
    assert_eq!(task(&v, "after")["status"], "cancelled");
    assert!(!d.join("after.txt").exists(), "nothing else started");
    // The step with run_if: always ran after the cancel, and saw it.
    assert_eq!(task(&v, "noted")["status"], "completed");
    assert_eq!(
        std::fs::read_to_string(d.join("noted.txt")).expect("noted"),
        "nap cancelled"
    );
    let cleanup = task(&v, "cleanup");
    assert_eq!(cleanup["status"], "completed");
    assert_eq!(cleanup["phase"], "finally");
    assert!(d.join("cleanup.txt").exists(), "the finally step ran");
    // A cancel is no failure: the on_failure step was skipped.
    let alert = task(&v, "alert");
    assert_eq!(alert["status"], "skipped");
    assert_eq!(alert["phase"], "on_failure");
    assert!(!d.join("alert.txt").exists());
    let (_, text, _) = run(d, &["runs", "show", "last"]);
    assert!(text.contains("cleanup (finally)"), "{text}");
    assert!(text.contains("alert (on_failure)"), "{text}");
}

#[test]
fn finally_and_on_failure_steps_run_after_a_run_timeout() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    std::fs::write(d.join("hooked.yaml"), HOOKED).expect("write");
    let (code, out, err) = run(d, &["run", "hooked.yaml", "--timeout", "1s"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("exceeded its timeout"), "{out}");
    let v = show_json(d);
    assert_eq!(v["status"], "failed");
    let nap = task(&v, "nap");
    assert_eq!(nap["status"], "failed");
    assert_eq!(nap["result"]["error_type"], "TimeoutError");
    assert_eq!(task(&v, "alert")["status"], "completed");
    assert_eq!(
        std::fs::read_to_string(d.join("alert.txt")).expect("alert"),
        "nap failed"
    );
    assert_eq!(task(&v, "cleanup")["status"], "completed");
    assert!(d.join("cleanup.txt").exists());
    assert!(!d.join("after.txt").exists());
}

#[test]
fn a_step_that_passed_on_a_retry_is_flaky_in_the_report_json_and_runs_show() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    std::fs::write(
        d.join("flaky.yaml"),
        r#"name: flaky
steps:
  - name: shaky
    module: shell
    action: script
    parameters: { script: "if [ -f tried ]; then exit 0; fi; touch tried; exit 3" }
    max_retries: 2
    retry: { initial_delay: 0s }
  - { name: steady, module: core, action: noop }
"#,
    )
    .expect("write");
    let (code, out, err) = run(d, &["run", "flaky.yaml", "--json"]);
    assert_eq!(code, 0, "{out}{err}");
    let v: Value = serde_json::from_str(&out).expect("json");
    let steps = v["steps"].as_array().expect("steps");
    assert_eq!(steps[0]["name"], "shaky");
    assert_eq!(steps[0]["flaky"], true);
    assert_eq!(steps[0]["attempts"], 2);
    assert_eq!(steps[0]["result"]["metadata"]["failed_attempts"], 1);
    assert!(steps[1].get("flaky").is_none(), "{}", steps[1]);
    let (_, table, _) = run(d, &["run", "flaky.yaml"]);
    // The marker is there now: no retry, nothing flaky.
    assert!(
        !table.contains("flaky:") && !table.contains("flaky)"),
        "{table}"
    );
    std::fs::remove_file(d.join("tried")).expect("rm");
    let (_, table, _) = run(d, &["run", "flaky.yaml"]);
    assert!(
        table.contains("flaky: passed on attempt 2 after 1 failed attempt"),
        "{table}"
    );
    assert!(table.contains("(1 flaky)"), "{table}");
    let (_, text, _) = run(d, &["runs", "show", "last"]);
    assert!(
        text.contains("flaky: passed on attempt 2 after 1 failed attempt"),
        "{text}"
    );
    assert_eq!(task(&show_json(d), "shaky")["flaky"], true);
}

#[test]
fn cancel_grace_on_the_command_line_overrides_the_workflows() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    std::fs::write(d.join("hooked.yaml"), HOOKED).expect("write");
    let (code, out, err) = run(
        d,
        &[
            "run",
            "hooked.yaml",
            "--timeout",
            "1s",
            "--cancel-grace",
            "0s",
        ],
    );
    assert_eq!(code, 1, "{out}{err}");
    let v = show_json(d);
    assert_eq!(v["status"], "failed");
    // No grace at all: the steps that would run after the stop never start.
    assert_eq!(task(&v, "cleanup")["status"], "cancelled");
    assert_eq!(task(&v, "alert")["status"], "cancelled");
    assert!(!d.join("cleanup.txt").exists());
    let (code, _, err) = run(d, &["run", "hooked.yaml", "--cancel-grace", "soon"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--cancel-grace"), "{err}");
}
