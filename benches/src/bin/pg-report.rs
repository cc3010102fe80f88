//! The PostgreSQL store with `orch worker` processes (SPEC §10, issue 12):
//! W1 of 100,000 no-op steps through two workers (tasks/s), the
//! dependency-to-dependent latency of a chain through two workers, a
//! 1,000,000-step W3 submitted and completed, and each worker's peak RSS.
//!
//! `cargo run --release -p orch-benches --bin pg-report [-- --quick] [--only W1|W2|W3] [--steps N] [--orch PATH] [--url URL]`
//! (`cargo xtask bench` runs it after building the release `orch`). The
//! server is `postgres://postgres@127.0.0.1:5432/test` unless `--url` (or
//! `ORCH_BENCH_PG`) says otherwise; each workload gets a fresh schema,
//! dropped afterwards. When the server does not answer, the report says so
//! in one line and exits 0.
//!
//! Definitions:
//! - tasks/s: steps divided by the time from the run's submission
//!   (`create_run` committed) to its end (the run's status seen final,
//!   polled every 50 ms);
//! - latency: for each step of a chain, its `started_at` (the `now` of the
//!   claim that handed it out) minus its dependency's `finished_at` (the
//!   `now` of the completion, taken just before that transaction commits),
//!   both from the workers' clocks on this machine: commit, wake-up and
//!   claim together;
//! - peak RSS: `VmHWM` of each worker process at the end of the workload.

use orch_benches::{Workload, valid_workflow};
use orch_model::{RunId, RunSettings, Store, WorkflowStatus};
use orch_store_postgres::PostgresStore;
use orch_tasks::ActionRegistry;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// Two `orch worker` processes on one schema.
struct Workers {
    children: Vec<Child>,
}

impl Workers {
    fn start(orch: &Path, url: &str, work: &Path) -> Result<Self, String> {
        let mut children = Vec::new();
        for i in 0..2 {
            let log = std::fs::File::create(work.join(format!("worker-{i}.log")))
                .map_err(|e| format!("worker log: {e}"))?;
            let child = Command::new(orch)
                .args([
                    "worker", "--store", url, "--slots", "512", "--poll", "100ms",
                ])
                .args([
                    "--lease",
                    "60s",
                    "--grace",
                    "5s",
                    "--id",
                    &format!("bench-{i}"),
                ])
                .current_dir(work)
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .map_err(|e| format!("start {}: {e}", orch.display()))?;
            children.push(child);
        }
        Ok(Self { children })
    }

    /// Peak RSS of each worker, MiB.
    fn peaks(&self) -> Vec<f64> {
        self.children
            .iter()
            .map(|c| {
                std::fs::read_to_string(format!("/proc/{}/status", c.id()))
                    .ok()
                    .and_then(|s| {
                        s.lines()
                            .find(|l| l.starts_with("VmHWM:"))
                            .and_then(|l| l.split_whitespace().nth(1))
                            .and_then(|v| v.parse::<f64>().ok())
                    })
                    .map_or(f64::NAN, |kib| kib / 1024.0)
            })
            .collect()
    }

    fn stop(mut self) {
        for c in &mut self.children {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
        }
        for c in &mut self.children {
            let _ = c.wait();
        }
        self.children.clear();
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn psql(url: &str, sql: &str) -> Result<(), String> {
    let base = url.split('?').next().unwrap_or(url);
    let out = Command::new("psql")
        .args([base, "-q", "-c", sql])
        .output()
        .map_err(|e| format!("psql: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    }
}

/// One value of a query, as text.
fn psql_value(url: &str, sql: &str) -> Result<String, String> {
    let base = url.split('?').next().unwrap_or(url);
    let out = Command::new("psql")
        .args([base, "-qtA", "-c", sql])
        .output()
        .map_err(|e| format!("psql: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    }
}

struct Measured {
    secs: f64,
    submit_secs: f64,
    status: WorkflowStatus,
    peaks: Vec<f64>,
    latency_ms: Option<(f64, f64)>,
}

/// Submits `w` of `n` steps to a fresh schema served by two workers and
/// waits for its end.
fn measure(
    rt: &tokio::runtime::Runtime,
    orch: &Path,
    base: &str,
    work: &Path,
    w: Workload,
    n: usize,
) -> Result<Measured, String> {
    let schema = format!(
        "orch_bench_{}_{}_{n}",
        std::process::id(),
        w.label().to_ascii_lowercase()
    );
    let url = format!("{base}?schema={schema}");
    let store = PostgresStore::connect(&url).map_err(|e| e.to_string())?;
    let workers = Workers::start(orch, &url, work)?;
    let wf = valid_workflow(w, n);
    let registry = ActionRegistry::with_builtins();
    let result = rt.block_on(async {
        // Let the workers open the store and go idle.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let t0 = Instant::now();
        let id = orch_tasks::worker::submit(
            &store,
            &wf,
            &registry,
            &serde_json::Map::new(),
            &RunSettings::default(),
            RunId::new(),
        )
        .await
        .map_err(|e| e.to_string())?;
        let submitted = Instant::now();
        let deadline = submitted + Duration::from_secs(1800);
        // The run's status alone, by psql: `get_run` would read the whole
        // definition (about 90 MiB at 1M steps) at every poll.
        let status = loop {
            let text = psql_value(base, &format!("SELECT status FROM {schema}.runs"))?;
            if text != "running" {
                break text
                    .parse::<WorkflowStatus>()
                    .map_err(|e| format!("run status: {e}"))?;
            }
            if Instant::now() > deadline {
                return Err("the run did not end within 30 minutes".to_owned());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let secs = submitted.elapsed().as_secs_f64();
        let latency_ms = if w == Workload::Chain {
            let tasks = store.tasks(id).await.map_err(|e| e.to_string())?;
            let mut gaps: Vec<f64> = tasks
                .windows(2)
                .filter_map(|p| {
                    let done = p[0].finished_at?;
                    let start = p[1].started_at?;
                    Some((start - done).num_microseconds()? as f64 / 1000.0)
                })
                .collect();
            gaps.sort_by(f64::total_cmp);
            (!gaps.is_empty()).then(|| (gaps[gaps.len() / 2], gaps[gaps.len() * 9 / 10]))
        } else {
            None
        };
        Ok(Measured {
            secs,
            submit_secs: (submitted - t0).as_secs_f64(),
            status,
            peaks: Vec::new(),
            latency_ms,
        })
    });
    let peaks = workers.peaks();
    workers.stop();
    drop(store);
    if let Err(e) = psql(base, &format!("DROP SCHEMA IF EXISTS {schema} CASCADE")) {
        eprintln!("pg-report: could not drop schema {schema}: {e}");
    }
    result.map(|m| Measured { peaks, ..m })
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1).cloned())
    };
    let url = value("--url")
        .or_else(|| std::env::var("ORCH_BENCH_PG").ok())
        .unwrap_or_else(|| DEFAULT_URL.to_owned());
    let orch = value("--orch").map(PathBuf::from).unwrap_or_else(|| {
        std::env::current_exe()
            .ok()
            .and_then(|e| e.parent().map(|d| d.join("orch")))
            .unwrap_or_else(|| PathBuf::from("orch"))
    });
    let addr: SocketAddr = ([127, 0, 0, 1], 5432).into();
    if url == DEFAULT_URL && TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err() {
        println!("pg-report: skipped: PostgreSQL does not answer on 127.0.0.1:5432");
        return;
    }
    if !orch.is_file() {
        eprintln!(
            "pg-report: no orch binary at {}; build it with `cargo build --release -p orch-cli`, or pass --orch PATH",
            orch.display()
        );
        std::process::exit(2);
    }
    let work = std::env::temp_dir().join(format!("orch-pg-report-{}", std::process::id()));
    if let Err(e) = std::fs::create_dir_all(&work) {
        eprintln!("pg-report: {}: {e}", work.display());
        std::process::exit(2);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let rows: Vec<(Workload, usize)> = if quick {
        vec![(Workload::Wide, 10_000), (Workload::Chain, 500)]
    } else {
        vec![
            (Workload::Wide, 100_000),
            (Workload::Chain, 2_000),
            (Workload::Layered, 1_000_000),
        ]
    };
    // `--only W3`: one workload of the table; `--steps N`: at another size.
    let only = value("--only");
    let steps = match value("--steps").map(|n| n.parse::<usize>()) {
        None => None,
        Some(Ok(n)) if n > 0 => Some(n),
        Some(_) => {
            eprintln!("pg-report: --steps takes a positive number of steps");
            std::process::exit(2);
        }
    };
    let rows: Vec<(Workload, usize)> = rows
        .into_iter()
        .filter(|(w, _)| only.as_deref().is_none_or(|o| o == w.label()))
        .map(|(w, n)| (w, steps.unwrap_or(n)))
        .collect();
    println!(
        "| workload | steps | submit s | run s | steps/s | latency p50 / p90 ms | worker peak RSS MiB | status |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let mut failed = false;
    for (w, n) in rows {
        match measure(&rt, &orch, &url, &work, w, n) {
            Ok(m) => {
                failed |= m.status != WorkflowStatus::Completed;
                let latency = m
                    .latency_ms
                    .map_or("".to_owned(), |(p50, p90)| format!("{p50:.2} / {p90:.2}"));
                let peaks: Vec<String> = m.peaks.iter().map(|p| format!("{p:.0}")).collect();
                println!(
                    "| {} | {n} | {:.2} | {:.2} | {:.0} | {latency} | {} | {} |",
                    w.label(),
                    m.submit_secs,
                    m.secs,
                    n as f64 / m.secs,
                    peaks.join(", "),
                    m.status
                );
            }
            Err(e) => {
                eprintln!("pg-report: {} {n}: {e}", w.label());
                failed = true;
            }
        }
    }
    let _ = std::fs::remove_dir_all(&work);
    if failed {
        std::process::exit(1);
    }
}
