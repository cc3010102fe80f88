//! `http.request` against a loopback server started in the test: success
//! with a JSON body, a status outside 200-299, a timeout, a scheme that is
//! refused, https:// to a port that does not speak TLS (the system's roots
//! read), and its parameters checked by validation. https against a TLS
//! server: the unit tests of `builtin::http::tls` and
//! crates/orch-cli/tests/https.rs.

mod common;

use common::{rt, yaml};
use orch_model::{Format, Limits, TaskStatus, WorkflowStatus};
use orch_tasks::{ActionRegistry, RunOptions, RunReport, StepReport, run_workflow};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What the server received: the request line and headers (lower-cased
/// names) and the body.
#[derive(Debug, Clone)]
struct Seen {
    line: String,
    headers: Vec<(String, String)>,
    body: String,
}

/// A loopback HTTP/1.1 server: `/ok` answers 200 with JSON echoing the
/// body, `/fail` 500, `/missing` 404, `/slow` never answers. A TLS
/// handshake (its first byte 0x16) is answered with a 400, as web servers
/// answer it on a plain port.
async fn serve(seen: Arc<Mutex<Vec<Seen>>>) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let head_end = loop {
                    let n = s.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if buf[0] == 0x16 {
                        let _ = s
                            .write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                            .await;
                        return;
                    }
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break i + 4;
                    }
                };
                let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
                let mut lines = head.split("\r\n");
                let line = lines.next().unwrap_or_default().to_owned();
                let headers: Vec<(String, String)> = lines
                    .filter_map(|l| l.split_once(':'))
                    .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
                    .collect();
                let len: usize = headers
                    .iter()
                    .find(|(k, _)| k == "content-length")
                    .and_then(|(_, v)| v.parse().ok())
                    .unwrap_or(0);
                while buf.len() < head_end + len {
                    let n = s.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        break;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
                let body = String::from_utf8_lossy(&buf[head_end..]).into_owned();
                seen.lock().expect("seen").push(Seen {
                    line: line.clone(),
                    headers,
                    body: body.clone(),
                });
                let path = line.split(' ').nth(1).unwrap_or_default();
                let (status, ty, text) = match path {
                    "/ok" => (
                        "200 OK",
                        "application/json",
                        json!({"got": serde_json::from_str::<Value>(&body).unwrap_or(Value::Null)})
                            .to_string(),
                    ),
                    "/fail" => (
                        "500 Internal Server Error",
                        "text/plain",
                        "broken".to_owned(),
                    ),
                    "/missing" => ("404 Not Found", "text/plain", "no such hook".to_owned()),
                    _ => {
                        // `/slow`: hold the connection, answer nothing.
                        tokio::time::sleep(std::time::Duration::from_secs(30)).await;
                        return;
                    }
                };
                let resp = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: {ty}\r\nx-hook: yes\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
                    text.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
            });
        }
    });
    port
}

fn step<'a>(r: &'a RunReport, name: &str) -> &'a StepReport {
    r.steps
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no step {name}"))
}

const WF: &str = r#"
name: hooks
parameters: { base: "", tls_base: "" }
steps:
  - name: notify
    module: http
    action: request
    parameters:
      url: "${params.base}/ok"
      headers: { x-token: abc }
      json: { run: "${run.id}", text: "done" }
  - name: failing
    module: http
    action: request
    parameters: { url: "${params.base}/fail" }
  - name: tolerated
    module: http
    action: request
    parameters: { url: "${params.base}/missing", method: delete, fail_on_status: false }
  - name: slow
    module: http
    action: request
    parameters: { url: "${params.base}/slow", timeout: 300ms }
  - name: ftp
    module: http
    action: request
    parameters: { url: "ftp://127.0.0.1/x" }
  - name: tls
    module: http
    action: request
    parameters: { url: "${params.tls_base}/ok" }
"#;

#[test]
fn requests_reach_a_loopback_server_and_their_answers_are_the_result() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let rt = rt();
    let port = rt.block_on(serve(seen.clone()));
    let mut params = serde_json::Map::new();
    params.insert("base".into(), json!(format!("http://127.0.0.1:{port}")));
    params.insert(
        "tls_base".into(),
        json!(format!("https://127.0.0.1:{port}")),
    );
    let opts = RunOptions {
        params,
        ..RunOptions::default()
    };
    let run_id = opts.run_id;
    let r = rt
        .block_on(run_workflow(
            &yaml(WF),
            &ActionRegistry::with_builtins(),
            opts,
            None,
        ))
        .expect("runs");
    assert_eq!(r.status, WorkflowStatus::Failed);

    // Success: the server's JSON answer is the result, parsed.
    let notify = step(&r, "notify");
    assert_eq!(notify.status, TaskStatus::Completed, "{notify:?}");
    let data = &notify.result.as_ref().expect("result").data;
    assert_eq!(data["status"], 200);
    assert_eq!(data["headers"]["x-hook"], "yes");
    assert_eq!(
        data["body"],
        json!({"got": {"run": run_id.to_string(), "text": "done"}})
    );
    let got = seen.lock().expect("seen").clone();
    let req = got
        .iter()
        .find(|s| s.line.starts_with("POST /ok "))
        .expect("the POST arrived");
    let header = |n: &str| {
        req.headers
            .iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(header("content-type"), Some("application/json"));
    assert_eq!(header("x-token"), Some("abc"));
    assert_eq!(header("host"), Some(format!("127.0.0.1:{port}").as_str()));
    assert_eq!(
        serde_json::from_str::<Value>(&req.body).expect("JSON body"),
        json!({"run": run_id.to_string(), "text": "done"})
    );

    // A 500 fails the step, with the answer as its data.
    let failing = step(&r, "failing").result.as_ref().expect("result");
    assert_eq!(step(&r, "failing").status, TaskStatus::Failed);
    assert_eq!(failing.error_type.as_deref(), Some("HttpStatus"));
    assert!(
        failing
            .error_message
            .as_deref()
            .is_some_and(|m| m.contains("answered 500 Internal Server Error")),
        "{failing:?}"
    );
    assert_eq!(failing.data["status"], 500);
    assert_eq!(failing.data["body"], "broken");

    // fail_on_status: false takes a 404 as an answer.
    let tolerated = step(&r, "tolerated");
    assert_eq!(tolerated.status, TaskStatus::Completed);
    assert_eq!(tolerated.result.as_ref().expect("r").data["status"], 404);
    assert!(got.iter().any(|s| s.line.starts_with("DELETE /missing ")));

    // A server that never answers: the request's own timeout.
    let slow = step(&r, "slow").result.as_ref().expect("result");
    assert_eq!(slow.error_type.as_deref(), Some("TimeoutError"));
    assert!(
        slow.error_message
            .as_deref()
            .is_some_and(|m| m.contains("longer than its timeout of 300ms")),
        "{slow:?}"
    );

    // Other schemes never leave the process.
    let ftp = step(&r, "ftp").result.as_ref().expect("result");
    assert_eq!(ftp.error_type.as_deref(), Some("InvalidParameters"));
    assert!(
        ftp.error_message
            .as_deref()
            .is_some_and(|m| m.contains("the scheme `ftp` is not allowed")),
        "{ftp:?}"
    );

    // https:// to a port that answers in plain HTTP: the handshake fails,
    // said as such, and no request reaches the server in clear.
    let tls = step(&r, "tls").result.as_ref().expect("result");
    assert_eq!(tls.error_type.as_deref(), Some("TlsError"), "{tls:?}");
    assert!(
        tls.error_message
            .as_deref()
            .is_some_and(|m| m.contains("the server did not answer in TLS")),
        "{tls:?}"
    );
    assert!(
        !got.iter()
            .any(|s| s.line.contains("/ok") && !s.line.starts_with("POST /ok ")),
        "{got:?}"
    );
}

#[test]
fn validation_checks_the_parameters_it_declares() {
    let catalog = ActionRegistry::with_builtins().catalog();
    let text = "name: v\nsteps:\n  - {name: a, module: http, action: request, parameters: {uri: 'http://x', fail_on_status: 'no'}}\n";
    let d = orch_model::load_workflow_with(text, Format::Yaml, &Limits::default(), None, &catalog)
        .expect_err("refused");
    let lines: Vec<String> = d.lines().collect();
    assert!(lines.iter().any(|l| l.contains("url")), "{lines:?}");
    assert!(lines.iter().any(|l| l.contains("uri")), "{lines:?}");
    assert!(
        lines.iter().any(|l| l.contains("fail_on_status")),
        "{lines:?}"
    );
}
