//! A step's output is in the store while the step runs: in chunks of at
//! most 64 KiB, within the output limit (the chunk that reaches it says
//! so), numbered by attempt, written by the run's coordinator and by a
//! worker alike; a step that prints nothing writes nothing.

mod common;

use common::{rt, yaml};
use orch_model::store::{CHUNK_BYTES, OutputChunk, OutputSoFar, OutputStream};
use orch_model::{RunId, RunSettings, Store, TaskStatus, WorkflowStatus};
use orch_tasks::worker::{Worker, WorkerOptions, submit};
use orch_tasks::{ActionRegistry, MemoryStore, RunOptions, run_workflow};
use serde_json::{Map, Value, json};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Prints a line on each stream, waits for the file `$GO`, prints another.
const SLOW: &str = r#"
name: slow
parameters: { go: "" }
steps:
  - name: talk
    module: shell
    action: script
    parameters:
      script: 'echo one; echo oops >&2; while [ ! -e "$GO" ]; do sleep 0.02; done; echo two'
      env: { GO: "${params.go}" }
"#;

/// Reads step `task`'s chunks until `cond` holds of them; panics after a
/// generous deadline, only so that a broken test does not hang.
async fn chunks_until(
    store: &dyn Store,
    run: RunId,
    task: u32,
    what: &str,
    cond: impl Fn(&[OutputChunk]) -> bool,
) -> Vec<OutputChunk> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got = store.output(run, task, 0, 10_000).await.expect("output");
        if cond(&got) {
            return got;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn text(chunks: &[OutputChunk], stream: OutputStream) -> String {
    let bytes: Vec<u8> = chunks
        .iter()
        .filter(|c| c.stream == stream)
        .flat_map(|c| c.data.iter().copied())
        .collect();
    String::from_utf8(bytes).expect("UTF-8")
}

fn go_params(dir: &Path) -> Map<String, Value> {
    let go = dir.join("go").display().to_string();
    json!({ "go": go }).as_object().cloned().unwrap_or_default()
}

#[test]
fn a_running_steps_output_is_in_the_store_before_it_ends() {
    let dir = tempfile::tempdir().expect("dir");
    let wf = yaml(SLOW);
    let reg = ActionRegistry::with_builtins();
    let store = Arc::new(MemoryStore::new());
    let opts = RunOptions {
        store: Some(store.clone()),
        params: go_params(dir.path()),
        work_dir: dir.path().to_path_buf(),
        ..RunOptions::default()
    };
    let run = opts.run_id;
    rt().block_on(async {
        let running = tokio::spawn({
            let (wf, reg) = (wf.clone(), reg.clone());
            async move { run_workflow(&wf, &reg, opts, None).await }
        });
        let early = chunks_until(store.as_ref(), run, 0, "the first line", |c| {
            text(c, OutputStream::Stdout) == "one\n" && text(c, OutputStream::Stderr) == "oops\n"
        })
        .await;
        // The step waits for the file: it is still running.
        let t = &store.tasks(run).await.expect("tasks")[0];
        assert_eq!(t.status, TaskStatus::Running, "read while the step runs");
        assert!(t.result.is_none());
        assert!(early.iter().all(|c| c.attempt == 1 && !c.truncated));
        let seqs: Vec<u64> = early.iter().map(|c| c.seq).collect();
        assert_eq!(seqs, (1..=early.len() as u64).collect::<Vec<_>>());
        std::fs::write(dir.path().join("go"), b"").expect("go");
        let report = running.await.expect("task").expect("ran");
        assert_eq!(report.status, WorkflowStatus::Completed);
        // Every chunk is stored before the step's end is.
        let all = store.output(run, 0, 0, 1000).await.expect("output");
        assert_eq!(text(&all, OutputStream::Stdout), "one\ntwo\n");
        assert_eq!(text(&all, OutputStream::Stderr), "oops\n");
        let result = store.tasks(run).await.expect("tasks")[0]
            .result
            .clone()
            .expect("a result");
        assert_eq!(result.data["stdout"], "one\ntwo\n", "the result as before");
        let mut so_far = OutputSoFar::default();
        so_far.extend(&all);
        assert_eq!(
            (so_far.attempt, &so_far.stdout[..]),
            (1, &b"one\ntwo\n"[..])
        );
    });
}

#[test]
fn output_is_cut_into_bounded_chunks_and_kept_up_to_the_limit() {
    let dir = tempfile::tempdir().expect("dir");
    // 200 KiB on stdout (more than three chunks) and 5000 bytes on stderr,
    // past a limit of 150 KiB for each.
    let wf = yaml(
        r#"
name: big
steps:
  - name: big
    module: shell
    action: script
    parameters:
      script: 'head -c 204800 /dev/zero | tr "\0" a; head -c 5000 /dev/zero | tr "\0" b >&2'
"#,
    );
    let limit = 150 * 1024;
    let store = Arc::new(MemoryStore::new());
    let opts = RunOptions {
        store: Some(store.clone()),
        work_dir: dir.path().to_path_buf(),
        output_limit: limit,
        ..RunOptions::default()
    };
    let run = opts.run_id;
    rt().block_on(async {
        let report = run_workflow(&wf, &ActionRegistry::with_builtins(), opts, None)
            .await
            .expect("ran");
        assert_eq!(report.status, WorkflowStatus::Completed);
        let all = store.output(run, 0, 0, 1000).await.expect("output");
        assert!(all.iter().all(|c| c.data.len() <= CHUNK_BYTES));
        let out: Vec<&OutputChunk> = all
            .iter()
            .filter(|c| c.stream == OutputStream::Stdout)
            .collect();
        assert!(out.len() >= 3, "{} chunks", out.len());
        let kept: usize = out.iter().map(|c| c.data.len()).sum();
        assert_eq!(kept, limit, "the first `limit` bytes are kept");
        assert!(out.iter().flat_map(|c| c.data.iter()).all(|&b| b == b'a'));
        assert!(
            out.last().is_some_and(|c| c.truncated),
            "the chunk that reached the limit says so"
        );
        assert_eq!(
            out.iter().filter(|c| c.truncated).count(),
            1,
            "one mark, on the last chunk"
        );
        assert_eq!(text(&all, OutputStream::Stderr), "b".repeat(5000));
        assert!(
            all.iter()
                .filter(|c| c.stream == OutputStream::Stderr)
                .all(|c| !c.truncated)
        );
        let result = store.tasks(run).await.expect("tasks")[0]
            .result
            .clone()
            .expect("a result");
        assert_eq!(result.data["stdout_truncated"], true, "as the result says");
    });
}

#[test]
fn steps_that_print_nothing_write_nothing() {
    let dir = tempfile::tempdir().expect("dir");
    let wf = yaml(
        r#"
name: quiet
steps:
  - { name: quiet, module: shell, action: exec, parameters: { program: "true" } }
  - { name: plain, module: core, action: noop }
  - { name: nap, module: core, action: sleep, parameters: { ms: 1 } }
"#,
    );
    let store = Arc::new(MemoryStore::new());
    let opts = RunOptions {
        store: Some(store.clone()),
        work_dir: dir.path().to_path_buf(),
        ..RunOptions::default()
    };
    let run = opts.run_id;
    rt().block_on(async {
        let report = run_workflow(&wf, &ActionRegistry::with_builtins(), opts, None)
            .await
            .expect("ran");
        assert_eq!(report.status, WorkflowStatus::Completed);
        for task in 0..3 {
            assert!(
                store
                    .output(run, task, 0, 10)
                    .await
                    .expect("output")
                    .is_empty(),
                "step {task} wrote no chunk"
            );
        }
    });
}

#[test]
fn each_try_of_a_retried_step_is_numbered() {
    let dir = tempfile::tempdir().expect("dir");
    // Fails the first time (leaving a mark), succeeds the second.
    let wf = yaml(
        r#"
name: retried
steps:
  - name: flaky
    module: shell
    action: script
    max_retries: 1
    retry: { backoff: constant, initial_delay: 1ms, jitter: false }
    parameters:
      script: 'if [ -e tried ]; then echo second; else touch tried; echo first; exit 3; fi'
"#,
    );
    let store = Arc::new(MemoryStore::new());
    let opts = RunOptions {
        store: Some(store.clone()),
        work_dir: dir.path().to_path_buf(),
        ..RunOptions::default()
    };
    let run = opts.run_id;
    rt().block_on(async {
        let report = run_workflow(&wf, &ActionRegistry::with_builtins(), opts, None)
            .await
            .expect("ran");
        assert_eq!(report.status, WorkflowStatus::Completed);
        let all = store.output(run, 0, 0, 100).await.expect("output");
        let tries: Vec<(u32, &[u8])> = all.iter().map(|c| (c.attempt, &c.data[..])).collect();
        assert_eq!(tries, vec![(1, &b"first\n"[..]), (2, &b"second\n"[..])]);
        let t = &store.tasks(run).await.expect("tasks")[0];
        assert_eq!(t.attempt, 2, "the recorded attempts count both tries");
        let mut so_far = OutputSoFar::default();
        so_far.extend(&all);
        assert_eq!((so_far.attempt, &so_far.stdout[..]), (2, &b"second\n"[..]));
    });
}

#[test]
fn a_workers_step_writes_its_output_while_it_runs() {
    let dir = tempfile::tempdir().expect("dir");
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    rt().block_on(async {
        let settings = RunSettings {
            work_dir: Some(dir.path().to_path_buf()),
            ..RunSettings::default()
        };
        let run = submit(
            store.as_ref(),
            &yaml(SLOW),
            &ActionRegistry::with_builtins(),
            &go_params(dir.path()),
            &settings,
            RunId::new(),
        )
        .await
        .expect("submitted");
        let worker = Worker::new(
            store.clone(),
            Arc::new(ActionRegistry::with_builtins()),
            WorkerOptions {
                id: "w1".into(),
                poll: Duration::from_millis(10),
                ..WorkerOptions::default()
            },
        )
        .expect("a worker");
        let stop = CancellationToken::new();
        let task = tokio::spawn(worker.run(stop.clone()));
        let early = chunks_until(store.as_ref(), run, 0, "the first line", |c| {
            text(c, OutputStream::Stdout) == "one\n"
        })
        .await;
        assert_eq!(early[0].attempt, 1, "the claim's attempt");
        let t = &store.tasks(run).await.expect("tasks")[0];
        assert_eq!(t.status, TaskStatus::Running, "read while the step runs");
        std::fs::write(dir.path().join("go"), b"").expect("go");
        let deadline = Instant::now() + Duration::from_secs(60);
        while store.get_run(run).await.expect("get").expect("run").status == WorkflowStatus::Running
        {
            assert!(Instant::now() < deadline, "timed out waiting for the run");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let all = store.output(run, 0, 0, 100).await.expect("output");
        assert_eq!(text(&all, OutputStream::Stdout), "one\ntwo\n");
        assert_eq!(text(&all, OutputStream::Stderr), "oops\n");
        stop.cancel();
        task.await.expect("the worker's task");
    });
}
