//! Behaviour tests of the scheduler: ordering, modes, retries, timeouts, cancellation, conditions, injection.

mod common;

use async_trait::async_trait;
use common::{rt, wait_gone, yaml};
use orch_model::{Limits, TaskStatus, ValidWorkflow, Workflow, WorkflowStatus, WorkflowStep};
use orch_tasks::{
    Action, ActionContext, ActionError, ActionRegistry, Event, RunOptions, RunReport, run_workflow,
};
use proptest::prelude::*;
use serde_json::{Value, json};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Records when each step starts and ends (on a global logical clock) and how
/// many steps run at once.
#[derive(Debug, Default)]
struct Recorder {
    clock: AtomicU64,
    running: AtomicUsize,
    max_running: AtomicUsize,
    log: Mutex<Vec<(String, u64, u64)>>,
}

#[derive(Debug)]
struct Record(Arc<Recorder>);

#[async_trait]
impl Action for Record {
    async fn run(&self, params: Value, ctx: &ActionContext) -> Result<Value, ActionError> {
        let r = &self.0;
        let now = r.running.fetch_add(1, Ordering::SeqCst) + 1;
        r.max_running.fetch_max(now, Ordering::SeqCst);
        let start = r.clock.fetch_add(1, Ordering::SeqCst);
        let ms = params.get("ms").and_then(Value::as_u64).unwrap_or(0);
        if ms > 0 {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        } else {
            tokio::task::yield_now().await;
        }
        let end = r.clock.fetch_add(1, Ordering::SeqCst);
        r.running.fetch_sub(1, Ordering::SeqCst);
        r.log
            .lock()
            .expect("log")
            .push((ctx.step.to_string(), start, end));
        Ok(json!({"step": &*ctx.step}))
    }
}

fn registry_with(rec: &Arc<Recorder>) -> ActionRegistry {
    let mut r = ActionRegistry::with_builtins();
    r.register("test", "record", Arc::new(Record(rec.clone())));
    r
}

fn valid(wf: Workflow) -> ValidWorkflow {
    orch_model::definition::validate(wf, &Limits::default()).expect("valid workflow")
}

fn run(wf: &ValidWorkflow, reg: &ActionRegistry, opts: RunOptions) -> (RunReport, Vec<Event>) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let report = rt()
        .block_on(run_workflow(wf, reg, opts, Some(tx)))
        .expect("run starts");
    let mut events = Vec::new();
    while let Ok(e) = rx.try_recv() {
        events.push(e);
    }
    (report, events)
}

fn status_of(r: &RunReport, name: &str) -> TaskStatus {
    r.steps
        .iter()
        .find(|s| &*s.name == name)
        .map(|s| s.status)
        .unwrap_or_else(|| panic!("no step {name}"))
}

fn random_dag() -> impl Strategy<Value = Vec<(u8, Vec<usize>)>> {
    (1usize..40).prop_flat_map(|n| {
        proptest::collection::vec(
            (
                0u8..4,
                proptest::collection::vec(any::<prop::sample::Index>(), 0..3),
            ),
            n,
        )
        .prop_map(|nodes| {
            nodes
                .into_iter()
                .enumerate()
                .map(|(i, (prio, deps))| {
                    let mut ds: Vec<usize> = if i == 0 {
                        vec![]
                    } else {
                        deps.iter().map(|d| d.index(i)).collect()
                    };
                    ds.sort_unstable();
                    ds.dedup();
                    (prio, ds)
                })
                .collect()
        })
    })
}

fn dag_workflow(nodes: &[(u8, Vec<usize>)]) -> Workflow {
    let prios = [
        orch_model::TaskPriority::Low,
        orch_model::TaskPriority::Normal,
        orch_model::TaskPriority::High,
        orch_model::TaskPriority::Critical,
    ];
    let mut wf = Workflow::new("dag", "");
    for (i, (p, deps)) in nodes.iter().enumerate() {
        let mut s =
            WorkflowStep::new(format!("s{i}"), "test", "record").priority(prios[*p as usize]);
        for d in deps {
            s = s.after(format!("s{d}"));
        }
        wf.add_step(s);
    }
    wf
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn every_task_runs_once_after_its_dependencies(nodes in random_dag(), parallel in 1usize..5) {
        let rec = Arc::new(Recorder::default());
        let wf = valid(dag_workflow(&nodes));
        let opts = RunOptions { max_parallel: parallel, ..RunOptions::default() };
        let (report, events) = run(&wf, &registry_with(&rec), opts);
        prop_assert_eq!(report.status, WorkflowStatus::Completed);
        let log = rec.log.lock().expect("log").clone();
        prop_assert_eq!(log.len(), nodes.len(), "each task exactly once");
        let by_name: std::collections::HashMap<&str, (u64, u64)> = log.iter().map(|(n, s, e)| (n.as_str(), (*s, *e))).collect();
        prop_assert_eq!(by_name.len(), nodes.len());
        for (i, (_, deps)) in nodes.iter().enumerate() {
            let (start, _) = by_name[format!("s{i}").as_str()];
            for d in deps {
                let (_, dep_end) = by_name[format!("s{d}").as_str()];
                prop_assert!(dep_end < start, "s{} started before its dependency s{} ended", i, d);
            }
        }
        prop_assert!(rec.max_running.load(Ordering::SeqCst) <= parallel);
        // The run finishes exactly when nothing is left: the last event is RunFinished.
        let finished_last = matches!(events.last(), Some(Event::RunFinished { status: WorkflowStatus::Completed, .. }));
        prop_assert!(finished_last, "the last event is RunFinished");
    }
}

#[test]
fn one_slot_starts_ready_tasks_in_priority_order_fifo_within_a_priority() {
    let rec = Arc::new(Recorder::default());
    let wf = yaml(
        "name: p\nsteps:\n  - {name: first, module: test, action: record}\n  - {name: low, module: test, action: record, priority: low, dependencies: [first]}\n  - {name: crit, module: test, action: record, priority: critical, dependencies: [first]}\n  - {name: norm1, module: test, action: record, dependencies: [first]}\n  - {name: high, module: test, action: record, priority: high, dependencies: [first]}\n  - {name: norm2, module: test, action: record, dependencies: [first]}\n",
    );
    let opts = RunOptions {
        mode: orch_model::ExecutionMode::Sequential,
        ..RunOptions::default()
    };
    let (report, _) = run(&wf, &registry_with(&rec), opts);
    assert!(report.succeeded());
    let mut log = rec.log.lock().expect("log").clone();
    log.sort_by_key(|(_, s, _)| *s);
    let order: Vec<&str> = log.iter().map(|(n, _, _)| n.as_str()).collect();
    assert_eq!(order, ["first", "crit", "high", "norm1", "norm2", "low"]);
}

#[test]
fn sequential_never_overlaps_and_parallel_does() {
    let text = "name: m\nsteps:\n  - {name: a, module: test, action: record, parameters: {ms: 30}}\n  - {name: b, module: test, action: record, parameters: {ms: 30}}\n  - {name: c, module: test, action: record, parameters: {ms: 30}}\n  - {name: d, module: test, action: record, parameters: {ms: 30}}\n";
    let wf = yaml(text);
    let rec = Arc::new(Recorder::default());
    let opts = RunOptions {
        mode: orch_model::ExecutionMode::Sequential,
        ..RunOptions::default()
    };
    assert!(run(&wf, &registry_with(&rec), opts).0.succeeded());
    assert_eq!(rec.max_running.load(Ordering::SeqCst), 1);
    let mut log = rec.log.lock().expect("log").clone();
    log.sort_by_key(|(_, s, _)| *s);
    for w in log.windows(2) {
        assert!(w[0].2 < w[1].1, "{:?} overlaps {:?}", w[0], w[1]);
    }
    let rec = Arc::new(Recorder::default());
    let opts = RunOptions {
        max_parallel: 3,
        ..RunOptions::default()
    };
    assert!(run(&wf, &registry_with(&rec), opts).0.succeeded());
    let max = rec.max_running.load(Ordering::SeqCst);
    assert!(max > 1 && max <= 3, "parallel mode ran {max} at once");
}

#[derive(Debug)]
struct Flaky {
    fails: u32,
    retryable: bool,
    calls: Mutex<Vec<Instant>>,
}

#[async_trait]
impl Action for Flaky {
    async fn run(&self, _params: Value, _ctx: &ActionContext) -> Result<Value, ActionError> {
        let mut calls = self.calls.lock().expect("calls");
        calls.push(Instant::now());
        if calls.len() as u32 <= self.fails {
            if self.retryable {
                Err(ActionError::retryable(
                    "Flaky",
                    format!("failure {}", calls.len()),
                ))
            } else {
                Err(ActionError::permanent("Invalid", "this will never work"))
            }
        } else {
            Ok(json!(calls.len()))
        }
    }
}

/// A registry whose `test.flaky` fails `fails` times (retryably or not), then succeeds.
fn flaky_registry(fails: u32, retryable: bool) -> (Arc<Flaky>, ActionRegistry) {
    let flaky = Arc::new(Flaky {
        fails,
        retryable,
        calls: Mutex::new(Vec::new()),
    });
    let mut reg = ActionRegistry::with_builtins();
    reg.register("test", "flaky", flaky.clone());
    (flaky, reg)
}

#[test]
fn a_task_failing_twice_then_succeeding_runs_three_times_with_backoff_gaps() {
    let (flaky, reg) = flaky_registry(2, true);
    let wf = yaml(
        "name: r\nsteps:\n  - name: f\n    module: test\n    action: flaky\n    max_retries: 3\n    retry: {backoff: exponential, initial_delay: 100ms, max_delay: 1s}\n",
    );
    let (report, events) = run(&wf, &reg, RunOptions::default());
    assert!(report.succeeded(), "{report:?}");
    assert_eq!(report.steps[0].attempts, 3);
    let calls = flaky.calls.lock().expect("calls").clone();
    assert_eq!(calls.len(), 3);
    // Exponential: 100 ms, then 200 ms. Sleeps never end early.
    assert!(
        calls[1] - calls[0] >= Duration::from_millis(100),
        "{:?}",
        calls[1] - calls[0]
    );
    assert!(
        calls[2] - calls[1] >= Duration::from_millis(200),
        "{:?}",
        calls[2] - calls[1]
    );
    let delays: Vec<Duration> = events
        .iter()
        .filter_map(|e| match e {
            Event::TaskRetrying { delay, .. } => Some(*delay),
            _ => None,
        })
        .collect();
    assert_eq!(
        delays,
        [Duration::from_millis(100), Duration::from_millis(200)]
    );
}

#[test]
fn a_non_retryable_failure_runs_once_and_retries_stop_at_the_limit() {
    let (flaky, reg) = flaky_registry(10, false);
    let wf = yaml(
        "name: r\nsteps:\n  - {name: f, module: test, action: flaky, max_retries: 5}\n  - {name: after, module: core, action: noop, dependencies: [f]}\n",
    );
    let (report, _) = run(&wf, &reg, RunOptions::default());
    assert_eq!(report.status, WorkflowStatus::Failed);
    assert_eq!(flaky.calls.lock().expect("calls").len(), 1);
    assert_eq!(status_of(&report, "f"), TaskStatus::Failed);
    assert_eq!(status_of(&report, "after"), TaskStatus::Skipped);

    let wf = yaml(
        "name: r\nsteps:\n  - name: f\n    module: core\n    action: fail\n    max_retries: 2\n    retry: {backoff: constant, initial_delay: 10ms}\n",
    );
    let (report, _) = run(&wf, &ActionRegistry::with_builtins(), RunOptions::default());
    assert_eq!(report.steps[0].attempts, 3);
    assert_eq!(report.steps[0].status, TaskStatus::Failed);
}

#[test]
fn a_timeout_kills_the_whole_process_group_including_grandchildren() {
    let dir = tempfile::tempdir().expect("tempdir");
    let wf = yaml(
        "name: t\nsteps:\n  - name: slow\n    module: shell\n    action: script\n    timeout: 300ms\n    parameters:\n      script: 'sleep 1000 & echo $! > grandchild.pid; wait'\n",
    );
    let opts = RunOptions {
        work_dir: dir.path().to_path_buf(),
        kill_grace: Duration::from_millis(200),
        ..RunOptions::default()
    };
    let (report, _) = run(&wf, &ActionRegistry::with_builtins(), opts);
    assert_eq!(report.status, WorkflowStatus::Failed);
    let r = report.steps[0].result.clone().expect("result");
    assert_eq!(r.error_type.as_deref(), Some("TimeoutError"));
    let pid: i32 = std::fs::read_to_string(dir.path().join("grandchild.pid"))
        .expect("pid file")
        .trim()
        .parse()
        .expect("pid");
    assert!(
        wait_gone(pid),
        "the grandchild `sleep 1000` (pid {pid}) survived the timeout"
    );
}

#[test]
fn cancellation_stops_running_processes_and_starts_nothing_new() {
    let dir = tempfile::tempdir().expect("tempdir");
    let wf = yaml(
        "name: c\nsteps:\n  - {name: long, module: shell, action: script, parameters: {script: 'echo $$ > leader.pid; sleep 1000'}}\n  - {name: next, module: core, action: noop, dependencies: [long]}\n",
    );
    let cancel = tokio_util::sync::CancellationToken::new();
    let opts = RunOptions {
        work_dir: dir.path().to_path_buf(),
        cancel: cancel.clone(),
        kill_grace: Duration::from_millis(200),
        ..RunOptions::default()
    };
    let reg = ActionRegistry::with_builtins();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let report = rt().block_on(async {
        let run = tokio::spawn({
            let wf = wf.clone();
            async move { run_workflow(&wf, &reg, opts, Some(tx)).await }
        });
        // Cancel once the long step has started and written its pid.
        while let Some(e) = rx.recv().await {
            if matches!(e, Event::TaskStarted { .. }) {
                break;
            }
        }
        // The shell creates the file before `echo` writes the pid into it:
        // wait for the whole line.
        let pidfile = dir.path().join("leader.pid");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !std::fs::read_to_string(&pidfile).is_ok_and(|s| s.ends_with('\n'))
            && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        cancel.cancel();
        run.await.expect("join").expect("run")
    });
    assert_eq!(report.status, WorkflowStatus::Cancelled);
    assert_eq!(status_of(&report, "long"), TaskStatus::Cancelled);
    assert_eq!(status_of(&report, "next"), TaskStatus::Cancelled);
    assert!(
        report.steps[1].started_at.is_none(),
        "nothing new starts after cancellation"
    );
    let pid: i32 = std::fs::read_to_string(dir.path().join("leader.pid"))
        .expect("pid")
        .trim()
        .parse()
        .expect("pid");
    assert!(
        wait_gone(pid),
        "the cancelled process {pid} is still running"
    );
}

#[test]
fn trigger_rules_and_conditions_skip_and_propagate() {
    let wf = yaml(
        "name: c
steps:
  - {name: ok, module: core, action: set, parameters: {value: {n: 3}}}
  - {name: bad, module: core, action: fail, parameters: {retryable: false}}
  - {name: after_bad, module: core, action: noop, dependencies: [bad]}
  - {name: after_after, module: core, action: noop, dependencies: [after_bad]}
  - {name: on_failure, module: core, action: noop, dependencies: [bad], conditions: {run_if: failure}}
  - {name: no_failure, module: core, action: noop, dependencies: [ok], conditions: {run_if: failure}}
  - {name: always, module: core, action: noop, dependencies: [bad, ok], conditions: {run_if: always}}
  - {name: big, module: core, action: noop, conditions: {when: {ref: '${ok.result.n}', op: gt, value: 2}}}
  - {name: small, module: core, action: noop, conditions: {when: {ref: '${ok.result.n}', op: lt, value: 2}}}
  - {name: after_small, module: core, action: noop, dependencies: [small]}
",
    );
    let (report, events) = run(&wf, &ActionRegistry::with_builtins(), RunOptions::default());
    assert_eq!(report.status, WorkflowStatus::Failed);
    for (name, want) in [
        ("ok", TaskStatus::Completed),
        ("bad", TaskStatus::Failed),
        ("after_bad", TaskStatus::Skipped),
        ("after_after", TaskStatus::Skipped),
        ("on_failure", TaskStatus::Completed),
        ("no_failure", TaskStatus::Skipped),
        ("always", TaskStatus::Completed),
        ("big", TaskStatus::Completed),
        ("small", TaskStatus::Skipped),
        ("after_small", TaskStatus::Skipped),
    ] {
        assert_eq!(status_of(&report, name), want, "{name}");
    }
    assert!(events.iter().any(|e| matches!(e, Event::TaskSkipped { reason, .. } if reason.contains("condition `${ok.result.n} lt` is false") || reason.contains("is false"))));
}

#[test]
fn results_pass_between_steps_keeping_json_types() {
    let wf = yaml(
        "name: pass
parameters: {who: world, n: 2}
steps:
  - {name: a, module: core, action: set, parameters: {value: {list: [1, 2, 3], who: '${params.who}'}}}
  - {name: b, module: core, action: noop, parameters: {whole: '${a.result}', n: '${params.n}', text: 'hi ${a.result.who} #${a.result.list[2]}', st: '${a.status}'}}
",
    );
    let opts = RunOptions {
        params: json!({"who": "orch"})
            .as_object()
            .cloned()
            .unwrap_or_default(),
        ..RunOptions::default()
    };
    let (report, _) = run(&wf, &ActionRegistry::with_builtins(), opts);
    assert!(report.succeeded(), "{report:?}");
    let b = report.steps[1].result.clone().expect("result").data;
    assert_eq!(
        b,
        json!({"whole": {"list": [1, 2, 3], "who": "orch"}, "n": 2, "text": "hi orch #3", "st": "completed"})
    );
}

#[test]
fn bad_parameters_and_unknown_actions_fail_before_anything_runs() {
    let wf =
        yaml("name: u\nparameters: {need: null}\nsteps:\n  - {name: a, module: nope, action: x}\n");
    let reg = ActionRegistry::with_builtins();
    let err = rt()
        .block_on(run_workflow(&wf, &reg, RunOptions::default(), None))
        .expect_err("unknown module");
    assert_eq!(err.error_code(), orch_model::ErrorCode::ModuleNotFound);
    let wf = yaml(
        "name: u\nparameters: {need: null}\nsteps:\n  - {name: a, module: core, action: noop}\n",
    );
    let err = rt()
        .block_on(run_workflow(&wf, &reg, RunOptions::default(), None))
        .expect_err("missing parameter");
    assert!(err.to_string().contains("`need`"), "{err}");
    let opts = RunOptions {
        params: json!({"typo": 1}).as_object().cloned().unwrap_or_default(),
        ..RunOptions::default()
    };
    let err = rt()
        .block_on(run_workflow(&wf, &reg, opts, None))
        .expect_err("unknown parameter");
    assert!(err.to_string().contains("has no parameter `typo`"), "{err}");
}

const HOSTILE: &[&str] = &[
    "\"; touch PWNED; echo \"",
    "$(touch PWNED)",
    "`touch PWNED`",
    "a\nb",
    "*",
    "-rf /",
    "' ; touch PWNED #",
];

#[test]
fn values_reach_processes_byte_for_byte_and_never_as_code() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (i, value) in HOSTILE.iter().enumerate() {
        let mut wf = Workflow::new("inject", "");
        wf.add_step(WorkflowStep::new("src", "core", "set").param("value", json!(value)));
        // shell.exec: the value is one argv entry of a script that dumps its arguments, NUL-separated.
        wf.add_step(
            WorkflowStep::new("exec", "shell", "exec")
                .param(
                    "args",
                    json!([
                        "-c",
                        "printf '%s\\0' \"$@\" > exec.out",
                        "x",
                        "${src.result}",
                        "tail"
                    ]),
                )
                .param("program", json!("sh")),
        );
        // shell.script: the value arrives only as an environment variable and a positional parameter.
        wf.add_step(
            WorkflowStep::new("script", "shell", "script")
                .param("script", json!("printf '%s\\0' \"$V\" \"$1\" > script.out"))
                .param("env", json!({"V": "${src.result}"}))
                .param("args", json!(["${src.result}"])),
        );
        let wf = valid(wf);
        let opts = RunOptions {
            work_dir: dir.path().to_path_buf(),
            ..RunOptions::default()
        };
        let (report, _) = run(&wf, &ActionRegistry::with_builtins(), opts);
        assert!(report.succeeded(), "case {i}: {report:?}");
        let exec = std::fs::read(dir.path().join("exec.out")).expect("exec.out");
        let want_exec = [value.as_bytes(), b"\0tail\0"].concat();
        assert_eq!(exec, want_exec, "case {i}: argv");
        let script = std::fs::read(dir.path().join("script.out")).expect("script.out");
        let want_script = [value.as_bytes(), b"\0", value.as_bytes(), b"\0"].concat();
        assert_eq!(
            script, want_script,
            "case {i}: env and positional parameter"
        );
        assert!(
            !dir.path().join("PWNED").exists(),
            "case {i}: a value ran as code"
        );
    }
}

#[test]
fn run_timeout_stops_the_run() {
    let wf = yaml(
        "name: rt\nsteps:\n  - {name: s, module: core, action: sleep, parameters: {ms: 60000}}\n  - {name: t, module: core, action: noop, dependencies: [s]}\n",
    );
    let opts = RunOptions {
        run_timeout: Some(Duration::from_millis(200)),
        ..RunOptions::default()
    };
    let (report, _) = run(&wf, &ActionRegistry::with_builtins(), opts);
    assert_eq!(report.status, WorkflowStatus::Failed);
    assert!(
        report
            .error
            .as_deref()
            .is_some_and(|e| e.contains("timeout"))
    );
    assert_eq!(status_of(&report, "t"), TaskStatus::Cancelled);
}

#[test]
fn resource_aware_mode_never_exceeds_capacity_and_changes_behaviour() {
    let rm = Arc::new(
        orch_resources::ResourceManager::with_resources(vec![
            orch_resources::ResourceManager::resource(
                "cpu",
                orch_model::ResourceType::Cpu,
                &[("cores", 4.0)],
            ),
        ])
        .expect("resources"),
    );
    let mut text = String::from("name: r\nsteps:\n");
    for i in 0..8 {
        text.push_str(&format!("  - {{name: s{i}, module: test, action: record, parameters: {{ms: 20}}, resources: {{cpu: {{cores: 2}}}}}}\n"));
    }
    let wf = yaml(&text);
    let rec = Arc::new(Recorder::default());
    let opts = RunOptions {
        mode: orch_model::ExecutionMode::ResourceAware,
        max_parallel: 8,
        resources: Some(rm.clone()),
        ..RunOptions::default()
    };
    let (report, _) = run(&wf, &registry_with(&rec), opts);
    assert!(report.succeeded(), "{report:?}");
    assert_eq!(
        rec.max_running.load(Ordering::SeqCst),
        2,
        "two 2-core steps fit 4 cores at a time"
    );
    assert_eq!(
        rm.get_resource_usage(Some("cpu"))["allocated"]["cores"],
        0.0,
        "everything was released"
    );
    // The same workflow in parallel mode ignores the requests.
    let rec = Arc::new(Recorder::default());
    let opts = RunOptions {
        max_parallel: 8,
        ..RunOptions::default()
    };
    assert!(run(&wf, &registry_with(&rec), opts).0.succeeded());
    assert!(rec.max_running.load(Ordering::SeqCst) > 2);
    // A request that can never fit is refused before anything runs.
    let big = yaml(
        "name: b\nsteps:\n  - {name: s, module: core, action: noop, resources: {cpu: {cores: 64}}}\n",
    );
    let opts = RunOptions {
        mode: orch_model::ExecutionMode::ResourceAware,
        resources: Some(rm),
        ..RunOptions::default()
    };
    let err = rt()
        .block_on(run_workflow(
            &big,
            &ActionRegistry::with_builtins(),
            opts,
            None,
        ))
        .expect_err("too big");
    assert!(
        err.to_string().contains("exceeds the total capacity"),
        "{err}"
    );
}

#[test]
fn an_external_module_gets_the_request_on_stdin_and_answers_on_stdout() {
    let mut reg = ActionRegistry::with_builtins();
    // `cat` answers with the request itself: exactly what the program received.
    reg.register_module(
        "echo",
        Arc::new(orch_tasks::External {
            program: "cat".into(),
            args: vec![],
        }),
    );
    reg.register_module(
        "broken",
        Arc::new(orch_tasks::External {
            program: "echo".into(),
            args: vec!["not json".into()],
        }),
    );
    let wf = yaml(
        "name: ext\nsteps:\n  - {name: a, module: echo, action: analyze, parameters: {path: ./src, n: 2}}\n  - {name: b, module: broken, action: x}\n",
    );
    let (report, _) = run(&wf, &reg, RunOptions::default());
    let a = report.steps[0].result.clone().expect("result");
    assert!(a.success, "{a:?}");
    assert_eq!(
        a.data,
        json!({"action": "analyze", "parameters": {"path": "./src", "n": 2}})
    );
    let b = report.steps[1].result.clone().expect("result");
    assert_eq!(b.error_type.as_deref(), Some("ProtocolError"));
}

#[derive(Debug, Default)]
struct Counter(AtomicUsize);

#[async_trait]
impl Action for Counter {
    async fn run(&self, params: Value, _ctx: &ActionContext) -> Result<Value, ActionError> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(json!({"echo": params}))
    }
}

#[test]
fn cached_steps_run_once_for_the_same_inputs() {
    let counter = Arc::new(Counter::default());
    let mut reg = ActionRegistry::with_builtins();
    reg.register("test", "count", counter.clone());
    let cache: Arc<dyn orch_tasks::ResultCache> = Arc::new(orch_tasks::MemoryCache::default());
    let text = |p: &str, up: &str| {
        format!(
            "name: c\nsteps:\n  - {{name: up, module: core, action: set, parameters: {{value: {up}}}}}\n  - {{name: s, module: test, action: count, parameters: {{p: {p}, u: '${{up.result}}'}}, cache: true}}\n  - {{name: after, module: core, action: noop, parameters: {{v: '${{s.result.echo.p}}'}}}}\n"
        )
    };
    let opts = || RunOptions {
        cache: Some(cache.clone()),
        ..RunOptions::default()
    };
    let (r1, _) = run(&yaml(&text("1", "a")), &reg, opts());
    assert!(r1.succeeded());
    let (r2, events) = run(&yaml(&text("1", "a")), &reg, opts());
    assert!(r2.succeeded());
    assert_eq!(
        counter.0.load(Ordering::SeqCst),
        1,
        "the second run used the cache"
    );
    let s = &r2.steps[1];
    assert!(s.result.as_ref().is_some_and(|r| r.cached), "{s:?}");
    assert_eq!(s.attempts, 0);
    assert!(events.iter().any(|e| matches!(e, Event::TaskCached { .. })));
    assert_eq!(
        r2.steps[2].result.as_ref().map(|r| r.data.clone()),
        Some(json!({"v": 1})),
        "dependents see the cached result"
    );
    run(&yaml(&text("2", "a")), &reg, opts());
    assert_eq!(
        counter.0.load(Ordering::SeqCst),
        2,
        "other parameters, another key"
    );
    run(&yaml(&text("2", "b")), &reg, opts());
    assert_eq!(
        counter.0.load(Ordering::SeqCst),
        3,
        "another upstream result, another key"
    );
    run(&yaml(&text("2", "b")), &reg, RunOptions::default());
    assert_eq!(
        counter.0.load(Ordering::SeqCst),
        4,
        "without a cache, it runs"
    );
    assert_eq!(cache.list().len(), 3);
}

#[derive(Debug)]
struct Panics;

#[async_trait]
impl Action for Panics {
    async fn run(&self, _params: Value, _ctx: &ActionContext) -> Result<Value, ActionError> {
        panic!("broken action");
    }
}

#[test]
fn a_panicking_action_fails_its_step_and_the_run_goes_on() {
    let mut reg = ActionRegistry::with_builtins();
    reg.register("test", "panics", Arc::new(Panics));
    let wf = yaml(
        "name: p\nsteps:\n  - {name: bad, module: test, action: panics, max_retries: 3}\n  - {name: other, module: core, action: noop}\n  - {name: after, module: core, action: noop, dependencies: [bad]}\n",
    );
    let (report, _) = run(&wf, &reg, RunOptions::default());
    assert_eq!(report.status, WorkflowStatus::Failed);
    let bad = report.steps[0].result.clone().expect("result");
    assert_eq!(bad.error_type.as_deref(), Some("ActionPanic"));
    assert!(
        bad.error_message
            .as_deref()
            .is_some_and(|m| m.contains("broken action"))
    );
    assert_eq!(report.steps[0].attempts, 1, "a panic is not retried");
    assert_eq!(status_of(&report, "other"), TaskStatus::Completed);
    assert_eq!(status_of(&report, "after"), TaskStatus::Skipped);
}

/// Tracks the cores held by running `test.hold` steps.
#[derive(Debug, Default)]
struct Cores {
    held: AtomicUsize,
    peak: AtomicUsize,
}

#[derive(Debug)]
struct Hold(Arc<Cores>);

#[async_trait]
impl Action for Hold {
    async fn run(&self, params: Value, _ctx: &ActionContext) -> Result<Value, ActionError> {
        let cores = params.get("cores").and_then(Value::as_u64).unwrap_or(0) as usize;
        let now = self.0.held.fetch_add(cores, Ordering::SeqCst) + cores;
        self.0.peak.fetch_max(now, Ordering::SeqCst);
        tokio::task::yield_now().await;
        self.0.held.fetch_sub(cores, Ordering::SeqCst);
        Ok(Value::Null)
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn resource_aware_runs_never_exceed_capacity(nodes in random_dag(), cores in proptest::collection::vec(0u64..5, 40)) {
        let mut wf = Workflow::new("res", "");
        for (i, (_, deps)) in nodes.iter().enumerate() {
            let c = cores[i % cores.len()];
            let mut s = WorkflowStep::new(format!("s{i}"), "test", "hold").param("cores", json!(c));
            if c > 0 {
                s = s.resources(orch_model::ResourceRequest::default().with(orch_model::ResourceType::Cpu, "cores", c as f64));
            }
            for d in deps {
                s = s.after(format!("s{d}"));
            }
            wf.add_step(s);
        }
        let wf = valid(wf);
        let tracker = Arc::new(Cores::default());
        let mut reg = ActionRegistry::with_builtins();
        reg.register("test", "hold", Arc::new(Hold(tracker.clone())));
        let rm = Arc::new(
            orch_resources::ResourceManager::with_resources(vec![orch_resources::ResourceManager::resource("cpu", orch_model::ResourceType::Cpu, &[("cores", 4.0)])])
                .expect("resources"),
        );
        let opts = RunOptions { mode: orch_model::ExecutionMode::ResourceAware, max_parallel: 16, resources: Some(rm.clone()), ..RunOptions::default() };
        let (report, _) = run(&wf, &reg, opts);
        prop_assert_eq!(report.status, WorkflowStatus::Completed);
        prop_assert!(tracker.peak.load(Ordering::SeqCst) <= 4, "peak {} cores", tracker.peak.load(Ordering::SeqCst));
        prop_assert_eq!(rm.get_resource_usage(Some("cpu"))["allocated"]["cores"].as_f64().unwrap_or(0.0), 0.0);
    }

    #[test]
    fn with_one_slot_no_ready_task_waits_behind_a_lower_priority_one(nodes in random_dag()) {
        let rec = Arc::new(Recorder::default());
        let wf = valid(dag_workflow(&nodes));
        let opts = RunOptions { mode: orch_model::ExecutionMode::Sequential, ..RunOptions::default() };
        let (report, _) = run(&wf, &registry_with(&rec), opts);
        prop_assert!(report.succeeded());
        let log = rec.log.lock().expect("log").clone();
        let at: std::collections::HashMap<String, (u64, u64)> = log.iter().map(|(n, s, e)| (n.clone(), (*s, *e))).collect();
        let prio = |i: usize| nodes[i].0;
        for (i, _) in nodes.iter().enumerate() {
            let (start, _) = at[&format!("s{i}")];
            // Every other task that was ready when s{i} started (its dependencies had
            // ended, it had not started) must not have a higher priority.
            for (j, (_, deps)) in nodes.iter().enumerate() {
                let (other_start, _) = at[&format!("s{j}")];
                let ready = other_start > start && deps.iter().all(|d| at[&format!("s{d}")].1 < start);
                prop_assert!(!(ready && prio(j) > prio(i)), "s{} (priority {}) started while s{} (priority {}) was ready", i, prio(i), j, prio(j));
            }
        }
    }
}

#[test]
fn fs_actions_stay_inside_the_work_directory() {
    let outer = tempfile::tempdir().expect("tempdir");
    let work = outer.path().join("work");
    std::fs::create_dir(&work).expect("mkdir");
    std::os::unix::fs::symlink(outer.path(), work.join("escape")).expect("symlink");
    std::fs::write(outer.path().join("secret.txt"), "outside").expect("write");
    let wf = yaml(
        "name: fs
steps:
  - {name: up, module: fs, action: write, parameters: {path: ../pwned.txt, content: x}}
  - {name: abs, module: fs, action: write, parameters: {path: /tmp/orch-pwned.txt, content: x}}
  - {name: link, module: fs, action: write, parameters: {path: escape/pwned.txt, content: x}}
  - {name: read_link, module: fs, action: read, parameters: {path: escape/secret.txt}}
  - {name: copy_out, module: fs, action: copy, parameters: {from: ok.txt, to: ../copied.txt}, dependencies: [ok]}
  - {name: ok, module: fs, action: write, parameters: {path: sub/ok.txt, content: fine}}
  - {name: list, module: fs, action: list, parameters: {path: sub}, dependencies: [ok]}
",
    );
    let opts = RunOptions {
        work_dir: work.clone(),
        ..RunOptions::default()
    };
    let (report, _) = run(&wf, &ActionRegistry::with_builtins(), opts);
    for name in ["up", "abs", "link", "read_link"] {
        let s = report
            .steps
            .iter()
            .find(|s| &*s.name == name)
            .expect("step");
        assert_eq!(s.status, TaskStatus::Failed, "{name}");
        let r = s.result.as_ref().expect("result");
        assert_eq!(
            r.error_type.as_deref(),
            Some("PermissionDenied"),
            "{name}: {r:?}"
        );
        assert_eq!(s.attempts, 1, "{name}: a refused path is not retried");
    }
    assert!(!outer.path().join("pwned.txt").exists());
    assert!(!std::path::Path::new("/tmp/orch-pwned.txt").exists());
    assert_eq!(
        std::fs::read_to_string(outer.path().join("secret.txt")).expect("read"),
        "outside"
    );
    assert_eq!(
        std::fs::read_to_string(work.join("sub/ok.txt")).expect("written inside"),
        "fine"
    );
    let list = report
        .steps
        .iter()
        .find(|s| &*s.name == "list")
        .and_then(|s| s.result.clone())
        .expect("list");
    assert_eq!(list.data["entries"][0]["name"], "ok.txt");
    assert_eq!(status_of(&report, "copy_out"), TaskStatus::Failed);
    assert!(!outer.path().join("copied.txt").exists());
}

#[test]
fn a_run_timeout_stops_even_a_long_stretch_of_instant_steps() {
    let mut wf = Workflow::new("many", "");
    for i in 0..200_000 {
        wf.add_step(WorkflowStep::new(format!("s{i}"), "core", "noop"));
    }
    let wf = valid(wf);
    let opts = RunOptions {
        run_timeout: Some(Duration::from_millis(1)),
        max_parallel: 64,
        ..RunOptions::default()
    };
    let (report, _) = run(&wf, &ActionRegistry::with_builtins(), opts);
    assert_eq!(report.status, WorkflowStatus::Failed);
    assert!(
        report
            .error
            .as_deref()
            .is_some_and(|e| e.contains("timeout"))
    );
    let cancelled = report
        .steps
        .iter()
        .filter(|s| s.status == TaskStatus::Cancelled)
        .count();
    assert!(cancelled > 0, "steps after the deadline never started");
}

#[test]
fn every_step_of_a_missing_action_is_named_in_step_order() {
    let wf = yaml(
        "name: mixed\nsteps:\n  - {name: a, module: core, action: noop}\n  - {name: b, module: ghost, action: x}\n  - {name: c, module: core, action: noop}\n  - {name: d, module: ghost, action: x}\n  - {name: e, module: core, action: set, parameters: {value: 1}}\n  - {name: f, module: other, action: y}\n",
    );
    let err = rt()
        .block_on(run_workflow(
            &wf,
            &ActionRegistry::with_builtins(),
            RunOptions::default(),
            None,
        ))
        .expect_err("unknown modules");
    let orch_model::OrchestrationError::Validation(d) = err else {
        panic!("{err}");
    };
    assert_eq!(d.len(), 3, "{d}");
    let text: String = d.lines().collect::<Vec<_>>().join("\n");
    let named: Vec<&str> = ["steps[1]", "steps[3]", "steps[5]"]
        .into_iter()
        .filter(|p| text.contains(p))
        .collect();
    assert_eq!(named.len(), 3, "{text}");
    assert!(
        !text.contains("steps[0]") && !text.contains("steps[4]"),
        "{text}"
    );
    let (b, d, f) = (
        text.find("step `b`").expect("b"),
        text.find("step `d`").expect("d"),
        text.find("step `f`").expect("f"),
    );
    assert!(b < d && d < f, "in step order: {text}");
}

/// An action that finishes at once; with `offer`, it says so
/// (`Action::immediate`), and the scheduler runs it on the coordinator.
#[derive(Debug)]
struct Echo {
    offer: bool,
    seen: Mutex<Vec<(String, String, u32, std::path::PathBuf)>>,
    /// Calls of the future-returning `run`.
    futures: AtomicUsize,
}

impl orch_tasks::Immediate for Echo {
    fn run_now(&self, params: Value, ctx: &ActionContext) -> Result<Value, ActionError> {
        self.seen.lock().expect("seen").push((
            ctx.step.to_string(),
            ctx.action.to_string(),
            ctx.attempt,
            ctx.work_dir.to_path_buf(),
        ));
        match params.get("do").and_then(Value::as_str) {
            Some("panic") => panic!("echo was told to panic"),
            Some("fail") => Err(ActionError::retryable("Told", "echo was told to fail")
                .with_data(json!({"why": "told"}))),
            _ => Ok(json!({"echo": params})),
        }
    }
}

#[async_trait]
impl Action for Echo {
    async fn run(&self, params: Value, ctx: &ActionContext) -> Result<Value, ActionError> {
        self.futures.fetch_add(1, Ordering::SeqCst);
        orch_tasks::Immediate::run_now(self, params, ctx)
    }
    fn immediate(&self) -> Option<&dyn orch_tasks::Immediate> {
        self.offer.then_some(self as &dyn orch_tasks::Immediate)
    }
}

#[test]
fn an_immediate_action_runs_exactly_as_the_same_action_run_as_a_future() {
    let wf = yaml(
        "name: echo\nsteps:\n  - {name: a, module: t, action: echo, parameters: {x: 1}}\n  - {name: b, module: t, action: echo, parameters: {do: fail, v: '${a.result.echo.x}'}}\n  - {name: c, module: t, action: echo, parameters: {do: panic}, dependencies: [a]}\n  - {name: d, module: t, action: echo, dependencies: [c], conditions: {run_if: failure}}\n  - {name: e, module: t, action: echo, dependencies: [b]}\n",
    );
    let outcome = |offer: bool| {
        let echo = Arc::new(Echo {
            offer,
            seen: Mutex::new(Vec::new()),
            futures: AtomicUsize::new(0),
        });
        let mut reg = ActionRegistry::with_builtins();
        reg.register("t", "echo", echo.clone());
        let opts = RunOptions {
            work_dir: std::path::PathBuf::from("/tmp"),
            ..RunOptions::default()
        };
        let (report, events) = run(&wf, &reg, opts);
        let mut seen = echo.seen.lock().expect("seen").clone();
        seen.sort();
        let steps: Vec<_> = report
            .steps
            .iter()
            .map(|s| {
                (
                    s.name.to_string(),
                    s.status,
                    s.attempts,
                    s.result.clone().map(|mut r| {
                        r.execution_time = 0.0;
                        r
                    }),
                )
            })
            .collect();
        let mut kinds: Vec<String> = events
            .iter()
            .filter(|e| !matches!(e, Event::RunFinished { .. }))
            .map(|e| {
                format!("{e:?}")
                    .split([' ', '{'])
                    .next()
                    .unwrap_or("")
                    .to_owned()
            })
            .collect();
        kinds.sort();
        let futures = echo.futures.load(Ordering::SeqCst);
        assert_eq!(
            futures,
            if offer { 0 } else { seen.len() },
            "offered: run at once, never as a future"
        );
        (report.status, steps, kinds, seen)
    };
    let (now_status, now_steps, now_events, now_seen) = outcome(true);
    let (fut_status, fut_steps, fut_events, fut_seen) = outcome(false);
    assert_eq!(now_status, WorkflowStatus::Failed);
    assert_eq!(now_status, fut_status);
    assert_eq!(now_steps, fut_steps, "same reports");
    assert_eq!(now_events, fut_events, "same kinds of events");
    assert_eq!(now_seen, fut_seen, "same contexts");
    let by_name = |n: &str| now_steps.iter().find(|s| s.0 == n).expect("step").clone();
    assert_eq!(by_name("a").1, TaskStatus::Completed);
    let b = by_name("b");
    assert_eq!(
        (b.1, b.2),
        (TaskStatus::Failed, 1),
        "no retries: one attempt"
    );
    let b = b.3.expect("b's result");
    assert_eq!(b.error_type.as_deref(), Some("Told"));
    assert_eq!(b.data, json!({"why": "told"}));
    let c = by_name("c").3.expect("c's result");
    assert_eq!(
        c.error_type.as_deref(),
        Some("ActionPanic"),
        "a panic fails only its step"
    );
    assert_eq!(
        by_name("d").1,
        TaskStatus::Completed,
        "run_if: failure ran after the panic"
    );
    assert_eq!(by_name("e").1, TaskStatus::Skipped);
    assert!(
        now_events.iter().any(|k| k == "TaskStarted"),
        "{now_events:?}"
    );
    assert_eq!(
        now_seen.first().map(|s| (s.1.as_str(), s.2, s.3.as_path())),
        Some(("echo", 1, std::path::Path::new("/tmp")))
    );
}

#[test]
fn an_immediate_action_with_retries_goes_through_the_attempt_loop() {
    let wf = yaml(
        "name: again\nsteps:\n  - {name: f, module: core, action: fail, max_retries: 2, retry: {backoff: constant, initial_delay: 0.001}}\n",
    );
    let (report, events) = run(&wf, &ActionRegistry::with_builtins(), RunOptions::default());
    assert_eq!(report.steps[0].status, TaskStatus::Failed);
    assert_eq!(report.steps[0].attempts, 3);
    let retries = events
        .iter()
        .filter(|e| matches!(e, Event::TaskRetrying { .. }))
        .count();
    assert_eq!(retries, 2);
}
