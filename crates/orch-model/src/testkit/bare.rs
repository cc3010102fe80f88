//! `Bare`: a store without the optional concerns, to check their `Unsupported` answers.

#[allow(clippy::wildcard_imports)]
use super::*;

/// A store that keeps only what every backend must (runs, the local
/// journal, events) of the store it wraps, and none of the optional
/// concerns: `store_conformance_tests!(bare: make())` runs the suite on it,
/// which checks that each optional call then fails with `Unsupported`.
#[derive(Debug)]
pub struct Bare<F>(pub F);

#[async_trait::async_trait]
impl<F: Fixture + fmt::Debug + Send + Sync> Store for Bare<F> {
    fn backend(&self) -> &'static str {
        "bare"
    }
    fn capabilities(&self) -> StoreCapabilities {
        StoreCapabilities {
            claims: false,
            records: false,
            cache: false,
            take_over: false,
            output: false,
            leaders: false,
            distributed_claim: false,
            ..self.0.store().capabilities()
        }
    }
    async fn create_run(&self, run: NewRun, now: DateTime<Utc>) -> Result<()> {
        self.0.store().create_run(run, now).await
    }
    async fn get_run(&self, id: RunId) -> Result<Option<RunRecord>> {
        self.0.store().get_run(id).await
    }
    async fn list_runs(&self) -> Result<Vec<RunRecord>> {
        self.0.store().list_runs().await
    }
    async fn tasks(&self, run: RunId) -> Result<Vec<TaskRecord>> {
        self.0.store().tasks(run).await
    }
    async fn cancel_run(&self, run: RunId, now: DateTime<Utc>) -> Result<()> {
        self.0.store().cancel_run(run, now).await
    }
    async fn finish_run(
        &self,
        run: RunId,
        status: WorkflowStatus,
        now: DateTime<Utc>,
    ) -> Result<()> {
        self.0.store().finish_run(run, status, now).await
    }
    async fn set_owner(&self, run: RunId, owner: Option<String>) -> Result<()> {
        self.0.store().set_owner(run, owner).await
    }
    async fn request_cancel(&self, run: RunId) -> Result<bool> {
        self.0.store().request_cancel(run).await
    }
    async fn start_tasks(
        &self,
        run: RunId,
        tasks: &[u32],
        worker: &str,
        lease: Duration,
        now: DateTime<Utc>,
    ) -> Result<Vec<u32>> {
        self.0
            .store()
            .start_tasks(run, tasks, worker, lease, now)
            .await
    }
    async fn finish_tasks(
        &self,
        run: RunId,
        done: Vec<Finished>,
        now: DateTime<Utc>,
    ) -> Result<()> {
        self.0.store().finish_tasks(run, done, now).await
    }
    async fn requeue_running(&self, run: RunId) -> Result<usize> {
        self.0.store().requeue_running(run).await
    }
    async fn append_events(&self, run: RunId, events: Vec<StoredEvent>) -> Result<()> {
        self.0.store().append_events(run, events).await
    }
    async fn events(&self, run: RunId, after: u64) -> Result<Vec<StoredEvent>> {
        self.0.store().events(run, after).await
    }
}
