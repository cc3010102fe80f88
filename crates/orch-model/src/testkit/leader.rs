//! Checks of the leaders concern: named leases that elect one holder at a time.

#[allow(clippy::wildcard_imports)]
use super::*;

/// For a store without leaders: every call is `Unsupported`.
async fn leaders_are_unsupported(store: &dyn Store) {
    let c = Concern::Leaders;
    expect_unsupported(store, c, "lead", store.lead("x", "a", LEASE, at(1)).await);
    expect_unsupported(store, c, "resign", store.resign("x", "a").await);
    expect_unsupported(store, c, "leader", store.leader("x", at(1)).await);
    assert!(
        store.leaders().is_none(),
        "capabilities.leaders is false, so leaders() is None"
    );
}

/// One holder at a time: the first caller leads, another is refused while
/// the lease runs, the holder renews it, and once its time ran out the
/// other takes over (and the old holder is refused).
pub async fn one_leader_at_a_time(store: &dyn Store) {
    if !store.capabilities().leaders {
        return leaders_are_unsupported(store).await;
    }
    assert!(
        store.leaders().is_some(),
        "capabilities.leaders and leaders()"
    );
    let ttl = Duration::from_secs(10);
    assert_eq!(store.leader("reaper", at(0)).await.expect("leader"), None);
    assert!(
        store.lead("reaper", "a", ttl, at(0)).await.expect("lead"),
        "a free lease is taken"
    );
    assert!(
        !store.lead("reaper", "b", ttl, at(5)).await.expect("lead"),
        "a held lease is refused to another"
    );
    assert_eq!(
        store.leader("reaper", at(5)).await.expect("leader"),
        Some(("a".to_owned(), at(10))),
        "the holder and the lease's end"
    );
    assert!(
        store.lead("reaper", "a", ttl, at(8)).await.expect("renew"),
        "the holder renews"
    );
    assert!(
        !store.lead("reaper", "b", ttl, at(12)).await.expect("lead"),
        "the renewal moved the end to 18"
    );
    assert!(
        store.lead("reaper", "b", ttl, at(18)).await.expect("lead"),
        "at its end the lease is free"
    );
    assert!(
        !store.lead("reaper", "a", ttl, at(19)).await.expect("lead"),
        "the old holder is refused"
    );
    assert_eq!(
        store.leader("reaper", at(19)).await.expect("leader"),
        Some(("b".to_owned(), at(28)))
    );
    assert_eq!(
        store.leader("reaper", at(28)).await.expect("leader"),
        None,
        "nobody once it ran out"
    );
    // Names are independent.
    assert!(
        store
            .lead("schedule:x", "a", ttl, at(19))
            .await
            .expect("lead")
    );
}

/// A holder that resigns frees the lease at once; resigning a lease one
/// does not hold changes nothing.
pub async fn resigning_frees_the_lease(store: &dyn Store) {
    if !store.capabilities().leaders {
        return leaders_are_unsupported(store).await;
    }
    let ttl = Duration::from_secs(10);
    assert!(store.lead("reaper", "a", ttl, at(0)).await.expect("lead"));
    assert!(
        !store.resign("reaper", "b").await.expect("resign"),
        "b does not hold it"
    );
    assert!(
        !store.lead("reaper", "b", ttl, at(1)).await.expect("lead"),
        "still a's"
    );
    assert!(
        store.resign("reaper", "a").await.expect("resign"),
        "a held it"
    );
    assert!(
        store.lead("reaper", "b", ttl, at(2)).await.expect("lead"),
        "free after a resigned"
    );
    assert!(
        !store.resign("nothing", "a").await.expect("resign"),
        "an unknown name"
    );
}

/// Of many callers at the same moment, exactly one leads.
pub async fn exactly_one_of_many_leads(store: &dyn Store) {
    if !store.capabilities().leaders {
        return leaders_are_unsupported(store).await;
    }
    let ttl = Duration::from_secs(10);
    let mut won = Vec::new();
    for i in 0..8 {
        let holder = format!("w{i}");
        if store.lead("tick", &holder, ttl, at(3)).await.expect("lead") {
            won.push(holder);
        }
    }
    assert_eq!(won, vec!["w0".to_owned()], "the first caller, and only it");
}

/// A lease taken for a century (a concurrency slot of a run submitted to
/// workers: held while its run has not ended, never renewed) keeps its
/// end, is refused to others long after, and is freed by its holder's
/// resign. Its end fits every store's time type.
pub async fn a_lease_held_for_a_century(store: &dyn Store) {
    if !store.capabilities().leaders {
        return leaders_are_unsupported(store).await;
    }
    let century = Duration::from_secs(100 * 365 * 24 * 3600);
    assert!(
        store
            .lead("concurrency/deploy/0", "run-a", century, at(0))
            .await
            .expect("lead for a century"),
        "a free lease is taken"
    );
    let later = at(0) + chrono::Duration::days(365 * 50);
    assert!(
        !store
            .lead("concurrency/deploy/0", "run-b", LEASE, later)
            .await
            .expect("lead"),
        "fifty years on, it is still held"
    );
    let (holder, until) = store
        .leader("concurrency/deploy/0", later)
        .await
        .expect("leader")
        .expect("held");
    assert_eq!(holder, "run-a");
    assert_eq!(
        until,
        at(0) + chrono::Duration::from_std(century).expect("a century"),
        "its end as given"
    );
    assert!(
        store
            .lead("concurrency/deploy/0", "run-a", century, at(5))
            .await
            .expect("renew"),
        "its holder takes it again"
    );
    assert!(
        store
            .resign("concurrency/deploy/0", "run-a")
            .await
            .expect("resign"),
        "its holder gives it up"
    );
    assert!(
        store
            .lead("concurrency/deploy/0", "run-b", LEASE, at(6))
            .await
            .expect("lead"),
        "free once given up"
    );
}
