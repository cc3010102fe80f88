//! Claims with leases and fencing (`ClaimStore`), for any number of
//! workers on any number of machines: `FOR UPDATE SKIP LOCKED` over the
//! partial index of ready rows; the attempt number fences every write.

use crate::error::{db, invalid, store_err};
use crate::journal::{finish_in, notify_in};
use crate::rows::{TASK_COLUMNS, decode_task, lease_until, require_run};
use crate::{Inner, PostgresStore, batch};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use orch_model::store::{ClaimRequest, ClaimStore, ResourceAmounts, StoredEvent, TaskRecord};
use orch_model::{Claim, Finished, ResourceType, Result, RunId, TaskOutcome};
use std::time::Duration;

/// The claim: one statement locks up to `$1` ready rows in claim order,
/// skipping those another claimer holds, and leases them.
const CLAIM: &str = "WITH picked AS MATERIALIZED (
        SELECT t.run_ord, t.idx FROM tasks t
        WHERE t.status = 'ready'
          AND EXISTS (SELECT 1 FROM runs r WHERE r.ord = t.run_ord AND r.status = 'running'
                      AND r.max_parallel IS NULL
                      AND (r.owner IS NULL OR r.owner = 'workers'))
        ORDER BY t.priority DESC, t.run_ord, t.idx
        LIMIT $1
        FOR UPDATE OF t SKIP LOCKED
    )
    UPDATE tasks t SET status = 'running', attempt = t.attempt + 1, worker = $2,
        lease_until = $3, started_at = $4
    FROM picked p
    WHERE t.run_ord = p.run_ord AND t.idx = p.idx
    RETURNING (SELECT r.id FROM runs r WHERE r.ord = t.run_ord), t.idx, t.name, t.attempt, t.priority, t.run_ord, t.needs,
        (SELECT s.spec FROM task_specs s WHERE s.run_ord = t.run_ord AND s.idx = t.idx)";

/// A claim that fits a capacity, first step: a window of ready rows in
/// claim order, each of which fits the whole of what is free on its own
/// (`$2`: one amount per kind, `Infinity` where not limited), locked.
const CANDIDATES: &str = "SELECT t.run_ord, t.idx, t.needs FROM tasks t
    WHERE t.status = 'ready'
      AND EXISTS (SELECT 1 FROM runs r WHERE r.ord = t.run_ord AND r.status = 'running'
                  AND r.max_parallel IS NULL
                      AND (r.owner IS NULL OR r.owner = 'workers'))
      AND (t.needs IS NULL OR NOT EXISTS (
          SELECT 1 FROM unnest(t.needs, $2::float8[]) AS x(need, free) WHERE x.need > x.free + 1e-9))
    ORDER BY t.priority DESC, t.run_ord, t.idx
    LIMIT $1
    FOR UPDATE OF t SKIP LOCKED";

/// Claims of runs with a `max_parallel`, first step: those runs, locked
/// in `ord` order (claimers of one limited run take turns, so that two
/// never both see room for the same last slot).
const LIMITED_RUNS: &str = "SELECT ord, max_parallel FROM runs
    WHERE status = 'running' AND max_parallel IS NOT NULL
      AND (owner IS NULL OR owner = 'workers')
    ORDER BY ord
    FOR UPDATE";

/// Whether any running run of the workers has a `max_parallel` (the
/// `runs_limited` index answers).
const ANY_LIMITED: &str = "SELECT EXISTS (SELECT 1 FROM runs
    WHERE status = 'running' AND max_parallel IS NOT NULL
      AND (owner IS NULL OR owner = 'workers'))";

/// Second step, once they are locked: how many tasks of each run
/// (`$1`) run now.
const RUNNING_OF: &str = "SELECT run_ord, count(*) FROM tasks
    WHERE status = 'running' AND run_ord = ANY($1)
    GROUP BY run_ord";

/// Third step: a window of the ready tasks of the runs with room (`$2`),
/// in claim order, locked.
const LIMITED_CANDIDATES: &str = "SELECT t.run_ord, t.idx, t.needs FROM tasks t
    WHERE t.status = 'ready' AND t.run_ord = ANY($2)
    ORDER BY t.priority DESC, t.run_ord, t.idx
    LIMIT $1
    FOR UPDATE OF t SKIP LOCKED";

/// Second step: the rows picked from the window (greedily, in claim order,
/// each if it fits what the ones before it left) are leased.
const LEASE_PICKED: &str = "UPDATE tasks t SET status = 'running', attempt = t.attempt + 1, worker = $3,
        lease_until = $4, started_at = $5
    FROM unnest($1::bigint[], $2::int[]) AS p(run_ord, idx)
    WHERE t.run_ord = p.run_ord AND t.idx = p.idx
    RETURNING (SELECT r.id FROM runs r WHERE r.ord = t.run_ord), t.idx, t.name, t.attempt, t.priority, t.run_ord, t.needs,
        (SELECT s.spec FROM task_specs s WHERE s.run_ord = t.run_ord AND s.idx = t.idx)";

/// How many more candidates than `max` a fitting claim looks at: rows that
/// fit the capacity alone but not beside the ones before them are passed
/// over, and the window bounds that search.
const WINDOW_FACTOR: usize = 4;

/// Lapsed leases, skipping rows a completion holds (it decides first).
const RECLAIM: &str = "WITH lapsed AS MATERIALIZED (
        SELECT t.run_ord, t.idx FROM tasks t
        WHERE t.status = 'running' AND t.lease_until < $1
          AND EXISTS (SELECT 1 FROM runs r WHERE r.ord = t.run_ord AND r.status = 'running'
                      AND (r.owner IS NULL OR r.owner = 'workers'))
        FOR UPDATE OF t SKIP LOCKED
    )
    UPDATE tasks t SET status = 'ready', worker = NULL, lease_until = NULL
    FROM lapsed l
    WHERE t.run_ord = l.run_ord AND t.idx = l.idx";

/// The claims of `rows` (from [`CLAIM`] or [`LEASE_PICKED`]), in claim
/// order (`RETURNING` keeps none).
fn claims_of(rows: &[tokio_postgres::Row], worker: &str) -> Result<Vec<Claim>> {
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let run: Option<uuid::Uuid> = r.get(0);
        let run = run.ok_or_else(|| store_err("claim", "a claimed task has no run"))?;
        let key = (
            -i32::from(r.get::<_, i16>(4)),
            r.get::<_, i64>(5),
            r.get::<_, i32>(1),
        );
        let needs: Option<Vec<f64>> = r.get(6);
        let claim = Claim {
            run: RunId(run),
            index: r.get::<_, i32>(1) as u32,
            name: r.get(2),
            attempt: r.get::<_, i32>(3) as u32,
            worker: worker.to_owned(),
            needs: needs
                .map(|n| ResourceAmounts::from_dense(&n))
                .unwrap_or_default(),
            spec: r.get(7),
        };
        out.push((key, claim));
    }
    out.sort_by_key(|(k, _)| *k);
    Ok(out.into_iter().map(|(_, c)| c).collect())
}

/// A claim that fits `req.free`: candidates locked, picked greedily, leased,
/// in one transaction.
async fn claim_fitting(
    inner: &Inner,
    req: &ClaimRequest,
    now: DateTime<Utc>,
) -> Result<Vec<Claim>> {
    let mut client = inner.client("claim").await?;
    let tx = client.transaction().await.map_err(db("claim: BEGIN"))?;
    let free: Vec<f64> = ResourceType::ALL
        .iter()
        .map(|k| req.free.0.get(k).copied().unwrap_or(f64::INFINITY))
        .collect();
    let window = i64::try_from(req.max.saturating_mul(WINDOW_FACTOR)).unwrap_or(i64::MAX);
    let stmt = tx.prepare_cached(CANDIDATES).await.map_err(db(
        "claim: prepare SELECT ready tasks that fit .. SKIP LOCKED",
    ))?;
    let rows = tx
        .query(&stmt, &[&window, &free])
        .await
        .map_err(db("claim: SELECT ready tasks that fit .. SKIP LOCKED"))?;
    let mut left = req.free.clone();
    let (mut ords, mut idx) = (Vec::new(), Vec::new());
    for r in &rows {
        if ords.len() >= req.max {
            break;
        }
        let needs: Option<Vec<f64>> = r.get(2);
        let needs = needs
            .map(|n| ResourceAmounts::from_dense(&n))
            .unwrap_or_default();
        if left.take_if_fits(&needs) {
            ords.push(r.get::<_, i64>(0));
            idx.push(r.get::<_, i32>(1));
        }
    }
    lease_picked(tx, &ords, &idx, req, now).await
}

/// Leases the rows picked (`ords[i]`, `idx[i]`, locked by `tx`) for
/// `req.worker` and commits: their claims.
async fn lease_picked(
    tx: deadpool_postgres::Transaction<'_>,
    ords: &[i64],
    idx: &[i32],
    req: &ClaimRequest,
    now: DateTime<Utc>,
) -> Result<Vec<Claim>> {
    if ords.is_empty() {
        tx.commit().await.map_err(db("claim: COMMIT"))?;
        return Ok(Vec::new());
    }
    let stmt = tx
        .prepare_cached(LEASE_PICKED)
        .await
        .map_err(db("claim: prepare UPDATE tasks (picked)"))?;
    let rows = tx
        .query(
            &stmt,
            &[&ords, &idx, &req.worker, &lease_until(now, req.lease), &now],
        )
        .await
        .map_err(db("claim: UPDATE tasks SET status = 'running' (picked)"))?;
    tx.commit().await.map_err(db("claim: COMMIT"))?;
    claims_of(&rows, &req.worker)
}

/// Claims of the runs with a `max_parallel` (the other claims pass them
/// over), for up to `max` more tasks that fit `free` (empty: anything):
/// the runs are locked, their running tasks counted, and each gets at most
/// its room, in claim order, in one transaction.
async fn claim_limited(
    inner: &Inner,
    req: &ClaimRequest,
    max: usize,
    free: &ResourceAmounts,
    now: DateTime<Utc>,
) -> Result<Vec<Claim>> {
    let mut client = inner.client("claim").await?;
    // Most of the time no running run has a limit: one indexed look, and
    // no transaction.
    let any = client
        .prepare_cached(ANY_LIMITED)
        .await
        .map_err(db("claim: prepare SELECT EXISTS runs with max_parallel"))?;
    let any: bool = client
        .query_one(&any, &[])
        .await
        .map_err(db("claim: SELECT EXISTS runs with max_parallel"))?
        .get(0);
    if !any {
        return Ok(Vec::new());
    }
    let tx = client.transaction().await.map_err(db("claim: BEGIN"))?;
    let runs = tx
        .query(LIMITED_RUNS, &[])
        .await
        .map_err(db("claim: SELECT runs with max_parallel .. FOR UPDATE"))?;
    if runs.is_empty() {
        tx.commit().await.map_err(db("claim: COMMIT"))?;
        return Ok(Vec::new());
    }
    let mut rooms: std::collections::HashMap<i64, i64> = runs
        .iter()
        .map(|r| (r.get::<_, i64>(0), i64::from(r.get::<_, i32>(1))))
        .collect();
    let ords: Vec<i64> = rooms.keys().copied().collect();
    let running = tx
        .query(RUNNING_OF, &[&ords])
        .await
        .map_err(db("claim: SELECT count(*) of running tasks by run"))?;
    for r in &running {
        if let Some(room) = rooms.get_mut(&r.get::<_, i64>(0)) {
            *room -= r.get::<_, i64>(1);
        }
    }
    rooms.retain(|_, room| *room > 0);
    let total: i64 = rooms.values().sum();
    if rooms.is_empty() {
        tx.commit().await.map_err(db("claim: COMMIT"))?;
        return Ok(Vec::new());
    }
    let with_room: Vec<i64> = rooms.keys().copied().collect();
    let want = i64::try_from(max).unwrap_or(i64::MAX).min(total);
    let window = want.saturating_mul(WINDOW_FACTOR as i64);
    let rows = tx
        .query(LIMITED_CANDIDATES, &[&window, &with_room])
        .await
        .map_err(db(
            "claim: SELECT ready tasks of limited runs .. SKIP LOCKED",
        ))?;
    let mut left = free.clone();
    let (mut ords, mut idx) = (Vec::new(), Vec::new());
    for r in &rows {
        if ords.len() >= max {
            break;
        }
        let ord = r.get::<_, i64>(0);
        if rooms.get(&ord).is_none_or(|room| *room <= 0) {
            continue;
        }
        let needs: Option<Vec<f64>> = r.get(2);
        let needs = needs
            .map(|n| ResourceAmounts::from_dense(&n))
            .unwrap_or_default();
        if !free.is_empty() && !left.take_if_fits(&needs) {
            continue;
        }
        if let Some(room) = rooms.get_mut(&ord) {
            *room -= 1;
        }
        ords.push(ord);
        idx.push(r.get::<_, i32>(1));
    }
    lease_picked(tx, &ords, &idx, req, now).await
}

/// What is left of `free` once `claims` took their needs.
fn left_after(free: &ResourceAmounts, claims: &[Claim]) -> ResourceAmounts {
    let mut left = free.clone();
    for c in claims {
        left.take_if_fits(&c.needs);
    }
    left
}

#[async_trait]
impl ClaimStore for PostgresStore {
    async fn claim(&self, req: &ClaimRequest, now: DateTime<Utc>) -> Result<Vec<Claim>> {
        if req.max == 0 {
            return Ok(Vec::new());
        }
        let inner = self.inner.clone();
        let req = req.clone();
        self.call(async move {
            let mut claims = if req.free.is_empty() {
                let client = inner.client("claim").await?;
                let stmt = client
                    .prepare_cached(CLAIM)
                    .await
                    .map_err(db("claim: prepare UPDATE tasks .. FOR UPDATE SKIP LOCKED"))?;
                let limit = i64::try_from(req.max).unwrap_or(i64::MAX);
                let rows = client
                    .query(
                        &stmt,
                        &[&limit, &req.worker, &lease_until(now, req.lease), &now],
                    )
                    .await
                    .map_err(db("claim: UPDATE tasks .. FOR UPDATE SKIP LOCKED"))?;
                claims_of(&rows, &req.worker)?
            } else {
                claim_fitting(&inner, &req, now).await?
            };
            // The runs with a `max_parallel` were passed over: what is left
            // of the claim goes to them.
            if claims.len() < req.max {
                let free = if req.free.is_empty() {
                    ResourceAmounts::default()
                } else {
                    left_after(&req.free, &claims)
                };
                let more = claim_limited(&inner, &req, req.max - claims.len(), &free, now).await?;
                claims.extend(more);
            }
            Ok(claims)
        })
        .await
    }

    fn fits_capacity(&self) -> bool {
        true
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

    async fn complete_many(
        &self,
        done: Vec<(Claim, TaskOutcome)>,
        events: Vec<(RunId, StoredEvent)>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Result<()>>> {
        let inner = self.inner.clone();
        self.call(batch::complete_many(inner, done, events, now))
            .await
    }

    async fn release_claim(&self, claim: &Claim, _now: DateTime<Utc>) -> Result<bool> {
        let inner = self.inner.clone();
        let c = claim.clone();
        self.call(async move {
            let mut client = inner.client("release_claim").await?;
            let tx = client
                .transaction()
                .await
                .map_err(db("release_claim: BEGIN"))?;
            let n = tx
                .execute(
                    "UPDATE tasks SET status = 'ready', worker = NULL, lease_until = NULL
                     WHERE run_ord = (SELECT ord FROM runs WHERE id = $1) AND idx = $2
                       AND attempt = $3 AND status = 'running'",
                    &[&c.run.0, &(c.index as i32), &(c.attempt as i32)],
                )
                .await
                .map_err(db("release_claim: UPDATE tasks SET status = 'ready'"))?;
            if n == 1 {
                notify_in(&tx, &inner.tag).await?;
            }
            tx.commit().await.map_err(db("release_claim: COMMIT"))?;
            Ok(n == 1)
        })
        .await
    }

    async fn task_records(&self, run: RunId, indices: &[u32]) -> Result<Vec<TaskRecord>> {
        let inner = self.inner.clone();
        let idx: Vec<i32> = indices.iter().map(|&i| i as i32).collect();
        self.call(async move {
            let client = inner.client("task_records").await?;
            let stmt = client
                .prepare_cached(&format!(
                    "SELECT {TASK_COLUMNS} FROM tasks t
                     WHERE t.run_ord = (SELECT ord FROM runs WHERE id = $1) AND t.idx = ANY($2)"
                ))
                .await
                .map_err(db("task_records: prepare SELECT FROM tasks"))?;
            let rows = client
                .query(&stmt, &[&run.0, &idx])
                .await
                .map_err(db("task_records: SELECT FROM tasks .. idx = ANY"))?;
            let mut by_idx = std::collections::HashMap::with_capacity(rows.len());
            for r in &rows {
                let t = decode_task(run, r)?;
                by_idx.insert(t.index, t);
            }
            Ok(idx
                .iter()
                .filter_map(|&i| by_idx.get(&(i as u32)).cloned())
                .collect())
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
