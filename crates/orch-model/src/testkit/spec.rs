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
