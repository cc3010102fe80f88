//! Concurrency keys of runs submitted to real `orch worker` processes
//! through PostgreSQL (one schema per test): two runs of one key with
//! limit 1 submitted at once by two `orch run --detach` never have steps
//! running at the same time, whichever of two workers runs them (read from
//! the stored attempts' start and end times); `skip` runs nothing and names
//! the holder; a queued run shows as `queued` and `orch cancel` ends it;
//! `cancel_running` cancels the holder and runs once its step has stopped.

mod common;
mod procs;

use orch_model::{RunId, TaskStatus, WorkflowStatus};
use procs::{Fixture, PATIENCE, one_at_a_time, wait_for};
use std::process::Stdio;

/// Three steps, each recording its start, sleeping 0.3 s, recording its end.
fn timed(on_conflict: &str) -> String {
    let step = |name: &str, deps: &str| {
        format!(
            "  - {{ name: {name}, module: shell, action: script, parameters: {{ script: 'echo \"start $TAG $STEP\" >> ledger; sleep 0.3; echo \"end $TAG $STEP\" >> ledger', env: {{ TAG: \"${{params.tag}}\", STEP: {name} }} }}{deps} }}\n"
        )
    };
    format!(
        "name: deploy-{on_conflict}\nparameters: {{ env: prod, tag: a }}\nconcurrency: {{ key: \"deploy-${{params.env}}\", limit: 1, on_conflict: {on_conflict} }}\nsteps:\n{}{}{}",
        step("one", ""),
        step("two", ", dependencies: [one]"),
        step("three", ""),
    )
}

/// One step that waits for the file `go-TAG`.
fn gated(on_conflict: &str) -> String {
    format!(
        "name: gated-{on_conflict}\nparameters: {{ env: prod, tag: a }}\nconcurrency: {{ key: \"deploy-${{params.env}}\", limit: 1, on_conflict: {on_conflict} }}\nsteps:\n  - {{ name: work, module: shell, action: script, parameters: {{ script: 'echo \"start $TAG\" >> ledger; while [ ! -e \"go-$TAG\" ]; do sleep 0.02; done; echo \"end $TAG\" >> ledger', env: {{ TAG: \"${{params.tag}}\" }} }} }}\n"
    )
}

/// `orch run FILE -p tag=TAG --detach`, started (not waited for).
fn detach(f: &Fixture, file: &str, tag: &str) -> std::process::Child {
    f.orch()
        .args(["run", file, "-p", &format!("tag={tag}"), "--detach"])
        .args(["--store", &f.url])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("orch run --detach starts")
}

fn run_id(child: std::process::Child) -> RunId {
    let out = child.wait_with_output().expect("orch run --detach ends");
    assert!(
        out.status.success(),
        "orch run --detach: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("orch run --detach prints the run's id")
}

/// The span of a run's steps: its first attempt's start, its last one's end.
fn span(f: &Fixture, run: RunId) -> (chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>) {
    let tasks = f.tasks(run);
    assert!(
        tasks.iter().all(|t| t.status == TaskStatus::Completed),
        "{tasks:?}"
    );
    let start = tasks
        .iter()
        .filter_map(|t| t.started_at)
        .min()
        .expect("a start");
    let end = tasks
        .iter()
        .filter_map(|t| t.finished_at)
        .max()
        .expect("an end");
    (start, end)
}

#[test]
fn two_runs_of_one_key_submitted_at_once_never_overlap_on_two_workers() {
    let _one = one_at_a_time();
    let f = Fixture::new();
    f.write("deploy.yaml", &timed("queue"));
    let mut w1 = f.worker("w1", &[]);
    let mut w2 = f.worker("w2", &[]);
    // Both submitted at the same moment, by two processes.
    let (ca, cb) = (
        detach(&f, "deploy.yaml", "a"),
        detach(&f, "deploy.yaml", "b"),
    );
    let (a, b) = (run_id(ca), run_id(cb));
    assert_eq!(f.wait_end(a).status, WorkflowStatus::Completed);
    assert_eq!(f.wait_end(b).status, WorkflowStatus::Completed);
    let (sa, ea) = span(&f, a);
    let (sb, eb) = span(&f, b);
    assert!(
        ea <= sb || eb <= sa,
        "the runs' steps overlapped: a {sa}..{ea}, b {sb}..{eb}"
    );
    // The ledger says the same: no run starts a step while the other has
    // one that has not ended.
    let mut open: std::collections::BTreeMap<String, i32> = Default::default();
    for line in f.read("ledger").lines() {
        let mut w = line.split(' ');
        let (what, tag) = (w.next().unwrap_or(""), w.next().unwrap_or("").to_owned());
        if what == "start" {
            for (other, n) in &open {
                assert!(
                    *other == tag || *n == 0,
                    "{tag} started while {other} ran:\n{}",
                    f.read("ledger")
                );
            }
            *open.entry(tag).or_default() += 1;
        } else {
            *open.entry(tag).or_default() -= 1;
        }
    }
    // The second waited: its log says it was queued, naming the first.
    let (first, second) = if ea <= sb { (a, b) } else { (b, a) };
    let queued: Vec<_> = f
        .events(second)
        .into_iter()
        .filter(|e| e.kind == "queued")
        .collect();
    assert_eq!(queued.len(), 1, "{queued:?}");
    assert_eq!(queued[0].data["held_by"][0], first.to_string());
    assert_eq!(f.run_record(second).owner.as_deref(), Some("workers"));
    assert!(w1.stop().success(), "{}", w1.log());
    assert!(w2.stop().success(), "{}", w2.log());
}

#[test]
fn skip_queue_cancel_and_cancel_running_with_workers() {
    let _one = one_at_a_time();
    let f = Fixture::new();
    for p in ["queue", "skip", "cancel_running"] {
        f.write(&format!("{p}.yaml"), &gated(p));
    }
    let mut w = f.worker("w1", &[]);
    let holder = run_id(detach(&f, "queue.yaml", "a"));
    wait_for("the holder's step to start", PATIENCE, || {
        f.read("ledger").contains("start a")
    });

    // skip: followed by `orch run`, every step skipped naming the holder; exit 0.
    let out = f.run(&["run", "skip.yaml", "-p", "tag=s", "--json"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(&stdout).expect("json");
    assert_eq!(v["status"], "completed", "{v}");
    let skipped: RunId = v["run_id"].as_str().expect("id").parse().expect("id");
    let t = &f.tasks(skipped)[0];
    assert_eq!(t.status, TaskStatus::Skipped);
    let note = t.note.clone().unwrap_or_default();
    assert!(note.contains(&holder.to_string()), "{note}");
    assert!(!f.read("ledger").contains("start s"));

    // queue: shown as queued, never started; `orch cancel` ends it at once.
    let queued = run_id(detach(&f, "queue.yaml", "q"));
    let out = f.run(&["runs", "show", &queued.to_string(), "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["status"], "queued", "{v}");
    let out = f.run(&["cancel", &queued.to_string()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(f.run_record(queued).status, WorkflowStatus::Cancelled);
    assert_eq!(f.tasks(queued)[0].status, TaskStatus::Cancelled);
    assert_eq!(f.tasks(queued)[0].attempt, 0, "it never started");

    // cancel_running: the holder is cancelled; the new run starts only
    // once the holder's step has stopped.
    f.write("go-c", "");
    let out = f.run(&["run", "cancel_running.yaml", "-p", "tag=c", "--json"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(&stdout).expect("json");
    let taker: RunId = v["run_id"].as_str().expect("id").parse().expect("id");
    assert_eq!(f.wait_end(holder).status, WorkflowStatus::Cancelled);
    let (held, took) = (&f.tasks(holder)[0], &f.tasks(taker)[0]);
    assert_eq!(held.status, TaskStatus::Cancelled);
    assert_eq!(took.status, TaskStatus::Completed);
    assert!(
        took.started_at.expect("started") >= held.finished_at.expect("ended"),
        "{held:?} {took:?}"
    );
    assert!(
        !f.read("ledger").contains("end a"),
        "the holder was stopped"
    );
    assert!(w.stop().success(), "{}", w.log());
}

/// `orch retry` on this store hands the new run to the workers: with a key
/// held by another run, the retry waits, queued, and runs once the holder
/// ended.
#[test]
fn a_retry_waits_for_the_key_like_any_submitted_run() {
    let _one = one_at_a_time();
    let f = Fixture::new();
    f.write("queue.yaml", &gated("queue"));
    f.write(
        "flaky.yaml",
        "name: flaky\nparameters: { env: prod }\nconcurrency: { key: \"deploy-${params.env}\" }\nsteps:\n  - { name: check, module: shell, action: exec, parameters: { program: test, args: [-e, fixed] } }\n",
    );
    let mut w = f.worker("w1", &[]);
    let out = f.run(&["run", "flaky.yaml", "--json"]);
    assert_eq!(out.status.code(), Some(1), "the first run fails");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let failed = v["run_id"].as_str().expect("id").to_owned();
    let holder = run_id(detach(&f, "queue.yaml", "a"));
    wait_for("the holder's step to start", PATIENCE, || {
        f.read("ledger").contains("start a")
    });
    f.write("fixed", "");
    let retry = f
        .orch()
        .args(["retry", &failed, "--json", "--store", &f.url])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("orch retry starts");
    let mut queued = None;
    wait_for("the retry to be queued", PATIENCE, || {
        queued = f
            .runs()
            .into_iter()
            .find(|r| r.owner.as_deref() == Some("queued"));
        queued.is_some()
    });
    let queued = queued.expect("a queued run").id;
    // Long enough for many passes of the worker: it stays queued.
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert_eq!(f.run_record(queued).owner.as_deref(), Some("queued"));
    assert_eq!(f.tasks(queued)[0].attempt, 0);
    f.write("go-a", "");
    let out = retry.wait_with_output().expect("orch retry ends");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let held = &f.tasks(holder)[0];
    let took = &f.tasks(queued)[0];
    assert_eq!(took.status, TaskStatus::Completed);
    assert!(
        took.started_at.expect("started") >= held.finished_at.expect("ended"),
        "{held:?} {took:?}"
    );
    assert!(w.stop().success(), "{}", w.log());
}
