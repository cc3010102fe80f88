//! Looking up templates and projects: by name, by directory, by filter.

use crate::template::ProjectTemplate;
use crate::{ProjectManager, lock};
use orch_model::{EntityKind, OrchestrationError, Project, ProjectStatus, ProjectType};
use std::path::Path;

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

impl ProjectManager {
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

    pub(crate) fn not_found(&self, name: &str) -> OrchestrationError {
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
}
