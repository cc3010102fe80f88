//! The HTTP API over real HTTP on loopback: every route, auth, bad bodies, size limits, unknown ids, path parameters, CORS, cancellation, and a run followed to its end over Server-Sent Events.

use orch_engine::{EngineConfig, OrchestrationEngine};
use orch_server::{ROUTES, ServerConfig, Token};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A server on an ephemeral loopback port, stopped when dropped.
struct Server {
    addr: SocketAddr,
    token: String,
    home: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

async fn start(config: ServerConfig) -> Server {
    let home = tempfile::tempdir().expect("tempdir");
    let cfg = EngineConfig {
        store_url: Some("memory://".into()),
        ..EngineConfig::default()
    };
    let engine = OrchestrationEngine::builder()
        .config(cfg)
        .home(home.path())
        .work_dir(home.path())
        .build()
        .expect("engine");
    let token = Token::load_or_create(home.path()).expect("token");
    let value = token.value().to_owned();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(orch_server::serve(engine, token, config, listener, async {
        let _ = rx.await;
    }));
    Server {
        addr,
        token: value,
        home,
        stop: Some(tx),
    }
}

/// An answer: status, headers (lowercase names) and body.
#[derive(Debug)]
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", self.status, self.body))
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
    /// An error answer has the seed's ErrorResponse shape.
    fn error(&self, status: u16, code: &str) -> Value {
        assert_eq!(self.status, status, "{}", self.body);
        let v = self.json();
        assert_eq!(v["success"], json!(false), "{v}");
        assert_eq!(v["error_code"], json!(code), "{v}");
        assert!(v["error"].as_str().is_some_and(|s| !s.is_empty()), "{v}");
        assert!(
            v["suggestions"].is_array() && v["details"].is_object(),
            "{v}"
        );
        v
    }
}

/// Sends one request (HTTP/1.1, `Connection: close`) and reads the whole answer.
async fn raw(addr: SocketAddr, head: &str, body: &[u8]) -> Resp {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(head.as_bytes()).await.expect("write");
    s.write_all(body).await.expect("write body");
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), s.read_to_end(&mut buf))
        .await
        .expect("answer within a minute")
        .expect("read");
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a head");
    let head = String::from_utf8_lossy(&buf[..split]).into_owned();
    let rest = &buf[split + 4..];
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .expect("status");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked {
        dechunk(rest)
    } else {
        rest.to_vec()
    };
    Resp {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// The body of a chunked answer.
fn dechunk(mut s: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = s.windows(2).position(|w| w == b"\r\n") {
        let size = String::from_utf8_lossy(&s[..eol]);
        let n = usize::from_str_radix(size.trim(), 16).expect("chunk size");
        if n == 0 {
            break;
        }
        let data = &s[eol + 2..];
        out.extend_from_slice(&data[..n]);
        s = data[n..].strip_prefix(b"\r\n").unwrap_or(&data[n..]);
    }
    out
}

impl Server {
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Resp {
        self.send(method, path, Some(&self.token), body, &[]).await
    }

    async fn send(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
        extra: &[(&str, &str)],
    ) -> Resp {
        let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        self.send_bytes(method, path, token, &bytes, extra).await
    }

    async fn send_bytes(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: &[u8],
        extra: &[(&str, &str)],
    ) -> Resp {
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n",
            self.addr,
            body.len()
        );
        if !body.is_empty() {
            head.push_str("Content-Type: application/json\r\n");
        }
        if let Some(t) = token {
            head.push_str(&format!("Authorization: Bearer {t}\r\n"));
        }
        for (k, v) in extra {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        raw(self.addr, &head, body).await
    }
}

const GREET: &str = "name: greet\nsteps:\n  - name: hello\n    module: shell\n    action: exec\n    parameters: { program: echo, args: [\"hi there\"] }\n  - name: after\n    module: core\n    action: set\n    parameters: { value: 42 }\n    dependencies: [hello]\n";

/// A scheduled workflow whose step returns its `${schedule.time}`.
const HOURLY: &str = "name: hourly\nschedule: {every: 1h}\nsteps:\n  - name: at\n    module: core\n    action: set\n    parameters: { value: \"${schedule.time}\" }\n";

/// Every route of the table, called over HTTP; the test fails when a route
/// is added without being called here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_answers_over_http() {
    let s = start(ServerConfig::default()).await;
    let hit = std::cell::RefCell::new(BTreeSet::new());
    let call = async |m: &str, template: &str, path: &str, body: Option<Value>| {
        hit.borrow_mut().insert(format!("{m} {template}"));
        s.call(m, path, body).await
    };

    let r = s.send("GET", "/health", None, None, &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    hit.borrow_mut().insert("GET /health".into());
    assert_eq!(r.json()["overall_status"], json!("healthy"));
    let doc = call("GET", "/openapi.json", "/openapi.json", None)
        .await
        .json();
    assert_eq!(doc["openapi"], json!("3.1.0"));
    let ops: usize = doc["paths"]
        .as_object()
        .expect("paths")
        .values()
        .map(|p| p.as_object().map_or(0, serde_json::Map::len))
        .sum();
    assert_eq!(ops, ROUTES.len());
    let st = call("GET", "/status", "/status", None).await.json();
    assert_eq!(st["store"]["backend"], json!("memory"), "{st}");
    let res = call("GET", "/resources", "/resources", None).await.json();
    assert!(res["resources"].is_array(), "{res}");
    // Given no metrics renderer (tests/metrics.rs gives one): not supported.
    call("GET", "/metrics", "/metrics", None)
        .await
        .error(501, "NOT_SUPPORTED");

    // Sessions.
    let created = call(
        "POST",
        "/sessions",
        "/sessions",
        Some(json!({"mode": "sequential"})),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let sid = created.json()["session_id"]
        .as_str()
        .expect("id")
        .to_owned();
    let one = call("GET", "/sessions/{id}", &format!("/sessions/{sid}"), None).await;
    assert_eq!(one.json()["mode"], json!("sequential"), "{}", one.body);
    let list = call("GET", "/sessions", "/sessions", None).await.json();
    assert!(
        list["sessions"].as_array().is_some_and(|a| !a.is_empty()),
        "{list}"
    );
    let closed = call(
        "DELETE",
        "/sessions/{id}",
        &format!("/sessions/{sid}"),
        None,
    )
    .await;
    assert_eq!(closed.status, 200, "{}", closed.body);
    s.call("DELETE", &format!("/sessions/{sid}"), None)
        .await
        .error(409, "INVALID_STATE");

    // Workflows: validate, save, get, list.
    let ok = call(
        "POST",
        "/validate",
        "/validate",
        Some(json!({"definition": GREET})),
    )
    .await;
    assert_eq!(ok.json()["valid"], json!(true), "{}", ok.body);
    let broken = "name: broken\nsteps:\n  - name: a\n    module: core\n    action: noop\n    dependencies: [nope]\n";
    let bad = s
        .call("POST", "/validate", Some(json!({"definition": broken})))
        .await
        .json();
    assert_eq!(bad["valid"], json!(false), "{bad}");
    let p = &bad["problems"][0];
    assert_eq!(p["pos"]["line"], json!(6), "{bad}");
    assert!(p["pos"]["column"].as_u64().is_some_and(|c| c > 0), "{bad}");
    assert!(
        p["path"]
            .as_str()
            .is_some_and(|x| x.contains("dependencies")),
        "{bad}"
    );
    let saved = call(
        "PUT",
        "/workflows/{name}",
        "/workflows/greet",
        Some(json!({"definition": GREET})),
    )
    .await;
    assert_eq!(saved.status, 200, "{}", saved.body);
    assert!(s.home.path().join("workflows/greet.json").is_file());
    let got = call("GET", "/workflows/{name}", "/workflows/greet", None)
        .await
        .json();
    assert_eq!(got["levels"], json!([["hello"], ["after"]]), "{got}");
    let names = call("GET", "/workflows", "/workflows", None).await.json();
    assert!(
        names["workflows"]
            .as_array()
            .is_some_and(|a| a.contains(&json!("greet"))),
        "{names}"
    );

    // A run by name, waited for.
    let run = call(
        "POST",
        "/runs",
        "/runs",
        Some(json!({"workflow": "greet", "wait": true})),
    )
    .await;
    assert_eq!(run.status, 200, "{}", run.body);
    let run = run.json();
    assert_eq!(run["state"], json!("completed"), "{run}");
    let id = run["id"].as_str().expect("id").to_owned();
    let listed = call(
        "GET",
        "/runs",
        "/runs?workflow=greet&status=completed",
        None,
    )
    .await
    .json();
    assert_eq!(listed["count"], json!(1), "{listed}");
    let none = s
        .call("GET", "/runs?since=2999-01-01T00:00:00Z", None)
        .await
        .json();
    assert_eq!(none["count"], json!(0), "{none}");
    let by_prefix = call("GET", "/runs/{id}", &format!("/runs/{}", &id[..13]), None)
        .await
        .json();
    assert_eq!(by_prefix["id"], json!(id));
    let with_def = s
        .call("GET", &format!("/runs/{id}?definition=true"), None)
        .await
        .json();
    assert_eq!(
        with_def["definition"]["workflow"]["name"],
        json!("greet"),
        "{with_def}"
    );
    let steps = call(
        "GET",
        "/runs/{id}/steps",
        &format!("/runs/{id}/steps"),
        None,
    )
    .await
    .json();
    assert_eq!(steps["total"], json!(2), "{steps}");
    let step = call(
        "GET",
        "/runs/{id}/steps/{step}",
        &format!("/runs/{id}/steps/after"),
        None,
    )
    .await
    .json();
    assert_eq!(step["result"]["data"], json!(42), "{step}");
    let logs = call(
        "GET",
        "/runs/{id}/steps/{step}/logs",
        &format!("/runs/{id}/steps/hello/logs"),
        None,
    )
    .await
    .json();
    assert_eq!(logs["stdout"], json!("hi there\n"), "{logs}");
    // An ended step's output stream: its chunks, then `end` (tests/live_output.rs follows a running one).
    let out = call(
        "GET",
        "/runs/{id}/steps/{step}/logs/stream",
        &format!("/runs/{id}/steps/hello/logs/stream"),
        None,
    )
    .await;
    assert!(out.body.contains("hi there"), "{}", out.body);
    assert!(out.body.contains("event: end"), "{}", out.body);
    let evs = call(
        "GET",
        "/runs/{id}/events",
        &format!("/runs/{id}/events"),
        None,
    )
    .await
    .json();
    let next = evs["next"].as_u64().expect("next");
    assert!(next >= 2, "{evs}");
    let later = s
        .call("GET", &format!("/runs/{id}/events?after={next}"), None)
        .await
        .json();
    assert_eq!(later["events"], json!([]), "{later}");
    let stream = call(
        "GET",
        "/runs/{id}/events/stream",
        &format!("/runs/{id}/events/stream"),
        None,
    )
    .await;
    assert!(stream.body.contains("event: end"), "{}", stream.body);
    // An ended run can be neither cancelled nor resumed.
    call(
        "POST",
        "/runs/{id}/cancel",
        &format!("/runs/{id}/cancel"),
        None,
    )
    .await
    .error(409, "INVALID_STATE");
    call(
        "POST",
        "/runs/{id}/resume",
        &format!("/runs/{id}/resume"),
        None,
    )
    .await
    .error(409, "INVALID_STATE");
    // Nor retried: it completed.
    call(
        "POST",
        "/runs/{id}/retry",
        &format!("/runs/{id}/retry"),
        None,
    )
    .await
    .error(409, "INVALID_STATE");

    // Schedules: a scheduled workflow saved, listed, paused, resumed, triggered.
    let saved = s
        .call(
            "PUT",
            "/workflows/hourly",
            Some(json!({"definition": HOURLY})),
        )
        .await;
    assert_eq!(saved.status, 200, "{}", saved.body);
    let l = call("GET", "/schedules", "/schedules", None).await.json();
    assert_eq!(l["schedules"][0]["workflow"], json!("hourly"), "{l}");
    let p = call(
        "POST",
        "/schedules/{name}/pause",
        "/schedules/hourly/pause",
        None,
    )
    .await
    .json();
    assert_eq!(p["changed"], json!(true), "{p}");
    let r = call(
        "POST",
        "/schedules/{name}/resume",
        "/schedules/hourly/resume",
        None,
    )
    .await
    .json();
    assert_eq!(r["changed"], json!(true), "{r}");
    let tr = call(
        "POST",
        "/schedules/{name}/trigger",
        "/schedules/hourly/trigger",
        None,
    )
    .await;
    assert_eq!(tr.status, 202, "{}", tr.body);

    // Projects.
    let t = call("GET", "/templates", "/templates", None).await.json();
    assert!(
        t["templates"].as_array().is_some_and(|a| a.len() >= 3),
        "{t}"
    );
    let p = call(
        "POST",
        "/projects",
        "/projects",
        Some(json!({"name": "demo", "description": "d"})),
    )
    .await;
    assert_eq!(p.status, 201, "{}", p.body);
    let ps = call("GET", "/projects", "/projects", None).await.json();
    assert_eq!(ps["projects"], json!(["demo"]), "{ps}");
    let m = call(
        "POST",
        "/projects/{name}/milestones",
        "/projects/demo/milestones",
        Some(json!({"key": "v1", "data": {"note": "first"}})),
    )
    .await
    .json();
    assert_eq!(m["milestones"]["v1"]["note"], json!("first"), "{m}");
    let m = call(
        "POST",
        "/projects/{name}/metrics",
        "/projects/demo/metrics",
        Some(json!({"lines": 10})),
    )
    .await
    .json();
    assert_eq!(m["metrics"]["lines"], json!(10), "{m}");
    let g = call("GET", "/projects/{name}", "/projects/demo", None)
        .await
        .json();
    assert_eq!(g["project"]["metrics"]["lines"], json!(10), "{g}");
    // An empty project has no workflow: the route answers with the engine's not-found.
    let pr = call(
        "POST",
        "/projects/{name}/runs",
        "/projects/demo/runs",
        Some(json!({"workflow": "nothing"})),
    )
    .await;
    assert_eq!(pr.status, 404, "{}", pr.body);

    let all: BTreeSet<String> = ROUTES
        .iter()
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert_eq!(
        *hit.borrow(),
        all,
        "routes not called by this test, or called but not in the table"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_is_required_except_for_health_and_checked() {
    let s = start(ServerConfig::default()).await;
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(s.home.path().join("server-token"))
            .expect("token file")
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    let none = s.send("GET", "/status", None, None, &[]).await;
    none.error(401, "PERMISSION_DENIED");
    assert_eq!(none.header("www-authenticate"), Some("Bearer"));
    let wrong = s
        .send("GET", "/status", Some("not-the-token"), None, &[])
        .await;
    wrong.error(401, "PERMISSION_DENIED");
    assert!(
        wrong
            .header("www-authenticate")
            .is_some_and(|h| h.contains("invalid_token"))
    );
    let other = s
        .send(
            "GET",
            "/runs",
            None,
            None,
            &[("Authorization", "Basic dXNlcjpwYXNz")],
        )
        .await;
    other.error(401, "PERMISSION_DENIED");
    // A token one character short is not a prefix match.
    let short = &s.token[..s.token.len() - 1];
    s.send("GET", "/status", Some(short), None, &[])
        .await
        .error(401, "PERMISSION_DENIED");
    assert_eq!(
        s.send("GET", "/status", Some(&s.token), None, &[])
            .await
            .status,
        200
    );
    assert_eq!(s.send("GET", "/health", None, None, &[]).await.status, 200);
    // Unknown routes are not revealed without the token either.
    s.send("GET", "/nowhere", None, None, &[])
        .await
        .error(401, "PERMISSION_DENIED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_and_oversized_bodies_get_error_responses() {
    let s = start(ServerConfig {
        body_limit: 4096,
        ..ServerConfig::default()
    })
    .await;
    let t = Some(s.token.as_str());
    let syntax = s
        .send_bytes("POST", "/runs", t, b"{\"workflow\": ", &[])
        .await;
    let v = syntax.error(400, "INVALID_PARAMETERS");
    assert!(
        v["error"].as_str().is_some_and(|e| e.contains("line 1")),
        "{v}"
    );
    s.send_bytes("POST", "/runs", t, b"[1, 2]", &[])
        .await
        .error(422, "INVALID_PARAMETERS");
    s.call(
        "POST",
        "/runs",
        Some(json!({"workflow": "greet", "colour": "red"})),
    )
    .await
    .error(422, "INVALID_PARAMETERS");
    s.call(
        "POST",
        "/runs",
        Some(json!({"mode": "fast", "workflow": "x"})),
    )
    .await
    .error(422, "INVALID_PARAMETERS");
    s.send_bytes("POST", "/runs", t, b"", &[])
        .await
        .error(400, "INVALID_PARAMETERS");
    let big = json!({"definition": "x".repeat(10_000)});
    s.call("POST", "/validate", Some(big))
        .await
        .error(413, "LIMIT_EXCEEDED");
    // Both, or neither, of a name and a definition.
    s.call(
        "POST",
        "/runs",
        Some(json!({"workflow": "a", "definition": GREET})),
    )
    .await
    .error(400, "INVALID_PARAMETERS");
    s.call("POST", "/runs", Some(json!({})))
        .await
        .error(400, "INVALID_PARAMETERS");
    s.call(
        "POST",
        "/runs",
        Some(json!({"definition": GREET, "timeout": -1})),
    )
    .await
    .error(400, "INVALID_PARAMETERS");
    s.call(
        "POST",
        "/runs",
        Some(json!({"definition": GREET, "max_parallel": 0})),
    )
    .await
    .error(400, "INVALID_PARAMETERS");
    // A definition with problems: 422 with each problem's line and column.
    let cyc = "name: c\nsteps:\n  - name: a\n    module: core\n    action: noop\n    dependencies: [b]\n  - name: b\n    module: core\n    action: noop\n    dependencies: [a]\n";
    let v = s
        .call("POST", "/runs", Some(json!({"definition": cyc})))
        .await
        .error(422, "CYCLE_DETECTED");
    assert!(
        v["details"]["problems"][0]["pos"]["line"]
            .as_u64()
            .is_some(),
        "{v}"
    );
    let v = s
        .call("PUT", "/workflows/c", Some(json!({"definition": cyc})))
        .await
        .error(422, "CYCLE_DETECTED");
    assert!(v["details"]["problems"].is_array(), "{v}");
    s.call(
        "PUT",
        "/workflows/other",
        Some(json!({"definition": GREET})),
    )
    .await
    .error(400, "INVALID_PARAMETERS");
    s.call("POST", "/validate", Some(json!({"definition": 5})))
        .await
        .error(400, "INVALID_PARAMETERS");
    s.call(
        "POST",
        "/validate",
        Some(json!({"definition": GREET, "format": "xml"})),
    )
    .await
    .error(400, "INVALID_PARAMETERS");
    s.call("GET", "/runs?colour=red", None)
        .await
        .error(400, "INVALID_PARAMETERS");
    s.call("GET", "/runs?limit=lots", None)
        .await
        .error(400, "INVALID_PARAMETERS");
    s.call("GET", "/runs?status=bogus", None)
        .await
        .error(400, "INVALID_PARAMETERS");
    s.call("GET", "/runs?since=yesterday", None)
        .await
        .error(400, "INVALID_PARAMETERS");
    s.call(
        "POST",
        "/projects",
        Some(json!({"name": "p", "path": "/etc/p"})),
    )
    .await
    .error(400, "INVALID_PARAMETERS");
    s.call(
        "POST",
        "/projects",
        Some(json!({"name": "p", "path": "../p"})),
    )
    .await
    .error(400, "INVALID_PARAMETERS");
    s.call("POST", "/sessions", Some(json!({"mode": "sideways"})))
        .await
        .error(422, "INVALID_PARAMETERS");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_ids_and_unsafe_path_parameters_are_refused() {
    let s = start(ServerConfig::default()).await;
    let uuid = "01a238a5-258e-73cf-86fd-517f2679e9fa";
    s.call("GET", &format!("/runs/{uuid}"), None)
        .await
        .error(404, "NOT_FOUND");
    s.call("GET", &format!("/runs/{uuid}/steps"), None)
        .await
        .error(404, "NOT_FOUND");
    s.call("GET", "/runs/0000/events", None)
        .await
        .error(404, "NOT_FOUND");
    s.call("GET", &format!("/runs/{uuid}/events/stream"), None)
        .await
        .error(404, "NOT_FOUND");
    s.call("POST", &format!("/runs/{uuid}/cancel"), None)
        .await
        .error(404, "NOT_FOUND");
    s.call("POST", &format!("/runs/{uuid}/resume"), None)
        .await
        .error(404, "NOT_FOUND");
    s.call("GET", "/runs/last", None)
        .await
        .error(400, "INVALID_PARAMETERS");
    s.call("GET", "/workflows/nope", None)
        .await
        .error(404, "WORKFLOW_NOT_FOUND");
    s.call("POST", "/runs", Some(json!({"workflow": "nope"})))
        .await
        .error(404, "WORKFLOW_NOT_FOUND");
    s.call("GET", "/projects/nope", None)
        .await
        .error(404, "NOT_FOUND");
    s.call("POST", "/projects/nope/metrics", Some(json!({"a": 1})))
        .await
        .error(404, "NOT_FOUND");
    s.call("GET", &format!("/sessions/{uuid}"), None)
        .await
        .error(404, "NOT_FOUND");
    s.call("GET", "/sessions/not-a-session", None)
        .await
        .error(400, "INVALID_PARAMETERS");
    s.call("GET", "/nowhere", None)
        .await
        .error(404, "NOT_FOUND");
    let wrong = s.call("DELETE", "/runs", None).await;
    assert_eq!(wrong.status, 405, "{}", wrong.body);
    // A step of a run that does not have it, and a step name that breaks the rules.
    let run = s
        .call(
            "POST",
            "/runs",
            Some(json!({"definition": GREET, "wait": true})),
        )
        .await
        .json();
    let id = run["id"].as_str().expect("id");
    s.call("GET", &format!("/runs/{id}/steps/nope"), None)
        .await
        .error(404, "NOT_FOUND");
    s.call("GET", &format!("/runs/{id}/steps/a.b/logs"), None)
        .await
        .error(400, "INVALID_PARAMETERS");
    // Dot segments and encoded separators, with and without the token.
    for path in [
        "/workflows/..",
        "/workflows/../status",
        "/runs/%2e%2e/steps",
        "/workflows/a%2Fb",
        "/workflows/a%2fb",
        "/projects/..%2Fetc",
        "/runs/x/steps/%2E%2E",
        "/workflows/a%5Cb",
    ] {
        s.call("GET", path, None)
            .await
            .error(400, "INVALID_PARAMETERS");
        s.send("GET", path, None, None, &[])
            .await
            .error(400, "INVALID_PARAMETERS");
    }
    // Names that the model refuses reach no handler's lookup.
    s.call("GET", "/workflows/a..b", None)
        .await
        .error(400, "INVALID_PARAMETERS");
    s.call("GET", "/projects/a%20b", None)
        .await
        .error(400, "INVALID_PARAMETERS");
}

/// Parses an SSE body into (id, event, data) triples.
fn sse_events(body: &str) -> Vec<(Option<u64>, String, Value)> {
    body.split("\n\n")
        .filter(|b| b.contains("data:"))
        .map(|block| {
            let (mut id, mut ev, mut data) = (None, String::from("message"), String::new());
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("id:") {
                    id = v.trim().parse().ok();
                } else if let Some(v) = line.strip_prefix("event:") {
                    ev = v.trim().to_owned();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.trim());
                }
            }
            (id, ev, serde_json::from_str(&data).expect("data is JSON"))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_submitted_run_is_followed_to_its_end_over_sse() {
    let s = start(ServerConfig::default()).await;
    let def = "name: slow\nsteps:\n  - name: a\n    module: core\n    action: sleep\n    parameters: { ms: 150 }\n  - name: b\n    module: core\n    action: sleep\n    parameters: { ms: 150 }\n    dependencies: [a]\n  - name: c\n    module: shell\n    action: exec\n    parameters: { program: echo, args: [done] }\n    dependencies: [b]\n";
    let sub = s
        .call("POST", "/runs", Some(json!({"definition": def})))
        .await;
    assert_eq!(sub.status, 202, "{}", sub.body);
    let sub = sub.json();
    assert_eq!(sub["state"], json!("running"));
    let id = sub["run_id"].as_str().expect("id").to_owned();
    // Opened while the run runs; it ends when the run does.
    let stream = s
        .call("GET", &format!("/runs/{id}/events/stream"), None)
        .await;
    assert_eq!(stream.status, 200);
    assert!(
        stream
            .header("content-type")
            .is_some_and(|c| c.starts_with("text/event-stream"))
    );
    let evs = sse_events(&stream.body);
    let (last, rest) = evs.split_last().expect("events");
    assert_eq!(last.1, "end", "{}", stream.body);
    assert_eq!(last.2["state"], json!("completed"), "{}", stream.body);
    assert_eq!(last.2["tasks"]["completed"], json!(3));
    let ids: Vec<u64> = rest.iter().map(|e| e.0.expect("an id")).collect();
    assert_eq!(
        ids,
        (1..=ids.len() as u64).collect::<Vec<_>>(),
        "in order, none missing"
    );
    let finished: usize = rest.iter().filter(|e| e.1 == "tasks_finished").count();
    assert!(finished >= 3, "{}", stream.body);
    assert_eq!(rest[0].2["kind"], rest[0].1.as_str());
    // A client that reconnects with Last-Event-ID gets only what follows.
    let again = s
        .send(
            "GET",
            &format!("/runs/{id}/events/stream"),
            Some(&s.token),
            None,
            &[("Last-Event-ID", "2")],
        )
        .await;
    let evs = sse_events(&again.body);
    assert_eq!(evs.first().and_then(|e| e.0), Some(3), "{}", again.body);
    assert_eq!(evs.last().map(|e| e.1.as_str()), Some("end"));
    let logs = s
        .call("GET", &format!("/runs/{id}/steps/c/logs"), None)
        .await
        .json();
    assert_eq!(logs["stdout"], json!("done\n"), "{logs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_run_is_cancelled_over_http() {
    let s = start(ServerConfig::default()).await;
    let def = "name: long\nsteps:\n  - name: wait\n    module: core\n    action: sleep\n    parameters: { ms: 60000 }\n";
    let sub = s
        .call("POST", "/runs", Some(json!({"definition": def})))
        .await
        .json();
    let id = sub["run_id"].as_str().expect("id").to_owned();
    let running = s.call("GET", "/runs?status=running", None).await.json();
    assert_eq!(running["count"], json!(1), "{running}");
    let c = s.call("POST", &format!("/runs/{id}/cancel"), None).await;
    assert_eq!(c.status, 200, "{}", c.body);
    assert_eq!(c.json()["outcome"], json!("stopped"), "{}", c.body);
    let stream = s
        .call("GET", &format!("/runs/{id}/events/stream"), None)
        .await;
    let evs = sse_events(&stream.body);
    assert_eq!(
        evs.last().map(|e| e.2["state"].clone()),
        Some(json!("cancelled")),
        "{}",
        stream.body
    );
    let r = s.call("GET", &format!("/runs/{id}"), None).await.json();
    assert_eq!(r["state"], json!("cancelled"), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_answers_only_the_origin_it_was_given() {
    let plain = start(ServerConfig::default()).await;
    let pre = [
        ("Origin", "http://app.example"),
        ("Access-Control-Request-Method", "GET"),
    ];
    let r = plain.send("OPTIONS", "/runs", None, None, &pre).await;
    assert!(r.header("access-control-allow-origin").is_none(), "{r:?}");
    let with = start(ServerConfig {
        cors: Some("http://app.example".into()),
        ..ServerConfig::default()
    })
    .await;
    let r = with.send("OPTIONS", "/runs", None, None, &pre).await;
    assert_eq!(r.status, 204, "{r:?}");
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("http://app.example")
    );
    assert!(
        r.header("access-control-allow-headers")
            .is_some_and(|h| h.contains("authorization"))
    );
    let r = with
        .send(
            "GET",
            "/runs",
            Some(&with.token),
            None,
            &[("Origin", "http://app.example")],
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("http://app.example")
    );
    let r = with
        .send(
            "GET",
            "/runs",
            Some(&with.token),
            None,
            &[("Origin", "http://evil.example")],
        )
        .await;
    assert!(r.header("access-control-allow-origin").is_none(), "{r:?}");
}

/// Schedules over HTTP: listed with their state, paused and resumed (seen
/// by the listing), triggered (a run with its tick as `${schedule.time}`,
/// recorded as the schedule's last fired tick); unknown, unscheduled and
/// badly named workflows refused with what to do; the token required.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedules_are_listed_paused_resumed_and_triggered() {
    let s = start(ServerConfig::default()).await;
    let empty = s.call("GET", "/schedules", None).await.json();
    assert_eq!(empty["schedules"], json!([]), "{empty}");
    for (name, def) in [("hourly", HOURLY), ("greet", GREET)] {
        let r = s
            .call(
                "PUT",
                &format!("/workflows/{name}"),
                Some(json!({"definition": def})),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let l = s.call("GET", "/schedules", None).await.json();
    let list = l["schedules"].as_array().expect("schedules");
    assert_eq!(list.len(), 1, "only the scheduled workflow: {l}");
    let one = &list[0];
    assert_eq!(one["workflow"], json!("hourly"));
    assert_eq!(one["schedule"], json!("every 1h"), "{one}");
    assert_eq!(one["catch_up"], json!("latest"), "{one}");
    assert!(one.get("paused").is_none(), "{one}");
    let next = one["next"].as_str().expect("a next tick");
    assert!(next.ends_with(":00:00Z"), "{next}");
    // memory:// has no leases: nobody is named.
    assert_eq!(l["leader"], json!(null), "{l}");

    // Pause: seen by the listing, with who; a second pause changes nothing.
    let p = s.call("POST", "/schedules/hourly/pause", None).await;
    assert_eq!(p.status, 200, "{}", p.body);
    let p = p.json();
    assert_eq!(
        (p["paused"].clone(), p["changed"].clone()),
        (json!(true), json!(true))
    );
    assert!(p["schedule"]["paused"]["by"].is_string(), "{p}");
    assert!(
        p["schedule"].get("next").is_none(),
        "no next tick while paused: {p}"
    );
    let again = s.call("POST", "/schedules/hourly/pause", None).await.json();
    assert_eq!(again["changed"], json!(false), "{again}");
    let l = s.call("GET", "/schedules", None).await.json();
    assert!(l["schedules"][0]["paused"]["at"].is_string(), "{l}");

    // A trigger runs it now, paused or not.
    let tr = s.call("POST", "/schedules/hourly/trigger", None).await;
    assert_eq!(tr.status, 202, "{}", tr.body);
    let tr = tr.json();
    let id = tr["run_id"].as_str().expect("run id").to_owned();
    let tick = tr["tick"].as_str().expect("its tick").to_owned();
    assert_eq!(tr["links"]["run"], json!(format!("/runs/{id}")), "{tr}");
    let mut run = Value::Null;
    for _ in 0..200 {
        run = s.call("GET", &format!("/runs/{id}"), None).await.json();
        if run["state"] != json!("running") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(run["state"], json!("completed"), "{run}");
    assert_eq!(run["params"]["schedule.time"], json!(tick), "{run}");
    let step = s
        .call("GET", &format!("/runs/{id}/steps/at"), None)
        .await
        .json();
    assert_eq!(step["result"]["data"], json!(tick), "{step}");
    let l = s.call("GET", "/schedules", None).await.json();
    assert_eq!(l["schedules"][0]["last_fired"]["run"], json!(id), "{l}");
    let last = &l["schedules"][0]["last"];
    assert_eq!(
        (
            last["state"].clone(),
            last["cause"].clone(),
            last["run"].clone()
        ),
        (json!("fired"), json!("trigger"), json!(id)),
        "{l}"
    );

    // Resume: active again, with a next tick.
    let r = s
        .call("POST", "/schedules/hourly/resume", None)
        .await
        .json();
    assert_eq!(
        (r["paused"].clone(), r["changed"].clone()),
        (json!(false), json!(true))
    );
    assert!(r["schedule"]["next"].is_string(), "{r}");
    let again = s
        .call("POST", "/schedules/hourly/resume", None)
        .await
        .json();
    assert_eq!(again["changed"], json!(false), "{again}");

    // Refusals say what to do.
    let e = s
        .call("POST", "/schedules/greet/pause", None)
        .await
        .error(400, "INVALID_PARAMETERS");
    assert!(
        e["error"]
            .as_str()
            .is_some_and(|m| m.contains("no schedule")),
        "{e}"
    );
    let e = s
        .call("POST", "/schedules/nothing/trigger", None)
        .await
        .error(404, "WORKFLOW_NOT_FOUND");
    assert!(
        e.to_string().contains("hourly"),
        "names the scheduled ones: {e}"
    );
    s.call("POST", "/schedules/bad%20name/resume", None)
        .await
        .error(400, "INVALID_PARAMETERS");
    s.send("GET", "/schedules", None, None, &[])
        .await
        .error(401, "PERMISSION_DENIED");
    s.send("POST", "/schedules/hourly/trigger", None, None, &[])
        .await
        .error(401, "PERMISSION_DENIED");
}

/// The items of a fan-out over a list known at run time are listed under
/// their step by `GET /runs/{id}/steps` and `GET /runs/{id}/steps/{step}`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_steps_of_a_run_list_the_items_of_a_list_known_at_run_time() {
    let s = start(ServerConfig::default()).await;
    let def = "name: fan\nsteps:\n  - { name: found, module: core, action: set, parameters: { value: [x, y] } }\n  - { name: each, module: core, action: set, for_each: '${found.result}', parameters: { value: 'got ${item}' } }\n";
    let sub = s
        .call("POST", "/runs", Some(json!({"definition": def})))
        .await;
    assert_eq!(sub.status, 202, "{}", sub.body);
    let id = sub.json()["run_id"].as_str().expect("id").to_owned();
    // The stream ends when the run does.
    let stream = s
        .call("GET", &format!("/runs/{id}/events/stream"), None)
        .await;
    let evs = sse_events(&stream.body);
    assert_eq!(
        evs.last().map(|e| e.2["state"].clone()),
        Some(json!("completed"))
    );
    let steps = s
        .call("GET", &format!("/runs/{id}/steps"), None)
        .await
        .json();
    let each = steps["steps"]
        .as_array()
        .and_then(|v| v.iter().find(|t| t["name"] == "each"))
        .expect("each")
        .clone();
    let items = each["items"].as_array().expect("items");
    let names: Vec<&str> = items.iter().filter_map(|i| i["name"].as_str()).collect();
    assert_eq!(names, ["each[0]", "each[1]"], "{each}");
    assert_eq!(items[1]["status"], json!("completed"));
    assert_eq!(items[1]["result"]["data"], json!("got y"));
    assert_eq!(each["items_run"], each["result"]["metadata"]["items_run"]);
    let one = s
        .call("GET", &format!("/runs/{id}/steps/each"), None)
        .await
        .json();
    assert_eq!(one["items"], each["items"], "{one}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_that_waits_for_its_concurrency_key_is_answered_at_once() {
    let s = start(ServerConfig::default()).await;
    let def = |conflict: &str, ms: u64| {
        format!(
            "name: keyed\nconcurrency: {{key: k, limit: 1, on_conflict: {conflict}}}\nsteps:\n  - name: wait\n    module: core\n    action: sleep\n    parameters: {{ ms: {ms} }}\n"
        )
    };
    let holder = s
        .call(
            "POST",
            "/runs",
            Some(json!({"definition": def("queue", 60_000)})),
        )
        .await;
    assert_eq!(holder.status, 202, "{}", holder.body);
    let holder = holder.json()["run_id"].as_str().expect("id").to_owned();
    // Waits: answered at once, with what it waits for.
    let w = s
        .call(
            "POST",
            "/runs",
            Some(json!({"definition": def("queue", 10)})),
        )
        .await;
    assert_eq!(w.status, 202, "{}", w.body);
    let w = w.json();
    assert_eq!(w["state"], json!("waiting"), "{w}");
    assert_eq!(
        w["waiting"],
        json!({"key": "k", "limit": 1, "holders": [holder], "on_conflict": "queue"})
    );
    let waiting = w["run_id"].as_str().expect("id").to_owned();
    let r = s.call("GET", &format!("/runs/{waiting}"), None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["state"], json!("waiting"), "{}", r.body);
    // Skipped: answered with why, and not recorded.
    let k = s
        .call(
            "POST",
            "/runs",
            Some(json!({"definition": def("skip", 10)})),
        )
        .await;
    assert_eq!(k.status, 200, "{}", k.body);
    let k = k.json();
    assert_eq!(
        (k["state"].clone(), k["recorded"].clone()),
        (json!("skipped"), json!(false)),
        "{k}"
    );
    assert!(
        k["note"].as_str().is_some_and(|n| n.contains(&holder)),
        "{k}"
    );
    let skipped = k["run_id"].as_str().expect("id").to_owned();
    assert_eq!(
        s.call("GET", &format!("/runs/{skipped}"), None)
            .await
            .status,
        404
    );
    // The waiting run is cancelled while it waits: it ends, unrecorded.
    let c = s
        .call("POST", &format!("/runs/{waiting}/cancel"), None)
        .await;
    assert_eq!(c.status, 200, "{}", c.body);
    assert_eq!(c.json()["outcome"], json!("stopped"), "{}", c.body);
    let gone = async {
        loop {
            if s.call("GET", &format!("/runs/{waiting}"), None)
                .await
                .status
                == 404
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), gone)
        .await
        .expect("the cancelled waiting run is gone");
    let c = s
        .call("POST", &format!("/runs/{holder}/cancel"), None)
        .await;
    assert_eq!(c.status, 200, "{}", c.body);
}
