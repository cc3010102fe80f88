//! The `Store` contract: each method runs on the store's runtime, one
//! transaction each.

use crate::PostgresStore;
use crate::error::{BACKEND, db};
use crate::journal::{append_in, finish_in, notify_in, start_in};
use crate::rows::{lease_until, require_run};
use crate::runs;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use orch_model::store::{
    CacheStore, ClaimStore, RecordStore, RunRecord, StoredEvent, TakeOver, TaskRecord, WakeStore,
};
use orch_model::{Finished, NewRun, Result, RunId, Store, StoreCapabilities, WorkflowStatus};
use std::time::Duration;

#[async_trait]
impl Store for PostgresStore {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    fn capabilities(&self) -> StoreCapabilities {
        StoreCapabilities {
            durable: true,
            distributed_claim: true,
            notify: true,
            claims: true,
            records: true,
            cache: true,
            take_over: true,
            output: true,
            leaders: true,
        }
    }

    fn claims(&self) -> Option<&dyn ClaimStore> {
        Some(self)
    }

    fn record_store(&self) -> Option<&dyn RecordStore> {
        Some(self)
    }

    fn cache_store(&self) -> Option<&dyn CacheStore> {
        Some(self)
    }

    fn wake(&self) -> Option<&dyn WakeStore> {
        Some(self)
    }

    fn output_store(&self) -> Option<&dyn orch_model::store::OutputStore> {
        Some(self)
    }

    fn leaders(&self) -> Option<&dyn orch_model::store::LeaderStore> {
        Some(self)
    }

    async fn create_run(&self, run: NewRun, now: DateTime<Utc>) -> Result<()> {
        self.call(runs::create(self.inner.clone(), run, now)).await
    }

    async fn get_run(&self, id: RunId) -> Result<Option<RunRecord>> {
        self.call(runs::get(self.inner.clone(), id)).await
    }

    async fn get_run_brief(&self, id: RunId) -> Result<Option<RunRecord>> {
        self.call(runs::get_brief(self.inner.clone(), id)).await
    }

    async fn list_runs(&self) -> Result<Vec<RunRecord>> {
        self.call(runs::list(self.inner.clone(), None)).await
    }

    async fn recent_runs(&self, limit: usize) -> Result<Vec<RunRecord>> {
        self.call(runs::list(self.inner.clone(), Some(limit))).await
    }

    async fn tasks(&self, run: RunId) -> Result<Vec<TaskRecord>> {
        self.call(runs::tasks(self.inner.clone(), run)).await
    }

    async fn cancel_run(&self, run: RunId, now: DateTime<Utc>) -> Result<()> {
        self.call(runs::cancel(self.inner.clone(), run, now)).await
    }

    async fn finish_run(
        &self,
        run: RunId,
        status: WorkflowStatus,
        now: DateTime<Utc>,
    ) -> Result<()> {
        self.call(runs::finish_run(self.inner.clone(), run, status, now))
            .await
    }

    async fn set_owner(&self, run: RunId, owner: Option<String>) -> Result<()> {
        self.call(runs::set_owner(self.inner.clone(), run, owner))
            .await
    }

    async fn take_over(&self, run: RunId, expected: Option<&str>, owner: &str) -> Result<TakeOver> {
        let (expected, owner) = (expected.map(str::to_owned), owner.to_owned());
        self.call(runs::take_over(self.inner.clone(), run, expected, owner))
            .await
    }

    async fn request_cancel(&self, run: RunId) -> Result<bool> {
        self.call(runs::request_cancel(self.inner.clone(), run))
            .await
    }

    async fn cancel_requested(&self, run: RunId) -> Result<bool> {
        self.call(runs::cancel_requested(self.inner.clone(), run))
            .await
    }

    async fn start_tasks(
        &self,
        run: RunId,
        tasks: &[u32],
        worker: &str,
        lease: Duration,
        now: DateTime<Utc>,
    ) -> Result<Vec<u32>> {
        self.finish_and_start(run, Vec::new(), Vec::new(), tasks, worker, lease, now)
            .await
    }

    async fn finish_tasks(
        &self,
        run: RunId,
        done: Vec<Finished>,
        now: DateTime<Utc>,
    ) -> Result<()> {
        self.finish_and_append(run, done, Vec::new(), now).await
    }

    async fn finish_and_append(
        &self,
        run: RunId,
        done: Vec<Finished>,
        events: Vec<StoredEvent>,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let inner = self.inner.clone();
        self.call(async move {
            let mut client = inner.client("finish_tasks").await?;
            let tx = client
                .transaction()
                .await
                .map_err(db("finish_tasks: BEGIN"))?;
            if !done.is_empty() {
                let ord = require_run(&tx, run).await?;
                if finish_in(&tx, ord, done, now).await? > 0 {
                    notify_in(&tx, &inner.tag).await?;
                }
            }
            if !events.is_empty() {
                append_in(&tx, run, events).await?;
            }
            tx.commit().await.map_err(db("finish_tasks: COMMIT"))
        })
        .await
    }

    async fn finish_and_start(
        &self,
        run: RunId,
        done: Vec<Finished>,
        events: Vec<StoredEvent>,
        start: &[u32],
        worker: &str,
        lease: Duration,
        now: DateTime<Utc>,
    ) -> Result<Vec<u32>> {
        let inner = self.inner.clone();
        let (start, worker) = (start.to_vec(), worker.to_owned());
        // One transaction: the finish, its events and the start of what it
        // released are committed together or not at all.
        self.call(async move {
            let mut client = inner.client("finish_and_start").await?;
            let tx = client
                .transaction()
                .await
                .map_err(db("finish_and_start: BEGIN"))?;
            let ord = require_run(&tx, run).await?;
            // Tasks this process starts itself need wake no worker.
            let released = finish_in(&tx, ord, done, now).await?;
            if !events.is_empty() {
                append_in(&tx, run, events).await?;
            }
            let attempts =
                start_in(&tx, ord, &start, &worker, lease_until(now, lease), now).await?;
            if released > start.len() as u64 {
                notify_in(&tx, &inner.tag).await?;
            }
            tx.commit().await.map_err(db("finish_and_start: COMMIT"))?;
            Ok(attempts)
        })
        .await
    }

    async fn requeue_running(&self, run: RunId) -> Result<usize> {
        self.call(runs::requeue(self.inner.clone(), run)).await
    }

    async fn append_events(&self, run: RunId, events: Vec<StoredEvent>) -> Result<()> {
        let inner = self.inner.clone();
        self.call(async move {
            let mut client = inner.client("append_events").await?;
            let tx = client
                .transaction()
                .await
                .map_err(db("append_events: BEGIN"))?;
            append_in(&tx, run, events).await?;
            tx.commit().await.map_err(db("append_events: COMMIT"))
        })
        .await
    }

    async fn events(&self, run: RunId, after: u64) -> Result<Vec<StoredEvent>> {
        self.call(runs::events(self.inner.clone(), run, after))
            .await
    }
}

#[async_trait]
impl WakeStore for PostgresStore {
    async fn wait_for_work(&self, timeout: Duration) -> Result<bool> {
        PostgresStore::wait_for_work(self, timeout).await
    }
}
