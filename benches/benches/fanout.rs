//! Criterion bench: a fan-out of 10,000 items (validated and expanded, then run) next to 10,000 independent no-op steps (W1).

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use orch_benches::{Workload, run_orch, valid_workflow};
use orch_model::{Format, Limits, load_workflow};
use orch_tasks::ActionRegistry;
use std::hint::black_box;
use std::time::Duration;

const N: usize = 10_000;

/// One `core.noop` step over a literal list of `n` items, each item in its parameters.
fn fan_out_json(n: usize) -> String {
    let items: Vec<String> = (0..n).map(|i| i.to_string()).collect();
    format!(
        r#"{{"name": "fan", "steps": [{{"name": "each", "module": "core", "action": "noop", "for_each": [{}], "parameters": {{"v": "${{item}}"}}}}]}}"#,
        items.join(",")
    )
}

fn fanout(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let registry = ActionRegistry::with_builtins();
    let text = fan_out_json(N);
    let load = || load_workflow(&text, Format::Json, &Limits::default(), None).expect("valid");
    let wf = load();
    let w1 = valid_workflow(Workload::Wide, N);
    let mut group = c.benchmark_group("fanout");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .throughput(Throughput::Elements(N as u64));
    group.bench_function(BenchmarkId::new("load-and-expand", N), |b| {
        b.iter(|| black_box(load().workflow().steps.len()));
    });
    group.bench_function(BenchmarkId::new("run", N), |b| {
        b.iter(|| black_box(run_orch(&rt, &wf, &registry).succeeded()));
    });
    group.bench_function(BenchmarkId::new("W1-run", N), |b| {
        b.iter(|| black_box(run_orch(&rt, &w1, &registry).succeeded()));
    });
    group.finish();
}

criterion_group!(benches, fanout);
criterion_main!(benches);
