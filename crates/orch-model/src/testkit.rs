//! The `Store` conformance suite (feature `testkit`): every backend runs it unchanged.
//!
//! Each check takes a fresh, empty store and panics with a message naming
//! the broken rule. Times are passed explicitly, so lease expiry is tested
//! without sleeping. A backend's tests run them with
//! [`store_conformance_tests!`](crate::store_conformance_tests), one test
//! per check:
//!
//! ```text
//! orch_model::store_conformance_tests!(MemoryStore::new());
//! ```
//!
//! A check of an optional concern (claims, records, the cache, taking a run
//! over) that the store's capabilities leave out asserts that each of its
//! calls fails with `Unsupported`, instead of being skipped.
use crate::enums::{TaskPriority, TaskStatus, WorkflowStatus};
use crate::error::{OrchestrationError, Result};
use crate::ids::RunId;
use crate::store::{
    CacheEntry, Claim, Concern, Finished, NewRun, NewTask, RunRecord, Store, StoreCapabilities,
    StoredEvent, TakeOver, TaskCounts, TaskOutcome, TaskRecord,
};
use crate::task::TaskResult;
use chrono::{DateTime, TimeZone, Utc};
use serde_json::{Map, Value, json};
use std::fmt;
use std::time::Duration;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
        .single()
        .unwrap_or_default()
}

fn at(secs: i64) -> DateTime<Utc> {
    t0() + chrono::Duration::seconds(secs)
}

const LEASE: Duration = Duration::from_secs(30);

/// A diamond `a → {b, c} → d` plus an independent high-priority `e`.
fn diamond(id: RunId) -> NewRun {
    let task = |name: &str, deps: &[u32], priority| NewTask {
        name: name.into(),
        deps: deps.to_vec(),
        priority,
    };
    NewRun {
        id,
        workflow: "diamond".into(),
        definition: r#"{"name":"diamond"}"#.to_owned(),
        params: Map::new(),
        tasks: vec![
            task("a", &[], TaskPriority::Normal),
            task("b", &[0], TaskPriority::Normal),
            task("c", &[0], TaskPriority::Normal),
            task("d", &[1, 2], TaskPriority::Normal),
            task("e", &[], TaskPriority::High),
        ],
        parent: None,
    }
}

fn ok(v: Value) -> TaskOutcome {
    TaskOutcome::Succeeded {
        result: TaskResult::ok(v),
    }
}

async fn statuses(store: &dyn Store, run: RunId) -> Vec<TaskStatus> {
    store
        .tasks(run)
        .await
        .expect("tasks")
        .iter()
        .map(|t| t.status)
        .collect()
}

/// Makes one `#[test]` per conformance check, each on a fresh store from
/// `$make` (an expression evaluated once per test: a store, or a
/// `(guard, store)` pair whose guard, a temporary directory for instance,
/// lives as long as the test). The tests need no async runtime
/// ([`block_on`]); a store whose futures need one (a Tokio timer, I/O
/// driver) must make its own inside.
#[macro_export]
macro_rules! store_conformance_tests {
    ($make:expr) => {
        $crate::store_conformance_tests!(@checks $make;
            create_and_read,
            claims_follow_priority_and_release_dependents,
            stale_attempts_are_fenced_off,
            run_status_follows_its_tasks,
            events_are_numbered_in_order,
            cache_entries,
            local_scheduling,
            finishing_with_events,
            finishing_and_starting_in_one_turn,
            resuming_and_cancelling,
            records,
            taking_over_a_run,
            listing_counts_tasks,
            runs_keep_their_parent,
            capabilities_match_the_concerns,
        );
    };
    (bare: $make:expr) => {
        $crate::store_conformance_tests!($crate::testkit::Bare($make));
    };
    (@checks $make:expr; $($check:ident),* $(,)?) => {
        $(
            #[test]
            fn $check() {
                let fixture = $make;
                $crate::testkit::block_on($crate::testkit::$check(
                    $crate::testkit::Fixture::store(&fixture),
                ));
            }
        )*
    };
}

/// A store that keeps only what every backend must (runs, the local
/// journal, events) of the store it wraps, and none of the optional
/// concerns: `store_conformance_tests!(bare: make())` runs the suite on it,
/// which checks that each optional call then fails with `Unsupported`.
#[derive(Debug)]
pub struct Bare<F>(pub F);

#[async_trait::async_trait]
impl<F: Fixture + fmt::Debug + Send + Sync> Store for Bare<F> {
    fn backend(&self) -> &'static str {
        "bare"
    }
    fn capabilities(&self) -> StoreCapabilities {
        StoreCapabilities {
            claims: false,
            records: false,
            cache: false,
            take_over: false,
            distributed_claim: false,
            ..self.0.store().capabilities()
        }
    }
    async fn create_run(&self, run: NewRun, now: DateTime<Utc>) -> Result<()> {
        self.0.store().create_run(run, now).await
    }
    async fn get_run(&self, id: RunId) -> Result<Option<RunRecord>> {
        self.0.store().get_run(id).await
    }
    async fn list_runs(&self) -> Result<Vec<RunRecord>> {
        self.0.store().list_runs().await
    }
    async fn tasks(&self, run: RunId) -> Result<Vec<TaskRecord>> {
        self.0.store().tasks(run).await
    }
    async fn cancel_run(&self, run: RunId, now: DateTime<Utc>) -> Result<()> {
        self.0.store().cancel_run(run, now).await
    }
    async fn finish_run(
        &self,
        run: RunId,
        status: WorkflowStatus,
        now: DateTime<Utc>,
    ) -> Result<()> {
        self.0.store().finish_run(run, status, now).await
    }
    async fn set_owner(&self, run: RunId, owner: Option<String>) -> Result<()> {
        self.0.store().set_owner(run, owner).await
    }
    async fn request_cancel(&self, run: RunId) -> Result<bool> {
        self.0.store().request_cancel(run).await
    }
    async fn start_tasks(
        &self,
        run: RunId,
        tasks: &[u32],
        worker: &str,
        lease: Duration,
        now: DateTime<Utc>,
    ) -> Result<Vec<u32>> {
        self.0
            .store()
            .start_tasks(run, tasks, worker, lease, now)
            .await
    }
    async fn finish_tasks(
        &self,
        run: RunId,
        done: Vec<Finished>,
        now: DateTime<Utc>,
    ) -> Result<()> {
        self.0.store().finish_tasks(run, done, now).await
    }
    async fn requeue_running(&self, run: RunId) -> Result<usize> {
        self.0.store().requeue_running(run).await
    }
    async fn append_events(&self, run: RunId, events: Vec<StoredEvent>) -> Result<()> {
        self.0.store().append_events(run, events).await
    }
    async fn events(&self, run: RunId, after: u64) -> Result<Vec<StoredEvent>> {
        self.0.store().events(run, after).await
    }
}

/// What [`store_conformance_tests!`](crate::store_conformance_tests) makes
/// a store from: a store, or a `(guard, store)` pair.
pub trait Fixture {
    /// The store to check.
    fn store(&self) -> &dyn Store;
}

impl<S: Store> Fixture for S {
    fn store(&self) -> &dyn Store {
        self
    }
}

impl<G, S: Store> Fixture for (G, S) {
    fn store(&self) -> &dyn Store {
        &self.1
    }
}

/// Runs a future to its end on this thread (the checks need no runtime:
/// they pass times explicitly and never sleep).
pub fn block_on<F: Future>(f: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = std::task::Waker::from(std::sync::Arc::new(Unpark(std::thread::current())));
    let mut cx = std::task::Context::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    loop {
        if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park();
    }
}

/// Asserts that `r`, the answer of `call` on a store without `concern`, is
/// `Unsupported` naming the store's backend.
fn expect_unsupported<T: std::fmt::Debug>(
    store: &dyn Store,
    concern: Concern,
    call: &str,
    r: Result<T>,
) {
    match r {
        Err(OrchestrationError::Unsupported { message }) => assert!(
            message.contains(store.backend()),
            "{call}: the Unsupported error names the backend `{}`: {message}",
            store.backend()
        ),
        other => panic!(
            "{call}: the store's capabilities leave out {concern:?}, so it must fail with Unsupported, not {other:?}"
        ),
    }
}

/// For a store without claims: every call of the concern is `Unsupported`.
async fn claims_are_unsupported(store: &dyn Store) {
    let c = Concern::Claims;
    let claim = Claim {
        run: RunId::new(),
        index: 0,
        name: "a".into(),
        attempt: 1,
        worker: "w".into(),
    };
    expect_unsupported(store, c, "claim", store.claim("w", 1, LEASE, at(1)).await);
    expect_unsupported(
        store,
        c,
        "heartbeat",
        store.heartbeat(&claim, LEASE, at(1)).await,
    );
    expect_unsupported(
        store,
        c,
        "complete",
        store.complete(&claim, ok(json!(1)), at(1)).await,
    );
    expect_unsupported(
        store,
        c,
        "reclaim_expired",
        store.reclaim_expired(at(1)).await,
    );
}

/// The store's capabilities agree with what it offers: each optional
/// concern it claims has its accessor, and each one it leaves out fails
/// with `Unsupported`.
pub async fn capabilities_match_the_concerns(store: &dyn Store) {
    let caps = store.capabilities();
    assert_eq!(
        caps.claims,
        store.claims().is_some(),
        "capabilities.claims and claims()"
    );
    assert_eq!(
        caps.records,
        store.record_store().is_some(),
        "capabilities.records and record_store()"
    );
    assert_eq!(
        caps.cache,
        store.cache_store().is_some(),
        "capabilities.cache and cache_store()"
    );
    assert!(!store.backend().is_empty(), "the backend has a name");
    if caps.distributed_claim {
        assert!(caps.claims, "distributed claims are claims");
    }
    if !caps.claims {
        claims_are_unsupported(store).await;
    }
    if !caps.take_over {
        let id = RunId::new();
        store.create_run(diamond(id), t0()).await.expect("create");
        expect_unsupported(
            store,
            Concern::TakeOver,
            "take_over",
            store.take_over(id, None, "me").await,
        );
    }
}

/// Polls both futures until both are done, so that neither completes before
/// the other has started (a join without an async runtime).
async fn both<A: Future, B: Future>(a: A, b: B) -> (A::Output, B::Output) {
    let (mut a, mut b) = (std::pin::pin!(a), std::pin::pin!(b));
    let (mut ra, mut rb) = (None, None);
    std::future::poll_fn(|cx| {
        if ra.is_none() {
            if let std::task::Poll::Ready(v) = a.as_mut().poll(cx) {
                ra = Some(v);
            }
        }
        if rb.is_none() {
            if let std::task::Poll::Ready(v) = b.as_mut().poll(cx) {
                rb = Some(v);
            }
        }
        match (ra.take(), rb.take()) {
            (Some(x), Some(y)) => std::task::Poll::Ready((x, y)),
            (x, y) => {
                ra = x;
                rb = y;
                std::task::Poll::Pending
            }
        }
    })
    .await
}

/// `take_over`: a compare-and-set of the owner. Of two concurrent
/// take-overs from the same (dead) owner exactly one wins, and the loser
/// learns who won; an ended run cannot be taken over.
pub async fn taking_over_a_run(store: &dyn Store) {
    if !store.capabilities().take_over {
        let id = RunId::new();
        store.create_run(diamond(id), t0()).await.expect("create");
        let r = store.take_over(id, None, "me").await;
        return expect_unsupported(store, Concern::TakeOver, "take_over", r);
    }
    let id = RunId::new();
    store.create_run(diamond(id), t0()).await.expect("create");
    store
        .set_owner(id, Some("1:1@dead".into()))
        .await
        .expect("owner");
    for round in 0..5 {
        let before = store.get_run(id).await.expect("get").expect("run").owner;
        let (p, q) = (format!("p{round}"), format!("q{round}"));
        let (a, b) = both(
            store.take_over(id, before.as_deref(), &p),
            store.take_over(id, before.as_deref(), &q),
        )
        .await;
        let (a, b) = (a.expect("take over p"), b.expect("take over q"));
        let winner = match (&a, &b) {
            (TakeOver::Taken, TakeOver::Held { owner }) => {
                assert_eq!(
                    owner.as_deref(),
                    Some(p.as_str()),
                    "the loser names the winner"
                );
                p
            }
            (TakeOver::Held { owner }, TakeOver::Taken) => {
                assert_eq!(
                    owner.as_deref(),
                    Some(q.as_str()),
                    "the loser names the winner"
                );
                q
            }
            other => panic!("exactly one of two concurrent take-overs must win, got {other:?}"),
        };
        assert_eq!(
            store.get_run(id).await.expect("get").expect("run").owner,
            Some(winner.clone()),
            "the winner is the owner"
        );
        // A take-over that expects an owner the run no longer has loses.
        assert_eq!(
            store
                .take_over(id, Some("1:1@dead"), "late")
                .await
                .expect("late"),
            TakeOver::Held {
                owner: Some(winner)
            }
        );
    }
    // No owner recorded: `None` is what to expect.
    let free = RunId::new();
    store.create_run(diamond(free), t0()).await.expect("create");
    assert_eq!(
        store.take_over(free, None, "x").await.expect("take"),
        TakeOver::Taken
    );
    store
        .finish_run(id, WorkflowStatus::Completed, at(9))
        .await
        .expect("finish run");
    let owner = store.get_run(id).await.expect("get").expect("run").owner;
    assert_eq!(
        store
            .take_over(id, owner.as_deref(), "after")
            .await
            .expect("ended"),
        TakeOver::Ended {
            status: WorkflowStatus::Completed
        },
        "an ended run is not taken over"
    );
    assert!(
        store.take_over(RunId::new(), None, "x").await.is_err(),
        "unknown run"
    );
}

/// `list_runs` and `get_run` count each run's tasks by state.
pub async fn listing_counts_tasks(store: &dyn Store) {
    let id = RunId::new();
    store.create_run(diamond(id), t0()).await.expect("create");
    let started = store
        .start_tasks(id, &[0, 4], "local", LEASE, at(1))
        .await
        .expect("start");
    let big = json!({ "text": "x".repeat(256 * 1024) });
    store
        .finish_tasks(
            id,
            vec![Finished {
                index: 0,
                attempt: started[0],
                retries: 0,
                outcome: ok(big),
            }],
            at(2),
        )
        .await
        .expect("finish a");
    let want = TaskCounts {
        pending: 1,
        ready: 2,
        running: 1,
        completed: 1,
        ..TaskCounts::default()
    };
    let listed = store.list_runs().await.expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].tasks, want, "list_runs counts tasks by state");
    assert_eq!((want.total(), want.done()), (5, 1));
    assert_eq!(
        store.get_run(id).await.expect("get").expect("run").tasks,
        want,
        "get_run counts tasks by state"
    );
    assert_eq!(
        TaskCounts::of(&store.tasks(id).await.expect("tasks")),
        want,
        "the counts agree with the tasks"
    );
    let newer = RunId::new();
    store
        .create_run(diamond(newer), at(3))
        .await
        .expect("create");
    let recent = store.recent_runs(1).await.expect("recent");
    assert_eq!(
        recent
            .iter()
            .map(|r| (r.id, r.tasks.total()))
            .collect::<Vec<_>>(),
        vec![(newer, 5)],
        "recent_runs gives the newest runs first, counted"
    );
    assert_eq!(store.recent_runs(5).await.expect("recent").len(), 2);
}

/// A run created with a parent (a sub-workflow's run) reads back with it,
/// from `get_run`, `list_runs` and `recent_runs`, and keeps it through the
/// changes of its owner and status; a run created without one has none.
pub async fn runs_keep_their_parent(store: &dyn Store) {
    let (top, child, grandchild) = (RunId::new(), RunId::new(), RunId::new());
    store
        .create_run(diamond(top), t0())
        .await
        .expect("create top");
    store
        .create_run(
            NewRun {
                parent: Some(top),
                ..diamond(child)
            },
            at(1),
        )
        .await
        .expect("create child");
    store
        .create_run(
            NewRun {
                parent: Some(child),
                ..diamond(grandchild)
            },
            at(2),
        )
        .await
        .expect("create grandchild");
    let parent_of = |id| async move {
        store
            .get_run(id)
            .await
            .expect("get_run")
            .expect("the run exists")
            .parent
    };
    assert_eq!(parent_of(top).await, None, "a top-level run has no parent");
    assert_eq!(
        parent_of(child).await,
        Some(top),
        "get_run gives the parent"
    );
    assert_eq!(parent_of(grandchild).await, Some(child));
    let listed: Vec<_> = store
        .list_runs()
        .await
        .expect("list_runs")
        .iter()
        .map(|r| (r.id, r.parent))
        .collect();
    assert_eq!(
        listed,
        vec![(grandchild, Some(child)), (child, Some(top)), (top, None)],
        "list_runs gives each run's parent"
    );
    let recent: Vec<_> = store
        .recent_runs(2)
        .await
        .expect("recent_runs")
        .iter()
        .map(|r| (r.id, r.parent))
        .collect();
    assert_eq!(
        recent,
        vec![(grandchild, Some(child)), (child, Some(top))],
        "recent_runs gives each run's parent"
    );
    store
        .set_owner(child, Some("1:1@a".into()))
        .await
        .expect("set_owner");
    store.cancel_run(child, at(3)).await.expect("cancel_run");
    store
        .finish_run(child, WorkflowStatus::Cancelled, at(3))
        .await
        .expect("finish_run");
    let after = store.get_run(child).await.expect("get_run").expect("run");
    assert_eq!(
        (after.status, after.parent),
        (WorkflowStatus::Cancelled, Some(top)),
        "the parent outlives the run's end"
    );
}

/// `finish_and_append`: the finish and its events land together, and a
/// finish that is refused appends nothing.
pub async fn finishing_with_events(store: &dyn Store) {
    use crate::store::StoredEvent;
    let id = RunId::new();
    store.create_run(diamond(id), t0()).await.expect("create");
    store
        .start_tasks(id, &[0], "local", LEASE, at(1))
        .await
        .expect("start a");
    let ev = |kind: &str| StoredEvent {
        seq: 0,
        at: at(2),
        kind: kind.into(),
        task: Some(0),
        data: json!({}),
    };
    let stale = vec![Finished {
        index: 0,
        attempt: 2,
        retries: 0,
        outcome: ok(json!(1)),
    }];
    assert!(
        store
            .finish_and_append(id, stale, vec![ev("stale")], at(2))
            .await
            .is_err(),
        "a stale attempt is refused"
    );
    assert!(
        store.events(id, 0).await.expect("events").is_empty(),
        "a refused finish appends no event"
    );
    assert_eq!(statuses(store, id).await[0], TaskStatus::Running);
    let good = vec![Finished {
        index: 0,
        attempt: 1,
        retries: 0,
        outcome: ok(json!("a")),
    }];
    store
        .finish_and_append(id, good, vec![ev("done"), ev("more")], at(3))
        .await
        .expect("finish a");
    let events = store.events(id, 0).await.expect("events");
    let seen: Vec<(u64, &str)> = events.iter().map(|e| (e.seq, e.kind.as_str())).collect();
    assert_eq!(seen, vec![(1, "done"), (2, "more")]);
    assert_eq!(
        statuses(store, id).await[..3],
        [TaskStatus::Completed, TaskStatus::Ready, TaskStatus::Ready],
        "a's dependents were released with the finish"
    );
    // Events alone, and nothing at all.
    store
        .finish_and_append(id, Vec::new(), vec![ev("alone")], at(4))
        .await
        .expect("events only");
    store
        .finish_and_append(id, Vec::new(), Vec::new(), at(4))
        .await
        .expect("nothing");
    assert_eq!(store.events(id, 0).await.expect("events").len(), 3);
}

/// `finish_and_start`: a turn's finish, its events and the start of what it
/// released, with the new attempt numbers; a start of a task the finish did
/// not make ready is refused (and starts nothing).
pub async fn finishing_and_starting_in_one_turn(store: &dyn Store) {
    let id = RunId::new();
    store.create_run(diamond(id), t0()).await.expect("create");
    let first = store
        .finish_and_start(id, Vec::new(), Vec::new(), &[0, 4], "local", LEASE, at(1))
        .await
        .expect("start a and e");
    assert_eq!(first, vec![1, 1], "first attempts");
    let done = |index, attempt| Finished {
        index,
        attempt,
        retries: 0,
        outcome: ok(json!(index)),
    };
    let ev = StoredEvent {
        seq: 0,
        at: at(2),
        kind: "tasks_finished".into(),
        task: Some(0),
        data: json!({}),
    };
    let next = store
        .finish_and_start(
            id,
            vec![done(0, 1)],
            vec![ev],
            &[1, 2],
            "local",
            LEASE,
            at(2),
        )
        .await
        .expect("finish a, start b and c");
    assert_eq!(next, vec![1, 1]);
    assert_eq!(
        statuses(store, id).await,
        [
            TaskStatus::Completed,
            TaskStatus::Running,
            TaskStatus::Running,
            TaskStatus::Pending,
            TaskStatus::Running
        ]
    );
    assert_eq!(store.events(id, 0).await.expect("events").len(), 1);
    // d waits for c: starting it with b's finish alone is refused.
    assert!(
        store
            .finish_and_start(
                id,
                vec![done(1, 1)],
                Vec::new(),
                &[3],
                "local",
                LEASE,
                at(3)
            )
            .await
            .is_err(),
        "a task that is not ready does not start"
    );
    assert_ne!(
        statuses(store, id).await[3],
        TaskStatus::Running,
        "a refused start starts nothing"
    );
}

/// Records: put replaces by kind and key, kinds are separate, order is by last write.
pub async fn records(store: &dyn Store) {
    use crate::store::{Record, RecordKind};
    if !store.capabilities().records {
        let c = Concern::Records;
        let r = Record {
            kind: RecordKind::Session,
            key: "k".into(),
            data: json!({}),
            updated_at: at(1),
        };
        expect_unsupported(store, c, "put_record", store.put_record(r).await);
        expect_unsupported(
            store,
            c,
            "remove_record",
            store.remove_record(RecordKind::Session, "k").await,
        );
        expect_unsupported(
            store,
            c,
            "records",
            store.records(RecordKind::Session).await,
        );
        return;
    }
    let rec = |kind, key: &str, data: Value, t| Record {
        kind,
        key: key.to_owned(),
        data,
        updated_at: at(t),
    };
    assert!(
        store
            .records(RecordKind::Session)
            .await
            .expect("none")
            .is_empty()
    );
    // In order: two sessions, a project sharing a session's key, then s1 replaced.
    for (kind, key, data, t) in [
        (RecordKind::Session, "s1", json!({"status": "active"}), 1),
        (RecordKind::Session, "s2", json!({"status": "active"}), 2),
        (RecordKind::Project, "s1", json!({"path": "/p"}), 3),
        (RecordKind::Session, "s1", json!({"status": "closed"}), 4),
    ] {
        store
            .put_record(rec(kind, key, data, t))
            .await
            .expect("put a record");
    }
    let sessions = store.records(RecordKind::Session).await.expect("sessions");
    assert_eq!(
        sessions
            .iter()
            .map(|r| (r.key.as_str(), r.data["status"].as_str().unwrap_or("")))
            .collect::<Vec<_>>(),
        vec![("s2", "active"), ("s1", "closed")],
        "replaced in place, ordered by last write"
    );
    assert_eq!(sessions[1].updated_at, at(4));
    assert!(
        store
            .remove_record(RecordKind::Session, "s2")
            .await
            .expect("remove")
    );
    assert!(
        !store
            .remove_record(RecordKind::Session, "s2")
            .await
            .expect("again")
    );
    assert_eq!(
        store.records(RecordKind::Session).await.expect("one").len(),
        1
    );
    let projects = store.records(RecordKind::Project).await.expect("projects");
    assert_eq!(projects.len(), 1);
    assert_eq!(projects[0].data, json!({"path": "/p"}));
}

/// A new run's tasks start ready or pending with the right counters.
pub async fn create_and_read(store: &dyn Store) {
    let id = RunId::new();
    store
        .create_run(diamond(id), t0())
        .await
        .expect("create_run");
    let run = store
        .get_run(id)
        .await
        .expect("get_run")
        .expect("the run exists");
    assert_eq!(run.workflow, "diamond");
    assert_eq!(run.status, WorkflowStatus::Running);
    assert_eq!(run.definition, r#"{"name":"diamond"}"#);
    let tasks = store.tasks(id).await.expect("tasks");
    assert_eq!(tasks.len(), 5);
    assert_eq!(
        tasks.iter().map(|t| t.index).collect::<Vec<_>>(),
        [0, 1, 2, 3, 4],
        "tasks come by index"
    );
    assert_eq!(
        statuses(store, id).await,
        [
            TaskStatus::Ready,
            TaskStatus::Pending,
            TaskStatus::Pending,
            TaskStatus::Pending,
            TaskStatus::Ready
        ]
    );
    assert_eq!(tasks[3].remaining, 2);
    assert!(
        store
            .get_run(RunId::new())
            .await
            .expect("get_run")
            .is_none()
    );
    let listed = store.list_runs().await.expect("list_runs");
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (
            listed[0].id,
            listed[0].workflow.as_str(),
            listed[0].definition.as_str()
        ),
        (id, "diamond", ""),
        "listed without the definition"
    );
}

/// Claims go by priority, then index; completing releases exactly the dependents whose counters reach zero.
pub async fn claims_follow_priority_and_release_dependents(store: &dyn Store) {
    if !store.capabilities().claims {
        return claims_are_unsupported(store).await;
    }
    let id = RunId::new();
    store
        .create_run(diamond(id), t0())
        .await
        .expect("create_run");
    let first = store.claim("w1", 1, LEASE, at(1)).await.expect("claim");
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].name, "e", "the high-priority task first");
    assert_eq!(first[0].attempt, 1);
    let second = store.claim("w1", 10, LEASE, at(1)).await.expect("claim");
    assert_eq!(
        second.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
        ["a"],
        "only ready tasks, never twice"
    );
    assert!(
        store
            .claim("w2", 10, LEASE, at(1))
            .await
            .expect("claim")
            .is_empty()
    );
    let a = &second[0];
    let rec = &store.tasks(id).await.expect("tasks")[0];
    assert_eq!(rec.status, TaskStatus::Running);
    assert_eq!(rec.lease.as_ref().map(|l| l.worker.as_str()), Some("w1"));
    store
        .complete(a, ok(json!(1)), at(2))
        .await
        .expect("complete a");
    assert_eq!(
        statuses(store, id).await[1..4],
        [TaskStatus::Ready, TaskStatus::Ready, TaskStatus::Pending]
    );
    let bc = store.claim("w2", 10, LEASE, at(3)).await.expect("claim");
    assert_eq!(
        bc.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
        ["b", "c"]
    );
    store
        .complete(&bc[0], ok(json!(2)), at(4))
        .await
        .expect("complete b");
    assert_eq!(store.tasks(id).await.expect("tasks")[3].remaining, 1);
    assert_eq!(
        statuses(store, id).await[3],
        TaskStatus::Pending,
        "d still waits for c"
    );
    store
        .complete(
            &bc[1],
            TaskOutcome::Failed {
                result: TaskResult::failed("X", "boom"),
            },
            at(5),
        )
        .await
        .expect("complete c");
    assert_eq!(
        statuses(store, id).await[3],
        TaskStatus::Ready,
        "d is released; the scheduler applies its trigger rule"
    );
    let rec = &store.tasks(id).await.expect("tasks")[2];
    assert_eq!(
        rec.result.as_ref().and_then(|r| r.error_message.as_deref()),
        Some("boom")
    );
}

/// A stale attempt can neither renew nor complete; a lapsed lease makes the task claimable again.
pub async fn stale_attempts_are_fenced_off(store: &dyn Store) {
    if !store.capabilities().claims {
        return claims_are_unsupported(store).await;
    }
    let id = RunId::new();
    store
        .create_run(diamond(id), t0())
        .await
        .expect("create_run");
    let _e = store.claim("w1", 1, LEASE, at(0)).await.expect("claim");
    let old = store
        .claim("w1", 1, LEASE, at(0))
        .await
        .expect("claim")
        .pop()
        .expect("a");
    assert!(
        store
            .heartbeat(&old, LEASE, at(10))
            .await
            .expect("heartbeat"),
        "a live claim renews"
    );
    assert_eq!(
        store.reclaim_expired(at(20)).await.expect("reclaim"),
        0,
        "the renewed lease has not lapsed"
    );
    assert_eq!(
        store.reclaim_expired(at(41)).await.expect("reclaim"),
        2,
        "both leases lapsed"
    );
    assert_eq!(statuses(store, id).await[0], TaskStatus::Ready);
    let new = store.claim("w2", 2, LEASE, at(42)).await.expect("claim");
    let new_a = new.iter().find(|c| c.name == "a").expect("a again");
    assert_eq!(new_a.attempt, 2, "the next claim gets the next attempt");
    assert!(
        !store
            .heartbeat(&old, LEASE, at(43))
            .await
            .expect("heartbeat"),
        "a stale claim does not renew"
    );
    assert!(
        store
            .complete(&old, ok(json!("late")), at(44))
            .await
            .is_err(),
        "a stale claim cannot complete"
    );
    assert_eq!(statuses(store, id).await[0], TaskStatus::Running);
    store
        .complete(new_a, ok(json!("fresh")), at(45))
        .await
        .expect("the live claim completes");
    assert!(
        store
            .complete(new_a, ok(json!("twice")), at(46))
            .await
            .is_err(),
        "a finished task cannot complete again"
    );
    let rec = &store.tasks(id).await.expect("tasks")[0];
    assert_eq!(
        rec.result.as_ref().map(|r| r.data.clone()),
        Some(json!("fresh"))
    );
}

/// The run ends completed, failed or cancelled when its last task does.
pub async fn run_status_follows_its_tasks(store: &dyn Store) {
    if !store.capabilities().claims {
        return claims_are_unsupported(store).await;
    }
    let single = |id| NewRun {
        id,
        workflow: "one".into(),
        definition: "{}".to_owned(),
        params: Map::new(),
        tasks: vec![NewTask {
            name: "x".into(),
            deps: vec![],
            priority: TaskPriority::Normal,
        }],
        parent: None,
    };
    let good = RunId::new();
    store.create_run(single(good), t0()).await.expect("create");
    let c = store
        .claim("w", 1, LEASE, at(1))
        .await
        .expect("claim")
        .pop()
        .expect("x");
    store
        .complete(&c, ok(json!(null)), at(2))
        .await
        .expect("complete");
    let run = store.get_run(good).await.expect("get").expect("run");
    assert_eq!(run.status, WorkflowStatus::Completed);
    assert_eq!(run.finished_at, Some(at(2)));
    let bad = RunId::new();
    store.create_run(single(bad), t0()).await.expect("create");
    let c = store
        .claim("w", 1, LEASE, at(3))
        .await
        .expect("claim")
        .pop()
        .expect("x");
    store
        .complete(
            &c,
            TaskOutcome::Failed {
                result: TaskResult::failed("E", "no"),
            },
            at(4),
        )
        .await
        .expect("complete");
    assert_eq!(
        store.get_run(bad).await.expect("get").expect("run").status,
        WorkflowStatus::Failed
    );
    let stopped = RunId::new();
    store
        .create_run(diamond(stopped), t0())
        .await
        .expect("create");
    let running = store
        .claim("w", 1, LEASE, at(5))
        .await
        .expect("claim")
        .pop()
        .expect("e");
    store.cancel_run(stopped, at(6)).await.expect("cancel");
    assert!(
        statuses(store, stopped)
            .await
            .iter()
            .all(|s| *s == TaskStatus::Cancelled)
    );
    assert_eq!(
        store
            .get_run(stopped)
            .await
            .expect("get")
            .expect("run")
            .status,
        WorkflowStatus::Cancelled
    );
    assert!(
        store
            .claim("w", 10, LEASE, at(7))
            .await
            .expect("claim")
            .is_empty(),
        "nothing of a cancelled run is handed out"
    );
    assert!(
        store.complete(&running, ok(json!(1)), at(8)).await.is_err(),
        "a cancelled task cannot complete"
    );
}

/// Events get consecutive numbers per run and can be read from a position.
pub async fn events_are_numbered_in_order(store: &dyn Store) {
    let id = RunId::new();
    store.create_run(diamond(id), t0()).await.expect("create");
    let ev = |kind: &str, task| StoredEvent {
        seq: 0,
        at: at(1),
        kind: kind.into(),
        task,
        data: json!({}),
    };
    store
        .append_events(
            id,
            vec![ev("run_started", None), ev("task_started", Some(0))],
        )
        .await
        .expect("append");
    store
        .append_events(id, vec![ev("task_succeeded", Some(0))])
        .await
        .expect("append");
    let all = store.events(id, 0).await.expect("events");
    assert_eq!(all.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(all[2].kind, "task_succeeded");
    let later = store.events(id, 2).await.expect("events");
    assert_eq!(later.len(), 1);
    assert!(
        store
            .events(RunId::new(), 0)
            .await
            .expect("events")
            .is_empty()
    );
}

/// Cache entries are stored, replaced, listed and cleared.
pub async fn cache_entries(store: &dyn Store) {
    if !store.capabilities().cache {
        let c = Concern::Cache;
        let e = CacheEntry {
            key: "k".into(),
            value: json!(1),
            created_at: at(1),
        };
        expect_unsupported(store, c, "cache_get", store.cache_get("k").await);
        expect_unsupported(store, c, "cache_put", store.cache_put(e).await);
        expect_unsupported(store, c, "cache_list", store.cache_list().await);
        expect_unsupported(store, c, "cache_clear", store.cache_clear().await);
        return;
    }
    let entry = |key: &str, v| CacheEntry {
        key: key.into(),
        value: v,
        created_at: at(1),
    };
    assert!(store.cache_get("k1").await.expect("get").is_none());
    store.cache_put(entry("k1", json!(1))).await.expect("put");
    store.cache_put(entry("k1", json!(2))).await.expect("put");
    store.cache_put(entry("k2", json!(3))).await.expect("put");
    assert_eq!(
        store.cache_get("k1").await.expect("get").map(|e| e.value),
        Some(json!(2))
    );
    assert_eq!(store.cache_list().await.expect("list").len(), 2);
    assert_eq!(store.cache_clear().await.expect("clear"), 2);
    assert!(store.cache_list().await.expect("list").is_empty());
}

/// `start_tasks` / `finish_tasks`: the local scheduler's path, all or nothing.
pub async fn local_scheduling(store: &dyn Store) {
    let id = RunId::new();
    store.create_run(diamond(id), t0()).await.expect("create");
    let attempts = store
        .start_tasks(id, &[0, 4], "local", LEASE, at(1))
        .await
        .expect("start a and e");
    assert_eq!(attempts, vec![1, 1], "first attempts");
    assert!(
        store
            .start_tasks(id, &[1], "local", LEASE, at(1))
            .await
            .is_err(),
        "b is pending: starting it is refused"
    );
    let t = &store.tasks(id).await.expect("tasks")[0];
    assert_eq!((t.status, t.started_at), (TaskStatus::Running, Some(at(1))));
    // One bad entry (d is pending, not running) undoes the whole batch.
    let bad = vec![
        Finished {
            index: 0,
            attempt: 1,
            retries: 0,
            outcome: ok(json!(1)),
        },
        Finished {
            index: 3,
            attempt: 1,
            retries: 0,
            outcome: ok(json!(2)),
        },
    ];
    assert!(
        store.finish_tasks(id, bad, at(2)).await.is_err(),
        "stale entry rejected"
    );
    assert_eq!(
        statuses(store, id).await[0],
        TaskStatus::Running,
        "nothing applied"
    );
    // A stale attempt is fenced off too.
    let stale = vec![Finished {
        index: 0,
        attempt: 2,
        retries: 0,
        outcome: ok(json!(1)),
    }];
    assert!(store.finish_tasks(id, stale, at(2)).await.is_err());
    // a succeeds, e fails: b and c become ready in the same transaction.
    let good = vec![
        Finished {
            index: 0,
            attempt: 1,
            retries: 0,
            outcome: ok(json!("a")),
        },
        Finished {
            index: 4,
            attempt: 1,
            // e was retried twice within its start: it ran three times.
            retries: 2,
            outcome: TaskOutcome::Failed {
                result: TaskResult::failed("X", "e broke"),
            },
        },
    ];
    store
        .finish_tasks(id, good, at(3))
        .await
        .expect("finish a and e");
    assert_eq!(
        statuses(store, id).await,
        vec![
            TaskStatus::Completed,
            TaskStatus::Ready,
            TaskStatus::Ready,
            TaskStatus::Pending,
            TaskStatus::Failed
        ]
    );
    let tasks = store.tasks(id).await.expect("tasks");
    let a = &tasks[0];
    assert_eq!(a.finished_at, Some(at(3)));
    assert_eq!(
        (a.attempt, tasks[4].attempt),
        (1, 3),
        "retries within a start count as attempts"
    );
    assert_eq!(a.result.as_ref().map(|r| r.data.clone()), Some(json!("a")));
    // b never starts (skipped, attempt 0); c runs; d is skipped after them.
    store
        .start_tasks(id, &[2], "local", LEASE, at(4))
        .await
        .expect("start c");
    store
        .finish_tasks(
            id,
            vec![
                Finished {
                    index: 1,
                    attempt: 0,
                    retries: 0,
                    outcome: TaskOutcome::Skipped {
                        reason: "no".into(),
                    },
                },
                Finished {
                    index: 2,
                    attempt: 1,
                    retries: 0,
                    outcome: ok(json!("c")),
                },
                Finished {
                    index: 3,
                    attempt: 0,
                    retries: 0,
                    outcome: TaskOutcome::Skipped {
                        reason: "b skipped".into(),
                    },
                },
            ],
            at(5),
        )
        .await
        .expect("finish the rest");
    let tasks = store.tasks(id).await.expect("tasks");
    assert_eq!(
        (tasks[1].status, tasks[1].attempt, tasks[1].note.as_deref()),
        (TaskStatus::Skipped, 0, Some("no"))
    );
    assert_eq!(tasks[3].status, TaskStatus::Skipped);
    let run = store.get_run(id).await.expect("get").expect("run");
    assert_eq!(
        run.status,
        WorkflowStatus::Failed,
        "every task terminal, one failed"
    );
    assert!(
        store
            .finish_tasks(
                id,
                vec![Finished {
                    index: 1,
                    attempt: 0,
                    retries: 0,
                    outcome: TaskOutcome::Cancelled
                }],
                at(6)
            )
            .await
            .is_err(),
        "a terminal task cannot finish again"
    );
}

/// Owners, cancellation requests, requeueing after a crash, explicit final status.
pub async fn resuming_and_cancelling(store: &dyn Store) {
    let id = RunId::new();
    store.create_run(diamond(id), t0()).await.expect("create");
    store
        .set_owner(id, Some("123:456@host".into()))
        .await
        .expect("owner");
    let run = store.get_run(id).await.expect("get").expect("run");
    assert_eq!(
        (run.owner.as_deref(), run.cancel_requested),
        (Some("123:456@host"), false)
    );
    store
        .start_tasks(id, &[0], "local", LEASE, at(1))
        .await
        .expect("start a");
    // The driver dies; a new one requeues what was running, keeping the attempt.
    assert_eq!(store.requeue_running(id).await.expect("requeue"), 1);
    let a = &store.tasks(id).await.expect("tasks")[0];
    assert_eq!((a.status, a.attempt), (TaskStatus::Ready, 1));
    let again = store
        .start_tasks(id, &[0], "local", LEASE, at(2))
        .await
        .expect("restart a");
    assert_eq!(again, vec![2], "the rerun is attempt 2");
    assert!(store.request_cancel(id).await.expect("request"));
    assert!(
        store
            .get_run(id)
            .await
            .expect("get")
            .expect("run")
            .cancel_requested
    );
    store
        .finish_run(id, WorkflowStatus::Failed, at(3))
        .await
        .expect("finish run");
    let run = store.get_run(id).await.expect("get").expect("run");
    assert_eq!(
        (run.status, run.finished_at),
        (WorkflowStatus::Failed, Some(at(3)))
    );
    assert!(
        !store.request_cancel(id).await.expect("request"),
        "a finished run cannot be cancelled"
    );
    assert!(
        store.requeue_running(RunId::new()).await.is_err(),
        "unknown run"
    );
}
