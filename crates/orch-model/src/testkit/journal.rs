//! Checks of the local journal (a run driven by one process) and of events.

#[allow(clippy::wildcard_imports)]
use super::*;

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

/// A turn of a journaled run in one call (`start_and_finish`): the steps it
/// started, then what ended, where a step started in the same call ends
/// with the attempt that start gave it (whatever attempt it names).
pub async fn starting_and_finishing_in_one_turn(store: &dyn Store) {
    let id = RunId::new();
    store.create_run(diamond(id), t0()).await.expect("create");
    let done = |index, attempt| Finished {
        index,
        attempt,
        retries: 0,
        outcome: ok(json!(index)),
    };
    let ev = StoredEvent {
        seq: 0,
        at: at(1),
        kind: "tasks_finished".into(),
        task: None,
        data: json!({}),
    };
    // a and e start and end in the same turn; e's entry names no real
    // attempt: the start's is used.
    let given = store
        .start_and_finish(
            id,
            &[0, 4],
            "local",
            LEASE,
            vec![done(0, 1), done(4, u32::MAX)],
            vec![ev],
            at(1),
        )
        .await
        .expect("a turn");
    assert_eq!(given, vec![1, 1], "first attempts");
    let tasks = store.tasks(id).await.expect("tasks");
    assert_eq!(
        tasks
            .iter()
            .map(|t| (t.status, t.attempt))
            .collect::<Vec<_>>(),
        [
            (TaskStatus::Completed, 1),
            (TaskStatus::Ready, 0),
            (TaskStatus::Ready, 0),
            (TaskStatus::Pending, 0),
            (TaskStatus::Completed, 1)
        ],
        "a and e ended, b and c were released"
    );
    assert_eq!(store.events(id, 0).await.expect("events").len(), 1);
    // b starts and ends in one turn while c only starts; a finish of a task
    // that neither started here nor runs is refused, and the store keeps
    // what it had before the call (or, for a backend that makes two calls,
    // the start).
    let given = store
        .start_and_finish(
            id,
            &[1, 2],
            "local",
            LEASE,
            vec![done(1, 7)],
            Vec::new(),
            at(2),
        )
        .await
        .expect("b and c start, b ends");
    assert_eq!(given, vec![1, 1]);
    assert_eq!(
        statuses(store, id).await,
        [
            TaskStatus::Completed,
            TaskStatus::Completed,
            TaskStatus::Running,
            TaskStatus::Pending,
            TaskStatus::Completed
        ]
    );
    assert!(
        store
            .start_and_finish(id, &[], "local", LEASE, vec![done(3, 1)], Vec::new(), at(3))
            .await
            .is_err(),
        "d never started: its finish is refused"
    );
    assert_eq!(statuses(store, id).await[3], TaskStatus::Pending);
    // c ends in a turn that starts nothing: its attempt is checked.
    store
        .start_and_finish(id, &[], "local", LEASE, vec![done(2, 1)], Vec::new(), at(4))
        .await
        .expect("c ends");
    let run = store.get_run(id).await.expect("get").expect("run");
    assert_eq!(run.status, WorkflowStatus::Running, "d is left");
    // A start that names a task twice is refused whole: d stays ready.
    assert!(
        store
            .start_and_finish(id, &[3, 3], "local", LEASE, Vec::new(), Vec::new(), at(5))
            .await
            .is_err(),
        "a task named twice"
    );
    assert!(
        store
            .start_tasks(id, &[3, 3], "local", LEASE, at(5))
            .await
            .is_err(),
        "a task named twice"
    );
    assert_eq!(
        statuses(store, id).await[3],
        TaskStatus::Ready,
        "nothing started"
    );
}
