//! `ProjectManagerBuilder`: where projects, templates, runs and records live.

use crate::template::load_templates;
use crate::{Inner, ProjectManager};
use orch_model::{Limits, OrchestrationError};
use orch_tasks::ActionRegistry;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

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
}
