//! `orch worker` and `orch run --detach` as users run them: real processes
//! sharing one SQLite file. A detached run is done by workers and seen by
//! `orch runs show`; a worker stops on SIGTERM within its grace period and
//! hands back its step; `orch status` lists workers and marks a silent one
//! lost, and a killed worker degrades `orch health` only until it is
//! forgotten; `orch cancel` stops a step running on a worker.

mod common;
mod workers;

use common::{orch_cmd, run};
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Stdio};
use workers::{WorkerProc, store, wait_for};

fn start_worker(dir: &Path, db: &Path, extra: &[&str]) -> WorkerProc {
    let child = orch_cmd(dir)
        .args(["worker", "--store", &store(db), "--poll", "20ms"])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("orch worker starts");
    WorkerProc(child)
}

fn submit(dir: &Path, db: &Path, file: &str) -> String {
    let (code, out, err) = run(dir, &["run", file, "--store", &store(db), "--detach"]);
    assert_eq!(code, 0, "{err}");
    let id = out.trim().to_owned();
    assert_eq!(id.len(), 36, "the run's id alone: {out}");
    id
}

fn show(dir: &Path, db: &Path, id: &str) -> Value {
    let (code, out, err) = run(dir, &["runs", "show", id, "--json", "--store", &store(db)]);
    assert_eq!(code, 0, "{err}");
    serde_json::from_str(&out).expect("json")
}

fn wait_status(dir: &Path, db: &Path, id: &str, want: &str) -> Value {
    let mut v = Value::Null;
    wait_for(&format!("run {id} to be {want}"), || {
        v = show(dir, db, id);
        v["status"] == want
    });
    v
}

fn send(signal: &str, pid: u32) {
    let ok = Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .expect("kill runs")
        .success();
    assert!(ok, "kill -{signal} {pid}");
}

#[test]
fn a_detached_run_is_done_by_two_worker_processes() {
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("shared.db");
    std::fs::write(
        dir.path().join("diamond.yaml"),
        "name: diamond\nsteps:\n  - { name: a, module: core, action: set, parameters: { value: { n: 20 } } }\n  - { name: b, module: core, action: set, parameters: { value: '${a.result.n}' } }\n  - { name: c, module: core, action: fail, parameters: { message: boom } }\n  - { name: d, module: core, action: noop, dependencies: [b, c] }\n  - { name: e, module: core, action: set, parameters: { value: '${b.result} after failure' }, dependencies: [c], conditions: { run_if: failure } }\n",
    )
    .expect("write");
    // Submitted before any worker runs: it waits in the store.
    let id = submit(dir.path(), &db, "diamond.yaml");
    assert_eq!(show(dir.path(), &db, &id)["status"], "running");
    let _w1 = start_worker(dir.path(), &db, &["--slots", "2"]);
    let _w2 = start_worker(dir.path(), &db, &["--slots", "2"]);
    let v = wait_status(dir.path(), &db, &id, "failed");
    let tasks = v["tasks"].as_array().expect("tasks");
    let status: Vec<&str> = tasks
        .iter()
        .map(|t| t["status"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        status,
        ["completed", "completed", "failed", "skipped", "completed"]
    );
    assert_eq!(tasks[1]["result"]["data"], 20);
    assert_eq!(tasks[4]["result"]["data"], "20 after failure");
    // `orch logs` reads a step of it like any other run's.
    let (code, out, err) = run(dir.path(), &["logs", &id, "e", "--store", &store(&db)]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("20 after failure"), "{out}");
}

#[test]
fn a_detached_run_prints_its_id_as_json_and_a_worker_completes_it() {
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("shared.db");
    std::fs::write(
        dir.path().join("ok.yaml"),
        "name: ok\nsteps:\n  - { name: a, module: core, action: set, parameters: { value: 1 } }\n  - { name: b, module: core, action: noop, dependencies: [a] }\n",
    )
    .expect("write");
    let _w = start_worker(dir.path(), &db, &[]);
    let out = orch_cmd(dir.path())
        .args([
            "run",
            "ok.yaml",
            "--store",
            &store(&db),
            "--detach",
            "--json",
        ])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(0));
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["status"], "submitted");
    let id = v["run_id"].as_str().expect("id").to_owned();
    wait_status(dir.path(), &db, &id, "completed");
}

#[test]
fn detach_on_a_store_of_this_process_only_is_refused() {
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(
        dir.path().join("ok.yaml"),
        "name: ok\nsteps:\n  - { name: a, module: core, action: noop }\n",
    )
    .expect("write");
    let (code, _, err) = run(
        dir.path(),
        &["run", "ok.yaml", "--store", "memory://", "--detach"],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("memory"), "{err}");
}

#[test]
fn a_zero_forget_after_is_refused() {
    let dir = tempfile::tempdir().expect("dir");
    let (code, _, err) = run(dir.path(), &["worker", "--forget-after", "0s"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--forget-after"), "{err}");
}

#[test]
fn sigterm_stops_a_worker_within_its_grace_period_and_hands_its_step_back() {
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("shared.db");
    std::fs::write(
        dir.path().join("long.yaml"),
        "name: long\nsteps:\n  - { name: sleeper, module: shell, action: exec, parameters: { program: sh, args: ['-c', 'echo $$ > sleeper.pid; exec sleep 600'] } }\n",
    )
    .expect("write");
    let id = submit(dir.path(), &db, "long.yaml");
    let mut w = start_worker(dir.path(), &db, &["--grace", "500ms"]);
    let pid_file = dir.path().join("sleeper.pid");
    let mut pid = 0i32;
    wait_for("the step's process", || {
        let t = std::fs::read_to_string(&pid_file).unwrap_or_default();
        pid = t.trim().parse().unwrap_or(0);
        t.ends_with('\n')
    });
    send("TERM", w.0.id());
    let mut status = None;
    wait_for("the worker to exit", || {
        status = w.0.try_wait().expect("try_wait");
        status.is_some()
    });
    assert_eq!(status.and_then(|s| s.code()), Some(0));
    // Its step's process is gone, and the step is ready for another worker.
    wait_for("the step's process to be gone", || {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |s| {
            s.rsplit(')')
                .next()
                .is_some_and(|r| r.trim_start().starts_with('Z'))
        })
    });
    let v = show(dir.path(), &db, &id);
    assert_eq!(v["status"], "running");
    assert_eq!(v["tasks"][0]["status"], "ready", "{v}");
    let mut err = String::new();
    std::io::Read::read_to_string(w.0.stderr.as_mut().expect("stderr"), &mut err).expect("stderr");
    assert!(err.contains("SIGTERM"), "{err}");
    assert!(err.contains("1 handed back"), "{err}");
}

#[test]
fn status_lists_a_worker_and_marks_a_silent_one_lost() {
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("shared.db");
    let status = |json: bool| {
        let mut args = vec!["status", "--store"];
        let s = store(&db);
        args.push(&s);
        if json {
            args.push("--json");
        }
        run(dir.path(), &args)
    };
    let mut w = start_worker(
        dir.path(),
        &db,
        &["--lease", "300ms", "--slots", "3", "--id", "w-one"],
    );
    wait_for("the worker in orch status", || {
        let (_, out, _) = status(false);
        out.contains("w-one") && out.contains("running")
    });
    let (code, out, err) = status(true);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["workers"][0]["id"], "w-one");
    assert_eq!(v["workers"][0]["slots"], 3);
    assert_eq!(v["workers"][0]["lost"], false);
    // Killed, it says nothing more: after two leases it is lost.
    send("KILL", w.0.id());
    let _ = w.0.wait();
    wait_for("the worker to be lost", || {
        let (_, out, _) = status(false);
        out.contains("w-one") && out.contains("lost")
    });
    let (code, out, _) = run(dir.path(), &["health", "--store", &store(&db)]);
    assert_eq!(code, 1, "a lost worker degrades health: {out}");
    assert!(
        out.contains("worker w-one") && out.contains("is lost"),
        "{out}"
    );
}

#[test]
fn a_killed_worker_degrades_health_only_until_it_is_forgotten_and_a_live_worker_removes_its_record()
{
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("shared.db");
    let health = || run(dir.path(), &["health", "--store", &store(&db)]);
    let status_json = || {
        let (code, out, err) = run(dir.path(), &["status", "--json", "--store", &store(&db)]);
        assert_eq!(code, 0, "{err}");
        serde_json::from_str::<Value>(&out).expect("json")
    };
    // Lost two leases (2 s) after its last word, forgotten 3 s later.
    let mut w = start_worker(
        dir.path(),
        &db,
        &["--lease", "1s", "--forget-after", "3s", "--id", "k1"],
    );
    wait_for("the worker in orch status", || {
        status_json()["workers"][0]["id"] == "k1"
    });
    let (code, out, _) = health();
    assert_eq!(code, 0, "a running worker: healthy: {out}");
    send("KILL", w.0.id());
    let _ = w.0.wait();
    let mut degraded = String::new();
    wait_for("health to be degraded by the lost worker", || {
        let (code, out, _) = health();
        degraded = out;
        code == 1
    });
    assert!(
        degraded.contains("worker k1 on")
            && degraded.contains("is lost")
            && degraded.contains("forgotten at"),
        "{degraded}"
    );
    // No worker is left to remove its record: readers forget it all the same.
    let mut healthy = String::new();
    wait_for("health to be healthy again", || {
        let (code, out, _) = health();
        healthy = out;
        code == 0
    });
    assert!(!healthy.contains("is lost"), "{healthy}");
    assert!(
        healthy.contains("forgotten:  k1"),
        "it says the record is left out: {healthy}"
    );
    let v = status_json();
    assert!(v.get("workers").is_none(), "{v}");
    assert_eq!(v["forgotten_workers"], serde_json::json!(["k1"]));
    // A live worker's pass removes the record.
    let _live = start_worker(dir.path(), &db, &["--lease", "1s", "--id", "k2"]);
    wait_for("k1's record to be removed", || {
        let v = status_json();
        v["workers"][0]["id"] == "k2" && v.get("forgotten_workers").is_none()
    });
    let (code, out, _) = health();
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains("k1"), "{out}");
}

#[test]
fn cancel_stops_a_step_running_on_a_worker() {
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("shared.db");
    std::fs::write(
        dir.path().join("long.yaml"),
        "name: long\nsteps:\n  - { name: sleeper, module: shell, action: exec, parameters: { program: sh, args: ['-c', 'echo $$ > sleeper.pid; exec sleep 600'] } }\n",
    )
    .expect("write");
    let id = submit(dir.path(), &db, "long.yaml");
    let _w = start_worker(dir.path(), &db, &["--lease", "600ms"]);
    let pid_file = dir.path().join("sleeper.pid");
    let mut pid = 0i32;
    wait_for("the step's process", || {
        let t = std::fs::read_to_string(&pid_file).unwrap_or_default();
        pid = t.trim().parse().unwrap_or(0);
        t.ends_with('\n')
    });
    let (code, _, err) = run(dir.path(), &["cancel", &id, "--store", &store(&db)]);
    assert_eq!(code, 0, "{err}");
    wait_status(dir.path(), &db, &id, "cancelled");
    wait_for("the step's process to be gone", || {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |s| {
            s.rsplit(')')
                .next()
                .is_some_and(|r| r.trim_start().starts_with('Z'))
        })
    });
}

/// A worker sharing the store with `orch run` (a run this process drives,
/// two steps at a time of ten) takes none of its steps: each runs once,
/// by the run's own process, and the run completes.
#[test]
fn a_worker_leaves_alone_the_steps_of_a_run_a_process_drives() {
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("shared.db");
    let mut text = "name: driven\nsteps:\n".to_owned();
    for i in 0..10 {
        text.push_str(&format!(
            "  - {{ name: s{i}, module: shell, action: script, parameters: {{ script: 'echo s{i} >> ran.txt; sleep 0.2' }} }}\n"
        ));
    }
    std::fs::write(dir.path().join("driven.yaml"), text).expect("write");
    let _worker = start_worker(dir.path(), &db, &[]);
    // The worker is up (its record is written) before the run starts.
    wait_for("the worker's record", || {
        let (_, out, _) = run(dir.path(), &["status", "--json", "--store", &store(&db)]);
        out.contains("\"workers\"") && out.contains("\"slots\"")
    });
    let (code, _, err) = run(
        dir.path(),
        &[
            "run",
            "driven.yaml",
            "--store",
            &store(&db),
            "--max-parallel",
            "2",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let ran = std::fs::read_to_string(dir.path().join("ran.txt")).expect("ran.txt");
    let mut lines: Vec<&str> = ran.lines().collect();
    lines.sort_unstable();
    let want: Vec<String> = (0..10).map(|i| format!("s{i}")).collect();
    assert_eq!(lines, want, "every step ran exactly once");
}
