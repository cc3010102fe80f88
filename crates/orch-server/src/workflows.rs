//! Workflows: list, get, validate a posted definition, save.

use crate::AppState;
use crate::error::{ApiError, ApiResult, JsonBody};
use crate::params;
use axum::Json;
use axum::extract::{Path, State};
use orch_model::definition::NameKind;
use orch_model::{Format, Limits, OrchestrationError, ValidWorkflow};
use serde::Deserialize;
use serde_json::{Value, json};

/// A posted definition: text in a format, or a JSON object.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DefinitionBody {
    definition: Value,
    #[serde(default)]
    format: Option<String>,
}

/// The format a request names (default YAML, which reads JSON too).
pub(crate) fn format_of(name: Option<&str>) -> ApiResult<Format> {
    match name.map(str::to_ascii_lowercase).as_deref() {
        None | Some("yaml" | "yml") => Ok(Format::Yaml),
        Some("json") => Ok(Format::Json),
        Some("toml") => Ok(Format::Toml),
        Some(other) => Err(ApiError::bad_request(format!(
            "unknown format {other:?}: give yaml, json or toml"
        ))),
    }
}

/// Reads and validates a posted definition: a string in `format`, or a JSON
/// object. Every problem, with its path, line and column, is in the error.
pub(crate) fn load(
    definition: &Value,
    format: Option<&str>,
    limits: &Limits,
) -> ApiResult<Result<ValidWorkflow, OrchestrationError>> {
    let (text, format) = match definition {
        Value::String(s) => (s.clone(), format_of(format)?),
        Value::Object(_) => (
            serde_json::to_string_pretty(definition)
                .map_err(|e| ApiError::internal(format!("cannot re-encode the definition: {e}")))?,
            Format::Json,
        ),
        _ => {
            return Err(ApiError::bad_request(
                "`definition` must be the definition's text (YAML, JSON or TOML) or a JSON object"
                    .into(),
            ));
        }
    };
    Ok(
        orch_model::load_workflow(&text, format, limits, Some("definition"))
            .map_err(OrchestrationError::Validation),
    )
}

/// `GET /workflows`.
pub(crate) async fn list(State(st): State<AppState>) -> Json<Value> {
    let wm = st.engine().workflow_manager();
    Json(json!({
        "workflows": wm.list_workflows(),
        "load_problems": wm.load_problems(),
    }))
}

/// `POST /validate`: 200 with `valid` and every problem (a definition with
/// problems is an answer, not an error); 400 for a body that is not one.
pub(crate) async fn validate(
    State(st): State<AppState>,
    JsonBody(body): JsonBody<DefinitionBody>,
) -> ApiResult<Json<Value>> {
    let wm = st.engine().workflow_manager();
    let checked = load(&body.definition, body.format.as_deref(), wm.limits())?
        .and_then(|v| wm.check_definition(v.workflow()));
    Ok(Json(match checked {
        Ok(v) => json!({
            "valid": true,
            "name": v.workflow().name,
            "steps": v.workflow().steps.len(),
            "levels": v.execution_order(),
            "problems": [],
        }),
        Err(e) => {
            let r = e.to_response();
            let problems =
                r.details.get("problems").cloned().unwrap_or_else(
                    || json!([{ "kind": "invalid", "path": "", "message": r.error }]),
                );
            json!({
                "valid": false,
                "error_code": r.error_code,
                "problems": problems,
            })
        }
    }))
}

/// `GET /workflows/{name}`.
pub(crate) async fn get(
    State(st): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    let wm = st.engine().workflow_manager();
    params::name(NameKind::Workflow, &name, wm.limits())?;
    let valid = wm.get_valid(&name).ok_or_else(|| {
        ApiError::from(OrchestrationError::NotFound {
            kind: orch_model::EntityKind::Workflow,
            name: name.clone(),
            hint: Some("GET /workflows lists them".into()),
        })
    })?;
    Ok(Json(json!({
        "name": name,
        "path": wm.workflow_path(&name),
        "definition": valid.workflow(),
        "levels": valid.execution_order(),
    })))
}

/// `PUT /workflows/{name}`: the definition's name must be `name`.
pub(crate) async fn save(
    State(st): State<AppState>,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<DefinitionBody>,
) -> ApiResult<Json<Value>> {
    let wm = st.engine().workflow_manager();
    params::name(NameKind::Workflow, &name, wm.limits())?;
    let valid = load(&body.definition, body.format.as_deref(), wm.limits())??;
    let wf = valid.workflow();
    if wf.name != name {
        return Err(ApiError::bad_request(format!(
            "the definition is named `{}`, not `{name}`: PUT it to /workflows/{}, or rename it",
            wf.name, wf.name
        )));
    }
    let path = wm.save_workflow(wf)?;
    Ok(Json(json!({
        "name": name,
        "saved": true,
        "path": path,
        "steps": wf.steps.len(),
    })))
}
