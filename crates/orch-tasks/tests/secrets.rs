//! Secrets at run time: a step gets the secrets it declares as environment variables and no other; every occurrence of a value (and of its encodings) is `***` in live output chunks, results, errors, events and reports of every step of the run; a secret file readable by others stops the run before anything is recorded.

mod common;

use common::{rt, yaml};
use orch_model::store::OutputStream;
use orch_model::{ErrorCode, Store, TaskStatus, WorkflowStatus};
use orch_tasks::secrets::Secrets;
use orch_tasks::{ActionRegistry, MemoryStore, RunOptions, run_workflow};
use std::sync::Arc;

const SECRET: &str = "pa55-W0rd/with+odd=chars";

/// base64 of SECRET, as `base64` prints it.
fn b64(v: &str) -> String {
    let out = std::process::Command::new("base64")
        .arg("-w0")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().expect("stdin").write_all(v.as_bytes())?;
            c.wait_with_output()
        })
        .expect("base64 runs");
    String::from_utf8(out.stdout).expect("ASCII")
}

const FLOW: &str = r#"
name: leaky
secrets:
  API_TOKEN: { file: token }
steps:
  - name: user
    module: shell
    action: script
    secrets: [API_TOKEN]
    parameters:
      script: |
        printf 'token=%s\n' "$API_TOKEN"
        printf '%s' "$API_TOKEN" | base64 -w0; echo
        printf 'err %s\n' "$API_TOKEN" >&2
        printf '%s' "$API_TOKEN" > handed-over.txt
  - name: bystander
    module: shell
    action: script
    dependencies: [user]
    parameters:
      script: |
        echo "sees [$${API_TOKEN:-nothing}]"
        cat handed-over.txt
  - name: reader
    module: fs
    action: read
    dependencies: [user]
    parameters: { path: handed-over.txt }
  - name: failing
    module: shell
    action: script
    secrets: [API_TOKEN]
    dependencies: [bystander]
    parameters:
      script: 'echo "failing with $API_TOKEN" >&2; exit 3'
"#;

fn private_file(dir: &std::path::Path, name: &str, text: &str, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write");
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

#[test]
fn values_reach_only_declaring_steps_and_are_masked_everywhere() {
    let dir = tempfile::tempdir().expect("dir");
    private_file(dir.path(), "token", &format!("{SECRET}\n"), 0o600);
    let wf = yaml(FLOW);
    let reg = ActionRegistry::with_builtins();
    let store = Arc::new(MemoryStore::new());
    let opts = RunOptions {
        store: Some(store.clone()),
        work_dir: dir.path().to_path_buf(),
        ..RunOptions::default()
    };
    let run = opts.run_id;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let report = rt()
        .block_on(run_workflow(&wf, &reg, opts, Some(tx)))
        .expect("ran");
    assert_eq!(report.status, WorkflowStatus::Failed, "`failing` fails");
    let encoded = b64(SECRET);
    let clean = |what: &str, text: &str| {
        assert!(!text.contains(SECRET), "{what} shows the secret: {text}");
        assert!(!text.contains(&encoded), "{what} shows its base64: {text}");
    };
    // The step that declared it got it (its output says so, masked).
    let user = report.steps[0].result.as_ref().expect("user ran");
    assert_eq!(user.data["stdout"], "token=***\n***\n");
    assert_eq!(user.data["stderr"], "err ***\n");
    // One that did not declare it sees nothing; what it reads is masked.
    let by = report.steps[1].result.as_ref().expect("bystander ran");
    assert_eq!(by.data["stdout"], "sees [nothing]\n***");
    let reader = report.steps[2].result.as_ref().expect("reader ran");
    clean("fs.read's result", &reader.data.to_string());
    assert!(reader.data.to_string().contains("***"), "{}", reader.data);
    let failing = &report.steps[3];
    assert_eq!(failing.status, TaskStatus::Failed);
    let r = failing.result.as_ref().expect("a result");
    assert_eq!(r.data["stderr"], "failing with ***\n");
    // Reports, events, the store's records and output chunks.
    clean("the report", &format!("{report:?}"));
    let mut events = Vec::new();
    while let Ok(e) = rx.try_recv() {
        events.push(format!("{e:?}"));
    }
    assert!(
        events.iter().any(|e| e.contains("TaskFailed")),
        "{events:?}"
    );
    clean("the events", &events.join("\n"));
    rt().block_on(async {
        let tasks = store.tasks(run).await.expect("tasks");
        clean("the store's tasks", &format!("{tasks:?}"));
        let stored = store.events(run, 0).await.expect("events");
        clean("the store's events", &format!("{stored:?}"));
        let saved = store.get_run(run).await.expect("run").expect("the run");
        clean("the saved definition", &saved.definition);
        for task in 0..4 {
            let chunks = store.output(run, task, 0, 1000).await.expect("chunks");
            let text: Vec<u8> = chunks.iter().flat_map(|c| c.data.clone()).collect();
            clean("live output", &String::from_utf8_lossy(&text));
            if task == 0 {
                let out: Vec<u8> = chunks
                    .iter()
                    .filter(|c| c.stream == OutputStream::Stdout)
                    .flat_map(|c| c.data.clone())
                    .collect();
                assert_eq!(String::from_utf8_lossy(&out), "token=***\n***\n");
            }
        }
    });
    // What the step wrote to a file is the step's business: the value is there.
    let handed = std::fs::read_to_string(dir.path().join("handed-over.txt")).expect("file");
    assert_eq!(handed, SECRET);
}

#[test]
fn a_secret_file_others_may_read_stops_the_run_before_anything_is_recorded() {
    let dir = tempfile::tempdir().expect("dir");
    private_file(dir.path(), "token", SECRET, 0o640);
    let wf = yaml(FLOW);
    let store = Arc::new(MemoryStore::new());
    let opts = RunOptions {
        store: Some(store.clone()),
        work_dir: dir.path().to_path_buf(),
        ..RunOptions::default()
    };
    let run = opts.run_id;
    let err = rt()
        .block_on(run_workflow(
            &wf,
            &ActionRegistry::with_builtins(),
            opts,
            None,
        ))
        .expect_err("refused");
    assert_eq!(err.error_code(), ErrorCode::PermissionDenied);
    let msg = err.to_string();
    assert!(
        msg.contains("secret `API_TOKEN`")
            && msg.contains("mode 0640")
            && msg.contains("chmod 600"),
        "{msg}"
    );
    assert!(!msg.contains(SECRET), "{msg}");
    let recorded = rt().block_on(store.get_run(run)).expect("get_run");
    assert!(recorded.is_none(), "nothing is recorded");
    assert!(!dir.path().join("handed-over.txt").exists(), "nothing ran");
}

#[test]
fn secrets_given_by_the_caller_are_used_and_a_secret_split_across_reads_is_masked() {
    let dir = tempfile::tempdir().expect("dir");
    let wf = yaml(
        r#"
name: given
secrets:
  K: { env: ORCH_TEST_UNSET_SECRET_SOURCE }
steps:
  - name: slow
    module: shell
    action: script
    secrets: [K]
    parameters:
      # The value in two writes, 300 ms apart: two reads of the pipe, two chunks.
      script: 'v="$K"; printf "start %s" "$${v%%-*}"; sleep 0.3; printf -- "-%s end\n" "$${v#*-}"'
"#,
    );
    let store = Arc::new(MemoryStore::new());
    let opts = RunOptions {
        store: Some(store.clone()),
        work_dir: dir.path().to_path_buf(),
        secrets: Some(Arc::new(Secrets::from_values([("K", "first-second")]))),
        ..RunOptions::default()
    };
    let run = opts.run_id;
    let report = rt()
        .block_on(run_workflow(
            &wf,
            &ActionRegistry::with_builtins(),
            opts,
            None,
        ))
        .expect("ran: the caller's values are used, the environment is not read");
    assert_eq!(report.status, WorkflowStatus::Completed);
    let r = report.steps[0].result.as_ref().expect("result");
    assert_eq!(r.data["stdout"], "start *** end\n");
    let chunks = rt().block_on(store.output(run, 0, 0, 100)).expect("chunks");
    let text: Vec<u8> = chunks.iter().flat_map(|c| c.data.clone()).collect();
    assert_eq!(String::from_utf8_lossy(&text), "start *** end\n");
}
