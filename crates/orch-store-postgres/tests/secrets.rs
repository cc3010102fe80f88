//! Secrets on PostgreSQL with `orch worker`: a run submitted by a process that does not have the secret is run by a worker that reads it where it runs the step; the step gets it as an environment variable, and what it prints of it is `***` in the stored result, events and output chunks. A worker that cannot read the secret fails the step, saying why, without the value anywhere.

mod common;
mod procs;

use orch_model::{Store, TaskStatus, WorkflowStatus};
use procs::{Fixture, one_at_a_time};
use std::process::{Child, Stdio};

const TOKEN: &str = "pg-worker-tok-5b1e9f-Value/+";

const FLOW: &str = r#"
name: deploy
secrets:
  API_TOKEN: { env: DEPLOY_TOKEN }
steps:
  - name: push
    module: shell
    action: script
    secrets: [API_TOKEN]
    parameters:
      script: |
        echo "token=$API_TOKEN"
        printf '%s' "$API_TOKEN" | base64
        echo "err $API_TOKEN" >&2
"#;

/// An `orch worker` with `DEPLOY_TOKEN` set (or not), killed when dropped.
struct Worker(Child);

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn worker(f: &Fixture, id: &str, token: Option<&str>) -> Worker {
    let mut c = f.orch();
    c.args(["worker", "--store", &f.url, "--id", id])
        .args(["--lease", "2000ms", "--poll", "50ms", "--grace", "5s"])
        .arg("--work-dir")
        .arg(&f.dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    match token {
        Some(t) => c.env("DEPLOY_TOKEN", t),
        None => c.env_remove("DEPLOY_TOKEN"),
    };
    Worker(c.spawn().expect("orch worker starts"))
}

fn base64(v: &str) -> String {
    let out = std::process::Command::new("base64")
        .arg("-w0")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().expect("stdin").write_all(v.as_bytes())?;
            c.wait_with_output()
        })
        .expect("base64 runs");
    String::from_utf8(out.stdout).expect("ASCII")
}

fn assert_clean(what: &str, text: &str) {
    assert!(!text.contains(TOKEN), "{what} holds the secret: {text}");
    assert!(
        !text.contains(&base64(TOKEN)),
        "{what} holds its base64: {text}"
    );
}

#[test]
fn a_worker_reads_the_secret_where_it_runs_the_step_and_masks_it() {
    let _one = one_at_a_time();
    let f = Fixture::new();
    f.write("flow.yaml", FLOW);
    // Submitted by a process without the variable: nothing is read there.
    let run = f.submit("flow.yaml");
    let _w = worker(&f, "w1", Some(TOKEN));
    let rec = f.wait_end(run);
    assert_eq!(rec.status, WorkflowStatus::Completed);
    let tasks = f.tasks(run);
    let data = &tasks[0].result.as_ref().expect("a result").data;
    assert_eq!(data["stdout"], "token=***\n***\n");
    assert_eq!(data["stderr"], "err ***\n");
    assert_clean("the tasks", &format!("{tasks:?}"));
    assert_clean("the events", &format!("{:?}", f.events(run)));
    assert_clean("the run", &format!("{rec:?}"));
    let chunks = f.call("output", |s| s.output(run, 0, 0, 100));
    let text: Vec<u8> = chunks.iter().flat_map(|c| c.data.clone()).collect();
    assert_clean("the output chunks", &String::from_utf8_lossy(&text));
    assert!(String::from_utf8_lossy(&text).contains("token=***"));
}

#[test]
fn a_worker_without_the_secret_fails_the_step_and_says_why() {
    let _one = one_at_a_time();
    let f = Fixture::new();
    f.write("flow.yaml", FLOW);
    let run = f.submit("flow.yaml");
    let _w = worker(&f, "w2", None);
    let rec = f.wait_end(run);
    assert_eq!(rec.status, WorkflowStatus::Failed);
    let t = &f.tasks(run)[0];
    assert_eq!(t.status, TaskStatus::Failed);
    let r = t.result.as_ref().expect("a result");
    assert_eq!(r.error_type.as_deref(), Some("SecretError"));
    let msg = r.error_message.clone().unwrap_or_default();
    assert!(msg.contains("`DEPLOY_TOKEN`, which is not set"), "{msg}");
}
