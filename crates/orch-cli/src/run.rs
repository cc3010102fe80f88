//! `orch run FILE`: run a workflow with live progress, then print a table of its steps.

use crate::commands::{LoadError, limits, load, print_problems};
use crate::term::{Table, escape_line};
use crate::{ReadOptions, exit};
use orch_model::{ExecutionMode, OrchestrationError};
use orch_model::{Format, Limits, ValidWorkflow};
use orch_resources::ResourceManager;
use orch_tasks::{ActionRegistry, CacheKey, Event, ResultCache, RunOptions, run_workflow};
use orch_workflows::WorkflowManager;
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

/// What `orch run` runs: a definition, where, and for which project.
pub(crate) struct Target {
    pub(crate) wf: std::sync::Arc<ValidWorkflow>,
    work_dir: PathBuf,
    /// The project (its name and root) when the workflow is one of a project's.
    project: Option<(String, PathBuf, orch_model::Project)>,
}

/// The nearest directory at or above `dir` that holds a project file.
fn enclosing_project(dir: &Path) -> Option<(PathBuf, orch_model::Project)> {
    enclosing_project_for(dir, orch_engine::config::current_uid())
}

/// [`enclosing_project`] for the user `uid`: a project's metadata directory
/// counts only when that user owns it, as an enclosing home does (a
/// `.orch/project.json` planted in a shared directory such as `/tmp` must
/// not hand its workflows to whoever runs `orch run NAME` below it).
fn enclosing_project_for(dir: &Path, uid: Option<u32>) -> Option<(PathBuf, orch_model::Project)> {
    for d in dir.ancestors() {
        for sub in [
            orch_projects::PROJECT_DIR,
            orch_projects::LEGACY_PROJECT_DIR,
        ] {
            let meta = d.join(sub);
            let f = meta.join("project.json");
            if f.is_file()
                && orch_engine::config::owned_by(&meta, uid)
                && orch_engine::config::owned_by(&f, uid)
            {
                let p = std::fs::read_to_string(&f)
                    .ok()
                    .and_then(|t| serde_json::from_str::<orch_model::Project>(&t).ok())?;
                return Some((d.to_path_buf(), p));
            }
        }
    }
    None
}

/// A workflow of a project, by name.
fn project_workflow(
    root: &Path,
    project: orch_model::Project,
    name: &str,
    limits: &Limits,
) -> Result<Target, String> {
    let wm = WorkflowManager::builder(root.join(orch_projects::PROJECT_DIR).join("workflows"))
        .limits(limits.clone())
        .build()
        .map_err(|e| format!("orch: {e}"))?;
    let Some(wf) = wm.get_valid(name) else {
        // Every workflow the project's directory holds, not only those its
        // `project.json` lists: `orch run` finds them all.
        let names = wm.list_workflows();
        let mut msg = format!(
            "orch: project `{}` has no workflow `{name}`; its workflows: {}",
            project.name,
            if names.is_empty() {
                "none".to_owned()
            } else {
                names.join(", ")
            }
        );
        for p in wm.load_problems() {
            msg.push('\n');
            msg.push_str(&p);
        }
        return Err(msg);
    };
    Ok(Target {
        wf,
        work_dir: root.to_path_buf(),
        project: Some((project.name.clone(), root.to_path_buf(), project)),
    })
}

/// Whether `orch run`'s argument names a definition file (or `-`, standard
/// input) rather than a workflow: it exists, holds a `/`, or has a
/// definition's extension.
pub(crate) fn names_a_file(arg: &str) -> bool {
    let path = Path::new(arg);
    arg == "-" || path.exists() || arg.contains('/') || Format::from_path(path).is_some()
}

/// Resolves `orch run`'s argument: a file; else, by name, a workflow of the
/// project the current directory is in, then of the engine's workflows
/// directory (which includes the template workflows).
pub(crate) fn resolve(
    arg: &str,
    project: Option<&str>,
    read: &ReadOptions,
    limits: &Limits,
    engine: &orch_engine::OrchestrationEngine,
) -> Result<Target, u8> {
    let cwd = match std::env::current_dir() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("orch: cannot read the current directory: {e}");
            return Err(exit::INVALID);
        }
    };
    if let Some(pname) = project {
        let Some(p) = engine.project_manager().get_project(pname) else {
            eprintln!(
                "orch: {}",
                OrchestrationError::NotFound {
                    kind: orch_model::EntityKind::Project,
                    name: pname.to_owned(),
                    hint: Some(format!(
                        "known projects: {}",
                        engine.project_manager().list_projects().join(", ")
                    )),
                }
            );
            return Err(exit::INVALID);
        };
        let root = PathBuf::from(&p.path);
        return project_workflow(&root, p, arg, limits).map_err(|e| {
            eprintln!("{e}");
            exit::INVALID
        });
    }
    let path = Path::new(arg);
    if names_a_file(arg) {
        return match load(path, read, limits) {
            Ok(wf) => Ok(Target {
                wf: std::sync::Arc::new(wf),
                work_dir: cwd,
                project: None,
            }),
            Err(LoadError::File(msg)) => {
                eprintln!("{}", escape_line(&msg));
                Err(exit::INVALID)
            }
            Err(LoadError::Invalid(d)) => {
                print_problems(&d);
                Err(exit::INVALID)
            }
        };
    }
    if let Some((root, p)) = enclosing_project(&cwd) {
        if p.workflows.iter().any(|w| w == arg) {
            return project_workflow(&root, p, arg, limits).map_err(|e| {
                eprintln!("{e}");
                exit::INVALID
            });
        }
    }
    let wm = engine.workflow_manager();
    match wm.get_valid(arg) {
        Some(wf) => Ok(Target {
            wf,
            work_dir: cwd,
            project: None,
        }),
        None => {
            eprintln!(
                "orch: `{arg}` is neither a file nor a known workflow; workflows in {}: {}",
                wm.workflows_dir().display(),
                wm.list_workflows().join(", ")
            );
            for p in wm.load_problems() {
                eprintln!("{p}");
            }
            Err(exit::INVALID)
        }
    }
}

/// Runs `orch run` (and `orch project run`).
pub fn run(arg: &str, project: Option<&str>, read: &ReadOptions, args: &RunArgs) -> u8 {
    let limits = match limits(read) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("orch: {e}");
            return exit::INVALID;
        }
    };
    let mut params = match parse_params(&args.params) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("orch: {e}");
            return exit::INVALID;
        }
    };
    let mut registry = ActionRegistry::with_builtins();
    for m in &args.modules {
        let Some((name, program)) = m.split_once('=') else {
            eprintln!(
                "orch: --module `{m}`: expected NAME=PROGRAM, e.g. --module analysis=./analysis.py"
            );
            return exit::INVALID;
        };
        let ok = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !ok || program.is_empty() {
            eprintln!(
                "orch: --module `{m}`: NAME must be letters, digits, `_` or `-`, and PROGRAM must not be empty"
            );
            return exit::INVALID;
        }
        registry.register_module(
            name,
            std::sync::Arc::new(orch_tasks::External {
                program: program.into(),
                args: Vec::new(),
            }),
        );
    }
    // The engine resolves names and gives `workflow.run` its workflows.
    let engine = match crate::manage::engine_with(args.config.as_deref(), Some(registry)) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("{e}");
            return exit::INVALID;
        }
    };
    let target = match resolve(arg, project, read, &limits, &engine) {
        Ok(t) => t,
        Err(code) => return code,
    };
    let wf = target.wf.clone();
    let work_dir = target.work_dir.clone();
    let mut project_path = None;
    if let Some((_, root, p)) = &target.project {
        // The project's config gives the parameters it declares; -p wins.
        let declared = &wf.workflow().parameters;
        let mut merged = Map::new();
        if let Some(Value::Object(cfg)) = p
            .config
            .get("workflows")
            .and_then(|w| w.get(&wf.workflow().name))
        {
            for (k, v) in cfg {
                if declared.contains_key(k) {
                    merged.insert(k.clone(), v.clone());
                }
            }
        }
        merged.extend(params);
        params = merged;
        project_path = Some(root.display().to_string());
    }
    let project_name = target.project.as_ref().map(|(n, _, _)| n.clone());
    execute(
        &engine,
        Job {
            wf,
            params,
            work_dir,
            project_path,
            project_name,
            run_id: orch_model::RunId::new(),
            resume: None,
        },
        args,
    )
}

/// A resolved run: what, with which values, where.
pub(crate) struct Job {
    pub(crate) wf: std::sync::Arc<ValidWorkflow>,
    pub(crate) params: Map<String, Value>,
    pub(crate) work_dir: PathBuf,
    pub(crate) project_path: Option<String>,
    pub(crate) project_name: Option<String>,
    pub(crate) run_id: orch_model::RunId,
    pub(crate) resume: Option<Vec<orch_model::store::TaskRecord>>,
}

/// Runs a resolved workflow, recorded in the engine's store, with live
/// progress; prints the table (or JSON) and returns the exit code.
pub(crate) fn execute(engine: &orch_engine::OrchestrationEngine, job: Job, args: &RunArgs) -> u8 {
    let Job {
        wf,
        params,
        work_dir,
        project_path,
        project_name,
        run_id,
        resume,
    } = job;
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
    let resources = match &args.resources {
        Some(path) => match ResourceManager::load(path) {
            Ok(rm) => Some(std::sync::Arc::new(rm)),
            Err(e) => {
                eprintln!("orch: {e}");
                return exit::INVALID;
            }
        },
        None => None,
    };
    let cancel = tokio_util::sync::CancellationToken::new();
    let opts = RunOptions {
        mode: args.mode,
        max_parallel: args
            .max_parallel
            .or(engine.config().max_workers)
            .unwrap_or(4)
            .max(1),
        params,
        work_dir,
        run_id,
        run_timeout: args.timeout,
        project_path,
        store: Some(engine.store().clone()),
        resume,
        cancel: cancel.clone(),
        resources,
        cache: Some(std::sync::Arc::new(StoreCache {
            store: engine.store().clone(),
            read: !args.no_cache,
        })),
        ..RunOptions::default()
    };
    let total = wf.workflow().steps.len();
    let terminal = crate::reporter::progress_bar_wanted(
        std::io::stderr().is_terminal(),
        std::env::var_os("TERM").as_deref(),
    );
    let quiet = args.json;
    let result = runtime.block_on(async {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Event>();
        // SIGINT, SIGTERM and SIGHUP interrupt the run (see `crate::interrupt`).
        let (signals, grace) = (crate::interrupt::Signals::install(), opts.kill_grace);
        let printer = crate::reporter::spawn_printer(total, terminal, quiet, rx);
        // Driven as a task of its own (as `orch_tasks::drive` does): a step's
        // dependents start on the worker that finished it.
        let (run_wf, run_engine) = (wf.clone(), engine.clone());
        let report = crate::interrupt::run_until_signal(
            async move {
                run_workflow(
                    &run_wf,
                    run_engine.workflow_manager().registry(),
                    opts,
                    Some(tx),
                )
                .await
            },
            signals,
            grace,
        )
        .await;
        let _ = printer.await;
        report
    });
    let result = match result {
        Ok(r) => r,
        Err(received) => {
            let recorded = runtime
                .block_on(engine.store().get_run(run_id))
                .is_ok_and(|r| r.is_some());
            return crate::interrupt::report(received, run_id, recorded, args.json);
        }
    };
    if let Some(name) = &project_name {
        let pm = engine.project_manager();
        if pm.get_project(name).is_some() {
            if let Err(e) = pm.record_workflow_run(name, &wf.workflow().name, result.as_ref().ok())
            {
                eprintln!("orch: note: the run was not counted in project `{name}`'s metrics: {e}");
            }
        }
    }
    match result {
        Ok(report) => {
            crate::reporter::print_report(&report, args.json);
            if report.succeeded() {
                exit::OK
            } else {
                exit::FAILED
            }
        }
        Err(e) => {
            eprintln!("orch: {}", escape_line(&first_line(&e)));
            if let OrchestrationError::Validation(d) = &e {
                for line in d.lines().skip(1) {
                    eprintln!("{}", escape_line(&line));
                }
            }
            // The store could not be read or written (a full disk, a deleted
            // database): an I/O failure, not bad input.
            match e {
                OrchestrationError::Io { .. } | OrchestrationError::Store { .. } => exit::FAILED,
                _ => exit::INVALID,
            }
        }
    }
}

/// The result cache of `orch run`: the store's cache entries (looked up
/// from the scheduler's thread, which may block briefly), optionally
/// write-only (`--no-cache`).
#[derive(Debug)]
struct StoreCache {
    store: std::sync::Arc<dyn orch_model::Store>,
    read: bool,
}

impl StoreCache {
    fn wait<T>(&self, f: impl std::future::Future<Output = T>) -> T {
        tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(f))
    }
}

impl ResultCache for StoreCache {
    fn get(&self, key: &CacheKey) -> Option<Value> {
        if !self.read {
            return None;
        }
        self.wait(self.store.cache_get(&key.to_string()))
            .ok()
            .flatten()
            .map(|e| e.value)
    }
    fn put(&self, key: &CacheKey, value: &Value) {
        let entry = orch_model::store::CacheEntry {
            key: key.to_string(),
            value: value.clone(),
            created_at: chrono::Utc::now(),
        };
        // A cache that cannot be written only costs a later re-run.
        let _ = self.wait(self.store.cache_put(entry));
    }
    fn list(&self) -> Vec<(CacheKey, u64)> {
        self.wait(self.store.cache_list())
            .unwrap_or_default()
            .into_iter()
            .filter_map(|e| CacheKey::parse(&e.key).map(|k| (k, e.value.to_string().len() as u64)))
            .collect()
    }
    fn clear(&self) -> usize {
        self.wait(self.store.cache_clear()).unwrap_or(0)
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
    fn an_enclosing_project_counts_only_when_the_user_owns_it() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let meta = dir.path().join(orch_projects::PROJECT_DIR);
        std::fs::create_dir_all(dir.path().join("sub/deeper")).expect("mkdir");
        std::fs::create_dir_all(&meta).expect("mkdir");
        let project = orch_model::Project {
            name: "planted".into(),
            path: dir.path().display().to_string(),
            ..orch_model::Project::default()
        };
        std::fs::write(
            meta.join("project.json"),
            serde_json::to_string(&project).expect("json"),
        )
        .expect("write");
        let owner = std::fs::metadata(&meta).expect("meta").uid();
        let below = dir.path().join("sub/deeper");
        let found = enclosing_project_for(&below, Some(owner)).expect("the owner's project");
        assert_eq!(found.0, dir.path());
        assert_eq!(found.1.name, "planted");
        assert!(
            enclosing_project_for(&below, Some(owner.wrapping_add(1))).is_none(),
            "another user's project directory must not be used"
        );
    }

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
