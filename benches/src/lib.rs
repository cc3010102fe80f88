//! Benchmark workloads of SPEC §10 as workflow definitions: W1 wide, W2 chain, W3 layered.
//!
//! It also holds the baselines of the scheduler benchmarks ([`baseline`]).
//! The generators are deterministic (a fixed-seed xorshift), so every run
//! measures the same graphs.

pub mod baseline;
pub mod latency;

use std::fmt::Write as _;

/// The three workload shapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    /// W1: N independent tasks.
    Wide,
    /// W2: N tasks in a line.
    Chain,
    /// W3: 100 layers of N/100 tasks, each depending on 2 random tasks of the previous layer.
    Layered,
}

impl Workload {
    /// The short name used in reports (`W1`, `W2`, `W3`).
    pub fn label(&self) -> &'static str {
        match self {
            Workload::Wide => "W1",
            Workload::Chain => "W2",
            Workload::Layered => "W3",
        }
    }

    /// The dependencies of every task, by index.
    pub fn dependencies(&self, n: usize) -> Vec<Vec<u32>> {
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        match self {
            Workload::Wide => vec![Vec::new(); n],
            Workload::Chain => (0..n)
                .map(|i| if i == 0 { vec![] } else { vec![i as u32 - 1] })
                .collect(),
            Workload::Layered => {
                let width = (n / 100).max(1);
                (0..n)
                    .map(|i| {
                        let layer = i / width;
                        if layer == 0 {
                            return Vec::new();
                        }
                        let prev = ((layer - 1) * width) as u64;
                        let a = prev + rng.next_u64() % width as u64;
                        let mut b = prev + rng.next_u64() % width as u64;
                        if b == a && width > 1 {
                            b = prev + (b - prev + 1) % width as u64;
                        }
                        if a == b {
                            vec![a as u32]
                        } else {
                            vec![a as u32, b as u32]
                        }
                    })
                    .collect()
            }
        }
    }

    /// The workload as a JSON definition of no-op tasks, as `orch validate` reads it.
    pub fn definition_json(&self, n: usize) -> String {
        let deps = self.dependencies(n);
        let mut s = String::with_capacity(n * 90);
        let _ = write!(
            s,
            "{{\"name\": \"{}-{n}\", \"steps\": [",
            self.label().to_ascii_lowercase()
        );
        for (i, ds) in deps.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            let _ = write!(
                s,
                "\n{{\"name\": \"t{i}\", \"module\": \"core\", \"action\": \"noop\", \"dependencies\": ["
            );
            for (k, d) in ds.iter().enumerate() {
                if k > 0 {
                    s.push_str(", ");
                }
                let _ = write!(s, "\"t{d}\"");
            }
            s.push_str("]}");
        }
        s.push_str("\n]}\n");
        s
    }
}

/// One run of a (no-op) workflow through orch's scheduler with room for
/// every ready task, as the scheduler benchmarks measure it.
pub fn run_orch(
    rt: &tokio::runtime::Runtime,
    wf: &orch_model::ValidWorkflow,
    registry: &orch_tasks::ActionRegistry,
) -> orch_tasks::RunReport {
    let opts = orch_tasks::RunOptions {
        max_parallel: 4096,
        ..orch_tasks::RunOptions::default()
    };
    rt.block_on(orch_tasks::run_workflow(wf, registry, opts, None))
        .expect("the workflow runs")
}

/// Runs a workflow journaled through `store` (every completion committed
/// before its dependents start), as `run_orch` otherwise.
pub fn run_orch_stored(
    rt: &tokio::runtime::Runtime,
    wf: &orch_model::ValidWorkflow,
    registry: &orch_tasks::ActionRegistry,
    store: std::sync::Arc<dyn orch_model::Store>,
) -> orch_tasks::RunReport {
    let opts = orch_tasks::RunOptions {
        max_parallel: 4096,
        store: Some(store),
        ..orch_tasks::RunOptions::default()
    };
    rt.block_on(orch_tasks::run_workflow(wf, registry, opts, None))
        .expect("the workflow runs")
}

/// The workload as a validated workflow.
pub fn valid_workflow(w: Workload, n: usize) -> orch_model::ValidWorkflow {
    orch_model::load_workflow(
        &w.definition_json(n),
        orch_model::Format::Json,
        &orch_model::Limits::default(),
        None,
    )
    .expect("the generated workflow is valid")
}

/// A tiny deterministic generator (xorshift64*).
#[derive(Debug, Clone)]
pub struct XorShift(pub u64);

impl XorShift {
    /// The next pseudo-random number.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// The resident set's high-water mark and current size of this process, in
/// KiB, from `/proc/self/status` (Linux).
pub fn rss_kib() -> Option<(u64, u64)> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
    };
    Some((field("VmHWM:")?, field("VmRSS:")?))
}

/// Runs this executable again with `args` (a `--peak` mode that prints one
/// number) and returns that number: peak memory is measured in a fresh
/// process, since this one reuses memory earlier rows freed, which hides a
/// job's footprint. NaN when the child fails.
pub fn number_from_child(args: &[&str]) -> f64 {
    let Ok(exe) = std::env::current_exe() else {
        return f64::NAN;
    };
    std::process::Command::new(exe)
        .args(args)
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(f64::NAN)
}

/// The `--peak W N` arguments of a report binary, when given (W defaults to
/// W3, N to 100,000).
pub fn peak_args(args: &[String]) -> Option<(Workload, usize)> {
    let i = args.iter().position(|a| a == "--peak")?;
    let w = Workload::from_label(args.get(i + 1).map_or("W3", String::as_str));
    let n = args
        .get(i + 2)
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    Some((w, n))
}

impl Workload {
    /// The workload a report label names (`W1`, `W2`; anything else is W3).
    pub fn from_label(label: &str) -> Self {
        match label {
            "W1" => Workload::Wide,
            "W2" => Workload::Chain,
            _ => Workload::Layered,
        }
    }
}

/// Resets the resident set's high-water mark (Linux: `echo 5 > /proc/self/clear_refs`).
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use orch_model::{Format, Limits, load_workflow};

    #[test]
    fn generated_definitions_validate_with_the_expected_shape() {
        for (w, levels) in [
            (Workload::Wide, 1),
            (Workload::Chain, 1000),
            (Workload::Layered, 100),
        ] {
            let text = w.definition_json(1000);
            let wf = load_workflow(&text, Format::Json, &Limits::default(), None).expect("valid");
            assert_eq!(wf.workflow().steps.len(), 1000);
            assert_eq!(wf.levels().len(), levels, "{}", w.label());
        }
        let deps = Workload::Layered.dependencies(10_000);
        assert!(deps[100..].iter().all(|d| !d.is_empty() && d.len() <= 2));
        assert!(
            deps[250].iter().all(|&d| (100..200).contains(&d)),
            "layer 2 depends on layer 1"
        );
    }
}
