//! Tasks, status, health and resources: `execute_task`,
//! `get_system_status`, `get_health_status`, `allocate_resources`,
//! `release_resources`.

use crate::McpServer;
use crate::args::Args;
use crate::jobs::Job;
use crate::runs::{DEFAULT_WAIT, resources_arg, session_arg, wait_of};
use orch_engine::SessionStatus;
use orch_model::{
    AllocationId, EntityKind, OrchestrationError, Task, TaskPriority, TaskResult, WorkflowStatus,
};
use serde_json::{Map, Value, json};
use std::str::FromStr;
use std::time::Duration;

/// What `execute_task` returns for a task that ended.
fn task_data(base: &Value, r: &TaskResult, deps_ok: bool, allocation: &Value) -> Value {
    let status = if r.success {
        "completed"
    } else {
        match r.error_type.as_deref() {
            Some("TimeoutError") => "timeout",
            Some("Cancelled" | "CancelledError") => "cancelled",
            _ => "failed",
        }
    };
    let retries = r
        .metadata
        .iter()
        .find(|(k, _)| k.as_str() == "attempts")
        .and_then(|(_, v)| v.as_u64())
        .map_or(0, |n| n.saturating_sub(1));
    let mut v = base.clone();
    if let Value::Object(m) = &mut v {
        m.insert("status".into(), json!(status));
        m.insert("result".into(), r.data.clone());
        m.insert("execution_time".into(), json!(r.execution_time));
        m.insert("memory_used_mb".into(), json!(r.memory_usage));
        m.insert("retry_attempts".into(), json!(retries));
        m.insert("dependencies_satisfied".into(), json!(deps_ok));
        m.insert("resource_allocation".into(), allocation.clone());
        m.insert("error_message".into(), json!(r.error_message));
        m.insert("error_type".into(), json!(r.error_type));
        m.insert(
            "metadata".into(),
            serde_json::to_value(&r.metadata).unwrap_or(Value::Null),
        );
    }
    v
}

impl McpServer {
    pub(crate) async fn execute_task(&self, a: &Args) -> Result<Value, OrchestrationError> {
        let session = session_arg(a)?;
        if let Some(sid) = &session {
            match self.engine.get_session(sid) {
                Some(s) if s.status == SessionStatus::Active => {}
                Some(s) => {
                    return Err(OrchestrationError::InvalidState {
                        message: format!("session {sid} is {:?}, not active", s.status)
                            .to_lowercase(),
                    });
                }
                None => {
                    return Err(OrchestrationError::not_found(
                        EntityKind::Session,
                        sid.to_string(),
                    ));
                }
            }
        }
        let priority = a
            .str("priority")
            .map(TaskPriority::from_str)
            .transpose()
            .map_err(OrchestrationError::invalid_parameters)?
            .unwrap_or(TaskPriority::Normal);
        let resources = resources_arg(a, "resource_requirements")?;
        // Dependencies are tasks this server ran (or runs): found now, waited for in the task.
        let mut deps = Vec::new();
        for d in a.strings("dependencies") {
            let job = self.jobs.get(&d).ok_or_else(|| OrchestrationError::NotFound {
                kind: EntityKind::Task,
                name: d.clone(),
                hint: Some("dependencies are task_ids that execute_task returned in this session of orch mcp".into()),
            })?;
            deps.push((d, job));
        }
        let task = Task {
            name: a.text("task_name").to_owned(),
            module: a.text("module").to_owned(),
            action: a.text("action").to_owned(),
            parameters: a.object("parameters"),
            priority,
            timeout: a.num("timeout_seconds").map(Duration::from_secs_f64),
            max_retries: a
                .get("retry_count")
                .and_then(Value::as_u64)
                .map_or(0, |n| u32::try_from(n).unwrap_or(u32::MAX)),
            resources: resources.clone().unwrap_or_default(),
            ..Task::default()
        };
        let id = task.id.to_string();
        let base = json!({
            "task_id": id,
            "task_name": task.name,
            "module": task.module,
            "action": task.action,
            "priority": task.priority,
            "session_id": session,
            "dependencies": deps.iter().map(|(d, _)| d.clone()).collect::<Vec<_>>(),
        });
        let engine = self.engine.clone();
        let b = base.clone();
        let (abort_tx, abort_rx) = tokio::sync::oneshot::channel::<()>();
        let abort = std::sync::Mutex::new(Some(abort_tx));
        let job = Job::new(
            base.clone(),
            Box::new(move || {
                if let Some(tx) = abort
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .take()
                {
                    let _ = tx.send(());
                }
            }),
        );
        self.jobs.insert(id.clone(), job.clone());
        let j = job.clone();
        tokio::spawn(async move {
            let work = async {
                for (d, dep) in &deps {
                    let v = dep.wait(Duration::MAX).await;
                    if v["status"] != json!("completed") {
                        let r = TaskResult::failed(
                            "DependencyFailed",
                            format!("dependency {d} did not complete: it is {}", v["status"]),
                        );
                        return task_data(&b, &r, false, &Value::Null);
                    }
                }
                let mut allocation = Value::Null;
                let mut held = None;
                if let Some(req) = &resources {
                    let rm = engine.resource_manager();
                    match rm.allocate_resources(&id, req, None).await {
                        Ok(al) => {
                            allocation = json!({"allocation_id": al.id, "resources": al.resources, "amounts": al.amounts});
                            held = Some(al.id);
                        }
                        Err(e) => {
                            let r = TaskResult::failed(e.error_type(), e.to_string());
                            return task_data(&b, &r, true, &Value::Null);
                        }
                    }
                }
                let r = engine.execute_task(&task).await;
                if let Some(al) = held {
                    engine
                        .resource_manager()
                        .deallocate_resources(&id, Some(&[al]));
                }
                task_data(&b, &r, true, &allocation)
            };
            let data = tokio::select! {
                d = work => d,
                _ = abort_rx => task_data(&b, &TaskResult::failed("Cancelled", "cancelled by cancel_run"), true, &Value::Null),
            };
            j.finish(data);
        });
        Ok(job.wait(wait_of(a, DEFAULT_WAIT)).await)
    }

    pub(crate) fn system_status(&self, a: &Args) -> Value {
        let s = self.engine.get_system_status();
        let h = self.engine.health_check();
        let mut v = serde_json::to_value(&s).unwrap_or_else(|_| json!({}));
        let Value::Object(m) = &mut v else {
            return v;
        };
        let perf = m.remove("performance");
        m.insert("overall_status".into(), json!(h.overall_status));
        if a.flag("include_resource_health", true) {
            let rh = self.engine.resource_manager().health_check();
            if let Some(Value::Object(rm)) = m.get_mut("resource_manager") {
                rm.insert(
                    "health".into(),
                    serde_json::to_value(&rh).unwrap_or(Value::Null),
                );
            }
        }
        if a.flag("include_active_sessions", false) {
            let sessions: Vec<_> = self
                .engine
                .list_sessions()
                .into_iter()
                .filter(|s| s.status == SessionStatus::Active)
                .collect();
            if let Some(Value::Object(om)) = m.get_mut("orchestration_engine") {
                om.insert(
                    "sessions".into(),
                    serde_json::to_value(&sessions).unwrap_or(Value::Null),
                );
            }
        }
        if a.flag("include_detailed_metrics", true) {
            let hours = a.num("time_range_hours").unwrap_or(24.0);
            let since = chrono::Utc::now()
                - chrono::Duration::milliseconds((hours * 3_600_000.0).min(1e15) as i64);
            let runs = self.engine.workflow_manager().runs();
            let recent: Vec<_> = runs.iter().filter(|r| r.start_time >= since).collect();
            let ended: Vec<f64> = recent
                .iter()
                .filter_map(|r| {
                    r.end_time
                        .map(|e| (e - r.start_time).num_milliseconds() as f64 / 1000.0)
                })
                .collect();
            let count = |st: WorkflowStatus| recent.iter().filter(|r| r.status == st).count();
            let mut pm = Map::new();
            pm.insert("engine".into(), perf.unwrap_or(Value::Null));
            pm.insert(
                "recent_runs".into(),
                json!({
                    "time_range_hours": hours,
                    "runs": recent.len(),
                    "completed": count(WorkflowStatus::Completed),
                    "failed": count(WorkflowStatus::Failed),
                    "cancelled": count(WorkflowStatus::Cancelled),
                    "running": count(WorkflowStatus::Running),
                    "average_execution_time": if ended.is_empty() { 0.0 } else { ended.iter().sum::<f64>() / ended.len() as f64 },
                }),
            );
            pm.insert(
                "workflows".into(),
                serde_json::to_value(self.engine.get_performance_summary(None))
                    .unwrap_or(Value::Null),
            );
            m.insert("performance_metrics".into(), Value::Object(pm));
        }
        let recommendations: Vec<String> = h
            .issues
            .iter()
            .map(|i| {
                if i.contains("utilized") {
                    format!("{i}: free allocations (release_resources) or add capacity")
                } else if i.contains("load") || i.contains("definition") {
                    format!("{i}: fix or remove the definition (list_workflows shows why)")
                } else {
                    format!("{i}: see get_health_status")
                }
            })
            .collect();
        m.insert("issues".into(), json!(h.issues));
        m.insert("recommendations".into(), json!(recommendations));
        v
    }

    /// The engine's health, and the workers of its store when there are
    /// any (`orch worker`s, or workers the engine started), as `orch
    /// health` shows them: a lost worker makes a healthy report degraded,
    /// with its issue.
    pub(crate) async fn health_status(&self) -> Value {
        let mut v = serde_json::to_value(self.engine.health_check()).unwrap_or(Value::Null);
        let report = self.engine.worker_report().await;
        if report.workers.is_empty() && report.issues.is_empty() {
            return v;
        }
        if let Value::Object(m) = &mut v {
            m.insert("workers".into(), json!(report.workers));
            if !report.issues.is_empty() {
                if let Some(Value::Array(issues)) = m.get_mut("issues") {
                    issues.extend(report.issues.iter().map(|i| json!(i)));
                }
                if m.get("overall_status").and_then(Value::as_str) == Some("healthy") {
                    m.insert("overall_status".into(), json!(report.status));
                }
            }
        }
        v
    }

    pub(crate) async fn allocate_resources(&self, a: &Args) -> Result<Value, OrchestrationError> {
        let user = a.text("user_id");
        let Some(req) = resources_arg(a, "requirements")? else {
            return Err(OrchestrationError::invalid_parameters(
                "`requirements` is empty; e.g. {\"cpu\": {\"cores\": 1}}",
            ));
        };
        let wait = a.num("timeout_seconds").map(Duration::from_secs_f64);
        let al = self
            .engine
            .resource_manager()
            .allocate_resources(user, &req, wait)
            .await?;
        Ok(json!({
            "allocated": al.resources,
            "allocation_id": al.id,
            "amounts": al.amounts,
            "user_id": al.user_id,
            "requirements": req,
            "allocated_at": al.allocated_at,
            "expires_at": al.expires_at,
        }))
    }

    pub(crate) fn release_resources(&self, a: &Args) -> Result<Value, OrchestrationError> {
        let user = a.text("user_id");
        let ids = a
            .strings("allocation_ids")
            .iter()
            .map(|s| {
                AllocationId::from_str(s).map_err(|e| {
                    OrchestrationError::invalid_parameters(format!(
                        "`allocation_ids`: {s:?} is not an allocation id ({e})"
                    ))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let rm = self.engine.resource_manager();
        let released =
            rm.deallocate_resources(user, a.get("allocation_ids").map(|_| ids.as_slice()));
        if !released {
            return Err(OrchestrationError::NotFound {
                kind: EntityKind::Allocation,
                name: user.to_owned(),
                hint: Some(
                    "the user holds no such allocation (it may have been released or expired)"
                        .into(),
                ),
            });
        }
        Ok(json!({"released": true, "user_id": user}))
    }
}
