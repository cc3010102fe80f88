//! `orch retry`: a failed run retried keeps its completed steps (a ledger file shows they do not run
//! again), reruns the failed and skipped ones, is linked to the old run, and `--from` reruns a
//! completed step with what depends on it.

mod common;

use common::run;
use std::path::Path;

const FLOW: &str = "\
name: flaky
steps:
  - name: prepare
    module: shell
    action: script
    parameters: { script: 'echo prepare >> ledger.txt' }
  - name: deploy
    module: shell
    action: script
    parameters: { script: 'echo deploy >> ledger.txt; test -f fixed' }
    dependencies: [prepare]
  - name: announce
    module: shell
    action: script
    parameters: { script: 'echo announce >> ledger.txt' }
    dependencies: [deploy]
  - name: side
    module: shell
    action: script
    parameters: { script: 'echo side >> ledger.txt' }
";

fn ledger(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("ledger.txt"))
        .expect("ledger")
        .lines()
        .map(str::to_owned)
        .collect()
}

fn show(dir: &Path, id: &str) -> serde_json::Value {
    let (code, out, err) = run(dir, &["runs", "show", id, "--json"]);
    assert_eq!(code, 0, "{err}");
    serde_json::from_str(&out).expect("json")
}

#[test]
fn a_retry_keeps_completed_steps_and_runs_the_rest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    std::fs::write(d.join("flow.yaml"), FLOW).expect("write");
    let (code, _, err) = run(d, &["run", "flow.yaml"]);
    assert_eq!(code, 1, "the first run fails: {err}");
    let first = show(d, "last");
    let first_id = first["run_id"].as_str().expect("id").to_owned();
    let mut l = ledger(d);
    l.sort();
    assert_eq!(l, ["deploy", "prepare", "side"]);

    // The cause is fixed; the retry is a run of its own.
    std::fs::write(d.join("fixed"), "").expect("fix");
    let (code, out, err) = run(d, &["retry", &first_id]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        err.contains(&format!("retrying run {first_id} of `flaky`"))
            && err.contains("2 of 4 steps kept"),
        "{err}"
    );
    // prepare and side ran once; deploy twice; announce once, after the fix.
    let l = ledger(d);
    assert_eq!(l.iter().filter(|s| *s == "prepare").count(), 1, "{l:?}");
    assert_eq!(l.iter().filter(|s| *s == "side").count(), 1, "{l:?}");
    assert_eq!(l.iter().filter(|s| *s == "deploy").count(), 2, "{l:?}");
    assert_eq!(l.iter().filter(|s| *s == "announce").count(), 1, "{l:?}");

    // History shows both, the new one linked to the old one.
    let second = show(d, "last");
    assert_ne!(second["run_id"], first["run_id"]);
    assert_eq!(second["retry_of"], first_id.as_str());
    assert_eq!(second["status"], "completed");
    let statuses: Vec<&str> = second["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .map(|t| t["status"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(statuses, ["completed"; 4]);
    // The kept step has its old result.
    assert_eq!(second["tasks"][0]["result"], first["tasks"][0]["result"]);
    let (code, out, _) = run(d, &["runs", "list", "--json"]);
    assert_eq!(code, 0);
    let runs: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(runs.as_array().map(Vec::len), Some(2), "{runs}");
    let (_, text, _) = run(d, &["runs", "show", "last"]);
    assert!(text.contains(&format!("retry of: {first_id}")), "{text}");

    // A completed run cannot be retried; nothing runs.
    let (code, _, err) = run(d, &["retry", "last"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("only a failed or cancelled run"), "{err}");
    assert_eq!(ledger(d).len(), l.len());
}

#[test]
fn from_reruns_a_completed_step_and_what_depends_on_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    std::fs::write(d.join("flow.yaml"), FLOW).expect("write");
    let (code, _, _) = run(d, &["run", "flow.yaml"]);
    assert_eq!(code, 1);
    std::fs::write(d.join("fixed"), "").expect("fix");
    let (code, out, err) = run(d, &["retry", "last", "--from", "prepare"]);
    assert_eq!(code, 0, "{out}{err}");
    let l = ledger(d);
    assert_eq!(l.iter().filter(|s| *s == "prepare").count(), 2, "{l:?}");
    assert_eq!(l.iter().filter(|s| *s == "side").count(), 1, "kept: {l:?}");
    // The retry completed: it cannot be retried.
    let before = run(d, &["runs", "list", "--json"]).1;
    let (code, _, err) = run(d, &["retry", "last", "--from", "nope"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("only a failed or cancelled run"), "{err}");
    // A `--from` naming no step is refused before anything is recorded.
    std::fs::remove_file(d.join("fixed")).expect("unfix");
    let (code, _, _) = run(d, &["run", "flow.yaml"]);
    assert_eq!(code, 1);
    let (code, _, err) = run(d, &["retry", "last", "--from", "nope"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--from `nope`"), "{err}");
    let after = run(d, &["runs", "list", "--json"]).1;
    let count = |s: &str| {
        serde_json::from_str::<serde_json::Value>(s)
            .expect("json")
            .as_array()
            .map_or(0, Vec::len)
    };
    assert_eq!(count(&after), count(&before) + 1, "only the new failed run");
}
