//! Prints, per workload and size, the time and peak extra memory per step of
//! parsing and validating a JSON definition (the table of docs/benchmarks.md).

use orch_benches::{Workload, reset_peak_rss, rss_kib};
use orch_model::{Format, Limits, load_workflow};
use std::time::Instant;

fn main() {
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect::<Vec<_>>()
        .into_iter()
        .chain(std::iter::empty())
        .collect();
    let sizes = if sizes.is_empty() {
        vec![10_000, 100_000, 1_000_000]
    } else {
        sizes
    };
    println!(
        "| workload | steps | input MiB | parse+validate (median of 3) | µs/step | peak extra memory | bytes/step |"
    );
    println!("|---|---|---|---|---|---|---|");
    for w in [Workload::Wide, Workload::Chain, Workload::Layered] {
        for &n in &sizes {
            let text = w.definition_json(n);
            let mut times = Vec::new();
            let mut peak_extra_kib = 0u64;
            for _ in 0..3 {
                let reset = reset_peak_rss();
                let before = rss_kib().map(|(_, rss)| rss).unwrap_or(0);
                let start = Instant::now();
                let wf = load_workflow(&text, Format::Json, &Limits::default(), None);
                let levels = wf.as_ref().map(|w| w.levels().len()).unwrap_or(0);
                let elapsed = start.elapsed();
                if reset && let Some((hwm, _)) = rss_kib() {
                    peak_extra_kib = peak_extra_kib.max(hwm.saturating_sub(before));
                }
                assert!(levels > 0, "the generated workflow is valid");
                drop(wf);
                times.push(elapsed);
            }
            times.sort();
            let median = times[1];
            println!(
                "| {} | {n} | {:.1} | {:.3} s | {:.3} | {:.1} MiB | {} |",
                w.label(),
                text.len() as f64 / 1_048_576.0,
                median.as_secs_f64(),
                median.as_secs_f64() * 1e6 / n as f64,
                peak_extra_kib as f64 / 1024.0,
                peak_extra_kib * 1024 / n as u64
            );
        }
    }
}
