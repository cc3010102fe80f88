//! Dependency-to-dependent latency: how long after a step returns its dependent starts.
//!
//! A chain of N steps runs a `Stamp` action that records when it starts and
//! when it returns; the latency of each link is the next step's start minus
//! this step's return. Two variants: the action returns at once (orch
//! completes it inline), or it yields once first (orch spawns it).

use async_trait::async_trait;
use orch_model::{Format, Limits, load_workflow};
use orch_tasks::{Action, ActionContext, ActionError, ActionRegistry, RunOptions, run_workflow};
use serde_json::Value;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug)]
struct Stamp {
    yield_first: bool,
    log: Arc<Mutex<Vec<(usize, Instant, Instant)>>>,
}

#[async_trait]
impl Action for Stamp {
    async fn run(&self, params: Value, _ctx: &ActionContext) -> Result<Value, ActionError> {
        let start = Instant::now();
        if self.yield_first {
            tokio::task::yield_now().await;
        }
        let i = params.get("i").and_then(Value::as_u64).unwrap_or(0) as usize;
        let end = Instant::now();
        if let Ok(mut log) = self.log.lock() {
            log.push((i, start, end));
        }
        Ok(Value::Null)
    }
}

/// The 50th and 99th percentile of the link latencies of an `n`-step chain.
pub fn chain_latency(
    rt: &tokio::runtime::Runtime,
    n: usize,
    yield_first: bool,
    driven: bool,
) -> (Duration, Duration) {
    let mut text = String::from("{\"name\": \"chain\", \"steps\": [");
    for i in 0..n {
        if i > 0 {
            text.push(',');
        }
        let deps = if i == 0 {
            String::new()
        } else {
            format!("\"s{}\"", i - 1)
        };
        text.push_str(&format!(
            "{{\"name\": \"s{i}\", \"module\": \"bench\", \"action\": \"stamp\", \"parameters\": {{\"i\": {i}}}, \"dependencies\": [{deps}]}}"
        ));
    }
    text.push_str("]}");
    let wf = load_workflow(&text, Format::Json, &Limits::default(), None).expect("valid chain");
    let log = Arc::new(Mutex::new(Vec::with_capacity(n)));
    let mut registry = ActionRegistry::with_builtins();
    registry.register(
        "bench",
        "stamp",
        Arc::new(Stamp {
            yield_first,
            log: log.clone(),
        }),
    );
    // Driven as the CLI and the workflow manager drive runs: as a task of
    // the runtime (`orch_tasks::drive`), not from `block_on`'s thread.
    let report = if driven {
        rt.block_on(orch_tasks::drive(async move {
            run_workflow(&wf, &registry, RunOptions::default(), None).await
        }))
    } else {
        rt.block_on(run_workflow(&wf, &registry, RunOptions::default(), None))
    }
    .expect("runs");
    assert!(report.succeeded());
    let mut entries = log.lock().map(|l| l.clone()).unwrap_or_default();
    entries.sort_by_key(|e| e.0);
    let mut gaps: Vec<Duration> = entries
        .windows(2)
        .map(|w| w[1].1.saturating_duration_since(w[0].2))
        .collect();
    gaps.sort();
    let pick = |q: f64| {
        gaps.get(((gaps.len() as f64 - 1.0) * q) as usize)
            .copied()
            .unwrap_or_default()
    };
    (pick(0.5), pick(0.99))
}
