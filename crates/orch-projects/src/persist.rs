//! Persistence: reading every project file, the registry of projects created elsewhere, and writing a project's file atomically (and its store record) before memory changes.

use crate::template::load_templates;
use crate::{
    LEGACY_PROJECT_DIR, PROJECT_DIR, ProjectManager, confined_err, io_err, lock, project_err,
};
use orch_model::definition::{NameKind, check_name};
use orch_model::{EntityKind, OrchestrationError, Project};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The file in `projects_dir` that remembers projects created elsewhere.
const REGISTRY_FILE: &str = ".orch-projects.json";

/// The project file of the project at `root`: `.orch/project.json`, or the original's.
pub(crate) fn project_file(root: &Path) -> Option<PathBuf> {
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
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| io_err("cannot create", dir, &e))?;
    }
    orch_resources::atomic::write_file(path, text.as_bytes())
        .map_err(|e| io_err("cannot write", path, &e))
}

impl ProjectManager {
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
    pub(crate) fn remembered(&self) -> BTreeMap<String, PathBuf> {
        let file = self.inner.projects_dir.join(REGISTRY_FILE);
        std::fs::read_to_string(file)
            .ok()
            .and_then(|t| serde_json::from_str::<BTreeMap<String, PathBuf>>(&t).ok())
            .unwrap_or_default()
    }

    pub(crate) fn remember(
        &self,
        name: &str,
        path: Option<&Path>,
    ) -> Result<(), OrchestrationError> {
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

    /// Queues the project's state for the store, when there is one.
    pub(crate) fn record(&self, p: &Project) {
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

    pub(crate) fn save(&self, p: &Project) -> Result<(), OrchestrationError> {
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
    pub(crate) fn update(
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
}
