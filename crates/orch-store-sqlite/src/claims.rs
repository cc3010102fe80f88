//! Claims with leases and fencing (`ClaimStore`): workers pull ready tasks
//! across runs. The SQLite store supports them within one machine (its
//! capabilities say `distributed_claim: false`).
//!
//! Each task keeps what it takes of a claimer's capacity (`needs`, written
//! by `create_run` for the tasks that need something), so a claim with a
//! limited `free` hands out only tasks that fit it (`fits_capacity`).

use crate::SqliteStore;
use crate::error::{invalid, sql_err, store_err};
use crate::finish::{append_in, finish_one, finish_run_if_done};
use crate::rows::{decode_task, lease_until, micros, quarantine, require_run, run_ord};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use orch_model::store::{ClaimRequest, ClaimStore, ResourceAmounts, StoredEvent, TaskRecord};
use orch_model::{Claim, Result, RunId, TaskOutcome};
use rusqlite::{Connection, OptionalExtension, params};
use std::time::Duration;

/// Completes one claim inside the caller's transaction.
fn complete_in(
    conn: &Connection,
    c: &Claim,
    outcome: TaskOutcome,
    now: DateTime<Utc>,
) -> Result<()> {
    let run = c.run.to_string();
    let ord = require_run(conn, &run)?;
    if c.attempt == 0 {
        return Err(invalid(format!(
            "complete: attempt 0 of task `{}` was never claimed",
            c.name
        )));
    }
    finish_one(conn, &run, ord, c.index, c.attempt, outcome, now)?;
    finish_run_if_done(conn, &run, ord, 1, now)
}

#[async_trait]
impl ClaimStore for SqliteStore {
    async fn claim(&self, req: &ClaimRequest, now: DateTime<Utc>) -> Result<Vec<Claim>> {
        let (worker, max, lease) = (req.worker.clone(), req.max, req.lease);
        let free = req.free.clone();
        self.call_small(move |conn| {
            // With a capacity, a window of candidates in claim order is
            // read and taken greedily, each if it fits what the ones before
            // it left free (a task that needs more than is free is passed
            // over, not waited for).
            let fitting = !free.is_empty();
            let window = if fitting {
                max.saturating_mul(8).saturating_add(64)
            } else {
                max
            };
            let mut stmt = conn
                .prepare_cached(
                    "SELECT r.id, t.idx, t.name, t.attempt, t.run, t.needs, t.spec, l.room
                     FROM runs r
                     LEFT JOIN (SELECT lr.ord, lr.max_parallel - (
                                    SELECT COUNT(*) FROM tasks x WHERE x.status = 'running'
                                      AND x.key BETWEEN lr.ord * 4294967296 AND lr.ord * 4294967296 + 4294967295
                                ) AS room
                                FROM runs lr WHERE lr.status = 'running' AND lr.max_parallel IS NOT NULL) l
                         ON l.ord = r.ord
                     JOIN tasks t
                         ON t.key BETWEEN r.ord * 4294967296 AND r.ord * 4294967296 + 4294967295
                     WHERE t.status = 'ready' AND r.status = 'running' AND r.quarantined IS NULL
                       AND (r.owner IS NULL OR r.owner = 'workers')
                       AND (l.room IS NULL OR l.room > 0)
                     ORDER BY t.priority DESC, r.ord, t.idx LIMIT ?1",
                )
                .map_err(sql_err)?;
            #[allow(clippy::type_complexity)]
            let rows: Vec<(
                String,
                u32,
                String,
                u32,
                i64,
                Option<String>,
                Option<String>,
                Option<i64>,
            )> = stmt
                .query_map(params![window as i64], |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                        r.get(6)?,
                        r.get(7)?,
                    ))
                })
                .map_err(sql_err)?
                .collect::<rusqlite::Result<_>>()
                .map_err(sql_err)?;
            let mut left = free;
            let mut picked = Vec::with_capacity(max.min(rows.len()));
            // What is left of each limited run's `max_parallel` (its tasks
            // running now, then those picked here, count).
            let mut rooms: std::collections::HashMap<i64, i64> = std::collections::HashMap::new();
            for (run, idx, name, attempt, ord, needs, spec, room) in rows {
                if picked.len() == max {
                    break;
                }
                if room.is_some_and(|r| *rooms.entry(ord).or_insert(r) <= 0) {
                    continue;
                }
                let needs: ResourceAmounts = match needs {
                    Some(text) => serde_json::from_str(&text)
                        .map_err(|e| store_err(&format!("needs of task {idx} of run {run}"), e))?,
                    None => ResourceAmounts::default(),
                };
                if fitting && !left.take_if_fits(&needs) {
                    continue;
                }
                if let Some(r) = rooms.get_mut(&ord) {
                    *r -= 1;
                }
                picked.push((run, idx, name, attempt, ord, needs, spec));
            }
            let mut out = Vec::with_capacity(picked.len());
            for (run, idx, name, attempt, ord, needs, spec) in picked {
                conn.prepare_cached(
                    "UPDATE tasks SET status = 'running', attempt = attempt + 1, lease_worker = ?3,
                         lease_until = ?4, started_at = ?5 WHERE key = ?1 * 4294967296 + ?2",
                )
                .and_then(|mut s| {
                    s.execute(params![
                        ord,
                        idx,
                        worker,
                        lease_until(now, lease),
                        micros(now)
                    ])
                })
                .map_err(sql_err)?;
                out.push(Claim {
                    run: run.parse().map_err(|e| store_err("run id", e))?,
                    index: idx,
                    name,
                    attempt: attempt + 1,
                    worker: worker.clone(),
                    needs,
                    spec,
                });
            }
            Ok(out)
        })
        .await
    }

    fn fits_capacity(&self) -> bool {
        true
    }

    async fn heartbeat(&self, claim: &Claim, lease: Duration, now: DateTime<Utc>) -> Result<bool> {
        let c = claim.clone();
        self.call_small(move |conn| {
            let n = conn
                .execute(
                    "UPDATE tasks SET lease_until = ?4, lease_worker = ?5
                     WHERE key = (SELECT ord FROM runs WHERE id = ?1) * 4294967296 + ?2 AND attempt = ?3
                       AND status = 'running'",
                    params![
                        c.run.to_string(),
                        c.index,
                        c.attempt,
                        lease_until(now, lease),
                        c.worker
                    ],
                )
                .map_err(sql_err)?;
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
        let c = claim.clone();
        self.call_small(move |conn| complete_in(conn, &c, outcome, now))
            .await
    }

    async fn complete_many(
        &self,
        done: Vec<(Claim, TaskOutcome)>,
        events: Vec<(RunId, StoredEvent)>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Result<()>>> {
        self.call_small(move |conn| {
            let mut answers = Vec::with_capacity(done.len());
            for (c, outcome) in done {
                // Each claim on its own account: a refused one rolls back
                // only what it wrote.
                conn.execute_batch("SAVEPOINT claim").map_err(sql_err)?;
                let answer = complete_in(conn, &c, outcome, now);
                let end = if answer.is_ok() {
                    "RELEASE claim"
                } else {
                    "ROLLBACK TO claim; RELEASE claim"
                };
                conn.execute_batch(end).map_err(sql_err)?;
                answers.push(answer);
            }
            if answers.iter().all(Result::is_ok) {
                for (run, e) in events {
                    append_in(conn, run, vec![e])?;
                }
            }
            Ok(answers)
        })
        .await
    }

    async fn release_claim(&self, claim: &Claim, _now: DateTime<Utc>) -> Result<bool> {
        let c = claim.clone();
        self.call_small(move |conn| {
            let n = conn
                .execute(
                    "UPDATE tasks SET status = 'ready', lease_worker = NULL, lease_until = NULL
                     WHERE key = (SELECT ord FROM runs WHERE id = ?1) * 4294967296 + ?2 AND attempt = ?3
                       AND status = 'running'",
                    params![c.run.to_string(), c.index, c.attempt],
                )
                .map_err(sql_err)?;
            Ok(n == 1)
        })
        .await
    }

    async fn task_records(&self, run: RunId, indices: &[u32]) -> Result<Vec<TaskRecord>> {
        let indices = indices.to_vec();
        self.call_small(move |conn| {
            let key = run.to_string();
            let Some(ord) = run_ord(conn, &key)? else {
                return Ok(Vec::new());
            };
            let mut stmt = conn
                .prepare_cached(
                    "SELECT idx, name, status, attempt, remaining, priority, lease_worker, lease_until, result, note, started_at, finished_at
                     FROM tasks WHERE key = ?1 * 4294967296 + ?2",
                )
                .map_err(sql_err)?;
            let mut out = Vec::with_capacity(indices.len());
            for i in indices {
                let row = stmt
                    .query_row(params![ord, i], |r| decode_task(run, r))
                    .optional()
                    .map_err(sql_err)?;
                match row {
                    None => {}
                    Some(Ok(t)) => out.push(t),
                    Some(Err(why)) => {
                        quarantine(conn, &key, &why)?;
                        return Err(store_err(&format!("run {key} is quarantined"), why));
                    }
                }
            }
            Ok(out)
        })
        .await
    }

    async fn reclaim_expired(&self, now: DateTime<Utc>) -> Result<usize> {
        self.call_small(move |conn| {
            conn.execute(
                "UPDATE tasks SET status = 'ready', lease_worker = NULL, lease_until = NULL
                 WHERE key IN (
                     SELECT t.key FROM runs r JOIN tasks t
                         ON t.key BETWEEN r.ord * 4294967296 AND r.ord * 4294967296 + 4294967295
                     WHERE r.status = 'running' AND (r.owner IS NULL OR r.owner = 'workers')
                       AND t.status = 'running' AND t.lease_until < ?1)",
                params![micros(now)],
            )
            .map_err(sql_err)
        })
        .await
    }
}
