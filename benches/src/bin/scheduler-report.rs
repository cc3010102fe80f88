//! Prints µs per task of running W1/W2/W3 (no-op tasks) through orch's
//! scheduler and through the two baselines in the same process, and the ratio
//! to the tokio baseline (the table of docs/benchmarks.md).

use orch_benches::{Workload, baseline};
use orch_model::{Format, Limits, load_workflow};
use orch_tasks::ActionRegistry;
use std::time::Instant;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Runs `scheduler-report --peak W N` and returns its bytes per task.
fn peak_in_child(w: Workload, n: usize) -> f64 {
    orch_benches::number_from_child(&["--peak", w.label(), &n.to_string()])
}

/// `--peak W N`: reads and validates the workload's JSON definition, runs it,
/// and prints the rise of the resident high-water mark over the whole job,
/// per task (the text is generated before the measurement starts).
fn peak_mode(w: Workload, n: usize) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let registry = ActionRegistry::with_builtins();
    let text = w.definition_json(n);
    let reset = orch_benches::reset_peak_rss();
    let before = orch_benches::rss_kib().map(|(_, rss)| rss).unwrap_or(0);
    let wf = load_workflow(&text, Format::Json, &Limits::default(), None).expect("valid");
    assert!(orch_benches::run_orch(&rt, &wf, &registry).succeeded());
    let hwm = orch_benches::rss_kib().map(|(hwm, _)| hwm).unwrap_or(0);
    if reset {
        println!("{}", hwm.saturating_sub(before) as f64 * 1024.0 / n as f64);
    } else {
        println!("NaN");
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some((w, n)) = orch_benches::peak_args(&args) {
        peak_mode(w, n);
        return;
    }
    // `--orch-only` skips the baselines (for profiling orch alone).
    let orch_only = std::env::args().any(|a| a == "--orch-only");
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let sizes = if sizes.is_empty() {
        vec![10_000, 100_000, 1_000_000]
    } else {
        sizes
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let registry = ActionRegistry::with_builtins();
    println!(
        "| workload | tasks | plain loop µs/task | tokio baseline µs/task | orch µs/task | orch / tokio | peak bytes/task (load + run) |"
    );
    println!("|---|---|---|---|---|---|---|");
    for w in [Workload::Wide, Workload::Chain, Workload::Layered] {
        for &n in &sizes {
            let deps = w.dependencies(n);
            let wf = orch_benches::valid_workflow(w, n);
            let (mut plain, mut tok, mut orch) = (Vec::new(), Vec::new(), Vec::new());
            // Three rounds (the median is reported); one at a million tasks,
            // where the tokio baseline alone takes most of a minute on W2.
            let rounds = if n >= 1_000_000 { 1 } else { 3 };
            for _ in 0..rounds {
                if !orch_only {
                    let t = Instant::now();
                    assert_eq!(baseline::plain_loop(&deps), n);
                    plain.push(t.elapsed().as_secs_f64() * 1e6 / n as f64);
                    let t = Instant::now();
                    assert_eq!(rt.block_on(baseline::tokio_counters(&deps, usize::MAX)), n);
                    tok.push(t.elapsed().as_secs_f64() * 1e6 / n as f64);
                } else {
                    plain.push(f64::NAN);
                    tok.push(f64::NAN);
                }
                let t = Instant::now();
                let report = orch_benches::run_orch(&rt, &wf, &registry);
                orch.push(t.elapsed().as_secs_f64() * 1e6 / n as f64);
                assert!(report.succeeded());
            }
            // Peak memory in a fresh process (this one reuses what earlier
            // rows freed, which would hide a run's footprint).
            let peak = peak_in_child(w, n);
            let (p, t, o) = (median(plain), median(tok), median(orch));
            println!(
                "| {} | {n} | {p:.3} | {t:.3} | {o:.3} | {:.1}x | {:.0} |",
                w.label(),
                o / t,
                peak
            );
        }
    }

    // End to end: read, validate and run a 1,000,000-task W3 workflow, with
    // the peak memory the whole job adds (the text is generated beforehand).
    if !orch_only || std::env::args().any(|a| a == "--e2e") {
        let n = 1_000_000;
        let text = Workload::Layered.definition_json(n);
        let reset = orch_benches::reset_peak_rss();
        let before = orch_benches::rss_kib().map(|(_, rss)| rss).unwrap_or(0);
        let t = Instant::now();
        let wf = load_workflow(&text, Format::Json, &Limits::default(), None).expect("valid");
        let loaded = t.elapsed();
        let report = orch_benches::run_orch(&rt, &wf, &registry);
        assert!(report.succeeded());
        let total = t.elapsed();
        let peak = if reset {
            orch_benches::rss_kib()
                .map(|(hwm, _)| hwm.saturating_sub(before))
                .unwrap_or(0)
        } else {
            0
        };
        println!();
        println!(
            "W3 1,000,000 tasks end to end: {:.2} s (validate {:.2} s, run {:.2} s), peak extra memory in this process {:.0} MiB = {} bytes/task (it reuses memory freed by earlier rows; the table's fresh-process column is the figure to quote)",
            total.as_secs_f64(),
            loaded.as_secs_f64(),
            (total - loaded).as_secs_f64(),
            peak as f64 / 1024.0,
            peak * 1024 / n as u64
        );
    }

    // Durable runs: the same workloads journaled through the in-memory store
    // and the SQLite store (a fresh database file per run, WAL, group commit).
    if !orch_only || std::env::args().any(|a| a == "--stores") {
        println!();
        println!(
            "| workload | tasks | no store µs/task | memory store µs/task | SQLite µs/task | SQLite tasks/s | SQLite / memory |"
        );
        println!("|---|---|---|---|---|---|---|");
        let dir = std::env::temp_dir().join(format!("orch-bench-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let n = 100_000;
        for w in [Workload::Wide, Workload::Layered] {
            let wf = orch_benches::valid_workflow(w, n);
            let (mut none, mut mem, mut sql) = (Vec::new(), Vec::new(), Vec::new());
            for round in 0..3 {
                let t = Instant::now();
                assert!(orch_benches::run_orch(&rt, &wf, &registry).succeeded());
                none.push(t.elapsed().as_secs_f64() * 1e6 / n as f64);
                let store = std::sync::Arc::new(orch_tasks::MemoryStore::new());
                let t = Instant::now();
                assert!(orch_benches::run_orch_stored(&rt, &wf, &registry, store).succeeded());
                mem.push(t.elapsed().as_secs_f64() * 1e6 / n as f64);
                let path = dir.join(format!("{}-{round}.db", w.label()));
                let store = std::sync::Arc::new(
                    orch_store_sqlite::SqliteStore::open(&path).expect("sqlite store"),
                );
                let t = Instant::now();
                assert!(orch_benches::run_orch_stored(&rt, &wf, &registry, store).succeeded());
                sql.push(t.elapsed().as_secs_f64() * 1e6 / n as f64);
            }
            let (a, b, c) = (median(none), median(mem), median(sql));
            println!(
                "| {} | {n} | {a:.3} | {b:.3} | {c:.3} | {:.0} | {:.1}x |",
                w.label(),
                1e6 / c,
                c / b
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    // Dependency-to-dependent latency on a 10,000-step chain.
    // Driven: as the CLI and the workflow manager run workflows, as a task of
    // the runtime (`orch_tasks::drive`); from block_on: `block_on(run_workflow(..))`.
    for (how, driven) in [("driven as a task", true), ("from block_on", false)] {
        for (label, yield_first) in [
            ("returns at once (inline)", false),
            ("yields once (spawned)", true),
        ] {
            let (p50, p99) = orch_benches::latency::chain_latency(&rt, 10_000, yield_first, driven);
            println!(
                "dependency-to-dependent latency, {how}, action that {label}: p50 {:.2} µs, p99 {:.2} µs",
                p50.as_secs_f64() * 1e6,
                p99.as_secs_f64() * 1e6
            );
        }
    }
}
