//! Criterion bench: parse and validate W1/W3 definitions in JSON (SPEC §10), per step.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use orch_benches::Workload;
use orch_model::{Format, Limits, load_workflow};
use std::hint::black_box;
use std::time::Duration;

fn parse_and_validate(c: &mut Criterion) {
    let mut group = c.benchmark_group("definition/json");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(8));
    for w in [Workload::Wide, Workload::Layered] {
        for n in [10_000usize, 100_000, 1_000_000] {
            let text = w.definition_json(n);
            group.throughput(Throughput::Elements(n as u64));
            group.bench_with_input(BenchmarkId::new(w.label(), n), &text, |b, text| {
                b.iter(|| {
                    let wf = load_workflow(black_box(text), Format::Json, &Limits::default(), None);
                    black_box(wf.map(|w| w.levels().len()).unwrap_or(0))
                });
            });
        }
    }
    group.finish();
}

criterion_group!(benches, parse_and_validate);
criterion_main!(benches);
