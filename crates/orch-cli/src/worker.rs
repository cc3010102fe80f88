//! `orch worker`: claim and run the steps of runs submitted to a shared
//! store, until SIGTERM or SIGINT; and the workers section of `orch status`
//! and `orch health`.

use crate::exit;
use crate::term::{Table, escape_line};
use orch_engine::{
    ActionRegistry, Capacity, HealthReport, OrchestrationEngine, WorkerOptions, WorkerReport,
};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::signal::unix::{SignalKind, signal};

/// Options of `orch worker`.
#[derive(Debug, Clone)]
pub struct WorkerArgs {
    /// Most steps at once.
    pub slots: usize,
    /// `cpu=4,memory=8GiB`.
    pub capacity: Option<String>,
    /// External modules, `NAME=PROGRAM`.
    pub modules: Vec<String>,
    /// The lease of each claim.
    pub lease: Duration,
    /// On SIGTERM/SIGINT, how long running steps may go on.
    pub grace: Duration,
    /// How often an idle worker looks for work.
    pub poll: Duration,
    /// Its id (default HOST-PID-RANDOM).
    pub id: Option<String>,
    /// Where steps work (default: the directory the run was submitted
    /// from when it exists here, else the current directory).
    pub work_dir: Option<PathBuf>,
    /// How long its record is kept once it is lost (default: 10 leases,
    /// at least a minute).
    pub forget_after: Option<Duration>,
}

/// The built-in actions plus `--module NAME=PROGRAM` external modules.
///
/// # Errors
/// One printable line about the first bad entry.
pub(crate) fn registry_with_modules(modules: &[String]) -> Result<ActionRegistry, String> {
    let mut registry = ActionRegistry::with_builtins();
    for m in modules {
        let Some((name, program)) = m.split_once('=') else {
            return Err(format!(
                "orch: --module `{m}`: expected NAME=PROGRAM, e.g. --module analysis=./analysis.py"
            ));
        };
        let ok = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !ok || program.is_empty() {
            return Err(format!(
                "orch: --module `{m}`: NAME must be letters, digits, `_` or `-`, and PROGRAM must not be empty"
            ));
        }
        registry.register_module(
            name,
            Arc::new(orch_engine::External {
                program: program.into(),
                args: Vec::new(),
            }),
        );
    }
    Ok(registry)
}

/// Runs `orch worker` until a signal, then stops as `--grace` allows.
pub fn worker(config: Option<&Path>, args: &WorkerArgs) -> u8 {
    let registry = match registry_with_modules(&args.modules) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{e}");
            return exit::INVALID;
        }
    };
    let capacity = match Capacity::parse(args.capacity.as_deref().unwrap_or("")) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("orch: --{e}");
            return exit::INVALID;
        }
    };
    let engine = match crate::manage::engine_with(config, Some(registry)) {
        Ok(e) => e,
        Err(f) => return f.report(),
    };
    let runtime = match crate::manage::runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let defaults = WorkerOptions::default();
    let mut opts = WorkerOptions {
        slots: args.slots,
        capacity,
        lease: args.lease,
        grace: args.grace,
        poll: args.poll,
        work_dir: args.work_dir.clone(),
        // Lapsed leases are reclaimed at least twice a lease: a lost
        // worker's steps start again within two leases of its last renewal.
        reclaim_every: defaults.reclaim_every.min(args.lease / 2),
        forget_after: args.forget_after,
        ..defaults
    };
    if let Some(id) = &args.id {
        opts.id.clone_from(id);
    }
    runtime.block_on(async {
        let (mut term, mut int) = match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(t), Ok(i)) => (t, i),
            (Err(e), _) | (_, Err(e)) => {
                eprintln!("orch: cannot listen to SIGTERM and SIGINT ({e}); not starting a worker that could not stop cleanly");
                return exit::INTERNAL;
            }
        };
        let handle = match engine.worker(opts) {
            Ok(h) => h,
            Err(e) => {
                eprintln!("orch: {}", escape_line(&e.to_string()));
                return exit::INVALID;
            }
        };
        // Schedules fire from workers too; their runs are submitted to the workers.
        let scheduler = crate::schedule::start(&engine, Some(handle.id()));
        eprintln!(
            "orch: worker {} serving {} with {} slot(s); SIGTERM or SIGINT stops it (running steps get {:?})",
            handle.id(),
            engine.store_url(),
            args.slots,
            args.grace
        );
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        eprintln!(
            "orch: {name}: worker {} claims nothing more; running steps get up to {:?}, then are stopped and handed back",
            handle.id(),
            args.grace
        );
        if let Some(s) = scheduler {
            s.stop();
            s.join().await;
        }
        handle.stop();
        match handle.join().await {
            Ok(s) => {
                eprintln!(
                    "orch: worker stopped: {} claimed, {} completed, {} failed, {} skipped, {} cancelled, {} handed back, {} stale",
                    s.claimed, s.completed, s.failed, s.skipped, s.cancelled, s.handed_back, s.stale
                );
                exit::OK
            }
            Err(e) => {
                eprintln!("orch: {e}");
                exit::INTERNAL
            }
        }
    })
}

/// The workers of the engine's store (`orch status` and `orch health` build
/// the engine on a read-only opening of it).
pub(crate) fn report(engine: &OrchestrationEngine) -> WorkerReport {
    let store = engine.store();
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(orch_engine::worker_report(store.as_ref())),
        Err(e) => WorkerReport {
            status: orch_model::HealthStatus::Degraded,
            workers: Vec::new(),
            issues: vec![format!("workers: cannot start a runtime: {e}")],
            forgotten: Vec::new(),
        },
    }
}

/// `value` (a status or health report as JSON) with `workers` added, when
/// there are any, and `forgotten_workers` (the ids of workers lost for
/// longer than their retention whose records are still there).
pub(crate) fn with_workers(value: &impl serde::Serialize, r: &WorkerReport) -> Value {
    let mut v = serde_json::to_value(value).unwrap_or(Value::Null);
    if let Value::Object(m) = &mut v {
        if !r.workers.is_empty() {
            m.insert(
                "workers".to_owned(),
                serde_json::to_value(&r.workers).unwrap_or(Value::Null),
            );
        }
        if !r.forgotten.is_empty() {
            m.insert(
                "forgotten_workers".to_owned(),
                serde_json::to_value(&r.forgotten).unwrap_or(Value::Null),
            );
        }
    }
    v
}

/// A health report with the workers' verdict: its issues added and the
/// overall status the worse of the two.
pub(crate) fn health_with_workers(mut h: HealthReport, r: &WorkerReport) -> HealthReport {
    h.overall_status = h.overall_status.worst(r.status);
    h.issues.extend(r.issues.iter().cloned());
    h
}

/// The workers as a table (nothing when there are none), and a line for
/// the forgotten ones whose records are still there.
pub(crate) fn print_workers(r: &WorkerReport) {
    print_worker_table(r);
    if !r.forgotten.is_empty() {
        println!(
            "  forgotten:  {} (lost for longer than their retention: left out, and removed by the next live worker)",
            escape_line(&r.forgotten.join(", "))
        );
    }
}

fn print_worker_table(r: &WorkerReport) {
    if r.workers.is_empty() {
        return;
    }
    println!("  workers:    {}", r.workers.len());
    let mut table = Table::new(&["ID", "STATE", "SLOTS", "RUNNING", "LAST SEEN"]);
    let now = chrono::Utc::now();
    for w in &r.workers {
        let running: Vec<String> = w
            .record
            .running
            .iter()
            .map(|t| format!("{}:{}", crate::runs::short_id(&t.run.to_string()), t.step))
            .collect();
        let ago = now
            .signed_duration_since(w.record.last_seen)
            .num_seconds()
            .max(0);
        table.row([
            w.record.id.clone(),
            w.state().to_owned(),
            format!("{}/{}", w.record.running.len(), w.record.slots),
            if running.is_empty() {
                "-".to_owned()
            } else {
                running.join(", ")
            },
            format!("{ago}s ago"),
        ]);
    }
    for line in table.lines() {
        println!("    {line}");
    }
}
