//! A running step's output over HTTP on loopback: `GET .../logs` gives what
//! it printed so far, and `GET .../logs/stream` sends each chunk as a
//! Server-Sent Event as it is stored, then `end` when the step ends; a
//! client that reconnects with `Last-Event-ID` gets only what follows. The
//! step waits for a file the test writes: the test synchronises on
//! content, never on time.

use orch_engine::{EngineConfig, OrchestrationEngine};
use orch_server::{ServerConfig, Token};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Against hangs only.
const PATIENCE: Duration = Duration::from_secs(120);

/// Prints a line on each stream, waits for the file `go` (in the server's
/// work directory), prints another.
const SLOW: &str = "name: slow\nsteps:\n  - name: talk\n    module: shell\n    action: script\n    parameters:\n      script: 'echo one; echo oops >&2; while [ ! -e go ]; do sleep 0.02; done; echo two'\n";

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

/// A server on an ephemeral loopback port over `store_url`, its home and
/// work directory a temporary one.
async fn start(store_url: impl FnOnce(&Path) -> String) -> Server {
    let home = tempfile::tempdir().expect("tempdir");
    let cfg = EngineConfig {
        store_url: Some(store_url(home.path())),
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
    let config = ServerConfig {
        poll: Duration::from_millis(20),
        ..ServerConfig::default()
    };
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

impl Server {
    /// Opens `GET path` and returns the connection after the answer's head
    /// (its status line and headers).
    async fn open(&self, path: &str, extra: &[(&str, &str)]) -> (String, Body) {
        let mut s = TcpStream::connect(self.addr).await.expect("connect");
        let mut head = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nAuthorization: Bearer {}\r\n",
            self.addr, self.token
        );
        for (k, v) in extra {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        s.write_all(head.as_bytes()).await.expect("write");
        let mut body = Body {
            s,
            raw: Vec::new(),
            text: String::new(),
            chunked: false,
            done: false,
        };
        let split = loop {
            if let Some(p) = body.raw.windows(4).position(|w| w == b"\r\n\r\n") {
                break p;
            }
            assert!(body.fill().await, "the connection closed before a head");
        };
        let head = String::from_utf8_lossy(&body.raw[..split]).into_owned();
        body.raw.drain(..split + 4);
        body.chunked = head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked");
        (head, body)
    }

    /// `GET path` as JSON.
    async fn json(&self, path: &str) -> Value {
        let (head, mut body) = self.open(path, &[]).await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        body.read_to_end().await;
        serde_json::from_str(&body.text).expect("JSON")
    }

    async fn post(&self, path: &str, v: Value) -> Value {
        let mut s = TcpStream::connect(self.addr).await.expect("connect");
        let b = v.to_string();
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            self.addr,
            self.token,
            b.len()
        );
        s.write_all(head.as_bytes()).await.expect("write");
        s.write_all(b.as_bytes()).await.expect("write");
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.expect("read");
        let text = String::from_utf8_lossy(&buf);
        let (_, json) = text.split_once("\r\n\r\n").expect("a head");
        // Small answers come whole; a chunked one has its size first.
        let json = json.trim();
        let json = match json.find('{') {
            Some(i) if json.starts_with(|c: char| c.is_ascii_hexdigit()) => &json[i..],
            _ => json,
        };
        let end = json.rfind('}').map_or(json.len(), |i| i + 1);
        serde_json::from_str(&json[..end]).expect("JSON")
    }
}

/// An answer's body, read as it arrives (chunked or not).
struct Body {
    s: TcpStream,
    /// Bytes read and not yet decoded.
    raw: Vec<u8>,
    /// The body so far.
    text: String,
    chunked: bool,
    done: bool,
}

impl Body {
    /// Reads more; false at the end of the connection.
    async fn fill(&mut self) -> bool {
        let mut buf = [0u8; 8192];
        let n = tokio::time::timeout(PATIENCE, self.s.read(&mut buf))
            .await
            .expect("more of the answer within the patience")
            .expect("read");
        self.raw.extend_from_slice(&buf[..n]);
        n > 0
    }

    /// Moves what is complete from `raw` to `text`.
    fn decode(&mut self) {
        if !self.chunked {
            self.text.push_str(&String::from_utf8_lossy(&self.raw));
            self.raw.clear();
            return;
        }
        while let Some(eol) = self.raw.windows(2).position(|w| w == b"\r\n") {
            let size = String::from_utf8_lossy(&self.raw[..eol]).trim().to_owned();
            let n = usize::from_str_radix(&size, 16).expect("chunk size");
            if n == 0 {
                self.done = true;
                self.raw.clear();
                return;
            }
            if self.raw.len() < eol + 2 + n + 2 {
                return;
            }
            let data = self.raw[eol + 2..eol + 2 + n].to_vec();
            self.text.push_str(&String::from_utf8_lossy(&data));
            self.raw.drain(..eol + 2 + n + 2);
        }
    }

    /// Reads until the body so far has `n` complete SSE events.
    async fn until_events(&mut self, n: usize) -> Vec<(Option<u64>, String, Value)> {
        loop {
            self.decode();
            let evs = sse_events(&self.text);
            if evs.len() >= n {
                return evs;
            }
            assert!(
                !self.done && self.fill().await,
                "the stream ended with {} events:\n{}",
                evs.len(),
                self.text
            );
        }
    }

    async fn read_to_end(&mut self) {
        loop {
            self.decode();
            if self.done || !self.fill().await {
                self.decode();
                return;
            }
        }
    }
}

/// The complete (id, event, data) triples of an SSE body, keep-alives left out.
fn sse_events(body: &str) -> Vec<(Option<u64>, String, Value)> {
    let mut blocks: Vec<&str> = body.split("\n\n").collect();
    // The last piece is not complete until a blank line ends it.
    blocks.pop();
    blocks
        .into_iter()
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

/// The text of the `stdout` (or `stderr`) events.
fn text_of(evs: &[(Option<u64>, String, Value)], stream: &str) -> String {
    evs.iter()
        .filter(|e| e.1 == stream)
        .filter_map(|e| e.2["text"].as_str())
        .collect()
}

/// Runs SLOW on the server, follows its step while it runs, and checks
/// the stream, the logs so far, the end and a resumed stream.
async fn follow_a_running_step(s: &Server) {
    let sub = s.post("/runs", json!({ "definition": SLOW })).await;
    let id = sub["run_id"].as_str().expect("a run id").to_owned();
    let path = format!("/runs/{id}/steps/talk/logs/stream");
    let (head, mut body) = s.open(&path, &[]).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/event-stream"),
        "{head}"
    );
    // The first two chunks: the step printed them and now waits for `go`.
    let evs = body.until_events(2).await;
    assert_eq!(text_of(&evs, "stdout"), "one\n", "{}", body.text);
    assert_eq!(text_of(&evs, "stderr"), "oops\n", "{}", body.text);
    let first = evs[0].0.expect("a chunk has an id");
    assert_eq!(evs[0].2["seq"], json!(first));
    assert_eq!(evs[0].2["attempt"], json!(1));
    assert!(
        !s.home.path().join("go").exists(),
        "the step is still waiting"
    );

    // The logs of the running step: what it printed so far.
    let logs = s.json(&format!("/runs/{id}/steps/talk/logs")).await;
    assert_eq!(logs["ended"], json!(false), "{logs}");
    assert_eq!(logs["status"], json!("running"), "{logs}");
    assert_eq!(logs["stdout"], json!("one\n"), "{logs}");
    assert_eq!(logs["stderr"], json!("oops\n"), "{logs}");
    assert_eq!(logs["attempt"], json!(1), "{logs}");

    std::fs::write(s.home.path().join("go"), b"").expect("go");
    body.read_to_end().await;
    let evs = sse_events(&body.text);
    let (end, chunks) = evs.split_last().expect("events");
    assert_eq!(end.1, "end", "{}", body.text);
    assert_eq!(end.2["status"], json!("completed"), "{}", body.text);
    assert_eq!(end.2["ended"], json!(true));
    assert_eq!(end.2["exit_code"], json!(0));
    assert_eq!(text_of(chunks, "stdout"), "one\ntwo\n");
    let ids: Vec<u64> = chunks.iter().map(|e| e.0.expect("an id")).collect();
    assert_eq!(
        ids,
        (1..=ids.len() as u64).collect::<Vec<_>>(),
        "numbered from 1"
    );

    // A client that saw the first chunk resumes after it.
    let (_, mut again) = s
        .open(&path, &[("Last-Event-ID", &first.to_string())])
        .await;
    again.read_to_end().await;
    let evs = sse_events(&again.text);
    assert!(
        evs.iter().all(|e| e.0.is_none_or(|i| i > first)),
        "{}",
        again.text
    );
    assert_eq!(evs.len(), chunks.len(), "{}", again.text);
    assert_eq!(evs.last().map(|e| e.1.as_str()), Some("end"));
    // `?after=` says the same.
    let (_, mut after) = s.open(&format!("{path}?after={}", ids.len()), &[]).await;
    after.read_to_end().await;
    let evs = sse_events(&after.text);
    assert_eq!(evs.len(), 1, "only `end`: {}", after.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_steps_output_streams_live_from_the_memory_store() {
    let s = start(|_| "memory://".into()).await;
    follow_a_running_step(&s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_steps_output_streams_live_from_sqlite() {
    let s = start(|home| format!("sqlite://{}", home.join("orch.db").display())).await;
    follow_a_running_step(&s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_cursor_or_step_is_refused() {
    let s = start(|_| "memory://".into()).await;
    let sub = s.post("/runs", json!({ "definition": SLOW })).await;
    let id = sub["run_id"].as_str().expect("a run id").to_owned();
    let (head, mut body) = s
        .open(&format!("/runs/{id}/steps/talk/logs/stream?after=x"), &[])
        .await;
    assert!(head.starts_with("HTTP/1.1 400"), "{head}");
    body.read_to_end().await;
    let (head, _) = s
        .open(&format!("/runs/{id}/steps/nope/logs/stream"), &[])
        .await;
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");
    std::fs::write(s.home.path().join("go"), b"").expect("go");
}
