//! Durable runs on the default SQLite store: kill -9 at random moments and resume, cancel from
//! another process, run history.

mod common;

use common::{orch_cmd, run};
use serde_json::Value;
use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// 200 tasks in 20 layers of 10; each appends its name to the ledger, then naps.
fn ledger_workflow(dir: &Path) -> std::path::PathBuf {
    let mut y = String::from("name: ledger\nparameters: { ledger: null }\nsteps:\n");
    for layer in 0..20 {
        for k in 0..10 {
            let name = format!("t{layer:02}_{k}");
            y.push_str(&format!(
                "  - name: {name}\n    module: shell\n    action: script\n    parameters:\n      script: 'printf \"%s\\n\" \"$NAME\" >> \"$LEDGER\"; sleep 0.08'\n      env: {{ NAME: {name}, LEDGER: \"${{params.ledger}}\" }}\n"
            ));
            if layer > 0 {
                y.push_str(&format!(
                    "    dependencies: [t{:02}_{}]\n",
                    layer - 1,
                    (k * 7 + 3) % 10
                ));
            }
        }
    }
    let p = dir.join("ledger.yaml");
    std::fs::write(&p, y).expect("write workflow");
    p
}

fn runs_json(dir: &Path) -> Vec<Value> {
    let (code, out, err) = run(dir, &["runs", "list", "--json"]);
    assert_eq!(code, 0, "{err}");
    serde_json::from_str::<Value>(&out)
        .expect("json")
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// A small deterministic generator for kill points.
fn next(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

#[test]
fn kill_9_at_random_moments_then_resume_completes_every_task_exactly_as_promised() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let wf = ledger_workflow(d);
    let ledger = d.join("ledger.txt");
    let ledger_arg = format!("ledger={}", ledger.display());
    let mut seed = 0x2545_F491_4F6C_DD1D_u64 ^ u64::from(std::process::id());
    let mut kills = 0;
    let mut run_id: Option<String> = None;
    // Start, then kill -9 and resume until at least 10 kills happened mid-run.
    for round in 0..40 {
        let mut cmd = orch_cmd(d);
        match &run_id {
            None => cmd.args([
                "run",
                wf.to_str().expect("utf8"),
                "-p",
                &ledger_arg,
                "--json",
            ]),
            Some(id) => cmd.args(["resume", id, "--json"]),
        };
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        let delay = 30 + next(&mut seed) % 300;
        let start = Instant::now();
        let mut finished = None;
        while start.elapsed() < Duration::from_millis(delay) {
            if let Some(s) = child.try_wait().expect("wait") {
                finished = Some(s);
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        if let Some(status) = finished {
            // It finished before the kill point: nothing is left to resume.
            assert!(status.success(), "round {round}: {status:?}");
            break;
        }
        child.kill().expect("SIGKILL");
        child.wait().expect("reaped");
        if run_id.is_none() {
            // The run is recorded (in one transaction) before any step starts;
            // a kill before that leaves nothing, and the next round starts afresh.
            let runs = runs_json(d);
            run_id = runs
                .first()
                .and_then(|r| r["run_id"].as_str())
                .map(str::to_owned);
            if run_id.is_none() {
                assert!(!ledger.exists(), "no step ran before the run was recorded");
                continue;
            }
        }
        kills += 1;
        let id = run_id.clone().expect("the run was recorded");
        let (code, out, _) = run(d, &["runs", "show", &id, "--json"]);
        assert_eq!(code, 0);
        let shown: Value = serde_json::from_str(&out).expect("json");
        if shown["status"] == "completed" {
            break;
        }
        assert_eq!(
            shown["status"], "interrupted",
            "after kill {kills}: {}",
            shown["status"]
        );
        if kills >= 12 {
            break;
        }
    }
    assert!(kills >= 10, "only {kills} kills landed mid-run");
    // Finish it.
    let id = run_id.expect("run id");
    let (code, out, _) = run(d, &["runs", "show", &id, "--json"]);
    assert_eq!(code, 0);
    let mut shown: Value = serde_json::from_str(&out).expect("json");
    if shown["status"] != "completed" {
        let (code, out, err) = run(d, &["resume", &id]);
        assert_eq!(code, 0, "{out}\n{err}");
        let (_, out, _) = run(d, &["runs", "show", &id, "--json"]);
        shown = serde_json::from_str(&out).expect("json");
    }
    assert_eq!(shown["status"], "completed");
    let tasks = shown["tasks"].as_array().expect("tasks");
    assert_eq!(tasks.len(), 200);
    let attempts: HashMap<String, u64> = tasks
        .iter()
        .map(|t| {
            assert_eq!(t["status"], "completed", "{t}");
            (
                t["name"].as_str().expect("name").to_owned(),
                t["attempts"].as_u64().expect("attempts"),
            )
        })
        .collect();
    // Children of a killed orch may still be finishing their nap: let them.
    std::thread::sleep(Duration::from_millis(300));
    let text = std::fs::read_to_string(&ledger).expect("ledger");
    let mut seen: HashMap<&str, u64> = HashMap::new();
    for line in text.lines() {
        *seen.entry(line).or_insert(0) += 1;
    }
    for (name, a) in &attempts {
        let n = seen.get(name.as_str()).copied().unwrap_or(0);
        assert!(n >= 1, "{name} never ran");
        assert!(
            n <= *a,
            "{name} ran {n} times in {a} attempts: a completed task ran again"
        );
    }
    let extra: u64 = attempts.values().map(|a| a - 1).sum();
    // Each kill interrupts at most the 4 steps running then (max parallel 4).
    assert!(
        extra <= 4 * kills as u64,
        "{extra} extra attempts for {kills} kills"
    );
    assert_eq!(seen.len(), 200, "no unknown lines");
}

#[test]
fn cancel_from_another_process_stops_a_running_sleep() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    std::fs::write(
        d.join("slow.yaml"),
        "name: slow\nsteps:\n  - { name: nap, module: shell, action: exec, parameters: { program: sleep, args: [\"1000\"] } }\n  - { name: after, module: fs, action: write, parameters: { path: after.txt, content: x }, dependencies: [nap] }\n",
    )
    .expect("write");
    let mut child = orch_cmd(d)
        .args(["run", "slow.yaml"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    // Wait until the step runs.
    let start = Instant::now();
    loop {
        let runs = runs_json(d);
        if runs.first().is_some_and(|r| r["status"] == "running") {
            let (_, out, _) = run(d, &["runs", "show", "last", "--json"]);
            let v: Value = serde_json::from_str(&out).expect("json");
            if v["tasks"][0]["status"] == "running" {
                break;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the run did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let t = Instant::now();
    let (code, out, err) = run(d, &["cancel", "last"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("cancelled"), "{out}");
    let status = child.wait().expect("wait");
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "stopped within a few seconds"
    );
    assert_eq!(status.code(), Some(1), "a cancelled run exits 1");
    let (_, out, _) = run(d, &["runs", "show", "last", "--json"]);
    let v: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["status"], "cancelled");
    assert_eq!(v["tasks"][1]["status"], "cancelled");
    assert!(!d.join("after.txt").exists(), "nothing new started");
    // The sleep is gone too.
    let ps = Command::new("pgrep")
        .args(["-f", "sleep 1000"])
        .output()
        .expect("pgrep");
    let pids = String::from_utf8_lossy(&ps.stdout).trim().to_owned();
    // Another test's sleep could match; ours was a child of the orch process, which is gone.
    let ours = pids.lines().any(|p| {
        std::fs::read_to_string(format!("/proc/{p}/cwd")).is_ok()
            && std::fs::read_link(format!("/proc/{p}/cwd")).is_ok_and(|c| c == d)
    });
    assert!(!ours, "the step's process was stopped");
    let (code, _, err) = run(d, &["cancel", "last"]);
    assert_eq!(code, 2);
    assert!(err.contains("already ended"), "{err}");
}

#[test]
fn history_logs_and_bad_run_ids() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    std::fs::write(
        d.join("hi.yaml"),
        "name: hi\nsteps:\n  - { name: say, module: shell, action: exec, parameters: { program: echo, args: [\"hello there\"] } }\n",
    )
    .expect("write");
    let (code, _, _) = run(d, &["run", "hi.yaml"]);
    assert_eq!(code, 0);
    assert!(d.join(".orch/orch.db").is_file(), "the default store");
    let (code, out, _) = run(d, &["runs", "list"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("hi") && out.contains("completed") && out.contains("1/1"),
        "{out}"
    );
    let (code, out, _) = run(d, &["logs", "last", "say"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("--- stdout ---\nhello there\n") && out.contains("exit code 0"),
        "{out}"
    );
    let (code, _, err) = run(d, &["logs", "last", "nope"]);
    assert_eq!(code, 2);
    assert!(err.contains("its steps: say"), "{err}");
    let (code, _, err) = run(d, &["runs", "show", "zzz"]);
    assert_eq!(code, 2);
    assert!(err.contains("not found"), "{err}");
    let (code, _, err) = run(d, &["resume", "last"]);
    assert_eq!(code, 2);
    assert!(err.contains("already ended (completed)"), "{err}");
    // memory:// keeps nothing.
    let other = tempfile::tempdir().expect("tempdir");
    let (code, _, _) = run(
        other.path(),
        &[
            "--store",
            "memory://",
            "run",
            d.join("hi.yaml").to_str().expect("utf8"),
        ],
    );
    assert_eq!(code, 0);
    assert!(!other.path().join(".orch/orch.db").exists());
}

#[test]
fn runs_show_counts_every_attempt_of_a_retried_step() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    // Fails twice, then succeeds: three attempts.
    std::fs::write(
        d.join("r.yaml"),
        r#"name: r
steps:
  - name: flaky
    module: shell
    action: script
    parameters:
      script: 'n=$(cat count 2>/dev/null || echo 0); n=$((n+1)); echo $n > count; [ $n -ge 3 ]'
    max_retries: 3
    retry: { backoff: constant, initial_delay: 10ms }
  - { name: after, module: core, action: noop, dependencies: [flaky] }
"#,
    )
    .expect("write");
    let (code, _, err) = run(d, &["run", "r.yaml"]);
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = run(d, &["runs", "show", "last", "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).expect("json");
    let attempts: Vec<(String, u64)> = v["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .map(|t| {
            (
                t["name"].as_str().unwrap_or_default().to_owned(),
                t["attempts"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(
        attempts,
        vec![("flaky".to_owned(), 3), ("after".to_owned(), 1)],
        "{out}"
    );
}
