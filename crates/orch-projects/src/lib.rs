//! `orch-projects`: the `ProjectManager` (layer L4): projects from templates, created safely; milestones, metrics, archives.
//!
//! A project is a directory with `.orch/project.json` (the seed's
//! `.codomyrmex/project.json` is read too). [`ProjectManager::create_project`]
//! builds the whole tree (directories, documentation, the template's
//! workflows, the project file) in a temporary directory beside the target
//! and renames it into place, so a failure leaves nothing behind. Paths from
//! templates are checked (no `..`, nothing absolute), links are never
//! followed or copied, and nothing from a template runs.
//!
//! ```
//! use orch_projects::{CreateOptions, ProjectManager};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let pm = ProjectManager::builder(dir.path().join("projects")).build().unwrap();
//! let p = pm.create_project("chatbot-analysis", Some("ai_analysis"), None, CreateOptions {
//!     description: "AI analysis of chatbot conversations".into(),
//!     ..CreateOptions::default()
//! }).unwrap();
//! assert!(dir.path().join("projects/chatbot-analysis/src/README.md").is_file());
//! assert_eq!(p.workflows, vec!["ai-analysis", "build-and-test"]);
//!
//! let rt = tokio::runtime::Runtime::new().unwrap();
//! let report = rt.block_on(pm.execute_project_workflow("chatbot-analysis", "ai-analysis", Default::default())).unwrap();
//! assert!(report.succeeded());
//! assert!(dir.path().join("projects/chatbot-analysis/reports/analysis.md").is_file());
//! ```

mod docs;
pub mod template;

pub use template::{DocumentationConfig, ProjectTemplate};

use chrono::{DateTime, Utc};
use orch_model::definition::{NameKind, check_name};
use orch_model::{
    EntityKind, Limits, OrchestrationError, Project, ProjectStatus, ProjectType, WorkflowStatus,
};
use orch_tasks::confined::{EntryKind, Root};
use orch_tasks::{ActionRegistry, RunReport};
use orch_workflows::{ExecuteOptions, WorkflowManager};
use serde::Serialize;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use template::{Templates, load_templates, safe_relative};

/// Where a project keeps its own files, under its root.
pub const PROJECT_DIR: &str = ".orch";
/// The original's name for it, still read.
pub const LEGACY_PROJECT_DIR: &str = ".codomyrmex";
/// The file in `projects_dir` that remembers projects created elsewhere.
const REGISTRY_FILE: &str = ".orch-projects.json";

/// The optional fields of a new project (seed: `create_project`'s keyword arguments).
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    /// What the project is.
    pub description: String,
    /// Who makes it.
    pub author: String,
    /// Free-form tags.
    pub tags: Vec<String>,
}

/// A project's status (seed: `get_project_status`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProjectStatusReport {
    /// Its name.
    pub name: String,
    /// Its life-cycle state.
    pub status: ProjectStatus,
    /// Its kind.
    #[serde(rename = "type")]
    pub project_type: ProjectType,
    /// Its version.
    pub version: String,
    /// Its directory.
    pub path: String,
    /// How many workflows it has.
    pub workflows: usize,
    /// How many of them run now.
    pub active_workflows: usize,
    /// Modules its workflows need.
    pub required_modules: Vec<String>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
    /// Its milestones.
    pub milestones: Map<String, Value>,
    /// Its metrics.
    pub metrics: Map<String, Value>,
}

/// One line of `recent_activity` in [`ProjectsSummary`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Activity {
    /// The project.
    pub name: String,
    /// Its state.
    pub status: ProjectStatus,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

/// All projects at a glance (seed: `get_projects_summary`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProjectsSummary {
    /// How many projects there are.
    pub total_projects: usize,
    /// Counts by status.
    pub by_status: BTreeMap<String, usize>,
    /// Counts by type.
    pub by_type: BTreeMap<String, usize>,
    /// The ten most recently changed.
    pub recent_activity: Vec<Activity>,
}

#[derive(Debug)]
struct Inner {
    projects_dir: PathBuf,
    templates_dir: Option<PathBuf>,
    registry: ActionRegistry,
    limits: Limits,
    store: Option<Arc<dyn orch_model::Store>>,
    /// The result cache of `cache: true` steps, when there is one.
    cache: Option<Arc<dyn orch_tasks::ResultCache>>,
    /// Writes project records to `store`, when there is one.
    records: Option<orch_tasks::RecordWriter>,
    templates: Mutex<Templates>,
    projects: Mutex<BTreeMap<String, Project>>,
    problems: Mutex<Vec<String>>,
}

/// Builds a [`ProjectManager`].
#[derive(Debug)]
pub struct ProjectManagerBuilder {
    projects_dir: PathBuf,
    templates_dir: Option<PathBuf>,
    registry: Option<ActionRegistry>,
    limits: Limits,
    store: Option<Arc<dyn orch_model::Store>>,
    cache: Option<Arc<dyn orch_tasks::ResultCache>>,
}

impl ProjectManagerBuilder {
    /// A cache for the `cache: true` steps of project workflows (none by default).
    #[must_use]
    pub fn cache(mut self, cache: Arc<dyn orch_tasks::ResultCache>) -> Self {
        self.cache = Some(cache);
        self
    }

    /// Where project workflow runs are recorded; each project's state is
    /// recorded there too (a record of kind `project`, keyed by name).
    #[must_use]
    pub fn store(mut self, store: Arc<dyn orch_model::Store>) -> Self {
        self.store = Some(store);
        self
    }

    /// Where user templates (`<name>.json`, `<name>/` for their files, `doc_templates/`) live.
    #[must_use]
    pub fn templates_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.templates_dir = Some(dir.into());
        self
    }

    /// The actions project workflows may use (default: the built-ins).
    #[must_use]
    pub fn registry(mut self, registry: ActionRegistry) -> Self {
        self.registry = Some(registry);
        self
    }

    /// Limits for names and definitions.
    #[must_use]
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Reads the templates and every project (nothing is written).
    ///
    /// # Errors
    /// `Io` when `projects_dir` exists but cannot be read.
    pub fn build(self) -> Result<ProjectManager, OrchestrationError> {
        let records = match &self.store {
            Some(store) => Some(orch_tasks::RecordWriter::new(store.clone())?),
            None => None,
        };
        let pm = ProjectManager {
            inner: Arc::new(Inner {
                templates: Mutex::new(load_templates(self.templates_dir.as_deref())),
                projects_dir: self.projects_dir,
                templates_dir: self.templates_dir,
                registry: self.registry.unwrap_or_else(ActionRegistry::with_builtins),
                limits: self.limits,
                store: self.store,
                cache: self.cache,
                records,
                projects: Mutex::new(BTreeMap::new()),
                problems: Mutex::new(Vec::new()),
            }),
        };
        pm.reload()?;
        Ok(pm)
    }
}

/// Projects and templates (seed: `ProjectManager`). Cloning is cheap and shares everything.
#[derive(Debug, Clone)]
pub struct ProjectManager {
    inner: Arc<Inner>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn io_err(what: &str, path: &Path, e: &std::io::Error) -> OrchestrationError {
    OrchestrationError::Io {
        message: format!("{what} `{}`: {e}", path.display()),
    }
}

/// An error of a confined operation (see [`orch_tasks::confined`]) on `path`.
fn confined_err(what: &str, path: &Path, e: &orch_tasks::confined::Error) -> OrchestrationError {
    if e.is_escape() {
        denied(format!("{what} {e}"))
    } else if let Some(io) = e.io() {
        io_err(what, path, io)
    } else {
        OrchestrationError::Io {
            message: format!("{what} {e}"),
        }
    }
}

fn project_err(message: impl Into<String>) -> OrchestrationError {
    OrchestrationError::ProjectManagement {
        message: message.into(),
    }
}

fn denied(message: impl Into<String>) -> OrchestrationError {
    OrchestrationError::PermissionDenied {
        message: message.into(),
    }
}

/// The project file of the project at `root`: `.orch/project.json`, or the original's.
fn project_file(root: &Path) -> Option<PathBuf> {
    [PROJECT_DIR, LEGACY_PROJECT_DIR]
        .iter()
        .map(|d| root.join(d).join("project.json"))
        .find(|p| std::fs::symlink_metadata(p).is_ok_and(|m| m.is_file()))
}

fn read_project(file: &Path) -> Result<Project, String> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", file.display()))
}

fn write_json(path: &Path, v: &impl Serialize) -> Result<(), OrchestrationError> {
    let mut text = serde_json::to_string_pretty(v).map_err(|e| project_err(e.to_string()))?;
    text.push('\n');
    orch_tasks::fs::write_atomically(path, text.as_bytes(), true)
        .map_err(|e| io_err("cannot write", path, &e))
}

/// Adds the workflows that the built-in templates name (`ai-analysis`,
/// `build-and-test`, `data-processing`, `visualization`, `deploy`) to
/// `workflows`, in memory, except those it already knows by that name (its
/// `workflows_dir` may define its own); returns the names added. The engine
/// does this for its workflow manager; a standalone [`WorkflowManager`] knows
/// only its own directory until this is called.
///
/// # Errors
/// `Validation` if a built-in workflow does not load under the manager's limits.
pub fn add_template_workflows(
    workflows: &WorkflowManager,
) -> Result<Vec<String>, OrchestrationError> {
    let mut added = Vec::new();
    for (name, text) in template::BUILTIN_WORKFLOWS {
        if workflows.get_workflow(name).is_some() {
            continue;
        }
        let wf = orch_model::load_workflow(
            text,
            orch_model::Format::Yaml,
            workflows.limits(),
            Some(&format!("{name}.yaml")),
        )
        .map_err(OrchestrationError::Validation)?;
        workflows.add_workflow(wf.workflow())?;
        added.push((*name).to_owned());
    }
    Ok(added)
}

impl ProjectManager {
    /// A builder for a manager whose projects live in `projects_dir`.
    pub fn builder(projects_dir: impl Into<PathBuf>) -> ProjectManagerBuilder {
        ProjectManagerBuilder {
            projects_dir: projects_dir.into(),
            templates_dir: None,
            registry: None,
            limits: Limits::default(),
            store: None,
            cache: None,
        }
    }

    /// Where projects are created by default.
    pub fn projects_dir(&self) -> &Path {
        &self.inner.projects_dir
    }

    /// Reads templates and projects again.
    ///
    /// # Errors
    /// `Io` when `projects_dir` exists but cannot be listed.
    pub fn reload(&self) -> Result<(), OrchestrationError> {
        *lock(&self.inner.templates) = load_templates(self.inner.templates_dir.as_deref());
        let mut found = BTreeMap::new();
        let mut problems = Vec::new();
        let dir = &self.inner.projects_dir;
        let mut roots: Vec<PathBuf> = match std::fs::read_dir(dir) {
            Ok(entries) => entries
                .filter_map(Result::ok)
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| e.path())
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(io_err("cannot list projects directory", dir, &e)),
        };
        roots.sort();
        roots.extend(self.remembered().into_values());
        for root in roots {
            let Some(file) = project_file(&root) else {
                continue;
            };
            match read_project(&file) {
                Ok(mut p) => {
                    // A project file is data from disk: its name must be a
                    // valid project name (it becomes file names, as in
                    // `archives/NAME.tar.gz`), and the project lives where
                    // its file was found, whatever `path` says (a moved
                    // project, or one made by the original tool).
                    if let Err(e) = check_name(NameKind::Project, &p.name, &self.inner.limits) {
                        problems.push(format!(
                            "{}: {e}; the project is not loaded (fix `name` in the file)",
                            file.display()
                        ));
                        continue;
                    }
                    p.path = std::path::absolute(&root)
                        .unwrap_or_else(|_| root.clone())
                        .display()
                        .to_string();
                    if found.contains_key(&p.name) {
                        problems.push(format!(
                            "{}: project `{}` is defined twice; the first one is used",
                            file.display(),
                            p.name
                        ));
                    } else {
                        found.insert(p.name.clone(), p);
                    }
                }
                Err(e) => problems.push(e),
            }
        }
        *lock(&self.inner.projects) = found;
        *lock(&self.inner.problems) = problems;
        Ok(())
    }

    /// Project files that could not be read, and templates that could not be used.
    pub fn load_problems(&self) -> Vec<String> {
        let mut v = lock(&self.inner.problems).clone();
        v.extend(
            lock(&self.inner.templates)
                .bad
                .iter()
                .map(|(n, e)| format!("template `{n}`: {e}")),
        );
        v
    }

    /// Projects created outside `projects_dir`, by name.
    fn remembered(&self) -> BTreeMap<String, PathBuf> {
        let file = self.inner.projects_dir.join(REGISTRY_FILE);
        std::fs::read_to_string(file)
            .ok()
            .and_then(|t| serde_json::from_str::<BTreeMap<String, PathBuf>>(&t).ok())
            .unwrap_or_default()
    }

    fn remember(&self, name: &str, path: Option<&Path>) -> Result<(), OrchestrationError> {
        let mut m = self.remembered();
        match path {
            Some(p) => {
                m.insert(name.to_owned(), p.to_path_buf());
            }
            None => {
                if m.remove(name).is_none() {
                    return Ok(());
                }
            }
        }
        write_json(&self.inner.projects_dir.join(REGISTRY_FILE), &m)
    }

    /// Template names, sorted (seed: `list_templates`).
    pub fn list_templates(&self) -> Vec<String> {
        lock(&self.inner.templates).ok.keys().cloned().collect()
    }

    /// A template by name.
    pub fn get_template(&self, name: &str) -> Option<ProjectTemplate> {
        lock(&self.inner.templates)
            .ok
            .get(name)
            .map(|t| t.0.clone())
    }

    /// Project names, sorted (seed: `list_projects`).
    pub fn list_projects(&self) -> Vec<String> {
        lock(&self.inner.projects).keys().cloned().collect()
    }

    /// A project by name.
    pub fn get_project(&self, name: &str) -> Option<Project> {
        lock(&self.inner.projects).get(name).cloned()
    }

    /// The project whose directory is `dir` or holds it (for `orch run NAME` inside a project).
    pub fn project_at(&self, dir: &Path) -> Option<Project> {
        let dir = dir.canonicalize().ok()?;
        lock(&self.inner.projects)
            .values()
            .filter(|p| {
                Path::new(&p.path)
                    .canonicalize()
                    .is_ok_and(|root| dir.starts_with(root))
            })
            .max_by_key(|p| p.path.len())
            .cloned()
    }

    fn not_found(&self, name: &str) -> OrchestrationError {
        let known = self.list_projects();
        OrchestrationError::NotFound {
            kind: EntityKind::Project,
            name: name.to_owned(),
            hint: Some(if known.is_empty() {
                "there are no projects yet; create one with `orch project new NAME --template T`"
                    .into()
            } else {
                format!("known projects: {}", known.join(", "))
            }),
        }
    }

    /// Creates a project from a template (or an empty `custom` one) in
    /// `path`, default `<projects_dir>/<name>` (seed: `create_project`).
    ///
    /// # Errors
    /// `InvalidParameters` for a bad name; `AlreadyExists` (`PROJECT_EXISTS`)
    /// for a known name or a non-empty target directory; `NotFound` for an
    /// unknown template; `PermissionDenied` when the target is a link or the
    /// template holds one; `ProjectManagement` for an invalid template. On
    /// any error nothing is left on disk.
    pub fn create_project(
        &self,
        name: &str,
        template_name: Option<&str>,
        path: Option<&Path>,
        options: CreateOptions,
    ) -> Result<Project, OrchestrationError> {
        check_name(NameKind::Project, name, &self.inner.limits)
            .map_err(OrchestrationError::invalid_parameters)?;
        if lock(&self.inner.projects).contains_key(name) {
            return Err(OrchestrationError::AlreadyExists {
                kind: EntityKind::Project,
                name: name.to_owned(),
                hint: Some("choose another name, or delete the existing project first".into()),
            });
        }
        let template = match template_name {
            None => None,
            Some(t) => {
                let ts = lock(&self.inner.templates);
                match (ts.ok.get(t), ts.bad.get(t)) {
                    (Some(found), _) => Some(found.clone()),
                    (None, Some(why)) => {
                        return Err(project_err(format!("template `{t}` cannot be used: {why}")));
                    }
                    (None, None) => {
                        return Err(OrchestrationError::NotFound {
                            kind: EntityKind::Template,
                            name: t.to_owned(),
                            hint: Some(format!(
                                "available templates: {}",
                                ts.ok.keys().cloned().collect::<Vec<_>>().join(", ")
                            )),
                        });
                    }
                }
            }
        };
        // The parent directory is opened once; everything after happens
        // relative to its descriptor, never following a link.
        let (parent_dir, leaf, target) = self.open_target_parent(name, path)?;
        let parent = target.parent().unwrap_or(&target).to_path_buf();
        match parent_dir
            .kind_of(&leaf)
            .map_err(|e| confined_err("cannot inspect", &target, &e))?
        {
            Some(EntryKind::Symlink) => {
                return Err(denied(format!(
                    "`{}` is a symbolic link; a project is never created through a link",
                    target.display()
                )));
            }
            Some(EntryKind::Dir) => {
                let empty = parent_dir
                    .list(&leaf)
                    .map_err(|e| confined_err("cannot read", &target, &e))?
                    .is_empty();
                if !empty {
                    return Err(OrchestrationError::AlreadyExists {
                        kind: EntityKind::Project,
                        name: target.display().to_string(),
                        hint: Some("the directory is not empty; choose another path".into()),
                    });
                }
            }
            Some(_) => {
                return Err(OrchestrationError::AlreadyExists {
                    kind: EntityKind::Project,
                    name: target.display().to_string(),
                    hint: Some("a file is in the way; choose another path".into()),
                });
            }
            None => {}
        }
        let now = Utc::now();
        let mut project = Project {
            name: name.to_owned(),
            description: options.description,
            path: target.display().to_string(),
            template: template_name.map(str::to_owned),
            author: options.author,
            tags: options.tags,
            created_at: now,
            updated_at: now,
            ..Project::default()
        };
        let (staging_name, staging) = parent_dir
            .create_unique_dir(&format!(".orch-new-{name}-"))
            .map_err(|e| confined_err("cannot create a staging directory in", &parent, &e))?;
        let filled = (|| {
            if let Some((tpl, source)) = &template {
                project.project_type = tpl.project_type;
                project.version.clone_from(&tpl.version);
                if project.version.is_empty() {
                    project.version = "1.0.0".into();
                }
                project.required_modules.clone_from(&tpl.required_modules);
                project.workflows.clone_from(&tpl.workflows);
                project.config.clone_from(&tpl.default_config);
                self.build_tree(&staging, &project, tpl, source.as_deref())?;
            }
            let file = Path::new(PROJECT_DIR).join("project.json");
            let mut text =
                serde_json::to_string_pretty(&project).map_err(|e| project_err(e.to_string()))?;
            text.push('\n');
            staging
                .write_bytes(&file, text.as_bytes(), true)
                .map_err(|e| confined_err("cannot write", &target.join(&file), &e))?;
            // Make it visible in one step: the rename replaces an empty
            // directory, and fails on a link or a non-empty directory.
            parent_dir
                .rename(&staging_name, &leaf)
                .map_err(|e| confined_err("cannot move the new project to", &target, &e))
        })();
        if let Err(e) = filled {
            let _ = parent_dir.remove_tree(&staging_name);
            return Err(e);
        }
        let inside = target
            .parent()
            .zip(self.inner.projects_dir.canonicalize().ok())
            .is_some_and(|(p, d)| p.canonicalize().is_ok_and(|p| p == d));
        if !inside {
            if let Err(e) = self.remember(name, Some(&target)) {
                // The project exists; only its remembering failed. Say so without undoing it.
                lock(&self.inner.problems).push(format!(
                    "project `{name}` at {} will not be found after a restart: {e}",
                    target.display()
                ));
            }
        }
        lock(&self.inner.projects).insert(name.to_owned(), project.clone());
        self.record(&project);
        Ok(project)
    }

    /// Queues the project's state for the store, when there is one.
    fn record(&self, p: &Project) {
        if let (Some(w), Ok(data)) = (&self.inner.records, serde_json::to_value(p)) {
            w.put(orch_model::Record {
                kind: orch_model::RecordKind::Project,
                key: p.name.clone(),
                data,
                updated_at: chrono::Utc::now(),
            });
        }
    }

    /// Waits until every project change so far is recorded in the store
    /// (returns at once without a store). Blocks the calling thread briefly.
    pub fn flush_records(&self) {
        if let Some(w) = &self.inner.records {
            w.flush();
        }
    }

    /// Opens the directory a new project goes in; returns it with the name
    /// of the project's directory in it and the project's full path.
    ///
    /// The default `<projects_dir>/<name>` and an absolute `path` open the
    /// parent as named (the caller chose it). A relative `path` is resolved
    /// beneath the current directory one component at a time without
    /// following links: a link along it (`a/linkdir/sub`) or `..` is refused.
    fn open_target_parent(
        &self,
        name: &str,
        path: Option<&Path>,
    ) -> Result<(Root, std::ffi::OsString, PathBuf), OrchestrationError> {
        let absolute = |p: PathBuf| -> Result<PathBuf, OrchestrationError> {
            if p.is_absolute() {
                return Ok(p);
            }
            std::env::current_dir()
                .map(|cwd| cwd.join(&p))
                .map_err(|e| project_err(format!("cannot read the current directory: {e}")))
        };
        let Some(p) = path else {
            // Only the default projects directory is created; a custom path's parent must exist.
            let dir = &self.inner.projects_dir;
            std::fs::create_dir_all(dir).map_err(|e| io_err("cannot create", dir, &e))?;
            let root = Root::open(dir).map_err(|e| io_err("cannot open", dir, &e))?;
            return Ok((root, name.into(), absolute(dir.join(name))?));
        };
        let leaf = match p.components().next_back() {
            Some(std::path::Component::Normal(n)) => n.to_os_string(),
            _ => {
                return Err(denied(format!(
                    "`{}` does not name a new directory; give a path such as `projects/{name}`",
                    p.display()
                )));
            }
        };
        let parent = p
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let target = absolute(p.to_path_buf())?;
        let missing = || {
            project_err(format!(
                "the parent directory `{}` does not exist; create it first",
                target.parent().unwrap_or(&target).display()
            ))
        };
        let root = if p.is_absolute() {
            Root::open(parent).map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory => missing(),
                _ => io_err("cannot open", parent, &e),
            })?
        } else {
            let cwd = absolute(PathBuf::from("."))?;
            let here = Root::open(&cwd)
                .map_err(|e| io_err("cannot open the current directory", &cwd, &e))?
                .named("the current directory");
            here.open_dir(parent).map_err(|e| {
                if e.is_escape() {
                    denied(format!(
                        "{e}; a project is never created through a link (give an absolute path to create it elsewhere)"
                    ))
                } else if e.io().is_some_and(|io| io.kind() == std::io::ErrorKind::NotFound) {
                    missing()
                } else {
                    confined_err("cannot open", parent, &e)
                }
            })?
        };
        Ok((root, leaf, target))
    }

    /// Fills the staging directory from a template.
    fn build_tree(
        &self,
        root: &Root,
        project: &Project,
        tpl: &ProjectTemplate,
        source: Option<&Path>,
    ) -> Result<(), OrchestrationError> {
        tpl.check()
            .map_err(|e| project_err(format!("template `{}` is invalid: {e}", tpl.name)))?;
        let mkdir = |rel: &Path| {
            root.create_dir_all(rel)
                .map(drop)
                .map_err(|e| confined_err("cannot create", rel, &e))
        };
        mkdir(Path::new(PROJECT_DIR))?;
        for d in &tpl.directory_structure {
            mkdir(&safe_relative(d).map_err(denied)?)?;
        }
        // Files of a user template: copied as bytes, never through or as links.
        if !tpl.template_files.is_empty() {
            if let Some(src) = source.filter(|s| s.is_dir()) {
                self.copy_template_files(root, tpl, src)?;
            }
        }
        // The template's workflows, as definitions the user can edit.
        let wf_dir = Path::new(PROJECT_DIR).join("workflows");
        for w in &tpl.workflows {
            let (file, text) = self.workflow_definition(w, source)?;
            let p = wf_dir.join(file);
            root.write_bytes(&p, text.as_bytes(), true)
                .map_err(|e| confined_err("cannot write", &p, &e))?;
        }
        // Documentation.
        let nested: Vec<String> = if tpl.documentation_config.nested_docs.is_empty() {
            tpl.directory_structure
                .iter()
                .map(|d| d.trim_end_matches('/').to_owned())
                .filter(|d| !d.is_empty() && d != PROJECT_DIR)
                .collect()
        } else {
            tpl.documentation_config
                .nested_docs
                .iter()
                .map(|d| d.trim_end_matches('/').to_owned())
                .collect()
        };
        let links = if tpl.documentation_config.doc_links.is_empty() {
            &tpl.doc_links
        } else {
            &tpl.documentation_config.doc_links
        };
        let nested = if links.get("enabled") == Some(&Value::Bool(false)) {
            Vec::new()
        } else {
            nested
        };
        let type_name = serde_json::to_value(project.project_type)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        let info = docs::DocInfo {
            name: &project.name,
            project_type: &type_name,
            description: &project.description,
            version: &project.version,
            author: &project.author,
            created_at: project.created_at.to_rfc3339(),
            template: Some(&tpl.name),
            workflows: &tpl.workflows,
        };
        for (rel, text) in docs::documents(&info, &nested, self.inner.templates_dir.as_deref()) {
            let rel = safe_relative(&rel).map_err(denied)?;
            root.write_bytes(&rel, text.as_bytes(), true)
                .map_err(|e| confined_err("cannot write", &rel, &e))?;
        }
        Ok(())
    }

    fn copy_template_files(
        &self,
        root: &Root,
        tpl: &ProjectTemplate,
        src: &Path,
    ) -> Result<(), OrchestrationError> {
        let opts = glob::MatchOptions {
            case_sensitive: true,
            require_literal_separator: true,
            require_literal_leading_dot: false,
        };
        let mut entries = Vec::new();
        for e in walkdir::WalkDir::new(src)
            .follow_links(false)
            .sort_by_file_name()
        {
            let e =
                e.map_err(|e| project_err(format!("cannot read template `{}`: {e}", tpl.name)))?;
            let rel = e.path().strip_prefix(src).unwrap_or(e.path()).to_path_buf();
            if e.path_is_symlink() {
                return Err(denied(format!(
                    "template `{}` contains the symbolic link `{}`; templates may not hold links",
                    tpl.name,
                    rel.display()
                )));
            }
            if e.file_type().is_file() {
                entries.push(rel);
            }
        }
        for (pattern, dest) in &tpl.template_files {
            let pat = glob::Pattern::new(pattern).map_err(|e| {
                project_err(format!("template_files: bad pattern `{pattern}`: {e}"))
            })?;
            let dest = safe_relative(dest).map_err(denied)?;
            for rel in &entries {
                if !pat.matches_path_with(rel, opts) {
                    continue;
                }
                let Some(file_name) = rel.file_name() else {
                    continue;
                };
                let bytes = std::fs::read(src.join(rel))
                    .map_err(|e| io_err("cannot read template file", &src.join(rel), &e))?;
                let to = dest.join(file_name);
                root.write_bytes(&to, &bytes, true)
                    .map_err(|e| confined_err("cannot write", &to, &e))?;
            }
        }
        Ok(())
    }

    /// A workflow a template names: from `<templates_dir>/<template>/workflows/`, else built in.
    fn workflow_definition(
        &self,
        name: &str,
        source: Option<&Path>,
    ) -> Result<(String, String), OrchestrationError> {
        if let Some(src) = source {
            for ext in ["yaml", "yml", "json", "toml"] {
                let p = src.join("workflows").join(format!("{name}.{ext}"));
                if std::fs::symlink_metadata(&p).is_ok_and(|m| m.is_file()) {
                    let text =
                        std::fs::read_to_string(&p).map_err(|e| io_err("cannot read", &p, &e))?;
                    return Ok((format!("{name}.{ext}"), text));
                }
            }
        }
        template::BUILTIN_WORKFLOWS
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(n, text)| (format!("{n}.yaml"), (*text).to_owned()))
            .ok_or_else(|| {
                project_err(format!(
                    "the template names workflow `{name}`, which is neither built in ({}) nor in the template's workflows/ directory",
                    template::BUILTIN_WORKFLOWS.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
                ))
            })
    }

    fn save(&self, p: &Project) -> Result<(), OrchestrationError> {
        let root = Path::new(&p.path);
        let file =
            project_file(root).unwrap_or_else(|| root.join(PROJECT_DIR).join("project.json"));
        // Written beneath the project's root by descriptor, never through a
        // link: the project's own workflows may have replaced `.orch`.
        let rel = file.strip_prefix(root).unwrap_or(&file);
        let mut text = serde_json::to_string_pretty(p).map_err(|e| project_err(e.to_string()))?;
        text.push('\n');
        orch_tasks::fs::write_atomically_beneath(root, rel, text.as_bytes(), true)
            .map_err(|e| confined_err("cannot write", &file, &e))?;
        self.record(p);
        Ok(())
    }

    /// Changes a project in memory and on disk, or neither.
    fn update(
        &self,
        name: &str,
        f: impl FnOnce(&mut Project),
    ) -> Result<Project, OrchestrationError> {
        let mut projects = lock(&self.inner.projects);
        let current = projects
            .get(name)
            .ok_or_else(|| OrchestrationError::NotFound {
                kind: EntityKind::Project,
                name: name.to_owned(),
                hint: None,
            })?;
        let mut next = current.clone();
        f(&mut next);
        self.save(&next)?;
        projects.insert(name.to_owned(), next.clone());
        Ok(next)
    }

    /// The manager for a project's workflows (its `.orch/workflows`, run in its directory).
    ///
    /// # Errors
    /// `NotFound` for an unknown project.
    pub fn workflow_manager(&self, project: &str) -> Result<WorkflowManager, OrchestrationError> {
        let p = self
            .get_project(project)
            .ok_or_else(|| self.not_found(project))?;
        let root = PathBuf::from(&p.path);
        let mut b = WorkflowManager::builder(root.join(PROJECT_DIR).join("workflows"))
            .work_dir(&root)
            .registry(self.inner.registry.clone())
            .limits(self.inner.limits.clone());
        if let Some(store) = &self.inner.store {
            b = b.store(store.clone());
        }
        if let Some(cache) = &self.inner.cache {
            b = b.cache(cache.clone());
        }
        b.build()
    }

    /// Runs one of a project's workflows in the project's directory, with
    /// parameters from the project's config (`workflows.<name>`) under the
    /// caller's (seed: `execute_project_workflow`). Counts the run in the
    /// project's metrics.
    ///
    /// # Errors
    /// `NotFound` for an unknown project; `InvalidParameters` for a workflow
    /// the project does not have or parameters it does not declare; the
    /// workflow manager's errors. Nothing runs when an error is returned.
    pub async fn execute_project_workflow(
        &self,
        project: &str,
        workflow: &str,
        params: Map<String, Value>,
    ) -> Result<RunReport, OrchestrationError> {
        self.execute_project_workflow_with(
            project,
            workflow,
            ExecuteOptions {
                params,
                ..ExecuteOptions::default()
            },
        )
        .await
    }

    /// [`ProjectManager::execute_project_workflow`] with every execution option.
    ///
    /// # Errors
    /// As [`ProjectManager::execute_project_workflow`].
    pub async fn execute_project_workflow_with(
        &self,
        project: &str,
        workflow: &str,
        mut opts: ExecuteOptions,
    ) -> Result<RunReport, OrchestrationError> {
        let p = self
            .get_project(project)
            .ok_or_else(|| self.not_found(project))?;
        if !p.workflows.iter().any(|w| w == workflow) {
            return Err(OrchestrationError::invalid_parameters(format!(
                "workflow `{workflow}` is not available for project `{project}`; its workflows: {}",
                if p.workflows.is_empty() {
                    "none".to_owned()
                } else {
                    p.workflows.join(", ")
                }
            )));
        }
        let wm = self.workflow_manager(project)?;
        let declared = wm
            .get_workflow(workflow)
            .ok_or_else(|| {
                project_err(format!(
                    "project `{project}` lists workflow `{workflow}` but {}/workflows has no valid definition of it{}",
                    Path::new(&p.path).join(PROJECT_DIR).display(),
                    wm.load_problems().first().map(|e| format!(": {e}")).unwrap_or_default()
                ))
            })?
            .parameters;
        let mut params = Map::new();
        if let Some(Value::Object(cfg)) = p.config.get("workflows").and_then(|w| w.get(workflow)) {
            for (k, v) in cfg {
                if declared.contains_key(k) {
                    params.insert(k.clone(), v.clone());
                }
            }
        }
        params.extend(std::mem::take(&mut opts.params));
        opts.params = params;
        opts.project_path = Some(p.path.clone());
        self.update(project, |p| {
            p.active_workflows.push(workflow.to_owned());
            if p.status == ProjectStatus::Planning {
                p.status = ProjectStatus::Active;
            }
        })?;
        let result = wm.execute(workflow, opts).await;
        let updated = self.record_workflow_run(project, workflow, result.as_ref().ok());
        // The run's own outcome matters more than a failure to record it.
        let report = result?;
        updated?;
        Ok(report)
    }

    /// Counts a finished run of one of a project's workflows in its metrics
    /// (`workflow_runs`, `workflows_succeeded` or `workflows_failed`,
    /// `last_workflow`) and takes it off `active_workflows`. `None` stands for
    /// a run that could not start. `execute_project_workflow` calls it; so
    /// does the CLI, which runs project workflows itself.
    ///
    /// # Errors
    /// `NotFound` for an unknown project; `Io`.
    pub fn record_workflow_run(
        &self,
        project: &str,
        workflow: &str,
        report: Option<&RunReport>,
    ) -> Result<Project, OrchestrationError> {
        let ok = report.is_some_and(RunReport::succeeded);
        let run_id = report.map(|r| r.run_id.to_string());
        let status = report.map_or(WorkflowStatus::Failed, |r| r.status);
        self.update(project, |p| {
            if let Some(i) = p.active_workflows.iter().position(|w| w == workflow) {
                p.active_workflows.remove(i);
            }
            if p.status == ProjectStatus::Planning {
                p.status = ProjectStatus::Active;
            }
            bump(&mut p.metrics, "workflow_runs", 1);
            bump(&mut p.metrics, if ok { "workflows_succeeded" } else { "workflows_failed" }, 1);
            p.metrics.insert(
                "last_workflow".into(),
                json!({"name": workflow, "status": status, "run_id": run_id, "finished_at": Utc::now()}),
            );
            p.updated_at = Utc::now();
        })
    }

    /// A project's status (seed: `get_project_status`); `None` when unknown.
    pub fn get_project_status(&self, name: &str) -> Option<ProjectStatusReport> {
        self.get_project(name).map(|p| ProjectStatusReport {
            workflows: p.workflows.len(),
            active_workflows: p.active_workflows.len(),
            name: p.name,
            status: p.status,
            project_type: p.project_type,
            version: p.version,
            path: p.path,
            required_modules: p.required_modules,
            created_at: p.created_at,
            updated_at: p.updated_at,
            milestones: p.milestones,
            metrics: p.metrics,
        })
    }

    /// Records a milestone: a copy of `data` with `completed_at` added (the
    /// caller's value is not changed; data that is not an object is kept
    /// under `value`) (seed: `add_project_milestone`).
    ///
    /// # Errors
    /// `NotFound` for an unknown project; `InvalidParameters` for an empty key; `Io`.
    pub fn add_project_milestone(
        &self,
        name: &str,
        milestone: &str,
        data: &Value,
    ) -> Result<Project, OrchestrationError> {
        if milestone.trim().is_empty() {
            return Err(OrchestrationError::invalid_parameters(
                "the milestone key is empty",
            ));
        }
        if !self.list_projects().iter().any(|p| p == name) {
            return Err(self.not_found(name));
        }
        let now = Utc::now();
        let mut entry = match data {
            Value::Object(m) => m.clone(),
            other => {
                let mut m = Map::new();
                m.insert("value".into(), other.clone());
                m
            }
        };
        entry.insert("completed_at".into(), json!(now));
        self.update(name, |p| {
            p.milestones
                .insert(milestone.to_owned(), Value::Object(entry));
            p.updated_at = now;
        })
    }

    /// Sets metrics (a value replaces the old one) (seed: `update_project_metrics`).
    ///
    /// # Errors
    /// `NotFound` for an unknown project; `Io`.
    pub fn update_project_metrics(
        &self,
        name: &str,
        metrics: &Map<String, Value>,
    ) -> Result<Project, OrchestrationError> {
        if !self.list_projects().iter().any(|p| p == name) {
            return Err(self.not_found(name));
        }
        self.update(name, |p| {
            for (k, v) in metrics {
                p.metrics.insert(k.clone(), v.clone());
            }
            p.updated_at = Utc::now();
        })
    }

    /// Adds to counters: each metric grows by the given integer (a missing one starts at 0).
    ///
    /// # Errors
    /// `NotFound` for an unknown project; `InvalidParameters` when a counter
    /// or an increment is not an integer; `Io`.
    pub fn increment_project_metrics(
        &self,
        name: &str,
        counts: &Map<String, Value>,
    ) -> Result<Project, OrchestrationError> {
        let p = self.get_project(name).ok_or_else(|| self.not_found(name))?;
        for (k, v) in counts {
            if v.as_i64().is_none() {
                return Err(OrchestrationError::invalid_parameters(format!(
                    "increment of `{k}` must be an integer, found {v}"
                )));
            }
            if let Some(cur) = p.metrics.get(k) {
                if cur.as_i64().is_none() {
                    return Err(OrchestrationError::invalid_parameters(format!(
                        "metric `{k}` is {cur}, not a counter"
                    )));
                }
            }
        }
        self.update(name, |p| {
            for (k, v) in counts {
                bump(&mut p.metrics, k, v.as_i64().unwrap_or(0));
            }
            p.updated_at = Utc::now();
        })
    }

    /// Counts by status and type, and the ten most recently changed projects (seed: `get_projects_summary`).
    pub fn get_projects_summary(&self) -> ProjectsSummary {
        let projects = lock(&self.inner.projects);
        let mut by_status = BTreeMap::new();
        let mut by_type = BTreeMap::new();
        for p in projects.values() {
            *by_status.entry(enum_name(&p.status)).or_insert(0) += 1;
            *by_type.entry(enum_name(&p.project_type)).or_insert(0) += 1;
        }
        let mut recent: Vec<Activity> = projects
            .values()
            .map(|p| Activity {
                name: p.name.clone(),
                status: p.status,
                updated_at: p.updated_at,
            })
            .collect();
        recent.sort_by(|a, b| b.updated_at.cmp(&a.updated_at).then(a.name.cmp(&b.name)));
        recent.truncate(10);
        ProjectsSummary {
            total_projects: projects.len(),
            by_status,
            by_type,
            recent_activity: recent,
        }
    }

    /// Writes a tar.gz of the project (root entry `<name>/`, links stored as
    /// links, never followed) to `archive_path`, default
    /// `<projects_dir>/archives/<name>.tar.gz`, and marks it archived
    /// (seed: `archive_project`). Returns the archive's path.
    ///
    /// # Errors
    /// `NotFound`; `Io` (no partial archive is left).
    pub fn archive_project(
        &self,
        name: &str,
        archive_path: Option<&Path>,
    ) -> Result<PathBuf, OrchestrationError> {
        let p = self.get_project(name).ok_or_else(|| self.not_found(name))?;
        let out = archive_path.map_or_else(
            || {
                self.inner
                    .projects_dir
                    .join("archives")
                    .join(format!("{name}.tar.gz"))
            },
            Path::to_path_buf,
        );
        let dir = out.parent().unwrap_or(Path::new(".")).to_path_buf();
        std::fs::create_dir_all(&dir).map_err(|e| io_err("cannot create", &dir, &e))?;
        let tmp = tempfile::Builder::new()
            .prefix(".orch-archive-")
            .tempfile_in(&dir)
            .map_err(|e| io_err("cannot create a temporary file in", &dir, &e))?;
        {
            let gz = flate2::write::GzEncoder::new(tmp.as_file(), flate2::Compression::default());
            let mut tar = tar::Builder::new(gz);
            tar.follow_symlinks(false);
            tar.append_dir_all(name, &p.path)
                .and_then(|()| tar.into_inner())
                .and_then(flate2::write::GzEncoder::finish)
                .and_then(|f| f.sync_all())
                .map_err(|e| project_err(format!("cannot archive `{}`: {e}", p.path)))?;
        }
        tmp.persist(&out)
            .map_err(|e| io_err("cannot write", &out, &e.error))?;
        self.update(name, |p| {
            p.status = ProjectStatus::Archived;
            p.updated_at = Utc::now();
        })?;
        Ok(out)
    }

    /// Forgets a project; with `remove_files`, deletes its directory too
    /// (links inside are removed, not followed). Without it, the files stay
    /// and the project file is renamed to `project.json.deleted`, so the
    /// project does not come back on the next start (seed: `delete_project`).
    /// Returns false for an unknown project.
    ///
    /// # Errors
    /// `Io` when the files cannot be removed.
    pub fn delete_project(
        &self,
        name: &str,
        remove_files: bool,
    ) -> Result<bool, OrchestrationError> {
        let Some(p) = self.get_project(name) else {
            return Ok(false);
        };
        let root = PathBuf::from(&p.path);
        if remove_files {
            if project_file(&root).is_none() {
                return Err(denied(format!(
                    "`{}` holds no project file; refusing to delete it",
                    root.display()
                )));
            }
            std::fs::remove_dir_all(&root).map_err(|e| io_err("cannot delete", &root, &e))?;
        } else if let Some(file) = project_file(&root) {
            let gone = file.with_extension("json.deleted");
            std::fs::rename(&file, &gone).map_err(|e| io_err("cannot retire", &file, &e))?;
        }
        lock(&self.inner.projects).remove(name);
        if let Some(w) = &self.inner.records {
            w.remove(orch_model::RecordKind::Project, name);
        }
        self.remember(name, None)?;
        Ok(true)
    }

    /// Project names, sorted, of the projects that match every condition of
    /// `filter` (seed: `list_projects(status)`; also by type and tag).
    pub fn list_projects_filtered(&self, filter: &ProjectFilter) -> Vec<String> {
        lock(&self.inner.projects)
            .values()
            .filter(|p| {
                filter.status.is_none_or(|s| p.status == s)
                    && filter.project_type.is_none_or(|t| p.project_type == t)
                    && filter
                        .tag
                        .as_ref()
                        .is_none_or(|t| p.tags.iter().any(|x| x == t))
            })
            .map(|p| p.name.clone())
            .collect()
    }

    /// Changes a project's status (`planning`, `active`, `paused`,
    /// `completed` or `failed`), description, version, author, tags or
    /// config entries, on disk and in memory (seed: `update_project`).
    /// `updated_at` moves when anything is given.
    ///
    /// # Errors
    /// `NotFound` for an unknown project; `InvalidParameters` for the status
    /// `archived` (use `archive_project`, which writes the archive) or an
    /// empty version; `InvalidState` for a status change of an archived
    /// project; `Io`.
    pub fn update_project(
        &self,
        name: &str,
        update: ProjectUpdate,
    ) -> Result<Project, OrchestrationError> {
        let current = self.get_project(name).ok_or_else(|| self.not_found(name))?;
        if let Some(status) = update.status {
            if status == ProjectStatus::Archived && current.status != ProjectStatus::Archived {
                return Err(OrchestrationError::invalid_parameters(format!(
                    "project `{name}`: the status `archived` is set by archive_project (`orch project archive {name}`), which writes the archive first"
                )));
            }
            if current.status == ProjectStatus::Archived && status != ProjectStatus::Archived {
                return Err(OrchestrationError::InvalidState {
                    message: format!(
                        "project `{name}` is archived; its status cannot change (create a new project from the archive to go on)"
                    ),
                });
            }
        }
        if let Some(v) = &update.version {
            if v.trim().is_empty() {
                return Err(OrchestrationError::invalid_parameters(format!(
                    "project `{name}`: the version is empty; give one such as 1.1.0"
                )));
            }
        }
        let ProjectUpdate {
            status,
            description,
            version,
            author,
            tags,
            config,
        } = update;
        if status.is_none()
            && description.is_none()
            && version.is_none()
            && author.is_none()
            && tags.is_none()
            && config.is_empty()
        {
            return Ok(current);
        }
        self.update(name, |p| {
            if let Some(s) = status {
                p.status = s;
            }
            if let Some(d) = description {
                p.description = d;
            }
            if let Some(v) = version {
                p.version = v;
            }
            if let Some(a) = author {
                p.author = a;
            }
            if let Some(t) = tags {
                p.tags = t;
            }
            for (k, v) in config {
                p.config.insert(k, v);
            }
            p.updated_at = Utc::now();
        })
    }

    /// Creates a project from a template (default `ai_analysis`) and runs
    /// one of the template's workflows in it (seed: the engine's
    /// `create_project_from_workflow`). When the run succeeds, the milestone
    /// `workflow_<NAME>_completed` records it (`workflow`, `run_id`,
    /// `execution_time` in seconds, `success`). The project stays whatever
    /// the run's outcome; [`ProjectFromWorkflow::run`] holds it, and an `Err`
    /// there means the run could not start (for example a parameter the
    /// workflow does not declare): fix it and call
    /// `execute_project_workflow`.
    ///
    /// # Errors
    /// `NotFound` for an unknown template; `InvalidParameters` when the
    /// template has no such workflow (nothing is created then); the errors
    /// of [`ProjectManager::create_project`]; `Io` when the milestone cannot
    /// be written.
    pub async fn create_project_from_workflow(
        &self,
        name: &str,
        workflow: &str,
        template_name: Option<&str>,
        path: Option<&Path>,
        options: CreateOptions,
        run: ExecuteOptions,
    ) -> Result<ProjectFromWorkflow, OrchestrationError> {
        self.create_project_from_workflow_with(name, workflow, template_name, path, options, || {
            self.execute_project_workflow_with(name, workflow, run)
        })
        .await
    }

    /// [`ProjectManager::create_project_from_workflow`] with the run left to
    /// `run`, called once the project exists (the engine runs it in a
    /// session through `execute_project_workflow_with`).
    ///
    /// # Errors
    /// As [`ProjectManager::create_project_from_workflow`].
    pub async fn create_project_from_workflow_with<F, Fut>(
        &self,
        name: &str,
        workflow: &str,
        template_name: Option<&str>,
        path: Option<&Path>,
        options: CreateOptions,
        run: F,
    ) -> Result<ProjectFromWorkflow, OrchestrationError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<RunReport, OrchestrationError>>,
    {
        let template_name = template_name.unwrap_or("ai_analysis");
        let template =
            self.get_template(template_name)
                .ok_or_else(|| OrchestrationError::NotFound {
                    kind: EntityKind::Template,
                    name: template_name.to_owned(),
                    hint: Some(format!("templates: {}", self.list_templates().join(", "))),
                })?;
        if !template.workflows.iter().any(|w| w == workflow) {
            return Err(OrchestrationError::invalid_parameters(format!(
                "template `{template_name}` has no workflow `{workflow}`; its workflows: {}",
                if template.workflows.is_empty() {
                    "none".to_owned()
                } else {
                    template.workflows.join(", ")
                }
            )));
        }
        self.create_project(name, Some(template_name), path, options)?;
        let run = run().await;
        if let Ok(report) = &run {
            if report.succeeded() {
                self.add_project_milestone(
                    name,
                    &format!("workflow_{workflow}_completed"),
                    &json!({
                        "workflow": workflow,
                        "run_id": report.run_id.to_string(),
                        "execution_time": report.duration.as_secs_f64(),
                        "success": true,
                    }),
                )?;
            }
        }
        let project = self.get_project(name).ok_or_else(|| self.not_found(name))?;
        Ok(ProjectFromWorkflow { project, run })
    }
}

/// Which projects [`ProjectManager::list_projects_filtered`] lists; `None`
/// matches every project.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProjectFilter {
    /// Only projects in this state.
    pub status: Option<ProjectStatus>,
    /// Only projects of this type.
    pub project_type: Option<ProjectType>,
    /// Only projects with this tag.
    pub tag: Option<String>,
}

/// What [`ProjectManager::update_project`] changes; `None` (or an empty
/// `config`) leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProjectUpdate {
    /// The new state (`planning`, `active`, `paused`, `completed`, `failed`).
    pub status: Option<ProjectStatus>,
    /// The new description.
    pub description: Option<String>,
    /// The new version.
    pub version: Option<String>,
    /// The new author.
    pub author: Option<String>,
    /// The new tags (replacing the old ones).
    pub tags: Option<Vec<String>>,
    /// Config entries to set (each replaces the entry of its key).
    pub config: Map<String, Value>,
}

/// The outcome of [`ProjectManager::create_project_from_workflow`].
#[derive(Debug)]
pub struct ProjectFromWorkflow {
    /// The project as it is after the run.
    pub project: Project,
    /// The workflow's run, or why it could not start.
    pub run: Result<RunReport, OrchestrationError>,
}

fn enum_name<T: Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn bump(metrics: &mut Map<String, Value>, key: &str, by: i64) {
    let cur = metrics.get(key).and_then(Value::as_i64).unwrap_or(0);
    metrics.insert(key.to_owned(), json!(cur.saturating_add(by)));
}
