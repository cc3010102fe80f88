//! The Cargo feature `otel` end to end: the real binary, built with it,
//! exports its spans over OTLP/HTTP to a collector that this test plays
//! (a plain HTTP/1.1 receiver on loopback that keeps every request), and a
//! collector that does not answer neither fails a run nor holds its exit
//! long. `cargo xtask ci` runs it:
//! `cargo test -p orch-cli --features otel --test otel_export`.
//!
//! The bodies are protobuf `ExportTraceServiceRequest`s, read here by a
//! small decoder of the wire format (the `opentelemetry-proto` types would
//! be a dev-dependency, built for every test of this crate).
#![cfg(feature = "otel")]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Two steps, the second after the first.
const WF: &str = "name: exported\nsteps:\n  - name: first\n    module: core\n    action: set\n    parameters: { value: 1 }\n  - name: second\n    module: shell\n    action: exec\n    parameters: { program: echo, args: [hi] }\n    dependencies: [first]\n";

/// The same with a second step that fails.
const FAILING: &str = "name: broken\nsteps:\n  - name: first\n    module: core\n    action: set\n    parameters: { value: 1 }\n  - name: second\n    module: shell\n    action: exec\n    parameters: { program: \"false\" }\n    dependencies: [first]\n";

/// Every variable of the OpenTelemetry SDK that could change what this
/// test sees, removed so that the caller's environment does not leak in.
const OTEL_VARS: &[&str] = &[
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    "OTEL_EXPORTER_OTLP_HEADERS",
    "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
    "OTEL_EXPORTER_OTLP_TIMEOUT",
    "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
    "OTEL_EXPORTER_OTLP_COMPRESSION",
    "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION",
    "OTEL_SERVICE_NAME",
    "OTEL_RESOURCE_ATTRIBUTES",
    "OTEL_SDK_DISABLED",
    "OTEL_TRACES_SAMPLER",
    "OTEL_TRACES_SAMPLER_ARG",
    "OTEL_BSP_SCHEDULE_DELAY",
    "OTEL_BSP_EXPORT_TIMEOUT",
    "OTEL_BSP_MAX_QUEUE_SIZE",
    "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
    "RUST_LOG",
];

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Request {
    method: String,
    path: String,
    content_type: String,
    body: Vec<u8>,
}

/// An OTLP/HTTP collector on a free loopback port: answers every request
/// with 200 and an empty body (an empty `ExportTraceServiceResponse`), or
/// never answers at all when `silent`, and keeps what it got.
#[derive(Debug)]
struct Receiver {
    port: u16,
    requests: Arc<Mutex<Vec<Request>>>,
}

impl Receiver {
    fn start(silent: bool) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let port = listener.local_addr().expect("address").port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let keep = Arc::clone(&requests);
        // Lives as long as the test process; one thread per connection.
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let keep = Arc::clone(&keep);
                std::thread::spawn(move || serve(conn, &keep, silent));
            }
        });
        Self { port, requests }
    }

    fn requests(&self) -> Vec<Request> {
        self.requests.lock().expect("not poisoned").clone()
    }
}

/// Reads requests from one connection (kept alive) until it closes.
fn serve(conn: TcpStream, keep: &Mutex<Vec<Request>>, silent: bool) {
    let mut out = conn.try_clone().expect("clone the stream");
    let mut r = BufReader::new(conn);
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut words = line.split_whitespace();
        let method = words.next().unwrap_or_default().to_owned();
        let path = words.next().unwrap_or_default().to_owned();
        let mut headers = BTreeMap::new();
        loop {
            let mut h = String::new();
            if r.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
            }
        }
        let body = if headers
            .get("transfer-encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
        {
            chunked(&mut r)
        } else {
            let n = headers
                .get("content-length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let mut b = vec![0; n];
            r.read_exact(&mut b).expect("the body");
            b
        };
        keep.lock().expect("not poisoned").push(Request {
            method,
            path,
            content_type: headers.get("content-type").cloned().unwrap_or_default(),
            body,
        });
        if silent {
            // Holds the connection open and never answers.
            std::thread::sleep(Duration::from_secs(3600));
            return;
        }
        let answer =
            "HTTP/1.1 200 OK\r\nContent-Type: application/x-protobuf\r\nContent-Length: 0\r\n\r\n";
        if out.write_all(answer.as_bytes()).is_err() {
            return;
        }
    }
}

/// A chunked body, read to its last chunk.
fn chunked(r: &mut impl BufRead) -> Vec<u8> {
    let mut body = Vec::new();
    loop {
        let mut size = String::new();
        r.read_line(&mut size).expect("a chunk size");
        let size = size.trim().split(';').next().unwrap_or_default();
        let n = usize::from_str_radix(size, 16).expect("a hexadecimal chunk size");
        let mut chunk = vec![0; n + 2];
        r.read_exact(&mut chunk).expect("a chunk and its CRLF");
        if n == 0 {
            return body;
        }
        body.extend_from_slice(&chunk[..n]);
    }
}

// ---- The protobuf wire format, as much as an ExportTraceServiceRequest needs.

/// A field's value: varint and fixed-width numbers, or length-delimited bytes.
#[derive(Debug, Clone, Copy)]
enum Field<'a> {
    Num(u64),
    Bytes(&'a [u8]),
}

fn varint(b: &mut &[u8]) -> u64 {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = b.split_first().expect("a varint's byte");
        *b = rest;
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return v;
        }
    }
    panic!("a varint longer than ten bytes")
}

fn take<'a>(b: &mut &'a [u8], n: usize) -> &'a [u8] {
    assert!(b.len() >= n, "{n} bytes wanted, {} left", b.len());
    let (x, rest) = b.split_at(n);
    *b = rest;
    x
}

/// The fields of one message: (number, value), in order.
fn fields(mut b: &[u8]) -> Vec<(u64, Field<'_>)> {
    let mut out = Vec::new();
    while !b.is_empty() {
        let key = varint(&mut b);
        let value = match key & 7 {
            0 => Field::Num(varint(&mut b)),
            1 => Field::Num(u64::from_le_bytes(
                take(&mut b, 8).try_into().expect("8 bytes"),
            )),
            2 => {
                let n = usize::try_from(varint(&mut b)).expect("a length");
                Field::Bytes(take(&mut b, n))
            }
            5 => Field::Num(u64::from(u32::from_le_bytes(
                take(&mut b, 4).try_into().expect("4 bytes"),
            ))),
            t => panic!("wire type {t} is not used by OTLP"),
        };
        out.push((key >> 3, value));
    }
    out
}

/// Every length-delimited field `n` of a message.
fn all(b: &[u8], n: u64) -> Vec<&[u8]> {
    fields(b)
        .into_iter()
        .filter_map(|(k, v)| match v {
            Field::Bytes(x) if k == n => Some(x),
            _ => None,
        })
        .collect()
}

fn bytes(b: &[u8], n: u64) -> Vec<u8> {
    all(b, n).last().map(|x| x.to_vec()).unwrap_or_default()
}

fn string(b: &[u8], n: u64) -> String {
    String::from_utf8(bytes(b, n)).expect("UTF-8")
}

/// `KeyValue`s (key 1, `AnyValue` 2) as text: a string as it is, an
/// integer, a boolean or a double written out.
fn attributes(kvs: &[&[u8]]) -> BTreeMap<String, String> {
    kvs.iter()
        .map(|kv| {
            let value = bytes(kv, 2);
            let text = match fields(&value).first() {
                Some((1, Field::Bytes(s))) => String::from_utf8(s.to_vec()).expect("UTF-8"),
                Some((2, Field::Num(b))) => (*b != 0).to_string(),
                #[allow(clippy::cast_possible_wrap)]
                Some((3, Field::Num(i))) => (*i as i64).to_string(),
                Some((4, Field::Num(d))) => f64::from_bits(*d).to_string(),
                other => format!("{other:?}"),
            };
            (string(kv, 1), text)
        })
        .collect()
}

/// An exported span, with its resource's attributes.
#[derive(Debug, Clone)]
struct Span {
    trace_id: Vec<u8>,
    span_id: Vec<u8>,
    parent_span_id: Vec<u8>,
    name: String,
    attributes: BTreeMap<String, String>,
    /// Each event's name and attributes (`run ended`, `status`).
    events: Vec<(String, BTreeMap<String, String>)>,
    resource: BTreeMap<String, String>,
}

/// The spans of an `ExportTraceServiceRequest`: resource_spans (1) >
/// resource (1) and scope_spans (2) > spans (2).
fn spans(body: &[u8]) -> Vec<Span> {
    let mut out = Vec::new();
    for rs in all(body, 1) {
        let resource = attributes(&all(&bytes(rs, 1), 1));
        for ss in all(rs, 2) {
            for s in all(ss, 2) {
                out.push(Span {
                    trace_id: bytes(s, 1),
                    span_id: bytes(s, 2),
                    parent_span_id: bytes(s, 4),
                    name: string(s, 5),
                    attributes: attributes(&all(s, 9)),
                    events: all(s, 11)
                        .into_iter()
                        .map(|e| (string(e, 2), attributes(&all(e, 3))))
                        .collect(),
                    resource: resource.clone(),
                });
            }
        }
    }
    out
}

// ---- The tests.

fn dir_with(workflow: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("wf.yaml"), workflow).expect("write");
    dir
}

/// `orch ARGS` in `dir` with the OTel variables `vars` (and no others):
/// exit code, stdout, stderr, and how long it took.
fn orch(dir: &Path, vars: &[(&str, &str)], args: &[&str]) -> (i32, String, String, Duration) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_orch"));
    // The home beside the test's files, never the user's.
    c.current_dir(dir)
        .env("ORCH_HOME", dir.join(".orch"))
        .env_remove("ORCH_CONFIG")
        .env_remove("ORCH_STORE_URL")
        .env_remove("CODOMYRMEX_ORCHESTRATION_DIR");
    for v in OTEL_VARS {
        c.env_remove(v);
    }
    c.envs(vars.iter().copied());
    let t0 = Instant::now();
    let out = c.args(args).output().expect("runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        t0.elapsed(),
    )
}

/// The spans of every request, after checking that each was an OTLP/HTTP
/// protobuf POST to `path`.
fn received(r: &Receiver, path: &str) -> Vec<Span> {
    let requests = r.requests();
    assert!(
        !requests.is_empty(),
        "no request reached the collector: the spans were not flushed before orch exited"
    );
    for q in &requests {
        assert_eq!(
            (q.method.as_str(), q.path.as_str(), q.content_type.as_str()),
            ("POST", path, "application/x-protobuf"),
            "{q:?}"
        );
    }
    requests.iter().flat_map(|q| spans(&q.body)).collect()
}

fn named<'a>(spans: &'a [Span], name: &str) -> Vec<&'a Span> {
    spans.iter().filter(|s| s.name == name).collect()
}

fn event<'a>(s: &'a Span, name: &str) -> &'a BTreeMap<String, String> {
    s.events
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, a)| a)
        .unwrap_or_else(|| panic!("an event `{name}` in {s:?}"))
}

/// The run's span and one per attempt, in one trace, each attempt a child
/// of the run; returns the run's id.
fn check_run(spans: &[Span], workflow: &str, status: &str, second: &str, service: &str) -> String {
    let runs = named(spans, "run");
    assert_eq!(runs.len(), 1, "one run span: {spans:#?}");
    let run = runs[0];
    assert_eq!(
        run.resource.get("service.name").map(String::as_str),
        Some(service)
    );
    assert_eq!(
        run.attributes.get("workflow").map(String::as_str),
        Some(workflow),
        "{run:?}"
    );
    assert_eq!(
        run.attributes.get("steps").map(String::as_str),
        Some("2"),
        "{run:?}"
    );
    let run_id = run.attributes.get("run").cloned().expect("the run's id");
    assert!(!run_id.is_empty());
    assert!(
        run.parent_span_id.is_empty(),
        "the run is a root span: {run:?}"
    );
    assert_eq!(run.trace_id.len(), 16, "{run:?}");
    assert!(run.trace_id.iter().any(|&b| b != 0), "a trace id: {run:?}");
    assert_eq!(
        event(run, "run ended").get("status").map(String::as_str),
        Some(status),
        "{run:?}"
    );

    let attempts = named(spans, "attempt");
    let mut steps: Vec<&str> = attempts
        .iter()
        .map(|a| a.attributes.get("step").map_or("", String::as_str))
        .collect();
    steps.sort_unstable();
    assert_eq!(
        steps,
        ["first", "second"],
        "one span per attempt: {spans:#?}"
    );
    for a in &attempts {
        assert_eq!(a.trace_id, run.trace_id, "one trace: {a:?}");
        assert_eq!(a.parent_span_id, run.span_id, "a child of the run: {a:?}");
        assert_eq!(a.attributes.get("run"), Some(&run_id), "{a:?}");
        assert_eq!(
            a.attributes.get("attempt").map(String::as_str),
            Some("1"),
            "{a:?}"
        );
        let ended = event(a, "attempt ended").get("status").map(String::as_str);
        let want = if a.attributes.get("step").map(String::as_str) == Some("second") {
            second
        } else {
            "completed"
        };
        assert_eq!(ended, Some(want), "{a:?}");
    }
    run_id
}

#[test]
fn a_run_exports_its_span_and_one_per_attempt_in_one_trace() {
    let collector = Receiver::start(false);
    let dir = dir_with(WF);
    let endpoint = format!("http://127.0.0.1:{}", collector.port);
    // No -v: standard error shows nothing more, the spans are exported all the same.
    let (code, out, err, _) = orch(
        dir.path(),
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)],
        &["run", "wf.yaml"],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("workflow `exported` completed"), "{out}");
    assert!(!err.contains("INFO") && !err.contains("DEBUG"), "{err}");
    assert!(!err.contains("warning"), "{err}");
    let spans = received(&collector, "/v1/traces");
    let run_id = check_run(&spans, "exported", "completed", "completed", "orch");
    assert!(
        out.contains(&run_id),
        "the run's id is the one printed: {out}\n{run_id}"
    );
}

#[test]
fn a_failing_run_exports_its_spans_too() {
    let collector = Receiver::start(false);
    let dir = dir_with(FAILING);
    let endpoint = format!("http://127.0.0.1:{}", collector.port);
    let (code, out, err, _) = orch(
        dir.path(),
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)],
        &["run", "wf.yaml"],
    );
    assert_eq!(code, 1, "{out}{err}");
    let spans = received(&collector, "/v1/traces");
    check_run(&spans, "broken", "failed", "failed", "orch");
}

#[test]
fn the_traces_endpoint_is_used_as_it_is_written() {
    let collector = Receiver::start(false);
    let dir = dir_with(WF);
    let endpoint = format!("http://127.0.0.1:{}/custom/traces", collector.port);
    let (code, out, err, _) = orch(
        dir.path(),
        &[
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", &endpoint),
            // Ignored: the traces' own variable wins.
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9"),
            ("OTEL_SERVICE_NAME", "orch-nightly"),
        ],
        &["-v", "run", "wf.yaml"],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        err.contains("run started"),
        "-v logs as without the export: {err}"
    );
    assert!(
        !err.contains("DEBUG"),
        "-v logs as without the export: {err}"
    );
    let spans = received(&collector, "/custom/traces");
    check_run(&spans, "exported", "completed", "completed", "orch-nightly");
}

#[test]
fn no_endpoint_no_export_and_the_run_is_unchanged() {
    let collector = Receiver::start(false);
    let dir = dir_with(WF);
    // The collector's port given in a variable orch does not read.
    let (code, out, err, _) = orch(
        dir.path(),
        &[(
            "OTLP_ENDPOINT",
            &format!("http://127.0.0.1:{}", collector.port),
        )],
        &["run", "wf.yaml"],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("workflow `exported` completed"), "{out}");
    assert!(
        collector.requests().is_empty(),
        "{:?}",
        collector.requests()
    );
}

#[test]
fn a_collector_that_refuses_connections_fails_no_run_and_holds_no_exit() {
    // A port that was free a moment ago: connections to it are refused.
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("address").port()
    };
    let dir = dir_with(WF);
    let endpoint = format!("http://127.0.0.1:{port}");
    let (code, out, err, took) = orch(
        dir.path(),
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)],
        &["run", "wf.yaml"],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("workflow `exported` completed"), "{out}");
    assert!(
        took < Duration::from_secs(8),
        "exit held for {took:?}: {err}"
    );
    assert!(
        err.contains("OpenTelemetry export") && err.contains(&endpoint),
        "one warning that names the collector: {err}"
    );
}

#[test]
fn a_collector_that_never_answers_fails_no_run_and_holds_the_exit_briefly() {
    let collector = Receiver::start(true);
    let dir = dir_with(WF);
    let endpoint = format!("http://127.0.0.1:{}", collector.port);
    let (code, out, err, took) = orch(
        dir.path(),
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)],
        &["run", "wf.yaml"],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("workflow `exported` completed"), "{out}");
    assert!(
        took < Duration::from_secs(12),
        "exit held for {took:?}: {err}"
    );
    assert!(!collector.requests().is_empty(), "the export was tried");
    assert!(
        err.contains("OpenTelemetry export") && err.contains(&endpoint),
        "one warning that names the collector: {err}"
    );
}

#[test]
fn a_configuration_orch_cannot_honour_turns_the_export_off_with_a_warning() {
    let collector = Receiver::start(false);
    let dir = dir_with(WF);
    let base = format!("http://127.0.0.1:{}", collector.port);
    let https = format!("https://127.0.0.1:{}", collector.port);
    let cases: [(&[(&str, &str)], &str); 4] = [
        (
            &[("OTEL_EXPORTER_OTLP_ENDPOINT", &https)],
            "OTEL_EXPORTER_OTLP_ENDPOINT gives",
        ),
        (
            &[("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "127.0.0.1:4318")],
            "is not an http:// address",
        ),
        (
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", &base),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ],
            "OTEL_EXPORTER_OTLP_PROTOCOL=\"grpc\" is not supported",
        ),
        (
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", &base),
                ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/json"),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ],
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL=\"http/json\" is not supported",
        ),
    ];
    for (vars, said) in cases {
        let (code, out, err, _) = orch(dir.path(), vars, &["run", "wf.yaml"]);
        assert_eq!(code, 0, "{vars:?}: the run goes on: {out}{err}");
        assert!(out.contains("workflow `exported` completed"), "{out}");
        assert_eq!(
            err.matches("orch: warning: OpenTelemetry export is off: ")
                .count(),
            1,
            "{vars:?}: {err}"
        );
        assert!(err.contains(said), "{vars:?}: {err}");
    }
    // OTEL_SDK_DISABLED=true turns it off without a word.
    let (code, out, err, _) = orch(
        dir.path(),
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &base),
            ("OTEL_SDK_DISABLED", "true"),
        ],
        &["run", "wf.yaml"],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(!err.contains("OpenTelemetry"), "{err}");
    assert!(
        collector.requests().is_empty(),
        "{:?}",
        collector.requests()
    );
}
