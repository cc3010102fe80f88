//! Checks of the optional concerns: capabilities, claims with leases and fencing, records, the cache.

#[allow(clippy::wildcard_imports)]
use super::*;

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
    let first = store
        .claim(&ClaimRequest::new("w1", 1, LEASE), at(1))
        .await
        .expect("claim");
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].name, "e", "the high-priority task first");
    assert_eq!(first[0].attempt, 1);
    let second = store
        .claim(&ClaimRequest::new("w1", 10, LEASE), at(1))
        .await
        .expect("claim");
    assert_eq!(
        second.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
        ["a"],
        "only ready tasks, never twice"
    );
    assert!(
        store
            .claim(&ClaimRequest::new("w2", 10, LEASE), at(1))
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
    let bc = store
        .claim(&ClaimRequest::new("w2", 10, LEASE), at(3))
        .await
        .expect("claim");
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
    let _e = store
        .claim(&ClaimRequest::new("w1", 1, LEASE), at(0))
        .await
        .expect("claim");
    let old = store
        .claim(&ClaimRequest::new("w1", 1, LEASE), at(0))
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
    let new = store
        .claim(&ClaimRequest::new("w2", 2, LEASE), at(42))
        .await
        .expect("claim");
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

/// `create_record` saves a record only when its kind and key are free:
/// of many callers with one key exactly the first gets true, and the
/// record keeps the first caller's data until it is removed.
pub async fn records_are_created_once(store: &dyn Store) {
    use crate::store::{Record, RecordKind};
    let rec = |key: &str, data: Value, t| Record {
        kind: RecordKind::ScheduleTick,
        key: key.to_owned(),
        data,
        updated_at: at(t),
    };
    if !store.capabilities().records {
        expect_unsupported(
            store,
            Concern::Records,
            "create_record",
            store.create_record(rec("k", json!({}), 1)).await,
        );
        return;
    }
    let mut won = Vec::new();
    for i in 0..8 {
        if store
            .create_record(rec("nightly@2024-05-01T02:00:00Z", json!({"by": i}), 1))
            .await
            .expect("create")
        {
            won.push(i);
        }
    }
    assert_eq!(won, vec![0], "the first caller, and only it");
    assert!(
        store
            .create_record(rec("nightly@2024-05-02T02:00:00Z", json!({"by": 9}), 2))
            .await
            .expect("another key")
    );
    let ticks = store
        .records(RecordKind::ScheduleTick)
        .await
        .expect("ticks");
    assert_eq!(
        ticks
            .iter()
            .map(|r| (r.key.as_str(), r.data["by"].as_i64()))
            .collect::<Vec<_>>(),
        vec![
            ("nightly@2024-05-01T02:00:00Z", Some(0)),
            ("nightly@2024-05-02T02:00:00Z", Some(9))
        ]
    );
    // Another kind with the same key is another record.
    assert!(
        store
            .create_record(Record {
                kind: RecordKind::Schedule,
                ..rec("nightly@2024-05-01T02:00:00Z", json!({}), 3)
            })
            .await
            .expect("other kind")
    );
    assert!(
        store
            .remove_record(RecordKind::ScheduleTick, "nightly@2024-05-01T02:00:00Z")
            .await
            .expect("remove")
    );
    assert!(
        store
            .create_record(rec("nightly@2024-05-01T02:00:00Z", json!({"by": 10}), 4))
            .await
            .expect("free again")
    );
}

/// `remove_record_before` removes a record only when its last write is
/// older than the time given (strictly): one written again since is kept,
/// the same key of another kind is another record, and an absent one is
/// false.
pub async fn records_are_removed_only_when_older(store: &dyn Store) {
    use crate::store::{Record, RecordKind};
    let rec = |kind, key: &str, t| Record {
        kind,
        key: key.to_owned(),
        data: json!({"t": t}),
        updated_at: at(t),
    };
    if !store.capabilities().records {
        expect_unsupported(
            store,
            Concern::Records,
            "remove_record_before",
            store
                .remove_record_before(RecordKind::Worker, "w", at(1))
                .await,
        );
        return;
    }
    async fn workers(store: &dyn Store) -> Vec<String> {
        store
            .records(RecordKind::Worker)
            .await
            .expect("workers")
            .into_iter()
            .map(|r| r.key)
            .collect()
    }
    assert!(
        !store
            .remove_record_before(RecordKind::Worker, "none", at(100))
            .await
            .expect("absent"),
        "no record: false"
    );
    for r in [
        rec(RecordKind::Worker, "w1", 10),
        rec(RecordKind::Worker, "w2", 20),
        rec(RecordKind::Session, "w1", 5),
    ] {
        store.put_record(r).await.expect("put");
    }
    // Written at 10: not before 10, so kept; before 11, removed.
    assert!(
        !store
            .remove_record_before(RecordKind::Worker, "w1", at(10))
            .await
            .expect("as old as")
    );
    assert!(
        !store
            .remove_record_before(RecordKind::Worker, "w1", at(9))
            .await
            .expect("newer")
    );
    assert_eq!(workers(store).await, vec!["w1", "w2"], "both kept");
    assert!(
        store
            .remove_record_before(RecordKind::Worker, "w1", at(11))
            .await
            .expect("older")
    );
    assert_eq!(workers(store).await, vec!["w2"]);
    assert_eq!(
        store
            .records(RecordKind::Session)
            .await
            .expect("sessions")
            .len(),
        1,
        "the same key of another kind is another record"
    );
    // Written again (at 30) after someone read it (at 20): kept.
    store
        .put_record(rec(RecordKind::Worker, "w2", 30))
        .await
        .expect("renewed");
    assert!(
        !store
            .remove_record_before(RecordKind::Worker, "w2", at(25))
            .await
            .expect("renewed since")
    );
    assert_eq!(workers(store).await, vec!["w2"]);
    assert!(
        store
            .remove_record_before(RecordKind::Worker, "w2", at(31))
            .await
            .expect("gone")
    );
    assert!(workers(store).await.is_empty());
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
