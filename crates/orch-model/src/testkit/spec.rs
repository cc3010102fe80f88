//! Checks of what a submitted run's workers read of it: each task's spec
//! comes with its claims, and a record is read by its key.

#[allow(clippy::wildcard_imports)]
use super::*;
use crate::store::{Record, RecordKind};

/// A task's spec ([`NewTask::spec`]) comes back with every claim of it, as
/// it was given (also after a claim was handed back); a task without one
/// is claimed without one.
pub async fn claims_carry_the_tasks_spec(store: &dyn Store) {
    if !store.capabilities().claims {
        return;
    }
    let id = RunId::new();
    let mut run = diamond(id);
    // Text a store must keep byte for byte: quotes, a newline, non-ASCII.
    let spec =
        "{\"step\": {\"name\": \"a\", \"p\": \"x \\\"y\\\"\\nz é\"}, \"deps\": []}".to_owned();
    run.tasks[0].spec = Some(spec.clone());
    run.tasks[4].spec = Some("{}".to_owned());
    store.create_run(run, at(0)).await.expect("create");
    let claims = store
        .claim(&ClaimRequest::new("w1", 10, LEASE), at(1))
        .await
        .expect("claim");
    let mut got: Vec<(&str, Option<&str>)> = claims
        .iter()
        .map(|c| (c.name.as_str(), c.spec.as_deref()))
        .collect();
    got.sort_unstable();
    assert_eq!(got, vec![("a", Some(spec.as_str())), ("e", Some("{}"))]);
    // Handed back and claimed again: the same spec.
    let a = claims.iter().find(|c| c.name == "a").expect("a");
    assert!(store.release_claim(a, at(2)).await.expect("release"));
    let again = store
        .claim(&ClaimRequest::new("w2", 10, LEASE), at(3))
        .await
        .expect("claim again");
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].spec.as_deref(), Some(spec.as_str()));
    // A task without a spec: released by `a`, claimed without one.
    store
        .complete(&again[0], ok(json!(1)), at(4))
        .await
        .expect("complete a");
    let next = store
        .claim(&ClaimRequest::new("w2", 10, LEASE), at(5))
        .await
        .expect("claim b, c");
    assert_eq!(next.len(), 2);
    assert!(next.iter().all(|c| c.spec.is_none()), "{next:?}");
}

/// [`RecordStore::record`](crate::store::RecordStore::record) reads one
/// record by kind and key: the latest write, none for an absent key or
/// another kind, none once removed.
pub async fn a_record_is_read_by_its_key(store: &dyn Store) {
    if !store.capabilities().records {
        return;
    }
    let rec = |key: &str, n: i64| Record {
        kind: RecordKind::RunContext,
        key: key.into(),
        data: json!({"n": n, "text": "é \"q\""}),
        updated_at: at(n),
    };
    store.put_record(rec("r1", 1)).await.expect("put r1");
    store.put_record(rec("r2", 2)).await.expect("put r2");
    store.put_record(rec("r1", 3)).await.expect("put r1 again");
    let got = store
        .record(RecordKind::RunContext, "r1")
        .await
        .expect("read r1")
        .expect("r1 is there");
    assert_eq!(got, rec("r1", 3));
    assert_eq!(
        store
            .record(RecordKind::RunContext, "r3")
            .await
            .expect("r3"),
        None
    );
    assert_eq!(
        store
            .record(RecordKind::Session, "r1")
            .await
            .expect("other kind"),
        None
    );
    assert!(
        store
            .remove_record(RecordKind::RunContext, "r1")
            .await
            .expect("remove")
    );
    assert_eq!(
        store
            .record(RecordKind::RunContext, "r1")
            .await
            .expect("r1 gone"),
        None
    );
}

/// A run's `max_parallel` ([`NewRun::max_parallel`]) bounds how many of its
/// tasks are claimed at once, by every claimer together: claims hand out
/// no more than the room left (running tasks count), pass the run over
/// while it is full (other runs' tasks are still handed out), and give
/// room back as its tasks complete, are handed back or are reclaimed.
pub async fn claims_keep_a_runs_max_parallel(store: &dyn Store) {
    if !store.capabilities().claims {
        return;
    }
    let wide = |id, name: &str, n: usize, max_parallel| NewRun {
        id,
        workflow: name.into(),
        definition: format!(r#"{{"name":"{name}"}}"#),
        params: Map::new(),
        tasks: (0..n)
            .map(|i| NewTask {
                name: format!("{name}{i}"),
                deps: Vec::new(),
                priority: TaskPriority::Normal,
                needs: ResourceAmounts::default(),
                spec: None,
            })
            .collect(),
        parent: None,
        owner: None,
        max_parallel,
    };
    let (limited, free) = (RunId::new(), RunId::new());
    store
        .create_run(wide(limited, "l", 5, Some(2)), at(0))
        .await
        .expect("create the limited run");
    store
        .create_run(wide(free, "f", 3, None), at(0))
        .await
        .expect("create the other run");
    let of = |claims: &[Claim], run: RunId| claims.iter().filter(|c| c.run == run).count();
    let first = store
        .claim(&ClaimRequest::new("w1", 10, LEASE), at(1))
        .await
        .expect("claim");
    assert_eq!(of(&first, limited), 2, "two of the limited run: {first:?}");
    assert_eq!(of(&first, free), 3, "the other run is not held back");
    // Full: another claimer gets nothing of it.
    let none = store
        .claim(&ClaimRequest::new("w2", 10, LEASE), at(2))
        .await
        .expect("claim while full");
    assert!(none.is_empty(), "{none:?}");
    // A completion gives one slot back.
    let mine: Vec<&Claim> = first.iter().filter(|c| c.run == limited).collect();
    store
        .complete(mine[0], ok(json!(null)), at(3))
        .await
        .expect("complete");
    let one = store
        .claim(&ClaimRequest::new("w2", 10, LEASE), at(4))
        .await
        .expect("claim after a completion");
    assert_eq!(of(&one, limited), 1, "{one:?}");
    // Handing one back gives its slot back.
    assert!(store.release_claim(mine[1], at(5)).await.expect("release"));
    let back = store
        .claim(&ClaimRequest::new("w3", 10, LEASE), at(6))
        .await
        .expect("claim after a hand-back");
    assert_eq!(of(&back, limited), 1, "{back:?}");
    // Leases that lapse are reclaimed: the room is the limit again, no more.
    let later = at(6) + chrono::Duration::seconds(LEASE.as_secs() as i64 * 2);
    store.reclaim_expired(later).await.expect("reclaim");
    let after = store
        .claim(&ClaimRequest::new("w4", 10, LEASE), later)
        .await
        .expect("claim after reclaiming");
    assert_eq!(of(&after, limited), 2, "{after:?}");
}

/// Claims hand out the tasks of runs submitted to workers
/// ([`SUBMITTED_OWNER`](crate::store::SUBMITTED_OWNER)) or of nobody, never
/// those of a run a process drives (its owner is that process): a worker
/// sharing the store with `orch run` must not take that run's ready steps,
/// nor reclaim its running ones when their lease lapses. Handed to the
/// workers (`set_owner`), the run is claimed.
pub async fn claims_pass_over_runs_a_process_drives(store: &dyn Store) {
    if !store.capabilities().claims {
        return;
    }
    let (driven, submitted) = (RunId::new(), RunId::new());
    let mut run = diamond(driven);
    run.owner = Some("4242:17@host".into());
    store
        .create_run(run, at(0))
        .await
        .expect("create the driven run");
    let mut run = diamond(submitted);
    run.owner = Some(crate::store::SUBMITTED_OWNER.into());
    store
        .create_run(run, at(0))
        .await
        .expect("create the submitted run");
    // The process starts a step of its own run, with a lease it lets lapse.
    store
        .start_tasks(driven, &[0], "4242:17@host", LEASE, at(1))
        .await
        .expect("start a");
    let claims = store
        .claim(&ClaimRequest::new("w1", 10, LEASE), at(2))
        .await
        .expect("claim");
    assert!(claims.iter().all(|c| c.run == submitted), "{claims:?}");
    assert_eq!(claims.len(), 2, "a and e of the submitted run: {claims:?}");
    let later = at(2) + chrono::Duration::seconds(LEASE.as_secs() as i64 * 3);
    store.reclaim_expired(later).await.expect("reclaim");
    let t = &store.tasks(driven).await.expect("tasks")[0];
    assert_eq!(
        t.status,
        TaskStatus::Running,
        "the process's step is its own"
    );
    // Handed to the workers: claimed.
    store
        .set_owner(driven, Some(crate::store::SUBMITTED_OWNER.into()))
        .await
        .expect("hand over");
    let claims = store
        .claim(&ClaimRequest::new("w2", 10, LEASE), later)
        .await
        .expect("claim again");
    assert!(
        claims.iter().any(|c| c.run == driven && c.name == "e"),
        "{claims:?}"
    );
}

/// Claims pass over a submitted run that waits for a slot of its
/// concurrency key ([`QUEUED_OWNER`](crate::store::QUEUED_OWNER)), also
/// once its ready tasks' leases would have lapsed; handed to the workers
/// (`set_owner` to [`SUBMITTED_OWNER`](crate::store::SUBMITTED_OWNER)), it
/// is claimed. Its state reads as running, owned by `queued`.
pub async fn claims_pass_over_queued_runs(store: &dyn Store) {
    if !store.capabilities().claims {
        return;
    }
    let queued = RunId::new();
    let mut run = diamond(queued);
    run.owner = Some(crate::store::QUEUED_OWNER.into());
    store
        .create_run(run, at(0))
        .await
        .expect("create the queued run");
    let r = store.get_run(queued).await.expect("get").expect("the run");
    assert_eq!(r.status, WorkflowStatus::Running);
    assert_eq!(r.owner.as_deref(), Some(crate::store::QUEUED_OWNER));
    let claims = store
        .claim(&ClaimRequest::new("w1", 10, LEASE), at(1))
        .await
        .expect("claim");
    assert!(claims.is_empty(), "a queued run is not claimed: {claims:?}");
    store
        .reclaim_expired(at(1) + chrono::Duration::seconds(600))
        .await
        .expect("reclaim");
    store
        .set_owner(queued, Some(crate::store::SUBMITTED_OWNER.into()))
        .await
        .expect("hand over");
    let claims = store
        .claim(&ClaimRequest::new("w1", 10, LEASE), at(2))
        .await
        .expect("claim again");
    let mut names: Vec<&str> = claims.iter().map(|c| c.name.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["a", "e"], "its ready tasks, once handed over");
}
