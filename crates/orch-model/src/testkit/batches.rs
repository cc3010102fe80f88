//! Checks of what cuts a worker's round trips: completing claims in
//! batches, handing a claim back, reading a few tasks.

#[allow(clippy::wildcard_imports)]
use super::*;

fn finished_event(index: u32) -> StoredEvent {
    StoredEvent {
        seq: 0,
        at: at(5),
        kind: "tasks_finished".into(),
        task: Some(index),
        data: json!({"tasks": [[index, "completed", 1]]}),
    }
}

/// `complete_many` completes each claim on its own account in one call (a
/// stale one is refused, the others complete and release their
/// dependents); its events are appended only when every claim completed.
pub async fn completing_in_batches(store: &dyn Store) {
    if !store.capabilities().claims {
        return claims_are_unsupported(store).await;
    }
    let (one, two) = (RunId::new(), RunId::new());
    store.create_run(diamond(one), t0()).await.expect("create");
    store.create_run(diamond(two), t0()).await.expect("create");
    // e and a of both runs.
    let claims = store
        .claim(&ClaimRequest::new("w", 10, Duration::from_secs(1)), at(1))
        .await
        .expect("claim");
    assert_eq!(claims.len(), 4);
    let find = |run: RunId, name: &str| {
        claims
            .iter()
            .find(|c| c.run == run && c.name == name)
            .cloned()
            .expect("claimed")
    };
    // `e` of run two goes stale: its lease lapses and another takes it.
    let stale = find(two, "e");
    store.reclaim_expired(at(3)).await.expect("reclaim");
    let retaken = store
        .claim(&ClaimRequest::new("v", 10, LEASE), at(3))
        .await
        .expect("claim again");
    assert_eq!(retaken.len(), 4, "every lapsed claim is ready again");
    let current = |run: RunId, name: &str| {
        retaken
            .iter()
            .find(|c| c.run == run && c.name == name)
            .cloned()
            .expect("claimed again")
    };
    let answers = store
        .complete_many(
            vec![
                (current(one, "a"), ok(json!("a1"))),
                (stale, ok(json!("late"))),
                (current(two, "a"), ok(json!("a2"))),
            ],
            vec![(one, finished_event(0))],
            at(5),
        )
        .await
        .expect("complete_many");
    assert_eq!(answers.len(), 3, "one answer per claim");
    assert!(answers[0].is_ok() && answers[2].is_ok(), "{answers:?}");
    assert!(
        matches!(answers[1], Err(OrchestrationError::InvalidState { .. })),
        "the stale claim is refused with InvalidState: {:?}",
        answers[1]
    );
    assert_eq!(
        statuses(store, one).await[..3],
        [TaskStatus::Completed, TaskStatus::Ready, TaskStatus::Ready],
        "a completed in the batch released b and c"
    );
    assert_eq!(statuses(store, two).await[0], TaskStatus::Completed);
    assert_eq!(
        statuses(store, two).await[4],
        TaskStatus::Running,
        "the stale completion changed nothing"
    );
    assert!(
        store.events(one, 0).await.expect("events").is_empty(),
        "no event when a claim of the batch was refused"
    );
    // A batch that completes whole appends its events with it.
    let answers = store
        .complete_many(
            vec![
                (current(one, "e"), ok(json!("e1"))),
                (current(two, "e"), ok(json!("e2"))),
            ],
            vec![(one, finished_event(4)), (two, finished_event(4))],
            at(6),
        )
        .await
        .expect("complete_many");
    assert!(answers.iter().all(Result::is_ok), "{answers:?}");
    for run in [one, two] {
        let ev = store.events(run, 0).await.expect("events");
        assert_eq!(ev.len(), 1, "the batch's event of its run");
        assert_eq!((ev[0].seq, ev[0].task), (1, Some(4)));
        let e = &store.tasks(run).await.expect("tasks")[4];
        assert_eq!(e.result.as_ref().map(|r| r.success), Some(true));
    }
    // The last tasks of a run, completed in one batch, end it.
    let rest = store
        .claim(&ClaimRequest::new("w", 10, LEASE), at(7))
        .await
        .expect("claim b, c");
    let of_one: Vec<_> = rest
        .into_iter()
        .filter(|c| c.run == one)
        .map(|c| (c, ok(json!(0))))
        .collect();
    assert_eq!(of_one.len(), 2);
    store
        .complete_many(of_one, Vec::new(), at(8))
        .await
        .expect("b, c");
    let d = store
        .claim(&ClaimRequest::new("w", 10, LEASE), at(9))
        .await
        .expect("claim d")
        .into_iter()
        .filter(|c| c.run == one)
        .map(|c| (c, ok(json!(0))))
        .collect::<Vec<_>>();
    assert_eq!(d.len(), 1);
    store.complete_many(d, Vec::new(), at(10)).await.expect("d");
    let run = store.get_run(one).await.expect("get").expect("run");
    assert_eq!(run.status, WorkflowStatus::Completed);
}

/// `release_claim` makes the task ready again at once (no one else's
/// lapsed lease with it); the handed-back claim is stale from then on, and
/// the next claim gets the next attempt number.
pub async fn handing_a_claim_back(store: &dyn Store) {
    if !store.capabilities().claims {
        return claims_are_unsupported(store).await;
    }
    let id = RunId::new();
    store.create_run(diamond(id), t0()).await.expect("create");
    let short = ClaimRequest::new("w", 1, Duration::from_secs(1));
    let e = store.claim(&short, at(0)).await.expect("claim e").remove(0);
    let a = store.claim(&short, at(0)).await.expect("claim a").remove(0);
    assert_eq!((e.name.as_str(), a.name.as_str()), ("e", "a"));
    // e's lease has lapsed at 5 s, but only a is handed back.
    assert!(store.release_claim(&a, at(5)).await.expect("release"));
    let st = statuses(store, id).await;
    assert_eq!(st[0], TaskStatus::Ready, "a is ready again");
    assert_eq!(
        st[4],
        TaskStatus::Running,
        "e's lapsed lease is not reclaimed by a hand-back"
    );
    assert!(
        !store.heartbeat(&a, LEASE, at(6)).await.expect("heartbeat"),
        "the handed-back claim is stale"
    );
    assert!(
        !store.release_claim(&a, at(6)).await.expect("release again"),
        "a stale claim cannot be handed back"
    );
    assert!(store.complete(&a, ok(json!(1)), at(6)).await.is_err());
    let again = store
        .claim(&ClaimRequest::new("v", 1, LEASE), at(7))
        .await
        .expect("claim a again");
    assert_eq!(again[0].name, "a");
    assert_eq!(again[0].attempt, 2, "the next claim has the next attempt");
}

/// `task_records` reads the named tasks of a run in the order given,
/// leaving out indices the run does not have.
pub async fn reading_a_few_tasks(store: &dyn Store) {
    let id = RunId::new();
    store.create_run(diamond(id), t0()).await.expect("create");
    let got = store.task_records(id, &[3, 0, 99, 4]).await.expect("read");
    let all = store.tasks(id).await.expect("tasks");
    assert_eq!(got, vec![all[3].clone(), all[0].clone(), all[4].clone()]);
    assert!(
        store
            .task_records(RunId::new(), &[0])
            .await
            .map_or(true, |v| v.is_empty()),
        "an unknown run has no tasks to read (or is NotFound)"
    );
}
