//! `orch logs RUN STEP` of a running step shows what it printed so far, and
//! `--follow` prints its output as it is produced (before the step ends),
//! then exits when the step ends, with a status that says how it ended.
//! Steps wait for a file the test writes: the test synchronises on
//! content, never on time.

mod common;

use common::{orch_cmd, run};
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Two steps that print, wait for the file `go`, print again and end: one
/// completes, the other fails.
const SLOW: &str = r#"
name: slow
steps:
  - name: talk
    module: shell
    action: script
    parameters:
      script: 'echo one; echo oops >&2; while [ ! -e go ]; do sleep 0.02; done; echo two'
  - name: sulk
    module: shell
    action: script
    parameters:
      script: 'printf "bad "; while [ ! -e go ]; do sleep 0.02; done; echo news; exit 4'
"#;

/// Against hangs only.
const PATIENCE: Duration = Duration::from_secs(120);

/// A process whose standard output arrives line by line on a channel.
struct Lines {
    child: Child,
    rx: mpsc::Receiver<String>,
    seen: String,
}

impl Lines {
    fn spawn(dir: &Path, args: &[&str]) -> Self {
        let mut child = orch_cmd(dir)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("orch starts");
        let out = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            rx,
            seen: String::new(),
        }
    }

    /// Reads lines until one equals `want`.
    fn until_line(&mut self, want: &str) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push_str(&line);
                    self.seen.push('\n');
                    if line == want {
                        return;
                    }
                }
                Err(_) => panic!("no line `{want}`; got:\n{}", self.seen),
            }
        }
    }

    /// Waits for the end: exit code, all of stdout, all of stderr.
    fn finish(mut self) -> (i32, String, String) {
        let status = self.child.wait().expect("wait");
        while let Ok(line) = self.rx.recv_timeout(PATIENCE) {
            self.seen.push_str(&line);
            self.seen.push('\n');
        }
        let mut err = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        (status.code().unwrap_or(-1), self.seen, err)
    }
}

/// Polls `orch ARGS` until its stdout holds `want` (bounded).
fn until_output(dir: &Path, args: &[&str], want: &str) -> String {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let (_, out, err) = run(dir, args);
        if out.contains(want) {
            return out;
        }
        assert!(
            Instant::now() < deadline,
            "orch {args:?} never printed {want:?}; last:\n{out}{err}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn follow_prints_output_before_the_step_ends_and_exits_with_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    std::fs::write(d.join("slow.yaml"), SLOW).expect("write");
    let mut runner = orch_cmd(d)
        .args(["run", "slow.yaml"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("orch run starts");

    // Without --follow: what the running step printed so far.
    let so_far = until_output(d, &["logs", "last", "talk"], "one\n");
    assert!(so_far.contains("--- stdout so far ---"), "{so_far}");
    assert!(so_far.contains("oops"), "{so_far}");
    assert!(so_far.contains("step is running (attempt 1)"), "{so_far}");
    until_output(d, &["logs", "last", "sulk"], "bad");

    let mut talk = Lines::spawn(d, &["logs", "last", "talk", "--follow"]);
    let sulk = Lines::spawn(d, &["logs", "last", "sulk", "--follow", "--raw"]);
    talk.until_line("one");
    assert!(
        talk.child.try_wait().expect("try_wait").is_none(),
        "--follow goes on while the step runs"
    );
    // The step waits for `go`: the line was read from the store, not from
    // the step's end.
    assert!(!d.join("go").exists());
    std::fs::write(d.join("go"), b"").expect("go");

    let (code, out, err) = talk.finish();
    assert_eq!(code, 0, "the step completed:\n{out}{err}");
    assert_eq!(
        out, "one\ntwo\n--- exit code 0 ---\n",
        "its output once, then how it ended"
    );
    assert_eq!(err, "oops\n", "stderr on stderr");

    let (code, out, err) = sulk.finish();
    assert_eq!(code, 1, "the step failed:\n{out}{err}");
    assert_eq!(out, "bad news\n", "--raw prints the bytes only");

    let status = runner.wait().expect("orch run ends");
    assert_eq!(status.code(), Some(1), "the run failed (sulk)");

    // Once ended, --follow prints the result and exits at once.
    let (code, out, _) = run(d, &["logs", "last", "talk", "--follow"]);
    assert_eq!(code, 0);
    assert!(out.contains("--- stdout ---\none\ntwo\n"), "{out}");
    let (code, out, _) = run(d, &["logs", "last", "sulk", "-f"]);
    assert_eq!(code, 1);
    assert!(out.contains("--- failed: ExitCode:"), "{out}");
    // Without --follow, the exit status is 0 as before.
    let (code, _, _) = run(d, &["logs", "last", "sulk"]);
    assert_eq!(code, 0);
}
