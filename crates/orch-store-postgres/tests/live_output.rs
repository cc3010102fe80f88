//! A step run by an `orch worker` on PostgreSQL writes its output to the
//! store while it runs, and `orch logs RUN STEP --follow` in another
//! process prints it before the step ends and exits when it ends. The step
//! waits for a file the test writes: the test synchronises on content.

mod common;
mod procs;

use orch_model::store::OutputStream;
use orch_model::{Store, TaskStatus, WorkflowStatus};
use procs::{Fixture, PATIENCE, one_at_a_time, wait_for};
use std::io::{BufRead, BufReader, Read};
use std::process::Stdio;
use std::sync::mpsc;

const SLOW: &str = r#"
name: slow
steps:
  - name: talk
    module: shell
    action: script
    parameters:
      script: 'echo one; echo oops >&2; while [ ! -e go ]; do sleep 0.02; done; echo two'
"#;

#[test]
fn a_workers_step_is_followed_while_it_runs() {
    let _one = one_at_a_time();
    let f = Fixture::new();
    f.write("slow.yaml", SLOW);
    let run = f.submit("slow.yaml");
    let _w = f.worker("w1", &[]);

    // The worker stored the first lines while the step waits.
    wait_for("the step's first line in the store", PATIENCE, || {
        let chunks = f.call("output", |s| s.output(run, 0, 0, 100));
        chunks
            .iter()
            .filter(|c| c.stream == OutputStream::Stdout)
            .flat_map(|c| c.data.iter().copied())
            .collect::<Vec<u8>>()
            == b"one\n"
    });
    assert_eq!(f.tasks(run)[0].status, TaskStatus::Running);

    let mut follow = f
        .orch()
        .env("ORCH_STORE_URL", &f.url)
        .args(["logs", &run.to_string(), "talk", "--follow"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("orch logs starts");
    let out = follow.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let first = rx.recv_timeout(PATIENCE).expect("a first line");
    assert_eq!(first, "one");
    assert!(
        follow.try_wait().expect("try_wait").is_none(),
        "--follow goes on while the step runs"
    );
    f.write("go", "");
    let status = follow.wait().expect("orch logs ends");
    let mut rest = Vec::new();
    while let Ok(line) = rx.recv_timeout(PATIENCE) {
        rest.push(line);
    }
    let mut err = String::new();
    if let Some(mut e) = follow.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    assert_eq!(status.code(), Some(0), "{rest:?} {err}");
    assert_eq!(rest, ["two", "--- exit code 0 ---"], "{err}");
    assert_eq!(err, "oops\n");
    assert_eq!(f.wait_end(run).status, WorkflowStatus::Completed);
}
