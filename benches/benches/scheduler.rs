//! Criterion bench: running W1/W2/W3 no-op workflows through orch's scheduler, next to the tokio baseline.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use orch_benches::{Workload, baseline, run_orch, valid_workflow};
use orch_tasks::ActionRegistry;
use std::hint::black_box;
use std::time::Duration;

fn scheduler(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let registry = ActionRegistry::with_builtins();
    let mut group = c.benchmark_group("scheduler");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    for w in [Workload::Wide, Workload::Chain, Workload::Layered] {
        let n = 100_000;
        let deps = w.dependencies(n);
        let wf = valid_workflow(w, n);
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(
            BenchmarkId::new(format!("{}/orch", w.label()), n),
            &wf,
            |b, wf| {
                b.iter(|| black_box(run_orch(&rt, wf, &registry).succeeded()));
            },
        );
        group.bench_with_input(
            BenchmarkId::new(format!("{}/tokio-baseline", w.label()), n),
            &deps,
            |b, deps| {
                b.iter(|| black_box(rt.block_on(baseline::tokio_counters(deps, usize::MAX))));
            },
        );
        group.bench_with_input(
            BenchmarkId::new(format!("{}/plain-loop", w.label()), n),
            &deps,
            |b, deps| {
                b.iter(|| black_box(baseline::plain_loop(deps)));
            },
        );
    }
    group.finish();
}

criterion_group!(benches, scheduler);
criterion_main!(benches);
