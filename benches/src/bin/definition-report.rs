//! Prints, per workload and size, the time and peak extra memory per step of
//! parsing and validating a JSON definition (the table of docs/benchmarks.md).
//! The memory column is measured in a fresh process per row
//! (`definition-report --peak W N`): this one reuses what earlier rows freed.

use orch_benches::{Workload, reset_peak_rss, rss_kib};
use orch_model::{Format, Limits, load_workflow};
use std::time::Instant;

/// `--peak W N`: the rise of the resident high-water mark over reading and
/// validating the workload's JSON definition (generated beforehand), in KiB.
fn peak_mode(w: Workload, n: usize) {
    let text = w.definition_json(n);
    let reset = reset_peak_rss();
    let before = rss_kib().map(|(_, rss)| rss).unwrap_or(0);
    let wf = load_workflow(&text, Format::Json, &Limits::default(), None).expect("valid");
    assert!(!wf.levels().is_empty());
    match rss_kib() {
        Some((hwm, _)) if reset => println!("{}", hwm.saturating_sub(before)),
        _ => println!("NaN"),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some((w, n)) = orch_benches::peak_args(&args) {
        peak_mode(w, n);
        return;
    }
    let sizes: Vec<usize> = args.iter().skip(1).filter_map(|a| a.parse().ok()).collect();
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
            for _ in 0..3 {
                let start = Instant::now();
                let wf = load_workflow(&text, Format::Json, &Limits::default(), None);
                let levels = wf.as_ref().map(|w| w.levels().len()).unwrap_or(0);
                let elapsed = start.elapsed();
                assert!(levels > 0, "the generated workflow is valid");
                drop(wf);
                times.push(elapsed);
            }
            times.sort();
            let median = times[1];
            let peak_extra_kib =
                orch_benches::number_from_child(&["--peak", w.label(), &n.to_string()]);
            println!(
                "| {} | {n} | {:.1} | {:.3} s | {:.3} | {:.1} MiB | {:.0} |",
                w.label(),
                text.len() as f64 / 1_048_576.0,
                median.as_secs_f64(),
                median.as_secs_f64() * 1e6 / n as f64,
                peak_extra_kib / 1024.0,
                peak_extra_kib * 1024.0 / n as f64
            );
        }
    }
}
