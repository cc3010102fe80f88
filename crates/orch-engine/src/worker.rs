//! Workers of the engine's store: [`OrchestrationEngine::worker`] starts one
//! (what `orch worker` runs), [`OrchestrationEngine::workers`] lists those
//! the store knows, and [`OrchestrationEngine::worker_report`] says how they
//! do, for status and health.

#[allow(clippy::wildcard_imports)]
use super::*;
use orch_model::HealthStatus;
use orch_tasks::worker::{
    Worker, WorkerOptions, WorkerStatus, WorkerSummary, list_workers, read_workers,
};
use tokio::task::JoinHandle;

/// A worker that runs ([`OrchestrationEngine::worker`]).
///
/// Dropping the handle does not stop the worker; [`WorkerHandle::stop`]
/// does (as does the engine's shutdown, once its grace period is over).
#[derive(Debug)]
pub struct WorkerHandle {
    id: String,
    stop: CancellationToken,
    task: JoinHandle<WorkerSummary>,
}

impl WorkerHandle {
    /// The worker's id (its record's key, and the lease holder in claims).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Asks the worker to stop: it claims nothing more, lets what runs go on
    /// for its grace period, then stops it and hands it back.
    pub fn stop(&self) {
        self.stop.cancel();
    }

    /// The token [`WorkerHandle::stop`] cancels.
    pub fn stop_token(&self) -> CancellationToken {
        self.stop.clone()
    }

    /// Whether the worker has stopped.
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Waits for the worker to stop (after [`WorkerHandle::stop`]) and gives
    /// what it did.
    ///
    /// # Errors
    /// `TaskExecution` when the worker's task ended abnormally.
    pub async fn join(self) -> Result<WorkerSummary, OrchestrationError> {
        self.task
            .await
            .map_err(|e| OrchestrationError::TaskExecution {
                message: format!("the worker's task ended abnormally: {e}"),
            })
    }
}

/// The workers of the store, as status and health show them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WorkerReport {
    /// `healthy`, or `degraded` when a worker is lost.
    pub status: HealthStatus,
    /// Every worker recorded, lost ones marked (forgotten ones left out).
    pub workers: Vec<WorkerStatus>,
    /// One line per lost worker.
    pub issues: Vec<String>,
    /// The ids of the workers lost for longer than their retention whose
    /// records are still there (no live worker removed them yet): gone, as
    /// far as status and health go.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub forgotten: Vec<String>,
}

impl OrchestrationEngine {
    /// Starts a worker of the engine's store on the current tokio runtime:
    /// it claims ready tasks of any run in the store (submitted by
    /// [`OrchestrationEngine::run`] with `detach`, from any machine) and runs
    /// them with the engine's actions.
    ///
    /// # Errors
    /// `Unsupported` when the store hands out no claims; `InvalidParameters`
    /// for bad options; `InvalidState` during shutdown.
    ///
    /// # Panics
    /// Outside a tokio runtime, as `tokio::spawn` does.
    pub fn worker(&self, opts: WorkerOptions) -> Result<WorkerHandle, OrchestrationError> {
        self.check_accepting()?;
        let registry = Arc::new(self.inner.workflows.registry().clone());
        let w = Worker::new(self.inner.store.clone(), registry, opts)?;
        let id = w.id().to_owned();
        // The engine's shutdown stops it too.
        let stop = self.inner.shutdown.child_token();
        let task = tokio::spawn(w.run(stop.clone()));
        Ok(WorkerHandle { id, stop, task })
    }

    /// The workers the store has records of, oldest first; those silent for
    /// two of their lease periods are marked lost, and those lost for longer
    /// than their retention are left out. None for a store that keeps no
    /// records.
    ///
    /// # Errors
    /// The store's.
    pub async fn workers(&self) -> Result<Vec<WorkerStatus>, OrchestrationError> {
        list_workers(self.inner.store.as_ref(), Utc::now()).await
    }

    /// The workers with a verdict ([`worker_report`] of the engine's store).
    pub async fn worker_report(&self) -> WorkerReport {
        worker_report(self.inner.store.as_ref()).await
    }
}

/// The workers `store` has records of, with a verdict: degraded when one is
/// lost (silent for two leases, and not yet for longer than its retention),
/// or when the records cannot be read (with the reason). A store opened
/// read-only does (what `orch status` and `orch health` use).
pub async fn worker_report(store: &dyn Store) -> WorkerReport {
    match read_workers(store, Utc::now()).await {
        Ok(read) => {
            let issues: Vec<String> = read
                .listed
                .iter()
                .filter(|w| w.lost)
                .map(|w| {
                    let held = match w.record.running.len() {
                        0 => "it held no step".to_owned(),
                        1 => "the step it held is reclaimed when its lease ends".to_owned(),
                        n => format!("the {n} steps it held are reclaimed when their leases end"),
                    };
                    let until = w
                        .record
                        .forget_at()
                        .map(|t| format!("; forgotten at {}", t.to_rfc3339()))
                        .unwrap_or_default();
                    format!(
                        "workers: worker {} on {} is lost (last seen {}; {held}{until})",
                        w.record.id,
                        w.record.host,
                        w.record.last_seen.to_rfc3339()
                    )
                })
                .collect();
            WorkerReport {
                status: if issues.is_empty() {
                    HealthStatus::Healthy
                } else {
                    HealthStatus::Degraded
                },
                workers: read.listed,
                issues,
                forgotten: read.forgotten.into_iter().map(|r| r.id).collect(),
            }
        }
        Err(e) => WorkerReport {
            status: HealthStatus::Degraded,
            workers: Vec::new(),
            issues: vec![format!("workers: cannot read the workers' records: {e}")],
            forgotten: Vec::new(),
        },
    }
}
