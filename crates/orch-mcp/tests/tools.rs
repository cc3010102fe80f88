//! Every tool called through the server's handler, on one engine.

use orch_engine::OrchestrationEngine;
use orch_mcp::{INVALID_PARAMS, McpServer, ToolOutcome};
use serde_json::{Map, Value, json};

fn server(dir: &std::path::Path) -> McpServer {
    let engine = OrchestrationEngine::builder()
        .home(dir)
        .work_dir(dir)
        .build()
        .expect("engine");
    McpServer::new(engine)
}

fn args(v: Value) -> Option<Map<String, Value>> {
    v.as_object().cloned()
}

async fn call(s: &McpServer, tool: &str, a: Value) -> ToolOutcome {
    s.call_tool(tool, args(a))
        .await
        .unwrap_or_else(|e| panic!("{tool}: refused: {e}"))
}

/// The `data` of a successful call.
async fn ok(s: &McpServer, tool: &str, a: Value) -> Value {
    let out = call(s, tool, a).await;
    assert!(!out.is_error, "{tool}: {}", out.value);
    assert_eq!(out.value["success"], json!(true));
    assert_eq!(out.value["metadata"]["tool"], json!(tool));
    out.value["data"].clone()
}

/// The error response of a tool error.
async fn fails(s: &McpServer, tool: &str, a: Value) -> Value {
    let out = call(s, tool, a).await;
    assert!(out.is_error, "{tool} should fail: {}", out.value);
    assert_eq!(out.value["success"], json!(false));
    out.value
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tools_list_every_documented_tool_with_its_schema() {
    let tools = McpServer::tools();
    let names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    for want in [
        "execute_workflow",
        "create_workflow",
        "list_workflows",
        "create_project",
        "list_projects",
        "execute_task",
        "get_system_status",
        "get_health_status",
        "allocate_resources",
        "create_complex_workflow",
        "manage_project",
        "get_run",
        "cancel_run",
    ] {
        assert!(names.contains(&want), "{want} missing from {names:?}");
    }
    let ew = tools
        .iter()
        .find(|t| t.name == "execute_workflow")
        .expect("execute_workflow");
    let schema = Value::Object((*ew.input_schema).clone());
    for p in [
        "workflow_name",
        "parameters",
        "session_id",
        "mode",
        "timeout_seconds",
        "resource_requirements",
        "priority",
    ] {
        assert!(schema["properties"].get(p).is_some(), "{p}: {schema}");
    }
    assert_eq!(
        schema["properties"]["mode"]["enum"],
        json!(["sequential", "parallel", "resource_aware"])
    );
    let cp = tools
        .iter()
        .find(|t| t.name == "create_project")
        .expect("create_project");
    let schema = Value::Object((*cp.input_schema).clone());
    for p in [
        "project_name",
        "name",
        "template_name",
        "template",
        "project_path",
        "path",
    ] {
        assert!(schema["properties"].get(p).is_some(), "{p}: {schema}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workflow_created_by_one_tool_is_found_and_run_by_the_next() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = server(dir.path());
    let created = ok(
        &s,
        "create_workflow",
        json!({"name": "hello", "description": "greets", "steps": [
            {"name": "greet", "module": "core", "action": "set", "parameters": {"value": "hi"}},
            {"name": "echo", "module": "core", "action": "noop", "parameters": {"got": "${greet.result}"}, "dependencies": ["greet"]}
        ]}),
    )
    .await;
    assert_eq!(created["steps_count"], json!(2));
    assert_eq!(created["execution_order"], json!([["greet"], ["echo"]]));
    let listed = ok(&s, "list_workflows", json!({})).await;
    let names: Vec<&str> = listed["workflows"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|w| w["name"].as_str())
        .collect();
    assert!(names.contains(&"hello"), "{listed}");
    // The original code's name for the argument (`name`) works too.
    let run = ok(
        &s,
        "execute_workflow",
        json!({"name": "hello", "mode": "sequential"}),
    )
    .await;
    assert_eq!(run["status"], json!("success"), "{run}");
    assert_eq!(run["workflow_results"]["greet"], json!("hi"));
    assert_eq!(run["workflow_results"]["echo"]["got"], json!("hi"));
    assert_eq!(run["steps_completed"], json!(2));
    assert_eq!(run["steps_total"], json!(2));
    // The same name again is refused unless replaced.
    let again = fails(
        &s,
        "create_workflow",
        json!({"name": "hello", "steps": [{"name": "a", "module": "core", "action": "noop"}]}),
    )
    .await;
    assert_eq!(again["error_code"], json!("ALREADY_EXISTS"), "{again}");
    ok(
        &s,
        "create_workflow",
        json!({"workflow_name": "hello", "overwrite": true, "steps": [{"name": "a", "module": "core", "action": "noop"}]}),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_definitions_and_unknown_workflows_are_tool_errors_with_codes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = server(dir.path());
    let e = fails(
        &s,
        "create_workflow",
        json!({"name": "bad", "steps": [
            {"name": "a", "module": "core", "action": "noop", "dependencies": ["b"]},
            {"name": "b", "module": "core", "action": "noop", "dependencies": ["a"]}
        ]}),
    )
    .await;
    assert_eq!(e["error_code"], json!("CYCLE_DETECTED"), "{e}");
    let e = fails(
        &s,
        "create_workflow",
        json!({"name": "bad", "steps": [{"name": "a", "module": "nosuch", "action": "x"}]}),
    )
    .await;
    assert_eq!(e["error_code"], json!("MODULE_NOT_FOUND"), "{e}");
    let e = fails(&s, "execute_workflow", json!({"workflow_name": "missing"})).await;
    assert_eq!(e["error_code"], json!("WORKFLOW_NOT_FOUND"), "{e}");
    assert!(
        e["suggestions"].as_array().is_some_and(|a| !a.is_empty()),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_step_is_a_result_with_status_failure() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = server(dir.path());
    ok(
        &s,
        "create_workflow",
        json!({"name": "boom", "steps": [{"name": "f", "module": "core", "action": "fail", "parameters": {"message": "broken"}}]}),
    )
    .await;
    let run = ok(&s, "execute_workflow", json!({"workflow_name": "boom"})).await;
    assert_eq!(run["status"], json!("failure"), "{run}");
    assert!(
        run["error_message"]
            .as_str()
            .is_some_and(|m| m.contains("broken")),
        "{run}"
    );
    assert_eq!(run["metrics"]["steps_failed"], json!(1));
    assert_eq!(run["step_reports"][0]["name"], json!("f"));
    assert_eq!(run["step_reports"][0]["status"], json!("failed"));
    assert_eq!(run["step_reports"][0]["error_message"], json!("broken"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_run_returns_its_id_at_once_and_get_run_reads_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = server(dir.path());
    ok(
        &s,
        "create_workflow",
        json!({"name": "slow", "steps": [{"name": "nap", "module": "core", "action": "sleep", "parameters": {"ms": 1500}}]}),
    )
    .await;
    let started = ok(
        &s,
        "execute_workflow",
        json!({"workflow_name": "slow", "wait": false}),
    )
    .await;
    assert_eq!(started["status"], json!("running"), "{started}");
    let id = started["run_id"].as_str().expect("run_id").to_owned();
    let now = ok(&s, "get_run", json!({"run_id": id})).await;
    assert_eq!(now["status"], json!("running"), "{now}");
    let done = ok(&s, "get_run", json!({"run_id": id, "wait_seconds": 30})).await;
    assert_eq!(done["status"], json!("success"), "{done}");
    assert_eq!(done["run_id"], json!(id));
    // A run that is cancelled.
    ok(
        &s,
        "create_workflow",
        json!({"name": "long", "steps": [{"name": "nap", "module": "core", "action": "sleep", "parameters": {"ms": 60000}}]}),
    )
    .await;
    let started = ok(
        &s,
        "execute_workflow",
        json!({"workflow_name": "long", "wait_seconds": 0.2}),
    )
    .await;
    assert_eq!(started["status"], json!("running"), "{started}");
    let id = started["run_id"].as_str().expect("run_id").to_owned();
    let c = ok(&s, "cancel_run", json!({"run_id": id})).await;
    assert_eq!(c["cancel_requested"], json!(true), "{c}");
    let done = ok(&s, "get_run", json!({"run_id": id, "wait_seconds": 30})).await;
    assert_eq!(done["status"], json!("cancelled"), "{done}");
    let e = fails(&s, "get_run", json!({"run_id": "not-a-run"})).await;
    assert_eq!(e["error_code"], json!("NOT_FOUND"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn complex_workflows_run_from_data() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = server(dir.path());
    let run = ok(
        &s,
        "create_complex_workflow",
        json!({"name": "cx", "workflow_definition": {
            "steps": [
                {"name": "a", "module": "core", "action": "set", "parameters": {"value": 1}},
                {"name": "b", "module": "core", "action": "noop", "parameters": {"x": "${a.result}"}}
            ],
            "dependencies": {"b": ["a"]}
        }}),
    )
    .await;
    assert_eq!(run["status"], json!("success"), "{run}");
    assert_eq!(run["workflow"], json!("cx"));
    assert_eq!(run["workflow_results"]["b"]["x"], json!(1));
    let e = fails(
        &s,
        "create_complex_workflow",
        json!({"name": "cx", "workflow_definition": {"steps": [{"name": "a", "module": "core", "action": "noop"}], "dependencies": {"zz": ["a"]}}}),
    )
    .await;
    assert_eq!(e["error_code"], json!("INVALID_PARAMETERS"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn projects_are_created_listed_and_managed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = server(dir.path());
    // The original code's names: `name`, `template`.
    let p = ok(
        &s,
        "create_project",
        json!({"name": "demo", "template": "ai_analysis", "description": "d", "tags": ["x"], "config_overrides": {"owner": "me"}}),
    )
    .await;
    assert_eq!(p["status"], json!("created"));
    assert_eq!(p["project_id"], json!("demo"));
    assert_eq!(p["template_used"], json!("ai_analysis"));
    assert!(
        p["files_created"].as_array().is_some_and(|f| !f.is_empty()),
        "{p}"
    );
    assert_eq!(p["workflow_executed"], json!(false));
    let e = fails(&s, "create_project", json!({"project_name": "demo"})).await;
    assert_eq!(e["error_code"], json!("PROJECT_EXISTS"), "{e}");
    let list = ok(&s, "list_projects", json!({})).await;
    assert_eq!(list["count"], json!(1));
    assert_eq!(list["projects"][0]["name"], json!("demo"));
    let st = ok(
        &s,
        "manage_project",
        json!({"project_name": "demo", "operation": "status"}),
    )
    .await;
    assert_eq!(st["project_status"]["name"], json!("demo"));
    let up = ok(
        &s,
        "manage_project",
        json!({"name": "demo", "operation": "update", "parameters": {"status": "active", "metrics": {"coverage": 0.8}}}),
    )
    .await;
    assert_eq!(up["project_status"]["status"], json!("active"), "{up}");
    assert_eq!(up["project_status"]["metrics"]["coverage"], json!(0.8));
    let m = ok(
        &s,
        "manage_project",
        json!({"project_name": "demo", "operation": "milestone", "parameters": {"name": "mvp", "data": {"score": 9}}}),
    )
    .await;
    assert_eq!(
        m["project_status"]["milestones"]["mvp"]["score"],
        json!(9),
        "{m}"
    );
    let e = fails(
        &s,
        "manage_project",
        json!({"project_name": "demo", "operation": "update", "parameters": {"colour": "red"}}),
    )
    .await;
    assert_eq!(e["error_code"], json!("INVALID_PARAMETERS"), "{e}");
    let out = dir.path().join("demo.tar.gz");
    let a = ok(
        &s,
        "manage_project",
        json!({"project_name": "demo", "operation": "archive", "parameters": {"output": out}}),
    )
    .await;
    assert_eq!(a["project_status"]["status"], json!("archived"), "{a}");
    assert!(out.is_file());
    let e = fails(
        &s,
        "manage_project",
        json!({"project_name": "nope", "operation": "status"}),
    )
    .await;
    assert_eq!(e["error_code"], json!("NOT_FOUND"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_run_with_their_dependencies() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = server(dir.path());
    let a = ok(
        &s,
        "execute_task",
        json!({"task_name": "first", "module": "core", "action": "set", "parameters": {"value": 7}, "priority": "high"}),
    )
    .await;
    assert_eq!(a["status"], json!("completed"), "{a}");
    assert_eq!(a["result"], json!(7));
    let id = a["task_id"].as_str().expect("task_id").to_owned();
    // The original code's `name`; a dependency on the first task.
    let b = ok(
        &s,
        "execute_task",
        json!({"name": "second", "module": "core", "action": "noop", "dependencies": [id], "retry_count": 1}),
    )
    .await;
    assert_eq!(b["status"], json!("completed"), "{b}");
    assert_eq!(b["dependencies_satisfied"], json!(true));
    let f = ok(
        &s,
        "execute_task",
        json!({"task_name": "bad", "module": "core", "action": "fail", "parameters": {"message": "no"}}),
    )
    .await;
    assert_eq!(f["status"], json!("failed"), "{f}");
    let fid = f["task_id"].as_str().expect("task_id").to_owned();
    let c = ok(
        &s,
        "execute_task",
        json!({"task_name": "after", "module": "core", "action": "noop", "dependencies": [fid]}),
    )
    .await;
    assert_eq!(c["dependencies_satisfied"], json!(false), "{c}");
    assert_eq!(c["error_type"], json!("DependencyFailed"));
    let e = fails(
        &s,
        "execute_task",
        json!({"task_name": "x", "module": "core", "action": "noop", "dependencies": ["unknown"]}),
    )
    .await;
    assert_eq!(e["error_code"], json!("NOT_FOUND"), "{e}");
    // A long task returns its id; get_run reads it.
    let t = ok(
        &s,
        "execute_task",
        json!({"task_name": "nap", "module": "core", "action": "sleep", "parameters": {"ms": 800}, "wait": false}),
    )
    .await;
    assert_eq!(t["status"], json!("running"), "{t}");
    let done = ok(
        &s,
        "get_run",
        json!({"run_id": t["task_id"], "wait_seconds": 30}),
    )
    .await;
    assert_eq!(done["status"], json!("completed"), "{done}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_health_and_resources() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = server(dir.path());
    let st = ok(
        &s,
        "get_system_status",
        json!({"include_active_sessions": true, "time_range_hours": 1}),
    )
    .await;
    for k in [
        "overall_status",
        "timestamp",
        "orchestration_engine",
        "workflow_manager",
        "task_orchestrator",
        "project_manager",
        "resource_manager",
        "performance_metrics",
        "issues",
        "recommendations",
    ] {
        assert!(st.get(k).is_some(), "{k}: {st}");
    }
    assert_eq!(
        st["performance_metrics"]["recent_runs"]["time_range_hours"],
        json!(1.0)
    );
    let h = ok(&s, "get_health_status", json!({})).await;
    assert!(h["overall_status"].is_string(), "{h}");
    assert!(h["components"]["resource_manager"].is_object(), "{h}");
    let al = ok(
        &s,
        "allocate_resources",
        json!({"user_id": "u1", "requirements": {"cpu": {"cores": 0.5}}}),
    )
    .await;
    assert!(al["allocated"]["cpu"].is_string(), "{al}");
    let rel = ok(
        &s,
        "release_resources",
        json!({"user_id": "u1", "allocation_ids": [al["allocation_id"]]}),
    )
    .await;
    assert_eq!(rel["released"], json!(true));
    let e = fails(
        &s,
        "allocate_resources",
        json!({"user_id": "u1", "requirements": {"cpu": {"cores": 1.0e9}}}),
    )
    .await;
    assert_eq!(e["error_code"], json!("RESOURCE_UNAVAILABLE"), "{e}");
    let e = fails(
        &s,
        "allocate_resources",
        json!({"user_id": "u1", "requirements": {"cpu": "lots"}}),
    )
    .await;
    assert_eq!(e["error_code"], json!("INVALID_PARAMETERS"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_tools_and_bad_arguments_are_invalid_params() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = server(dir.path());
    let cases = [
        ("no_such_tool", json!({}), "Unknown tool: no_such_tool"),
        (
            "execute_workflow",
            json!({}),
            "missing the required argument `workflow_name` (or `name`)",
        ),
        (
            "execute_workflow",
            json!({"workflow_name": 3}),
            "must be a string",
        ),
        (
            "execute_workflow",
            json!({"workflow_name": "w", "mode": "fast"}),
            "one of sequential",
        ),
        (
            "execute_workflow",
            json!({"workflow_name": "w", "timeout_seconds": -1}),
            "greater than 0",
        ),
        (
            "create_workflow",
            json!({"name": "w", "steps": {}}),
            "must be an array",
        ),
        (
            "manage_project",
            json!({"project_name": "p", "operation": "delete"}),
            "one of status, update",
        ),
        ("list_projects", json!({"all": true}), "takes no arguments"),
    ];
    for (tool, a, want) in cases {
        let e = s
            .call_tool(tool, args(a.clone()))
            .await
            .expect_err("refused");
        assert_eq!(e.code, INVALID_PARAMS, "{tool} {a}");
        assert!(e.message.contains(want), "{tool} {a}: {}", e.message);
    }
}

/// `get_health_status` lists the store's workers, as `orch health` does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_lists_the_workers_of_the_store() {
    let dir = tempfile::tempdir().expect("dir");
    let s = server(dir.path());
    let h = ok(&s, "get_health_status", json!({})).await;
    assert!(h.get("workers").is_none(), "no worker yet: {h}");
    let w = s
        .engine()
        .worker(orch_engine::WorkerOptions {
            id: "mcp-test-worker".into(),
            ..orch_engine::WorkerOptions::default()
        })
        .expect("a worker");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let listed = loop {
        let h = ok(&s, "get_health_status", json!({})).await;
        if let Some(ws) = h.get("workers").and_then(Value::as_array) {
            break ws.clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the worker never showed: {h}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert!(
        listed[0].to_string().contains("mcp-test-worker"),
        "{listed:?}"
    );
    w.stop();
    w.join().await.expect("the worker stops");
}
