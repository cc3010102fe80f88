//! OrchestrationEngine: the seed's integration examples, sessions and their rules, status, health, shutdown.

mod common;

use common::{drain, four_cores_file, params, rt};
use orch_engine::{EngineConfig, EngineEvent, OrchestrationEngine, SessionOptions, SessionStatus};
use orch_model::{
    ErrorCode, ExecutionMode, HealthStatus, ResourceRequest, ResourceType, Task, Workflow,
    WorkflowStep,
};
use orch_resources::ResourceManager;
use serde_json::{Map, Value, json};
use std::path::Path;
use std::time::Duration;

/// An engine in `dir` with fixed resources (4 cores, 8 GB), so figures do not depend on the machine.
fn engine(dir: &Path) -> OrchestrationEngine {
    let res = dir.join("resources.json");
    ResourceManager::with_resources(vec![
        ResourceManager::resource("cpu0", ResourceType::Cpu, &[("cores", 4.0)]),
        ResourceManager::resource("mem0", ResourceType::Memory, &[("gb", 8.0)]),
    ])
    .expect("resources")
    .save(&res)
    .expect("saved");
    OrchestrationEngine::builder()
        .home(dir.join("home"))
        .work_dir(dir)
        .config(EngineConfig {
            resource_config: Some(res),
            ..EngineConfig::default()
        })
        .build()
        .expect("engine")
}

/// Adds workflow `long`: one step that sleeps 30 s in a process.
fn add_long(engine: &OrchestrationEngine) {
    engine
        .workflow_manager()
        .add_workflow(
            &Workflow::new("long", "").step(
                WorkflowStep::new("z", "shell", "exec")
                    .param("program", json!("sleep"))
                    .param("args", json!(["30"])),
            ),
        )
        .expect("added");
}

/// The most `start`-type events open at once, pairing each with its `end`.
fn max_open(events: &[EngineEvent], start: &str, end: &[&str]) -> usize {
    let (mut open, mut max) = (0usize, 0usize);
    for e in events {
        if e.kind() == start {
            open += 1;
            max = max.max(open);
        } else if end.contains(&e.kind()) {
            open = open.saturating_sub(1);
        }
    }
    max
}

fn redact(v: &mut Value, dir: &str) {
    match v {
        Value::Object(m) => {
            for (k, x) in m.iter_mut() {
                if k == "timestamp"
                    || k.ends_with("_at")
                    || k == "uptime_seconds"
                    || k == "average_workflow_seconds"
                {
                    *x = json!("[redacted]");
                } else {
                    redact(x, dir);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| redact(x, dir)),
        Value::String(s) if s.contains(dir) => *s = s.replace(dir, "[dir]"),
        _ => {}
    }
}

#[test]
fn the_seeds_basic_workflow_example_runs_ai_analysis_for_real() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("src")).expect("mkdir");
    std::fs::write(
        dir.path().join("src/app.py"),
        "import os\n\n# main\nprint(os.name)\n",
    )
    .expect("write");
    let engine = engine(dir.path());
    let result = rt()
        .block_on(engine.execute_workflow(
            "ai-analysis",
            None,
            // The seed's own parameters: code_path="./src", output_path="./reports",
            // ai_provider="openai" (plus a filter, so that only the one file counts).
            params(json!({
                "code_path": "./src",
                "output_path": "./reports",
                "ai_provider": "openai",
                "include": ["*.py"]
            })),
        ))
        .expect("ran");
    assert!(result.success, "{result:?}");
    assert_eq!(result.executed_steps, 4);
    assert!(result.failed_steps.is_empty() && result.error.is_none());
    assert_eq!(result.results["target"], "./src");
    assert_eq!(result.results["stats"]["code"], 2);
    let report = std::fs::read_to_string(dir.path().join("reports/analysis.md")).expect("report");
    assert!(
        report.contains("Sources in `./src`: 1 files") && report.contains("asked for: openai"),
        "{report}"
    );
    assert!(result.execution_time > 0.0);
    assert!(dir.path().join("reports/analysis.md").is_file());
    assert!(dir.path().join("reports/code-by-language.svg").is_file());
    let json = serde_json::to_value(&result).expect("json");
    let keys: Vec<&str> = json
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        vec![
            "success",
            "session_id",
            "executed_steps",
            "failed_steps",
            "results",
            "execution_time"
        ]
    );
    // The one-off session was closed after the run.
    let s = engine.get_session(&result.session_id).expect("session");
    assert_eq!(s.status, SessionStatus::Closed);
}

#[test]
fn a_failed_run_is_a_result_and_unknown_names_are_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = engine(dir.path());
    engine
        .workflow_manager()
        .add_workflow(
            &Workflow::new("f", "").step(
                WorkflowStep::new("boom", "core", "fail")
                    .param("message", json!("nope"))
                    .param("retryable", json!(false)),
            ),
        )
        .expect("added");
    let rt = rt();
    let r = rt
        .block_on(engine.execute_workflow("f", None, Map::new()))
        .expect("result");
    assert!(!r.success);
    assert_eq!(r.failed_steps, vec!["boom"]);
    assert_eq!(r.error.as_deref(), Some("step(s) boom failed; first: nope"));
    let e = rt
        .block_on(engine.execute_workflow("nosuch", None, Map::new()))
        .expect_err("unknown");
    assert_eq!(e.error_code(), ErrorCode::WorkflowNotFound);
    let resp = serde_json::to_value(e.to_response()).expect("json");
    assert_eq!(resp["success"], false);
    assert_eq!(resp["error_code"], "WORKFLOW_NOT_FOUND");
}

#[test]
fn the_seeds_project_example_runs_through_the_engine() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = engine(dir.path());
    let pm = engine.project_manager();
    pm.create_project(
        "chatbot-analysis",
        Some("ai_analysis"),
        None,
        orch_projects::CreateOptions::default(),
    )
    .expect("created");
    // The seed's call: data_path="./conversations", focus_areas=[...]; the
    // conversations (here two Python files) are measured instead of src/.
    let conv = dir
        .path()
        .join("home/projects/chatbot-analysis/conversations");
    std::fs::create_dir_all(&conv).expect("mkdir");
    std::fs::write(conv.join("a.py"), "x = 1\n# note\n").expect("write");
    std::fs::write(conv.join("b.py"), "y = 2\n").expect("write");
    let r = rt()
        .block_on(engine.execute_project_workflow(
            "chatbot-analysis",
            "ai-analysis",
            None,
            params(json!({
                "data_path": "./conversations",
                "focus_areas": ["sentiment", "intent", "quality"]
            })),
        ))
        .expect("ran");
    assert!(r.success, "{r:?}");
    assert_eq!(r.results["target"], "./conversations");
    assert_eq!(
        (&r.results["stats"]["files"], &r.results["stats"]["code"]),
        (&json!(2), &json!(2))
    );
    let report = std::fs::read_to_string(
        dir.path()
            .join("home/projects/chatbot-analysis/reports/analysis.md"),
    )
    .expect("report");
    assert!(
        report.contains("`./conversations`: 2 files") && report.contains("intent"),
        "{report}"
    );
    pm.add_project_milestone(
        "chatbot-analysis",
        "initial_analysis_complete",
        &json!({"quality_score": 8.5}),
    )
    .expect("milestone");
    assert!(
        dir.path()
            .join("home/projects/chatbot-analysis/reports/analysis.md")
            .is_file()
    );
}

#[test]
fn a_sequential_session_never_overlaps_tasks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = engine(dir.path());
    let mut wf = Workflow::new("wide", "");
    for i in 0..6 {
        wf = wf.step(WorkflowStep::new(format!("s{i}"), "core", "sleep").param("ms", json!(20)));
    }
    engine.workflow_manager().add_workflow(&wf).expect("added");
    let sid = engine
        .create_session(SessionOptions {
            mode: ExecutionMode::Sequential,
            max_parallel_tasks: Some(8),
            ..SessionOptions::default()
        })
        .expect("session");
    let mut rx = engine.subscribe();
    let r = rt()
        .block_on(engine.execute_workflow("wide", Some(&sid), Map::new()))
        .expect("ran");
    assert!(r.success);
    let events = drain(&mut rx);
    assert_eq!(
        events.iter().filter(|e| e.kind() == "task_started").count(),
        6
    );
    assert_eq!(
        max_open(&events, "task_started", &["task_completed", "task_failed"]),
        1
    );
    // The same workflow in a parallel session does overlap: the check can fail.
    let sid = engine
        .create_session(SessionOptions::default())
        .expect("session");
    let _ = drain(&mut rx);
    rt().block_on(engine.execute_workflow("wide", Some(&sid), Map::new()))
        .expect("ran");
    assert!(
        max_open(
            &drain(&mut rx),
            "task_started",
            &["task_completed", "task_failed"]
        ) > 1
    );
}

#[test]
fn a_resource_aware_session_never_exceeds_its_resources() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = engine(dir.path());
    let mut wf = Workflow::new("cpu", "");
    for i in 0..8 {
        wf = wf.step(
            WorkflowStep::new(format!("s{i}"), "core", "sleep")
                .param("ms", json!(30))
                .resources(ResourceRequest::default().with(ResourceType::Cpu, "cores", 1.0)),
        );
    }
    engine.workflow_manager().add_workflow(&wf).expect("added");
    let sid = engine
        .create_session(SessionOptions {
            mode: ExecutionMode::ResourceAware,
            max_parallel_tasks: Some(8),
            resource_requirements: ResourceRequest::default().with(ResourceType::Cpu, "cores", 2.0),
            ..SessionOptions::default()
        })
        .expect("session");
    // The session holds 2 of the engine's 4 cores while it lives.
    let usage = engine.resource_manager().get_resource_usage(Some("cpu0"));
    assert_eq!(usage["allocated"]["cores"], 2.0, "{usage}");
    let mut rx = engine.subscribe();
    let r = rt()
        .block_on(engine.execute_workflow("cpu", Some(&sid), Map::new()))
        .expect("ran");
    assert!(r.success, "{r:?}");
    let events = drain(&mut rx);
    assert_eq!(
        events
            .iter()
            .filter(|e| e.kind() == "task_completed")
            .count(),
        8
    );
    let most = max_open(&events, "task_started", &["task_completed", "task_failed"]);
    assert!(
        (1..=2).contains(&most),
        "at most 2 one-core tasks at once, saw {most}"
    );
    // Closing the session gives the cores back.
    assert!(engine.close_session(&sid));
    let usage = engine.resource_manager().get_resource_usage(Some("cpu0"));
    assert_eq!(usage["allocated"]["cores"], 0.0, "{usage}");
}

#[test]
fn max_parallel_workflows_is_never_exceeded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = engine(dir.path());
    engine
        .workflow_manager()
        .add_workflow(
            &Workflow::new("nap", "")
                .step(WorkflowStep::new("z", "core", "sleep").param("ms", json!(40))),
        )
        .expect("added");
    let sid = engine
        .create_session(SessionOptions {
            max_parallel_workflows: 2,
            ..SessionOptions::default()
        })
        .expect("session");
    let mut rx = engine.subscribe();
    let rt = rt();
    let results = rt.block_on(async {
        let runs: Vec<_> = (0..5)
            .map(|_| {
                let e = engine.clone();
                tokio::spawn(async move { e.execute_workflow("nap", Some(&sid), Map::new()).await })
            })
            .collect();
        let mut out = Vec::new();
        for r in runs {
            out.push(r.await.expect("joined").expect("ran"));
        }
        out
    });
    assert!(results.iter().all(|r| r.success));
    let events = drain(&mut rx);
    assert_eq!(
        events
            .iter()
            .filter(|e| e.kind() == "workflow_started")
            .count(),
        5
    );
    assert_eq!(
        max_open(&events, "workflow_started", &["workflow_completed"]),
        2
    );
    assert_eq!(
        engine
            .get_session(&sid)
            .expect("session")
            .workflows_executed,
        5
    );
}

#[test]
fn a_session_timeout_stops_its_work_and_ends_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = engine(dir.path());
    add_long(&engine);
    let sid = engine
        .create_session(SessionOptions {
            timeout_seconds: Some(1),
            ..SessionOptions::default()
        })
        .expect("session");
    let t = std::time::Instant::now();
    let r = rt()
        .block_on(engine.execute_workflow("long", Some(&sid), Map::new()))
        .expect("result");
    assert!(!r.success);
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "stopped at the session's timeout"
    );
    assert!(
        r.error.as_deref().unwrap_or_default().contains("timeout"),
        "{r:?}"
    );
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(
        engine.get_session(&sid).expect("session").status,
        SessionStatus::Expired
    );
    let e = rt()
        .block_on(engine.execute_workflow("long", Some(&sid), Map::new()))
        .expect_err("expired");
    assert_eq!(e.error_code(), ErrorCode::InvalidState);
}

#[test]
fn session_resources_are_held_until_the_session_closes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = engine(dir.path());
    let all = ResourceRequest::default().with(ResourceType::Memory, "gb", 8.0);
    let opts = SessionOptions {
        resource_requirements: all,
        ..SessionOptions::default()
    };
    let a = engine.create_session(opts.clone()).expect("first");
    let e = engine
        .create_session(opts.clone())
        .expect_err("memory is taken");
    assert_eq!(e.error_code(), ErrorCode::ResourceUnavailable);
    assert!(engine.close_session(&a));
    assert!(!engine.close_session(&a), "already closed");
    engine.create_session(opts).expect("free again");
}

#[test]
fn events_reach_handlers_and_unknown_types_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = engine(dir.path());
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let s2 = seen.clone();
    engine
        .register_handler("session_created", move |e| {
            s2.lock().expect("lock").push(e.kind())
        })
        .expect("registered");
    engine
        .register_handler("*", |_| panic!("a broken handler"))
        .expect("registered");
    let e = engine
        .register_handler("session_opened", |_| {})
        .expect_err("unknown");
    assert!(
        e.to_string().contains("session_created, session_closed"),
        "{e}"
    );
    engine
        .create_session(SessionOptions::default())
        .expect("session");
    assert_eq!(*seen.lock().expect("lock"), vec!["session_created"]);
}

#[test]
fn status_and_health_have_the_seeds_shapes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = engine(dir.path());
    engine
        .register_handler("task_failed", |_| {})
        .expect("handler");
    engine
        .create_session(SessionOptions::default())
        .expect("session");
    let mut status = serde_json::to_value(engine.get_system_status()).expect("json");
    let d = dir.path().display().to_string();
    redact(&mut status, &d);
    status["performance"] = json!("[present]");
    assert_eq!(
        status,
        json!({
            "timestamp": "[redacted]",
            "orchestration_engine": {"active_sessions": 1, "event_handlers": {"task_failed": 1}},
            "workflow_manager": {"total_workflows": 5, "running_workflows": 0},
            "task_orchestrator": {"total_tasks": 0, "pending": 0, "running": 0, "completed": 0, "failed": 0},
            "project_manager": {"total_projects": 0, "by_status": {}, "by_type": {}, "recent_activity": [],
                                "templates": ["ai_analysis", "data_pipeline", "web_application"]},
            "resource_manager": {
                "total_resources": 2,
                "total_allocations": 0,
                "resources_by_type": {"cpu": 1, "memory": 1, "disk": 0, "network": 0, "file": 0, "database": 0,
                                      "external_api": 0, "gpu": 0, "queue": 0, "lock": 0, "semaphore": 0},
                "utilization_summary": {"cpu": 0.0, "memory": 0.0}
            },
            "performance": "[present]"
        })
    );
    let mut health = serde_json::to_value(engine.health_check()).expect("json");
    redact(&mut health, &d);
    assert_eq!(
        health,
        json!({
            "overall_status": "healthy",
            "timestamp": "[redacted]",
            "components": {
                "workflow_manager": {"status": "healthy", "details": {"workflows_dir": "[dir]/home/workflows", "total_workflows": 5, "invalid_definitions": 0, "running_workflows": 0}},
                "task_orchestrator": {"status": "healthy", "details": {"accepting_work": true, "running_workflows": 0, "tasks_completed": 0, "tasks_failed": 0}},
                "project_manager": {"status": "healthy", "details": {"projects_dir": "[dir]/home/projects", "total_projects": 0, "templates": 3, "problems": 0}},
                "resource_manager": {"status": "healthy", "details": {
                    "cpu0": {"status": "available", "utilization": {"cores": 0.0}, "users": 0, "healthy": true},
                    "mem0": {"status": "available", "utilization": {"gb": 0.0}, "users": 0, "healthy": true}
                }}
            },
            "issues": []
        })
    );
}

#[test]
fn health_degrades_for_real_reasons_with_one_line_each() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = engine(dir.path());
    std::fs::create_dir_all(dir.path().join("home/workflows")).expect("mkdir");
    std::fs::write(
        dir.path().join("home/workflows/bad.yaml"),
        "name: bad\nsteps: 3\n",
    )
    .expect("write");
    // A session holding 95 % of the memory.
    engine
        .create_session(SessionOptions {
            resource_requirements: ResourceRequest::default().with(ResourceType::Memory, "gb", 7.6),
            ..SessionOptions::default()
        })
        .expect("session");
    let h = engine.health_check();
    assert_eq!(h.overall_status, HealthStatus::Degraded);
    assert_eq!(h.components.workflow_manager.status, HealthStatus::Degraded);
    assert_eq!(h.components.resource_manager.status, HealthStatus::Degraded);
    assert_eq!(h.components.project_manager.status, HealthStatus::Healthy);
    assert_eq!(h.issues.len(), 2, "{:?}", h.issues);
    assert!(
        h.issues[0].starts_with("workflow_manager: definition does not load: ")
            && h.issues[0].contains("bad.yaml:2:8"),
        "{}",
        h.issues[0]
    );
    assert_eq!(
        h.issues[1],
        "resource_manager: Resource mem0 is over 90% utilized"
    );
}

#[test]
fn health_is_unhealthy_when_a_directory_cannot_be_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = engine(dir.path());
    assert_eq!(engine.health_check().overall_status, HealthStatus::Healthy);
    // The projects directory replaced by a file: projects cannot be listed.
    let projects = engine.project_manager().projects_dir().to_path_buf();
    let _ = std::fs::remove_dir_all(&projects);
    std::fs::create_dir_all(projects.parent().expect("parent")).expect("mkdir");
    std::fs::write(&projects, "not a directory").expect("write");
    let h = engine.health_check();
    assert_eq!(h.overall_status, HealthStatus::Unhealthy);
    assert_eq!(h.components.project_manager.status, HealthStatus::Unhealthy);
    assert_eq!(h.components.workflow_manager.status, HealthStatus::Healthy);
    assert_eq!(h.issues.len(), 1, "{:?}", h.issues);
    assert!(
        h.issues[0].starts_with("project_manager: cannot list projects directory"),
        "{}",
        h.issues[0]
    );
}

#[test]
fn metrics_count_what_ran() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = engine(dir.path());
    let wm = engine.workflow_manager();
    wm.add_workflow(
        &Workflow::new("ok", "")
            .step(WorkflowStep::new("a", "core", "noop"))
            .step(WorkflowStep::new("b", "core", "noop").after("a")),
    )
    .expect("added");
    wm.add_workflow(
        &Workflow::new("bad", "")
            .step(WorkflowStep::new("boom", "core", "fail").param("retryable", json!(false))),
    )
    .expect("added");
    let rt = rt();
    assert!(
        rt.block_on(engine.execute_workflow("ok", None, Map::new()))
            .expect("ran")
            .success
    );
    assert!(
        !rt.block_on(engine.execute_workflow("bad", None, Map::new()))
            .expect("ran")
            .success
    );
    let m = engine.get_metrics();
    assert_eq!(
        (
            m.workflows_executed,
            m.workflows_succeeded,
            m.workflows_failed,
            m.workflows_running,
            m.tasks_completed,
            m.tasks_failed,
            m.sessions_created
        ),
        (2, 1, 1, 0, 2, 1, 2)
    );
    assert!(m.average_workflow_seconds > 0.0 && m.uptime_seconds > 0.0);
}

#[test]
fn shutdown_waits_then_stops_what_runs_and_refuses_new_work() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = engine(dir.path());
    add_long(&engine);
    engine
        .workflow_manager()
        .add_workflow(
            &Workflow::new("short", "")
                .step(WorkflowStep::new("z", "core", "sleep").param("ms", json!(50))),
        )
        .expect("added");
    let rt = rt();
    let (clean, long, short) = rt.block_on(async {
        let e1 = engine.clone();
        let long = tokio::spawn(async move { e1.execute_workflow("long", None, Map::new()).await });
        let e2 = engine.clone();
        let short =
            tokio::spawn(async move { e2.execute_workflow("short", None, Map::new()).await });
        tokio::time::sleep(Duration::from_millis(200)).await;
        let t = std::time::Instant::now();
        // Grace enough for the 50 ms run on a loaded machine, far less than the long one's 30 s.
        let clean = engine.shutdown(Duration::from_secs(3)).await;
        assert!(t.elapsed() < Duration::from_secs(10));
        (
            clean,
            long.await.expect("joined"),
            short.await.expect("joined"),
        )
    });
    assert!(!clean, "the long run had to be cancelled");
    assert!(!long.expect("result").success);
    assert!(
        short.expect("result").success,
        "the short run finished before the deadline"
    );
    let e = rt
        .block_on(engine.execute_workflow("short", None, Map::new()))
        .expect_err("refused");
    assert_eq!(e.error_code(), ErrorCode::InvalidState);
    assert_eq!(
        engine.health_check().components.task_orchestrator.status,
        HealthStatus::Degraded
    );
}

#[test]
fn a_workflow_waiting_for_its_session_slot_does_not_start_after_shutdown() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = engine(dir.path());
    add_long(&engine);
    let mut rx = engine.subscribe();
    let rt = rt();
    let (first, second) = rt.block_on(async {
        // One workflow slot: the second run waits for the first.
        let sid = engine
            .create_session(SessionOptions {
                max_parallel_workflows: 1,
                ..SessionOptions::default()
            })
            .expect("session");
        let (e1, e2) = (engine.clone(), engine.clone());
        let first =
            tokio::spawn(async move { e1.execute_workflow("long", Some(&sid), Map::new()).await });
        tokio::time::sleep(Duration::from_millis(150)).await;
        let second =
            tokio::spawn(async move { e2.execute_workflow("long", Some(&sid), Map::new()).await });
        tokio::time::sleep(Duration::from_millis(150)).await;
        engine.shutdown(Duration::from_millis(200)).await;
        (first.await.expect("joined"), second.await.expect("joined"))
    });
    assert!(
        !first.expect("a result").success,
        "the running one was cancelled"
    );
    let e = second.expect_err("the waiting one is refused");
    assert_eq!(e.error_code(), ErrorCode::InvalidState, "{e}");
    let started = drain(&mut rx)
        .iter()
        .filter(|e| e.kind() == "workflow_started")
        .count();
    assert_eq!(started, 1, "only the first workflow ever started");
}

#[test]
fn execute_task_runs_one_action() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = engine(dir.path());
    let mut t = Task::new("t", "core", "set");
    t.parameters = params(json!({"value": 5}));
    let r = rt().block_on(engine.execute_task(&t));
    assert!(r.success);
    assert_eq!(r.data, json!(5));
    let r = rt().block_on(engine.execute_task(&Task::new("u", "nosuch", "x")));
    assert!(!r.success);
    // It works in the engine's directory, not the process's.
    let mut w = Task::new("w", "fs", "write");
    w.parameters = params(json!({"path": "out.txt", "content": "hi"}));
    let r = rt().block_on(engine.execute_task(&w));
    assert!(r.success, "{r:?}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("out.txt")).expect("written there"),
        "hi"
    );
    // After shutdown, nothing runs.
    rt().block_on(engine.shutdown(std::time::Duration::from_secs(1)));
    let mut late = Task::new("late", "fs", "write");
    late.parameters = params(json!({"path": "late.txt", "content": "no"}));
    let r = rt().block_on(engine.execute_task(&late));
    assert!(
        !r.success && r.error_type.as_deref() == Some("InvalidState"),
        "{r:?}"
    );
    assert!(!dir.path().join("late.txt").exists());
}

#[cfg(not(feature = "postgres"))]
#[test]
fn a_postgres_store_is_not_in_a_build_without_the_feature() {
    let e = OrchestrationEngine::builder()
        .config(EngineConfig {
            store_url: Some("postgres://localhost/orch".into()),
            ..EngineConfig::default()
        })
        .build()
        .expect_err("unsupported");
    assert!(e.to_string().contains("not supported"), "{e}");
    assert!(e.to_string().contains("`postgres` feature"), "{e}");
}

/// With the feature, `postgres://` reaches the PostgreSQL backend (a bad
/// option is its error, found before any connection is tried).
#[cfg(feature = "postgres")]
#[test]
fn a_postgres_url_reaches_the_postgres_backend() {
    let e = OrchestrationEngine::builder()
        .config(EngineConfig {
            store_url: Some("postgresql://localhost/orch?pool_size=0".into()),
            ..EngineConfig::default()
        })
        .build()
        .expect_err("bad option");
    assert!(e.to_string().contains("pool_size=0"), "{e}");
}

#[test]
fn the_seeds_api_examples_for_sessions_and_projects_work() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = engine(dir.path());
    // create_session(user_id="analyst", mode="resource_aware", max_parallel_tasks=8,
    //                resource_requirements={"cpu": {"cores": 4}, "memory": {"gb": 8}})
    let opts: SessionOptions = serde_json::from_value(json!({
        "user_id": "analyst",
        "mode": "resource_aware",
        "max_parallel_tasks": 8,
        "resource_requirements": {"cpu": {"cores": 4}, "memory": {"gb": 8}}
    }))
    .expect("the seed's keyword arguments");
    let sid = engine.create_session(opts).expect("session");
    let s = engine.get_session(&sid).expect("session");
    assert_eq!(
        (
            s.user_id.as_str(),
            s.mode,
            s.max_parallel_tasks,
            s.max_parallel_workflows
        ),
        ("analyst", ExecutionMode::ResourceAware, 8, 2)
    );
    assert_eq!(
        engine.resource_manager().get_resource_usage(None)["total_allocations"],
        1
    );
    let e =
        serde_json::from_value::<SessionOptions>(json!({"user": "x"})).expect_err("unknown key");
    assert!(e.to_string().contains("unknown field `user`"), "{e}");
    // create_project("web-app-analysis", template_name="web_application", description=..., author=...)
    let p = engine
        .project_manager()
        .create_project(
            "web-app-analysis",
            Some("web_application"),
            None,
            orch_projects::CreateOptions {
                description: "Analysis of web application code".into(),
                author: "Development Team".into(),
                ..orch_projects::CreateOptions::default()
            },
        )
        .expect("project");
    assert_eq!(p.project_type, orch_model::ProjectType::WebApplication);
    assert_eq!(p.author, "Development Team");
    assert!(Path::new(&p.path).join("deploy/README.md").is_file());
    assert!(engine.close_session(&sid));
    assert_eq!(
        engine.resource_manager().get_resource_usage(None)["total_allocations"],
        0
    );
}

#[test]
fn expired_sessions_give_their_resources_back_every_cleanup_interval() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = rt();
    let res = four_cores_file(dir.path());
    // Built inside the runtime, the engine sweeps in the background.
    let engine = rt.block_on(async {
        OrchestrationEngine::builder()
            .home(dir.path().join("home"))
            .config(EngineConfig {
                resource_config: Some(res),
                cleanup_interval: Some(1),
                ..EngineConfig::default()
            })
            .build()
            .expect("engine")
    });
    engine
        .create_session(SessionOptions {
            timeout_seconds: Some(1),
            resource_requirements: ResourceRequest::default().with(ResourceType::Cpu, "cores", 3.0),
            ..SessionOptions::default()
        })
        .expect("session");
    let allocations =
        || engine.resource_manager().get_resource_usage(None)["total_allocations"].clone();
    assert_eq!(allocations(), 1);
    let mut released = false;
    for _ in 0..60 {
        std::thread::sleep(Duration::from_millis(100));
        if allocations() == 0 {
            released = true;
            break;
        }
    }
    assert!(
        released,
        "the sweep released the expired session's cores without any engine call"
    );
}

#[test]
fn sessions_are_recorded_in_the_store_and_outlive_the_engine() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = rt();
    let (kept, one_off) = {
        let engine = engine(dir.path());
        engine
            .workflow_manager()
            .add_workflow(&Workflow::new("w", "").step(WorkflowStep::new("a", "core", "noop")))
            .expect("added");
        let kept = engine
            .create_session(SessionOptions {
                user_id: "ana".into(),
                ..SessionOptions::default()
            })
            .expect("session");
        let r = rt
            .block_on(engine.execute_workflow("w", Some(&kept), Map::new()))
            .expect("ran");
        assert!(r.success);
        let one_off = rt
            .block_on(engine.execute_workflow("w", None, Map::new()))
            .expect("ran")
            .session_id;
        assert!(engine.close_session(&kept));
        (kept, one_off)
    };
    // A new engine on the same store (the default, $ORCH_HOME/orch.db) sees both.
    let engine = engine(dir.path());
    let history = rt.block_on(engine.session_history()).expect("history");
    let seen: Vec<(orch_model::SessionId, &str, SessionStatus, u64)> = history
        .iter()
        .map(|s| {
            (
                s.session_id,
                s.user_id.as_str(),
                s.status,
                s.workflows_executed,
            )
        })
        .collect();
    assert!(
        seen.contains(&(kept, "ana", SessionStatus::Closed, 1)),
        "{seen:?}"
    );
    assert!(
        seen.iter()
            .any(|&(id, _, st, n)| id == one_off && st == SessionStatus::Closed && n == 1),
        "{seen:?}"
    );
    assert_eq!(history.len(), 2);
    assert!(
        engine.get_session(&kept).is_none(),
        "a new engine's live sessions start empty"
    );
}
