//! The items of a fan-out over a list known at run time (`for_each:
//! "${STEP.result}"`) are shown with the run they belong to: `orch runs
//! show RUN` lists them under their step as `STEP[0]`, `STEP[1]`, ... (text
//! and `--json`), and `orch run`'s report lists them after their step; for
//! a run one process drives on SQLite, and for a run done by an `orch
//! worker` process on a shared SQLite file.

mod common;

use common::{orch_cmd, run};
use serde_json::{Value, json};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

const FAN: &str = r#"name: fan
steps:
  - { name: found, module: core, action: set, parameters: { value: [ada, grace, linus] } }
  - { name: greet, module: core, action: set, for_each: "${found.result}", parameters: { value: "hello ${item}" } }
  - { name: none, module: core, action: set, parameters: { value: [] } }
  - { name: empty, module: core, action: set, for_each: "${none.result}", parameters: { value: "${item}" } }
  - { name: after, module: core, action: set, parameters: { value: { greetings: "${greet.result}", empty: "${empty.result}" } } }
"#;

fn json_of(dir: &Path, args: &[&str]) -> Value {
    let (code, out, err) = run(dir, args);
    assert_eq!(code, 0, "{args:?}: {err}");
    serde_json::from_str(&out).expect("JSON")
}

fn task<'a>(v: &'a Value, name: &str) -> &'a Value {
    v["tasks"]
        .as_array()
        .and_then(|t| t.iter().find(|t| t["name"] == name))
        .unwrap_or_else(|| panic!("no task `{name}` in {v}"))
}

/// What `orch runs show` says of `greet` and `empty`, in JSON and text.
fn check_show(dir: &Path, store: &[&str], run_id: &str) {
    let mut args = vec!["runs", "show", run_id, "--json"];
    args.extend_from_slice(store);
    let v = json_of(dir, &args);
    let greet = task(&v, "greet");
    let items = greet["items"].as_array().expect("greet's items");
    let names: Vec<&str> = items.iter().filter_map(|i| i["name"].as_str()).collect();
    assert_eq!(names, ["greet[0]", "greet[1]", "greet[2]"]);
    assert!(
        items.iter().all(|i| i["status"] == "completed"),
        "{items:?}"
    );
    assert_eq!(items[1]["result"]["data"], "hello grace");
    assert_eq!(
        greet["items_run"], greet["result"]["metadata"]["items_run"],
        "{greet}"
    );
    assert_eq!(task(&v, "empty")["items"], json!([]));
    assert!(task(&v, "found").get("items").is_none());
    assert_eq!(
        task(&v, "after")["result"]["data"],
        json!({"greetings": ["hello ada", "hello grace", "hello linus"], "empty": []})
    );

    let mut args = vec!["runs", "show", run_id];
    args.extend_from_slice(store);
    let (code, out, err) = run(dir, &args);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.starts_with("greet "))
        .unwrap_or_else(|| panic!("greet's row: {out}"));
    for (k, l) in lines[at + 1..at + 4].iter().enumerate() {
        assert!(
            l.starts_with(&format!("  greet[{k}] ")) && l.contains("completed"),
            "item rows under their step: {out}"
        );
    }
}

#[test]
fn a_local_run_shows_the_items_of_a_list_known_at_run_time_under_their_step() {
    let dir = tempfile::tempdir().expect("dir");
    let d = dir.path();
    std::fs::write(d.join("fan.yaml"), FAN).expect("write");
    let report = json_of(d, &["run", "fan.yaml", "--json"]);
    assert_eq!(report["status"], "completed", "{report}");
    let names: Vec<&str> = report["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert_eq!(
        names,
        [
            "found", "greet", "greet[0]", "greet[1]", "greet[2]", "none", "empty", "after"
        ],
        "the report lists the items after their step"
    );
    let run_id = report["run_id"].as_str().expect("run id").to_owned();
    check_show(d, &[], &run_id);
}

/// A worker process (killed when the test ends, if still alive).
struct WorkerProc(Child);

impl Drop for WorkerProc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_run_done_by_a_worker_shows_the_items_of_a_list_known_at_run_time_under_their_step() {
    let dir = tempfile::tempdir().expect("dir");
    let d = dir.path();
    std::fs::write(d.join("fan.yaml"), FAN).expect("write");
    let store = format!("sqlite://{}", d.join("shared.db").display());
    let (code, out, err) = run(d, &["run", "fan.yaml", "--store", &store, "--detach"]);
    assert_eq!(code, 0, "{err}");
    let run_id = out.trim().to_owned();
    // One slot: the step that waits for its items takes none.
    let _w = WorkerProc(
        orch_cmd(d)
            .args([
                "worker", "--store", &store, "--poll", "20ms", "--slots", "1",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("orch worker starts"),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let v = json_of(d, &["runs", "show", &run_id, "--json", "--store", &store]);
        if v["status"] != "running" {
            assert_eq!(v["status"], "completed", "{v}");
            break;
        }
        assert!(Instant::now() < deadline, "the run did not end: {v}");
        std::thread::sleep(Duration::from_millis(50));
    }
    check_show(d, &["--store", &store], &run_id);
}
