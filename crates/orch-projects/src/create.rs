//! Creating a project: the target's parent opened once, the tree built in a staging directory by descriptor (template directories, files, workflows, documents, project file) and renamed into place.

use crate::template::{self, ProjectTemplate, safe_relative};
use crate::{PROJECT_DIR, ProjectManager, confined_err, denied, docs, io_err, lock, project_err};
use chrono::Utc;
use orch_model::definition::{NameKind, check_name};
use orch_model::{EntityKind, OrchestrationError, Project};
use orch_tasks::confined::{EntryKind, Root};
use serde_json::Value;
use std::path::{Path, PathBuf};

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

impl ProjectManager {
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
}
