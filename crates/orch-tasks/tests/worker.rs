//! Workers sharing one store: runs submitted to it are claimed, decided
//! (trigger rules, `when`, `${...}`), run and completed by whichever worker
//! holds them; stale claims cannot complete; cancelling a run reaches the
//! worker that runs its step; a stopping worker hands back what it holds.

mod common;

use chrono::Utc;
use common::{process_gone, rt, yaml};
use orch_model::{RecordKind, RunId, RunSettings, Store, TaskStatus, WorkflowStatus};
use orch_tasks::worker::{
    Capacity, Worker, WorkerOptions, WorkerRecord, WorkerSummary, for_workers, list_workers,
    put_worker, read_workers, submit,
};
use orch_tasks::{ActionRegistry, MemoryStore};
use serde_json::{Map, json};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Waits (polling the store) until `cond` holds; panics after a generous
/// deadline, only so that a broken test does not hang.
async fn until<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(60);
    while !cond().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

struct Running {
    stop: CancellationToken,
    task: JoinHandle<WorkerSummary>,
}

impl Running {
    async fn stop(self) -> WorkerSummary {
        self.stop.cancel();
        self.task.await.expect("the worker's task")
    }
}

fn options(id: &str) -> WorkerOptions {
    WorkerOptions {
        id: id.to_owned(),
        slots: 2,
        lease: Duration::from_millis(900),
        poll: Duration::from_millis(10),
        grace: Duration::from_secs(5),
        register_every: Duration::from_millis(50),
        ..WorkerOptions::default()
    }
}

fn start(store: &Arc<dyn Store>, opts: WorkerOptions) -> Running {
    let w = Worker::new(
        store.clone(),
        Arc::new(ActionRegistry::with_builtins()),
        opts,
    )
    .expect("a worker");
    let stop = CancellationToken::new();
    let task = tokio::spawn(w.run(stop.clone()));
    Running { stop, task }
}

async fn submit_yaml(store: &Arc<dyn Store>, text: &str, dir: &std::path::Path) -> RunId {
    let settings = RunSettings {
        work_dir: Some(dir.to_path_buf()),
        ..RunSettings::default()
    };
    submit_with(store, &yaml(text), &settings).await
}

/// Settings of a run whose steps work in `dir`.
fn in_dir(dir: &std::path::Path) -> RunSettings {
    RunSettings {
        work_dir: Some(dir.to_path_buf()),
        ..RunSettings::default()
    }
}

/// Submits `wf` with these settings and no parameters.
async fn submit_with(
    store: &Arc<dyn Store>,
    wf: &orch_model::ValidWorkflow,
    settings: &RunSettings,
) -> RunId {
    submit(
        store.as_ref(),
        wf,
        &ActionRegistry::with_builtins(),
        &Map::new(),
        settings,
        RunId::new(),
    )
    .await
    .expect("submitted")
}

async fn finished(store: &Arc<dyn Store>, run: RunId) -> WorkflowStatus {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = store
            .get_run(run)
            .await
            .expect("get_run")
            .expect("the run")
            .status;
        if status != WorkflowStatus::Running {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for the run to end"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn memory() -> Arc<dyn Store> {
    Arc::new(MemoryStore::new())
}

#[test]
fn two_workers_run_a_diamond_with_results_passed_between_them() {
    rt().block_on(async {
        let store = memory();
        let dir = tempfile::tempdir().expect("dir");
        let run = submit_yaml(
            &store,
            "name: diamond\nsteps:\n  - { name: a, module: core, action: set, parameters: { value: { n: 20 } } }\n  - { name: b, module: core, action: set, parameters: { value: '${a.result.n}' } }\n  - { name: c, module: core, action: set, parameters: { value: 'c saw ${a.result.n}' } }\n  - { name: d, module: core, action: set, parameters: { value: ['${b.result}', '${c.result}'] } }\n",
            dir.path(),
        )
        .await;
        let (w1, w2) = (start(&store, options("w1")), start(&store, options("w2")));
        assert_eq!(finished(&store, run).await, WorkflowStatus::Completed);
        let tasks = store.tasks(run).await.expect("tasks");
        let data = |i: usize| tasks[i].result.as_ref().expect("a result").data.clone();
        assert_eq!(data(1), json!(20), "the number keeps its JSON type");
        assert_eq!(data(2), json!("c saw 20"));
        assert_eq!(data(3), json!([20, "c saw 20"]));
        let (s1, s2) = (w1.stop().await, w2.stop().await);
        assert_eq!(s1.completed + s2.completed, 4);
        assert_eq!(s1.stale + s2.stale, 0);
    });
}

#[test]
fn a_result_reaches_a_step_claimed_by_another_worker() {
    rt().block_on(async {
        let store = memory();
        let dir = tempfile::tempdir().expect("dir");
        // `b` asks for more CPU than the first worker declares: `a` can run
        // on either, `b` only on the second.
        let run = submit_yaml(
            &store,
            "name: pass\nsteps:\n  - { name: a, module: core, action: set, parameters: { value: { msg: hello } } }\n  - { name: b, module: core, action: set, parameters: { value: '${a.result.msg} world' }, resources: { cpu: { cores: 8 } } }\n",
            dir.path(),
        )
        .await;
        let first = start(&store, WorkerOptions { capacity: Capacity::parse("cpu=1").expect("cap"), ..options("first") });
        until("a to complete", || async {
            store.tasks(run).await.expect("tasks")[0].status == TaskStatus::Completed
        })
        .await;
        let second = start(&store, WorkerOptions { capacity: Capacity::parse("cpu=8").expect("cap"), ..options("second") });
        assert_eq!(finished(&store, run).await, WorkflowStatus::Completed);
        let (s1, s2) = (first.stop().await, second.stop().await);
        let tasks = store.tasks(run).await.expect("tasks");
        assert_eq!(
            tasks[1].result.as_ref().expect("b's result").data,
            json!("hello world")
        );
        assert_eq!((s1.completed, s2.completed), (1, 1), "{s1:?} {s2:?}");
        // Which worker finished which step is in the run's events.
        let events = store.events(run, 0).await.expect("events");
        let by = |step: u32| {
            events
                .iter()
                .filter(|e| e.kind == "tasks_finished" && e.task == Some(step))
                .filter_map(|e| e.data["worker"].as_str().map(str::to_owned))
                .next()
        };
        assert_eq!(by(0).as_deref(), Some("first"));
        assert_eq!(by(1).as_deref(), Some("second"));
    });
}

#[test]
fn skipped_and_failing_steps_end_as_a_local_run_would() {
    rt().block_on(async {
        let store = memory();
        let dir = tempfile::tempdir().expect("dir");
        let run = submit_yaml(
            &store,
            "name: rules\nsteps:\n  - { name: bad, module: core, action: fail, parameters: { message: boom } }\n  - { name: after, module: core, action: noop, dependencies: [bad] }\n  - { name: rescue, module: core, action: set, parameters: { value: rescued }, dependencies: [bad], conditions: { run_if: failure } }\n  - { name: never, module: core, action: noop, conditions: { when: { ref: '${params.go}', op: truthy } } }\nparameters: { go: false }\n",
            dir.path(),
        )
        .await;
        let w = start(&store, options("w"));
        assert_eq!(finished(&store, run).await, WorkflowStatus::Failed);
        let s = w.stop().await;
        let tasks = store.tasks(run).await.expect("tasks");
        assert_eq!(tasks[0].status, TaskStatus::Failed);
        assert_eq!(
            tasks[0].result.as_ref().and_then(|r| r.error_message.clone()).as_deref(),
            Some("boom")
        );
        assert_eq!(tasks[1].status, TaskStatus::Skipped);
        assert_eq!(
            tasks[1].note.as_deref(),
            Some("upstream step(s) bad did not succeed")
        );
        assert_eq!(tasks[2].status, TaskStatus::Completed);
        assert_eq!(tasks[3].status, TaskStatus::Skipped);
        assert!(tasks[3].note.as_deref().is_some_and(|n| n.contains("params.go")), "{:?}", tasks[3].note);
        assert_eq!((s.failed, s.skipped, s.completed), (1, 2, 1));
    });
}

#[test]
fn a_200_step_layered_workflow_shared_by_two_workers_runs_every_step_once() {
    rt().block_on(async {
        let store = memory();
        let dir = tempfile::tempdir().expect("dir");
        // W3: 10 layers of 20, each step depending on two of the layer above.
        let mut text = String::from("name: w3\nsteps:\n");
        for layer in 0..10 {
            for k in 0..20 {
                let deps = if layer == 0 {
                    String::new()
                } else {
                    format!(
                        ", dependencies: [s{}_{}, s{}_{}]",
                        layer - 1,
                        (k * 7) % 20,
                        layer - 1,
                        (k * 13 + 5) % 20
                    )
                };
                text.push_str(&format!(
                    "  - {{ name: s{layer}_{k}, module: core, action: noop{deps} }}\n"
                ));
            }
        }
        let run = submit_yaml(&store, &text, dir.path()).await;
        let w1 = start(
            &store,
            WorkerOptions {
                slots: 8,
                ..options("w1")
            },
        );
        let w2 = start(
            &store,
            WorkerOptions {
                slots: 8,
                ..options("w2")
            },
        );
        assert_eq!(finished(&store, run).await, WorkflowStatus::Completed);
        let (s1, s2) = (w1.stop().await, w2.stop().await);
        assert_eq!(s1.completed + s2.completed, 200);
        let tasks = store.tasks(run).await.expect("tasks");
        assert!(
            tasks
                .iter()
                .all(|t| t.status == TaskStatus::Completed && t.attempt == 1)
        );
        // Every step ended after its dependencies did. (Its start time is
        // the `now` its worker read before claiming, which may precede a
        // dependency's commit by another worker; its end is read after the
        // claim, which follows that commit.)
        let wf = yaml(&text);
        for (i, t) in tasks.iter().enumerate() {
            for &d in wf.graph().deps(i as u32) {
                assert!(
                    tasks[d as usize].finished_at <= t.finished_at,
                    "{} before {}",
                    t.name,
                    tasks[d as usize].name
                );
            }
        }
    });
}

#[test]
fn a_stale_claim_cannot_complete_and_its_attempt_is_stopped() {
    rt().block_on(async {
        let store = memory();
        let dir = tempfile::tempdir().expect("dir");
        let run = submit_yaml(
            &store,
            "name: stale\nsteps:\n  - { name: slow, module: core, action: sleep, parameters: { ms: 600000 } }\n",
            dir.path(),
        )
        .await;
        let w = start(&store, WorkerOptions { slots: 1, ..options("w") });
        until("the step to run", || async {
            store.tasks(run).await.expect("tasks")[0].status == TaskStatus::Running
        })
        .await;
        // The worker's lease is taken from it: as if it had been silent past
        // its lease, the store reclaims the task, and another claim takes it.
        let later = Utc::now() + chrono::Duration::hours(1);
        assert_eq!(store.reclaim_expired(later).await.expect("reclaim"), 1);
        let other = store
            .claim(&orch_model::store::ClaimRequest::new("other", 1, Duration::from_secs(3600)), Utc::now())
            .await
            .expect("claim");
        assert_eq!(other.len(), 1);
        assert_eq!(other[0].attempt, 2);
        // The worker's next heartbeat is refused: it stops its attempt and drops it.
        let s = tokio::time::timeout(Duration::from_secs(60), async {
            loop {
                if w.task.is_finished() {
                    break;
                }
                let recs = list_workers(store.as_ref(), Utc::now()).await.expect("workers");
                if recs.iter().any(|r| r.record.id == "w" && r.record.running.is_empty()) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
        s.await.expect("the worker lets go");
        let summary = w.stop().await;
        assert_eq!(summary.stale, 1, "{summary:?}");
        assert_eq!(summary.completed, 0);
        // The reclaimer's attempt is the one that counts.
        let t = &store.tasks(run).await.expect("tasks")[0];
        assert_eq!((t.status, t.attempt), (TaskStatus::Running, 2));
        store
            .complete(&other[0], orch_model::TaskOutcome::Cancelled, Utc::now())
            .await
            .expect("the current claim completes");
    });
}

#[test]
fn cancelling_a_run_reaches_the_worker_and_kills_its_process() {
    rt().block_on(async {
        let store = memory();
        let dir = tempfile::tempdir().expect("dir");
        let run = submit_yaml(
            &store,
            "name: cancel\nsteps:\n  - { name: sleeper, module: shell, action: exec, parameters: { program: sh, args: ['-c', 'echo $$ > sleeper.pid; exec sleep 600'] } }\n  - { name: next, module: core, action: noop, dependencies: [sleeper] }\n",
            dir.path(),
        )
        .await;
        let w = start(&store, WorkerOptions { lease: Duration::from_millis(300), ..options("w") });
        let pid_file = dir.path().join("sleeper.pid");
        let deadline = Instant::now() + Duration::from_secs(60);
        let pid: i32 = loop {
            let text = std::fs::read_to_string(&pid_file).unwrap_or_default();
            if text.ends_with('\n') {
                break text.trim().parse().expect("a pid");
            }
            assert!(Instant::now() < deadline, "timed out waiting for the step's process");
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        assert!(store.request_cancel(run).await.expect("request_cancel"));
        assert_eq!(finished(&store, run).await, WorkflowStatus::Cancelled);
        until("the process to be gone", || async move { process_gone(pid) }).await;
        let tasks = store.tasks(run).await.expect("tasks");
        assert!(tasks.iter().all(|t| t.status == TaskStatus::Cancelled), "{tasks:?}");
        w.stop().await;
    });
}

#[test]
fn a_stopping_worker_hands_back_what_still_runs() {
    rt().block_on(async {
        let store = memory();
        let dir = tempfile::tempdir().expect("dir");
        let run = submit_yaml(
            &store,
            "name: long\nsteps:\n  - { name: slow, module: core, action: sleep, parameters: { ms: 600000 } }\n",
            dir.path(),
        )
        .await;
        let w = start(&store, WorkerOptions { grace: Duration::from_millis(50), ..options("w") });
        until("the step to run", || async {
            store.tasks(run).await.expect("tasks")[0].status == TaskStatus::Running
        })
        .await;
        let s = w.stop().await;
        assert_eq!(s.handed_back, 1, "{s:?}");
        let t = &store.tasks(run).await.expect("tasks")[0];
        assert_eq!(t.status, TaskStatus::Ready, "ready for another worker at once");
        assert!(list_workers(store.as_ref(), Utc::now()).await.expect("workers").is_empty(), "its record is gone");
    });
}

#[test]
fn a_step_bigger_than_the_capacity_is_left_for_a_bigger_worker_and_one_that_fits_runs() {
    rt().block_on(async {
        let store = memory();
        let dir = tempfile::tempdir().expect("dir");
        let run = submit_yaml(
            &store,
            "name: cap\nsteps:\n  - { name: big, module: core, action: noop, resources: { cpu: { cores: 8 } } }\n  - { name: small, module: core, action: noop, resources: { cpu: { cores: 1 } } }\n",
            dir.path(),
        )
        .await;
        let small = start(&store, WorkerOptions { capacity: Capacity::parse("cpu=2").expect("cap"), ..options("small") });
        until("the small step", || async {
            store.tasks(run).await.expect("tasks")[1].status == TaskStatus::Completed
        })
        .await;
        // The big one waits for a worker that can hold it.
        let big = start(&store, WorkerOptions { capacity: Capacity::parse("cpu=16").expect("cap"), ..options("big") });
        assert_eq!(finished(&store, run).await, WorkflowStatus::Completed);
        let (s, b) = (small.stop().await, big.stop().await);
        assert_eq!(s.completed, 1);
        assert_eq!((s.claimed, s.handed_back), (1, 0), "the store never hands the small worker the big step: {s:?}");
        assert_eq!(b.completed, 1);
        assert_eq!(store.tasks(run).await.expect("tasks")[0].attempt, 1, "one attempt: never claimed and handed back");
    });
}

#[test]
fn a_worker_is_listed_with_what_it_runs_and_a_silent_one_is_lost() {
    rt().block_on(async {
        let store = memory();
        let dir = tempfile::tempdir().expect("dir");
        let run = submit_yaml(
            &store,
            "name: seen\nsteps:\n  - { name: slow, module: core, action: sleep, parameters: { ms: 600000 } }\n",
            dir.path(),
        )
        .await;
        let w = start(&store, WorkerOptions { capacity: Capacity::parse("cpu=4,memory=8GiB").expect("cap"), ..options("seen") });
        until("the worker's record to show its step", || async {
            list_workers(store.as_ref(), Utc::now())
                .await
                .expect("workers")
                .iter()
                .any(|s| s.record.running.iter().any(|t| t.step == "slow" && t.run == run))
        })
        .await;
        let now = list_workers(store.as_ref(), Utc::now()).await.expect("workers");
        assert_eq!(now.len(), 1);
        assert_eq!(now[0].state(), "running");
        assert_eq!(now[0].record.slots, 2);
        assert_eq!(now[0].record.capacity["memory"], 8.0);
        // Seen from two lease periods later, it is lost.
        let later = Utc::now() + chrono::Duration::seconds(10);
        let then = list_workers(store.as_ref(), later).await.expect("workers");
        assert_eq!(then[0].state(), "lost");
        assert!(then[0].lost);
        store.request_cancel(run).await.expect("cancel");
        w.stop().await;
    });
}

#[test]
fn a_live_worker_removes_the_records_of_workers_lost_for_longer_than_their_retention() {
    rt().block_on(async {
        let store = memory();
        let now = Utc::now();
        // Workers killed outright: their records stay as they last wrote them.
        let dead = |id: &str, silent: i64, forget_after_ms: Option<u64>| WorkerRecord {
            id: id.to_owned(),
            host: "gone".into(),
            pid: 1,
            slots: 1,
            capacity: std::collections::BTreeMap::new(),
            lease_ms: 1_000,
            running: Vec::new(),
            started_at: now - chrono::Duration::seconds(silent),
            last_seen: now - chrono::Duration::seconds(silent),
            state: "running".into(),
            forget_after_ms,
        };
        // Lost 2 s after its last word, forgotten 3 s later: silent for 10 s, forgotten.
        put_worker(store.as_ref(), &dead("old", 10, Some(3_000)))
            .await
            .expect("put");
        // Kept a minute once lost: lost, still shown.
        put_worker(store.as_ref(), &dead("recent", 10, Some(60_000)))
            .await
            .expect("put");
        // An older version's record (no retention): a minute by default.
        put_worker(store.as_ref(), &dead("unsaid", 30, None))
            .await
            .expect("put");
        let before = read_workers(store.as_ref(), Utc::now())
            .await
            .expect("read");
        assert_eq!(
            before
                .forgotten
                .iter()
                .map(|r| r.id.as_str())
                .collect::<Vec<_>>(),
            vec!["old"]
        );
        assert!(
            before.listed.iter().all(|w| w.lost),
            "the others are lost: {before:?}"
        );
        let w = start(&store, options("live"));
        until("the forgotten record to be removed", || async {
            !store
                .records(RecordKind::Worker)
                .await
                .expect("records")
                .iter()
                .any(|r| r.key == "old")
        })
        .await;
        let after = read_workers(store.as_ref(), Utc::now())
            .await
            .expect("read");
        assert!(after.forgotten.is_empty());
        let mut shown: Vec<(String, bool)> = after
            .listed
            .iter()
            .map(|w| (w.record.id.clone(), w.lost))
            .collect();
        shown.sort();
        assert_eq!(
            shown,
            vec![
                ("live".to_owned(), false),
                ("recent".to_owned(), true),
                ("unsaid".to_owned(), true)
            ],
            "only the forgotten one is removed"
        );
        w.stop().await;
    });
}

#[test]
fn a_store_without_claims_is_refused_with_a_clear_error() {
    #[derive(Debug)]
    struct NoClaims(MemoryStore);
    // The memory store with its claims hidden.
    #[async_trait::async_trait]
    impl Store for NoClaims {
        fn capabilities(&self) -> orch_model::StoreCapabilities {
            orch_model::StoreCapabilities {
                claims: false,
                ..self.0.capabilities()
            }
        }
        async fn create_run(
            &self,
            run: orch_model::NewRun,
            now: chrono::DateTime<Utc>,
        ) -> orch_model::Result<()> {
            self.0.create_run(run, now).await
        }
        async fn get_run(
            &self,
            id: RunId,
        ) -> orch_model::Result<Option<orch_model::store::RunRecord>> {
            self.0.get_run(id).await
        }
        async fn list_runs(&self) -> orch_model::Result<Vec<orch_model::store::RunRecord>> {
            self.0.list_runs().await
        }
        async fn tasks(
            &self,
            run: RunId,
        ) -> orch_model::Result<Vec<orch_model::store::TaskRecord>> {
            self.0.tasks(run).await
        }
        async fn cancel_run(
            &self,
            run: RunId,
            now: chrono::DateTime<Utc>,
        ) -> orch_model::Result<()> {
            self.0.cancel_run(run, now).await
        }
        async fn finish_run(
            &self,
            run: RunId,
            s: WorkflowStatus,
            now: chrono::DateTime<Utc>,
        ) -> orch_model::Result<()> {
            self.0.finish_run(run, s, now).await
        }
        async fn set_owner(&self, run: RunId, owner: Option<String>) -> orch_model::Result<()> {
            self.0.set_owner(run, owner).await
        }
        async fn request_cancel(&self, run: RunId) -> orch_model::Result<bool> {
            self.0.request_cancel(run).await
        }
        async fn start_tasks(
            &self,
            run: RunId,
            t: &[u32],
            w: &str,
            l: Duration,
            now: chrono::DateTime<Utc>,
        ) -> orch_model::Result<Vec<u32>> {
            self.0.start_tasks(run, t, w, l, now).await
        }
        async fn finish_tasks(
            &self,
            run: RunId,
            d: Vec<orch_model::Finished>,
            now: chrono::DateTime<Utc>,
        ) -> orch_model::Result<()> {
            self.0.finish_tasks(run, d, now).await
        }
        async fn requeue_running(&self, run: RunId) -> orch_model::Result<usize> {
            self.0.requeue_running(run).await
        }
        async fn append_events(
            &self,
            run: RunId,
            e: Vec<orch_model::store::StoredEvent>,
        ) -> orch_model::Result<()> {
            self.0.append_events(run, e).await
        }
        async fn events(
            &self,
            run: RunId,
            after: u64,
        ) -> orch_model::Result<Vec<orch_model::store::StoredEvent>> {
            self.0.events(run, after).await
        }
    }
    let store: Arc<dyn Store> = Arc::new(NoClaims(MemoryStore::new()));
    let e = Worker::new(
        store,
        Arc::new(ActionRegistry::with_builtins()),
        WorkerOptions::default(),
    )
    .expect_err("refused");
    assert!(e.to_string().contains("does not hand out claims"), "{e}");
}

/// Counts what runs at once on one worker: `cores` (in thousandths) now and
/// at most, in a test action that sleeps a few milliseconds.
#[derive(Debug, Default)]
struct Usage {
    now: std::sync::atomic::AtomicU64,
    peak: std::sync::atomic::AtomicU64,
    runs: std::sync::atomic::AtomicU64,
}

#[derive(Debug)]
struct Hold(Arc<Usage>);

#[async_trait::async_trait]
impl orch_tasks::Action for Hold {
    async fn run(
        &self,
        params: serde_json::Value,
        _ctx: &orch_tasks::ActionContext,
    ) -> Result<serde_json::Value, orch_tasks::ActionError> {
        use std::sync::atomic::Ordering::SeqCst;
        let milli = (params["cores"].as_f64().unwrap_or(0.0) * 1000.0) as u64;
        let now = self.0.now.fetch_add(milli, SeqCst) + milli;
        self.0.peak.fetch_max(now, SeqCst);
        self.0.runs.fetch_add(1, SeqCst);
        tokio::time::sleep(Duration::from_millis(params["ms"].as_u64().unwrap_or(1))).await;
        self.0.now.fetch_sub(milli, SeqCst);
        Ok(json!(milli))
    }
}

#[test]
fn two_workers_of_different_capacities_never_hold_more_than_they_declared() {
    rt().block_on(async {
        let store = memory();
        let dir = tempfile::tempdir().expect("dir");
        // 120 steps in three layers asking for 0.5 to 4 cores, some with
        // memory; the small worker declares 3 cores (a 4-core step never
        // fits it), the large one 6.
        let mut text = String::from("name: mixed\nsteps:\n");
        let sizes = [0.5, 1.0, 1.5, 2.0, 3.0, 4.0];
        for i in 0..120usize {
            let cores = sizes[(i * 7) % sizes.len()];
            let deps = if i >= 40 { format!(", dependencies: [s{}]", i - 40) } else { String::new() };
            let memory = if i % 5 == 0 { ", memory: { gb: 1 }" } else { "" };
            text.push_str(&format!(
                "  - {{ name: s{i}, module: test, action: hold, parameters: {{ cores: {cores}, ms: {} }}, resources: {{ cpu: {{ cores: {cores} }}{memory} }}{deps} }}\n",
                1 + (i % 4) * 3
            ));
        }
        let wf = yaml(&text);
        let mut submit_reg = ActionRegistry::with_builtins();
        submit_reg.register("test", "hold", Arc::new(Hold(Arc::default())));
        let settings = RunSettings { work_dir: Some(dir.path().to_path_buf()), ..RunSettings::default() };
        let run = submit(store.as_ref(), &wf, &submit_reg, &Map::new(), &settings, RunId::new())
            .await
            .expect("submitted");
        let worker = |id: &str, cap: &str, usage: &Arc<Usage>| {
            let mut reg = ActionRegistry::with_builtins();
            reg.register("test", "hold", Arc::new(Hold(usage.clone())));
            let opts = WorkerOptions { slots: 8, capacity: Capacity::parse(cap).expect("cap"), ..options(id) };
            let w = Worker::new(store.clone(), Arc::new(reg), opts).expect("a worker");
            let stop = CancellationToken::new();
            Running { task: tokio::spawn(w.run(stop.clone())), stop }
        };
        let (small_use, large_use) = (Arc::new(Usage::default()), Arc::new(Usage::default()));
        let small = worker("small", "cpu=3,memory=1", &small_use);
        let large = worker("large", "cpu=6", &large_use);
        assert_eq!(finished(&store, run).await, WorkflowStatus::Completed);
        let (s, l) = (small.stop().await, large.stop().await);
        use std::sync::atomic::Ordering::SeqCst;
        assert_eq!(small_use.runs.load(SeqCst) + large_use.runs.load(SeqCst), 120);
        assert!(small_use.peak.load(SeqCst) <= 3000, "small held {} millicores at once", small_use.peak.load(SeqCst));
        assert!(large_use.peak.load(SeqCst) <= 6000, "large held {} millicores at once", large_use.peak.load(SeqCst));
        assert!(s.completed > 0 && l.completed > 0, "both worked: {s:?} {l:?}");
        assert_eq!(s.handed_back + l.handed_back, 0, "nothing was claimed that did not fit");
    });
}

/// The diamond of the test above, with parameters, a secret-free header and
/// defaults, as the two ways a worker may find a run.
const DIAMOND: &str = "name: diamond\nparameters: { n: 20 }\ndefaults: { max_retries: 2 }\nsteps:\n  - { name: a, module: core, action: set, parameters: { value: { n: '${params.n}' } }, max_retries: 0 }\n  - { name: b, module: core, action: set, parameters: { value: '${a.result.n}' } }\n  - { name: c, module: core, action: set, parameters: { value: 'c saw ${a.result.n}' } }\n  - { name: d, module: core, action: set, parameters: { value: ['${b.result}', '${c.result}'] }, conditions: { run_if: all_done } }\n";

fn diamond_params() -> Map<String, serde_json::Value> {
    let mut params = Map::new();
    params.insert("n".into(), json!(20));
    params
}

#[test]
fn a_submitted_run_is_served_from_its_steps_specs_without_reading_its_definition() {
    rt().block_on(async {
        let store = memory();
        let dir = tempfile::tempdir().expect("dir");
        let settings = in_dir(dir.path());
        let id = RunId::new();
        let (mut run, context) =
            for_workers(id, &yaml(DIAMOND), diamond_params(), &settings).expect("cut");
        assert!(
            run.tasks.iter().all(|t| t.spec.is_some()),
            "every task has its step"
        );
        // A worker that read the whole definition would fail every step.
        run.definition = "not a definition".into();
        store.put_record(context).await.expect("context");
        store.create_run(run, Utc::now()).await.expect("create");
        store
            .set_owner(id, Some(orch_tasks::worker::SUBMITTED_OWNER.into()))
            .await
            .expect("owner");
        let w = start(&store, options("w1"));
        assert_eq!(finished(&store, id).await, WorkflowStatus::Completed);
        let tasks = store.tasks(id).await.expect("tasks");
        let data = |i: usize| tasks[i].result.as_ref().expect("a result").data.clone();
        assert_eq!(data(0), json!({"n": 20}));
        assert_eq!(data(3), json!([20, "c saw 20"]));
        assert_eq!(w.stop().await.completed, 4);
    });
}

#[test]
fn a_run_recorded_without_specs_is_served_from_its_whole_definition() {
    rt().block_on(async {
        let store = memory();
        let dir = tempfile::tempdir().expect("dir");
        let settings = in_dir(dir.path());
        let id = RunId::new();
        // As a process that drove the run records it (no specs, no context).
        let run =
            orch_tasks::worker::new_run(id, &yaml(DIAMOND), diamond_params(), &settings, None)
                .expect("run");
        assert!(run.tasks.iter().all(|t| t.spec.is_none()));
        store.create_run(run, Utc::now()).await.expect("create");
        store
            .set_owner(id, Some(orch_tasks::worker::SUBMITTED_OWNER.into()))
            .await
            .expect("owner");
        let w = start(&store, options("w1"));
        assert_eq!(finished(&store, id).await, WorkflowStatus::Completed);
        let tasks = store.tasks(id).await.expect("tasks");
        assert_eq!(
            tasks[3].result.as_ref().expect("d").data,
            json!([20, "c saw 20"])
        );
        assert_eq!(w.stop().await.completed, 4);
    });
}

#[test]
fn a_runs_timeout_stops_its_step_on_a_worker_and_ends_it_failed() {
    rt().block_on(async {
        let store = memory();
        let dir = tempfile::tempdir().expect("dir");
        let settings = RunSettings {
            run_timeout_ms: Some(1500),
            ..in_dir(dir.path())
        };
        let wf = yaml(
            "name: slow\nsteps:\n  - { name: sleeper, module: shell, action: exec, parameters: { program: sh, args: ['-c', 'echo $$ > sleeper.pid; exec sleep 600'] } }\n  - { name: next, module: core, action: noop, dependencies: [sleeper] }\n  - { name: quick, module: core, action: noop }\n",
        );
        let run = submit_with(&store, &wf, &settings).await;
        let w = start(&store, options("w"));
        let pid = pid_in(dir.path(), "sleeper.pid").await;
        let started = Instant::now();
        assert_eq!(finished(&store, run).await, WorkflowStatus::Failed);
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the timeout ended the run, not the step"
        );
        until("the process to be gone", || async move { process_gone(pid) }).await;
        let tasks = store.tasks(run).await.expect("tasks");
        let states: Vec<TaskStatus> = tasks.iter().map(|t| t.status).collect();
        assert_eq!(
            states,
            vec![TaskStatus::Failed, TaskStatus::Cancelled, TaskStatus::Completed]
        );
        let r = tasks[0].result.as_ref().expect("the step's result");
        assert_eq!(r.error_type.as_deref(), Some("TimeoutError"));
        assert_eq!(
            r.error_message.as_deref(),
            Some("stopped by the run's timeout of 1s500ms")
        );
        w.stop().await;
    });
}

#[test]
fn a_run_past_its_timeout_starts_nothing_more_on_a_worker() {
    rt().block_on(async {
        let store = memory();
        let dir = tempfile::tempdir().expect("dir");
        let settings = RunSettings {
            run_timeout_ms: Some(1),
            ..in_dir(dir.path())
        };
        let wf = yaml(
            "name: late\nsteps:\n  - { name: a, module: shell, action: exec, parameters: { program: touch, args: [ran] } }\n",
        );
        let run = submit_with(&store, &wf, &settings).await;
        // No worker until the timeout has passed.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let w = start(&store, options("w"));
        assert_eq!(finished(&store, run).await, WorkflowStatus::Failed);
        let tasks = store.tasks(run).await.expect("tasks");
        assert_eq!(tasks[0].status, TaskStatus::Cancelled);
        assert!(!dir.path().join("ran").exists(), "the step did not run");
        w.stop().await;
    });
}

#[test]
fn two_workers_run_no_more_of_a_run_at_once_than_its_max_parallel() {
    rt().block_on(async {
        let store = memory();
        let dir = tempfile::tempdir().expect("dir");
        let settings = RunSettings {
            max_parallel: Some(2),
            ..in_dir(dir.path())
        };
        let mut text = "name: limited\nsteps:\n".to_owned();
        for i in 0..8 {
            text.push_str(&format!(
                "  - {{ name: s{i}, module: shell, action: exec, parameters: {{ program: sleep, args: ['0.1'] }} }}\n"
            ));
        }
        let run = submit_with(&store, &yaml(&text), &settings).await;
        let (w1, w2) = (start(&store, options("w1")), start(&store, options("w2")));
        assert_eq!(finished(&store, run).await, WorkflowStatus::Completed);
        let tasks = store.tasks(run).await.expect("tasks");
        // The most steps whose [claimed, completed] spans overlap.
        let mut edges: Vec<(chrono::DateTime<Utc>, i32)> = Vec::new();
        for t in &tasks {
            edges.push((t.started_at.expect("started"), 1));
            edges.push((t.finished_at.expect("finished"), -1));
        }
        // At one instant an end comes before a start (a slot freed, then taken).
        edges.sort();
        let (mut now, mut most) = (0, 0);
        for (_, d) in edges {
            now += d;
            most = most.max(now);
        }
        assert_eq!(most, 2, "{tasks:?}");
        let (s1, s2) = (w1.stop().await, w2.stop().await);
        assert_eq!(s1.completed + s2.completed, 8);
    });
}

#[test]
fn a_cache_step_on_a_worker_is_served_from_the_stores_cache_the_second_time() {
    rt().block_on(async {
        let store = memory();
        let dir = tempfile::tempdir().expect("dir");
        let text = "name: cached\nsteps:\n  - { name: count, module: shell, action: script, parameters: { script: 'echo x >> runs.txt; wc -l < runs.txt' }, cache: true }\n  - { name: after, module: core, action: set, parameters: { value: '${count.result.stdout}' }, dependencies: [count] }\n";
        let submit_with = |no_cache: bool| {
            let store = store.clone();
            let dir = dir.path().to_path_buf();
            async move {
                let settings = RunSettings {
                    work_dir: Some(dir),
                    no_cache,
                    ..RunSettings::default()
                };
                submit_with(&store, &yaml(text), &settings).await
            }
        };
        let w = start(&store, options("w"));
        let lines = || {
            std::fs::read_to_string(dir.path().join("runs.txt"))
                .unwrap_or_default()
                .lines()
                .count()
        };
        let first = submit_with(false).await;
        assert_eq!(finished(&store, first).await, WorkflowStatus::Completed);
        assert_eq!(lines(), 1);
        let second = submit_with(false).await;
        assert_eq!(finished(&store, second).await, WorkflowStatus::Completed);
        assert_eq!(lines(), 1, "the second run was served from the cache");
        let tasks = store.tasks(second).await.expect("tasks");
        let r = tasks[0].result.as_ref().expect("a result");
        assert!(r.cached, "{r:?}");
        assert_eq!(
            tasks[1].result.as_ref().expect("after").data,
            json!("1\n"),
            "the cached result reaches the dependent"
        );
        // --no-cache: it runs again.
        let third = submit_with(true).await;
        assert_eq!(finished(&store, third).await, WorkflowStatus::Completed);
        assert_eq!(lines(), 2);
        w.stop().await;
    });
}

/// Waits for the pid a step wrote to `file` in `dir`.
async fn pid_in(dir: &std::path::Path, file: &str) -> i32 {
    let path = dir.join(file);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        if text.ends_with('\n') {
            return text.trim().parse().expect("a pid");
        }
        assert!(Instant::now() < deadline, "timed out waiting for {file}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

const WITH_FINALLY: &str = "name: graceful\ncancel_grace: 20s\nsteps:\n  - { name: main, module: shell, action: exec, parameters: { program: sh, args: ['-c', 'echo $$ > main.pid; exec sleep 600'] } }\n  - { name: next, module: core, action: noop, dependencies: [main] }\n  - { name: always, module: shell, action: exec, parameters: { program: touch, args: [always.txt] }, dependencies: [main], conditions: { run_if: always } }\nfinally:\n  - { name: cleanup, module: shell, action: exec, parameters: { program: touch, args: [cleaned.txt] } }\n";

#[test]
fn a_cancelled_run_on_workers_still_runs_its_finally_and_always_steps() {
    rt().block_on(async {
        let store = memory();
        let dir = tempfile::tempdir().expect("dir");
        let run = submit_yaml(&store, WITH_FINALLY, dir.path()).await;
        let (w1, w2) = (start(&store, options("w1")), start(&store, options("w2")));
        let pid = pid_in(dir.path(), "main.pid").await;
        assert!(
            orch_tasks::worker::cancel(store.as_ref(), run)
                .await
                .expect("cancel")
        );
        assert_eq!(finished(&store, run).await, WorkflowStatus::Cancelled);
        until(
            "the process to be gone",
            || async move { process_gone(pid) },
        )
        .await;
        let tasks = store.tasks(run).await.expect("tasks");
        let states: Vec<(&str, TaskStatus)> =
            tasks.iter().map(|t| (t.name.as_str(), t.status)).collect();
        assert_eq!(
            states,
            vec![
                ("main", TaskStatus::Cancelled),
                ("next", TaskStatus::Cancelled),
                ("always", TaskStatus::Completed),
                ("cleanup", TaskStatus::Completed),
            ]
        );
        assert!(dir.path().join("always.txt").exists());
        assert!(dir.path().join("cleaned.txt").exists());
        w1.stop().await;
        w2.stop().await;
    });
}

#[test]
fn a_run_timeout_on_workers_fails_the_run_and_runs_its_finally_steps() {
    rt().block_on(async {
        let store = memory();
        let dir = tempfile::tempdir().expect("dir");
        let settings = RunSettings {
            run_timeout_ms: Some(1000),
            ..in_dir(dir.path())
        };
        let run = submit_with(&store, &yaml(WITH_FINALLY), &settings).await;
        let w = start(&store, options("w"));
        assert_eq!(finished(&store, run).await, WorkflowStatus::Failed);
        let tasks = store.tasks(run).await.expect("tasks");
        let states: Vec<TaskStatus> = tasks.iter().map(|t| t.status).collect();
        assert_eq!(
            states,
            vec![
                TaskStatus::Failed,
                TaskStatus::Cancelled,
                TaskStatus::Completed,
                TaskStatus::Completed
            ]
        );
        assert_eq!(
            tasks[0]
                .result
                .as_ref()
                .and_then(|r| r.error_type.as_deref()),
            Some("TimeoutError")
        );
        assert!(dir.path().join("cleaned.txt").exists());
        w.stop().await;
    });
}

#[test]
fn a_finally_step_on_a_worker_is_stopped_when_the_cancel_grace_ends() {
    rt().block_on(async {
        let store = memory();
        let dir = tempfile::tempdir().expect("dir");
        let run = submit_yaml(
            &store,
            "name: short-grace\ncancel_grace: 1s\nsteps:\n  - { name: main, module: shell, action: exec, parameters: { program: sh, args: ['-c', 'echo $$ > main.pid; exec sleep 600'] } }\nfinally:\n  - { name: slow_cleanup, module: shell, action: exec, parameters: { program: sh, args: ['-c', 'echo $$ > cleanup.pid; exec sleep 600'] } }\n",
            dir.path(),
        )
        .await;
        let w = start(&store, options("w"));
        pid_in(dir.path(), "main.pid").await;
        let asked = Instant::now();
        assert!(orch_tasks::worker::cancel(store.as_ref(), run).await.expect("cancel"));
        let cleanup = pid_in(dir.path(), "cleanup.pid").await;
        assert_eq!(finished(&store, run).await, WorkflowStatus::Cancelled);
        assert!(
            asked.elapsed() < Duration::from_secs(30),
            "the grace of 1s, not the step, ended the run"
        );
        until("the cleanup's process to be gone", || async move { process_gone(cleanup) }).await;
        let tasks = store.tasks(run).await.expect("tasks");
        assert!(tasks.iter().all(|t| t.status == TaskStatus::Cancelled), "{tasks:?}");
        w.stop().await;
    });
}
