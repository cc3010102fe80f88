//! Projects: templates, create, list, get, milestones, metrics, and runs of a project's workflows.

use crate::AppState;
use crate::error::{ApiError, ApiResult, JsonBody};
use crate::params;
use crate::runs::{RunBody, start};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use orch_engine::{CreateOptions, RunTarget};
use orch_model::definition::NameKind;
use orch_model::{EntityKind, OrchestrationError};
use serde::Deserialize;
use serde_json::{Map, Value, json};

/// `POST /projects`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateBody {
    name: String,
    #[serde(default)]
    template: Option<String>,
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    description: String,
    #[serde(default)]
    author: String,
    #[serde(default)]
    tags: Vec<String>,
}

/// `POST /projects/{name}/milestones`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MilestoneBody {
    key: String,
    #[serde(default)]
    data: Value,
}

fn check(st: &AppState, name: &str) -> ApiResult<()> {
    params::name(
        NameKind::Project,
        name,
        st.engine().workflow_manager().limits(),
    )
}

fn not_found(name: &str) -> ApiError {
    ApiError::from(OrchestrationError::NotFound {
        kind: EntityKind::Project,
        name: name.to_owned(),
        hint: Some("GET /projects lists them".into()),
    })
}

/// `GET /templates`.
pub(crate) async fn templates(State(st): State<AppState>) -> Json<Value> {
    let pm = st.engine().project_manager();
    let list: Vec<Value> = pm
        .list_templates()
        .into_iter()
        .filter_map(|n| pm.get_template(&n))
        .map(|t| json!(t))
        .collect();
    Json(json!({ "templates": list }))
}

/// `GET /projects`.
pub(crate) async fn list(State(st): State<AppState>) -> Json<Value> {
    let pm = st.engine().project_manager();
    Json(json!({
        "projects": pm.list_projects(),
        "summary": pm.get_projects_summary(),
        "load_problems": pm.load_problems(),
    }))
}

/// `POST /projects`: 201. A `path` must be relative (to the server's work
/// directory); without one the project goes under `$ORCH_HOME/projects`.
pub(crate) async fn create(
    State(st): State<AppState>,
    JsonBody(b): JsonBody<CreateBody>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    check(&st, &b.name)?;
    if let Some(p) = &b.path {
        let path = std::path::Path::new(p);
        if path.is_absolute()
            || path
                .components()
                .any(|c| matches!(c, std::path::Component::ParentDir))
        {
            return Err(ApiError::bad_request(format!(
                "`path` {p:?} must be relative to the server's work directory, without `..`; \
                 leave it out to create the project under $ORCH_HOME/projects"
            )));
        }
    }
    let pm = st.engine().project_manager();
    let template = b.template.as_deref().unwrap_or("custom");
    // `custom` is an empty project unless a user template has that name.
    let template =
        (template != "custom" || pm.get_template("custom").is_some()).then_some(template);
    let p = pm.create_project(
        &b.name,
        template,
        b.path.as_deref().map(std::path::Path::new),
        CreateOptions {
            description: b.description,
            author: b.author,
            tags: b.tags,
        },
    )?;
    Ok((StatusCode::CREATED, Json(json!(p))))
}

/// `GET /projects/{name}`.
pub(crate) async fn get(
    State(st): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    check(&st, &name)?;
    let pm = st.engine().project_manager();
    let status = pm
        .get_project_status(&name)
        .ok_or_else(|| not_found(&name))?;
    let project = pm.get_project(&name);
    Ok(Json(json!({ "status": status, "project": project })))
}

/// `POST /projects/{name}/milestones`.
pub(crate) async fn milestone(
    State(st): State<AppState>,
    Path(name): Path<String>,
    JsonBody(b): JsonBody<MilestoneBody>,
) -> ApiResult<Json<Value>> {
    check(&st, &name)?;
    let p = st
        .engine()
        .project_manager()
        .add_project_milestone(&name, &b.key, &b.data)?;
    Ok(Json(json!({ "project": name, "milestones": p.milestones })))
}

/// `POST /projects/{name}/metrics`: each value replaces the old one.
pub(crate) async fn metrics(
    State(st): State<AppState>,
    Path(name): Path<String>,
    JsonBody(m): JsonBody<Map<String, Value>>,
) -> ApiResult<Json<Value>> {
    check(&st, &name)?;
    let p = st
        .engine()
        .project_manager()
        .update_project_metrics(&name, &m)?;
    Ok(Json(json!({ "project": name, "metrics": p.metrics })))
}

/// `POST /projects/{name}/runs`: a run of one of the project's workflows.
pub(crate) async fn run(
    State(st): State<AppState>,
    Path(name): Path<String>,
    JsonBody(mut b): JsonBody<RunBody>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    check(&st, &name)?;
    if b.has_definition() {
        return Err(ApiError::bad_request(
            "a project's run names one of its workflows (`workflow`); post a definition to \
             /runs instead"
                .into(),
        ));
    }
    let Some(workflow) = b.workflow.take() else {
        return Err(ApiError::bad_request(
            "give `workflow`: the name of one of the project's workflows".into(),
        ));
    };
    params::name(
        NameKind::Workflow,
        &workflow,
        st.engine().workflow_manager().limits(),
    )?;
    if st.engine().project_manager().get_project(&name).is_none() {
        return Err(not_found(&name));
    }
    start(
        &st,
        RunTarget::Project {
            project: name,
            workflow,
        },
        b,
    )
    .await
}
