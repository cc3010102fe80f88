//! Claims with leases and fencing (`ClaimStore`), for any number of
//! workers on any number of machines: `FOR UPDATE SKIP LOCKED` over the
//! partial index of ready rows; the attempt number fences every write.

use crate::PostgresStore;
use crate::error::{db, invalid, store_err};
use crate::journal::{finish_in, notify_in};
use crate::rows::{lease_until, require_run};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use orch_model::store::ClaimStore;
use orch_model::{Claim, Finished, Result, RunId, TaskOutcome};
use std::time::Duration;

/// The claim: one statement locks up to `$1` ready rows in claim order,
/// skipping those another claimer holds, and leases them.
const CLAIM: &str = "WITH picked AS MATERIALIZED (
        SELECT t.run_ord, t.idx FROM tasks t
        WHERE t.status = 'ready'
          AND EXISTS (SELECT 1 FROM runs r WHERE r.ord = t.run_ord AND r.status = 'running')
        ORDER BY t.priority DESC, t.run_ord, t.idx
        LIMIT $1
        FOR UPDATE OF t SKIP LOCKED
    )
    UPDATE tasks t SET status = 'running', attempt = t.attempt + 1, worker = $2,
        lease_until = $3, started_at = $4
    FROM picked p
    WHERE t.run_ord = p.run_ord AND t.idx = p.idx
    RETURNING (SELECT r.id FROM runs r WHERE r.ord = t.run_ord), t.idx, t.name, t.attempt, t.priority, t.run_ord";

/// Lapsed leases, skipping rows a completion holds (it decides first).
const RECLAIM: &str = "WITH lapsed AS MATERIALIZED (
        SELECT t.run_ord, t.idx FROM tasks t
        WHERE t.status = 'running' AND t.lease_until < $1
          AND EXISTS (SELECT 1 FROM runs r WHERE r.ord = t.run_ord AND r.status = 'running')
        FOR UPDATE OF t SKIP LOCKED
    )
    UPDATE tasks t SET status = 'ready', worker = NULL, lease_until = NULL
    FROM lapsed l
    WHERE t.run_ord = l.run_ord AND t.idx = l.idx";

#[async_trait]
impl ClaimStore for PostgresStore {
    async fn claim(
        &self,
        worker: &str,
        max: usize,
        lease: Duration,
        now: DateTime<Utc>,
    ) -> Result<Vec<Claim>> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let inner = self.inner.clone();
        let worker = worker.to_owned();
        self.call(async move {
            let client = inner.client("claim").await?;
            let stmt = client
                .prepare_cached(CLAIM)
                .await
                .map_err(db("claim: prepare UPDATE tasks .. FOR UPDATE SKIP LOCKED"))?;
            let limit = i64::try_from(max).unwrap_or(i64::MAX);
            let rows = client
                .query(&stmt, &[&limit, &worker, &lease_until(now, lease), &now])
                .await
                .map_err(db("claim: UPDATE tasks .. FOR UPDATE SKIP LOCKED"))?;
            let mut out = Vec::with_capacity(rows.len());
            for r in rows {
                let run: Option<uuid::Uuid> = r.get(0);
                let run = run.ok_or_else(|| store_err("claim", "a claimed task has no run"))?;
                let key = (
                    -i32::from(r.get::<_, i16>(4)),
                    r.get::<_, i64>(5),
                    r.get::<_, i32>(1),
                );
                let claim = Claim {
                    run: RunId(run),
                    index: r.get::<_, i32>(1) as u32,
                    name: r.get(2),
                    attempt: r.get::<_, i32>(3) as u32,
                    worker: worker.clone(),
                };
                out.push((key, claim));
            }
            // `RETURNING` keeps no order: give the claims in claim order.
            out.sort_by_key(|(k, _)| *k);
            Ok(out.into_iter().map(|(_, c)| c).collect())
        })
        .await
    }

    async fn heartbeat(&self, claim: &Claim, lease: Duration, now: DateTime<Utc>) -> Result<bool> {
        let inner = self.inner.clone();
        let c = claim.clone();
        self.call(async move {
            let client = inner.client("heartbeat").await?;
            let stmt = client
                .prepare_cached(
                    "UPDATE tasks SET lease_until = $4, worker = $5
                     WHERE run_ord = (SELECT ord FROM runs WHERE id = $1) AND idx = $2
                       AND attempt = $3 AND status = 'running'",
                )
                .await
                .map_err(db("heartbeat: prepare UPDATE tasks SET lease_until"))?;
            let n = client
                .execute(
                    &stmt,
                    &[
                        &c.run.0,
                        &(c.index as i32),
                        &(c.attempt as i32),
                        &lease_until(now, lease),
                        &c.worker,
                    ],
                )
                .await
                .map_err(db("heartbeat: UPDATE tasks SET lease_until"))?;
            Ok(n == 1)
        })
        .await
    }

    async fn complete(
        &self,
        claim: &Claim,
        outcome: TaskOutcome,
        now: DateTime<Utc>,
    ) -> Result<()> {
        if claim.attempt == 0 {
            return Err(invalid(format!(
                "complete: attempt 0 of task `{}` was never claimed",
                claim.name
            )));
        }
        let inner = self.inner.clone();
        let c = claim.clone();
        self.call(async move {
            let mut client = inner.client("complete").await?;
            let tx = client.transaction().await.map_err(db("complete: BEGIN"))?;
            let ord = require_run(&tx, c.run).await?;
            let done = vec![Finished {
                index: c.index,
                attempt: c.attempt,
                retries: 0,
                outcome,
            }];
            if finish_in(&tx, ord, done, now).await? > 0 {
                notify_in(&tx, &inner.tag).await?;
            }
            tx.commit().await.map_err(db("complete: COMMIT"))
        })
        .await
    }

    async fn reclaim_expired(&self, now: DateTime<Utc>) -> Result<usize> {
        let inner = self.inner.clone();
        self.call(async move {
            let mut client = inner.client("reclaim_expired").await?;
            let tx = client
                .transaction()
                .await
                .map_err(db("reclaim_expired: BEGIN"))?;
            let n = tx.execute(RECLAIM, &[&now]).await.map_err(db(
                "reclaim_expired: UPDATE tasks SET status = 'ready' .. SKIP LOCKED",
            ))?;
            if n > 0 {
                notify_in(&tx, &inner.tag).await?;
            }
            tx.commit().await.map_err(db("reclaim_expired: COMMIT"))?;
            Ok(n as usize)
        })
        .await
    }
}
