//! Concurrency keys across processes: `orch run` processes sharing one SQLite store keep two runs of one key apart (`queue`: the second starts its step only after the first ended), let runs of another key run meanwhile, run nothing (`skip`), or stop the holder first (`cancel_running`). Steps wait for files the test writes, and the test waits for what the processes print or write: nothing is timed.

mod common;

use common::{orch_cmd, run};
use std::io::Read;
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A deploy that records its start, waits for `go-TAG`, and records its end.
fn flow(on_conflict: &str) -> String {
    format!(
        r#"
name: deploy-{on_conflict}
parameters: {{ env: prod, tag: a }}
concurrency: {{ key: "deploy-${{params.env}}", limit: 1, on_conflict: {on_conflict} }}
steps:
  - name: work
    module: shell
    action: script
    parameters:
      script: 'echo "start $TAG" >> ledger; while [ ! -e "go-$TAG" ]; do sleep 0.02; done; echo "end $TAG" >> ledger'
      env: {{ TAG: "${{params.tag}}" }}
"#
    )
}

/// Against hangs only.
const PATIENCE: Duration = Duration::from_secs(120);

/// An `orch` process whose standard output and error are collected as they come.
struct Orch {
    child: Child,
    out: Arc<Mutex<String>>,
    err: Arc<Mutex<String>>,
}

fn collect(mut r: impl Read + Send + 'static) -> Arc<Mutex<String>> {
    let buf = Arc::new(Mutex::new(String::new()));
    let b = buf.clone();
    std::thread::spawn(move || {
        let mut chunk = [0u8; 4096];
        while let Ok(n) = r.read(&mut chunk) {
            if n == 0 {
                break;
            }
            if let Ok(mut s) = b.lock() {
                s.push_str(&String::from_utf8_lossy(&chunk[..n]));
            }
        }
    });
    buf
}

impl Orch {
    fn run(dir: &Path, file: &str, args: &[&str]) -> Self {
        let mut child = orch_cmd(dir)
            .arg("run")
            .arg(file)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("orch starts");
        let out = collect(child.stdout.take().expect("stdout"));
        let err = collect(child.stderr.take().expect("stderr"));
        Self { child, out, err }
    }

    fn stderr(&self) -> String {
        self.err.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Waits for the process to end: its exit code and standard output.
    fn end(mut self) -> (i32, String) {
        let status = self.child.wait().expect("orch ends");
        // The readers end with the pipes.
        let deadline = Instant::now() + PATIENCE;
        let out = loop {
            let out = self.out.lock().map(|s| s.clone()).unwrap_or_default();
            if out.contains("workflow `") || Instant::now() > deadline {
                break out;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        (status.code().unwrap_or(-1), out)
    }
}

fn ledger(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("ledger"))
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn go(dir: &Path, tag: &str) {
    std::fs::write(dir.join(format!("go-{tag}")), b"").expect("go");
}

#[test]
fn two_processes_never_run_one_key_at_once_and_other_keys_run_meanwhile() {
    let dir = tempfile::tempdir().expect("dir");
    let d = dir.path();
    std::fs::write(d.join("queue.yaml"), flow("queue")).expect("write");

    let a = Orch::run(d, "queue.yaml", &["-p", "tag=a"]);
    wait_for("a's step", || ledger(d).contains(&"start a".to_owned()));
    let b = Orch::run(d, "queue.yaml", &["-p", "tag=b"]);
    // It says so as orch says things, naming the run that holds the key
    // and how to stop it; not as a log line.
    let a_id = {
        let mut id = String::new();
        wait_for("a's run id", || {
            id = a
                .stderr()
                .lines()
                .find_map(|l| l.split("run ").nth(1)?.split(' ').next().map(str::to_owned))
                .unwrap_or_default();
            id.len() == 36
        });
        id
    };
    let notice = format!(
        "waits for the concurrency key `deploy-prod`, held by run {a_id} (limit 1); it starts when that run ends (`orch cancel {a_id}` stops that run)\n"
    );
    wait_for("b to say it waits", || b.stderr().contains(&notice));
    let said = b.stderr();
    let line = said.lines().find(|l| l.contains("waits for")).unwrap_or("");
    assert!(line.starts_with("orch: run "), "{said}");
    assert!(!said.contains("WARN"), "no log line: {said}");
    assert_eq!(ledger(d), ["start a"], "b has not started its step");

    // Another key is not held up.
    let c = Orch::run(d, "queue.yaml", &["-p", "tag=c", "-p", "env=staging"]);
    wait_for("c's step", || ledger(d).contains(&"start c".to_owned()));
    go(d, "c");
    assert_eq!(c.end().0, 0);
    assert_eq!(ledger(d), ["start a", "start c", "end c"], "b still waits");

    go(d, "a");
    let (code, _) = a.end();
    assert_eq!(code, 0);
    wait_for("b's step", || ledger(d).contains(&"start b".to_owned()));
    go(d, "b");
    let (code, out) = b.end();
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        ledger(d),
        ["start a", "start c", "end c", "end a", "start b", "end b"]
    );
}

#[test]
fn skip_runs_nothing_and_cancel_running_stops_the_holder_first() {
    let dir = tempfile::tempdir().expect("dir");
    let d = dir.path();
    for policy in ["queue", "skip", "cancel_running"] {
        std::fs::write(d.join(format!("{policy}.yaml")), flow(policy)).expect("write");
    }
    let e = Orch::run(d, "queue.yaml", &["-p", "tag=e"]);
    wait_for("e's step", || ledger(d).contains(&"start e".to_owned()));

    let skip = Orch::run(d, "skip.yaml", &["-p", "tag=s"]);
    let (code, out) = skip.end();
    assert_eq!(code, 0, "a skipped run is no failure: {out}");
    assert!(
        out.contains("skipped: the concurrency key `deploy-prod` is held by run"),
        "{out}"
    );
    assert_eq!(ledger(d), ["start e"], "the skipped run ran nothing");
    let (_, list, _) = run(d, &["runs", "list", "--json"]);
    let runs: serde_json::Value = serde_json::from_str(&list).expect("JSON");
    assert_eq!(
        runs.as_array().map(Vec::len),
        Some(1),
        "nor was it recorded: {list}"
    );

    let f = Orch::run(d, "cancel_running.yaml", &["-p", "tag=f"]);
    let (code, out) = e.end();
    assert_eq!(code, 1, "e was cancelled: {out}");
    assert!(out.contains("cancelled"), "{out}");
    wait_for("f's step", || ledger(d).contains(&"start f".to_owned()));
    go(d, "f");
    assert_eq!(f.end().0, 0);
    assert_eq!(
        ledger(d),
        ["start e", "start f", "end f"],
        "e never ended its step"
    );
}
