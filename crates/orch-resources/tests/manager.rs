//! Behaviour tests of the ResourceManager: all-or-nothing, never over-committing, FIFO waiting, errors, the file.

use orch_model::{ErrorCode, HealthStatus, ResourceRequest, ResourceType};
use orch_resources::ResourceManager;
use proptest::prelude::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

fn machine() -> ResourceManager {
    ResourceManager::with_resources(vec![
        ResourceManager::resource("cpu", ResourceType::Cpu, &[("cores", 4.0)]),
        ResourceManager::resource("mem", ResourceType::Memory, &[("gb", 8.0)]),
        ResourceManager::resource(
            "api",
            ResourceType::ExternalApi,
            &[("requests_per_minute", 60.0)],
        ),
    ])
    .expect("valid resources")
}

fn req(cores: f64, gb: f64) -> ResourceRequest {
    ResourceRequest::default()
        .with(ResourceType::Cpu, "cores", cores)
        .with(ResourceType::Memory, "gb", gb)
}

#[test]
fn allocation_is_all_or_nothing_and_release_returns_exactly_what_was_taken() {
    let rm = machine();
    let rt = rt();
    let a = rt
        .block_on(rm.allocate_resources("t1", &req(3.0, 2.0), None))
        .expect("fits");
    assert_eq!(a.resources.get("cpu").map(String::as_str), Some("cpu"));
    // 1 core left: a request for 2 cores and 1 GB takes nothing at all.
    let err = rt
        .block_on(rm.allocate_resources("t2", &req(2.0, 1.0), None))
        .expect_err("does not fit");
    assert_eq!(err.error_code(), ErrorCode::ResourceUnavailable);
    let usage = rm.get_resource_usage(Some("mem"));
    assert_eq!(usage["allocated"]["gb"], 2.0, "{usage}");
    assert!(rm.deallocate_resources("t1", Some(&[a.id])));
    assert!(
        !rm.deallocate_resources("t1", None),
        "a second release finds nothing"
    );
    let usage = rm.get_resource_usage(Some("cpu"));
    assert_eq!(usage["allocated"]["cores"], 0.0, "{usage}");
    assert_eq!(usage["total_allocations"], 1);
    // Fractions add up and come back exactly.
    let ids: Vec<_> = (0..10)
        .map(|i| {
            rt.block_on(rm.allocate_resources(&format!("u{i}"), &req(0.1, 0.3), None))
                .expect("fits")
                .id
        })
        .collect();
    assert_eq!(
        ids.iter().collect::<std::collections::BTreeSet<_>>().len(),
        10,
        "no allocation id collides"
    );
    for i in 0..10 {
        assert!(rm.deallocate_resources(&format!("u{i}"), None));
    }
    assert_eq!(rm.get_resource_usage(Some("mem"))["allocated"]["gb"], 0.0);
}

#[test]
fn impossible_and_malformed_requests_fail_at_once() {
    let rm = machine();
    let rt = rt();
    let started = std::time::Instant::now();
    let err = rt
        .block_on(rm.allocate_resources("big", &req(5.0, 1.0), Some(Duration::from_secs(60))))
        .expect_err("too big");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "an impossible request does not wait for its timeout"
    );
    assert_eq!(err.error_code(), ErrorCode::ResourceUnavailable);
    assert!(
        err.to_string().contains("exceeds the total capacity"),
        "{err}"
    );
    let gpu = ResourceRequest::default().with(ResourceType::Gpu, "count", 1.0);
    let err = rt
        .block_on(rm.allocate_resources("g", &gpu, None))
        .expect_err("no gpu");
    assert!(
        err.to_string().contains("no resource of type `gpu`"),
        "{err}"
    );
    let unit = ResourceRequest::default().with(ResourceType::Cpu, "threads", 1.0);
    let err = rt
        .block_on(rm.allocate_resources("g", &unit, None))
        .expect_err("unknown unit");
    assert!(err.to_string().contains("no unit `threads`"), "{err}");
}

#[test]
fn waiting_requests_are_served_in_arrival_order() {
    let rm = Arc::new(machine());
    let rt = rt();
    let order = Arc::new(std::sync::Mutex::new(Vec::new()));
    rt.block_on(async {
        let holder = rm
            .allocate_resources("holder", &req(4.0, 0.0), None)
            .await
            .expect("all cores");
        let mut handles = Vec::new();
        for i in 0..5 {
            let rm2 = rm.clone();
            let order = order.clone();
            handles.push(tokio::spawn(async move {
                let rm = rm2;
                let a = rm
                    .allocate_resources(
                        &format!("w{i}"),
                        &req(4.0, 0.0),
                        Some(Duration::from_secs(30)),
                    )
                    .await
                    .expect("served");
                order.lock().expect("order").push(i);
                rm.deallocate_resources(&format!("w{i}"), Some(&[a.id]));
            }));
            // Let waiter i join the queue before waiter i+1 arrives.
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while rm.waiting() < i + 1 && std::time::Instant::now() < deadline {
                tokio::task::yield_now().await;
            }
        }
        rm.deallocate_resources("holder", Some(&[holder.id]));
        for h in handles {
            h.await.expect("join");
        }
    });
    assert_eq!(*order.lock().expect("order"), vec![0, 1, 2, 3, 4]);
}

#[test]
fn a_waiting_request_times_out_with_resource_unavailable() {
    let rm = machine();
    let rt = rt();
    let _hold = rt
        .block_on(rm.allocate_resources("holder", &req(4.0, 0.0), None))
        .expect("all cores");
    let err = rt
        .block_on(rm.allocate_resources("late", &req(1.0, 0.0), Some(Duration::from_millis(150))))
        .expect_err("times out");
    assert_eq!(err.error_code(), ErrorCode::ResourceUnavailable);
    assert!(err.to_string().contains("within 150ms"), "{err}");
}

#[test]
fn rate_limited_budgets_are_consumed_and_not_returned_on_release() {
    let rm = machine();
    let rt = rt();
    let call =
        ResourceRequest::default().with(ResourceType::ExternalApi, "requests_per_minute", 30.0);
    let a = rt
        .block_on(rm.allocate_resources("c1", &call, None))
        .expect("first half");
    rt.block_on(rm.allocate_resources("c2", &call, None))
        .expect("second half");
    assert!(rm.deallocate_resources("c1", Some(&[a.id])));
    // Releasing does not give requests back: the budget refills with time only.
    let err = rt.block_on(rm.allocate_resources(
        "c3",
        &ResourceRequest::default().with(ResourceType::ExternalApi, "requests_per_minute", 5.0),
        None,
    ));
    assert!(err.is_err(), "the minute's budget is spent");
}

#[test]
fn the_resources_file_round_trips_atomically() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("resources.json");
    let rm = machine();
    rm.save(&path).expect("save");
    let text = std::fs::read_to_string(&path).expect("read");
    let v: serde_json::Value = serde_json::from_str(&text).expect("json");
    assert_eq!(v["resources"]["cpu"]["capacity"]["cores"], 4.0);
    assert_eq!(v["resources"]["cpu"]["type"], "cpu");
    let back = ResourceManager::load(&path).expect("load");
    assert_eq!(back.list_resources().len(), 3);
    std::fs::write(&path, "{\"resources\": 3}").expect("write");
    assert!(ResourceManager::load(&path).is_err());
    assert_eq!(
        std::fs::read_dir(dir.path()).expect("dir").count(),
        1,
        "no temporary file left behind"
    );
}

#[test]
fn detected_resources_describe_this_machine() {
    let rm = ResourceManager::detect();
    let list = rm.list_resources();
    let cpu = list.iter().find(|r| r.id == "system_cpu").expect("cpu");
    assert!(cpu.capacity["cores"] >= 1.0);
    assert!(
        list.iter()
            .any(|r| r.id == "system_memory" && r.capacity["gb"] > 0.0)
    );
    let health = rm.health_check();
    assert_eq!(
        health.overall_status,
        HealthStatus::Healthy,
        "{:?}",
        health.issues
    );
    assert_eq!(health.resources.len(), list.len());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn concurrent_allocations_never_over_commit(requests in proptest::collection::vec((1u32..5, 0u32..9), 1..30)) {
        let rm = Arc::new(machine());
        let peak_cores = Arc::new(AtomicU64::new(0));
        let held = Arc::new(AtomicU64::new(0));
        rt().block_on(async {
            let mut handles = Vec::new();
            for (i, (cores, gb)) in requests.into_iter().enumerate() {
                let rm = rm.clone();
                let (peak, held) = (peak_cores.clone(), held.clone());
                handles.push(tokio::spawn(async move {
                    let r = req(f64::from(cores), f64::from(gb));
                    if let Ok(a) = rm.allocate_resources(&format!("t{i}"), &r, Some(Duration::from_secs(20))).await {
                        let now = held.fetch_add(u64::from(cores), Ordering::SeqCst) + u64::from(cores);
                        peak.fetch_max(now, Ordering::SeqCst);
                        let usage = rm.get_resource_usage(Some("cpu"));
                        assert!(usage["allocated"]["cores"].as_f64().unwrap_or(0.0) <= 4.0, "{usage}");
                        assert!(rm.get_resource_usage(Some("mem"))["allocated"]["gb"].as_f64().unwrap_or(0.0) <= 8.0, "an absent amount is zero");
                        tokio::task::yield_now().await;
                        held.fetch_sub(u64::from(cores), Ordering::SeqCst);
                        assert!(rm.deallocate_resources(&format!("t{i}"), Some(&[a.id])));
                    }
                }));
            }
            for h in handles {
                h.await.expect("no assertion failed in a task");
            }
        });
        prop_assert!(peak_cores.load(Ordering::SeqCst) <= 4);
        prop_assert_eq!(rm.get_resource_usage(Some("cpu"))["allocated"]["cores"].as_f64(), Some(0.0));
    }
}

#[test]
fn health_is_typed_and_serializes_in_the_seed_shape_in_the_managers_order() {
    use orch_model::ResourceStatus;
    let rm = machine();
    let fresh = rm.health_check();
    assert_eq!(fresh.overall_status, HealthStatus::Healthy);
    assert!(fresh.issues.is_empty(), "{:?}", fresh.issues);
    // 3.8 of 4 cores: one issue, degraded.
    rm.try_allocate("hog", &req(3.8, 0.0))
        .expect("valid")
        .expect("granted");
    let h = rm.health_check();
    assert_eq!(h.overall_status, HealthStatus::Degraded);
    assert_eq!(h.issues, vec!["Resource cpu is over 90% utilized"]);
    let cpu = h.resources.get("cpu").expect("cpu entry");
    assert!(!cpu.healthy);
    assert_eq!(cpu.users, 1);
    let mut json = serde_json::to_value(&h).expect("json");
    assert!(json["timestamp"].is_string());
    json["timestamp"] = serde_json::Value::Null;
    assert_eq!(
        serde_json::to_string(&json).expect("text"),
        serde_json::json!({
            "overall_status": "degraded",
            "timestamp": null,
            "resources": {
                "cpu": {"status": "available", "utilization": {"cores": 95.0}, "users": 1, "healthy": false},
                "mem": {"status": "available", "utilization": {"gb": 0.0}, "users": 0, "healthy": true},
                "api": {"status": "available", "utilization": {"requests_per_minute": 0.0}, "users": 0, "healthy": true}
            },
            "issues": ["Resource cpu is over 90% utilized"]
        })
        .to_string(),
        "same keys in the same order"
    );
    // Five issues or more: unhealthy.
    rm.add_resource(ResourceManager::resource(
        "disk",
        ResourceType::Disk,
        &[("gb", 10.0)],
    ))
    .expect("added");
    for id in ["cpu", "mem", "api", "disk"] {
        rm.set_resource_status(id, ResourceStatus::Maintenance)
            .expect("status");
    }
    let h = rm.health_check();
    assert_eq!(h.issues.len(), 5, "{:?}", h.issues);
    assert_eq!(h.overall_status, HealthStatus::Unhealthy);
    assert!(h.resources.iter().all(|r| !r.healthy));
}
