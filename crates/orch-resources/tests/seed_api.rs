//! The original module's resource API beyond the specification's summary
//! (issue 10 items 15 and 22): `max_concurrent_users`, allocation expiry,
//! `get_resource`, `get_user_allocations`, `list_resources` filters.

use orch_model::{ErrorCode, Resource, ResourceRequest, ResourceStatus, ResourceType};
use orch_resources::{AllocateOptions, ResourceManager};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn cores(n: f64) -> ResourceRequest {
    ResourceRequest::default().with(ResourceType::Cpu, "cores", n)
}

fn limited_cpu(max_users: serde_json::Value) -> Resource {
    let mut r = ResourceManager::resource("cpu", ResourceType::Cpu, &[("cores", 8.0)]);
    r.limits.insert("max_concurrent_users".into(), max_users);
    r
}

#[test]
fn max_concurrent_users_admits_that_many_users_and_lets_them_take_more() {
    let rm = ResourceManager::with_resources(vec![limited_cpu(json!(2))]).expect("valid");
    let rt = rt();
    let a = rt
        .block_on(rm.allocate_resources("alice", &cores(1.0), None))
        .expect("first user");
    rt.block_on(rm.allocate_resources("bob", &cores(1.0), None))
        .expect("second user");
    // Six cores are free, but a third user is one too many.
    let err = rt
        .block_on(rm.allocate_resources("carol", &cores(1.0), None))
        .expect_err("third user");
    assert_eq!(err.error_code(), ErrorCode::ResourceUnavailable);
    assert!(
        err.to_string()
            .contains("`cpu` already has its 2 concurrent users (limits.max_concurrent_users)"),
        "{err}"
    );
    assert_eq!(
        rm.try_allocate("carol", &cores(1.0)).expect("valid"),
        None,
        "the scheduler's path honours the limit too"
    );
    // A user who holds it may take more.
    rt.block_on(rm.allocate_resources("alice", &cores(2.0), None))
        .expect("same user again");
    // A user leaves only when all of their allocations are released.
    assert!(rm.deallocate_resources("alice", Some(&[a.id])));
    assert!(
        rt.block_on(rm.allocate_resources("carol", &cores(1.0), None))
            .is_err(),
        "alice still holds two cores"
    );
    assert!(rm.deallocate_resources("alice", None));
    rt.block_on(rm.allocate_resources("carol", &cores(1.0), None))
        .expect("alice left: carol may come in");
}

#[test]
fn a_user_over_the_limit_waits_like_a_request_for_capacity() {
    let rm = Arc::new(ResourceManager::with_resources(vec![limited_cpu(json!(1))]).expect("valid"));
    let rt = rt();
    rt.block_on(async {
        rm.allocate_resources("alice", &cores(1.0), None)
            .await
            .expect("first user");
        let rm2 = rm.clone();
        let bob = tokio::spawn(async move {
            rm2.allocate_resources("bob", &cores(1.0), Some(Duration::from_secs(60)))
                .await
        });
        while rm.waiting() == 0 {
            tokio::task::yield_now().await;
        }
        assert!(rm.deallocate_resources("alice", None));
        let b = bob.await.expect("join").expect("bob's turn");
        assert_eq!(b.user_id, "bob");
        assert_eq!(
            rm.get_resource("cpu").expect("cpu").current_users,
            vec!["bob"]
        );
    });
}

#[test]
fn max_concurrent_users_is_checked_when_loaded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("resources.json");
    let file = |limit: serde_json::Value| {
        json!({"resources": {"cpu": {
            "id": "cpu", "name": "cpu", "type": "cpu",
            "capacity": {"cores": 4.0},
            "limits": {"max_concurrent_users": limit, "max_cpu_cores": 4}
        }}})
        .to_string()
    };
    std::fs::write(&path, file(json!(1))).expect("write");
    let rm = ResourceManager::load(&path).expect("valid file");
    let rt = rt();
    rt.block_on(rm.allocate_resources("a", &cores(1.0), None))
        .expect("first");
    assert!(
        rt.block_on(rm.allocate_resources("b", &cores(1.0), None))
            .is_err(),
        "the file's limit is enforced"
    );
    std::fs::write(&path, file(json!(-1))).expect("write");
    let err = ResourceManager::load(&path).expect_err("negative limit");
    assert!(
        err.to_string()
            .contains("limits.max_concurrent_users = -1 must be a whole number"),
        "{err}"
    );
    std::fs::write(&path, file(json!(0))).expect("write");
    let rm = ResourceManager::load(&path).expect("zero is a valid limit");
    let err = rt
        .block_on(rm.allocate_resources("a", &cores(1.0), Some(Duration::from_secs(60))))
        .expect_err("nobody may use it: fails at once, without waiting");
    assert!(err.to_string().contains("admits no users"), "{err}");
}

#[test]
fn expired_allocations_are_released_by_the_cleanup() {
    let rm = ResourceManager::with_resources(vec![ResourceManager::resource(
        "cpu",
        ResourceType::Cpu,
        &[("cores", 4.0)],
    )])
    .expect("valid");
    let rt = rt();
    let lease = rt
        .block_on(rm.allocate_resources_with(
            "lease",
            &cores(3.0),
            AllocateOptions {
                wait: None,
                expires_after: Some(Duration::from_millis(50)),
            },
        ))
        .expect("fits");
    let expires_at = lease.expires_at.expect("has an expiry");
    assert!(expires_at > lease.allocated_at);
    let kept = rt
        .block_on(rm.allocate_resources("kept", &cores(1.0), None))
        .expect("fits");
    assert_eq!(kept.expires_at, None);
    let mine = rm.get_user_allocations("lease");
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0].expires_at, Some(expires_at));
    std::thread::sleep(Duration::from_millis(60));
    assert_eq!(rm.release_expired(), 1, "the lease has passed");
    assert_eq!(rm.release_expired(), 0, "released once");
    assert!(rm.get_user_allocations("lease").is_empty());
    assert_eq!(rm.get_user_allocations("kept").len(), 1);
    assert_eq!(rm.get_resource("cpu").expect("cpu").allocated["cores"], 1.0);
    assert!(
        !rm.deallocate_resources("lease", Some(&[lease.id])),
        "nothing left to release"
    );
    let err = rt
        .block_on(rm.allocate_resources_with(
            "zero",
            &cores(1.0),
            AllocateOptions {
                wait: None,
                expires_after: Some(Duration::ZERO),
            },
        ))
        .expect_err("zero lease");
    assert_eq!(err.error_code(), ErrorCode::InvalidParameters);
}

#[test]
fn a_lapsed_allocation_serves_waiters_and_the_cleanup_task_ends_with_the_manager() {
    let rm = Arc::new(
        ResourceManager::with_resources(vec![ResourceManager::resource(
            "cpu",
            ResourceType::Cpu,
            &[("cores", 4.0)],
        )])
        .expect("valid"),
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let cleanup = rm
            .spawn_cleanup(Duration::from_millis(20))
            .expect("inside a runtime");
        rm.allocate_resources_with(
            "lease",
            &cores(4.0),
            AllocateOptions {
                wait: None,
                expires_after: Some(Duration::from_millis(100)),
            },
        )
        .await
        .expect("all cores");
        // A waiter for the same cores is served when the lease lapses.
        let got = rm
            .allocate_resources("next", &cores(4.0), Some(Duration::from_secs(30)))
            .await
            .expect("served after the lease expired");
        assert_eq!(got.user_id, "next");
        assert!(rm.get_user_allocations("lease").is_empty());
        // The cleanup task holds no strong reference: it ends with the manager.
        drop(rm);
        tokio::time::timeout(Duration::from_secs(10), cleanup)
            .await
            .expect("the task ended")
            .expect("it did not panic");
    });
    let rm = Arc::new(ResourceManager::default());
    assert!(
        rm.spawn_cleanup(Duration::from_millis(20)).is_none(),
        "no runtime here"
    );
}

#[test]
fn get_resource_and_list_filters() {
    let mut gpu = ResourceManager::resource("gpu0", ResourceType::Gpu, &[("count", 2.0)]);
    gpu.status = ResourceStatus::Maintenance;
    let rm = ResourceManager::with_resources(vec![
        ResourceManager::resource("cpu0", ResourceType::Cpu, &[("cores", 4.0)]),
        ResourceManager::resource("cpu1", ResourceType::Cpu, &[("cores", 2.0)]),
        ResourceManager::resource("mem0", ResourceType::Memory, &[("gb", 8.0)]),
        gpu,
    ])
    .expect("valid");
    let ids = |v: Vec<Resource>| v.into_iter().map(|r| r.id).collect::<Vec<_>>();
    assert_eq!(
        ids(rm.list_resources_filtered(Some(ResourceType::Cpu), None)),
        vec!["cpu0", "cpu1"]
    );
    assert_eq!(
        ids(rm.list_resources_filtered(None, Some(ResourceStatus::Maintenance))),
        vec!["gpu0"]
    );
    assert_eq!(
        ids(rm.list_resources_filtered(Some(ResourceType::Gpu), Some(ResourceStatus::Available))),
        Vec::<String>::new()
    );
    assert_eq!(rm.list_resources().len(), 4);
    // A resource in maintenance is not allocated; back in service, it is.
    let gpu_req = ResourceRequest::default().with(ResourceType::Gpu, "count", 1.0);
    let rt = rt();
    let err = rt
        .block_on(rm.allocate_resources("g", &gpu_req, None))
        .expect_err("in maintenance");
    assert!(err.to_string().contains("`gpu0` is maintenance"), "{err}");
    rm.set_resource_status("gpu0", ResourceStatus::Available)
        .expect("known");
    rt.block_on(rm.allocate_resources("g", &gpu_req, None))
        .expect("available again");
    assert!(
        rm.set_resource_status("nope", ResourceStatus::Available)
            .is_err()
    );
    let cpu = rm.get_resource("cpu0").expect("known");
    assert_eq!((cpu.id.as_str(), cpu.capacity["cores"]), ("cpu0", 4.0));
    assert!(rm.get_resource("nope").is_none());
    let g = rm.get_resource("gpu0").expect("known");
    assert_eq!(g.allocated["count"], 1.0);
    assert_eq!(g.current_users, vec!["g"]);
}

#[test]
fn get_user_allocations_lists_one_entry_per_resource() {
    let rm = ResourceManager::with_resources(vec![
        ResourceManager::resource("cpu0", ResourceType::Cpu, &[("cores", 4.0)]),
        ResourceManager::resource("mem0", ResourceType::Memory, &[("gb", 8.0)]),
    ])
    .expect("valid");
    let rt = rt();
    let both = cores(2.0).with(ResourceType::Memory, "gb", 3.0);
    let a = rt
        .block_on(rm.allocate_resources("u", &both, None))
        .expect("fits");
    rt.block_on(rm.allocate_resources("other", &cores(1.0), None))
        .expect("fits");
    let mine = rm.get_user_allocations("u");
    assert_eq!(mine.len(), 2);
    assert!(mine.iter().all(|e| e.allocation_id == a.id));
    let v = serde_json::to_value(&mine).expect("serializable");
    assert_eq!(v[0]["resource_id"], "cpu0");
    assert_eq!(v[0]["resource_type"], "cpu");
    assert_eq!(v[0]["allocated"]["cores"], 2.0);
    assert_eq!(v[1]["resource_name"], "mem0");
    assert_eq!(v[1]["allocated"]["gb"], 3.0);
    assert_eq!(v[1]["expires_at"], serde_json::Value::Null);
    assert!(rm.get_user_allocations("nobody").is_empty());
}
