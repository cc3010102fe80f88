//! Workers of the engine's store: [`OrchestrationEngine::worker`] starts one
//! (what `orch worker` runs), [`OrchestrationEngine::workers`] lists those
//! the store knows, and [`OrchestrationEngine::worker_report`] says how they
//! do, for status and health.

#[allow(clippy::wildcard_imports)]
use super::*;
use orch_model::HealthStatus;
use orch_tasks::worker::{Worker, WorkerOptions, WorkerStatus, WorkerSummary, list_workers};
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
    /// Every worker recorded, lost ones marked.
    pub workers: Vec<WorkerStatus>,
    /// One line per lost worker.
    pub issues: Vec<String>,
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
    /// two of their lease periods are marked lost. None for a store that
    /// keeps no records.
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
/// lost, or when the records cannot be read (with the reason). A store
/// opened read-only does (what `orch status` and `orch health` use).
pub async fn worker_report(store: &dyn Store) -> WorkerReport {
    match list_workers(store, Utc::now()).await {
        Ok(workers) => {
            let issues: Vec<String> = workers
                .iter()
                .filter(|w| w.lost)
                .map(|w| {
                    format!(
                        "workers: worker {} on {} is lost (last seen {}; the tasks it held are reclaimed when their leases end)",
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
                workers,
                issues,
            }
        }
        Err(e) => WorkerReport {
            status: HealthStatus::Degraded,
            workers: Vec::new(),
            issues: vec![format!("workers: cannot read the workers' records: {e}")],
        },
    }
}
