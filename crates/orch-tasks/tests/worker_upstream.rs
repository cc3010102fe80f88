//! Workers decide the trigger rules over every upstream step and run
//! `on_failure:`/`finally:` steps as a run in one process does: the one
//! release rule, over the upstream steps' records read from the store.

mod common;

use common::{rt, yaml};
use orch_model::{RunId, RunSettings, Store, TaskStatus, WorkflowStatus};
use orch_tasks::worker::{Worker, WorkerOptions, submit};
use orch_tasks::{ActionRegistry, MemoryStore};
use serde_json::Map;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

#[test]
fn a_worker_reads_every_upstream_step_and_runs_hook_steps() {
    rt().block_on(async {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let dir = tempfile::tempdir().expect("dir");
        let wf = yaml(
            "name: up\nsteps:\n\
             - {name: a, module: core, action: fail, parameters: {retryable: false}}\n\
             - {name: b, module: core, action: noop, dependencies: [a], conditions: {run_if: always}}\n\
             - {name: one_failed, module: core, action: noop, dependencies: [b], conditions: {run_if: one_failed}}\n\
             - {name: none_failed, module: core, action: noop, dependencies: [b], conditions: {run_if: none_failed}}\n\
             - {name: failure, module: core, action: noop, dependencies: [b], conditions: {run_if: failure}}\n\
             on_failure:\n\
             - {name: alert, module: core, action: set, parameters: {value: '${a.status}'}}\n\
             finally:\n\
             - {name: cleanup, module: core, action: noop}\n",
        );
        let settings = RunSettings {
            work_dir: Some(dir.path().to_path_buf()),
            ..RunSettings::default()
        };
        let run = submit(
            store.as_ref(),
            &wf,
            &ActionRegistry::with_builtins(),
            &Map::new(),
            &settings,
            RunId::new(),
        )
        .await
        .expect("submitted");
        let w = Worker::new(
            store.clone(),
            Arc::new(ActionRegistry::with_builtins()),
            WorkerOptions {
                id: "w".into(),
                poll: Duration::from_millis(10),
                ..WorkerOptions::default()
            },
        )
        .expect("a worker");
        let stop = CancellationToken::new();
        let task = tokio::spawn(w.run(stop.clone()));
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            let r = store.get_run(run).await.expect("get").expect("run");
            if r.status != WorkflowStatus::Running {
                break r.status;
            }
            assert!(Instant::now() < deadline, "the run did not end");
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        stop.cancel();
        task.await.expect("worker");
        assert_eq!(status, WorkflowStatus::Failed);
        let tasks = store.tasks(run).await.expect("tasks");
        let by = |n: &str| tasks.iter().find(|t| t.name == n).expect("task");
        assert_eq!(by("b").status, TaskStatus::Completed);
        assert_eq!(by("one_failed").status, TaskStatus::Completed);
        assert_eq!(by("none_failed").status, TaskStatus::Skipped);
        assert_eq!(
            by("none_failed").note.as_deref(),
            Some("an upstream step failed (run_if: none_failed)")
        );
        assert_eq!(by("failure").status, TaskStatus::Skipped);
        assert_eq!(by("alert").status, TaskStatus::Completed);
        assert_eq!(
            by("alert").result.as_ref().map(|r| r.data.clone()),
            Some(serde_json::json!("failed"))
        );
        assert_eq!(by("cleanup").status, TaskStatus::Completed);
    });
}
