//! `orch templates`, `orch project ...`, `orch status`, `orch health`: the engine's view.

use crate::exit;
use crate::term::{Table, escape_line};
use orch_engine::OrchestrationEngine;
use orch_engine::{ActionRegistry, CreateOptions};
use orch_model::{ErrorCode, OrchestrationError};
use serde_json::Value;
use std::path::Path;

/// The engine from `--config` (or `$ORCH_CONFIG`) and the environment.
///
/// # Errors
/// One printable line.
pub fn engine(config: Option<&Path>) -> Result<OrchestrationEngine, String> {
    engine_with(config, None)
}

/// The store URL given with `--store`, which wins over `ORCH_STORE_URL` and the config.
pub static STORE_URL: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// [`engine`] with a registry of actions (built-ins plus `--module`s).
///
/// # Errors
/// One printable line.
pub fn engine_with(
    config: Option<&Path>,
    registry: Option<ActionRegistry>,
) -> Result<OrchestrationEngine, String> {
    let from_env = std::env::var_os("ORCH_CONFIG").map(std::path::PathBuf::from);
    let mut cfg = match config.map(Path::to_path_buf).or(from_env) {
        Some(path) => {
            orch_engine::EngineConfig::from_file(&path).map_err(|e| format!("orch: {e}"))?
        }
        None => orch_engine::EngineConfig::default(),
    };
    if let Some(url) = STORE_URL.get() {
        cfg.store_url = Some(url.clone());
    }
    let mut b = OrchestrationEngine::builder().config(cfg).from_env();
    if let Some(r) = registry {
        b = b.registry(r);
    }
    b.build().map_err(|e| format!("orch: {e}"))
}

/// The exit code for an error: 2 when the input was wrong, 1 otherwise.
fn code_for(e: &OrchestrationError) -> u8 {
    match e.error_code() {
        ErrorCode::IoError
        | ErrorCode::StoreError
        | ErrorCode::WorkflowFailed
        | ErrorCode::TaskFailed
        | ErrorCode::ProjectError => exit::FAILED,
        _ => exit::INVALID,
    }
}

fn fail(e: &OrchestrationError) -> u8 {
    let msg = e.to_string();
    eprintln!("orch: {msg}");
    // A hint the message already carries (`...; known projects: a, b`) is not repeated.
    for s in e
        .suggestions()
        .iter()
        .filter(|s| !msg.contains(s.as_str()))
        .take(1)
    {
        eprintln!("  hint: {s}");
    }
    code_for(e)
}

macro_rules! engine_or_exit {
    ($config:expr) => {
        match engine($config) {
            Ok(e) => e,
            Err(msg) => {
                eprintln!("{msg}");
                return exit::INVALID;
            }
        }
    };
}

/// The multi-threaded runtime a long-running command (`serve`, `worker`,
/// `mcp`) runs on; `Err` is the exit code after the reason was printed.
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, u8> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("orch: cannot start the runtime: {e}");
            exit::INTERNAL
        })
}

fn pretty(v: &impl serde::Serialize) -> String {
    serde_json::to_string_pretty(v).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}

/// `orch templates`.
pub fn templates(config: Option<&Path>, json_out: bool) -> u8 {
    let engine = engine_or_exit!(config);
    let pm = engine.project_manager();
    let list: Vec<_> = pm
        .list_templates()
        .into_iter()
        .filter_map(|n| pm.get_template(&n))
        .collect();
    if json_out {
        println!("{}", pretty(&list));
        return exit::OK;
    }
    let mut table = Table::new(&["NAME", "TYPE", "WORKFLOWS", "DESCRIPTION"]);
    for t in &list {
        table.row([
            t.name.clone(),
            t.project_type.as_str().to_owned(),
            t.workflows.join(", "),
            t.description.clone(),
        ]);
    }
    table.print();
    for p in pm
        .load_problems()
        .iter()
        .filter(|p| p.starts_with("template"))
    {
        eprintln!("orch: note: {p}");
    }
    exit::OK
}

/// `orch project new`.
pub fn project_new(
    config: Option<&Path>,
    name: &str,
    template: &str,
    path: Option<&Path>,
    options: CreateOptions,
) -> u8 {
    let engine = engine_or_exit!(config);
    // `custom` is an empty project unless a user template has that name.
    let template = (template != "custom"
        || engine.project_manager().get_template("custom").is_some())
    .then_some(template);
    match engine
        .project_manager()
        .create_project(name, template, path, options)
    {
        Ok(p) => {
            println!(
                "created project `{}` ({}) at {}",
                p.name,
                p.project_type.as_str(),
                p.path
            );
            for w in &p.workflows {
                println!("  run its `{w}` workflow: orch project run {} {w}", p.name);
            }
            exit::OK
        }
        Err(e) => fail(&e),
    }
}

/// `orch project list`.
pub fn project_list(config: Option<&Path>, json_out: bool) -> u8 {
    let engine = engine_or_exit!(config);
    let pm = engine.project_manager();
    let list: Vec<_> = pm
        .list_projects()
        .into_iter()
        .filter_map(|n| pm.get_project(&n))
        .collect();
    if json_out {
        println!("{}", pretty(&list));
        return exit::OK;
    }
    let mut table = Table::new(&["NAME", "TYPE", "STATUS", "PATH"]);
    for p in &list {
        table.row([
            p.name.clone(),
            p.project_type.as_str().to_owned(),
            p.status.as_str().to_owned(),
            p.path.clone(),
        ]);
    }
    table.print();
    if list.is_empty() {
        println!(
            "(no projects in {}; create one with `orch project new NAME --template ai_analysis`)",
            pm.projects_dir().display()
        );
    }
    exit::OK
}

/// `orch project status`.
pub fn project_status(config: Option<&Path>, name: &str, json_out: bool) -> u8 {
    let engine = engine_or_exit!(config);
    let pm = engine.project_manager();
    let Some(s) = pm.get_project_status(name) else {
        return fail(&OrchestrationError::NotFound {
            kind: orch_model::EntityKind::Project,
            name: name.to_owned(),
            hint: Some(match pm.list_projects() {
                known if known.is_empty() => {
                    "there are no projects yet; create one with `orch project new NAME --template ai_analysis`".to_owned()
                }
                known => format!("known projects: {}", known.join(", ")),
            }),
        });
    };
    if json_out {
        println!("{}", pretty(&s));
        return exit::OK;
    }
    println!(
        "{} ({}, {})",
        s.name,
        s.project_type.as_str(),
        s.status.as_str()
    );
    println!("  path:       {}", s.path);
    println!("  version:    {}", s.version);
    println!(
        "  workflows:  {} ({} running)",
        s.workflows, s.active_workflows
    );
    println!("  created:    {}", s.created_at.to_rfc3339());
    println!("  updated:    {}", s.updated_at.to_rfc3339());
    println!("  milestones: {}", Value::Object(s.milestones));
    println!("  metrics:    {}", Value::Object(s.metrics));
    exit::OK
}

/// `orch project milestone`.
pub fn project_milestone(config: Option<&Path>, name: &str, key: &str, data: &str) -> u8 {
    let value: Value = match serde_json::from_str(data) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("orch: --data is not JSON ({e}); e.g. --data '{{\"quality_score\": 8.5}}'");
            return exit::INVALID;
        }
    };
    let engine = engine_or_exit!(config);
    match engine
        .project_manager()
        .add_project_milestone(name, key, &value)
    {
        Ok(p) => {
            println!("recorded milestone `{key}` of project `{}`", p.name);
            exit::OK
        }
        Err(e) => fail(&e),
    }
}

/// `orch project archive`.
pub fn project_archive(config: Option<&Path>, name: &str, output: Option<&Path>) -> u8 {
    let engine = engine_or_exit!(config);
    match engine.project_manager().archive_project(name, output) {
        Ok(path) => {
            println!("archived project `{name}` to {}", path.display());
            exit::OK
        }
        Err(e) => fail(&e),
    }
}

/// `orch status`.
pub fn status(config: Option<&Path>, json_out: bool) -> u8 {
    let engine = engine_or_exit!(config);
    let s = engine.get_system_status();
    let workers = crate::worker::report(&engine);
    let schedules = crate::schedule::for_status(&engine);
    if json_out {
        let mut v = crate::worker::with_workers(&s, &workers);
        schedules.add_to(&mut v);
        println!("{}", pretty(&v));
        return exit::OK;
    }
    println!("orch status at {}", s.timestamp.to_rfc3339());
    println!(
        "  workflows:  {} defined in {}",
        s.workflow_manager.total_workflows,
        engine.workflow_manager().workflows_dir().display()
    );
    println!(
        "  projects:   {} in {} (templates: {})",
        s.project_manager.summary.total_projects,
        engine.project_manager().projects_dir().display(),
        engine.project_manager().list_templates().join(", ")
    );
    println!(
        "  resources:  {} ({} allocations)",
        s.resource_manager.total_resources, s.resource_manager.total_allocations
    );
    let mut table = Table::new(&["ID", "TYPE", "CAPACITY"]);
    for r in engine.resource_manager().list_resources() {
        let cap: Vec<String> = r
            .capacity
            .iter()
            .map(|(k, v)| format!("{k}={}", (v * 100.0).round() / 100.0))
            .collect();
        table.row([
            r.id.clone(),
            r.resource_type.as_str().to_owned(),
            cap.join(", "),
        ]);
    }
    for line in table.lines() {
        println!("    {line}");
    }
    crate::worker::print_workers(&workers);
    schedules.print();
    exit::OK
}

/// One `issue:` of `orch health`; the lines of a problem of several lines
/// (a definition's diagnostics) are indented under it.
fn print_issue(issue: &str) {
    let mut lines = issue.lines();
    if let Some(first) = lines.next() {
        println!("  issue: {}", escape_line(first));
    }
    for line in lines {
        println!("         {}", escape_line(line));
    }
}

/// `orch health`: exit 0 when healthy, 1 when degraded or unhealthy.
pub fn health(config: Option<&Path>, json_out: bool) -> u8 {
    let engine = engine_or_exit!(config);
    let workers = crate::worker::report(&engine);
    let h = crate::worker::health_with_workers(engine.health_check(), &workers);
    if json_out {
        println!("{}", pretty(&crate::worker::with_workers(&h, &workers)));
    } else {
        println!("overall: {}", h.overall_status);
        let c = &h.components;
        for (name, comp) in [
            ("workflow_manager", &c.workflow_manager),
            ("task_orchestrator", &c.task_orchestrator),
            ("project_manager", &c.project_manager),
            ("resource_manager", &c.resource_manager),
        ] {
            println!("  {name:<18} {}", comp.status);
        }
        for i in &h.issues {
            print_issue(i);
        }
        crate::worker::print_workers(&workers);
    }
    if h.overall_status.is_healthy() {
        exit::OK
    } else {
        exit::FAILED
    }
}
