//! Concurrency keys of runs submitted to workers (`worker::queue`): a run
//! whose key has no free slot is queued (claims pass over it) until a
//! worker takes a slot for it; `skip` ends it with every step skipped,
//! `cancel_running` cancels the holder first, a cancel ends a queued run at
//! once, and a slot stays held while its run has not ended, whether or not
//! a worker holds one of its steps. Steps wait for files the test writes.

mod common;

use common::{rt, yaml};
use orch_model::store::{QUEUED_OWNER, RecordKind, SUBMITTED_OWNER};
use orch_model::{OnConflict, RunId, RunSettings, Store, TaskStatus, WorkflowStatus};
use orch_tasks::worker::queue::{Admission, RunKey, admit_queued, submit_queued};
use orch_tasks::worker::{Worker, WorkerOptions, cancel};
use orch_tasks::{ActionRegistry, MemoryStore};
use serde_json::Map;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// A run whose one step waits for the file `go-TAG`.
fn gated(tag: &str) -> orch_model::ValidWorkflow {
    yaml(&format!(
        "name: deploy\nsteps:\n  - {{ name: work, module: shell, action: exec, parameters: {{ program: sh, args: ['-c', 'while [ ! -e go-{tag} ]; do sleep 0.02; done'] }} }}\n"
    ))
}

fn key(on_conflict: OnConflict) -> RunKey {
    RunKey {
        key: "deploy-prod".into(),
        limit: 1,
        on_conflict,
    }
}

async fn submit(store: &dyn Store, dir: &Path, tag: &str, k: &RunKey) -> (RunId, Admission) {
    let id = RunId::new();
    let settings = RunSettings {
        work_dir: Some(dir.to_path_buf()),
        ..RunSettings::default()
    };
    let a = submit_queued(
        store,
        &gated(tag),
        &ActionRegistry::with_builtins(),
        &Map::new(),
        &settings,
        id,
        k,
    )
    .await
    .expect("submitted");
    (id, a)
}

fn worker(store: &Arc<dyn Store>, id: &str) -> (CancellationToken, tokio::task::JoinHandle<()>) {
    let w = Worker::new(
        store.clone(),
        Arc::new(ActionRegistry::with_builtins()),
        WorkerOptions {
            id: id.into(),
            poll: Duration::from_millis(10),
            ..WorkerOptions::default()
        },
    )
    .expect("a worker");
    let stop = CancellationToken::new();
    let task = tokio::spawn({
        let stop = stop.clone();
        async move {
            w.run(stop).await;
        }
    });
    (stop, task)
}

async fn wait_until(what: &str, mut f: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !f().await {
        assert!(Instant::now() < deadline, "waited too long for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn status(store: &dyn Store, id: RunId) -> WorkflowStatus {
    store.get_run(id).await.expect("get").expect("run").status
}

async fn owner(store: &dyn Store, id: RunId) -> Option<String> {
    store.get_run(id).await.expect("get").expect("run").owner
}

#[test]
fn two_runs_of_one_key_run_one_after_the_other_on_two_workers() {
    rt().block_on(async {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let dir = tempfile::tempdir().expect("dir");
        let k = key(OnConflict::Queue);
        let (a, got) = submit(store.as_ref(), dir.path(), "a", &k).await;
        assert_eq!(got, Admission::Admitted, "a free key: handed over at once");
        let (b, got) = submit(store.as_ref(), dir.path(), "b", &k).await;
        assert_eq!(got, Admission::Waiting(vec![a.to_string()]));
        assert_eq!(
            owner(store.as_ref(), b).await.as_deref(),
            Some(QUEUED_OWNER)
        );
        let ev = store.events(b, 0).await.expect("events");
        assert!(ev.iter().any(|e| e.kind == "queued"), "{ev:?}");
        let (s1, t1) = worker(&store, "w1");
        let (s2, t2) = worker(&store, "w2");
        wait_until("a's step to start", async || {
            store.tasks(a).await.expect("tasks")[0].status == TaskStatus::Running
        })
        .await;
        // Long enough for many passes of both workers: b stays queued.
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert_eq!(
            owner(store.as_ref(), b).await.as_deref(),
            Some(QUEUED_OWNER)
        );
        assert_eq!(store.tasks(b).await.expect("tasks")[0].attempt, 0);
        std::fs::write(dir.path().join("go-b"), "").expect("go-b");
        std::fs::write(dir.path().join("go-a"), "").expect("go-a");
        wait_until("b to end", async || {
            status(store.as_ref(), b).await != WorkflowStatus::Running
        })
        .await;
        assert_eq!(status(store.as_ref(), a).await, WorkflowStatus::Completed);
        assert_eq!(status(store.as_ref(), b).await, WorkflowStatus::Completed);
        assert_eq!(
            owner(store.as_ref(), b).await.as_deref(),
            Some(SUBMITTED_OWNER)
        );
        let ta = &store.tasks(a).await.expect("tasks")[0];
        let tb = &store.tasks(b).await.expect("tasks")[0];
        assert!(
            tb.started_at.expect("b started") >= ta.finished_at.expect("a ended"),
            "b's step started after a's ended: {ta:?} {tb:?}"
        );
        assert!(
            store
                .record(RecordKind::RunQueued, &b.to_string())
                .await
                .expect("record")
                .is_none(),
            "its queued record is gone"
        );
        s1.cancel();
        s2.cancel();
        t1.await.expect("w1");
        t2.await.expect("w2");
    });
}

#[test]
fn a_slot_is_held_while_its_run_has_not_ended_with_no_worker_at_all() {
    rt().block_on(async {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let dir = tempfile::tempdir().expect("dir");
        let k = key(OnConflict::Queue);
        let (a, _) = submit(store.as_ref(), dir.path(), "a", &k).await;
        let (b, _) = submit(store.as_ref(), dir.path(), "b", &k).await;
        // No worker runs: a holds its slot all the same, pass after pass.
        for _ in 0..5 {
            assert_eq!(admit_queued(store.as_ref()).await.expect("pass"), 0);
        }
        assert_eq!(
            owner(store.as_ref(), b).await.as_deref(),
            Some(QUEUED_OWNER)
        );
        // a ends (cancelled, as `orch cancel` does): the next pass admits b.
        assert!(cancel(store.as_ref(), a).await.expect("cancel a"));
        assert_eq!(status(store.as_ref(), a).await, WorkflowStatus::Cancelled);
        assert_eq!(admit_queued(store.as_ref()).await.expect("pass"), 1);
        assert_eq!(
            owner(store.as_ref(), b).await.as_deref(),
            Some(SUBMITTED_OWNER)
        );
    });
}

#[test]
fn skip_ends_the_run_at_once_naming_the_holder() {
    rt().block_on(async {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let dir = tempfile::tempdir().expect("dir");
        let (a, _) = submit(store.as_ref(), dir.path(), "a", &key(OnConflict::Queue)).await;
        let (b, got) = submit(store.as_ref(), dir.path(), "b", &key(OnConflict::Skip)).await;
        assert_eq!(got, Admission::Skipped(vec![a.to_string()]));
        assert_eq!(status(store.as_ref(), b).await, WorkflowStatus::Completed);
        let t = &store.tasks(b).await.expect("tasks")[0];
        assert_eq!(t.status, TaskStatus::Skipped);
        let note = t.note.as_deref().unwrap_or_default();
        assert!(
            note.contains(&a.to_string()) && note.contains("on_conflict: skip"),
            "{note}"
        );
        assert_eq!(status(store.as_ref(), a).await, WorkflowStatus::Running);
    });
}

#[test]
fn cancel_running_cancels_the_holder_then_runs() {
    rt().block_on(async {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let dir = tempfile::tempdir().expect("dir");
        let (a, _) = submit(store.as_ref(), dir.path(), "a", &key(OnConflict::Queue)).await;
        let (s1, t1) = worker(&store, "w1");
        wait_until("a's step to start", async || {
            store.tasks(a).await.expect("tasks")[0].status == TaskStatus::Running
        })
        .await;
        std::fs::write(dir.path().join("go-b"), "").expect("go-b");
        let (b, got) = submit(
            store.as_ref(),
            dir.path(),
            "b",
            &key(OnConflict::CancelRunning),
        )
        .await;
        assert_eq!(got, Admission::Waiting(vec![a.to_string()]));
        wait_until("b to end", async || {
            status(store.as_ref(), b).await != WorkflowStatus::Running
        })
        .await;
        assert_eq!(status(store.as_ref(), a).await, WorkflowStatus::Cancelled);
        assert_eq!(status(store.as_ref(), b).await, WorkflowStatus::Completed);
        let ta = &store.tasks(a).await.expect("tasks")[0];
        let tb = &store.tasks(b).await.expect("tasks")[0];
        assert!(
            tb.started_at.expect("b started") >= ta.finished_at.expect("a ended"),
            "{ta:?} {tb:?}"
        );
        s1.cancel();
        t1.await.expect("w1");
    });
}

#[test]
fn cancelling_a_queued_run_ends_it_at_once() {
    rt().block_on(async {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let dir = tempfile::tempdir().expect("dir");
        let k = key(OnConflict::Queue);
        let (a, _) = submit(store.as_ref(), dir.path(), "a", &k).await;
        let (b, _) = submit(store.as_ref(), dir.path(), "b", &k).await;
        let (c, _) = submit(store.as_ref(), dir.path(), "c", &k).await;
        assert!(cancel(store.as_ref(), b).await.expect("cancel b"));
        assert_eq!(status(store.as_ref(), b).await, WorkflowStatus::Cancelled);
        assert_eq!(
            store.tasks(b).await.expect("tasks")[0].status,
            TaskStatus::Cancelled
        );
        assert!(
            store
                .record(RecordKind::RunQueued, &b.to_string())
                .await
                .expect("record")
                .is_none()
        );
        // a ends: c, not the cancelled b, gets the slot.
        assert!(cancel(store.as_ref(), a).await.expect("cancel a"));
        assert_eq!(admit_queued(store.as_ref()).await.expect("pass"), 1);
        assert_eq!(
            owner(store.as_ref(), c).await.as_deref(),
            Some(SUBMITTED_OWNER)
        );
    });
}

/// A plain cancel of a run that holds the key while its step runs asks
/// its workers to stop it: the run ends once its step has (not before), so
/// the next run of the key starts after the step's process is gone.
#[test]
fn a_cancelled_holder_keeps_its_slot_until_its_step_has_stopped() {
    rt().block_on(async {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let dir = tempfile::tempdir().expect("dir");
        let k = key(OnConflict::Queue);
        let (a, _) = submit(store.as_ref(), dir.path(), "a", &k).await;
        std::fs::write(dir.path().join("go-b"), "").expect("go-b");
        let (b, got) = submit(store.as_ref(), dir.path(), "b", &k).await;
        assert_eq!(got, Admission::Waiting(vec![a.to_string()]));
        let (s1, t1) = worker(&store, "w1");
        wait_until("a's step to start", async || {
            store.tasks(a).await.expect("tasks")[0].status == TaskStatus::Running
        })
        .await;
        assert!(cancel(store.as_ref(), a).await.expect("cancel"));
        assert_eq!(
            status(store.as_ref(), a).await,
            WorkflowStatus::Running,
            "a holder with a running step is left to its worker"
        );
        assert!(store.cancel_requested(a).await.expect("asked"));
        wait_until("b to end", async || {
            status(store.as_ref(), b).await != WorkflowStatus::Running
        })
        .await;
        assert_eq!(status(store.as_ref(), a).await, WorkflowStatus::Cancelled);
        assert_eq!(status(store.as_ref(), b).await, WorkflowStatus::Completed);
        let ta = &store.tasks(a).await.expect("tasks")[0];
        let tb = &store.tasks(b).await.expect("tasks")[0];
        assert_eq!(ta.status, TaskStatus::Cancelled);
        assert!(
            tb.started_at.expect("b started") >= ta.finished_at.expect("a's step ended"),
            "{ta:?} {tb:?}"
        );
        s1.cancel();
        t1.await.expect("w1");
    });
}
