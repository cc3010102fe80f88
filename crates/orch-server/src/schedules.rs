//! Schedules (docs/schedules.md): list them with who fires them, pause,
//! resume, and trigger a run now. What `orch schedule` does, over HTTP.

use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::params;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::Utc;
use orch_engine::schedule::ScheduleInfo;
use orch_model::definition::NameKind;
use serde_json::{Value, json};

/// `GET /schedules`: every scheduled workflow of the workflows directory
/// (schedule, catch-up policy, pause, next tick, counts, last fired and
/// missed ticks) and the process that fires them now (`leader`, none when
/// no scheduler runs).
pub(crate) async fn list(State(st): State<AppState>) -> ApiResult<Json<Value>> {
    let now = Utc::now();
    let infos = st.engine().schedules(now).await?;
    let leader = st.engine().schedule_leader(now).await?;
    Ok(Json(json!({
        "schedules": infos,
        "leader": leader.map(|(holder, until)| json!({"holder": holder, "until": until})),
    })))
}

/// The schedule of `name` as `GET /schedules` lists it.
async fn one(st: &AppState, name: &str) -> ApiResult<ScheduleInfo> {
    st.engine()
        .schedules(Utc::now())
        .await?
        .into_iter()
        .find(|i| i.workflow == name)
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "workflow `{name}` has no schedule; GET /schedules lists the scheduled workflows"
            ))
        })
}

fn checked(st: &AppState, name: &str) -> ApiResult<()> {
    params::name(
        NameKind::Workflow,
        name,
        st.engine().workflow_manager().limits(),
    )
}

/// `POST /schedules/{name}/pause`: no tick fires until it is resumed, in
/// every process sharing the store. `changed` is false when it was paused
/// already.
pub(crate) async fn pause(
    State(st): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    checked(&st, &name)?;
    let changed = st.engine().pause_schedule(&name, Utc::now()).await?;
    let info = one(&st, &name).await?;
    Ok(Json(
        json!({"workflow": name, "paused": true, "changed": changed, "schedule": info}),
    ))
}

/// `POST /schedules/{name}/resume`: its next tick fires (ticks missed while
/// paused are not caught up). `changed` is false when it was not paused.
pub(crate) async fn resume(
    State(st): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    checked(&st, &name)?;
    let changed = st.engine().resume_schedule(&name).await?;
    let info = one(&st, &name).await?;
    Ok(Json(
        json!({"workflow": name, "paused": false, "changed": changed, "schedule": info}),
    ))
}

/// `POST /schedules/{name}/trigger`: starts a run now, in this server, with
/// `${schedule.time}` set to now (whole seconds), recorded as a triggered
/// tick, paused or not; 202 with the run's id. 409 when a run was started
/// for this very second already.
pub(crate) async fn trigger(
    State(st): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    checked(&st, &name)?;
    let handle = st.engine().trigger_schedule(&name, Utc::now()).await?;
    let id = handle.run_id();
    st.drive(handle, None);
    // Answered once the store has the run, so that its id can be read at once.
    crate::runs::wait_recorded(&st, id).await?;
    let tick = st
        .engine()
        .schedule_ticks(Some(&name), 100)
        .await?
        .into_iter()
        .find(|t| t.run == Some(id))
        .map(|t| t.tick);
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({
            "run_id": id,
            "workflow": name,
            "tick": tick.map(orch_engine::schedule::tick_text),
            "state": "running",
            "links": {
                "run": format!("/runs/{id}"),
                "events": format!("/runs/{id}/events"),
                "stream": format!("/runs/{id}/events/stream"),
            },
        })),
    ))
}
