//! Workflows and their runs: `create_workflow`, `list_workflows`,
//! `execute_workflow`, `create_complex_workflow`, `get_run`, `cancel_run`.

use crate::McpServer;
use crate::args::Args;
use crate::jobs::{Job, Progress};
use orch_engine::{Event, RunReport, RunRequest, RunTarget, SessionOptions};
use orch_model::{
    EntityKind, ExecutionMode, OrchestrationError, ResourceRequest, RunId, SessionId, TaskStatus,
    WorkflowStatus,
};
use serde_json::{Map, Value, json};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

/// How long a call waits for its run when `wait_seconds` is not given.
pub(crate) const DEFAULT_WAIT: Duration = Duration::from_secs(30);

/// The longest wait a call may ask for (10 minutes).
const MAX_WAIT: f64 = 600.0;

/// How long to wait: 0 when `wait` is false, else `wait_seconds` (default
/// [`DEFAULT_WAIT`], at most 10 minutes).
pub(crate) fn wait_of(a: &Args, default: Duration) -> Duration {
    if !a.flag("wait", true) {
        return Duration::ZERO;
    }
    a.num("wait_seconds")
        .map_or(default, |s| Duration::from_secs_f64(s.min(MAX_WAIT)))
}

/// A session id argument, parsed.
pub(crate) fn session_arg(a: &Args) -> Result<Option<SessionId>, OrchestrationError> {
    a.str("session_id")
        .map(|s| {
            SessionId::from_str(s).map_err(|e| {
                OrchestrationError::invalid_parameters(format!(
                    "`session_id` {s:?} is not a session id ({e}); give the id create_session returned, or leave it out"
                ))
            })
        })
        .transpose()
}

/// A `resource_requirements` argument, read in the seed's shape and checked.
pub(crate) fn resources_arg(
    a: &Args,
    name: &str,
) -> Result<Option<ResourceRequest>, OrchestrationError> {
    let Some(v) = a.get(name) else {
        return Ok(None);
    };
    let req: ResourceRequest = serde_json::from_value(v.clone()).map_err(|e| {
        OrchestrationError::invalid_parameters(format!(
            "`{name}`: {e}; expected e.g. {{\"cpu\": {{\"cores\": 2}}, \"memory\": {{\"gb\": 4}}}}"
        ))
    })?;
    req.check().map_err(|problems| {
        OrchestrationError::invalid_parameters(format!(
            "`{name}`: {}",
            problems
                .iter()
                .map(|(at, why)| format!("{at}: {why}"))
                .collect::<Vec<_>>()
                .join("; ")
        ))
    })?;
    Ok((!req.is_empty()).then_some(req))
}

/// The documented status of a run's report: success, failure, timeout or cancelled.
fn outcome(r: &RunReport) -> &'static str {
    let timed_out = r.error.as_deref().is_some_and(|e| e.contains("timed out"))
        || r.steps.iter().any(|s| {
            s.status == TaskStatus::Failed
                && s.result
                    .as_ref()
                    .and_then(|x| x.error_type.as_deref())
                    .is_some_and(|t| t == "TimeoutError")
        });
    match r.status {
        WorkflowStatus::Completed => "success",
        WorkflowStatus::Cancelled if timed_out => "timeout",
        WorkflowStatus::Cancelled => "cancelled",
        _ if timed_out => "timeout",
        _ => "failure",
    }
}

/// What a tool returns for an ended run: `base` (the run's id, session,
/// mode...) with the report's figures.
fn run_data(base: &Value, r: &RunReport) -> Value {
    let mut results = Map::new();
    let mut steps = Vec::new();
    let (mut completed, mut failed, mut skipped, mut cancelled, mut attempts, mut cached) =
        (0, 0, 0, 0, 0u64, 0);
    for s in &r.steps {
        match s.status {
            TaskStatus::Completed => completed += 1,
            TaskStatus::Failed => failed += 1,
            TaskStatus::Skipped => skipped += 1,
            TaskStatus::Cancelled => cancelled += 1,
            _ => {}
        }
        attempts += u64::from(s.attempts);
        let res = s.result.as_ref();
        if res.is_some_and(|x| x.cached) {
            cached += 1;
        }
        if s.status == TaskStatus::Completed {
            if let Some(x) = res {
                results.insert(s.name.to_string(), x.data.clone());
            }
        }
        steps.push(json!({
            "name": s.name.as_str(),
            "status": s.status,
            "attempts": s.attempts,
            "execution_time": res.map(|x| x.execution_time),
            "error_type": res.and_then(|x| x.error_type.clone()),
            "error_message": res.and_then(|x| x.error_message.clone()),
            "note": s.note,
        }));
    }
    let error = (!r.succeeded()).then(|| {
        r.error.clone().unwrap_or_else(|| {
            let first = r
                .steps
                .iter()
                .find(|s| s.status == TaskStatus::Failed)
                .map(|s| {
                    let why = s
                        .result
                        .as_ref()
                        .and_then(|x| x.error_message.clone())
                        .unwrap_or_default();
                    format!("step `{}` failed: {why}", s.name)
                });
            first.unwrap_or_else(|| format!("the run ended {}", r.status.as_str()))
        })
    });
    let mut v = base.clone();
    if let Value::Object(m) = &mut v {
        m.insert("status".into(), json!(outcome(r)));
        m.insert("run_status".into(), json!(r.status));
        m.insert("workflow".into(), json!(r.workflow));
        m.insert("workflow_results".into(), Value::Object(results));
        m.insert("execution_time".into(), json!(r.duration.as_secs_f64()));
        m.insert("steps_completed".into(), json!(completed));
        m.insert("steps_total".into(), json!(r.steps.len()));
        m.insert("error_message".into(), json!(error));
        m.insert(
            "metrics".into(),
            json!({
                "steps_failed": failed,
                "steps_skipped": skipped,
                "steps_cancelled": cancelled,
                "steps_cached": cached,
                "attempts": attempts,
            }),
        );
        m.insert("step_reports".into(), Value::Array(steps));
    }
    v
}

/// Counts a run's steps from its events.
fn count(p: &mut Progress, e: &Event) {
    match e {
        Event::RunStarted { total, .. } => p.total = *total,
        Event::TaskStarted { attempt: 1, .. } => p.running += 1,
        Event::TaskSucceeded { .. } | Event::TaskCached { .. } => {
            p.completed += 1;
            p.running = p
                .running
                .saturating_sub(usize::from(matches!(e, Event::TaskSucceeded { .. })));
        }
        Event::TaskFailed { .. } => {
            p.failed += 1;
            p.running = p.running.saturating_sub(1);
        }
        Event::TaskSkipped { .. } => p.skipped += 1,
        Event::TaskCancelled { attempts, .. } => {
            p.cancelled += 1;
            if *attempts > 0 {
                p.running = p.running.saturating_sub(1);
            }
        }
        _ => {}
    }
}

/// How a run is started.
pub(crate) struct Start {
    pub(crate) target: RunTarget,
    pub(crate) params: Map<String, Value>,
    pub(crate) session: Option<SessionId>,
    pub(crate) mode: Option<ExecutionMode>,
    pub(crate) max_parallel: Option<usize>,
    pub(crate) timeout: Option<Duration>,
    /// Resources held for the run (in a session made for it).
    pub(crate) resources: Option<ResourceRequest>,
    /// Echoed in the result.
    pub(crate) extra: Map<String, Value>,
}

impl McpServer {
    /// Starts a run through the engine's one door; it goes on as a task of
    /// the runtime (remembered for `get_run`) whatever the caller does.
    pub(crate) async fn start_run(&self, s: Start) -> Result<Arc<Job>, OrchestrationError> {
        let engine = &self.engine;
        // Resources are held by a session made for the run, closed after it.
        let own_session = match (&s.resources, s.session) {
            (Some(_), Some(_)) => {
                return Err(OrchestrationError::invalid_parameters(
                    "give `resource_requirements` or `session_id`, not both: a session's resources are set when it is created",
                ));
            }
            (Some(req), None) => Some(engine.create_session(SessionOptions {
                user_id: "mcp".into(),
                mode: s.mode.unwrap_or(ExecutionMode::Parallel),
                max_parallel_tasks: s.max_parallel,
                resource_requirements: req.clone(),
                ..SessionOptions::default()
            })?),
            (None, _) => None,
        };
        let mut req = RunRequest::new(s.target).params(s.params).with_events();
        req.session = own_session.or(s.session);
        req.mode = s.mode;
        req.max_parallel = s.max_parallel;
        req.run_timeout = s.timeout;
        let mut handle = match engine.run(req).await {
            Ok(h) => h,
            Err(e) => {
                if let Some(sid) = own_session {
                    engine.close_session(&sid);
                }
                return Err(e);
            }
        };
        let run_id = handle.run_id();
        let mut base = Map::new();
        base.insert("run_id".into(), json!(run_id));
        base.insert("session_id".into(), json!(handle.session_id()));
        base.insert("workflow".into(), json!(handle.workflow().workflow().name));
        base.insert(
            "steps_total".into(),
            json!(handle.workflow().workflow().steps.len()),
        );
        base.insert(
            "resources_used".into(),
            serde_json::to_value(&s.resources).unwrap_or(Value::Null),
        );
        base.extend(s.extra);
        let base = Value::Object(base);
        let token = handle.cancel_token();
        let job = Job::new(base.clone(), Box::new(move || token.cancel()));
        if let Some(mut events) = handle.events() {
            let j = job.clone();
            tokio::spawn(async move {
                while let Some(e) = events.recv().await {
                    let mut p = j
                        .progress
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    count(&mut p, &e);
                }
            });
        }
        self.jobs.insert(run_id.to_string(), job.clone());
        let j = job.clone();
        let engine = engine.clone();
        tokio::spawn(async move {
            let data = match handle.report().await {
                Ok(r) => run_data(&base, &r),
                Err(e) => {
                    let mut v = base.clone();
                    if let Value::Object(m) = &mut v {
                        m.insert("status".into(), json!("failure"));
                        m.insert("error_message".into(), json!(e.to_string()));
                        m.insert("error".into(), json!(e.to_response()));
                    }
                    v
                }
            };
            if let Some(sid) = own_session {
                engine.close_session(&sid);
            }
            j.finish(data);
        });
        Ok(job)
    }

    pub(crate) async fn execute_workflow(&self, a: &Args) -> Result<Value, OrchestrationError> {
        let mut extra = Map::new();
        if let Some(p) = a.str("priority") {
            extra.insert("priority".into(), json!(p));
        }
        let job = self
            .start_run(Start {
                target: RunTarget::Name(a.text("workflow_name").to_owned()),
                params: a.object("parameters"),
                session: session_arg(a)?,
                mode: mode_arg(a)?,
                max_parallel: a
                    .get("max_parallel")
                    .and_then(Value::as_u64)
                    .map(|n| usize::try_from(n).unwrap_or(usize::MAX)),
                timeout: a.num("timeout_seconds").map(Duration::from_secs_f64),
                resources: resources_arg(a, "resource_requirements")?,
                extra,
            })
            .await?;
        Ok(job.wait(wait_of(a, DEFAULT_WAIT)).await)
    }

    pub(crate) async fn create_complex_workflow(
        &self,
        a: &Args,
    ) -> Result<Value, OrchestrationError> {
        let mut def = a.object("workflow_definition");
        def.insert("name".into(), json!(a.text("name")));
        let wf = self.engine.complex_workflow(&Value::Object(def))?;
        let job = self
            .start_run(Start {
                target: RunTarget::Workflow(Box::new(wf)),
                params: Map::new(),
                session: session_arg(a)?,
                mode: mode_arg(a)?,
                max_parallel: None,
                timeout: a.num("timeout_seconds").map(Duration::from_secs_f64),
                resources: None,
                extra: Map::new(),
            })
            .await?;
        Ok(job.wait(wait_of(a, DEFAULT_WAIT)).await)
    }

    pub(crate) fn create_workflow(&self, a: &Args) -> Result<Value, OrchestrationError> {
        let name = a.text("name");
        let mut doc = Map::new();
        doc.insert("name".into(), json!(name));
        if let Some(d) = a.str("description") {
            doc.insert("description".into(), json!(d));
        }
        if let Some(p) = a.get("parameters") {
            doc.insert("parameters".into(), p.clone());
        }
        doc.insert("steps".into(), a.get("steps").cloned().unwrap_or(json!([])));
        let wm = self.engine.workflow_manager();
        let valid = orch_model::load_workflow(
            &Value::Object(doc).to_string(),
            orch_model::Format::Json,
            wm.limits(),
            Some("create_workflow"),
        )
        .map_err(OrchestrationError::Validation)?;
        let wf = valid.workflow();
        // Workflows on disk may have changed since the engine read them.
        wm.reload()?;
        if wm.get_workflow(name).is_some() && !a.flag("overwrite", false) {
            return Err(OrchestrationError::AlreadyExists {
                kind: EntityKind::Workflow,
                name: name.to_owned(),
                hint: Some("give `overwrite: true` to replace it, or choose another name".into()),
            });
        }
        // save_workflow checks the modules and actions before it writes.
        let path = wm.save_workflow(wf)?;
        Ok(json!({
            "workflow_name": wf.name,
            "description": wf.description,
            "steps_count": wf.steps.len(),
            "path": path,
            "execution_order": valid.execution_order(),
            "next_steps": [format!("run it: execute_workflow {{\"workflow_name\": \"{}\"}}", wf.name)],
        }))
    }

    pub(crate) fn list_workflows(&self) -> Value {
        let wm = self.engine.workflow_manager();
        // A failure to re-read leaves the definitions known so far; it is a load problem below.
        let reload = wm.reload().err().map(|e| e.to_string());
        let list: Vec<Value> = wm
            .list_workflows()
            .iter()
            .filter_map(|n| wm.get_workflow(n))
            .map(|w| {
                json!({
                    "name": w.name,
                    "description": w.description,
                    "steps_count": w.steps.len(),
                    "parameters": w.parameters,
                    "path": wm.workflow_path(&w.name),
                })
            })
            .collect();
        let mut problems = wm.load_problems();
        problems.extend(reload);
        json!({"workflows": list, "count": list.len(), "load_problems": problems})
    }

    pub(crate) async fn get_run(&self, a: &Args) -> Result<Value, OrchestrationError> {
        let id = a.text("run_id");
        let wait = a
            .num("wait_seconds")
            .map_or(Duration::ZERO, |s| Duration::from_secs_f64(s.min(MAX_WAIT)));
        if let Some(job) = self.jobs.get(id) {
            return Ok(job.wait(wait).await);
        }
        // A run this server did not start (or forgot): the store's record.
        let run_id = RunId::from_str(id).map_err(|_| not_found_run(id))?;
        let rec = self
            .engine
            .store()
            .get_run_brief(run_id)
            .await?
            .ok_or_else(|| not_found_run(id))?;
        let c = rec.tasks;
        let total =
            c.pending + c.ready + c.running + c.completed + c.failed + c.cancelled + c.skipped;
        let state = orch_engine::shown_state(&rec);
        Ok(json!({
            "run_id": rec.id,
            "workflow": rec.workflow,
            "status": match rec.status {
                WorkflowStatus::Completed => "success",
                WorkflowStatus::Failed => "failure",
                WorkflowStatus::Cancelled => "cancelled",
                _ => "running",
            },
            "run_status": rec.status,
            "state": state,
            "created_at": rec.created_at,
            "finished_at": rec.finished_at,
            "steps_total": total,
            "steps_completed": c.completed,
            "metrics": {"steps_failed": c.failed, "steps_skipped": c.skipped, "steps_cancelled": c.cancelled, "steps_running": c.running},
            "source": "store",
        }))
    }

    pub(crate) fn cancel_run(&self, a: &Args) -> Result<Value, OrchestrationError> {
        let id = a.text("run_id");
        let job = self.jobs.get(id).ok_or_else(|| OrchestrationError::NotFound {
            kind: EntityKind::Run,
            name: id.to_owned(),
            hint: Some(
                "cancel_run stops runs and tasks this server started; for another process's run use `orch cancel ID`".into(),
            ),
        })?;
        let was_running = !job.ended();
        job.cancel();
        let mut v = job.snapshot();
        if let Value::Object(m) = &mut v {
            m.insert("cancel_requested".into(), json!(was_running));
        }
        Ok(v)
    }
}

fn not_found_run(id: &str) -> OrchestrationError {
    OrchestrationError::NotFound {
        kind: EntityKind::Run,
        name: id.to_owned(),
        hint: Some("give the run_id (or task_id) that execute_workflow, create_complex_workflow or execute_task returned".into()),
    }
}

/// The `mode` argument.
pub(crate) fn mode_arg(a: &Args) -> Result<Option<ExecutionMode>, OrchestrationError> {
    a.str("mode")
        .map(|m| ExecutionMode::from_str(m).map_err(OrchestrationError::invalid_parameters))
        .transpose()
}
