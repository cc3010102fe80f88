//! `GET /metrics` over real HTTP on loopback: the token, the content type, and a run's metrics (runs, attempts, steps, store calls) after a run submitted over the API, as the recorder the server was given renders them.
//!
//! The Prometheus recorder itself is installed only by the binary (a tidy
//! rule; orch-cli's tests scrape `orch serve`). Here the process-wide
//! recorder is metrics-util's `DebuggingRecorder`, rendered in Prometheus'
//! text form by [`render`], so what is checked is what the engine and the
//! scheduler recorded for the run.

use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use orch_engine::{EngineConfig, OrchestrationEngine};
use orch_server::{MetricsRender, PROMETHEUS_TEXT, ServerConfig, Token};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The process's recorder (installed once; every test of this file shares it).
fn snapshotter() -> Snapshotter {
    static SNAP: OnceLock<Snapshotter> = OnceLock::new();
    SNAP.get_or_init(|| {
        let recorder = DebuggingRecorder::new();
        let snap = recorder.snapshotter();
        recorder
            .install()
            .expect("the only recorder of this test binary");
        // As the binary does after installing its recorder.
        orch_engine::metrics::init();
        snap
    })
    .clone()
}

/// The recorder's metrics as Prometheus text: `name{label="value"} number`
/// for counters and gauges, `name_count` and `name_sum` for histograms
/// (a snapshot takes the values: each render shows what came since the last).
fn render(snap: &Snapshotter) -> String {
    let mut out = String::new();
    for (k, _, _, v) in snap.snapshot().into_vec() {
        let key = k.key();
        let labels: Vec<String> = key
            .labels()
            .map(|l| format!("{}=\"{}\"", l.key(), l.value()))
            .collect();
        let labels = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{}}}", labels.join(","))
        };
        match v {
            DebugValue::Counter(n) => out.push_str(&format!("{}{labels} {n}\n", key.name())),
            DebugValue::Gauge(g) => out.push_str(&format!("{}{labels} {}\n", key.name(), g)),
            DebugValue::Histogram(h) => {
                let sum: f64 = h.iter().map(|x| x.into_inner()).sum();
                out.push_str(&format!("{}_count{labels} {}\n", key.name(), h.len()));
                out.push_str(&format!("{}_sum{labels} {sum}\n", key.name()));
            }
        }
    }
    out
}

/// A server on an ephemeral loopback port, stopped when dropped.
struct Server {
    addr: SocketAddr,
    token: String,
    _home: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

async fn start(metrics: Option<MetricsRender>) -> Server {
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
    let config = ServerConfig {
        metrics,
        ..ServerConfig::default()
    };
    tokio::spawn(orch_server::serve(engine, token, config, listener, async {
        let _ = rx.await;
    }));
    Server {
        addr,
        token: value,
        _home: home,
        stop: Some(tx),
    }
}

/// One request (`Connection: close`): the status, the content type and the body.
async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, String, String) {
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\nContent-Type: application/json\r\n",
        body.len()
    );
    if let Some(t) = token {
        head.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    head.push_str("\r\n");
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(head.as_bytes()).await.expect("write");
    s.write_all(body.as_bytes()).await.expect("write body");
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), s.read_to_end(&mut buf))
        .await
        .expect("an answer within a minute")
        .expect("read");
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, rest) = text.split_once("\r\n\r\n").expect("a head");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status");
    let header = |name: &str| {
        head.lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_owned())
    };
    let body = if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        dechunk(rest)
    } else {
        rest.to_owned()
    };
    (status, header("content-type").unwrap_or_default(), body)
}

/// The body of a chunked answer.
fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).expect("chunk size");
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].strip_prefix("\r\n").unwrap_or(&rest[n..]);
    }
    out
}

/// `name{labels} value` lines as a map (comments and blank lines left out).
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.rsplit_once(' '))
        .map(|(k, v)| (k.to_owned(), v.parse().expect("a number")))
        .collect()
}

/// Step `ok` succeeds; `flaky` fails twice (one retry) and fails the run;
/// `after` follows `ok`; `never` follows `flaky` and is skipped.
const RUN: &str = "name: counted\nsteps:\n  - name: ok\n    module: core\n    action: set\n    parameters: { value: 1 }\n  - name: flaky\n    module: core\n    action: fail\n    parameters: { message: no }\n    max_retries: 1\n    retry: { initial_delay: 10ms, jitter: false }\n  - name: after\n    module: shell\n    action: exec\n    parameters: { program: echo, args: [hi] }\n    dependencies: [ok]\n  - name: never\n    module: core\n    action: set\n    parameters: { value: 2 }\n    dependencies: [flaky]\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scrape_after_a_run_shows_the_run_its_attempts_and_its_store_calls() {
    let snap = snapshotter();
    let s = start(Some(MetricsRender::new(move || render(&snap)))).await;

    // The route needs the token, as every route but /health.
    let (status, _, _) = request(s.addr, "GET", "/metrics", None, None).await;
    assert_eq!(status, 401);
    // What came before the run (nothing of it is counted below).
    let (status, _, _) = request(s.addr, "GET", "/metrics", Some(&s.token), None).await;
    assert_eq!(status, 200);

    let (status, _, body) = request(
        s.addr,
        "POST",
        "/runs",
        Some(&s.token),
        Some(json!({"definition": RUN, "wait": true})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let run: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(run["state"], json!("failed"), "{run}");

    let (status, content_type, text) =
        request(s.addr, "GET", "/metrics", Some(&s.token), None).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(content_type, PROMETHEUS_TEXT);
    let m = samples(&text);
    let get = |k: &str| *m.get(k).unwrap_or_else(|| panic!("no {k} in:\n{text}"));
    assert_eq!(get("orch_runs_started_total"), 1.0);
    assert_eq!(get("orch_runs_finished_total{status=\"failed\"}"), 1.0);
    assert_eq!(
        get("orch_run_duration_seconds_count{status=\"failed\"}"),
        1.0
    );
    // ok, after, and flaky twice.
    assert_eq!(get("orch_attempts_started_total"), 4.0);
    assert_eq!(
        get("orch_attempts_finished_total{status=\"succeeded\"}"),
        2.0
    );
    assert_eq!(get("orch_attempts_finished_total{status=\"failed\"}"), 2.0);
    assert_eq!(
        get("orch_attempt_duration_seconds_count{status=\"succeeded\"}"),
        2.0
    );
    assert_eq!(
        get("orch_attempt_duration_seconds_count{status=\"failed\"}"),
        2.0
    );
    assert_eq!(get("orch_steps_finished_total{status=\"completed\"}"), 2.0);
    assert_eq!(get("orch_steps_finished_total{status=\"failed\"}"), 1.0);
    assert_eq!(get("orch_steps_finished_total{status=\"skipped\"}"), 1.0);
    // The run's journal: recorded once, ended once, its turns committed.
    let store = |op: &str| {
        get(&format!(
            "orch_store_call_duration_seconds_count{{op=\"{op}\"}}"
        ))
    };
    assert_eq!(store("create_run"), 1.0);
    assert_eq!(store("finish_run"), 1.0);
    assert!(store("start_and_finish") >= 1.0, "{text}");
    // The memory store keeps no worker records: no worker in any state.
    for state in ["running", "stopping", "lost"] {
        assert_eq!(get(&format!("orch_workers{{state=\"{state}\"}}")), 0.0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_renderer_the_route_is_not_supported() {
    let s = start(None).await;
    let (status, content_type, body) =
        request(s.addr, "GET", "/metrics", Some(&s.token), None).await;
    assert_eq!(status, 501, "{body}");
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    let v: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(v["error_code"], json!("NOT_SUPPORTED"), "{v}");
    // The OpenAPI document lists the route, answering text.
    let (_, _, doc) = request(s.addr, "GET", "/openapi.json", Some(&s.token), None).await;
    let doc: Value = serde_json::from_str(&doc).expect("JSON");
    assert!(
        doc["paths"]["/metrics"]["get"]["responses"]["200"]["content"]["text/plain"].is_object(),
        "{}",
        doc["paths"]["/metrics"]
    );
}
