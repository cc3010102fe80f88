//! Real `orch worker` processes sharing runs through PostgreSQL (one schema
//! per test on the test server, dropped at the end): a worker killed with
//! SIGKILL mid-step, a worker frozen past its lease, every connection cut
//! mid-run, a cancel from another process, and `orch run` following a run
//! the workers do.
//!
//! "Exactly once" with at-least-once attempts: every step of the ledger
//! workflows appends `NAME TOKEN` to a ledger file when its process reaches
//! its end and prints the same line (its result); TOKEN is unique to the
//! attempt's process and names its worker process. A step's attempt may run
//! more than once (a worker that dies or stalls after its step's process
//! ended but before its completion was recorded), so the ledger may hold
//! more than one line for a step, each from a different attempt. What must
//! hold: the store has each step completed once (one `tasks_finished` event,
//! its result from one attempt), that attempt's line is in the ledger exactly
//! once, and every other line of the step comes from an attempt that could
//! not complete (a killed or frozen worker's).

mod common;
mod procs;

use orch_model::{RunId, Store, TaskStatus, WorkflowStatus};
use procs::{
    Fixture, LEASE, PATIENCE, finished, gone, lanes_workflow, ledger, ledger_step, one_at_a_time,
    owner_of, result_token, send, wait_for,
};
use std::time::{Duration, Instant};

/// Three workers share 1,000 ledger steps (10 chains of 100; the 21st step
/// of each chain sleeps 2 s). The worker running one of those is killed
/// with SIGKILL: what it held is claimed again within two leases of the
/// kill, and every step completes exactly once.
#[test]
fn a_worker_killed_mid_step_loses_nothing_and_nothing_completes_twice() {
    let _one = one_at_a_time();
    let f = Fixture::new();
    let (lanes, per_lane) = (10, 100);
    let slow = |i: usize| (200..210).contains(&i);
    f.write(
        "ledger.yaml",
        &lanes_workflow(lanes, per_lane, |i| if slow(i) { "2" } else { "0" }),
    );
    let run = f.submit("ledger.yaml");
    let mut workers = [
        f.worker("w1", &["--slots", "4"]),
        f.worker("w2", &["--slots", "4"]),
        f.worker("w3", &["--slots", "4"]),
    ];
    // The first slow step whose process started: its worker is the victim.
    let mut started = None;
    wait_for("a slow step's process", PATIENCE, || {
        started = (200..210).find_map(|i| {
            let text = f.read(&format!("pids/s{i:04}"));
            let (pid, owner) = text.trim().split_once(' ')?;
            text.ends_with('\n')
                .then(|| (i, pid.to_owned(), owner.to_owned()))
        });
        started.is_some()
    });
    let (slow_step, _, owner) = started.expect("a slow step");
    let victim_pid: u32 = owner
        .split(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("ORCH_OWNER starts with the worker's pid");
    let victim = workers
        .iter()
        .position(|w| w.pid() == victim_pid)
        .expect("the step runs on one of the three workers");
    let killed_at = chrono::Utc::now();
    send("KILL", victim_pid);
    let _ = workers[victim].wait_exit();

    let rec = f.wait_end(run);
    assert_eq!(rec.status, WorkflowStatus::Completed, "{rec:?}");
    let tasks = f.tasks(run);
    assert_eq!(tasks.len(), lanes * per_lane);
    assert!(
        tasks.iter().all(|t| t.status == TaskStatus::Completed),
        "every step completed"
    );

    // Reclaimed: the slow step it ran started again on another worker, as
    // did everything else it held, within two leases of the kill.
    let victim_id = &workers[victim].id;
    let again: Vec<_> = tasks.iter().filter(|t| t.attempt > 1).collect();
    assert!(
        again.iter().any(|t| t.index as usize == slow_step),
        "the killed worker's slow step s{slow_step:04} ran again"
    );
    assert!(again.len() <= 4, "at most its 4 slots ran again: {again:?}");
    let bound = killed_at + chrono::Duration::from_std(LEASE * 2).expect("lease");
    let latest = again.iter().filter_map(|t| t.started_at).max();
    eprintln!(
        "{} step(s) of the killed worker started again, the last {:?} after the kill",
        again.len(),
        latest.map(|at| at - killed_at)
    );
    for t in &again {
        let at = t.started_at.expect("a started task");
        assert!(
            at <= bound,
            "{} started again at {at}, more than two leases ({:?}) after the kill at {killed_at}",
            t.name,
            LEASE * 2
        );
    }

    // By the store: each step completed by one attempt, its last. Its
    // `tasks_finished` event (progress for followers, appended after the
    // completion commits) is there once, or missing when the killed worker
    // died between the two.
    let done = finished(&f.events(run));
    for t in &tasks {
        let ends = done.get(&t.index).map_or(&[][..], Vec::as_slice);
        match ends {
            [(attempt, worker)] => {
                assert_eq!(
                    *attempt,
                    u64::from(t.attempt),
                    "{}: its last attempt",
                    t.name
                );
                if t.attempt > 1 {
                    assert_ne!(worker, victim_id, "{}", t.name);
                }
            }
            [] => assert_eq!(
                owner_of(&result_token(t)),
                owner,
                "{}: no tasks_finished event, yet not completed by the killed worker",
                t.name
            ),
            _ => panic!("{}: more than one tasks_finished event: {ends:?}", t.name),
        }
    }

    // By the ledger: the completed attempt's line exactly once; any other
    // line is an attempt of the killed worker's that ended unrecorded.
    let lines = ledger(&f);
    for t in &tasks {
        let token = result_token(t);
        let of_step = lines.get(&t.name).map_or(&[][..], Vec::as_slice);
        assert_eq!(
            of_step.iter().filter(|l| **l == token).count(),
            1,
            "{}: its completed attempt in the ledger once: {of_step:?}",
            t.name
        );
        for other in of_step.iter().filter(|l| **l != token) {
            assert_eq!(owner_of(other), owner, "{}: {of_step:?}", t.name);
        }
    }
    assert_eq!(lines.len(), tasks.len(), "no other step in the ledger");
    let extra: usize = lines.values().map(|l| l.len() - 1).sum();
    eprintln!("{extra} ledger line(s) of attempts that ended unrecorded");
    for (i, w) in workers.iter_mut().enumerate() {
        if i != victim {
            assert!(w.stop().success(), "{}", w.log());
        }
    }
}

/// A worker frozen (SIGSTOP) while its step runs loses its lease; another
/// worker runs the step again and completes it. Continued (SIGCONT), the
/// frozen worker's late completion is refused: the step keeps the
/// reclaimer's result.
#[test]
fn a_frozen_workers_late_completion_is_refused() {
    let _one = one_at_a_time();
    let f = Fixture::new();
    f.write(
        "one.yaml",
        &format!("name: one\nsteps:\n{}", ledger_step("x", "1", &[])),
    );
    let run = f.submit("one.yaml");
    let mut a = f.worker("frozen", &[]);
    wait_for("the step's process on the first worker", PATIENCE, || {
        f.read("pids/x").ends_with('\n')
    });
    send("STOP", a.pid());
    // Its step's process goes on (it is not stopped) and ends; the worker
    // cannot record it. Another worker takes the step over once the lease
    // lapses.
    let mut b = f.worker("reclaimer", &[]);
    let rec = f.wait_end(run);
    assert_eq!(rec.status, WorkflowStatus::Completed, "{rec:?}");
    let before = f.tasks(run);
    assert_eq!(before[0].attempt, 2, "{before:?}");
    send("CONT", a.pid());
    assert!(a.stop().success(), "{}", a.log());
    let log = a.log();
    assert!(
        log.contains("0 completed") && log.contains("1 stale"),
        "the continued worker's completion was refused: {log}"
    );
    let after = f.tasks(run);
    assert_eq!(after, before, "nothing changed in the store");
    let token = result_token(&after[0]);
    let lines = ledger(&f);
    let x = &lines["x"];
    assert_eq!(x.len(), 2, "both attempts ran to their end: {x:?}");
    assert_eq!(x.iter().filter(|l| **l == token).count(), 1, "{x:?}");
    let done = finished(&f.events(run));
    assert_eq!(done[&0], vec![(2, "reclaimer".to_owned())]);
    assert!(b.stop().success(), "{}", b.log());
}

/// Every connection of the test's processes is cut twice mid-run (as a
/// restart of the server would): the workers reconnect and the run
/// completes, each step once.
#[test]
fn workers_reconnect_when_their_connections_are_cut() {
    let _one = one_at_a_time();
    let f = Fixture::new();
    let (lanes, per_lane) = (8, 40);
    f.write("ledger.yaml", &lanes_workflow(lanes, per_lane, |_| "0.02"));
    let run = f.submit("ledger.yaml");
    let mut workers = [f.worker("w1", &[]), f.worker("w2", &[])];
    let total = lanes * per_lane;
    for share in [3, 2] {
        wait_for("a share of the steps to complete", PATIENCE, || {
            let n = f.run_record(run).tasks.completed;
            n as usize >= total / share
        });
        let cut = f.terminate_connections();
        assert!(cut >= 2, "the workers' connections were cut ({cut})");
    }
    let rec = f.wait_end(run);
    assert_eq!(rec.status, WorkflowStatus::Completed, "{rec:?}");
    let tasks = f.tasks(run);
    assert!(tasks.iter().all(|t| t.status == TaskStatus::Completed));
    // A completion whose commit's answer was lost may miss its event, never
    // have two.
    let done = finished(&f.events(run));
    assert!(done.values().all(|e| e.len() <= 1), "{done:?}");
    let lines = ledger(&f);
    for t in &tasks {
        let token = result_token(t);
        let n = lines[&t.name].iter().filter(|l| **l == token).count();
        assert_eq!(n, 1, "{}", t.name);
    }
    for w in &mut workers {
        assert!(w.alive(), "worker {} survived: {}", w.id, w.log());
        assert!(w.stop().success(), "{}", w.log());
    }
}

/// `orch cancel RUN` from another process stops the step running on a
/// worker within a second: from the command's return to the step's
/// process being gone. The worker's lease is the default (30 s): the cancel
/// does not wait for a lease renewal.
#[test]
fn cancel_from_another_process_stops_a_step_on_a_worker_within_a_second() {
    let _one = one_at_a_time();
    let f = Fixture::new();
    f.write(
        "long.yaml",
        "name: long\nsteps:\n  - { name: sleeper, module: shell, action: exec, parameters: { program: sh, args: ['-c', 'echo $$ > pids/sleeper; exec sleep 600'] } }\n",
    );
    let run = f.submit("long.yaml");
    let mut w = f.worker_leased("w1", Duration::from_secs(30), &[]);
    let mut pid = 0u32;
    wait_for("the step's process", PATIENCE, || {
        let t = f.read("pids/sleeper");
        pid = t.trim().parse().unwrap_or(0);
        t.ends_with('\n')
    });
    let out = f.run(&["cancel", &run.to_string()]);
    let returned = Instant::now();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for("the step's process to be gone", PATIENCE, || gone(pid));
    let took = returned.elapsed();
    eprintln!("the step's process was gone {took:?} after orch cancel returned");
    assert!(
        took < Duration::from_secs(1),
        "the step's process went {took:?} after orch cancel returned"
    );
    assert_eq!(f.run_record(run).status, WorkflowStatus::Cancelled);
    assert_eq!(f.tasks(run)[0].status, TaskStatus::Cancelled);
    assert!(w.stop().success(), "{}", w.log());
}

const OK: &str = "name: ok\nsteps:\n  - { name: a, module: core, action: set, parameters: { value: { n: 2 } } }\n  - { name: b, module: core, action: set, parameters: { value: '${a.result.n}' }, dependencies: [a] }\n";
const FAILS: &str = "name: fails\nsteps:\n  - { name: a, module: core, action: fail, parameters: { message: boom } }\n  - { name: b, module: core, action: noop, dependencies: [a] }\n";
/// A step that waits for the file `go`.
const GATED: &str = "name: gated\nsteps:\n  - { name: gate, module: shell, action: exec, parameters: { program: sh, args: ['-c', 'echo $$ > pids/gate; while [ ! -e go ]; do sleep 0.05; done'] } }\n";

/// `orch run FILE --store postgres://...` submits the run, follows it to its
/// end with the usual output and exit code; `--detach` does not wait.
#[test]
fn orch_run_follows_a_run_done_by_workers_and_detach_does_not_wait() {
    let _one = one_at_a_time();
    let f = Fixture::new();
    f.write("ok.yaml", OK);
    f.write("fails.yaml", FAILS);
    f.write("gated.yaml", GATED);
    let mut w = f.worker("w1", &[]);

    let out = f.run(&["run", "ok.yaml"]);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("workflow `ok` completed"), "{stdout}");
    assert!(stderr.contains("b: completed"), "progress: {stderr}");

    let out = f.run(&["run", "fails.yaml", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["status"], "failed", "{v}");

    // Detached: it returns while its step waits for `go`.
    let run = f.submit("gated.yaml");
    assert_eq!(f.run_record(run).status, WorkflowStatus::Running);
    f.write("go", "");
    assert_eq!(f.wait_end(run).status, WorkflowStatus::Completed);
    assert!(w.stop().success(), "{}", w.log());
}

/// SIGINT to an `orch run` that follows a submitted run stops following it
/// (exit 130) and says so: the run goes on on the workers and completes.
#[test]
fn interrupting_orch_run_leaves_a_submitted_run_to_the_workers() {
    let _one = one_at_a_time();
    let f = Fixture::new();
    f.write("gated.yaml", GATED);
    let mut w = f.worker("w1", &[]);
    let err_path = f.dir.join("run.err");
    let mut follower = f
        .orch()
        .args(["run", "gated.yaml", "--store", &f.url])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&err_path).expect("a log"))
        .spawn()
        .expect("orch run starts");
    wait_for("the step to run on the worker", PATIENCE, || {
        f.read("pids/gate").ends_with('\n')
    });
    send("INT", follower.id());
    let status = follower.wait().expect("orch run exits");
    assert_eq!(status.code(), Some(130));
    let err = f.read("run.err");
    assert!(
        err.contains("goes on on the workers") && err.contains("orch cancel"),
        "{err}"
    );
    assert!(!err.contains("orch resume"), "{err}");
    let run = f.runs().first().map(|r| r.id).expect("the submitted run");
    assert_eq!(f.run_record(run).status, WorkflowStatus::Running);
    f.write("go", "");
    assert_eq!(f.wait_end(run).status, WorkflowStatus::Completed);
    assert!(w.stop().success(), "{}", w.log());
}

/// With `ORCH_STORE_URL` naming the PostgreSQL store once, the commands that
/// read runs work as they do on SQLite: `runs list`, `runs show`, `logs`,
/// `status` (which lists the worker) and `health`.
#[test]
fn the_run_commands_read_a_postgres_store_named_once_in_the_environment() {
    let _one = one_at_a_time();
    let f = Fixture::new();
    f.write("ok.yaml", OK);
    let mut w = f.worker("w1", &[]);
    let orch = |args: &[&str]| {
        let out = f
            .orch()
            .env("ORCH_STORE_URL", &f.url)
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()
            .expect("orch runs");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "orch {args:?}: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        text
    };
    let run: serde_json::Value =
        serde_json::from_str(&orch(&["run", "ok.yaml", "--json"])).expect("json");
    assert_eq!(run["status"], "completed", "{run}");
    let id = run["run_id"].as_str().expect("run id").to_owned();

    let list: serde_json::Value =
        serde_json::from_str(&orch(&["runs", "list", "--json"])).expect("json");
    let listed = list.as_array().expect("a list");
    assert_eq!(listed.len(), 1, "{list}");
    assert_eq!(listed[0]["run_id"], id.as_str());
    assert_eq!(listed[0]["status"], "completed");
    assert_eq!(listed[0]["done"], 2);

    let show: serde_json::Value =
        serde_json::from_str(&orch(&["runs", "show", &id, "--json"])).expect("json");
    let steps: Vec<(&str, &str)> = show["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .map(|t| {
            (
                t["name"].as_str().unwrap_or_default(),
                t["status"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(steps, [("a", "completed"), ("b", "completed")], "{show}");
    // `${a.result.n}` was resolved on a worker from the stored result.
    assert_eq!(orch(&["logs", &id, "b"]).trim(), "2");

    let status: serde_json::Value =
        serde_json::from_str(&orch(&["status", "--json"])).expect("json");
    let workers = status["workers"].as_array().expect("workers listed");
    assert!(
        workers.iter().any(|x| x["id"] == "w1"),
        "the worker is listed: {status}"
    );
    let health: serde_json::Value =
        serde_json::from_str(&orch(&["health", "--json"])).expect("json");
    assert!(health["overall_status"].is_string(), "{health}");
    assert!(w.stop().success(), "{}", w.log());
}

/// Of two workers, one at a time reclaims lapsed claims: the holder of the
/// store's `reaper` lease. Killed (no chance to resign), its lease lapses
/// and the other worker takes the job over; a worker that stops resigns,
/// and the lease is free at once.
#[test]
fn one_worker_at_a_time_reclaims() {
    let _one = one_at_a_time();
    let f = Fixture::new();
    let mut workers = [f.worker("w1", &[]), f.worker("w2", &[])];
    let leader = |f: &Fixture| {
        f.call("leader", |s| s.leader("reaper", chrono::Utc::now()))
            .map(|(h, _)| h)
    };
    let mut first = None;
    wait_for("a worker to lead", PATIENCE, || {
        first = leader(&f);
        first.is_some()
    });
    let first = first.expect("a leader");
    assert!(first == "w1" || first == "w2", "{first}");
    // The holder renews: it still leads a few reclaim periods later.
    std::thread::sleep(LEASE * 2);
    assert_eq!(
        leader(&f).as_deref(),
        Some(first.as_str()),
        "the lease is renewed"
    );
    let (gone, other) = if first == "w1" { (0, 1) } else { (1, 0) };
    send("KILL", workers[gone].pid());
    let _ = workers[gone].wait_exit();
    let next = workers[other].id.clone();
    wait_for("the other worker to take the lease over", PATIENCE, || {
        leader(&f).as_deref() == Some(next.as_str())
    });
    assert!(workers[other].stop().success(), "{}", workers[other].log());
    assert_eq!(leader(&f), None, "a worker that stops resigns");
}

/// `orch retry` of a failed run on a store whose workers claim the steps:
/// the new run keeps the completed step (it does not run again) and the
/// workers run the failed one and its dependent; nothing of the retry runs
/// in the process that asked for it.
#[test]
fn a_retry_is_run_by_the_workers_keeping_what_completed() {
    let _one = one_at_a_time();
    let f = Fixture::new();
    f.write(
        "flaky.yaml",
        "name: flaky\nsteps:\n  - { name: first, module: shell, action: script, parameters: { script: 'echo ran >> first.txt' } }\n  - { name: second, module: shell, action: script, parameters: { script: 'test -e fixed && echo \"$PPID\" > second.pid' }, dependencies: [first] }\n  - { name: third, module: core, action: noop, dependencies: [second] }\n",
    );
    let mut w = f.worker("w1", &[]);
    let out = f.run(&["run", "flaky.yaml", "--json"]);
    assert_eq!(out.status.code(), Some(1), "the first run fails");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let failed: RunId = v["run_id"].as_str().expect("run id").parse().expect("id");
    f.write("fixed", "");
    let out = f.run(&["retry", &failed.to_string(), "--json"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(&stdout).expect("json");
    assert_eq!(v["status"], "completed", "{v}");
    let retried: RunId = v["run_id"].as_str().expect("run id").parse().expect("id");
    assert_ne!(retried, failed);
    assert_eq!(f.read("first.txt"), "ran\n", "the completed step was kept");
    let rec = f.run_record(retried);
    assert_eq!(rec.owner.as_deref(), Some("workers"), "the workers ran it");
    let tasks = f.tasks(retried);
    assert!(
        tasks.iter().all(|t| t.status == TaskStatus::Completed),
        "{tasks:?}"
    );
    // The step that ran again was started by the worker's process.
    assert_eq!(f.read("second.pid").trim(), w.pid().to_string());
    assert!(w.stop().success(), "{}", w.log());
}
