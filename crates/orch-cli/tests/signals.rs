//! Signals and orphans, on the real binary: SIGTERM, SIGHUP and SIGINT
//! interrupt a run (its steps' processes are stopped, the run can be
//! resumed, the exit code is 128 + the signal); after `kill -9` the steps'
//! processes die with orch, and `orch resume` stops what they left behind
//! before it runs the step again.

mod common;

use common::{orch_cmd, run};
use serde_json::Value;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Starts `orch ARGS` in the background, its output in files of `dir`.
fn start(dir: &Path, args: &[&str]) -> Child {
    let out = std::fs::File::create(dir.join("orch.out")).expect("out file");
    let err = std::fs::File::create(dir.join("orch.err")).expect("err file");
    orch_cmd(dir)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err))
        .spawn()
        .expect("spawn orch")
}

fn process_gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        // A zombie awaiting its reaper is dead too.
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
    }
}

/// Waits (at most 30 s) until `cond` holds.
fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cond() {
        assert!(Instant::now() < deadline, "waited 30 s for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The pid a step wrote to `file`, once it is there.
fn pid_in(dir: &Path, file: &str) -> i32 {
    let path = dir.join(file);
    let mut pid = None;
    wait_for(&format!("{file} to be written"), || {
        pid = std::fs::read_to_string(&path)
            .ok()
            .and_then(|t| t.trim().parse::<i32>().ok());
        pid.is_some()
    });
    pid.expect("a pid")
}

fn send(signal: &str, pid: u32) {
    let ok = Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .expect("kill runs")
        .success();
    assert!(ok, "kill -{signal} {pid}");
}

/// Waits (at most 30 s) for orch to exit and returns its exit code.
fn exit_code(child: &mut Child) -> i32 {
    let mut status = None;
    wait_for("orch to exit", || {
        status = child.try_wait().expect("try_wait");
        status.is_some()
    });
    status.and_then(|s| s.code()).unwrap_or(-1)
}

fn kill_if_alive(pid: i32) {
    if !process_gone(pid) {
        let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
    }
}

fn show(dir: &Path, run_id: &str) -> Value {
    let (code, out, err) = run(dir, &["runs", "show", run_id, "--json"]);
    assert_eq!(code, 0, "{err}");
    serde_json::from_str(&out).expect("json")
}

fn task<'a>(shown: &'a Value, name: &str) -> &'a Value {
    shown["tasks"]
        .as_array()
        .and_then(|t| t.iter().find(|t| t["name"] == name))
        .unwrap_or_else(|| panic!("no task {name} in {shown}"))
}

fn only_run_id(dir: &Path) -> String {
    let (code, out, err) = run(dir, &["runs", "list", "--json"]);
    assert_eq!(code, 0, "{err}");
    let runs: Value = serde_json::from_str(&out).expect("json");
    let runs = runs.as_array().expect("a list");
    assert_eq!(runs.len(), 1, "{runs:?}");
    runs[0]["run_id"].as_str().expect("run id").to_owned()
}

/// Two steps that count their runs in `count.STEP`; on their first run they
/// write their pid to `pid.STEP` and sleep for 1000 s (a background `sleep`
/// beside them, its pid in `bg.STEP`); later runs finish at once. `after`
/// waits for both.
const COUNTING: &str = r#"name: counting
steps:
  - name: a
    module: shell
    action: script
    parameters: { script: &s 'n=$(cat count.$ORCH_STEP 2>/dev/null || echo 0); echo $((n + 1)) > count.$ORCH_STEP; if [ "$n" = 0 ]; then sleep 1000 & echo $! > bg.$ORCH_STEP; echo $$ > pid.$ORCH_STEP; exec sleep 1000; fi' }
  - name: b
    module: shell
    action: script
    parameters: { script: *s }
  - { name: after, module: core, action: noop, dependencies: [a, b] }
"#;

fn count(dir: &Path, step: &str) -> String {
    std::fs::read_to_string(dir.join(format!("count.{step}")))
        .unwrap_or_default()
        .trim()
        .to_owned()
}

/// Starts the counting workflow, sends `signal` once both steps sleep, and
/// checks the exit code and that every step process is gone. Returns the run's id.
fn interrupt_with(dir: &Path, signal: &str, code: i32) -> String {
    std::fs::write(dir.join("counting.yaml"), COUNTING).expect("write workflow");
    let mut orch = start(dir, &["run", "counting.yaml"]);
    let pids: Vec<i32> = ["pid.a", "pid.b", "bg.a", "bg.b"]
        .iter()
        .map(|f| pid_in(dir, f))
        .collect();
    send(signal, orch.id());
    let got = exit_code(&mut orch);
    let err = std::fs::read_to_string(dir.join("orch.err")).unwrap_or_default();
    let gone: Vec<bool> = pids
        .iter()
        .map(|&p| {
            let deadline = Instant::now() + Duration::from_secs(10);
            while !process_gone(p) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            process_gone(p)
        })
        .collect();
    for &p in &pids {
        kill_if_alive(p);
    }
    assert_eq!(got, code, "orch's exit code after {signal}; stderr:\n{err}");
    assert_eq!(
        gone,
        vec![true; 4],
        "step processes {pids:?} still running after orch exited on {signal}"
    );
    let run_id = only_run_id(dir);
    assert!(
        err.contains(&format!("orch resume {run_id}")),
        "orch says how to resume: {err}"
    );
    run_id
}

#[test]
fn sigterm_stops_the_steps_and_resume_runs_each_interrupted_step_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let run_id = interrupt_with(d, "TERM", 143);
    let shown = show(d, &run_id);
    assert_eq!(shown["status"], "interrupted", "{shown}");
    assert_eq!(task(&shown, "a")["status"], "running", "{shown}");
    assert_eq!(task(&shown, "after")["status"], "pending", "{shown}");
    let (code, out, err) = run(d, &["resume", &run_id]);
    assert_eq!(code, 0, "{out}\n{err}");
    let shown = show(d, &run_id);
    assert_eq!(shown["status"], "completed", "{shown}");
    for step in ["a", "b"] {
        // Once before SIGTERM, once on resume.
        assert_eq!(count(d, step), "2", "step {step}");
        assert_eq!(task(&shown, step)["attempts"], 2, "{shown}");
    }
    assert_eq!(task(&shown, "after")["status"], "completed", "{shown}");
}

#[test]
fn sighup_interrupts_like_sigterm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run_id = interrupt_with(dir.path(), "HUP", 129);
    assert_eq!(show(dir.path(), &run_id)["status"], "interrupted");
}

#[test]
fn sigint_interrupts_like_sigterm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run_id = interrupt_with(dir.path(), "INT", 130);
    assert_eq!(show(dir.path(), &run_id)["status"], "interrupted");
}

/// On its first run the step leaves a background `sleep` (pid in `bg.pid`)
/// and becomes a `sleep` itself (pid in `leader.pid`); on the next it fails
/// if that background `sleep` still runs.
const ORPHANS: &str = r#"name: orphans
steps:
  - name: s
    module: shell
    action: script
    parameters:
      script: |
        n=$(cat count 2>/dev/null || echo 0); echo $((n + 1)) > count
        if [ "$n" = 0 ]; then
          sleep 1000 > /dev/null 2>&1 < /dev/null & echo $! > bg.pid
          echo $$ > leader.pid
          exec sleep 1000
        fi
        state=$(cut -d ' ' -f 3 /proc/$(cat bg.pid)/stat 2>/dev/null)
        if [ -n "$state" ] && [ "$state" != Z ]; then echo "the first run's background sleep still runs" >&2; exit 3; fi
"#;

#[test]
fn after_kill_9_the_steps_die_and_resume_stops_what_they_left_before_running_them_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    std::fs::write(d.join("orphans.yaml"), ORPHANS).expect("write workflow");
    let mut orch = start(d, &["run", "orphans.yaml"]);
    let leader = pid_in(d, "leader.pid");
    let bg = pid_in(d, "bg.pid");
    orch.kill().expect("SIGKILL");
    orch.wait().expect("reaped");
    // The step's own process dies with orch (PR_SET_PDEATHSIG)...
    let deadline = Instant::now() + Duration::from_secs(10);
    while !process_gone(leader) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let leader_gone = process_gone(leader);
    kill_if_alive(leader);
    assert!(
        leader_gone,
        "the step's process {leader} outlived orch's kill -9"
    );
    // ...but not what it started in the background: that is for resume.
    assert!(
        !process_gone(bg),
        "the background sleep {bg} died with orch; this test needs it alive"
    );
    let run_id = only_run_id(d);
    assert_eq!(show(d, &run_id)["status"], "interrupted");
    let (code, out, err) = run(d, &["resume", &run_id]);
    let bg_gone = process_gone(bg);
    kill_if_alive(bg);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(bg_gone, "resume left the background sleep {bg} running");
    assert_eq!(
        std::fs::read_to_string(d.join("count"))
            .unwrap_or_default()
            .trim(),
        "2"
    );
    assert_eq!(show(d, &run_id)["status"], "completed");
}

#[test]
fn a_step_that_ignores_sigterm_is_killed_after_the_grace_period() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    std::fs::write(
        d.join("stubborn.yaml"),
        "name: stubborn\nsteps:\n  - { name: s, module: shell, action: script, parameters: { script: 'trap \"\" TERM; echo $$ > pid; while :; do sleep 1; done' } }\n",
    )
    .expect("write workflow");
    let mut orch = start(d, &["run", "stubborn.yaml"]);
    let pid = pid_in(d, "pid");
    send("TERM", orch.id());
    let code = exit_code(&mut orch);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !process_gone(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let gone = process_gone(pid);
    kill_if_alive(pid);
    assert_eq!(code, 143);
    assert!(
        gone,
        "the step's shell {pid}, which ignores SIGTERM, outlived orch"
    );
    let run_id = only_run_id(d);
    assert_eq!(show(d, &run_id)["status"], "interrupted");
}
