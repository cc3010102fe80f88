//! `orch mcp` as an MCP client sees it: the real binary spoken to over
//! stdio (newline-delimited JSON-RPC 2.0): initialize, the tools and their
//! schemas, each tool called, an unknown tool, bad arguments, a workflow
//! created by one tool and run by the next, a long run returned by id and
//! read back; standard output carries protocol messages only.

mod common;

use common::{orch_cmd, run};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::Duration;

/// A client of one `orch mcp` process.
struct Client {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    /// Every line the server wrote, in order.
    seen: Vec<String>,
    next_id: u64,
}

impl Client {
    fn start(dir: &Path, extra: &[&str]) -> Self {
        let mut child = orch_cmd(dir)
            .arg("mcp")
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("orch mcp starts");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stdin = child.stdin.take();
        Self {
            child,
            stdin,
            lines,
            seen: Vec::new(),
            next_id: 1,
        }
    }

    fn send(&mut self, msg: &Value) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{msg}").expect("write");
        stdin.flush().expect("flush");
    }

    /// Sends a request and waits (60 s at most) for the response of its id.
    fn request(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        self.send(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
        loop {
            let line = self
                .lines
                .recv_timeout(Duration::from_secs(60))
                .unwrap_or_else(|e| {
                    panic!("no response to {method} ({e}); so far: {:?}", self.seen)
                });
            self.seen.push(line.clone());
            let v: Value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {line}"));
            assert_eq!(v["jsonrpc"], json!("2.0"), "{line}");
            if v["id"] == json!(id) {
                return v;
            }
        }
    }

    /// `tools/call`: the result (`structuredContent`, `isError`) or the JSON-RPC error.
    fn call(&mut self, tool: &str, args: Value) -> Value {
        self.request("tools/call", json!({"name": tool, "arguments": args}))
    }

    /// The `data` of a successful tool call.
    fn ok(&mut self, tool: &str, args: Value) -> Value {
        let r = self.call(tool, args);
        let res = &r["result"];
        assert_eq!(res["isError"], json!(false), "{tool}: {r}");
        let s = &res["structuredContent"];
        assert_eq!(s["success"], json!(true), "{tool}: {r}");
        // The same result as text, for clients that read only `content`.
        let text = res["content"][0]["text"].as_str().expect("text content");
        let parsed: Value = serde_json::from_str(text).expect("text is the JSON result");
        assert_eq!(&parsed, s);
        s["data"].clone()
    }

    /// The error response of a tool error (`isError: true`).
    fn tool_error(&mut self, tool: &str, args: Value) -> Value {
        let r = self.call(tool, args);
        assert_eq!(r["result"]["isError"], json!(true), "{tool}: {r}");
        r["result"]["structuredContent"].clone()
    }

    /// Closes stdin and waits for the exit: exit code, stderr, and every
    /// line written to stdout.
    fn finish(self) -> (i32, String, Vec<String>) {
        let Client {
            child,
            stdin,
            lines,
            mut seen,
            ..
        } = self;
        drop(stdin);
        let out = child.wait_with_output().expect("exits");
        // The reader ends at the end of stdout, after the last line.
        seen.extend(lines.iter());
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).into_owned(),
            seen,
        )
    }
}

fn initialize(c: &mut Client) -> Value {
    let init = c.request(
        "initialize",
        json!({"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "test", "version": "1"}}),
    );
    c.send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
    init
}

#[test]
fn an_mcp_client_uses_every_tool_over_stdio() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = Client::start(dir.path(), &[]);
    let init = initialize(&mut c);
    let r = &init["result"];
    assert_eq!(r["protocolVersion"], json!("2025-06-18"), "{init}");
    assert_eq!(r["serverInfo"]["name"], json!("orch"));
    assert!(r["capabilities"]["tools"].is_object(), "{init}");
    assert_eq!(c.request("ping", json!({}))["result"], json!({}));

    // The tools and their schemas.
    let list = c.request("tools/list", json!({}));
    let tools = list["result"]["tools"].as_array().expect("tools").clone();
    let names: Vec<&str> = tools.iter().filter_map(|t| t["name"].as_str()).collect();
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
        "release_resources",
    ] {
        assert!(names.contains(&want), "{want} not in {names:?}");
    }
    for t in &tools {
        assert_eq!(t["inputSchema"]["type"], json!("object"), "{t}");
        assert!(
            t["description"].as_str().is_some_and(|d| !d.is_empty()),
            "{t}"
        );
    }
    let et = tools
        .iter()
        .find(|t| t["name"] == "execute_task")
        .expect("execute_task");
    for p in [
        "task_name",
        "name",
        "module",
        "action",
        "priority",
        "timeout_seconds",
        "retry_count",
    ] {
        assert!(
            et["inputSchema"]["properties"].get(p).is_some(),
            "{p}: {et}"
        );
    }

    // A workflow created by one tool is found by the next.
    let created = c.ok(
        "create_workflow",
        json!({"name": "hello", "steps": [{"name": "greet", "module": "core", "action": "set", "parameters": {"value": "hi"}}]}),
    );
    assert_eq!(created["steps_count"], json!(1));
    let listed = c.ok("list_workflows", json!({}));
    assert!(
        listed["workflows"]
            .as_array()
            .expect("list")
            .iter()
            .any(|w| w["name"] == "hello"),
        "{listed}"
    );
    let run = c.ok("execute_workflow", json!({"workflow_name": "hello"}));
    assert_eq!(run["status"], json!("success"), "{run}");
    assert_eq!(run["workflow_results"]["greet"], json!("hi"));

    // A long run returns its id at once; get_run reads it back.
    c.ok(
        "create_workflow",
        json!({"name": "slow", "steps": [{"name": "nap", "module": "core", "action": "sleep", "parameters": {"ms": 1500}}]}),
    );
    let started = c.ok(
        "execute_workflow",
        json!({"workflow_name": "slow", "wait": false}),
    );
    assert_eq!(started["status"], json!("running"), "{started}");
    let id = started["run_id"].clone();
    // The server answers other calls while the run goes on.
    assert_eq!(c.request("ping", json!({}))["result"], json!({}));
    let done = c.ok("get_run", json!({"run_id": id, "wait_seconds": 30}));
    assert_eq!(done["status"], json!("success"), "{done}");
    assert_eq!(done["run_id"], id);

    // Complex workflows, tasks, projects, status, health, resources.
    let cx = c.ok(
        "create_complex_workflow",
        json!({"name": "cx", "workflow_definition": {"steps": [
            {"name": "a", "module": "core", "action": "set", "parameters": {"value": 2}},
            {"name": "b", "module": "core", "action": "noop"}
        ], "dependencies": {"b": ["a"]}}}),
    );
    assert_eq!(cx["status"], json!("success"), "{cx}");
    let t = c.ok(
        "execute_task",
        json!({"task_name": "t", "module": "core", "action": "set", "parameters": {"value": 5}}),
    );
    assert_eq!(t["status"], json!("completed"), "{t}");
    assert_eq!(t["result"], json!(5));
    let p = c.ok(
        "create_project",
        json!({"project_name": "demo", "template_name": "ai_analysis"}),
    );
    assert_eq!(p["project_id"], json!("demo"));
    let lp = c.ok("list_projects", json!({}));
    assert_eq!(lp["count"], json!(1));
    let mp = c.ok(
        "manage_project",
        json!({"project_name": "demo", "operation": "milestone", "parameters": {"name": "m1"}}),
    );
    assert!(mp["project_status"]["milestones"]["m1"].is_object(), "{mp}");
    let st = c.ok("get_system_status", json!({}));
    assert!(st["overall_status"].is_string(), "{st}");
    assert_eq!(
        st["workflow_manager"]["total_workflows"]
            .as_u64()
            .map(|n| n >= 2),
        Some(true),
        "{st}"
    );
    let h = c.ok("get_health_status", json!({}));
    assert!(h["components"].is_object(), "{h}");
    let al = c.ok(
        "allocate_resources",
        json!({"user_id": "me", "requirements": {"cpu": {"cores": 0.1}}}),
    );
    let rel = c.ok(
        "release_resources",
        json!({"user_id": "me", "allocation_ids": [al["allocation_id"]]}),
    );
    assert_eq!(rel["released"], json!(true));
    c.ok(
        "create_workflow",
        json!({"name": "long", "steps": [{"name": "nap", "module": "core", "action": "sleep", "parameters": {"ms": 60000}}]}),
    );
    let long = c.ok(
        "execute_workflow",
        json!({"workflow_name": "long", "wait": false}),
    );
    let cancelled = c.ok("cancel_run", json!({"run_id": long["run_id"]}));
    assert_eq!(cancelled["cancel_requested"], json!(true));
    let ended = c.ok(
        "get_run",
        json!({"run_id": long["run_id"], "wait_seconds": 30}),
    );
    assert_eq!(ended["status"], json!("cancelled"), "{ended}");

    // Tool errors carry the documented codes.
    let e = c.tool_error("execute_workflow", json!({"workflow_name": "missing"}));
    assert_eq!(e["error_code"], json!("WORKFLOW_NOT_FOUND"), "{e}");
    let e = c.tool_error("create_project", json!({"name": "demo"}));
    assert_eq!(e["error_code"], json!("PROJECT_EXISTS"), "{e}");

    // An unknown tool and bad arguments are JSON-RPC errors -32602.
    let r = c.call("no_such_tool", json!({}));
    assert_eq!(r["error"]["code"], json!(-32602), "{r}");
    assert!(
        r["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("Unknown tool")),
        "{r}"
    );
    let r = c.call("execute_workflow", json!({"workflow_nam": "hello"}));
    assert_eq!(r["error"]["code"], json!(-32602), "{r}");
    assert!(
        r["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("workflow_nam")),
        "{r}"
    );
    let r = c.call("execute_task", json!({"task_name": "x", "module": "core"}));
    assert_eq!(r["error"]["code"], json!(-32602), "{r}");
    assert!(
        r["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("`action`")),
        "{r}"
    );
    // An unknown method.
    let r = c.request("no/such/method", json!({}));
    assert_eq!(r["error"]["code"], json!(-32601), "{r}");

    // The client leaves: the server ends cleanly; stdout held only protocol messages.
    let (code, stderr, seen) = c.finish();
    assert_eq!(code, 0, "stderr: {stderr}");
    assert!(stderr.contains("MCP server on stdio"), "{stderr}");
    for line in &seen {
        let v: Value = serde_json::from_str(line).expect("JSON");
        assert_eq!(v["jsonrpc"], json!("2.0"), "{line}");
    }
}

#[test]
fn orch_mcp_takes_store_and_config() {
    let dir = tempfile::tempdir().expect("tempdir");
    let wf_dir = dir.path().join("flows");
    std::fs::create_dir(&wf_dir).expect("mkdir");
    std::fs::write(
        wf_dir.join("given.json"),
        r#"{"name": "given", "steps": [{"name": "s", "module": "core", "action": "set", "parameters": {"value": 1}}]}"#,
    )
    .expect("write");
    let config = dir.path().join("orch.json");
    std::fs::write(&config, format!(r#"{{"workflows_dir": {:?}}}"#, wf_dir)).expect("write");
    let config = config.display().to_string();
    let (code, help, _) = run(dir.path(), &["mcp", "--help"]);
    assert_eq!(code, 0);
    assert!(help.contains("Model Context Protocol"), "{help}");
    let mut c = Client::start(dir.path(), &["--store", "memory://", "--config", &config]);
    initialize(&mut c);
    let listed = c.ok("list_workflows", json!({}));
    assert!(
        listed["workflows"]
            .as_array()
            .expect("list")
            .iter()
            .any(|w| w["name"] == "given"),
        "{listed}"
    );
    let run = c.ok("execute_workflow", json!({"workflow_name": "given"}));
    assert_eq!(run["status"], json!("success"), "{run}");
    let (code, stderr, _) = c.finish();
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("memory://"), "{stderr}");
    // Nothing was recorded in the default SQLite store.
    assert!(!dir.path().join(".orch").join("orch.db").exists());
}
