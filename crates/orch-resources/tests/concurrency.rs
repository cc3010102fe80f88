//! Item 21 of issue 10: requests that do not wait must not fail because other requests are in flight.

use orch_model::Result;
use orch_model::{ResourceRequest, ResourceType};
use orch_resources::Allocation;
use orch_resources::ResourceManager;
use std::sync::{Arc, Barrier};
use std::time::Duration;
use tokio::task::JoinHandle;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// Starts `who`'s request for `n` cores, which waits at most `wait`, and
/// returns once it waits in line.
async fn queue_waiter(
    rm: &Arc<ResourceManager>,
    who: &'static str,
    n: f64,
    wait: Duration,
) -> JoinHandle<Result<Allocation>> {
    let rm2 = rm.clone();
    let waiter =
        tokio::spawn(async move { rm2.allocate_resources(who, &cores(n), Some(wait)).await });
    while rm.waiting() == 0 {
        tokio::task::yield_now().await;
    }
    waiter
}

fn cores(n: f64) -> ResourceRequest {
    ResourceRequest::default().with(ResourceType::Cpu, "cores", n)
}

/// Five threads each ask, at the same moment and without waiting, for 20 of
/// 100 cores: every one must be granted, and the cores must add up.
#[test]
fn five_concurrent_no_wait_allocations_of_a_fifth_all_succeed() {
    let rm = Arc::new(
        ResourceManager::with_resources(vec![ResourceManager::resource(
            "cpu_1",
            ResourceType::Cpu,
            &[("cores", 100.0)],
        )])
        .expect("valid"),
    );
    for round in 0..300 {
        let barrier = Arc::new(Barrier::new(5));
        let threads: Vec<_> = (0..5)
            .map(|i| {
                let (rm, barrier) = (rm.clone(), barrier.clone());
                std::thread::spawn(move || {
                    let rt = rt();
                    barrier.wait();
                    rt.block_on(rm.allocate_resources(&format!("t{i}"), &cores(20.0), None))
                })
            })
            .collect();
        let results: Vec<_> = threads
            .into_iter()
            .map(|t| t.join().expect("thread"))
            .collect();
        for (i, r) in results.iter().enumerate() {
            assert!(r.is_ok(), "round {round}: request {i} failed: {r:?}");
        }
        assert_eq!(
            rm.get_resource_usage(Some("cpu_1"))["allocated"]["cores"],
            100.0
        );
        for i in 0..5 {
            assert!(rm.deallocate_resources(&format!("t{i}"), None));
        }
    }
}

fn four_cores() -> ResourceManager {
    ResourceManager::with_resources(vec![ResourceManager::resource(
        "cpu",
        ResourceType::Cpu,
        &[("cores", 4.0)],
    )])
    .expect("valid")
}

/// A release hands capacity to the waiters at once, inside the release: a
/// request without waiting that comes right after it is not refused because
/// a served waiter has not woken up yet (a single-threaded runtime, so the
/// waiter cannot run in between).
#[test]
fn a_release_serves_waiters_before_the_next_request_looks() {
    let rm = Arc::new(four_cores());
    let rt = rt();
    rt.block_on(async {
        let holder = rm
            .allocate_resources("holder", &cores(4.0), None)
            .await
            .expect("all cores");
        let waiter = queue_waiter(&rm, "waiter", 2.0, Duration::from_secs(60)).await;
        assert!(rm.deallocate_resources("holder", Some(&[holder.id])));
        // No await between the release and this request.
        assert_eq!(rm.waiting(), 0, "the waiter was served by the release");
        let now = rm.try_allocate("now", &cores(2.0)).expect("valid");
        assert!(
            now.is_some(),
            "the other two cores are free and nobody waits"
        );
        let w = waiter.await.expect("join").expect("served");
        assert_eq!(w.amounts["cpu"]["cores"], 2.0);
    });
}

/// A waiting request whose future is dropped (a caller's own timeout, a
/// cancelled task) leaves the line; before, its ticket stayed first in line
/// forever and every later request was refused or waited in vain.
#[test]
fn a_dropped_waiter_does_not_block_the_line() {
    let rm = Arc::new(four_cores());
    let rt = rt();
    rt.block_on(async {
        let holder = rm
            .allocate_resources("holder", &cores(4.0), None)
            .await
            .expect("all cores");
        let gave_up = tokio::time::timeout(
            Duration::from_millis(20),
            rm.allocate_resources("impatient", &cores(4.0), Some(Duration::from_secs(3600))),
        )
        .await;
        assert!(gave_up.is_err(), "still waiting when dropped");
        assert_eq!(rm.waiting(), 0, "the dropped request left the line");
        assert!(rm.deallocate_resources("holder", Some(&[holder.id])));
        rm.allocate_resources("next", &cores(4.0), None)
            .await
            .expect("nobody waits ahead");
    });
}

/// A request that does not wait is refused while an earlier request waits
/// (it never passes the line), and the error says so.
#[test]
fn a_request_without_waiting_does_not_pass_the_line_and_says_why() {
    let rm = Arc::new(four_cores());
    let rt = rt();
    rt.block_on(async {
        let _holder = rm
            .allocate_resources("holder", &cores(3.0), None)
            .await
            .expect("three cores");
        let waiter = queue_waiter(&rm, "big", 4.0, Duration::from_millis(200)).await;
        let err = rm
            .allocate_resources("small", &cores(1.0), None)
            .await
            .expect_err("one request waits ahead");
        assert!(
            err.to_string().contains("1 earlier request is waiting"),
            "{err}"
        );
        let err = waiter.await.expect("join").expect_err("times out");
        assert!(err.to_string().contains("within 200ms"), "{err}");
        let err = rm
            .allocate_resources("small2", &cores(2.0), None)
            .await
            .expect_err("only one core is free");
        assert!(
            err.to_string().contains("`cpu` has 1 of 4 cores free"),
            "{err}"
        );
    });
}

/// A wait too long to add to a clock does not panic: it waits, and is served.
#[test]
fn a_huge_wait_is_served_like_any_other() {
    let rm = Arc::new(four_cores());
    let rt = rt();
    rt.block_on(async {
        let holder = rm
            .allocate_resources("holder", &cores(4.0), None)
            .await
            .expect("all cores");
        let waiter = queue_waiter(&rm, "patient", 1.0, Duration::MAX).await;
        assert!(rm.deallocate_resources("holder", Some(&[holder.id])));
        waiter.await.expect("no panic").expect("served");
    });
}
