//! `orch serve`'s threads (docs/server.md, "Threads"): the API answers on a
//! thread of its own and the runs it starts go on the runs' runtime, so a
//! run goes on after the API stopped; `--api-threads` is checked.

mod common;
mod serving;

use common::run;
use serde_json::{Value, json};
use serving::{request, serve};

const SLOW: &str = "name: slow\nsteps:\n  - name: nap\n    module: core\n    action: sleep\n    parameters: { ms: 1500 }\n";

#[test]
fn a_run_started_through_the_api_ends_on_the_runs_threads_after_the_api_stopped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s = serve(dir.path(), &[], &[]);
    let (status, body) = request(
        &s,
        "POST",
        "/runs",
        &json!({ "definition": SLOW }).to_string(),
    );
    assert_eq!(status, 202, "{body}");
    let answer: Value = serde_json::from_str(&body).expect("json");
    let id = answer["run_id"].as_str().expect("run id").to_owned();
    // SIGTERM: the API stops (its runtime ends) while the step sleeps; the
    // run has 5 s to end on the runs' runtime.
    let pid = s.child.id().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(killed.success());
    let ended = s.child.wait().expect("wait");
    assert!(ended.success(), "{ended:?}");
    let (code, out, err) = run(dir.path(), &["runs", "show", &id, "--json"]);
    assert_eq!(code, 0, "{err}");
    let shown: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(shown["status"], "completed", "{out}");
}

#[test]
fn more_api_threads_answer_alike_and_none_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = serve(
        dir.path(),
        &["--store", "memory://"],
        &["--api-threads", "3"],
    );
    let def = json!({ "definition": SLOW.replace("1500", "10"), "wait": true }).to_string();
    let (status, body) = request(&s, "POST", "/runs", &def);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"state\":\"completed\""), "{body}");
    drop(s);
    let (code, _, err) = run(dir.path(), &["serve", "--api-threads", "0"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--api-threads"), "{err}");
}
