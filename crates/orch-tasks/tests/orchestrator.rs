//! The seed's TaskOrchestrator API: the "Custom Task Orchestration" example and the task life cycle.

mod common;

use common::{params, rt};
use orch_model::{ErrorCode, ExecutionMode, TaskPriority, TaskStatus};
use orch_tasks::{OrchestratorConfig, TaskOptions, TaskOrchestrator};
use serde_json::json;
use std::time::Duration;

#[test]
fn the_seed_custom_task_orchestration_example_runs_for_real() {
    rt().block_on(async {
        let o = TaskOrchestrator::default();
        o.start_execution().expect("inside a runtime");
        let analysis = o
            .create_task(
                "analyze_code",
                "core",
                "set",
                TaskOptions {
                    parameters: params(json!({"value": {"issues": 3, "score": 8.5}})),
                    priority: TaskPriority::High,
                    ..TaskOptions::default()
                },
            )
            .expect("created");
        let chart = o
            .create_task(
                "create_chart",
                "core",
                "noop",
                TaskOptions {
                    parameters: params(
                        json!({"data": "${analyze_code.result}", "title": "Code Quality Metrics"}),
                    ),
                    dependencies: vec![analysis.id],
                    ..TaskOptions::default()
                },
            )
            .expect("created");
        assert!(o.wait_for_completion(Some(Duration::from_secs(30))).await);
        let stats = o.get_execution_stats();
        assert_eq!(
            (
                stats.total_tasks,
                stats.completed,
                stats.failed,
                stats.pending
            ),
            (2, 2, 0, 0)
        );
        let result = o.get_task_result(chart.id).expect("finished");
        assert!(result.success);
        assert_eq!(
            result.data,
            json!({"data": {"issues": 3, "score": 8.5}, "title": "Code Quality Metrics"})
        );
        let t = o.get_task(chart.id).expect("task");
        assert!(t.started_at.is_some() && t.completed_at.is_some() && t.ready_at.is_some());
        assert_eq!(t.attempts, 1);
    });
}

/// The same example with real work: `analyze_code` measures a directory with
/// `code.stats`, `create_chart` draws its result with `chart.bar`.
#[test]
fn the_seed_example_measures_code_and_charts_the_result() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("src")).expect("mkdir");
    std::fs::write(dir.path().join("src/a.py"), "# a\nx = 1\n\ny = 2\n").expect("write");
    std::fs::write(dir.path().join("src/b.rs"), "fn main() {}\n").expect("write");
    rt().block_on(async {
        let o = TaskOrchestrator::new(OrchestratorConfig {
            work_dir: dir.path().to_path_buf(),
            ..OrchestratorConfig::default()
        });
        o.start_execution().expect("inside a runtime");
        let analysis = o
            .create_task(
                "analyze_code",
                "code",
                "stats",
                TaskOptions {
                    parameters: params(json!({"path": "./src"})),
                    priority: TaskPriority::High,
                    ..TaskOptions::default()
                },
            )
            .expect("created");
        let chart = o
            .create_task(
                "create_chart",
                "chart",
                "bar",
                TaskOptions {
                    parameters: params(json!({
                        "data": "${analyze_code.result.code_by_language}",
                        "title": "Code Quality Metrics",
                        "output": "reports/quality.svg"
                    })),
                    dependencies: vec![analysis.id],
                    ..TaskOptions::default()
                },
            )
            .expect("created");
        assert!(o.wait_for_completion(Some(Duration::from_secs(30))).await);
        assert_eq!(o.get_execution_stats().completed, 2);
        let stats = o.get_task_result(analysis.id).expect("finished");
        assert_eq!(
            stats.data["code_by_language"],
            json!({"Python": 2, "Rust": 1})
        );
        let drawn = o.get_task_result(chart.id).expect("finished");
        assert!(drawn.success, "{drawn:?}");
        let svg = std::fs::read_to_string(dir.path().join("reports/quality.svg")).expect("svg");
        assert!(
            svg.contains(">Python</text>")
                && svg.contains(">Rust</text>")
                && svg.contains("Code Quality Metrics"),
            "{svg}"
        );
    });
}

#[test]
fn tasks_added_before_start_wait_and_failures_skip_dependents() {
    rt().block_on(async {
        let o = TaskOrchestrator::default();
        let bad = o
            .create_task(
                "bad",
                "core",
                "fail",
                TaskOptions {
                    parameters: params(json!({"retryable": false})),
                    ..TaskOptions::default()
                },
            )
            .expect("created");
        let after = o
            .create_task(
                "after",
                "core",
                "noop",
                TaskOptions {
                    dependencies: vec![bad.id],
                    ..TaskOptions::default()
                },
            )
            .expect("created");
        assert!(
            !o.wait_for_completion(Some(Duration::from_millis(100)))
                .await,
            "nothing runs before start_execution"
        );
        o.start_execution().expect("start");
        assert!(o.wait_for_completion(Some(Duration::from_secs(30))).await);
        assert_eq!(
            o.get_task(bad.id).map(|t| t.status),
            Some(TaskStatus::Failed)
        );
        assert_eq!(
            o.get_task(after.id).map(|t| t.status),
            Some(TaskStatus::Skipped)
        );
        let s = o.get_execution_stats();
        assert_eq!((s.failed, s.skipped), (1, 1));
    });
}

#[test]
fn one_slot_runs_ready_tasks_by_priority() {
    rt().block_on(async {
        let o = TaskOrchestrator::new(OrchestratorConfig {
            mode: ExecutionMode::Sequential,
            ..OrchestratorConfig::default()
        });
        let mut ids = Vec::new();
        for (name, p) in [
            ("low", TaskPriority::Low),
            ("crit", TaskPriority::Critical),
            ("norm", TaskPriority::Normal),
            ("high", TaskPriority::High),
        ] {
            ids.push(
                o.create_task(
                    name,
                    "core",
                    "sleep",
                    TaskOptions {
                        parameters: params(json!({"ms": 5})),
                        priority: p,
                        ..TaskOptions::default()
                    },
                )
                .expect("created"),
            );
        }
        o.start_execution().expect("start");
        assert!(o.wait_for_completion(Some(Duration::from_secs(30))).await);
        let mut tasks = o.list_tasks(Some(TaskStatus::Completed));
        tasks.sort_by_key(|t| t.started_at);
        let order: Vec<&str> = tasks.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(order, ["crit", "high", "norm", "low"]);
    });
}

#[test]
fn cancel_task_stops_a_running_process_and_a_pending_task_never_runs() {
    rt().block_on(async {
        let o = TaskOrchestrator::default();
        o.start_execution().expect("start");
        let long = o
            .create_task(
                "long",
                "shell",
                "exec",
                TaskOptions {
                    parameters: params(json!({"program": "sleep", "args": ["1000"]})),
                    ..TaskOptions::default()
                },
            )
            .expect("created");
        let next = o
            .create_task(
                "next",
                "core",
                "noop",
                TaskOptions {
                    dependencies: vec![long.id],
                    ..TaskOptions::default()
                },
            )
            .expect("created");
        // Wait (with a deadline) until the process runs.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while o.get_task(long.id).map(|t| t.status) != Some(TaskStatus::Running)
            && std::time::Instant::now() < deadline
        {
            tokio::task::yield_now().await;
        }
        assert!(o.cancel_task(long.id));
        assert!(o.wait_for_completion(Some(Duration::from_secs(30))).await);
        assert_eq!(
            o.get_task(long.id).map(|t| t.status),
            Some(TaskStatus::Cancelled)
        );
        assert_eq!(
            o.get_task(next.id).map(|t| t.status),
            Some(TaskStatus::Skipped)
        );
        assert!(
            !o.cancel_task(long.id),
            "a finished task cannot be cancelled again"
        );
    });
}

#[test]
fn bad_tasks_are_refused_when_created() {
    let o = TaskOrchestrator::default();
    let err = o
        .create_task(
            "x",
            "static_analysis",
            "analyze_code_quality",
            TaskOptions::default(),
        )
        .expect_err("unknown");
    assert_eq!(err.error_code(), ErrorCode::ModuleNotFound);
    let err = o
        .create_task("a/b", "core", "noop", TaskOptions::default())
        .expect_err("bad name");
    assert!(err.to_string().contains("path separator"), "{err}");
    let a = o
        .create_task("a", "core", "noop", TaskOptions::default())
        .expect("ok");
    let err = o
        .create_task("a", "core", "noop", TaskOptions::default())
        .expect_err("duplicate");
    assert!(err.to_string().contains("already exists"));
    let other = TaskOrchestrator::default()
        .create_task("z", "core", "noop", TaskOptions::default())
        .expect("ok");
    let err = o
        .create_task(
            "b",
            "core",
            "noop",
            TaskOptions {
                dependencies: vec![other.id],
                ..TaskOptions::default()
            },
        )
        .expect_err("foreign dependency");
    assert!(err.to_string().contains("must be created before"), "{err}");
    assert!(o.start_execution().is_err(), "no runtime here");
    let _ = a;
}

#[test]
fn execute_task_runs_one_task_directly() {
    rt().block_on(async {
        let o = TaskOrchestrator::default();
        let t = orch_model::Task::new("direct", "shell", "exec");
        let mut t = t;
        t.parameters = params(json!({"program": "echo", "args": ["hi"]}));
        let r = o.execute_task(&t).await;
        assert!(r.success, "{r:?}");
        assert_eq!(r.data["stdout"], "hi\n");
        let mut bad = orch_model::Task::new("bad", "shell", "exec");
        bad.parameters = params(json!({"program": "false"}));
        let r = o.execute_task(&bad).await;
        assert!(!r.success);
        assert_eq!(r.error_type.as_deref(), Some("ExitCode"));
    });
}

/// Issue 10 item 18: `Task::new("", "core", "noop")` is named `core.noop`
/// (the seed's default), which is no valid task name; the orchestrator gives
/// such tasks a valid name of their own, unique among its tasks.
#[test]
fn tasks_without_a_name_get_a_valid_unique_one() {
    rt().block_on(async {
        let o = TaskOrchestrator::default();
        let t = orch_model::Task::new("", "core", "noop");
        assert_eq!(t.name, "core.noop", "the seed's default");
        let first = o.add_task(t).expect("added under a valid name");
        let second = o
            .add_task(orch_model::Task::new("", "core", "noop"))
            .expect("a second one too");
        let third = o
            .create_task("", "core", "noop", TaskOptions::default())
            .expect("create_task as well");
        let names: Vec<String> = [first, second, third.id]
            .iter()
            .map(|id| o.get_task(*id).expect("known").name)
            .collect();
        assert_eq!(names, vec!["core_noop", "core_noop_2", "core_noop_3"]);
        assert_eq!(
            third.name, "core_noop_3",
            "create_task returns the stored task"
        );
        // The given names are usable in references.
        let uses = o
            .create_task(
                "uses",
                "core",
                "noop",
                TaskOptions {
                    parameters: params(json!({"from": "${core_noop_2.result}"})),
                    dependencies: vec![second],
                    ..TaskOptions::default()
                },
            )
            .expect("created");
        o.start_execution().expect("inside a runtime");
        let done = tokio::time::timeout(Duration::from_secs(30), o.wait_for_completion(None))
            .await
            .expect("finished in time");
        assert!(done);
        assert_eq!(o.get_execution_stats().completed, 4);
        assert!(o.get_task_result(uses.id).expect("finished").success);
    });
}

/// Issue 10 item 19: a task added after `stop_execution` stayed pending
/// forever and `wait_for_completion(None)` never returned. It is refused now,
/// with a message that says why and what to do.
#[test]
fn a_task_added_after_stop_execution_is_refused_and_waiting_returns() {
    rt().block_on(async {
        let o = TaskOrchestrator::default();
        o.start_execution().expect("inside a runtime");
        let before = o
            .create_task("before", "core", "noop", TaskOptions::default())
            .expect("created");
        o.stop_execution();
        let err = o
            .create_task("late", "core", "noop", TaskOptions::default())
            .expect_err("stopped");
        assert_eq!(err.error_code(), ErrorCode::InvalidState);
        assert!(
            err.to_string().contains("task `late` was not added"),
            "{err}"
        );
        assert!(err.to_string().contains("stop_execution"), "{err}");
        let err = o
            .add_task(orch_model::Task::new("late2", "core", "noop"))
            .expect_err("add_task too");
        assert_eq!(err.error_code(), ErrorCode::InvalidState);
        // A regression would hang here: the guard makes it fail instead.
        let done = tokio::time::timeout(Duration::from_secs(30), o.wait_for_completion(None))
            .await
            .expect("wait_for_completion returned");
        assert!(done);
        assert!(o.get_task(before.id).expect("known").status.is_terminal());
        assert_eq!(o.get_execution_stats().total_tasks, 1, "nothing was added");
    });
}

/// Stopping an orchestrator that never started cancels what it holds: no
/// driver would ever run those tasks, so waiting for them must not hang.
#[test]
fn stopping_before_starting_cancels_the_pending_tasks() {
    rt().block_on(async {
        let o = TaskOrchestrator::default();
        let t = o
            .create_task("never", "core", "noop", TaskOptions::default())
            .expect("created");
        o.stop_execution();
        let done = tokio::time::timeout(Duration::from_secs(30), o.wait_for_completion(None))
            .await
            .expect("wait_for_completion returned");
        assert!(done);
        assert_eq!(
            o.get_task(t.id).map(|t| t.status),
            Some(TaskStatus::Cancelled)
        );
    });
}

/// Issue 10 item 15: a resource's `limits.max_concurrent_users` is enforced
/// in `resource_aware` mode. Each task is a user of what it holds, so a limit
/// of 1 lets one task at a time hold the resource although its capacity
/// would fit all of them.
#[test]
fn max_concurrent_users_lets_one_task_at_a_time_hold_a_resource() {
    use orch_model::{ResourceRequest, ResourceType};
    use orch_resources::ResourceManager;
    use std::sync::Arc;
    rt().block_on(async {
        let mut lock =
            ResourceManager::resource("db", ResourceType::Database, &[("connections", 8.0)]);
        lock.limits.insert("max_concurrent_users".into(), json!(1));
        let rm = Arc::new(ResourceManager::with_resources(vec![lock]).expect("valid"));
        let o = TaskOrchestrator::new(OrchestratorConfig {
            mode: ExecutionMode::ResourceAware,
            max_parallel_tasks: 4,
            resources: Some(rm.clone()),
            ..OrchestratorConfig::default()
        });
        let ids: Vec<_> = (0..3)
            .map(|i| {
                o.create_task(
                    &format!("q{i}"),
                    "shell",
                    "exec",
                    TaskOptions {
                        parameters: params(json!({"program": "sleep", "args": ["0.1"]})),
                        resources: ResourceRequest::default().with(
                            ResourceType::Database,
                            "connections",
                            1.0,
                        ),
                        ..TaskOptions::default()
                    },
                )
                .expect("created")
                .id
            })
            .collect();
        o.start_execution().expect("inside a runtime");
        let done = tokio::time::timeout(Duration::from_secs(60), o.wait_for_completion(None))
            .await
            .expect("finished in time");
        assert!(done);
        let mut spans: Vec<_> = ids
            .iter()
            .map(|id| {
                let t = o.get_task(*id).expect("known");
                assert_eq!(t.status, TaskStatus::Completed, "{t:?}");
                (
                    t.started_at.expect("started"),
                    t.completed_at.expect("finished"),
                )
            })
            .collect();
        spans.sort();
        for w in spans.windows(2) {
            assert!(w[0].1 <= w[1].0, "two tasks held `db` at once: {spans:?}");
        }
        assert_eq!(rm.get_resource("db").expect("db").current_users.len(), 0);
    });
}

/// In `resource_aware` mode a task that does not fit because someone outside
/// the orchestrator holds the resource (a session, another run) starts once
/// they release it; before, only the end of one of the orchestrator's own
/// tasks made it look again, so it waited forever.
#[test]
fn a_task_blocked_by_an_outside_holder_starts_when_they_release() {
    use orch_model::{ResourceRequest, ResourceType};
    use orch_resources::ResourceManager;
    use std::sync::Arc;
    rt().block_on(async {
        let mut db =
            ResourceManager::resource("db", ResourceType::Database, &[("connections", 8.0)]);
        db.limits.insert("max_concurrent_users".into(), json!(1));
        let rm = Arc::new(
            ResourceManager::with_resources(vec![
                ResourceManager::resource("cpu", ResourceType::Cpu, &[("cores", 2.0)]),
                db,
            ])
            .expect("valid"),
        );
        let cores = rm
            .allocate_resources(
                "outside",
                &ResourceRequest::default().with(ResourceType::Cpu, "cores", 2.0),
                None,
            )
            .await
            .expect("all cores");
        let conn = rm
            .allocate_resources(
                "outside",
                &ResourceRequest::default().with(ResourceType::Database, "connections", 1.0),
                None,
            )
            .await
            .expect("the one user slot");
        let o = TaskOrchestrator::new(OrchestratorConfig {
            mode: ExecutionMode::ResourceAware,
            resources: Some(rm.clone()),
            ..OrchestratorConfig::default()
        });
        let needs = |kind, unit| TaskOptions {
            resources: ResourceRequest::default().with(kind, unit, 1.0),
            ..TaskOptions::default()
        };
        let a = o
            .create_task("a", "core", "noop", needs(ResourceType::Cpu, "cores"))
            .expect("created");
        let b = o
            .create_task(
                "b",
                "core",
                "noop",
                needs(ResourceType::Database, "connections"),
            )
            .expect("created");
        o.start_execution().expect("inside a runtime");
        assert!(
            !o.wait_for_completion(Some(Duration::from_millis(200)))
                .await,
            "nothing fits while the outside holder holds everything"
        );
        assert!(rm.deallocate_resources("outside", Some(&[cores.id, conn.id])));
        let done = tokio::time::timeout(Duration::from_secs(30), o.wait_for_completion(None))
            .await
            .expect("the blocked tasks started after the release");
        assert!(done);
        for id in [a.id, b.id] {
            assert_eq!(
                o.get_task(id).map(|t| t.status),
                Some(TaskStatus::Completed)
            );
        }
    });
}

#[test]
fn a_long_chain_grows_while_it_runs_and_a_bad_reference_fails_at_release() {
    rt().block_on(async {
        let o = TaskOrchestrator::default();
        o.start_execution().expect("start");
        // Each task passes the count on: released one by one as its
        // dependency ends, some added after their dependency finished.
        let mut prev = o
            .create_task(
                "n0",
                "core",
                "set",
                TaskOptions {
                    parameters: params(json!({"value": 0})),
                    ..TaskOptions::default()
                },
            )
            .expect("created");
        for k in 1..=2000 {
            if k % 500 == 0 {
                assert!(o.wait_for_completion(Some(Duration::from_secs(30))).await);
            }
            prev = o
                .create_task(
                    &format!("n{k}"),
                    "core",
                    "set",
                    TaskOptions {
                        parameters: params(json!({"value": format!("${{n{}.result}}", k - 1)})),
                        dependencies: vec![prev.id],
                        ..TaskOptions::default()
                    },
                )
                .expect("created");
        }
        let bad = o
            .create_task(
                "bad",
                "core",
                "noop",
                TaskOptions {
                    parameters: params(json!({"x": "${n2000.result.missing}"})),
                    dependencies: vec![prev.id],
                    ..TaskOptions::default()
                },
            )
            .expect("created");
        assert!(o.wait_for_completion(Some(Duration::from_secs(60))).await);
        assert_eq!(
            o.get_task_result(prev.id).map(|r| r.data),
            Some(json!(0)),
            "the value went through 2000 releases"
        );
        let failed = o.get_task(bad.id).expect("bad");
        assert_eq!(failed.status, TaskStatus::Failed);
        let r = failed.result.expect("a result");
        assert_eq!(r.error_type.as_deref(), Some("ReferenceError"));
        let s = o.get_execution_stats();
        assert_eq!((s.completed, s.failed, s.skipped), (2001, 1, 0));
    });
}
