//! Checks of runs: creating and reading, listing, parents, final status, owners, taking over, resuming and cancelling.

#[allow(clippy::wildcard_imports)]
use super::*;

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

/// `list_runs`, `get_run` and `get_run_brief` count each run's tasks by state.
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
    let full = store.get_run(id).await.expect("get").expect("run");
    let brief = store
        .get_run_brief(id)
        .await
        .expect("get brief")
        .expect("run");
    assert_eq!(
        brief,
        RunRecord {
            definition: String::new(),
            ..full
        },
        "get_run_brief is get_run without the definition"
    );
    assert!(
        store
            .get_run_brief(RunId::new())
            .await
            .expect("brief of an unknown run")
            .is_none(),
        "get_run_brief of an unknown run is None"
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
            needs: ResourceAmounts::default(),
            spec: None,
        }],
        parent: None,
        owner: None,
        max_parallel: None,
    };
    let good = RunId::new();
    store.create_run(single(good), t0()).await.expect("create");
    let c = store
        .claim(&ClaimRequest::new("w", 1, LEASE), at(1))
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
        .claim(&ClaimRequest::new("w", 1, LEASE), at(3))
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
        .claim(&ClaimRequest::new("w", 1, LEASE), at(5))
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
            .claim(&ClaimRequest::new("w", 10, LEASE), at(7))
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

/// A run created with an owner has it from the start (no reader sees it
/// ownerless, which would read as interrupted); one created without has none.
pub async fn runs_keep_their_owner(store: &dyn Store) {
    let (owned, free) = (RunId::new(), RunId::new());
    store
        .create_run(
            NewRun {
                owner: Some("host:1:abc".into()),
                max_parallel: None,
                ..diamond(owned)
            },
            t0(),
        )
        .await
        .expect("create owned");
    store
        .create_run(diamond(free), t0())
        .await
        .expect("create free");
    let owner_of = |id| async move {
        store
            .get_run(id)
            .await
            .expect("get_run")
            .expect("the run")
            .owner
    };
    assert_eq!(owner_of(owned).await.as_deref(), Some("host:1:abc"));
    assert_eq!(owner_of(free).await, None);
    let listed = store.list_runs().await.expect("list");
    let of = |id| {
        listed
            .iter()
            .find(|r| r.id == id)
            .and_then(|r| r.owner.clone())
    };
    assert_eq!(of(owned).as_deref(), Some("host:1:abc"), "list_runs too");
}
