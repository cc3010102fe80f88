//! What `orch run` prints for a run too large to print a line per event
//! (docs/cli.md, "What a run prints"): a steady progress line and every
//! failure off a terminal, a table of the steps that did not simply
//! complete, `--json` streamed in the documented shape, and `orch runs show
//! RUN --all` listing every step.

mod common;

use common::{orch_cmd, run};
use std::path::Path;

/// A definition of `n` independent `core.noop` steps `t0`..`t{n-1}`; with
/// `failing`, step `t{failing}` is a command that fails instead.
fn wide(dir: &Path, n: usize, failing: Option<usize>) {
    let mut s = String::from("{\"name\": \"wide\", \"steps\": [");
    for i in 0..n {
        if i > 0 {
            s.push(',');
        }
        if Some(i) == failing {
            s.push_str(&format!(
                "\n{{\"name\": \"t{i}\", \"module\": \"shell\", \"action\": \"exec\", \"parameters\": {{\"program\": \"sh\", \"args\": [\"-c\", \"echo broken >&2; exit 3\"]}}}}"
            ));
        } else {
            s.push_str(&format!(
                "\n{{\"name\": \"t{i}\", \"module\": \"core\", \"action\": \"noop\"}}"
            ));
        }
    }
    s.push_str("\n]}\n");
    std::fs::write(dir.join("wide.json"), s).expect("write");
}

#[test]
fn a_2000_step_run_off_a_terminal_prints_a_few_lines_not_one_per_event() {
    let dir = tempfile::tempdir().expect("tempdir");
    wide(dir.path(), 2000, None);
    let (code, stdout, stderr) = run(dir.path(), &["run", "wide.json"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    // The start, the end and a progress line every 2 s at most.
    assert!(
        stderr.lines().count() < 40,
        "{} lines on standard error:\n{stderr}",
        stderr.lines().count()
    );
    assert!(stderr.contains("started: 2000 steps"), "{stderr}");
    assert!(stderr.contains("run completed in"), "{stderr}");
    assert!(!stderr.contains("t17: completed"), "{stderr}");
    // Every step simply completed: no table, the summary and the hint.
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert!(
        lines[0].starts_with(
            "workflow `wide` completed: 2000 completed, 0 failed, 0 skipped of 2000 steps in "
        ),
        "{stdout}"
    );
    assert!(
        lines[1].starts_with("2000 of 2000 steps completed without retry")
            && lines[1].ends_with("--all` lists every step"),
        "{stdout}"
    );

    // `runs show` lists the same digest; `--all` lists every step.
    let (code, shown, err) = run(dir.path(), &["runs", "show", "last"]);
    assert_eq!(code, 0, "{err}");
    assert!(shown.lines().count() < 10, "{shown}");
    assert!(shown.contains("2000 steps: 2000 completed"), "{shown}");
    let (code, all, err) = run(dir.path(), &["runs", "show", "last", "--all"]);
    assert_eq!(code, 0, "{err}");
    let rows: Vec<&str> = all
        .lines()
        .filter(|l| l.starts_with('t') && l.contains(" completed "))
        .collect();
    assert_eq!(rows.len(), 2000, "{all}");
    for i in [0, 999, 1999] {
        assert!(
            rows.iter().any(|r| r.starts_with(&format!("t{i} "))),
            "t{i} is listed"
        );
    }
}

#[test]
fn a_failing_step_of_a_large_run_is_always_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    wide(dir.path(), 2000, Some(1234));
    let (code, stdout, stderr) = run(dir.path(), &["run", "wide.json", "--store", "memory://"]);
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    assert!(
        stderr
            .lines()
            .any(|l| l.contains("t1234: failed: ExitCode")),
        "the failure as it happens: {stderr}"
    );
    assert!(stderr.lines().count() < 40, "{stderr}");
    // The table: the header, the failed step, the summary and the hint.
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{stdout}");
    assert!(lines[0].starts_with("STEP"), "{stdout}");
    assert!(
        lines[1].starts_with("t1234") && lines[1].contains("failed"),
        "{stdout}"
    );
    assert!(
        lines[2].contains("1999 completed, 1 failed, 0 skipped of 2000 steps"),
        "{stdout}"
    );
    assert!(lines[3].starts_with("1999 of 2000 steps"), "{stdout}");
}

#[test]
fn the_json_report_of_a_large_run_is_streamed_in_the_documented_shape() {
    let dir = tempfile::tempdir().expect("tempdir");
    wide(dir.path(), 2000, Some(5));
    let out = orch_cmd(dir.path())
        .args(["run", "wide.json", "--json", "--store", "memory://"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(out.stderr.is_empty(), "nothing but the document: {out:?}");
    assert_eq!(out.stdout.last(), Some(&b'\n'), "one line, ended");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    let keys: Vec<&str> = v
        .as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "run_id",
            "workflow",
            "status",
            "success",
            "execution_time",
            "error",
            "steps"
        ]
    );
    assert_eq!(v["workflow"], "wide");
    assert_eq!(v["status"], "failed");
    assert_eq!(v["success"], false);
    assert!(
        v["execution_time"].as_f64().is_some_and(|t| t > 0.0),
        "{}",
        v["execution_time"]
    );
    let steps = v["steps"].as_array().expect("steps");
    assert_eq!(steps.len(), 2000);
    let keys: Vec<&str> = steps[0]
        .as_object()
        .expect("a step")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "name",
            "status",
            "attempts",
            "created_at",
            "ready_at",
            "started_at",
            "finished_at",
            "result",
            "note"
        ]
    );
    assert_eq!(steps[5]["name"], "t5");
    assert_eq!(steps[5]["status"], "failed");
    assert_eq!(steps[5]["result"]["error_type"], "ExitCode");
    assert_eq!(steps[5]["result"]["data"]["stderr"], "broken\n");
    assert_eq!(steps[1999]["status"], "completed");
    assert_eq!(steps[1999]["result"]["success"], true);
}
