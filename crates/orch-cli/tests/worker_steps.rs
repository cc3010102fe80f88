//! What `orch runs show` and `orch run --detach` tell of a run done by
//! `orch worker` processes on a shared SQLite file, against what a run one
//! process drives tells: a step skipped by its trigger rule and the step
//! that gathers a fan-out's items made no attempt (the worker's claim is
//! not one), the gathering step says how many items it gathered, and a
//! run that waits for its concurrency key says so as an `orch:` notice.

mod common;
mod serving;
mod workers;

use common::{orch_cmd, run};
use serde_json::{Value, json};
use std::path::Path;
use std::process::Stdio;
use workers::{WorkerProc, store, wait_for};

fn start_worker(dir: &Path, db: &Path) -> WorkerProc {
    let child = orch_cmd(dir)
        .args([
            "worker",
            "--store",
            &store(db),
            "--poll",
            "20ms",
            "--slots",
            "2",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("orch worker starts");
    WorkerProc(child)
}

fn show(dir: &Path, args: &[&str]) -> Value {
    let (code, out, err) = run(dir, &[&["runs", "show"], args, &["--json"]].concat());
    assert_eq!(code, 0, "{err}");
    serde_json::from_str(&out).expect("json")
}

/// Each step's name, state, attempts, whether it has a start, and note.
fn steps(v: &Value) -> Vec<(String, String, u64, bool, String)> {
    v["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .map(|t| {
            (
                t["name"].as_str().unwrap_or("").to_owned(),
                t["status"].as_str().unwrap_or("").to_owned(),
                t["attempts"].as_u64().unwrap_or(99),
                !t["started_at"].is_null(),
                t["note"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

const FLOW: &str = "name: skips\nsteps:\n  - { name: a, module: core, action: set, parameters: { value: 1 } }\n  - { name: fan, module: core, action: set, for_each: [x, y, z], parameters: { value: '${item}' } }\n  - { name: alert, module: core, action: set, parameters: { value: 2 }, dependencies: [a], conditions: { run_if: failure } }\n";

#[test]
fn skipped_and_gathering_steps_show_alike_on_workers_and_locally() {
    let dir = tempfile::tempdir().expect("dir");
    let d = dir.path();
    let db = d.join("shared.db");
    std::fs::write(d.join("skips.yaml"), FLOW).expect("write");

    let (code, _, err) = run(d, &["run", "skips.yaml"]);
    assert_eq!(code, 0, "{err}");
    let local = steps(&show(d, &["last"]));

    let (code, out, err) = run(
        d,
        &["run", "skips.yaml", "--store", &store(&db), "--detach"],
    );
    assert_eq!(code, 0, "{err}");
    let id = out.trim().to_owned();
    let _w = start_worker(d, &db);
    let mut v = Value::Null;
    wait_for("the run to complete", || {
        v = show(d, &[&id, "--store", &store(&db)]);
        v["status"] == "completed"
    });
    let on_workers = steps(&v);

    let by_name = |list: &[(String, String, u64, bool, String)], name: &str| {
        list.iter()
            .find(|s| s.0 == name)
            .cloned()
            .unwrap_or_else(|| panic!("{name}: {list:?}"))
    };
    assert_eq!(
        by_name(&local, "alert"),
        (
            "alert".into(),
            "skipped".into(),
            0,
            false,
            "no upstream step failed (run_if: failure)".into()
        )
    );
    assert_eq!(
        by_name(&local, "fan"),
        (
            "fan".into(),
            "completed".into(),
            0,
            false,
            "3 items gathered".into()
        )
    );
    for name in ["a", "fan", "alert", "fan[0]"] {
        let (mut l, mut w) = (by_name(&local, name), by_name(&on_workers, name));
        if l.2 == 1 {
            // A step that ran has its start on both; when is not compared.
            assert!(l.3 && w.3, "{name}: {l:?} {w:?}");
            (l.3, w.3) = (false, false);
        }
        assert_eq!(w, l, "{name} on workers as locally");
    }
    // The table too: no attempt and no duration.
    let (code, table, err) = run(d, &["runs", "show", &id, "--store", &store(&db)]);
    assert_eq!(code, 0, "{err}");
    let row = |name: &str| {
        table
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .map(|l| l.split_whitespace().take(5).collect::<Vec<_>>())
            .unwrap_or_default()
    };
    assert_eq!(row("alert"), ["alert", "skipped", "0", "-", "-"], "{table}");
    assert_eq!(row("fan"), ["fan", "completed", "0", "-", "-"], "{table}");

    // `orch serve` on the same store shows them so too, in a run's steps
    // and a step alone.
    let s = serving::serve(d, &["--store", &store(&db)], &[]);
    let (status, body) = serving::request(&s, "GET", &format!("/runs/{id}/steps"), "");
    assert_eq!(status, 200, "{body}");
    let listed: Value = serde_json::from_str(&body).expect("json");
    let step = |name: &str| {
        listed["steps"]
            .as_array()
            .expect("steps")
            .iter()
            .find(|t| t["name"] == name)
            .map(|t| {
                (
                    t["attempt"].clone(),
                    t["started_at"].clone(),
                    t["note"].clone(),
                )
            })
            .unwrap_or_else(|| panic!("{name}: {body}"))
    };
    assert_eq!(
        step("alert"),
        (
            json!(0),
            Value::Null,
            json!("no upstream step failed (run_if: failure)")
        )
    );
    assert_eq!(
        step("fan"),
        (json!(0), Value::Null, json!("3 items gathered"))
    );
    assert_eq!(step("a").0, json!(1));
    let (status, body) = serving::request(&s, "GET", &format!("/runs/{id}/steps/fan"), "");
    assert_eq!(status, 200, "{body}");
    let one: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(
        (one["attempt"].clone(), one["note"].clone()),
        (json!(0), json!("3 items gathered"))
    );
}

#[test]
fn a_detached_run_that_waits_for_its_concurrency_key_says_so() {
    let dir = tempfile::tempdir().expect("dir");
    let d = dir.path();
    let db = d.join("shared.db");
    std::fs::write(
        d.join("keyed.yaml"),
        "name: keyed\nconcurrency: { key: deploy, limit: 1 }\nsteps:\n  - { name: hold, module: shell, action: script, parameters: { script: 'touch started; while [ ! -e go ]; do sleep 0.02; done' } }\n",
    )
    .expect("write");
    let _w = start_worker(d, &db);
    let (code, out, err) = run(
        d,
        &["run", "keyed.yaml", "--store", &store(&db), "--detach"],
    );
    assert_eq!(code, 0, "{err}");
    let first = out.trim().to_owned();
    wait_for("the first run's step", || d.join("started").exists());
    let (code, out, err) = run(
        d,
        &["run", "keyed.yaml", "--store", &store(&db), "--detach"],
    );
    assert_eq!(code, 0, "{err}");
    let second = out.trim().to_owned();
    assert_eq!(
        err,
        format!(
            "orch: run {second} waits for the concurrency key `deploy`, held by run {first} (limit 1); it starts when that run ends (`orch cancel {first}` stops that run)\n"
        )
    );
    std::fs::write(d.join("go"), b"").expect("go");
    wait_for("the second run to complete", || {
        show(d, &[&second, "--store", &store(&db)])["status"] == "completed"
    });
}
