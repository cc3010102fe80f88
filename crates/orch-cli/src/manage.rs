//! `orch templates`, `orch project ...`, `orch status`, `orch health`: the engine's view.

use crate::exit;
use crate::term::{Table, escape_line};
use orch_engine::OrchestrationEngine;
use orch_engine::{ActionRegistry, CreateOptions, OpenOptions, StoreRegistry};
use orch_model::{ErrorCode, OrchestrationError};
use serde_json::Value;
use std::path::Path;
use std::sync::Arc;

/// Why a command cannot go on: its one-line message (`orch: ...`) and the
/// exit code it ends with.
#[derive(Debug)]
pub struct Failure {
    message: String,
    code: u8,
}

impl Failure {
    /// Bad input (exit 2): `message` is printed as it is.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            code: exit::INVALID,
        }
    }

    /// `e` while using the store: the store's failure (unreachable, a
    /// full disk, a deleted database) or another I/O failure is exit 1,
    /// the rest (a run not found, ...) is bad input, exit 2.
    pub fn of(e: &OrchestrationError) -> Self {
        Self {
            message: format!("orch: {e}"),
            code: match e {
                OrchestrationError::Store { .. } | OrchestrationError::Io { .. } => exit::FAILED,
                _ => exit::INVALID,
            },
        }
    }

    /// `e` while building the engine: a store that cannot be reached or
    /// opened is exit 1; a bad configuration, store URL (an unknown scheme,
    /// a malformed URL or option) or file that cannot be read is exit 2.
    fn opening(e: &OrchestrationError) -> Self {
        Self {
            message: format!("orch: {e}"),
            code: if matches!(e, OrchestrationError::Store { .. }) {
                exit::FAILED
            } else {
                exit::INVALID
            },
        }
    }

    /// Prints the message; the exit code.
    pub fn report(&self) -> u8 {
        eprintln!("{}", self.message);
        self.code
    }
}

/// The engine from `--config` (or `$ORCH_CONFIG`) and the environment.
///
/// # Errors
/// One printable line and its exit code.
pub fn engine(config: Option<&Path>) -> Result<OrchestrationEngine, Failure> {
    engine_with(config, None)
}

/// The store URL given with `--store`, which wins over `ORCH_STORE_URL` and the config.
pub static STORE_URL: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// [`engine`] with a registry of actions (built-ins plus `--module`s).
///
/// # Errors
/// One printable line and its exit code.
pub fn engine_with(
    config: Option<&Path>,
    registry: Option<ActionRegistry>,
) -> Result<OrchestrationEngine, Failure> {
    build(config, registry, None)
}

/// [`engine`] for a command that only reads: its store is opened
/// read-only (no file or table created, no migration, nothing written, no
/// write lock taken). A store nothing was written to yet (an SQLite file
/// that does not exist, a PostgreSQL schema without orch's tables) is an
/// empty one.
///
/// # Errors
/// As [`engine`].
pub fn engine_read_only(config: Option<&Path>) -> Result<OrchestrationEngine, Failure> {
    build(config, None, Some(read_only_stores()))
}

fn build(
    config: Option<&Path>,
    registry: Option<ActionRegistry>,
    stores: Option<StoreRegistry>,
) -> Result<OrchestrationEngine, Failure> {
    let from_env = std::env::var_os("ORCH_CONFIG").map(std::path::PathBuf::from);
    let mut cfg = match config.map(Path::to_path_buf).or(from_env) {
        Some(path) => orch_engine::EngineConfig::from_file(&path)
            .map_err(|e| Failure::invalid(format!("orch: {e}")))?,
        None => orch_engine::EngineConfig::default(),
    };
    if let Some(url) = STORE_URL.get() {
        cfg.store_url = Some(url.clone());
    }
    let mut b = OrchestrationEngine::builder().config(cfg).from_env();
    if let Some(r) = registry {
        b = b.registry(r);
    }
    if let Some(s) = stores {
        b = b.stores(s);
    }
    b.build().map_err(|e| Failure::opening(&e))
}

/// The schemes of [`StoreRegistry::default`], each opening its stores
/// read-only.
fn read_only_stores() -> StoreRegistry {
    let mut ro = StoreRegistry::empty();
    for scheme in StoreRegistry::default().schemes() {
        ro.register(
            scheme,
            Arc::new(|url: &str, _: OpenOptions| {
                match orch_engine::open_store_read_only(url) {
                    // What a writer would create first (as SQLite's
                    // read-only opening of a missing file): an empty store.
                    Err(e) if not_created(&e) => orch_engine::open_store("memory://"),
                    other => other,
                }
            }),
        );
    }
    ro
}

/// Whether `e` is a read-only opening's answer for a PostgreSQL schema
/// that has no orch tables yet (nothing was ever written there).
fn not_created(e: &OrchestrationError) -> bool {
    matches!(e, OrchestrationError::Store { message, .. } if message.contains("has no orch tables yet"))
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
    ($engine:expr) => {
        match $engine {
            Ok(e) => e,
            Err(f) => return f.report(),
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
    let engine = engine_or_exit!(engine_read_only(config));
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
    let engine = engine_or_exit!(engine(config));
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
    let engine = engine_or_exit!(engine_read_only(config));
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
    let engine = engine_or_exit!(engine_read_only(config));
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
    let engine = engine_or_exit!(engine(config));
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
    let engine = engine_or_exit!(engine(config));
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
    let engine = engine_or_exit!(engine_read_only(config));
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
    let engine = engine_or_exit!(engine_read_only(config));
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
