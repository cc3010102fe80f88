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
//! over, output) that the store's capabilities leave out asserts that each of its
//! calls fails with `Unsupported`, instead of being skipped.
use crate::enums::{TaskPriority, TaskStatus, WorkflowStatus};
use crate::error::{OrchestrationError, Result};
use crate::ids::RunId;
use crate::store::{
    CacheEntry, Claim, ClaimRequest, Concern, Finished, NewRun, NewTask, ResourceAmounts,
    RunRecord, Store, StoreCapabilities, StoredEvent, TakeOver, TaskCounts, TaskOutcome,
    TaskRecord,
};
use crate::task::TaskResult;
use chrono::{DateTime, TimeZone, Utc};
use serde_json::{Map, Value, json};
use std::fmt;

mod bare;
mod batches;
mod capacity;
mod concerns;
mod journal;
mod leader;
mod output;
mod runs;
mod spec;

pub use bare::Bare;
pub use batches::{completing_in_batches, handing_a_claim_back, reading_a_few_tasks};
pub use capacity::claims_fit_the_claimers_capacity;
pub use concerns::{
    cache_entries, capabilities_match_the_concerns, claims_follow_priority_and_release_dependents,
    records, records_are_created_once, records_are_removed_only_when_older,
    stale_attempts_are_fenced_off,
};
pub use journal::{
    events_are_numbered_in_order, finishing_and_starting_in_one_turn, finishing_with_events,
    local_scheduling, starting_and_finishing_in_one_turn,
};
pub use leader::{
    a_lease_held_for_a_century, exactly_one_of_many_leads, one_leader_at_a_time,
    resigning_frees_the_lease,
};
pub use output::{
    output_chunks_are_numbered_per_step, output_chunks_keep_their_bytes,
    output_leaves_the_step_alone, output_of_an_unknown_step_is_refused,
};
pub use runs::{
    create_and_read, listing_counts_tasks, resuming_and_cancelling, run_status_follows_its_tasks,
    runs_keep_their_owner, runs_keep_their_parent, taking_over_a_run,
};
pub use spec::{
    a_record_is_read_by_its_key, claims_carry_the_tasks_spec, claims_keep_a_runs_max_parallel,
    claims_pass_over_queued_runs, claims_pass_over_runs_a_process_drives,
};
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
        needs: ResourceAmounts::default(),
        spec: None,
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
        owner: None,
        max_parallel: None,
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
            starting_and_finishing_in_one_turn,
            resuming_and_cancelling,
            records,
            records_are_created_once,
            records_are_removed_only_when_older,
            taking_over_a_run,
            listing_counts_tasks,
            runs_keep_their_parent,
            runs_keep_their_owner,
            capabilities_match_the_concerns,
            claims_fit_the_claimers_capacity,
            completing_in_batches,
            handing_a_claim_back,
            reading_a_few_tasks,
            output_chunks_are_numbered_per_step,
            output_chunks_keep_their_bytes,
            output_of_an_unknown_step_is_refused,
            output_leaves_the_step_alone,
            one_leader_at_a_time,
            resigning_frees_the_lease,
            exactly_one_of_many_leads,
            claims_carry_the_tasks_spec,
            a_record_is_read_by_its_key,
            claims_keep_a_runs_max_parallel,
            claims_pass_over_runs_a_process_drives,
            claims_pass_over_queued_runs,
            a_lease_held_for_a_century,
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
        needs: ResourceAmounts::default(),
        spec: None,
    };
    expect_unsupported(
        store,
        c,
        "claim",
        store.claim(&ClaimRequest::new("w", 1, LEASE), at(1)).await,
    );
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
        "complete_many",
        store
            .complete_many(vec![(claim.clone(), ok(json!(1)))], Vec::new(), at(1))
            .await,
    );
    expect_unsupported(
        store,
        c,
        "release_claim",
        store.release_claim(&claim, at(1)).await,
    );
    expect_unsupported(
        store,
        c,
        "reclaim_expired",
        store.reclaim_expired(at(1)).await,
    );
}
