//! Health, status, resources and sessions.

use crate::AppState;
use crate::error::{ApiError, ApiResult, JsonBody};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use orch_engine::SessionOptions;
use orch_model::SessionId;
use serde_json::{Value, json};

/// `GET /health`: 200 when healthy, 503 otherwise (the body says why).
pub(crate) async fn health(State(st): State<AppState>) -> (StatusCode, Json<Value>) {
    let report = st.engine().health_check();
    let code = if report.overall_status.is_healthy() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(json!(report)))
}

/// `GET /status`: with `workers` when the store distributes claims.
pub(crate) async fn status(State(st): State<AppState>) -> Json<Value> {
    let mut v = json!(st.engine().get_system_status());
    v["store"] = json!({
        "url": st.engine().store_url(),
        "backend": st.engine().store().backend(),
        "capabilities": st.engine().store().capabilities(),
    });
    // A store that hands out work to other processes (PostgreSQL) keeps the
    // workers' records: they are listed, lost ones marked.
    if st.engine().store().capabilities().distributed_claim {
        v["workers"] = json!(st.engine().worker_report().await);
    }
    Json(v)
}

/// `GET /resources`.
pub(crate) async fn resources(State(st): State<AppState>) -> Json<Value> {
    let rm = st.engine().resource_manager();
    Json(json!({
        "resources": rm.list_resources(),
        "usage": rm.get_resource_usage(None),
    }))
}

/// `GET /sessions`.
pub(crate) async fn sessions(State(st): State<AppState>) -> Json<Value> {
    Json(json!({ "sessions": st.engine().list_sessions() }))
}

fn session_id(s: &str) -> ApiResult<SessionId> {
    s.parse::<SessionId>().map_err(|e| {
        ApiError::bad_request(format!(
            "{s:?} is not a session id ({e}); GET /sessions lists them"
        ))
    })
}

/// `POST /sessions`.
pub(crate) async fn create_session(
    State(st): State<AppState>,
    JsonBody(opts): JsonBody<SessionOptions>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let id = st.engine().create_session(opts)?;
    let session = st.engine().get_session(&id);
    Ok((
        StatusCode::CREATED,
        Json(json!({ "session_id": id, "session": session })),
    ))
}

/// `GET /sessions/{id}`.
pub(crate) async fn session(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let sid = session_id(&id)?;
    st.engine()
        .get_session(&sid)
        .map(|s| Json(json!(s)))
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "session `{id}` not found; GET /sessions lists them"
            ))
        })
}

/// `DELETE /sessions/{id}`: 409 when the session has already ended.
pub(crate) async fn close_session(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let sid = session_id(&id)?;
    if st.engine().get_session(&sid).is_none() {
        return Err(ApiError::not_found(format!(
            "session `{id}` not found; GET /sessions lists them"
        )));
    }
    if !st.engine().close_session(&sid) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            orch_model::ErrorCode::InvalidState,
            "StateError",
            format!("session `{id}` has already ended"),
        ));
    }
    Ok(Json(
        json!({ "session_id": sid, "closed": true, "session": st.engine().get_session(&sid) }),
    ))
}
