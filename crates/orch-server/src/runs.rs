//! Runs: start one (by name, posted definition, or a project's workflow), list, read one with its steps, events and logs, cancel, resume.

use crate::AppState;
use crate::error::{ApiError, ApiResult, JsonBody};
use crate::params::{self, find_run};
use crate::workflows;
use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use chrono::{DateTime, Utc};
use orch_engine::{CancelOutcome, Event, RunRequest, RunState, RunTarget};
use orch_model::definition::NameKind;
use orch_model::store::{RunRecord, TaskRecord};
use orch_model::{ExecutionMode, RunId, TaskStatus, WorkflowStatus};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc::UnboundedReceiver;

/// The query of a request, checked against the keys its route documents.
pub(crate) type RawQuery = Result<Query<HashMap<String, String>>, QueryRejection>;

/// The query's values; 400 for a malformed query or a key the route does not take.
pub(crate) fn query(q: RawQuery, known: &[&str]) -> ApiResult<HashMap<String, String>> {
    let Query(map) = q.map_err(|e| ApiError::bad_request(format!("bad query: {e}")))?;
    if let Some(k) = map.keys().find(|k| !known.contains(&k.as_str())) {
        return Err(ApiError::bad_request(format!(
            "unknown query parameter `{k}`; this route takes: {}",
            if known.is_empty() {
                "none".to_owned()
            } else {
                known.join(", ")
            }
        )));
    }
    Ok(map)
}

/// A number from the query, within `max`.
pub(crate) fn num(
    q: &HashMap<String, String>,
    key: &str,
    default: u64,
    max: u64,
) -> ApiResult<u64> {
    match q.get(key) {
        None => Ok(default),
        Some(s) => match s.parse::<u64>() {
            Ok(n) if n <= max => Ok(n),
            _ => Err(ApiError::bad_request(format!(
                "`{key}` must be a whole number from 0 to {max}, not {s:?}"
            ))),
        },
    }
}

/// How a posted run runs (`POST /runs`, `POST /projects/{name}/runs`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RunBody {
    #[serde(default)]
    pub(crate) workflow: Option<String>,
    #[serde(default)]
    definition: Option<Value>,
    #[serde(default)]
    format: Option<String>,
    #[serde(default)]
    params: Map<String, Value>,
    #[serde(default)]
    mode: Option<ExecutionMode>,
    #[serde(default)]
    max_parallel: Option<usize>,
    #[serde(default)]
    timeout: Option<Value>,
    #[serde(default)]
    no_cache: bool,
    #[serde(default)]
    detach: bool,
    #[serde(default)]
    wait: bool,
}

impl RunBody {
    /// Whether a definition was posted (a project's run takes none).
    pub(crate) fn has_definition(&self) -> bool {
        self.definition.is_some()
    }
}

fn timeout_of(v: Option<&Value>) -> ApiResult<Option<Duration>> {
    let bad = |why: String| {
        ApiError::bad_request(format!(
            "`timeout` {why}: give seconds (a positive number) or a duration like \"30s\", \"5m\""
        ))
    };
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => match n.as_f64() {
            Some(s) if s > 0.0 && s.is_finite() && s < 1e9 => Ok(Some(Duration::from_secs_f64(s))),
            _ => Err(bad(format!("is {n}"))),
        },
        Some(Value::String(s)) => orch_model::duration::parse_timeout(s)
            .map(Some)
            .map_err(&bad),
        Some(other) => Err(bad(format!("is {other}"))),
    }
}

/// The run's state ([`orch_engine::run_state`]: it looks whether the run's
/// owner process is alive, two files of `/proc` read, only for a run whose
/// status is `running`; a run read by `GET /runs/{id}` has mostly ended).
pub(crate) use orch_engine::run_state;
/// The state shown for a run: `queued` for a submitted run that waits for
/// a slot of its concurrency key, otherwise [`run_state`]'s.
use orch_engine::shown_state;

/// A run as `GET /runs/{id}` answers it: [`run_json`]'s fields in its
/// order (the JSON is the same), serialized straight from the record
/// without building a `Value` first.
#[derive(serde::Serialize)]
struct RunView<'a> {
    id: RunId,
    workflow: &'a str,
    state: &'static str,
    status: WorkflowStatus,
    created_at: DateTime<Utc>,
    finished_at: Option<DateTime<Utc>>,
    params: &'a Map<String, Value>,
    owner: Option<&'a str>,
    cancel_requested: bool,
    parent: Option<RunId>,
    tasks: orch_model::store::TaskCounts,
    #[serde(skip_serializing_if = "Option::is_none")]
    definition: Option<Value>,
}

impl<'a> RunView<'a> {
    fn of(r: &'a RunRecord) -> Self {
        Self {
            id: r.id,
            workflow: &r.workflow,
            state: shown_state(r),
            status: r.status,
            created_at: r.created_at,
            finished_at: r.finished_at,
            params: &r.params,
            owner: r.owner.as_deref(),
            cancel_requested: r.cancel_requested,
            parent: r.parent,
            tasks: r.tasks,
            definition: None,
        }
    }
}

/// A run as the API shows it (its definition only when asked for).
pub(crate) fn run_json(r: &RunRecord) -> Value {
    json!({
        "id": r.id,
        "workflow": r.workflow,
        "state": shown_state(r),
        "status": r.status,
        "created_at": r.created_at,
        "finished_at": r.finished_at,
        "params": r.params,
        "owner": r.owner,
        "cancel_requested": r.cancel_requested,
        "parent": r.parent,
        "tasks": r.tasks,
    })
}

/// Starts `target` with `body`'s options; 202 with the run's id at once, or
/// (with `wait`) 200 with the run once it has ended. Runs started here are
/// driven by the server, whoever waits: a client that goes away does not
/// stop its run.
pub(crate) async fn start(
    st: &AppState,
    target: RunTarget,
    body: RunBody,
) -> ApiResult<(StatusCode, Json<Value>)> {
    if body.max_parallel == Some(0) {
        return Err(ApiError::bad_request(
            "`max_parallel` must be at least 1".into(),
        ));
    }
    let mut req = RunRequest::new(target).params(body.params);
    req.mode = body.mode;
    req.max_parallel = body.max_parallel;
    req.run_timeout = timeout_of(body.timeout.as_ref())?;
    req.no_cache = body.no_cache;
    req.detach = body.detach;
    // A run driven here tells with its first event whether it waits for its
    // concurrency key (a submitted one is recorded `queued` instead).
    req.events = !body.detach;
    let mut handle = st.engine().run(req).await?;
    let (id, session) = (handle.run_id(), handle.session_id());
    let workflow = handle.workflow().workflow().name.clone();
    let answer = |state: &str| {
        json!({
            "run_id": id,
            "session_id": session,
            "workflow": workflow,
            "state": state,
            "links": {
                "run": format!("/runs/{id}"),
                "events": format!("/runs/{id}/events"),
                "stream": format!("/runs/{id}/events/stream"),
            },
        })
    };
    if body.detach {
        // A submitted run is the workers'; its handle only follows it.
        drop(handle);
    } else {
        let mut events = handle.events();
        let mut how = began(events.as_mut()).await;
        if body.wait && matches!(how, Began::Waiting(_)) {
            // The wait is told once: the next event says it started.
            how = began(events.as_mut()).await;
        }
        // Not read any further (the run's own log has them all).
        drop(events);
        match how {
            Began::Waiting(waiting) => {
                // Not recorded until it takes a slot: answered now, with
                // what it waits for (GET /runs/{id} says the same meanwhile).
                st.drive(handle, Some(waiting.clone()));
                let mut v = answer("waiting");
                v["waiting"] = waiting;
                return Ok((StatusCode::ACCEPTED, Json(v)));
            }
            Began::Ended => {
                // It ended before its first step: skipped because its key's
                // slots were held (`on_conflict: skip`; such a run is not
                // recorded), or it could not start (the error says why).
                let report = handle.report().await?;
                let mut v = answer("skipped");
                if let Some(o) = v.as_object_mut() {
                    o.remove("links");
                    o.insert("recorded".into(), json!(false));
                    o.insert(
                        "note".into(),
                        json!(report.steps.first().and_then(|s| s.note.clone())),
                    );
                }
                return Ok((StatusCode::OK, Json(v)));
            }
            Began::Started => st.drive(handle, None),
        }
    }
    // The run is recorded by its own task: answer once the store has it, so
    // that the id answered can be read at once.
    wait_recorded(st, id).await?;
    if body.wait {
        let r = wait_for_end(st, id).await?;
        return Ok((StatusCode::OK, Json(run_json(&r))));
    }
    Ok((StatusCode::ACCEPTED, Json(answer("running"))))
}

/// A run started here that waits for a slot of its concurrency key and is
/// not recorded yet, with what it waits for.
fn waiting_here(st: &AppState, id: &str) -> Option<(RunId, Value)> {
    let rid = id.parse::<RunId>().ok()?;
    st.waiting(rid).map(|w| (rid, w))
}

/// How a run driven here began, from its first event.
enum Began {
    /// It waits for a slot of its concurrency key: the key, the limit, the
    /// runs that hold the slots, and what it does about it.
    Waiting(Value),
    /// It started (or told nothing: a handle without events).
    Started,
    /// It ended before its first step.
    Ended,
}

async fn began(events: Option<&mut UnboundedReceiver<Event>>) -> Began {
    let Some(rx) = events else {
        return Began::Started;
    };
    match rx.recv().await {
        Some(Event::RunWaiting {
            key,
            limit,
            holders,
            on_conflict,
            ..
        }) => Began::Waiting(json!({
            "key": key,
            "limit": limit,
            "holders": holders,
            "on_conflict": on_conflict,
        })),
        Some(_) => Began::Started,
        None => Began::Ended,
    }
}

/// How long a new run may take to appear in the store.
const RECORD_WAIT: Duration = Duration::from_secs(30);

/// Waits until run `id` is in the store (or its task has ended without it).
pub(crate) async fn wait_recorded(st: &AppState, id: RunId) -> ApiResult<()> {
    let deadline = tokio::time::Instant::now() + RECORD_WAIT;
    let mut pause = Duration::from_millis(1);
    loop {
        if st.engine().store().get_run_brief(id).await?.is_some() {
            return Ok(());
        }
        if !st.is_driven(id) || tokio::time::Instant::now() >= deadline {
            return Err(ApiError::internal(format!(
                "run {id} started but is not in the store ({}); GET /runs shows what was recorded",
                if st.is_driven(id) {
                    "still not after 30 s"
                } else {
                    "it ended before it was recorded"
                }
            )));
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// Waits until the store says run `id` is no longer running.
pub(crate) async fn wait_for_end(st: &AppState, id: RunId) -> ApiResult<RunRecord> {
    let mut stopping = st.stopping();
    loop {
        let ended = st.ended().notified();
        let r = st
            .engine()
            .store()
            .get_run_brief(id)
            .await?
            .ok_or_else(|| ApiError::not_found(format!("run `{id}` is not in the store")))?;
        // A run driven here is going on until its task ends, whatever the
        // store shows meanwhile (its owner is recorded after the run is).
        if !st.is_driven(id) && run_state(&r) != RunState::Running {
            return Ok(r);
        }
        tokio::select! {
            () = ended => {}
            () = tokio::time::sleep(st.poll()) => {}
            _ = stopping.changed() => {
                return Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, orch_model::ErrorCode::Cancelled,
                    "ShutdownError", format!("the server is stopping; run {id} is still running")));
            }
        }
    }
}

/// `POST /runs`: a workflow by name, or a posted definition.
pub(crate) async fn submit(
    State(st): State<AppState>,
    JsonBody(mut body): JsonBody<RunBody>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let limits = st.engine().workflow_manager().limits().clone();
    let target = match (body.workflow.take(), body.definition.take()) {
        (Some(name), None) => {
            params::name(NameKind::Workflow, &name, &limits)?;
            RunTarget::Name(name)
        }
        (None, Some(def)) => {
            let valid = workflows::load(&def, body.format.as_deref(), &limits)??;
            RunTarget::Valid(Arc::new(valid))
        }
        _ => {
            return Err(ApiError::bad_request(
                "give either `workflow` (a workflow's name) or `definition` (its text or a JSON \
                 object), not both"
                    .into(),
            ));
        }
    };
    start(&st, target, body).await
}

/// `GET /runs`.
pub(crate) async fn list(State(st): State<AppState>, q: RawQuery) -> ApiResult<Json<Value>> {
    let q = query(q, &["status", "workflow", "since", "until", "limit"])?;
    let limit = num(&q, "limit", 50, 10_000)? as usize;
    let state = q.get("status").map(String::as_str);
    const STATES: &[&str] = &[
        "running",
        "completed",
        "failed",
        "cancelled",
        "interrupted",
        "queued",
    ];
    if let Some(s) = state {
        if !STATES.contains(&s) {
            return Err(ApiError::bad_request(format!(
                "unknown status {s:?}; give one of: {}",
                STATES.join(", ")
            )));
        }
    }
    let time = |key: &str| -> ApiResult<Option<DateTime<Utc>>> {
        q.get(key)
            .map(|s| {
                DateTime::parse_from_rfc3339(s)
                    .map(|t| t.with_timezone(&Utc))
                    .map_err(|e| {
                        ApiError::bad_request(format!(
                            "`{key}` {s:?} is not an RFC 3339 time ({e}), e.g. 2025-01-31T12:00:00Z"
                        ))
                    })
            })
            .transpose()
    };
    let (since, until) = (time("since")?, time("until")?);
    let workflow = q.get("workflow");
    let filtered = state.is_some() || workflow.is_some() || since.is_some() || until.is_some();
    let store = st.engine().store();
    let rows = if filtered {
        store.list_runs().await?
    } else {
        store.recent_runs(limit).await?
    };
    let runs: Vec<Value> = rows
        .iter()
        .filter(|r| state.is_none_or(|s| shown_state(r) == s))
        .filter(|r| workflow.is_none_or(|w| &r.workflow == w))
        .filter(|r| since.is_none_or(|t| r.created_at >= t))
        .filter(|r| until.is_none_or(|t| r.created_at < t))
        .take(limit)
        .map(run_json)
        .collect();
    Ok(Json(json!({ "runs": runs, "count": runs.len() })))
}

/// `GET /runs/{id}`.
pub(crate) async fn get(
    State(st): State<AppState>,
    Path(id): Path<String>,
    q: RawQuery,
) -> ApiResult<axum::response::Response> {
    let q = query(q, &["definition"])?;
    let with_def = match q.get("definition").map(String::as_str) {
        None | Some("false") => false,
        Some("true") => true,
        Some(o) => {
            return Err(ApiError::bad_request(format!(
                "`definition` is true or false, not {o:?}"
            )));
        }
    };
    let store = st.engine().store();
    let mut r = match find_run(store, &id).await {
        Ok(r) => r,
        Err(e) => {
            return match waiting_here(&st, &id) {
                Some((rid, w)) => Ok(Json(json!({
                    "run_id": rid,
                    "state": "waiting",
                    "waiting": w,
                }))
                .into_response()),
                None => Err(e),
            };
        }
    };
    if with_def && r.definition.is_empty() {
        if let Some(full) = store.get_run(r.id).await? {
            r = full;
        }
    }
    let mut view = RunView::of(&r);
    if with_def {
        view.definition = Some(
            serde_json::from_str(&r.definition)
                .unwrap_or_else(|_| Value::String(r.definition.clone())),
        );
    }
    Ok(Json(view).into_response())
}

fn step_json(t: &TaskRecord) -> Value {
    json!({
        "index": t.index,
        "name": t.name,
        "status": t.status,
        "attempt": t.attempt,
        "priority": t.priority,
        "lease": t.lease,
        "started_at": t.started_at,
        "finished_at": t.finished_at,
        "note": t.note,
        "result": t.result,
    })
}

/// The items of the fan-out steps over lists known at run time among `tasks`.
async fn items_of<'a>(
    store: &dyn orch_model::Store,
    run: RunId,
    tasks: impl Iterator<Item = &'a TaskRecord> + Send,
) -> Vec<orch_engine::StepItems> {
    orch_engine::fan_out_items(store, run, tasks).await
}

/// A step's JSON with its items (`items_run`, and `items`: each item's
/// name, status, attempts, times, note and result), when it fans out over
/// a list known at run time.
fn with_items(mut v: Value, t: &TaskRecord, items: &[orch_engine::StepItems]) -> Value {
    if let Some(it) = items.iter().find(|it| it.step == t.index) {
        v["items_run"] = json!(it.run);
        v["items"] = it.items.iter().map(step_json).collect();
    }
    v
}

/// `GET /runs/{id}/steps`.
pub(crate) async fn steps(
    State(st): State<AppState>,
    Path(id): Path<String>,
    q: RawQuery,
) -> ApiResult<Json<Value>> {
    let q = query(q, &["status", "offset", "limit"])?;
    let offset = num(&q, "offset", 0, u64::from(u32::MAX))? as usize;
    let limit = num(&q, "limit", 1000, 100_000)? as usize;
    let status = q
        .get("status")
        .map(|s| s.parse::<TaskStatus>().map_err(ApiError::bad_request))
        .transpose()?;
    let store = st.engine().store();
    let r = find_run(store, &id).await?;
    let mut tasks = store.tasks(r.id).await?;
    let shown = st.shown(r.id).await?;
    tasks.iter_mut().for_each(|t| shown.task(t));
    let total = tasks.len();
    let page: Vec<&TaskRecord> = tasks
        .iter()
        .filter(|t| status.is_none_or(|s| t.status == s))
        .skip(offset)
        .take(limit)
        .collect();
    let items = items_of(store.as_ref(), r.id, page.iter().copied()).await;
    let steps: Vec<Value> = page
        .into_iter()
        .map(|t| with_items(step_json(t), t, &items))
        .collect();
    Ok(Json(
        json!({ "run_id": r.id, "total": total, "steps": steps }),
    ))
}

/// The step `step` of run `id` (400 for a name that breaks the rules, 404 when the run has none).
pub(crate) async fn find_step(
    st: &AppState,
    id: &str,
    step: &str,
) -> ApiResult<(RunRecord, TaskRecord)> {
    params::name(
        NameKind::Step,
        step,
        st.engine().workflow_manager().limits(),
    )?;
    let store = st.engine().store();
    let r = find_run(store, id).await?;
    let mut t = store
        .tasks(r.id)
        .await?
        .into_iter()
        .find(|t| t.name == step)
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "run {} has no step `{step}`; GET /runs/{}/steps lists them",
                r.id, r.id
            ))
        })?;
    st.shown(r.id).await?.task(&mut t);
    Ok((r, t))
}

/// `GET /runs/{id}/steps/{step}`.
pub(crate) async fn step(
    State(st): State<AppState>,
    Path((id, step)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let (r, t) = find_step(&st, &id, &step).await?;
    let items = items_of(st.engine().store().as_ref(), r.id, std::iter::once(&t)).await;
    let mut v = with_items(step_json(&t), &t, &items);
    v["run_id"] = json!(r.id);
    Ok(Json(v))
}

/// `GET /runs/{id}/steps/{step}/logs`: what the step printed: its result
/// once it has ended, its output so far while it runs (`output.rs`).
pub(crate) async fn logs(
    State(st): State<AppState>,
    Path((id, step)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let (r, t) = find_step(&st, &id, &step).await?;
    if !t.status.is_terminal() {
        return crate::output::running_logs(st.engine().store(), r.id, &t)
            .await
            .map(Json);
    }
    let data = t.result.as_ref().map(|x| &x.data);
    let text = |k: &str| data.and_then(|d| d.get(k)).and_then(Value::as_str);
    Ok(Json(json!({
        "run_id": r.id,
        "step": t.name,
        "status": t.status,
        "ended": t.status.is_terminal(),
        "stdout": text("stdout"),
        "stderr": text("stderr"),
        "exit_code": data.and_then(|d| d.get("exit_code")),
        "success": t.result.as_ref().map(|x| x.success),
        "error_type": t.result.as_ref().and_then(|x| x.error_type.clone()),
        "error_message": t.result.as_ref().and_then(|x| x.error_message.clone()),
    })))
}

/// `GET /runs/{id}/events`.
pub(crate) async fn events(
    State(st): State<AppState>,
    Path(id): Path<String>,
    q: RawQuery,
) -> ApiResult<Json<Value>> {
    let q = query(q, &["after", "limit"])?;
    let after = num(&q, "after", 0, u64::MAX)?;
    let limit = num(&q, "limit", 1000, 100_000)? as usize;
    let store = st.engine().store();
    let r = find_run(store, &id).await?;
    let mut evs = store.events(r.id, after).await?;
    let more = evs.len() > limit;
    evs.truncate(limit);
    let next = evs.last().map_or(after, |e| e.seq);
    Ok(Json(json!({
        "run_id": r.id,
        "events": evs,
        "next": next,
        "more": more,
        "state": shown_state(&r),
    })))
}

/// `POST /runs/{id}/cancel`: 200 with what was done; 409 when the run has ended.
pub(crate) async fn cancel(
    State(st): State<AppState>,
    Path(id): Path<String>,
    q: RawQuery,
) -> ApiResult<Json<Value>> {
    let q = query(q, &["wait"])?;
    let wait = Duration::from_secs(num(&q, "wait", 10, 600)?);
    let r = match find_run(st.engine().store(), &id).await {
        Ok(r) => r,
        Err(e) => {
            // A run waiting here for its key stops waiting and ends, unrecorded.
            return match waiting_here(&st, &id) {
                Some((rid, _)) if st.cancel_driven(rid) => Ok(Json(json!({
                    "run_id": rid,
                    "outcome": "stopped",
                    "run": null,
                }))),
                _ => Err(e),
            };
        }
    };
    // A run driven here stops at once; any other is asked through the store.
    st.cancel_driven(r.id);
    let outcome = st.engine().cancel_run(r.id, wait).await?;
    let after = st.engine().store().get_run_brief(r.id).await?;
    Ok(Json(json!({
        "run_id": r.id,
        "outcome": match outcome {
            CancelOutcome::Stopped => "stopped",
            CancelOutcome::Asked => "asked",
            CancelOutcome::MarkedCancelled => "marked_cancelled",
        },
        "run": after.as_ref().map(run_json),
    })))
}

/// `POST /runs/{id}/retry[?from=STEP]`: a new run that keeps the completed
/// steps of a failed or cancelled one; 202; 409 for a run that did not fail
/// and was not cancelled.
pub(crate) async fn retry(
    State(st): State<AppState>,
    Path(id): Path<String>,
    q: RawQuery,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let q = query(q, &["from"])?;
    let r = find_run(st.engine().store(), &id).await?;
    let from = q.get("from").cloned();
    start(
        &st,
        RunTarget::Retry { run: r.id, from },
        RunBody::default(),
    )
    .await
}

/// `POST /runs/{id}/resume`: 202; 409 when the run is not interrupted.
pub(crate) async fn resume(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let r = find_run(st.engine().store(), &id).await?;
    start(&st, RunTarget::Resume(r.id), RunBody::default()).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(status: WorkflowStatus, owner: Option<&str>) -> RunRecord {
        let mut tasks = orch_model::store::TaskCounts::default();
        tasks.add(TaskStatus::Completed, 3);
        tasks.add(TaskStatus::Failed, 1);
        let mut params = Map::new();
        params.insert("name".into(), json!("a \"quoted\" é"));
        params.insert("n".into(), json!([1, 2.5, null, {"k": true}]));
        RunRecord {
            id: RunId::new(),
            workflow: "etl.daily".into(),
            status,
            created_at: Utc::now(),
            finished_at: Some(Utc::now()),
            params,
            definition: r#"{"name": "etl.daily", "steps": []}"#.into(),
            owner: owner.map(str::to_owned),
            cancel_requested: true,
            parent: Some(RunId::new()),
            tasks,
        }
    }

    /// `GET /runs/{id}` answers the bytes `run_json` gives (keys in its
    /// order), with the definition last when asked for.
    #[test]
    fn a_runs_view_is_its_json() {
        for r in [
            record(WorkflowStatus::Completed, Some("1:2@elsewhere")),
            record(WorkflowStatus::Running, Some("1:2@elsewhere")),
            record(WorkflowStatus::Running, None),
            RunRecord {
                finished_at: None,
                parent: None,
                params: Map::new(),
                ..record(WorkflowStatus::Failed, None)
            },
        ] {
            let view = serde_json::to_string(&RunView::of(&r)).expect("view");
            let json = serde_json::to_string(&run_json(&r)).expect("json");
            assert_eq!(view, json);
            let mut with = RunView::of(&r);
            with.definition = Some(serde_json::from_str(&r.definition).expect("definition"));
            let mut expected = run_json(&r);
            expected["definition"] = serde_json::from_str(&r.definition).expect("definition");
            assert_eq!(
                serde_json::to_string(&with).expect("view"),
                serde_json::to_string(&expected).expect("json")
            );
        }
    }

    /// The state does not depend on the owner unless the run is running.
    #[test]
    fn the_state_looks_at_the_owner_only_when_running() {
        assert_eq!(
            run_state(&record(WorkflowStatus::Completed, None)),
            RunState::Completed
        );
        assert_eq!(
            run_state(&record(WorkflowStatus::Running, None)),
            RunState::Interrupted
        );
        // Another host's process is taken to be alive.
        assert_eq!(
            run_state(&record(WorkflowStatus::Running, Some("1:2@elsewhere"))),
            RunState::Running
        );
    }

    /// A submitted run waiting for a slot of its concurrency key shows as
    /// `queued` (in a run's JSON and its view); once it has its slot, or
    /// once it has ended, as its state says.
    #[test]
    fn a_run_waiting_for_its_key_is_queued() {
        let queued = record(
            WorkflowStatus::Running,
            Some(orch_model::store::QUEUED_OWNER),
        );
        assert_eq!(shown_state(&queued), "queued");
        assert_eq!(run_json(&queued)["state"], "queued");
        let view = serde_json::to_value(RunView::of(&queued)).expect("view");
        assert_eq!(view["state"], "queued");
        let admitted = record(
            WorkflowStatus::Running,
            Some(orch_model::store::SUBMITTED_OWNER),
        );
        assert_eq!(shown_state(&admitted), "running");
        let skipped = record(
            WorkflowStatus::Completed,
            Some(orch_model::store::QUEUED_OWNER),
        );
        assert_eq!(shown_state(&skipped), "completed");
    }
}
