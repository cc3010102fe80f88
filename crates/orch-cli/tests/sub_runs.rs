//! Issue 10 item 24: sub-workflow runs carry their parent in the store. `last`
//! is the newest run without a parent, also after `orch resume` (which gives
//! the run a new owner); the interrupted child run of a resumed run is
//! cancelled, not left `interrupted` forever.

mod common;

use common::{orch_cmd, run};
use serde_json::Value;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

fn json(dir: &Path, args: &[&str]) -> Value {
    let (code, out, err) = run(dir, args);
    assert_eq!(code, 0, "{args:?}: {err}");
    serde_json::from_str(&out).expect("JSON")
}

/// `(workflow, status, parent)` of each run, newest first.
fn listed(dir: &Path) -> Vec<(String, String, Option<String>)> {
    json(dir, &["runs", "list", "--json"])
        .as_array()
        .expect("a list")
        .iter()
        .map(|r| {
            (
                r["workflow"].as_str().unwrap_or_default().to_owned(),
                r["status"].as_str().unwrap_or_default().to_owned(),
                r["parent"].as_str().map(str::to_owned),
            )
        })
        .collect()
}

#[test]
fn after_resuming_a_run_killed_inside_its_sub_workflow_last_is_the_resumed_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let workflows = d.join(".orch/workflows");
    std::fs::create_dir_all(&workflows).expect("mkdir");
    let (started, go) = (d.join("started"), d.join("go"));
    // The child's step says it started, then waits until the test lets it go.
    std::fs::write(
        workflows.join("child.yaml"),
        format!(
            concat!(
                "name: child\n",
                "steps:\n",
                "  - name: wait\n",
                "    module: shell\n",
                "    action: script\n",
                "    parameters:\n",
                "      script: 'touch \"{s}\"; while [ ! -f \"{g}\" ]; do sleep 0.05; done; echo child done'\n",
            ),
            s = started.display(),
            g = go.display()
        ),
    )
    .expect("child");
    std::fs::write(
        d.join("parent.yaml"),
        concat!(
            "name: parent\n",
            "steps:\n",
            "  - {name: call, module: workflow, action: run, parameters: {workflow: child}}\n",
            "  - {name: after, module: shell, action: exec, parameters: {program: echo, args: [parent done]}, dependencies: [call]}\n",
        ),
    )
    .expect("parent");

    let mut first = orch_cmd(d)
        .args(["run", "parent.yaml", "--json"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !started.exists() {
        assert!(
            first.try_wait().expect("wait").is_none(),
            "orch ended before the child's step started"
        );
        assert!(Instant::now() < deadline, "the child's step never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Killed while the sub-workflow's step runs: both runs are interrupted.
    first.kill().expect("SIGKILL");
    first.wait().expect("reaped");
    std::fs::write(&go, "").expect("go");
    let before = json(d, &["runs", "list", "--json"]);
    let parent_id = before[1]["run_id"].as_str().expect("id").to_owned();
    let old_child = before[0]["run_id"].as_str().expect("id").to_owned();
    assert_eq!(
        listed(d),
        vec![
            (
                "child".to_owned(),
                "interrupted".to_owned(),
                Some(parent_id.clone())
            ),
            ("parent".to_owned(), "interrupted".to_owned(), None),
        ]
    );

    // The child alone is not resumed: its parent's step would run it again.
    let (code, _, err) = run(d, &["resume", &old_child]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(&format!(
            "is a sub-workflow run of run {parent_id}, which is interrupted; resume that one (`orch resume {parent_id}`)"
        )),
        "{err}"
    );

    let (code, out, err) = run(d, &["resume", &parent_id]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        err.contains(&format!(
            "cancelled 1 interrupted sub-workflow run(s) of run {parent_id} ({old_child})"
        )),
        "{err}"
    );
    // The resumed run (owned by the resuming process now) is `last`, not
    // the old child (whose dead owner no other run has any more), nor the
    // new child.
    assert_eq!(
        listed(d),
        vec![
            (
                "child".to_owned(),
                "completed".to_owned(),
                Some(parent_id.clone())
            ),
            (
                "child".to_owned(),
                "cancelled".to_owned(),
                Some(parent_id.clone())
            ),
            ("parent".to_owned(), "completed".to_owned(), None),
        ],
        "the old child is cancelled, not interrupted forever"
    );
    let last = json(d, &["runs", "show", "last", "--json"]);
    assert_eq!(last["run_id"], parent_id.as_str());
    assert_eq!(last["parent"], Value::Null);
    let (code, out, err) = run(d, &["logs", "last", "after"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("parent done"), "{out}");

    // `runs show` of a child names its parent.
    let (code, out, err) = run(d, &["runs", "show", &old_child]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&format!("parent: {parent_id}")), "{out}");
    let shown = json(d, &["runs", "show", &old_child, "--json"]);
    assert_eq!(shown["parent"], parent_id.as_str());
}
