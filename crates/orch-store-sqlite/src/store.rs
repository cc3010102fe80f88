//! The `Store` contract, implemented on the store's thread.

use crate::SqliteStore;
use crate::error::{not_found, sql_err, store_err};
use crate::finish::{
    append_in, finish_in, finish_in_with, finish_run_if_done, remember_dependents,
    start_and_finish_one, start_in,
};
use crate::rows::{
    lease_until, list_in, micros, read_run, read_run_brief, read_tasks, require_run, time,
};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use orch_model::store::{
    CacheStore, ClaimStore, RecordStore, RunRecord, StoredEvent, TakeOver, TaskRecord,
    started_attempts,
};
use orch_model::{
    EntityKind, Finished, NewRun, OrchestrationError, Result, RunId, Store, StoreCapabilities,
    WorkflowStatus,
};
use rusqlite::{OptionalExtension, params};
use serde_json::Value;
use std::time::Duration;

/// Most tasks in a request run on its caller's thread (`call_small`): a
/// bigger one would hold that thread (an async runtime's worker) too long.
const SMALL: usize = 256;

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        crate::error::BACKEND
    }

    fn capabilities(&self) -> StoreCapabilities {
        StoreCapabilities {
            durable: true,
            distributed_claim: false,
            notify: false,
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

    fn output_store(&self) -> Option<&dyn orch_model::store::OutputStore> {
        Some(self)
    }

    fn leaders(&self) -> Option<&dyn orch_model::store::LeaderStore> {
        Some(self)
    }

    async fn create_run(&self, run: NewRun, now: DateTime<Utc>) -> Result<()> {
        self.call(move |conn| {
            let id = run.id.to_string();
            let n = run.tasks.len() as u32;
            for (i, t) in run.tasks.iter().enumerate() {
                if let Some(d) = t.deps.iter().find(|&&d| d >= n || d as usize == i) {
                    return Err(OrchestrationError::invalid_parameters(format!(
                        "task {i} (`{}`) depends on {d}, which is not another task of the run",
                        t.name
                    )));
                }
            }
            let ord: i64 = conn
                .query_row("SELECT COALESCE(MAX(ord), 0) + 1 FROM runs", [], |r| {
                    r.get(0)
                })
                .map_err(sql_err)?;
            conn.execute(
                "INSERT INTO runs (id, ord, workflow, status, created_at, params, parent, owner, max_parallel)
                 VALUES (?1, ?2, ?3, 'running', ?4, ?5, ?6, ?7, ?8)",
                params![
                    id,
                    ord,
                    run.workflow,
                    micros(now),
                    serde_json::to_string(&run.params).map_err(|e| store_err("params", e))?,
                    run.parent.map(|p| p.to_string()),
                    run.owner,
                    run.max_parallel,
                ],
            )
            .map_err(|e| match e.sqlite_error_code() {
                Some(rusqlite::ErrorCode::ConstraintViolation) => {
                    OrchestrationError::AlreadyExists {
                        kind: EntityKind::Run,
                        name: id.clone(),
                        hint: None,
                    }
                }
                _ => sql_err(e),
            })?;
            conn.execute(
                "INSERT OR REPLACE INTO definitions (ord, text) VALUES (?1, ?2)",
                params![ord, run.definition],
            )
            .map_err(sql_err)?;
            conn.execute(
                "INSERT OR REPLACE INTO run_open (run, open) VALUES (?1, ?2)",
                params![id, n as i64],
            )
            .map_err(sql_err)?;
            // Each task's dependents, and its count of distinct dependencies.
            let mut dependents: Vec<Vec<u32>> = vec![Vec::new(); run.tasks.len()];
            let mut remaining = Vec::with_capacity(run.tasks.len());
            for (i, t) in run.tasks.iter().enumerate() {
                let mut deps = t.deps.clone();
                deps.sort_unstable();
                deps.dedup();
                for &d in &deps {
                    dependents[d as usize].push(i as u32);
                }
                remaining.push(deps.len() as u32);
            }
            let mut task = conn
                .prepare_cached(
                    "INSERT INTO tasks (key, run, idx, name, status, attempt, remaining, priority, dependents)
                     VALUES (?1 * 4294967296 + ?2, ?1, ?2, ?3, ?4, 0, ?5, ?6, ?7)",
                )
                .map_err(sql_err)?;
            for (i, t) in run.tasks.iter().enumerate() {
                let status = if t.deps.is_empty() {
                    "ready"
                } else {
                    "pending"
                };
                let ds = &dependents[i];
                let list = if ds.is_empty() {
                    None
                } else {
                    Some(serde_json::to_string(ds).map_err(|e| store_err("dependents", e))?)
                };
                task.execute(params![
                    ord,
                    i as u32,
                    t.name,
                    status,
                    remaining[i],
                    t.priority as i64,
                    list
                ])
                .map_err(sql_err)?;
            }
            // What a task takes of a claiming worker (most need nothing).
            let mut needs = None;
            for (i, t) in run.tasks.iter().enumerate() {
                if t.needs.is_empty() {
                    continue;
                }
                let stmt = match &mut needs {
                    Some(s) => s,
                    None => needs.insert(
                        conn.prepare_cached(
                            "UPDATE tasks SET needs = ?3 WHERE key = ?1 * 4294967296 + ?2",
                        )
                        .map_err(sql_err)?,
                    ),
                };
                let text = serde_json::to_string(&t.needs).map_err(|e| store_err("needs", e))?;
                stmt.execute(params![ord, i as u32, text]).map_err(sql_err)?;
            }
            // What a worker needs of a submitted run's task (none for a run
            // this process drives).
            let mut specs = None;
            for (i, t) in run.tasks.iter().enumerate() {
                let Some(spec) = &t.spec else { continue };
                let stmt = match &mut specs {
                    Some(s) => s,
                    None => specs.insert(
                        conn.prepare_cached(
                            "UPDATE tasks SET spec = ?3 WHERE key = ?1 * 4294967296 + ?2",
                        )
                        .map_err(sql_err)?,
                    ),
                };
                stmt.execute(params![ord, i as u32, spec]).map_err(sql_err)?;
            }
            remember_dependents(&id, std::sync::Arc::new(dependents));
            Ok(())
        })
        .await
    }

    async fn get_run(&self, id: RunId) -> Result<Option<RunRecord>> {
        self.read_small(move |conn| read_run(conn, id), true).await
    }

    async fn get_run_brief(&self, id: RunId) -> Result<Option<RunRecord>> {
        // Taken before the read: if it is seen again, nothing was committed
        // since, and what this read finds is still what the database holds.
        let stamp = self.unchanged_stamp();
        if let Some(s) = &stamp {
            if let Some(r) = self.briefs.get(s, id) {
                if self.readers.still_ours(&self.path) {
                    return Ok(Some(r));
                }
            }
        }
        let r = self
            .read_statement(move |conn| read_run_brief(conn, id), true)
            .await?;
        if let (Some(s), Some(r)) = (stamp, &r) {
            self.briefs.put(s, r);
        }
        Ok(r)
    }

    async fn list_runs(&self) -> Result<Vec<RunRecord>> {
        self.call(|conn| list_in(conn, None)).await
    }

    async fn recent_runs(&self, limit: usize) -> Result<Vec<RunRecord>> {
        self.call(move |conn| list_in(conn, Some(limit))).await
    }

    async fn tasks(&self, run: RunId) -> Result<Vec<TaskRecord>> {
        self.call_keeping(move |conn| read_tasks(conn, run), true)
            .await
    }

    async fn cancel_run(&self, run: RunId, now: DateTime<Utc>) -> Result<()> {
        self.call(move |conn| {
            let key = run.to_string();
            let ord = require_run(conn, &key)?;
            let n = conn
                .execute(
                    "UPDATE tasks SET status = 'cancelled', lease_worker = NULL, lease_until = NULL,
                     finished_at = ?2
                 WHERE key BETWEEN ?1 * 4294967296 AND ?1 * 4294967296 + 4294967295 AND status NOT IN ('completed', 'failed', 'cancelled', 'skipped')",
                    params![ord, micros(now)],
                )
                .map_err(sql_err)?;
            finish_run_if_done(conn, &key, ord, n as u64, now)
        })
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
        let small = tasks.len() <= SMALL;
        let tasks = tasks.to_vec();
        let worker = worker.to_owned();
        let start = move |conn: &rusqlite::Connection| {
            let ord = require_run(conn, &run.to_string())?;
            start_in(conn, ord, &tasks, &worker, lease_until(now, lease), now)
        };
        if small {
            self.call_small(start).await
        } else {
            self.call(start).await
        }
    }

    async fn finish_tasks(
        &self,
        run: RunId,
        done: Vec<Finished>,
        now: DateTime<Utc>,
    ) -> Result<()> {
        self.call(move |conn| finish_in(conn, run, done, now)).await
    }

    async fn finish_and_append(
        &self,
        run: RunId,
        done: Vec<Finished>,
        events: Vec<StoredEvent>,
        now: DateTime<Utc>,
    ) -> Result<()> {
        // One request, one savepoint: both happen or neither, in one commit.
        let small = done.len() <= SMALL;
        let finish = move |conn: &rusqlite::Connection| {
            if !done.is_empty() {
                finish_in(conn, run, done, now)?;
            }
            if !events.is_empty() {
                append_in(conn, run, events)?;
            }
            Ok(())
        };
        if small {
            self.call_small(finish).await
        } else {
            self.call(finish).await
        }
    }

    async fn start_and_finish(
        &self,
        run: RunId,
        start: &[u32],
        worker: &str,
        lease: Duration,
        done: Vec<Finished>,
        events: Vec<StoredEvent>,
        now: DateTime<Utc>,
    ) -> Result<Vec<u32>> {
        let small = start.len() + done.len() <= SMALL;
        let start = start.to_vec();
        let worker = worker.to_owned();
        // One request, one commit: a turn's starts, its finishes and their
        // events are durable together or not at all.
        let turn = move |conn: &rusqlite::Connection| {
            let ord = require_run(conn, &run.to_string())?;
            // A step that started and ended within the turn (the caller's
            // entry names the attempt it expects the start to give): one
            // write, when the task is as expected. The others: started,
            // then finished, the checked way.
            let mut given = vec![0u32; start.len()];
            let mut ended = Vec::new();
            let mut rest = Vec::with_capacity(done.len());
            if start.is_empty() {
                rest = done;
            } else {
                let at: rustc_hash::FxHashMap<u32, usize> =
                    start.iter().enumerate().map(|(k, &i)| (i, k)).collect();
                for f in done {
                    let Some(&k) = at.get(&f.index) else {
                        rest.push(f);
                        continue;
                    };
                    let (index, attempt) = (f.index, f.attempt);
                    match start_and_finish_one(conn, ord, f, now)? {
                        None => {
                            given[k] = attempt;
                            ended.push(index);
                        }
                        Some(f) => rest.push(f),
                    }
                }
            }
            let starting: Vec<u32> = start
                .iter()
                .zip(&given)
                .filter(|&(_, &g)| g == 0)
                .map(|(&i, _)| i)
                .collect();
            if !starting.is_empty() {
                let fresh = start_in(conn, ord, &starting, &worker, lease_until(now, lease), now)?;
                started_attempts(&starting, &fresh, &mut rest);
                let mut fresh = fresh.into_iter();
                for g in given.iter_mut().filter(|g| **g == 0) {
                    *g = fresh.next().unwrap_or_default();
                }
            }
            if !rest.is_empty() || !ended.is_empty() {
                finish_in_with(conn, run, rest, &ended, now)?;
            }
            if !events.is_empty() {
                append_in(conn, run, events)?;
            }
            Ok(given)
        };
        if small {
            self.call_small(turn).await
        } else {
            self.call(turn).await
        }
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
        let start = start.to_vec();
        let worker = worker.to_owned();
        // One request, one savepoint, one commit: the finish, its events and
        // the start of what it released are durable together or not at all.
        self.call(move |conn| {
            if !done.is_empty() {
                finish_in(conn, run, done, now)?;
            }
            if !events.is_empty() {
                append_in(conn, run, events)?;
            }
            if start.is_empty() {
                return Ok(Vec::new());
            }
            let ord = require_run(conn, &run.to_string())?;
            start_in(conn, ord, &start, &worker, lease_until(now, lease), now)
        })
        .await
    }

    async fn requeue_running(&self, run: RunId) -> Result<usize> {
        self.call(move |conn| {
            let key = run.to_string();
            let ord = require_run(conn, &key)?;
            let n = conn
                .execute(
                    "UPDATE tasks SET status = 'ready', lease_worker = NULL, lease_until = NULL
                     WHERE key BETWEEN ?1 * 4294967296 AND ?1 * 4294967296 + 4294967295 AND status = 'running'",
                    params![ord],
                )
                .map_err(sql_err)?;
            if n > 0 {
                conn.execute(
                    "UPDATE runs SET status = 'running', finished_at = NULL WHERE id = ?1",
                    params![key],
                )
                .map_err(sql_err)?;
            }
            Ok(n)
        })
        .await
    }

    async fn finish_run(
        &self,
        run: RunId,
        status: WorkflowStatus,
        now: DateTime<Utc>,
    ) -> Result<()> {
        self.call(move |conn| {
            let n = conn
                .execute(
                    "UPDATE runs SET status = ?2, finished_at = ?3 WHERE id = ?1",
                    params![run.to_string(), status.as_str(), micros(now)],
                )
                .map_err(sql_err)?;
            if n == 0 { Err(not_found(run)) } else { Ok(()) }
        })
        .await
    }

    async fn set_owner(&self, run: RunId, owner: Option<String>) -> Result<()> {
        self.call(move |conn| {
            let n = conn
                .execute(
                    "UPDATE runs SET owner = ?2 WHERE id = ?1",
                    params![run.to_string(), owner],
                )
                .map_err(sql_err)?;
            if n == 0 { Err(not_found(run)) } else { Ok(()) }
        })
        .await
    }

    async fn take_over(&self, run: RunId, expected: Option<&str>, owner: &str) -> Result<TakeOver> {
        let (expected, owner) = (expected.map(str::to_owned), owner.to_owned());
        self.call(move |conn| {
            let key = run.to_string();
            // One statement compares and sets, under the write lock of the
            // transaction (`BEGIN IMMEDIATE`): of two processes, the second
            // sees the first one's owner and changes nothing.
            let n = conn
                .execute(
                    "UPDATE runs SET owner = ?3
                     WHERE id = ?1 AND status = 'running' AND owner IS ?2",
                    params![key, expected, owner],
                )
                .map_err(sql_err)?;
            if n == 1 {
                return Ok(TakeOver::Taken);
            }
            let now: Option<(String, Option<String>)> = conn
                .query_row(
                    "SELECT status, owner FROM runs WHERE id = ?1",
                    params![key],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()
                .map_err(sql_err)?;
            match now {
                None => Err(not_found(run)),
                Some((status, owner)) => match status.parse::<WorkflowStatus>() {
                    Ok(WorkflowStatus::Running) => Ok(TakeOver::Held { owner }),
                    Ok(status) => Ok(TakeOver::Ended { status }),
                    Err(e) => Err(store_err(&format!("run {key}"), format!("bad status: {e}"))),
                },
            }
        })
        .await
    }

    async fn request_cancel(&self, run: RunId) -> Result<bool> {
        self.call(move |conn| {
            let key = run.to_string();
            require_run(conn, &key)?;
            let n = conn
                .execute(
                    "UPDATE runs SET cancel_requested = 1 WHERE id = ?1 AND status = 'running'",
                    params![key],
                )
                .map_err(sql_err)?;
            Ok(n == 1)
        })
        .await
    }

    async fn cancel_requested(&self, run: RunId) -> Result<bool> {
        let read = move |conn: &rusqlite::Connection| {
            conn.prepare_cached("SELECT cancel_requested FROM runs WHERE id = ?1")
                .and_then(|mut s| {
                    s.query_row(params![run.to_string()], |r| r.get::<_, bool>(0))
                        .optional()
                })
                .map_err(sql_err)
                .map(|v| v.unwrap_or(false))
        };
        self.read_small(read, false).await
    }

    async fn problems(&self) -> Result<Vec<String>> {
        self.call(|conn| {
            let mut stmt = conn
                .prepare("SELECT tbl, key, reason FROM quarantine ORDER BY id")
                .map_err(sql_err)?;
            let rows = stmt
                .query_map([], |r| {
                    Ok(format!(
                        "{} row {} set aside: {}",
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?
                    ))
                })
                .map_err(sql_err)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(sql_err)?;
            Ok(rows)
        })
        .await
    }

    async fn append_events(&self, run: RunId, events: Vec<StoredEvent>) -> Result<()> {
        self.call(move |conn| append_in(conn, run, events)).await
    }
    async fn events(&self, run: RunId, after: u64) -> Result<Vec<StoredEvent>> {
        self.call(move |conn| {
            let mut stmt = conn
                .prepare_cached("SELECT seq, at, kind, task, data FROM events WHERE run = ?1 AND seq > ?2 ORDER BY seq")
                .map_err(sql_err)?;
            let rows = stmt
                .query_map(params![run.to_string(), after as i64], |r| {
                    let data: String = r.get(4)?;
                    Ok(StoredEvent {
                        seq: r.get::<_, i64>(0)? as u64,
                        at: time(r.get(1)?),
                        kind: r.get(2)?,
                        task: r.get(3)?,
                        data: serde_json::from_str(&data).unwrap_or(Value::String(data)),
                    })
                })
                .map_err(sql_err)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(sql_err)?;
            Ok(rows)
        })
        .await
    }
}
