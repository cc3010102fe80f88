//! Many workers on one database: concurrent claims, fencing after a
//! reclaim, wake-ups by LISTEN/NOTIFY, large runs, other runtimes.

mod common;

use chrono::{Duration as Span, Utc};
use common::{Schema, rt, wide};
use orch_model::store::ClaimRequest;
use orch_model::testkit::block_on;
use orch_model::{
    Claim, NewRun, NewTask, OrchestrationError, RunId, Store, TaskOutcome, TaskPriority,
    TaskResult, TaskStatus, WorkflowStatus,
};
use serde_json::json;
use std::collections::HashMap;
use std::time::{Duration, Instant};

const LEASE: Duration = Duration::from_secs(60);

fn ok(v: serde_json::Value) -> TaskOutcome {
    TaskOutcome::Succeeded {
        result: TaskResult::ok(v),
    }
}

/// 2,000 tasks, the second thousand each waiting for one of the first:
/// four workers, each with a store (a pool) of its own like processes,
/// claim batches of 8 and complete them. Every task is claimed exactly
/// once, at attempt 1, and the run completes.
#[test]
fn four_workers_claim_every_task_exactly_once() {
    let schema = Schema::new();
    let id = RunId::new();
    let mut run = wide(id, 2000);
    for i in 1000..2000 {
        run.tasks[i].deps = vec![(i - 1000) as u32];
    }
    let creator = schema.open();
    block_on(creator.create_run(run, Utc::now())).expect("create");
    let workers: Vec<_> = (0..4)
        .map(|w| {
            let store = schema.open();
            std::thread::spawn(move || {
                let mut seen = Vec::new();
                let name = format!("w{w}");
                loop {
                    let claims =
                        block_on(store.claim(&ClaimRequest::new(&name, 8, LEASE), Utc::now()))
                            .expect("claim");
                    if claims.is_empty() {
                        let run = block_on(store.get_run(id)).expect("get").expect("run");
                        if run.status != WorkflowStatus::Running {
                            return seen;
                        }
                        block_on(store.wait_for_work(Duration::from_millis(50))).expect("wait");
                        continue;
                    }
                    for c in claims {
                        block_on(store.complete(&c, ok(json!(c.index)), Utc::now()))
                            .expect("a live claim completes");
                        seen.push((c.index, c.attempt, c.worker));
                    }
                }
            })
        })
        .collect();
    let mut claimed: HashMap<u32, usize> = HashMap::new();
    let mut per_worker = Vec::new();
    for w in workers {
        let seen = w.join().expect("worker");
        per_worker.push(seen.len());
        for (index, attempt, _) in seen {
            assert_eq!(attempt, 1, "no task was claimed twice");
            *claimed.entry(index).or_default() += 1;
        }
    }
    assert_eq!(claimed.len(), 2000, "every task was claimed");
    assert!(claimed.values().all(|&n| n == 1), "none twice");
    assert_eq!(per_worker.iter().sum::<usize>(), 2000, "{per_worker:?}");
    let run = block_on(creator.get_run(id)).expect("get").expect("run");
    assert_eq!(run.status, WorkflowStatus::Completed);
    assert_eq!(run.tasks.completed, 2000);
    let tasks = block_on(creator.tasks(id)).expect("tasks");
    assert!(
        tasks
            .iter()
            .all(|t| t.status == TaskStatus::Completed && t.attempt == 1)
    );
    assert_eq!(
        tasks[1500].result.as_ref().map(|r| r.data.clone()),
        Some(json!(1500))
    );
}

/// A claim whose lease lapsed and was reclaimed is fenced off: its
/// heartbeat returns false and its completion is `InvalidState`, changing
/// nothing; the new claim's result stands.
#[test]
fn a_stale_claim_after_reclaim_cannot_complete_or_heartbeat() {
    let schema = Schema::new();
    let (a, b) = (schema.open(), schema.open());
    let id = RunId::new();
    let t = Utc::now();
    block_on(a.create_run(wide(id, 1), t)).expect("create");
    let old: Claim = block_on(a.claim(&ClaimRequest::new("slow", 1, Duration::from_secs(1)), t))
        .expect("claim")
        .pop()
        .expect("one");
    assert_eq!(
        block_on(b.reclaim_expired(t + Span::seconds(2))).expect("reclaim"),
        1
    );
    let new = block_on(b.claim(&ClaimRequest::new("fast", 1, LEASE), t + Span::seconds(3)))
        .expect("claim")
        .pop()
        .expect("again");
    assert_eq!((new.index, new.attempt), (0, 2));
    assert!(!block_on(a.heartbeat(&old, LEASE, t + Span::seconds(4))).expect("heartbeat"));
    match block_on(a.complete(&old, ok(json!("late")), t + Span::seconds(4))) {
        Err(OrchestrationError::InvalidState { message }) => {
            assert!(message.contains("no longer current"), "{message}")
        }
        other => panic!("a stale completion must be InvalidState, got {other:?}"),
    }
    let task = &block_on(a.tasks(id)).expect("tasks")[0];
    assert_eq!(
        (
            task.status,
            task.attempt,
            task.lease.as_ref().map(|l| l.worker.as_str())
        ),
        (TaskStatus::Running, 2, Some("fast")),
        "the stale claim changed nothing"
    );
    block_on(b.complete(&new, ok(json!("fresh")), t + Span::seconds(5))).expect("complete");
    let task = &block_on(a.tasks(id)).expect("tasks")[0];
    assert_eq!(
        task.result.as_ref().map(|r| r.data.clone()),
        Some(json!("fresh"))
    );
    assert!(block_on(a.complete(&old, ok(json!("later")), t + Span::seconds(6))).is_err());
    assert_eq!(
        block_on(a.get_run(id)).expect("get").expect("run").status,
        WorkflowStatus::Completed
    );
}

/// Takes every wake-up the store holds.
fn drain(store: &orch_store_postgres::PostgresStore) {
    while block_on(store.wait_for_work(Duration::ZERO)).expect("wait") {}
}

/// A worker waiting for work is woken by another process's new run and by
/// a completion that releases a dependent; with nothing new, it waits for
/// the timeout and says so.
#[test]
fn listen_notify_wakes_a_waiting_worker() {
    let schema = Schema::new();
    let (worker, other) = (schema.open(), schema.open());
    block_on(worker.listen()).expect("listen");
    drain(&worker);
    let started = Instant::now();
    assert!(
        !block_on(worker.wait_for_work(Duration::from_millis(300))).expect("wait"),
        "nothing new: the timeout passes"
    );
    assert!(started.elapsed() >= Duration::from_millis(250));
    // A new run from another store wakes the waiter.
    let id = RunId::new();
    let mut run = wide(id, 2);
    run.tasks[1].deps = vec![0];
    let waiter = std::thread::spawn(move || {
        let started = Instant::now();
        let woken = block_on(worker.wait_for_work(Duration::from_secs(30))).expect("wait");
        (woken, started.elapsed(), worker)
    });
    std::thread::sleep(Duration::from_millis(300));
    block_on(other.create_run(run, Utc::now())).expect("create");
    let (woken, took, worker) = waiter.join().expect("waiter");
    assert!(woken, "woken by the notification");
    assert!(
        took < Duration::from_secs(10),
        "woken at once, not by the timeout: {took:?}"
    );
    // A completion that releases the dependent wakes it again.
    let c = block_on(worker.claim(&ClaimRequest::new("w", 1, LEASE), Utc::now()))
        .expect("claim")
        .pop()
        .expect("t0");
    drain(&worker);
    let waiter = std::thread::spawn(move || {
        let woken = block_on(worker.wait_for_work(Duration::from_secs(30))).expect("wait");
        (woken, worker)
    });
    std::thread::sleep(Duration::from_millis(300));
    block_on(other.complete(&c, ok(json!(0)), Utc::now())).expect("complete");
    let (woken, worker) = waiter.join().expect("waiter");
    assert!(woken, "the released dependent woke the worker");
    let next =
        block_on(worker.claim(&ClaimRequest::new("w", 1, LEASE), Utc::now())).expect("claim");
    assert_eq!(next.iter().map(|c| c.index).collect::<Vec<_>>(), [1]);
}

/// Another schema's notifications do not wake a store.
#[test]
fn other_schemas_do_not_wake_a_store() {
    let (mine, theirs) = (Schema::new(), Schema::new());
    let (worker, other) = (mine.open(), theirs.open());
    block_on(worker.listen()).expect("listen");
    drain(&worker);
    block_on(other.create_run(wide(RunId::new(), 1), Utc::now())).expect("create");
    assert!(!block_on(worker.wait_for_work(Duration::from_millis(500))).expect("wait"));
}

/// The store works from inside another Tokio runtime (opened, used, waited
/// on and dropped there) without panicking.
#[test]
fn the_store_runs_inside_another_tokio_runtime() {
    let schema = Schema::new();
    let runtime = rt();
    runtime.block_on(async {
        let store = schema.open();
        let id = RunId::new();
        store
            .create_run(wide(id, 3), Utc::now())
            .await
            .expect("create");
        let claims = store
            .claim(&ClaimRequest::new("w", 10, LEASE), Utc::now())
            .await
            .expect("claim");
        assert_eq!(claims.len(), 3);
        store.listen().await.expect("listen");
        while store.wait_for_work(Duration::ZERO).await.expect("wait") {}
        assert!(
            !store
                .wait_for_work(Duration::from_millis(20))
                .await
                .expect("wait"),
            "nothing new"
        );
        drop(store);
    });
    drop(runtime);
}

/// 100,000 tasks (layers of 1,000, each task waiting for two of the layer
/// before) are created in one call and read back, counted; a batch of
/// claims and completions releases the next layer.
#[test]
fn a_run_of_100k_tasks_is_created_in_batches() {
    let schema = Schema::new();
    let store = schema.open();
    let id = RunId::new();
    let tasks = (0..100_000u32)
        .map(|i| NewTask {
            name: format!("s{i}"),
            deps: if i < 1000 {
                vec![]
            } else {
                vec![i - 1000, (i - 1000 + 1) % 1000 + (i / 1000 - 1) * 1000]
            },
            priority: TaskPriority::Normal,
            needs: Default::default(),
            spec: None,
        })
        .collect();
    let run = NewRun {
        id,
        workflow: "layers".into(),
        definition: "{}".into(),
        params: Default::default(),
        tasks,
        parent: None,
        owner: None,
        max_parallel: None,
    };
    block_on(store.create_run(run, Utc::now())).expect("create 100k tasks");
    let counts = block_on(store.get_run(id))
        .expect("get")
        .expect("run")
        .tasks;
    assert_eq!((counts.ready, counts.pending), (1000, 99_000));
    let claims =
        block_on(store.claim(&ClaimRequest::new("w", 1000, LEASE), Utc::now())).expect("claim");
    assert_eq!(claims.len(), 1000);
    assert!(claims.iter().all(|c| c.index < 1000), "the first layer");
    let done = claims
        .iter()
        .map(|c| orch_model::Finished {
            index: c.index,
            attempt: c.attempt,
            retries: 0,
            outcome: ok(json!(null)),
        })
        .collect();
    block_on(store.finish_tasks(id, done, Utc::now())).expect("finish a layer");
    let counts = block_on(store.get_run(id))
        .expect("get")
        .expect("run")
        .tasks;
    assert_eq!(
        (counts.completed, counts.ready, counts.pending),
        (1000, 1000, 98_000)
    );
}

/// A run with `max_parallel: 3` shared by four claimers, each with a pool
/// of its own, claiming batches of 8 at once: never more than three of its
/// tasks are held together (a claimer counts a task from its claim until
/// just before its completion, so the count is never above the store's),
/// and every task runs once.
#[test]
fn concurrent_claimers_never_exceed_a_runs_max_parallel() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let schema = Schema::new();
    let id = RunId::new();
    let mut run = wide(id, 200);
    run.max_parallel = Some(3);
    let creator = schema.open();
    block_on(creator.create_run(run, Utc::now())).expect("create");
    let held = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..4)
        .map(|w| {
            let store = schema.open();
            let (held, most) = (held.clone(), most.clone());
            std::thread::spawn(move || {
                let name = format!("w{w}");
                let mut done = 0;
                loop {
                    let claims =
                        block_on(store.claim(&ClaimRequest::new(&name, 8, LEASE), Utc::now()))
                            .expect("claim");
                    if claims.is_empty() {
                        let run = block_on(store.get_run(id)).expect("get").expect("run");
                        if run.status != WorkflowStatus::Running {
                            return done;
                        }
                        std::thread::sleep(Duration::from_millis(2));
                        continue;
                    }
                    let now_held = held.fetch_add(claims.len(), Ordering::SeqCst) + claims.len();
                    most.fetch_max(now_held, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(3));
                    for c in claims {
                        held.fetch_sub(1, Ordering::SeqCst);
                        block_on(store.complete(&c, ok(json!(c.index)), Utc::now()))
                            .expect("a live claim completes");
                        done += 1;
                    }
                }
            })
        })
        .collect();
    let done: usize = workers.into_iter().map(|w| w.join().expect("worker")).sum();
    assert_eq!(done, 200, "every task ran once");
    let most = most.load(Ordering::SeqCst);
    assert!(most <= 3, "{most} tasks of the run were held at once");
    assert!(most >= 2, "the claimers did share the run ({most} at most)");
    let run = block_on(creator.get_run(id)).expect("get").expect("run");
    assert_eq!(run.status, WorkflowStatus::Completed);
}
