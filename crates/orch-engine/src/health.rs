//! Status, metrics and health.

#[allow(clippy::wildcard_imports)]
use super::*;
use orch_model::HealthStatus;

/// One component's health.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ComponentHealth {
    /// `healthy`, `degraded` or `unhealthy`.
    pub status: HealthStatus,
    /// Figures behind the status.
    pub details: Value,
}

/// The four components the seed's health check reports.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HealthComponents {
    /// Definitions and runs.
    pub workflow_manager: ComponentHealth,
    /// Task execution.
    pub task_orchestrator: ComponentHealth,
    /// Projects and templates.
    pub project_manager: ComponentHealth,
    /// Resources.
    pub resource_manager: ComponentHealth,
}

/// The seed's `health_check()`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HealthReport {
    /// `healthy`, `degraded` (something needs attention) or `unhealthy`
    /// (something does not work): the worst of the components'.
    pub overall_status: HealthStatus,
    /// When it was taken.
    pub timestamp: DateTime<Utc>,
    /// Per component.
    pub components: HealthComponents,
    /// One line per problem, saying what and where.
    pub issues: Vec<String>,
}

/// The engine's part of the status.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EngineStatus {
    /// Sessions active now.
    pub active_sessions: usize,
    /// Event handlers registered, per event type.
    pub event_handlers: BTreeMap<String, usize>,
}

/// Definitions and runs, at a glance.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WorkflowsStatus {
    /// Definitions known.
    pub total_workflows: usize,
    /// Runs going on now.
    pub running_workflows: usize,
}

/// Steps and tasks over the runs remembered (and the seed's
/// `execute_task` tasks since the engine started).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TasksStatus {
    /// All of them.
    pub total_tasks: usize,
    /// Not started yet, in runs going on.
    pub pending: usize,
    /// Running now.
    pub running: usize,
    /// Completed.
    pub completed: usize,
    /// Failed.
    pub failed: usize,
}

/// Projects at a glance, with the templates they are made from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProjectsStatus {
    /// Counts and recent activity.
    #[serde(flatten)]
    pub summary: orch_projects::ProjectsSummary,
    /// Template names.
    pub templates: Vec<String>,
}

/// The seed's `get_system_status()`: each component's figures, typed (as
/// JSON, the seed's shape).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SystemStatus {
    /// When it was taken.
    pub timestamp: DateTime<Utc>,
    /// Sessions and event handlers.
    pub orchestration_engine: EngineStatus,
    /// Definitions and runs.
    pub workflow_manager: WorkflowsStatus,
    /// Steps and tasks.
    pub task_orchestrator: TasksStatus,
    /// Projects and templates.
    pub project_manager: ProjectsStatus,
    /// Resource usage.
    pub resource_manager: orch_resources::ResourceUsage,
    /// Engine metrics, when `performance_monitoring` is on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub performance: Option<EngineMetrics>,
}

/// Counters since the engine started.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct EngineMetrics {
    /// Seconds since the engine was built.
    pub uptime_seconds: f64,
    /// Sessions created.
    pub sessions_created: u64,
    /// Sessions active now.
    pub active_sessions: usize,
    /// Workflow runs finished.
    pub workflows_executed: u64,
    /// Of which succeeded.
    pub workflows_succeeded: u64,
    /// Of which did not.
    pub workflows_failed: u64,
    /// Workflow runs going on now.
    pub workflows_running: usize,
    /// Tasks that completed.
    pub tasks_completed: u64,
    /// Tasks that failed.
    pub tasks_failed: u64,
    /// Retries scheduled.
    pub tasks_retried: u64,
    /// Mean seconds per finished workflow run.
    pub average_workflow_seconds: f64,
}

impl OrchestrationEngine {
    /// Counters since the engine started.
    pub fn get_metrics(&self) -> EngineMetrics {
        let c = &self.inner.counters;
        let runs = c.workflows.load(Ordering::Relaxed);
        EngineMetrics {
            uptime_seconds: self.inner.started.elapsed().as_secs_f64(),
            sessions_created: c.sessions.load(Ordering::Relaxed),
            active_sessions: self.active_sessions(),
            workflows_executed: runs,
            workflows_succeeded: c.succeeded.load(Ordering::Relaxed),
            workflows_failed: c.failed.load(Ordering::Relaxed),
            workflows_running: self.inner.running.load(Ordering::SeqCst),
            tasks_completed: c.tasks_completed.load(Ordering::Relaxed),
            tasks_failed: c.tasks_failed.load(Ordering::Relaxed),
            tasks_retried: c.tasks_retried.load(Ordering::Relaxed),
            average_workflow_seconds: if runs == 0 {
                0.0
            } else {
                c.workflow_micros.load(Ordering::Relaxed) as f64 / 1e6 / runs as f64
            },
        }
    }

    pub(crate) fn active_sessions(&self) -> usize {
        lock(&self.inner.sessions)
            .values()
            .filter(|s| s.info.status == SessionStatus::Active)
            .count()
    }

    /// The state of every component (seed: `get_system_status`).
    pub fn get_system_status(&self) -> SystemStatus {
        self.sweep();
        let mut handlers: BTreeMap<String, usize> = BTreeMap::new();
        for (k, _) in lock(&self.inner.handlers).iter() {
            *handlers.entry(k.clone()).or_insert(0) += 1;
        }
        let wm = &self.inner.workflows;
        let runs = wm.runs();
        let (mut total, mut pending, mut running, mut completed, mut failed) = (0, 0, 0, 0, 0);
        for r in &runs {
            let p = r.progress;
            total += p.total_steps;
            running += p.running_steps;
            completed += p.completed_steps;
            failed += p.failed_steps;
            if r.status == WorkflowStatus::Running {
                pending += p
                    .total_steps
                    .saturating_sub(p.running_steps + p.completed_steps + p.failed_steps);
            }
        }
        // The tasks of execute_task, since the engine started.
        let t = *lock(&self.inner.task_counts);
        total += t.running + t.completed + t.failed;
        running += t.running;
        completed += t.completed;
        failed += t.failed;
        let summary = self.inner.projects.get_projects_summary();
        SystemStatus {
            timestamp: Utc::now(),
            orchestration_engine: EngineStatus {
                active_sessions: self.active_sessions(),
                event_handlers: handlers,
            },
            workflow_manager: WorkflowsStatus {
                total_workflows: wm.list_workflows().len(),
                running_workflows: wm.running_count(),
            },
            task_orchestrator: TasksStatus {
                total_tasks: total,
                pending,
                running,
                completed,
                failed,
            },
            project_manager: ProjectsStatus {
                summary,
                templates: self.inner.projects.list_templates(),
            },
            resource_manager: self.inner.resources.usage_summary(),
            performance: (self.inner.config.performance_monitoring != Some(false))
                .then(|| self.get_metrics()),
        }
    }

    /// Checks every component (seed: `health_check`). `degraded` means
    /// something needs attention but work runs (a definition that does not
    /// load, a resource over 90 % used, shutting down); `unhealthy` means
    /// something does not work (a directory that cannot be read).
    pub fn health_check(&self) -> HealthReport {
        self.sweep();
        let mut issues = Vec::new();
        let wm = &self.inner.workflows;
        let wm_dir = wm.workflows_dir().to_path_buf();
        let mut wm_status = HealthStatus::Healthy;
        if let Err(e) = wm.reload() {
            issues.push(format!("workflow_manager: {e}"));
            wm_status = HealthStatus::Unhealthy;
        }
        let wm_problems = wm.load_problems();
        if !wm_problems.is_empty() {
            wm_status = wm_status.worst(HealthStatus::Degraded);
        }
        issues.extend(
            wm_problems
                .iter()
                .map(|p| format!("workflow_manager: definition does not load: {p}")),
        );

        let pm = &self.inner.projects;
        let mut pm_status = HealthStatus::Healthy;
        if let Err(e) = pm.reload() {
            issues.push(format!("project_manager: {e}"));
            pm_status = HealthStatus::Unhealthy;
        }
        let pm_problems = pm.load_problems();
        if !pm_problems.is_empty() {
            pm_status = pm_status.worst(HealthStatus::Degraded);
        }
        issues.extend(pm_problems.iter().map(|p| format!("project_manager: {p}")));

        let accepting = self.inner.accepting.load(Ordering::SeqCst);
        let to_status = if accepting {
            HealthStatus::Healthy
        } else {
            HealthStatus::Degraded
        };
        if !accepting {
            issues.push(
                "task_orchestrator: the engine is shutting down; no new work is accepted".into(),
            );
        }
        let rm = self.inner.resources.health_check();
        let rm_status = rm.overall_status;
        issues.extend(rm.issues.iter().map(|i| format!("resource_manager: {i}")));
        let m = self.get_metrics();
        HealthReport {
            overall_status: HealthStatus::worst_of([wm_status, to_status, pm_status, rm_status]),
            timestamp: Utc::now(),
            components: HealthComponents {
                workflow_manager: ComponentHealth {
                    status: wm_status,
                    details: json!({
                        "workflows_dir": wm_dir.display().to_string(),
                        "total_workflows": wm.list_workflows().len(),
                        "invalid_definitions": wm_problems.len(),
                        "running_workflows": wm.running_count(),
                    }),
                },
                task_orchestrator: ComponentHealth {
                    status: to_status,
                    details: json!({
                        "accepting_work": accepting,
                        "running_workflows": m.workflows_running,
                        "tasks_completed": m.tasks_completed,
                        "tasks_failed": m.tasks_failed,
                    }),
                },
                project_manager: ComponentHealth {
                    status: pm_status,
                    details: json!({
                        "projects_dir": pm.projects_dir().display().to_string(),
                        "total_projects": pm.list_projects().len(),
                        "templates": pm.list_templates().len(),
                        "problems": pm_problems.len(),
                    }),
                },
                resource_manager: ComponentHealth {
                    status: rm_status,
                    details: serde_json::to_value(&rm.resources).unwrap_or(Value::Null),
                },
            },
            issues,
        }
    }
}
