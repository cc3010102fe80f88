//! Running a project's workflows: its own workflow manager, parameters from its config, runs counted in its metrics; a project created from a template and run at once; the template workflows a workflow manager can add.

use crate::create::CreateOptions;
use crate::{PROJECT_DIR, ProjectManager, project_err, template};
use orch_model::{EntityKind, OrchestrationError, Project, ProjectStatus};
use orch_tasks::RunReport;
use orch_workflows::{ExecuteOptions, WorkflowManager};
use serde_json::{Map, Value, json};
use std::path::{Path, PathBuf};

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

/// The outcome of [`ProjectManager::create_project_from_workflow`].
#[derive(Debug)]
pub struct ProjectFromWorkflow {
    /// The project as it is after the run.
    pub project: Project,
    /// The workflow's run, or why it could not start.
    pub run: Result<RunReport, OrchestrationError>,
}

impl ProjectManager {
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
