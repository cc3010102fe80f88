//! Journaled runs: every outcome reaches the store, and a run resumes from the store.

mod common;

use async_trait::async_trait;
use common::rt;
use orch_model::store::Progress;
use orch_model::{Format, Limits, Store, TaskStatus, WorkflowStatus, load_workflow};
use orch_tasks::{
    Action, ActionContext, ActionError, ActionRegistry, MemoryStore, RunOptions, run_workflow,
};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};

/// Counts runs per step name.
#[derive(Debug, Default)]
struct Count(Mutex<Vec<String>>);

#[async_trait]
impl Action for Count {
    async fn run(&self, params: Value, ctx: &ActionContext) -> Result<Value, ActionError> {
        self.0.lock().expect("lock").push(ctx.step.to_string());
        Ok(params)
    }
}

const WF: &str = r#"
name: j
steps:
  - { name: a, module: t, action: count, parameters: { v: 1 } }
  - { name: b, module: t, action: count, parameters: { from_a: "${a.result.v}" } }
  - { name: c, module: t, action: count, dependencies: [a] }
  - { name: d, module: t, action: count, dependencies: [b, c] }
  - { name: never, module: core, action: fail, parameters: { retryable: false } }
  - { name: after_fail, module: t, action: count, dependencies: [never] }
"#;

fn setup() -> (Arc<Count>, ActionRegistry, orch_model::ValidWorkflow) {
    let count = Arc::new(Count::default());
    let mut reg = ActionRegistry::with_builtins();
    reg.register("t", "count", count.clone());
    let wf = load_workflow(WF, Format::Yaml, &Limits::default(), None).expect("valid");
    (count, reg, wf)
}

#[test]
fn every_outcome_of_a_journaled_run_is_in_the_store() {
    let (count, reg, wf) = setup();
    let store = Arc::new(MemoryStore::new());
    let opts = RunOptions {
        store: Some(store.clone()),
        ..RunOptions::default()
    };
    let run_id = opts.run_id;
    let rt = rt();
    let report = rt
        .block_on(run_workflow(&wf, &reg, opts, None))
        .expect("ran");
    assert_eq!(report.status, WorkflowStatus::Failed);
    assert_eq!(count.0.lock().expect("lock").len(), 4);
    let (run, tasks) = rt.block_on(async {
        (
            store.get_run(run_id).await.expect("get").expect("run"),
            store.tasks(run_id).await.expect("tasks"),
        )
    });
    assert_eq!(run.status, WorkflowStatus::Failed);
    assert!(run.owner.is_some(), "the owner is recorded");
    let definition: serde_json::Value =
        serde_json::from_str(&run.definition).expect("the definition is JSON");
    assert_eq!(definition["workflow"]["name"], "j");
    // The definition is a typed saved run, with the settings of the run.
    let saved = orch_model::SavedRun::from_json(&run.definition).expect("a saved run");
    assert_eq!(saved.workflow.workflow().name, "j");
    assert_eq!(saved.settings.max_parallel, Some(4));
    assert_eq!(
        saved.settings.mode,
        Some(orch_model::ExecutionMode::Parallel)
    );
    assert_eq!(saved.settings.work_dir, Some(std::path::PathBuf::from(".")));
    let got: Vec<(TaskStatus, u32)> = tasks.iter().map(|t| (t.status, t.attempt)).collect();
    assert_eq!(
        got,
        vec![
            (TaskStatus::Completed, 1),
            (TaskStatus::Completed, 1),
            (TaskStatus::Completed, 1),
            (TaskStatus::Completed, 1),
            (TaskStatus::Failed, 1),
            (TaskStatus::Skipped, 0),
        ]
    );
    assert_eq!(
        tasks[1].result.as_ref().map(|r| r.data.clone()),
        Some(json!({"from_a": 1}))
    );
    let events = rt.block_on(store.events(run_id, 0)).expect("events");
    let started: usize = events
        .iter()
        .filter_map(Progress::read)
        .map(|p| match p {
            Progress::Started(list) => list.len(),
            Progress::Finished(_) => 0,
        })
        .sum();
    assert_eq!(started, 5, "every started step is in a tasks_started event");
    assert!(
        events.iter().filter_map(Progress::read).any(|p| matches!(
            p,
            Progress::Finished(list) if list.contains(&(5, TaskStatus::Skipped, 0))
        )),
        "{events:?}"
    );
}

#[test]
fn a_resumed_run_does_not_rerun_finished_steps_and_reruns_interrupted_ones() {
    let (count, reg, wf) = setup();
    let store = Arc::new(MemoryStore::new());
    let rt = rt();
    // A first process recorded the run, finished `a`, and died while `b` and `c` ran.
    let run_id = orch_model::RunId::new();
    rt.block_on(async {
        let tasks = wf
            .workflow()
            .steps
            .iter()
            .enumerate()
            .map(|(i, s)| orch_model::NewTask {
                name: s.name.to_string(),
                deps: wf.graph().deps(i as u32).to_vec(),
                priority: s.priority,
                needs: orch_model::store::ResourceAmounts::of(&s.resources),
                spec: None,
            })
            .collect();
        let now = chrono::Utc::now();
        store
            .create_run(
                orch_model::NewRun {
                    id: run_id,
                    workflow: "j".into(),
                    definition: "{}".to_owned(),
                    params: Default::default(),
                    tasks,
                    parent: None,
                    owner: None,
                    max_parallel: None,
                },
                now,
            )
            .await
            .expect("create");
        store
            .start_tasks(
                run_id,
                &[0],
                "dead",
                std::time::Duration::from_secs(60),
                now,
            )
            .await
            .expect("start a");
        store
            .finish_tasks(
                run_id,
                vec![orch_model::Finished {
                    index: 0,
                    attempt: 1,
                    retries: 0,
                    outcome: orch_model::TaskOutcome::Succeeded {
                        result: orch_model::TaskResult::ok(json!({"v": 7})),
                    },
                }],
                now,
            )
            .await
            .expect("finish a");
        store
            .start_tasks(
                run_id,
                &[1, 2],
                "dead",
                std::time::Duration::from_secs(60),
                now,
            )
            .await
            .expect("start b, c");
    });
    let records = rt.block_on(store.tasks(run_id)).expect("tasks");
    let opts = RunOptions {
        run_id,
        store: Some(store.clone()),
        resume: Some(records),
        ..RunOptions::default()
    };
    let report = rt
        .block_on(run_workflow(&wf, &reg, opts, None))
        .expect("resumed");
    let ran = count.0.lock().expect("lock").clone();
    assert!(
        !ran.contains(&"a".to_owned()),
        "a finished before the crash: {ran:?}"
    );
    let mut sorted = ran.clone();
    sorted.sort();
    assert_eq!(sorted, vec!["b", "c", "d"]);
    // b got a's recorded result; b and c show their second attempt.
    assert_eq!(
        report.steps[1].result.as_ref().expect("b").data,
        json!({"from_a": 7})
    );
    assert_eq!(
        (
            report.steps[0].attempts,
            report.steps[1].attempts,
            report.steps[2].attempts,
            report.steps[3].attempts
        ),
        (1, 2, 2, 1)
    );
    let tasks = rt.block_on(store.tasks(run_id)).expect("tasks");
    assert_eq!(tasks[1].attempt, 2);
    assert!(tasks.iter().all(|t| t.status.is_terminal()));
}

#[test]
fn a_cancellation_requested_through_the_store_stops_the_run() {
    let wf = load_workflow(
        "name: s\nsteps:\n  - { name: nap, module: core, action: sleep, parameters: { ms: 20000 } }\n  - { name: later, module: core, action: noop, dependencies: [nap] }\n",
        Format::Yaml,
        &Limits::default(),
        None,
    )
    .expect("valid");
    let store = Arc::new(MemoryStore::new());
    let opts = RunOptions {
        store: Some(store.clone()),
        ..RunOptions::default()
    };
    let run_id = opts.run_id;
    let rt = rt();
    let t = std::time::Instant::now();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let report = rt.block_on(async {
        let s2 = store.clone();
        tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            assert!(s2.request_cancel(run_id).await.expect("request"));
        });
        run_workflow(&wf, &ActionRegistry::with_builtins(), opts, Some(tx))
            .await
            .expect("ran")
    });
    assert!(
        t.elapsed() < std::time::Duration::from_secs(5),
        "stopped promptly"
    );
    assert_eq!(report.status, WorkflowStatus::Cancelled);
    let run = rt
        .block_on(store.get_run(run_id))
        .expect("get")
        .expect("run");
    assert_eq!(run.status, WorkflowStatus::Cancelled);
    // The journal consumed the same events the channel got: the step that
    // was running ends with its recorded attempt, the one that never
    // started with none.
    let mut cancelled = Vec::new();
    while let Ok(e) = rx.try_recv() {
        if let orch_tasks::Event::TaskCancelled { name, attempts, .. } = e {
            cancelled.push((name.to_string(), attempts));
        }
    }
    assert_eq!(
        cancelled,
        [("nap".to_owned(), 1), ("later".to_owned(), 0)],
        "the events"
    );
    let tasks = rt.block_on(store.tasks(run_id)).expect("tasks");
    let stored: Vec<(&str, TaskStatus, u32)> = tasks
        .iter()
        .map(|t| (t.name.as_str(), t.status, t.attempt))
        .collect();
    assert_eq!(
        stored,
        [
            ("nap", TaskStatus::Cancelled, 1),
            ("later", TaskStatus::Cancelled, 0)
        ],
        "the store"
    );
}

/// An action that waits a little and records how many of its kind ran at once.
#[derive(Debug, Default)]
struct Overlap {
    now: std::sync::atomic::AtomicUsize,
    most: std::sync::atomic::AtomicUsize,
}

#[async_trait]
impl Action for Overlap {
    async fn run(&self, params: Value, _ctx: &ActionContext) -> Result<Value, ActionError> {
        use std::sync::atomic::Ordering::SeqCst;
        let n = self.now.fetch_add(1, SeqCst) + 1;
        self.most.fetch_max(n, SeqCst);
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        self.now.fetch_sub(1, SeqCst);
        Ok(params)
    }
}

#[test]
fn max_parallel_bounds_waiting_steps_but_not_the_journal() {
    // 2,000 independent no-op steps (immediate: they finish when started)
    // and 6 steps that wait, journaled with max_parallel 1.
    let mut steps: Vec<Value> = (0..2000)
        .map(|i| json!({"name": format!("n{i}"), "module": "core", "action": "noop"}))
        .collect();
    steps.extend((0..6).map(|i| json!({"name": format!("w{i}"), "module": "t", "action": "wait"})));
    let text = json!({"name": "mix", "steps": steps}).to_string();
    let wf = load_workflow(&text, Format::Json, &Limits::default(), None).expect("valid");
    let overlap = Arc::new(Overlap::default());
    let mut reg = ActionRegistry::with_builtins();
    reg.register("t", "wait", overlap.clone());
    let store = Arc::new(MemoryStore::new());
    let opts = RunOptions {
        store: Some(store.clone()),
        max_parallel: 1,
        ..RunOptions::default()
    };
    let run_id = opts.run_id;
    let rt = rt();
    let report = rt
        .block_on(run_workflow(&wf, &reg, opts, None))
        .expect("ran");
    assert!(report.succeeded());
    assert_eq!(
        overlap.most.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "at most max_parallel waiting steps run at once"
    );
    let tasks = rt.block_on(store.tasks(run_id)).expect("tasks");
    assert!(
        tasks
            .iter()
            .all(|t| t.status == TaskStatus::Completed && t.attempt == 1),
        "every step is recorded with its one attempt"
    );
    let events = rt.block_on(store.events(run_id, 0)).expect("events");
    let commits = events.iter().filter(|e| e.kind == "tasks_finished").count();
    // The no-op steps do not wait for a slot: they are committed in the
    // turns of the waiting steps (about one commit per waiting step), not
    // one commit per step.
    assert!(commits <= 12, "{commits} commits for 2,006 steps");
}

#[test]
fn a_chain_commits_each_step_before_the_next_starts() {
    // Each step reads its predecessor's result: it can only have it if the
    // predecessor's outcome reached the store first (checked through the
    // store's events: every finish precedes the next start).
    let steps: Vec<Value> = (0..50)
        .map(|i| {
            let mut s = json!({"name": format!("s{i}"), "module": "core", "action": "noop"});
            if i > 0 {
                s["dependencies"] = json!([format!("s{}", i - 1)]);
            }
            s
        })
        .collect();
    let text = json!({"name": "chain", "steps": steps}).to_string();
    let wf = load_workflow(&text, Format::Json, &Limits::default(), None).expect("valid");
    let store = Arc::new(MemoryStore::new());
    let opts = RunOptions {
        store: Some(store.clone()),
        ..RunOptions::default()
    };
    let run_id = opts.run_id;
    let rt = rt();
    let report = rt
        .block_on(run_workflow(
            &wf,
            &ActionRegistry::with_builtins(),
            opts,
            None,
        ))
        .expect("ran");
    assert!(report.succeeded());
    let events = rt.block_on(store.events(run_id, 0)).expect("events");
    let mut finished_at = vec![None; 50];
    let mut started_at = vec![None; 50];
    for e in &events {
        match Progress::read(e) {
            Some(Progress::Started(list)) => {
                for (i, _) in list {
                    started_at[i as usize] = Some(e.seq);
                }
            }
            Some(Progress::Finished(list)) => {
                for (i, _, _) in list {
                    finished_at[i as usize] = Some(e.seq);
                }
            }
            None => {}
        }
    }
    for i in 1..50 {
        let (done, next) = (
            finished_at[i - 1].expect("finished"),
            started_at[i].expect("started"),
        );
        assert!(
            done < next,
            "step {i} started (event {next}) before its dependency was committed (event {done})"
        );
    }
}
