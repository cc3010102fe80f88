//! An executor defined here, running attempts on a thread pool of its own,
//! plugged into a workflow run and into a `TaskOrchestrator`, wrapped in the
//! same policy layers as the default executor.

mod common;

use async_trait::async_trait;
use common::rt;
use orch_model::{Format, Limits, TaskStatus, load_workflow};
use orch_tasks::executor::{Attempt, CatchPanic, Executor, Outcome, OutcomeSink, Retry, Timeout};
use orch_tasks::{
    Action, ActionContext, ActionError, ActionRegistry, RunOptions, TaskOptions, TaskOrchestrator,
    run_workflow,
};
use serde_json::{Value, json};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, mpsc};

type Job = (Attempt, Arc<dyn OutcomeSink>);

/// Runs each attempt on one of its own threads (named `pool-N`), each with a
/// single-threaded runtime to drive the action's future.
#[derive(Debug)]
struct Pool {
    tx: Mutex<mpsc::Sender<Job>>,
}

impl Pool {
    fn new(threads: usize) -> Self {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for n in 0..threads {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("pool-{n}"))
                .spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .expect("runtime");
                    loop {
                        let job = rx.lock().expect("lock").recv();
                        let Ok((mut a, sink)) = job else { return };
                        let started = chrono::Utc::now();
                        let params = std::mem::take(&mut a.params);
                        let r = rt.block_on(a.action.run(params, &a.ctx));
                        let (status, retryable) = match &r {
                            Ok(_) => (TaskStatus::Completed, false),
                            Err(_) if a.run_cancelled() => (TaskStatus::Cancelled, false),
                            Err(e) => (TaskStatus::Failed, e.retryable),
                        };
                        let result = match r {
                            Ok(data) => orch_model::TaskResult {
                                success: true,
                                data,
                                ..orch_model::TaskResult::default()
                            },
                            Err(e) => orch_model::TaskResult::failed(e.error_type, e.message),
                        };
                        sink.deliver(Outcome {
                            task: a.task,
                            status,
                            attempts: a.ctx.attempt,
                            started_at: Some(started),
                            finished_at: chrono::Utc::now(),
                            result,
                            retryable,
                        });
                    }
                })
                .expect("thread");
        }
        Self { tx: Mutex::new(tx) }
    }
}

impl Executor for Pool {
    fn submit(
        &self,
        attempts: Vec<Attempt>,
        _done: &mut Vec<Outcome>,
        later: &Arc<dyn OutcomeSink>,
    ) {
        let tx = self.tx.lock().expect("lock");
        for a in attempts {
            tx.send((a, later.clone())).expect("the pool runs");
        }
    }
}

/// Records the thread each attempt ran on; fails the first attempt of a
/// step whose parameters say `flaky`.
#[derive(Debug, Default)]
struct Where {
    threads: Mutex<Vec<String>>,
    flaky: AtomicU32,
}

#[async_trait]
impl Action for Where {
    async fn run(&self, params: Value, ctx: &ActionContext) -> Result<Value, ActionError> {
        let thread = std::thread::current()
            .name()
            .unwrap_or("unnamed")
            .to_owned();
        self.threads.lock().expect("lock").push(thread);
        if params.get("flaky") == Some(&json!(true)) && ctx.attempt == 1 {
            self.flaky.fetch_add(1, Ordering::SeqCst);
            return Err(ActionError::retryable("Flaky", "the first attempt fails"));
        }
        Ok(json!({"step": ctx.step.as_str(), "params": params}))
    }
}

fn layered(pool: Pool) -> Arc<dyn Executor> {
    Arc::new(Retry::new(Timeout::new(CatchPanic::new(pool))))
}

#[test]
fn a_workflow_runs_through_an_executor_of_its_own() {
    let here = Arc::new(Where::default());
    let mut reg = ActionRegistry::with_builtins();
    reg.register("t", "where", here.clone());
    let yaml = r#"
name: pooled
steps:
  - { name: a, module: t, action: where, parameters: { v: 1 } }
  - { name: b, module: t, action: where, parameters: { from_a: "${a.result.params.v}" } }
  - { name: c, module: t, action: where, parameters: { flaky: true }, max_retries: 2, retry: { initial_delay: 1ms, jitter: false } }
  - { name: d, module: core, action: set, parameters: { value: "${b.result.params.from_a}" }, dependencies: [c] }
"#;
    let wf = load_workflow(yaml, Format::Yaml, &Limits::default(), None).expect("valid");
    let opts = RunOptions {
        executor: Some(layered(Pool::new(3))),
        ..RunOptions::default()
    };
    let report = rt()
        .block_on(run_workflow(&wf, &reg, opts, None))
        .expect("ran");
    assert!(report.succeeded(), "{report:?}");
    assert_eq!(
        report.steps[1].result.as_ref().map(|r| &r.data["params"]),
        Some(&json!({"from_a": 1}))
    );
    // The retry layer made a second attempt of `c`, through the pool again.
    assert_eq!(here.flaky.load(Ordering::SeqCst), 1);
    assert_eq!(report.steps[2].attempts, 2);
    // `d` (core.set, an immediate action) ran through the pool too: this
    // executor runs nothing on the coordinator's thread.
    assert_eq!(
        report.steps[3].result.as_ref().map(|r| &r.data),
        Some(&json!(1))
    );
    let threads = here.threads.lock().expect("lock").clone();
    assert_eq!(threads.len(), 4, "a, b and c twice: {threads:?}");
    assert!(
        threads.iter().all(|t| t.starts_with("pool-")),
        "every attempt ran on the pool's threads: {threads:?}"
    );
}

#[test]
fn a_task_orchestrator_runs_through_an_executor_of_its_own() {
    let here = Arc::new(Where::default());
    let mut reg = ActionRegistry::with_builtins();
    reg.register("t", "where", here.clone());
    let rt = rt();
    rt.block_on(async {
        let o = TaskOrchestrator::new(orch_tasks::OrchestratorConfig {
            registry: Arc::new(reg),
            executor: Some(layered(Pool::new(2))),
            ..orch_tasks::OrchestratorConfig::default()
        });
        o.start_execution().expect("start");
        let a = o
            .create_task("a", "t", "where", TaskOptions::default())
            .expect("a");
        let b = o
            .create_task(
                "b",
                "t",
                "where",
                TaskOptions {
                    dependencies: vec![a.id],
                    ..TaskOptions::default()
                },
            )
            .expect("b");
        assert!(
            o.wait_for_completion(Some(std::time::Duration::from_secs(10)))
                .await
        );
        assert_eq!(
            o.get_task_result(b.id).map(|r| r.data["step"].clone()),
            Some(json!("b"))
        );
    });
    let threads = here.threads.lock().expect("lock").clone();
    assert_eq!(threads.len(), 2);
    assert!(
        threads.iter().all(|t| t.starts_with("pool-")),
        "{threads:?}"
    );
}
