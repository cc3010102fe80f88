//! Projects: `create_project`, `list_projects`, `manage_project`.

use crate::McpServer;
use crate::args::Args;
use crate::runs::{DEFAULT_WAIT, Start, wait_of};
use orch_engine::{CreateOptions, ProjectUpdate, RunTarget};
use orch_model::{EntityKind, OrchestrationError, ProjectStatus};
use serde_json::{Map, Value, json};
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// Most files `files_created` lists.
const MAX_FILES: usize = 500;

/// The files under `root`, relative to it, sorted (links not followed; at
/// most [`MAX_FILES`]).
fn files_under(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut dirs = vec![PathBuf::new()];
    while let Some(rel) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(root.join(&rel)) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(t) = e.file_type() else { continue };
            let r = rel.join(e.file_name());
            if t.is_dir() {
                dirs.push(r);
            } else if out.len() < MAX_FILES {
                out.push(r.display().to_string());
            }
        }
    }
    out.sort();
    out
}

impl McpServer {
    pub(crate) async fn create_project(&self, a: &Args) -> Result<Value, OrchestrationError> {
        let pm = self.engine.project_manager();
        let name = a.text("project_name");
        let template = a.str("template_name").unwrap_or("ai_analysis");
        // `custom` is an empty project unless a user template has that name.
        let template_opt =
            (template != "custom" || pm.get_template("custom").is_some()).then_some(template);
        let overrides = a.object("config_overrides");
        let p = pm.create_project(
            name,
            template_opt,
            a.str("project_path").map(Path::new),
            CreateOptions {
                description: a.str("description").unwrap_or_default().to_owned(),
                author: a.str("author").unwrap_or_default().to_owned(),
                tags: a.strings("tags"),
            },
        )?;
        if !overrides.is_empty() {
            pm.update_project(
                name,
                ProjectUpdate {
                    config: overrides,
                    ..ProjectUpdate::default()
                },
            )?;
        }
        let files = files_under(Path::new(&p.path));
        let mut next = Vec::new();
        let mut run = Value::Null;
        let wanted = a.str("workflow_name").map(str::to_owned);
        let run_it = a.flag("execute_workflow", false) || wanted.is_some();
        if run_it {
            let Some(wf) = wanted.or_else(|| p.workflows.first().cloned()) else {
                return Err(OrchestrationError::invalid_parameters(format!(
                    "project `{name}` was created, but its template `{template}` has no workflow to run"
                )));
            };
            let job = self
                .start_run(Start {
                    target: RunTarget::Project {
                        project: p.name.clone(),
                        workflow: wf,
                    },
                    params: a.object("workflow_parameters"),
                    session: None,
                    mode: None,
                    max_parallel: None,
                    timeout: None,
                    resources: None,
                    extra: Map::new(),
                })
                .await?;
            run = job.wait(wait_of(a, DEFAULT_WAIT)).await;
        } else {
            for w in &p.workflows {
                next.push(format!(
                    "run its `{w}` workflow: manage_project is for its state; `orch project run {} {w}` or create_project with execute_workflow runs it",
                    p.name
                ));
            }
        }
        next.push(format!(
            "see its status: manage_project {{\"project_name\": \"{}\", \"operation\": \"status\"}}",
            p.name
        ));
        Ok(json!({
            "status": "created",
            "project_id": p.name,
            "project_name": p.name,
            "project_type": p.project_type,
            "project_path": p.path,
            "template_used": template_opt,
            "workflows": p.workflows,
            "files_created": files,
            "workflow_executed": run_it,
            "workflow_result": run,
            "next_steps": next,
        }))
    }

    pub(crate) fn list_projects(&self) -> Value {
        let pm = self.engine.project_manager();
        let reload = pm.reload().err().map(|e| e.to_string());
        let list: Vec<Value> = pm
            .list_projects()
            .iter()
            .filter_map(|n| pm.get_project(n))
            .map(|p| {
                json!({
                    "name": p.name,
                    "type": p.project_type,
                    "status": p.status,
                    "path": p.path,
                    "created_at": p.created_at,
                    "updated_at": p.updated_at,
                    "description": p.description,
                    "workflows": p.workflows,
                })
            })
            .collect();
        let mut problems = pm.load_problems();
        problems.extend(reload);
        json!({"projects": list, "count": list.len(), "load_problems": problems})
    }

    pub(crate) fn manage_project(&self, a: &Args) -> Result<Value, OrchestrationError> {
        let pm = self.engine.project_manager();
        let name = a.text("project_name");
        let op = a.text("operation");
        let params = a.object("parameters");
        if pm.get_project(name).is_none() {
            pm.reload()?;
        }
        if pm.get_project(name).is_none() {
            return Err(OrchestrationError::NotFound {
                kind: EntityKind::Project,
                name: name.to_owned(),
                hint: Some(format!("known projects: {}", pm.list_projects().join(", "))),
            });
        }
        let allowed: &[&str] = match op {
            "status" => &[],
            "update" => &[
                "status",
                "description",
                "version",
                "author",
                "tags",
                "config",
                "metrics",
            ],
            "milestone" => &["name", "data"],
            _ => &["output"],
        };
        if let Some(k) = params.keys().find(|k| !allowed.contains(&k.as_str())) {
            return Err(OrchestrationError::invalid_parameters(format!(
                "manage_project `{op}`: unknown parameter `{k}`; its parameters: {}",
                if allowed.is_empty() {
                    "none".to_owned()
                } else {
                    allowed.join(", ")
                }
            )));
        }
        let text = |k: &str| -> Result<Option<String>, OrchestrationError> {
            match params.get(k) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(other) => Err(OrchestrationError::invalid_parameters(format!(
                    "manage_project `{op}`: `parameters.{k}` must be a string, found {other}"
                ))),
            }
        };
        let result = match op {
            "status" => json!({}),
            "update" => {
                let status = text("status")?
                    .map(|s| ProjectStatus::from_str(&s))
                    .transpose()
                    .map_err(OrchestrationError::invalid_parameters)?;
                let tags = match params.get("tags") {
                    None | Some(Value::Null) => None,
                    Some(v) => Some(serde_json::from_value::<Vec<String>>(v.clone()).map_err(
                        |_| {
                            OrchestrationError::invalid_parameters(
                                "manage_project `update`: `parameters.tags` must be a list of strings",
                            )
                        },
                    )?),
                };
                let object = |k: &str| match params.get(k) {
                    None | Some(Value::Null) => Ok(Map::new()),
                    Some(Value::Object(m)) => Ok(m.clone()),
                    Some(other) => Err(OrchestrationError::invalid_parameters(format!(
                        "manage_project `update`: `parameters.{k}` must be an object, found {other}"
                    ))),
                };
                let config = object("config")?;
                let metrics = object("metrics")?;
                let update = ProjectUpdate {
                    status,
                    description: text("description")?,
                    version: text("version")?,
                    author: text("author")?,
                    tags,
                    config,
                };
                if update == ProjectUpdate::default() && metrics.is_empty() {
                    return Err(OrchestrationError::invalid_parameters(
                        "manage_project `update`: nothing to update; give parameters such as {\"status\": \"active\"} or {\"metrics\": {\"coverage\": 0.8}}",
                    ));
                }
                let changed: Vec<&String> = params.keys().collect();
                pm.update_project(name, update)?;
                if !metrics.is_empty() {
                    pm.update_project_metrics(name, &metrics)?;
                }
                json!({"updated": changed})
            }
            "milestone" => {
                let Some(key) = text("name")? else {
                    return Err(OrchestrationError::invalid_parameters(
                        "manage_project `milestone`: give `parameters.name` (the milestone's key) and optionally `parameters.data`",
                    ));
                };
                let data = params.get("data").cloned().unwrap_or_else(|| json!({}));
                let p = pm.add_project_milestone(name, &key, &data)?;
                json!({"milestone": key, "recorded": p.milestones.get(&key)})
            }
            _ => {
                let output = text("output")?;
                let path = pm.archive_project(name, output.as_deref().map(Path::new))?;
                json!({"archive": path})
            }
        };
        let status = pm.get_project_status(name);
        Ok(json!({
            "status": "ok",
            "operation": op,
            "project_status": status,
            "operation_result": result,
        }))
    }
}
