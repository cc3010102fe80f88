//! `orch run FILE`: run a workflow with live progress, then print a table of its steps.

use crate::commands::{LoadError, limits, load, print_problems};
use crate::term::{Table, escape_line};
use crate::{ReadOptions, exit};
use orch_engine::{OrchestrationEngine, ResourceManager, RunRequest, RunTarget};
use orch_model::{EntityKind, ExecutionMode, Format, OrchestrationError};
use serde_json::{Map, Value, json};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Options of `orch run`.
#[derive(Debug, Clone)]
pub struct RunArgs {
    /// `-p key=value` pairs.
    pub params: Vec<String>,
    /// The execution mode.
    pub mode: ExecutionMode,
    /// Most steps at once in parallel mode; `None`: the config's
    /// `max_workers` (or `ORCH_MAX_WORKERS`), else 4.
    pub max_parallel: Option<usize>,
    /// Ignore cached results (still store new ones).
    pub no_cache: bool,
    /// External modules, `NAME=PROGRAM`.
    pub modules: Vec<String>,
    /// A resources file for `resource_aware` mode.
    pub resources: Option<std::path::PathBuf>,
    /// Limit on the whole run.
    pub timeout: Option<Duration>,
    /// Machine-readable output.
    pub json: bool,
    /// The engine's config file (for resolving workflow and project names).
    pub config: Option<PathBuf>,
    /// Submit the run for the store's workers and print its id at once.
    pub detach: bool,
    /// The run's cancel grace (`--cancel-grace`).
    pub cancel_grace: Option<Duration>,
}

impl RunArgs {
    /// The arguments of a command that goes on with a recorded run
    /// (`orch resume`, `orch retry`): its parameters, modules and cache
    /// choice come from the run itself; only these may be given again.
    pub fn of_recorded_run(
        mode: ExecutionMode,
        max_parallel: Option<usize>,
        timeout: Option<Duration>,
        json: bool,
        config: Option<PathBuf>,
    ) -> Self {
        Self {
            params: Vec::new(),
            mode,
            max_parallel,
            no_cache: false,
            modules: Vec::new(),
            resources: None,
            timeout,
            json,
            config,
            detach: false,
            cancel_grace: None,
        }
    }
}

/// `key=value`: the value is JSON when it parses as JSON (numbers, booleans,
/// lists, quoted strings), otherwise the text itself.
fn parse_params(pairs: &[String]) -> Result<Map<String, Value>, String> {
    let mut out = Map::new();
    for kv in pairs {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| format!("-p `{kv}`: expected KEY=VALUE, e.g. -p code_path=./src"))?;
        let k = k.trim();
        if k.is_empty() {
            return Err(format!("-p `{kv}`: the parameter name is empty"));
        }
        let value =
            serde_json::from_str::<Value>(v).unwrap_or_else(|_| Value::String(v.to_owned()));
        out.insert(k.to_owned(), value);
    }
    Ok(out)
}

/// Whether `orch run`'s argument names a definition file (or `-`, standard
/// input) rather than a workflow: it exists, holds a `/`, or has a
/// definition's extension.
pub(crate) fn names_a_file(arg: &str) -> bool {
    let path = Path::new(arg);
    arg == "-" || path.exists() || arg.contains('/') || Format::from_path(path).is_some()
}

/// Runs `orch run` (and `orch project run`): a file is read here (with
/// the reading options and their exact error output); a name, a project's
/// workflow and everything else is the engine's to resolve.
pub fn run(arg: &str, project: Option<&str>, read: &ReadOptions, args: &RunArgs) -> u8 {
    let limits = match limits(read) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("orch: {e}");
            return exit::INVALID;
        }
    };
    let params = match parse_params(&args.params) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("orch: {e}");
            return exit::INVALID;
        }
    };
    let registry = match crate::worker::registry_with_modules(&args.modules) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{e}");
            return exit::INVALID;
        }
    };
    // The engine resolves names and gives `workflow.run` its workflows.
    let engine = match crate::manage::engine_with(args.config.as_deref(), Some(registry)) {
        Ok(e) => e,
        Err(f) => return f.report(),
    };
    let cwd = match std::env::current_dir() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("orch: cannot read the current directory: {e}");
            return exit::INVALID;
        }
    };
    let target = match project {
        Some(p) => RunTarget::Project {
            project: p.to_owned(),
            workflow: arg.to_owned(),
        },
        None if names_a_file(arg) => match load(
            Path::new(arg),
            read,
            &limits,
            Some(&engine.action_catalog()),
        ) {
            Ok(wf) => RunTarget::Valid(std::sync::Arc::new(wf)),
            Err(LoadError::File(msg)) => {
                eprintln!("{}", escape_line(&msg));
                return exit::INVALID;
            }
            Err(LoadError::Invalid(d)) => {
                print_problems(&d);
                return exit::INVALID;
            }
        },
        None => RunTarget::Name(arg.to_owned()),
    };
    let mut req = RunRequest::new(target).params(params);
    req.work_dir = Some(cwd);
    execute(&engine, req, args)
}

/// Starts a run through the engine with live progress, prints the table
/// (or JSON) and returns the exit code.
pub(crate) fn execute(engine: &OrchestrationEngine, mut req: RunRequest, args: &RunArgs) -> u8 {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("orch: cannot start the runtime: {e}");
            return exit::INTERNAL;
        }
    };
    if let Some(path) = &args.resources {
        match ResourceManager::load(path) {
            Ok(rm) => req.resources = Some(std::sync::Arc::new(rm)),
            Err(e) => {
                eprintln!("orch: {e}");
                return exit::INVALID;
            }
        }
    }
    req.mode = Some(args.mode);
    req.max_parallel = args.max_parallel;
    req.run_timeout = args.timeout;
    req.cancel_grace = args.cancel_grace;
    req.no_cache = args.no_cache;
    req.detach = args.detach;
    if args.detach && !engine.store().capabilities().durable {
        eprintln!(
            "orch: --detach: the store {} lives in this process only, so no worker could run the run; use --store sqlite://PATH (workers on this machine) or postgres://...",
            engine.store_url()
        );
        return exit::INVALID;
    }
    if args.detach {
        // Its events only for a wait for a concurrency slot, told at once.
        req.events = true;
        return match runtime.block_on(engine.run(req)) {
            Ok(mut handle) => {
                if let Some(mut rx) = handle.events() {
                    while let Ok(e) = rx.try_recv() {
                        match crate::reporter::notice_line(&e) {
                            Some(line) if !args.json && !crate::telemetry::quiet() => {
                                eprintln!("{line}");
                            }
                            _ => {}
                        }
                    }
                }
                // Dropping the handle stops following; the run is the workers'.
                let id = handle.run_id();
                if args.json {
                    println!("{}", json!({"run_id": id, "status": "submitted"}));
                } else {
                    println!("{id}");
                }
                exit::OK
            }
            Err(e) => run_error(&e),
        };
    }
    req.events = true;
    // Log lines (-v) would garble a bar: they get the plain lines instead.
    let terminal = crate::reporter::progress_bar_wanted(
        std::io::stderr().is_terminal(),
        std::env::var_os("TERM").as_deref(),
    ) && !crate::telemetry::verbose();
    let quiet = args.json || crate::telemetry::quiet();
    // Processes get this long between SIGTERM and SIGKILL when a signal stops the run.
    let grace = Duration::from_secs(2);
    let started = runtime.block_on(engine.run(req));
    let mut handle = match started {
        Ok(h) => h,
        Err(e) => return run_error(&e),
    };
    let run_id = handle.run_id();
    if let Some(info) = handle.resumed() {
        if !quiet {
            say_resumed(run_id, &handle.workflow().workflow().name, info);
        }
    }
    let wf = handle.workflow().clone();
    let total = wf.workflow().steps.len();
    // A run submitted to the store's workers goes on without this process:
    // the engine submits every new run on a store shared across machines
    // (`distributed_claim`), and never a resumed one.
    let submitted = handle.resumed().is_none() && engine.store().capabilities().distributed_claim;
    let result = runtime.block_on(async {
        // SIGINT, SIGTERM and SIGHUP interrupt the run (see `crate::interrupt`).
        let signals = crate::interrupt::Signals::install();
        let printer = handle
            .events()
            .map(|rx| crate::reporter::spawn_printer(total, terminal, quiet, rx));
        let report =
            crate::interrupt::run_until_signal(handle.report(), signals, grace, submitted).await;
        if let Some(p) = printer {
            let _ = p.await;
        }
        report
    });
    let result = match result {
        Ok(r) => r,
        Err(received) if submitted => {
            return crate::interrupt::report_submitted(received, run_id, args.json);
        }
        Err(received) => {
            let recorded = runtime
                .block_on(engine.store().get_run(run_id))
                .is_ok_and(|r| r.is_some());
            return crate::interrupt::report(received, run_id, recorded, args.json);
        }
    };
    match result {
        Ok(report) => {
            // The items of fan-outs over lists known at run time, as steps.
            let report = runtime.block_on(orch_engine::report_with_items(
                engine.store().as_ref(),
                report,
            ));
            crate::reporter::print_report(&report, &wf, args.json);
            if report.succeeded() {
                exit::OK
            } else {
                exit::FAILED
            }
        }
        Err(e) => run_error(&e),
    }
}

/// What a resumed run had done, on standard error.
fn say_resumed(run_id: orch_model::RunId, workflow: &str, info: &orch_engine::ResumeInfo) {
    if let Some(old) = info.retry_of {
        eprintln!(
            "orch: retrying run {old} of `{workflow}` as run {run_id}: {} of {} kept (completed), the others run again",
            info.done,
            crate::reporter::steps(info.total)
        );
        return;
    }
    if info.orphans_stopped > 0 {
        eprintln!(
            "orch: stopped {} process(es) left running by run {run_id}'s previous orch",
            info.orphans_stopped
        );
    }
    if !info.superseded.is_empty() {
        let ids: Vec<String> = info.superseded.iter().map(ToString::to_string).collect();
        eprintln!(
            "orch: cancelled {} interrupted sub-workflow run(s) of run {run_id} ({}); its steps start new ones",
            info.superseded.len(),
            ids.join(", ")
        );
    }
    if let Some(e) = &info.supersede_error {
        eprintln!(
            "orch: note: the interrupted sub-workflow runs of run {run_id} could not be cancelled ({e}); they stay listed as interrupted"
        );
    }
    eprintln!(
        "orch: resuming run {run_id} of `{workflow}`: {} of {} done, {} interrupted (they run again)",
        info.done,
        crate::reporter::steps(info.total),
        info.interrupted
    );
}

/// Prints why a run could not start or be recorded, and returns its exit code.
pub(crate) fn run_error(e: &OrchestrationError) -> u8 {
    match e {
        OrchestrationError::NotFound {
            kind: EntityKind::Workflow,
            name,
            hint: Some(hint),
        } if hint.starts_with("workflows in ") => {
            eprintln!("orch: `{name}` is neither a file nor a known workflow; {hint}");
        }
        OrchestrationError::NotFound {
            kind: EntityKind::Workflow,
            hint: Some(hint),
            ..
        } if hint.starts_with("project `") => eprintln!("orch: {hint}"),
        OrchestrationError::InvalidState { message } => {
            for line in message.lines() {
                eprintln!("orch: {}", escape_line(line));
            }
        }
        _ => {
            eprintln!("orch: {}", escape_line(&first_line(e)));
            if let OrchestrationError::Validation(d) = e {
                for line in d.lines().skip(1) {
                    eprintln!("{}", escape_line(&line));
                }
            }
        }
    }
    // The store could not be read or written (a full disk, a deleted
    // database): an I/O failure, not bad input.
    match e {
        OrchestrationError::Io { .. } | OrchestrationError::Store { .. } => exit::FAILED,
        _ => exit::INVALID,
    }
}

/// Runs `orch resources`.
pub fn resources(file: Option<&Path>, json_out: bool) -> u8 {
    let rm = match file {
        Some(p) => match ResourceManager::load(p) {
            Ok(rm) => rm,
            Err(e) => {
                eprintln!("orch: {e}");
                return exit::INVALID;
            }
        },
        None => ResourceManager::detect(),
    };
    let list = rm.list_resources();
    if json_out {
        println!(
            "{}",
            json!({"resources": list, "usage": rm.get_resource_usage(None)})
        );
        return exit::OK;
    }
    let fmt_map = |m: &std::collections::BTreeMap<String, f64>| {
        m.iter()
            .map(|(k, v)| format!("{k}={}", (v * 100.0).round() / 100.0))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut table = Table::new(&["ID", "TYPE", "STATUS", "CAPACITY", "ALLOCATED"]);
    for r in &list {
        table.row([
            r.id.clone(),
            r.resource_type.as_str().to_owned(),
            r.status.as_str().to_owned(),
            fmt_map(&r.capacity),
            if r.allocated.is_empty() {
                "-".to_owned()
            } else {
                fmt_map(&r.allocated)
            },
        ]);
    }
    table.print();
    exit::OK
}

fn first_line(e: &OrchestrationError) -> String {
    match e {
        OrchestrationError::Validation(d) => d.lines().next().unwrap_or_default(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_are_json_when_they_parse_and_text_otherwise() {
        let p = parse_params(&[
            "n=3".into(),
            "path=./src".into(),
            "flag=true".into(),
            "s=\"5\"".into(),
            "e=".into(),
        ])
        .expect("parse");
        assert_eq!(
            Value::Object(p),
            json!({"n": 3, "path": "./src", "flag": true, "s": "5", "e": ""})
        );
        assert!(parse_params(&["novalue".into()]).is_err());
        assert!(parse_params(&["=x".into()]).is_err());
    }
}
