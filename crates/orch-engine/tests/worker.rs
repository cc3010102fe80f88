//! Runs submitted through the engine's one door (`RunRequest::detach`) and
//! run by workers (`OrchestrationEngine::worker`) of engines sharing one
//! SQLite file: results pass between steps, the handle follows the run from
//! the store, cancelling reaches the worker, and the workers are listed.

mod common;

use common::rt;
use orch_engine::{
    CancelOutcome, EngineConfig, Event, OrchestrationEngine, RunRequest, RunTarget, WorkerHandle,
    WorkerOptions,
};
use orch_model::{Format, Limits, TaskStatus, WorkflowStatus, load_workflow};
use serde_json::json;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// An engine on the SQLite file `db`, at home in `home`.
fn engine(home: &Path, db: &Path) -> OrchestrationEngine {
    let config = EngineConfig {
        store_url: Some(format!("sqlite://{}", db.display())),
        ..EngineConfig::default()
    };
    OrchestrationEngine::builder()
        .config(config)
        .home(home)
        .work_dir(home)
        .build()
        .expect("engine")
}

fn worker(e: &OrchestrationEngine, id: &str, slots: usize) -> WorkerHandle {
    e.worker(WorkerOptions {
        id: id.to_owned(),
        slots,
        lease: Duration::from_millis(900),
        poll: Duration::from_millis(10),
        register_every: Duration::from_millis(50),
        grace: Duration::from_secs(5),
        ..WorkerOptions::default()
    })
    .expect("a worker")
}

fn detached(yaml: &str) -> RunRequest {
    let wf = load_workflow(yaml, Format::Yaml, &Limits::default(), None)
        .unwrap_or_else(|d| panic!("{d}"));
    let mut req = RunRequest::new(RunTarget::Valid(Arc::new(wf)));
    req.detach = true;
    req
}

#[test]
fn a_submitted_diamond_runs_on_two_workers_of_one_sqlite_file() {
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("orch.db");
    rt().block_on(async {
        let (a, b, submitter) = (
            engine(dir.path(), &db),
            engine(dir.path(), &db),
            engine(dir.path(), &db),
        );
        let (w1, w2) = (worker(&a, "w1", 2), worker(&b, "w2", 2));
        let mut handle = submitter
            .run(detached("name: diamond\nsteps:\n  - { name: a, module: core, action: set, parameters: { value: { n: 20 } } }\n  - { name: b, module: core, action: set, parameters: { value: '${a.result.n}' } }\n  - { name: c, module: core, action: set, parameters: { value: 'c saw ${a.result.n}' } }\n  - { name: d, module: core, action: set, parameters: { value: ['${b.result}', '${c.result}'] } }\n").with_events())
            .await
            .expect("submitted");
        let mut rx = handle.events().expect("events");
        let report = tokio::time::timeout(Duration::from_secs(60), handle.report())
            .await
            .expect("the run ends")
            .expect("a report");
        assert_eq!(report.status, WorkflowStatus::Completed);
        assert_eq!(report.steps[3].result.as_ref().expect("d").data, json!([20, "c saw 20"]));
        // The handle's events came from the store.
        let mut succeeded = 0;
        while let Ok(e) = rx.try_recv() {
            if matches!(e, Event::TaskSucceeded { .. }) {
                succeeded += 1;
            }
        }
        assert_eq!(succeeded, 4);
        w1.stop();
        w2.stop();
        let (s1, s2) = (w1.join().await.expect("w1"), w2.join().await.expect("w2"));
        assert_eq!(s1.completed + s2.completed, 4);
    });
}

#[test]
fn a_detached_200_step_wide_run_is_done_by_two_workers() {
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("orch.db");
    rt().block_on(async {
        let (a, b) = (engine(dir.path(), &db), engine(dir.path(), &db));
        let mut text = String::from("name: w1\nsteps:\n");
        for i in 0..200 {
            text.push_str(&format!(
                "  - {{ name: s{i}, module: core, action: noop }}\n"
            ));
        }
        // Submitted before any worker runs: it waits in the store.
        let handle = a.run(detached(&text)).await.expect("submitted");
        let id = handle.run_id();
        drop(handle);
        let r = a.store().get_run(id).await.expect("get").expect("recorded");
        assert_eq!(r.status, WorkflowStatus::Running);
        assert_eq!(orch_engine::run_state(&r).as_str(), "running");
        let (w1, w2) = (worker(&a, "w1", 8), worker(&b, "w2", 8));
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let r = a.store().get_run(id).await.expect("get").expect("run");
            if r.status != WorkflowStatus::Running {
                assert_eq!(r.status, WorkflowStatus::Completed);
                break;
            }
            assert!(Instant::now() < deadline, "the run did not end");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        w1.stop();
        w2.stop();
        let (s1, s2) = (w1.join().await.expect("w1"), w2.join().await.expect("w2"));
        assert_eq!(s1.completed + s2.completed, 200);
        let tasks = a.store().tasks(id).await.expect("tasks");
        assert!(
            tasks
                .iter()
                .all(|t| t.status == TaskStatus::Completed && t.attempt == 1)
        );
    });
}

#[test]
fn cancelling_a_submitted_run_stops_its_step_on_the_worker() {
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("orch.db");
    rt().block_on(async {
        let (a, b) = (engine(dir.path(), &db), engine(dir.path(), &db));
        let w = worker(&a, "w", 2);
        let handle = b
            .run(detached("name: cancel\nsteps:\n  - { name: sleeper, module: shell, action: exec, parameters: { program: sh, args: ['-c', 'echo $$ > sleeper.pid; exec sleep 600'] } }\n"))
            .await
            .expect("submitted");
        let id = handle.run_id();
        let pid_file = dir.path().join("sleeper.pid");
        let deadline = Instant::now() + Duration::from_secs(60);
        let pid: i32 = loop {
            let text = std::fs::read_to_string(&pid_file).unwrap_or_default();
            if text.ends_with('\n') {
                break text.trim().parse().expect("a pid");
            }
            assert!(Instant::now() < deadline, "the step did not start");
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        // From another engine, as `orch cancel` does.
        let out = b.cancel_run(id, Duration::from_secs(5)).await.expect("cancel");
        assert_eq!(out, CancelOutcome::Stopped);
        let report = tokio::time::timeout(Duration::from_secs(60), handle.report())
            .await
            .expect("the follower ends")
            .expect("report");
        assert_eq!(report.status, WorkflowStatus::Cancelled);
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|s| !s.rsplit(')').next().is_some_and(|r| r.trim_start().starts_with('Z')))
        {
            assert!(Instant::now() < deadline, "the step's process {pid} survived the cancel");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        w.stop();
        let s = w.join().await.expect("worker");
        // The worker noticed the cancel request itself (it asks every
        // 250 ms), or found its claim ended by the canceller: either way
        // the step was stopped, not completed.
        assert_eq!(s.cancelled + s.stale, 1, "{s:?}");
        assert_eq!(s.completed + s.failed, 0, "{s:?}");
    });
}

#[test]
fn workers_are_reported_with_their_slots_and_what_they_run() {
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("orch.db");
    rt().block_on(async {
        let a = engine(dir.path(), &db);
        assert!(a.workers().await.expect("none yet").is_empty());
        let w = worker(&a, "seen", 3);
        let handle = a
            .run(detached("name: seen\nsteps:\n  - { name: slow, module: core, action: sleep, parameters: { ms: 600000 } }\n"))
            .await
            .expect("submitted");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let r = a.worker_report().await;
            if r.workers.iter().any(|w| w.record.running.iter().any(|t| t.step == "slow")) {
                assert_eq!(r.workers.len(), 1);
                assert_eq!(r.workers[0].record.slots, 3);
                assert!(r.issues.is_empty() && r.status.is_healthy(), "{r:?}");
                break;
            }
            assert!(Instant::now() < deadline, "the worker's record never showed its step");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        a.cancel_run(handle.run_id(), Duration::from_secs(5)).await.expect("cancel");
        w.stop();
        w.join().await.expect("worker");
        assert!(a.workers().await.expect("read").is_empty(), "a stopped worker removes its record");
    });
}

/// A submitted run's follower says how long each step took: from the
/// times of the stored events that started and ended its attempt (it said
/// "completed in 0ms" for every step).
#[test]
fn a_followed_run_reports_each_steps_duration() {
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("orch.db");
    rt().block_on(async {
        let (a, submitter) = (engine(dir.path(), &db), engine(dir.path(), &db));
        let w = worker(&a, "w1", 1);
        let mut handle = submitter
            .run(detached("name: slow\nsteps:\n  - { name: nap, module: shell, action: exec, parameters: { program: sleep, args: ['0.3'] } }\n").with_events())
            .await
            .expect("submitted");
        let mut rx = handle.events().expect("events");
        let report = tokio::time::timeout(Duration::from_secs(60), handle.report())
            .await
            .expect("the run ends")
            .expect("a report");
        assert_eq!(report.status, WorkflowStatus::Completed);
        let mut took = None;
        while let Ok(e) = rx.try_recv() {
            if let Event::TaskSucceeded { duration, .. } = e {
                took = Some(duration);
            }
        }
        let took = took.expect("the step's end was followed");
        assert!(
            took >= Duration::from_millis(250) && took < Duration::from_secs(30),
            "the step slept 0.3 s; its end said {took:?}"
        );
        w.stop();
        w.join().await.expect("w1");
    });
}

/// A step skipped at release (its trigger rule) and the step that gathers a
/// literal fan-out's items make no attempt on workers, as in a run one
/// process drives: no `TaskStarted` on the handle, 0 attempts and no start
/// in the report, and the gathering step's "N items gathered" note.
#[test]
fn steps_that_do_not_run_make_no_attempt_on_workers() {
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("orch.db");
    let yaml = "name: skips\nsteps:\n  - { name: a, module: core, action: set, parameters: { value: 1 } }\n  - { name: fan, module: core, action: set, for_each: [x, y, z], parameters: { value: '${item}' } }\n  - { name: alert, module: core, action: noop, dependencies: [a], conditions: { run_if: failure } }\n";
    rt().block_on(async {
        let (a, submitter) = (engine(dir.path(), &db), engine(dir.path(), &db));
        let w = worker(&a, "w1", 2);
        let mut handle = submitter
            .run(detached(yaml).with_events())
            .await
            .expect("submitted");
        let mut rx = handle.events().expect("events");
        let report = tokio::time::timeout(Duration::from_secs(60), handle.report())
            .await
            .expect("the run ends")
            .expect("a report");
        assert_eq!(report.status, WorkflowStatus::Completed);
        let mut started = Vec::new();
        let mut skipped = Vec::new();
        while let Ok(e) = rx.try_recv() {
            match e {
                Event::TaskStarted { name, .. } => started.push(name.to_string()),
                Event::TaskSkipped { name, .. } => skipped.push(name.to_string()),
                _ => {}
            }
        }
        started.sort();
        assert_eq!(
            started,
            ["a", "fan[0]", "fan[1]", "fan[2]"],
            "only what ran started"
        );
        assert_eq!(skipped, ["alert"]);
        let step = |name: &str| {
            report
                .steps
                .iter()
                .find(|s| s.name == name)
                .unwrap_or_else(|| panic!("{name}"))
        };
        for name in ["fan", "alert"] {
            assert_eq!(step(name).attempts, 0, "{name}: {:?}", step(name));
            assert_eq!(step(name).started_at, None, "{name}");
        }
        assert_eq!(step("alert").status, TaskStatus::Skipped);
        assert_eq!(step("fan").note.as_deref(), Some("3 items gathered"));
        assert_eq!(step("a").attempts, 1);
        assert_eq!(step("fan[1]").attempts, 1);
        w.stop();
        w.join().await.expect("w1");
    });
}
