//! Tracking: a project's status, milestones, metrics (workflow runs counted), field updates and the summary of all projects.

use crate::{ProjectManager, lock};
use chrono::{DateTime, Utc};
use orch_model::{OrchestrationError, Project, ProjectStatus, ProjectType, WorkflowStatus};
use orch_tasks::RunReport;
use serde::Serialize;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

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

impl ProjectManager {
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
