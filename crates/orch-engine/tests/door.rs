//! The one door: a run started with `OrchestrationEngine::run` through a
//! store defined here, and the same events seen by the run's handle, the
//! engine's handlers and the store's journal.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use orch_engine::{Event, OrchestrationEngine, RunRequest, RunTarget};
use orch_model::store::{
    CacheEntry, Claim, Finished, NewRun, Record, RecordKind, RunRecord, StoreCapabilities,
    StoredEvent, TakeOver, TaskOutcome, TaskRecord,
};
use orch_model::{ExecutionMode, RunId, Store, TaskStatus, Workflow, WorkflowStatus, WorkflowStep};
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

type Result<T> = orch_model::Result<T>;

/// A store written outside the store crates: it counts every call and
/// hands it to an in-memory store.
#[derive(Debug, Default)]
struct Counting {
    inner: orch_tasks::MemoryStore,
    calls: Mutex<BTreeMap<&'static str, usize>>,
}

impl Counting {
    fn count(&self, name: &'static str) {
        *self.calls.lock().expect("lock").entry(name).or_insert(0) += 1;
    }
    fn calls(&self, name: &str) -> usize {
        self.calls
            .lock()
            .expect("lock")
            .get(name)
            .copied()
            .unwrap_or(0)
    }
}

#[async_trait]
impl Store for Counting {
    fn capabilities(&self) -> StoreCapabilities {
        self.inner.capabilities()
    }
    async fn create_run(&self, run: NewRun, now: DateTime<Utc>) -> Result<()> {
        self.count("create_run");
        self.inner.create_run(run, now).await
    }
    async fn get_run(&self, id: RunId) -> Result<Option<RunRecord>> {
        self.count("get_run");
        self.inner.get_run(id).await
    }
    async fn list_runs(&self) -> Result<Vec<RunRecord>> {
        self.count("list_runs");
        self.inner.list_runs().await
    }
    async fn tasks(&self, run: RunId) -> Result<Vec<TaskRecord>> {
        self.count("tasks");
        self.inner.tasks(run).await
    }
    async fn claim(
        &self,
        req: &orch_model::store::ClaimRequest,
        now: DateTime<Utc>,
    ) -> Result<Vec<Claim>> {
        self.count("claim");
        self.inner.claim(req, now).await
    }
    async fn heartbeat(&self, claim: &Claim, lease: Duration, now: DateTime<Utc>) -> Result<bool> {
        self.count("heartbeat");
        self.inner.heartbeat(claim, lease, now).await
    }
    async fn complete(
        &self,
        claim: &Claim,
        outcome: TaskOutcome,
        now: DateTime<Utc>,
    ) -> Result<()> {
        self.count("complete");
        self.inner.complete(claim, outcome, now).await
    }
    async fn reclaim_expired(&self, now: DateTime<Utc>) -> Result<usize> {
        self.count("reclaim_expired");
        self.inner.reclaim_expired(now).await
    }
    async fn cancel_run(&self, run: RunId, now: DateTime<Utc>) -> Result<()> {
        self.count("cancel_run");
        self.inner.cancel_run(run, now).await
    }
    async fn append_events(&self, run: RunId, events: Vec<StoredEvent>) -> Result<()> {
        self.count("append_events");
        self.inner.append_events(run, events).await
    }
    async fn start_tasks(
        &self,
        run: RunId,
        tasks: &[u32],
        worker: &str,
        lease: Duration,
        now: DateTime<Utc>,
    ) -> Result<Vec<u32>> {
        self.count("start_tasks");
        self.inner.start_tasks(run, tasks, worker, lease, now).await
    }
    async fn finish_tasks(
        &self,
        run: RunId,
        done: Vec<Finished>,
        now: DateTime<Utc>,
    ) -> Result<()> {
        self.count("finish_tasks");
        self.inner.finish_tasks(run, done, now).await
    }
    async fn requeue_running(&self, run: RunId) -> Result<usize> {
        self.count("requeue_running");
        self.inner.requeue_running(run).await
    }
    async fn finish_run(
        &self,
        run: RunId,
        status: WorkflowStatus,
        now: DateTime<Utc>,
    ) -> Result<()> {
        self.count("finish_run");
        self.inner.finish_run(run, status, now).await
    }
    async fn set_owner(&self, run: RunId, owner: Option<String>) -> Result<()> {
        self.count("set_owner");
        self.inner.set_owner(run, owner).await
    }
    async fn take_over(&self, run: RunId, expected: Option<&str>, owner: &str) -> Result<TakeOver> {
        self.count("take_over");
        self.inner.take_over(run, expected, owner).await
    }
    async fn request_cancel(&self, run: RunId) -> Result<bool> {
        self.count("request_cancel");
        self.inner.request_cancel(run).await
    }
    async fn events(&self, run: RunId, after: u64) -> Result<Vec<StoredEvent>> {
        self.count("events");
        self.inner.events(run, after).await
    }
    async fn put_record(&self, record: Record) -> Result<()> {
        self.count("put_record");
        self.inner.put_record(record).await
    }
    async fn remove_record(&self, kind: RecordKind, key: &str) -> Result<bool> {
        self.count("remove_record");
        self.inner.remove_record(kind, key).await
    }
    async fn records(&self, kind: RecordKind) -> Result<Vec<Record>> {
        self.count("records");
        self.inner.records(kind).await
    }
    async fn cache_get(&self, key: &str) -> Result<Option<CacheEntry>> {
        self.count("cache_get");
        self.inner.cache_get(key).await
    }
    async fn cache_put(&self, entry: CacheEntry) -> Result<()> {
        self.count("cache_put");
        self.inner.cache_put(entry).await
    }
    async fn cache_list(&self) -> Result<Vec<CacheEntry>> {
        self.count("cache_list");
        self.inner.cache_list().await
    }
    async fn cache_clear(&self) -> Result<usize> {
        self.count("cache_clear");
        self.inner.cache_clear().await
    }
}

fn workflow(n: usize) -> Workflow {
    let mut w = Workflow::new("door", "");
    for i in 0..n {
        let mut s = WorkflowStep::new(format!("s{i}"), "core", "set").param("value", json!(i));
        if i >= 2 {
            s = s.after(format!("s{}", i - 2));
        }
        w = w.step(s);
    }
    w
}

#[test]
fn a_store_defined_outside_the_store_crates_records_a_run_started_through_the_engine() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(Counting::default());
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let engine = rt.block_on(async {
        OrchestrationEngine::builder()
            .home(dir.path())
            .work_dir(dir.path())
            .store(store.clone())
            .build()
            .expect("engine")
    });
    let report = rt.block_on(async {
        let handle = engine
            .run(RunRequest::new(RunTarget::Workflow(Box::new(workflow(6)))))
            .await
            .expect("started");
        handle.report().await.expect("report")
    });
    assert_eq!(report.status, WorkflowStatus::Completed);
    assert_eq!(store.calls("create_run"), 1, "the run was recorded once");
    assert_eq!(store.calls("finish_run"), 1, "and finished once");
    let recorded = rt
        .block_on(store.inner.get_run(report.run_id))
        .expect("read")
        .expect("the run is in the store defined here");
    assert_eq!(recorded.status, WorkflowStatus::Completed);
    let tasks = rt
        .block_on(store.inner.tasks(report.run_id))
        .expect("tasks");
    assert!(tasks.iter().all(|t| t.status == TaskStatus::Completed));
    // The engine counted the run: metrics see every run through the door.
    let m = engine.get_metrics();
    assert_eq!(m.workflows_executed, 1);
    assert_eq!(m.tasks_completed, 6);
}

#[test]
fn the_handle_the_engine_and_the_journal_see_the_same_events_in_the_same_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(Counting::default());
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let engine = rt.block_on(async {
        OrchestrationEngine::builder()
            .home(dir.path())
            .work_dir(dir.path())
            .store(store.clone())
            .build()
            .expect("engine")
    });
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let s2 = seen.clone();
    engine
        .register_handler("task_completed", move |e| {
            if let orch_engine::EngineEvent::TaskCompleted { task, .. } = e {
                s2.lock().expect("lock").push(task.clone());
            }
        })
        .expect("handler");
    let (report, handle_order) = rt.block_on(async {
        let mut req = RunRequest::new(RunTarget::Workflow(Box::new(workflow(40)))).with_events();
        req.mode = Some(ExecutionMode::Parallel);
        req.max_parallel = Some(3);
        let mut handle = engine.run(req).await.expect("started");
        let mut rx = handle.events().expect("events were asked for");
        let report = handle.report().await.expect("report");
        let mut order = Vec::new();
        while let Some(e) = rx.recv().await {
            if let Event::TaskSucceeded { name, .. } = e {
                order.push(name.to_string());
            }
        }
        (report, order)
    });
    assert_eq!(report.status, WorkflowStatus::Completed);
    assert_eq!(handle_order.len(), 40);
    assert_eq!(*seen.lock().expect("lock"), handle_order, "engine handlers");
    // The journal: the steps' final states in the order they were committed.
    let stored = rt
        .block_on(store.inner.events(report.run_id, 0))
        .expect("events");
    let mut journal_order = Vec::new();
    for p in stored.iter().filter_map(orch_model::store::Progress::read) {
        if let orch_model::store::Progress::Finished(list) = p {
            for (i, _, _) in list {
                journal_order.push(report.steps[i as usize].name.to_string());
            }
        }
    }
    assert_eq!(journal_order, handle_order, "the store's journal");
}

#[test]
fn an_enclosing_project_counts_only_when_the_user_owns_it() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let meta = dir.path().join(".orch");
    std::fs::create_dir_all(dir.path().join("sub/deeper")).expect("mkdir");
    std::fs::create_dir_all(&meta).expect("mkdir");
    let project = orch_model::Project {
        name: "planted".into(),
        path: dir.path().display().to_string(),
        ..orch_model::Project::default()
    };
    std::fs::write(
        meta.join("project.json"),
        serde_json::to_string(&project).expect("json"),
    )
    .expect("write");
    let owner = std::fs::metadata(&meta).expect("meta").uid();
    let below = dir.path().join("sub/deeper");
    let found =
        orch_engine::enclosing_project_for(&below, Some(owner)).expect("the owner's project");
    assert_eq!(found.0, dir.path());
    assert_eq!(found.1.name, "planted");
    assert!(
        orch_engine::enclosing_project_for(&below, Some(owner.wrapping_add(1))).is_none(),
        "another user's project directory must not be used"
    );
}

/// A run started from another runtime (a server answering on its own
/// thread) is spawned on the runtime the engine was given, and goes on when
/// the caller's runtime ends; without it, the caller's runtime holds it.
#[test]
fn runs_started_from_another_runtime_go_on_the_runtime_the_engine_was_given() {
    let dir = tempfile::tempdir().expect("tempdir");
    let main = tokio::runtime::Runtime::new().expect("runtime");
    let engine = main.block_on(async {
        OrchestrationEngine::builder()
            .home(dir.path())
            .work_dir(dir.path())
            .store(Arc::new(orch_tasks::MemoryStore::default()))
            .build()
            .expect("engine")
    });
    let slow = || {
        Workflow::new("slow", "")
            .step(WorkflowStep::new("z", "core", "sleep").param("ms", json!(300)))
    };
    // Started on a runtime that ends at once.
    let start = |engine: &OrchestrationEngine| {
        let e = engine.clone();
        let wf = slow();
        std::thread::spawn(move || {
            let api = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            api.block_on(e.run(RunRequest::new(RunTarget::Workflow(Box::new(wf)))))
                .expect("started")
            // `api` ends here, with every task spawned on it.
        })
        .join()
        .expect("thread")
    };
    let orphan = start(&engine);
    assert!(
        main.block_on(orphan.report()).is_err(),
        "without a runtime given, the run lived on the caller's, which ended"
    );
    assert!(engine.spawn_runs_on(main.handle().clone()));
    assert!(!engine.spawn_runs_on(main.handle().clone()), "set once");
    let handle = start(&engine);
    let report = main.block_on(handle.report()).expect("report");
    assert_eq!(report.status, WorkflowStatus::Completed);
}
