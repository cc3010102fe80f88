//! Rows as records: runs, tasks and their counts; times and priorities.

use crate::error::{db, not_found, store_err};
use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use orch_model::store::{Lease, RunRecord, TaskCounts, TaskRecord};
use orch_model::{Result, RunId, TaskPriority, TaskResult, TaskStatus, WorkflowStatus};
use std::collections::HashMap;
use std::time::Duration;
use tokio_postgres::Row;

/// When a lease taken at `now` for `lease` ends.
pub(crate) fn lease_until(now: DateTime<Utc>, lease: Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(lease)
        .ok()
        .and_then(|d| now.checked_add_signed(d))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

pub(crate) fn priority_from(n: i16) -> TaskPriority {
    match n {
        1 => TaskPriority::Low,
        3 => TaskPriority::High,
        4 => TaskPriority::Critical,
        _ => TaskPriority::Normal,
    }
}

pub(crate) fn task_status(s: &str) -> Result<TaskStatus> {
    s.parse::<TaskStatus>()
        .map_err(|e| store_err("read a task's status", e))
}

/// The run's `ord`, if there is such a run.
pub(crate) async fn run_ord(c: &impl GenericClient, run: RunId) -> Result<Option<i64>> {
    let row = c
        .query_opt("SELECT ord FROM runs WHERE id = $1", &[&run.0])
        .await
        .map_err(db("find the run: SELECT ord FROM runs"))?;
    Ok(row.map(|r| r.get(0)))
}

/// The run's `ord`, or `NotFound`.
pub(crate) async fn require_run(c: &impl GenericClient, run: RunId) -> Result<i64> {
    run_ord(c, run).await?.ok_or_else(|| not_found(run))
}

/// The columns [`decode_run`] reads, from `runs r`.
pub(crate) const RUN_COLUMNS: &str = "r.id, r.workflow, r.status, r.created_at, r.finished_at, r.params, r.owner, r.cancel_requested, r.parent, r.ord";

/// A run's row (of [`RUN_COLUMNS`]) as a record, without counts.
pub(crate) fn decode_run(row: &Row, definition: String) -> Result<(i64, RunRecord)> {
    let id = RunId(row.get(0));
    let status: String = row.get(2);
    let status = status
        .parse::<WorkflowStatus>()
        .map_err(|e| store_err(&format!("read run {id}"), format!("bad status: {e}")))?;
    let params: String = row.get(5);
    let params = serde_json::from_str(&params)
        .map_err(|e| store_err(&format!("read run {id}"), format!("bad params JSON: {e}")))?;
    Ok((
        row.get(9),
        RunRecord {
            id,
            workflow: row.get(1),
            status,
            created_at: row.get(3),
            finished_at: row.get(4),
            params,
            definition,
            owner: row.get(6),
            cancel_requested: row.get(7),
            parent: row.get::<_, Option<uuid::Uuid>>(8).map(RunId),
            tasks: TaskCounts::default(),
        },
    ))
}

/// How many tasks of each run of `ords` are in each state: one aggregate,
/// reading no result.
pub(crate) async fn count_tasks(
    c: &impl GenericClient,
    ords: &[i64],
) -> Result<HashMap<i64, TaskCounts>> {
    let rows = c
        .query(
            "SELECT run_ord, status, count(*) FROM tasks WHERE run_ord = ANY($1) GROUP BY run_ord, status",
            &[&ords],
        )
        .await
        .map_err(db("count tasks: SELECT status, count(*) FROM tasks"))?;
    let mut out: HashMap<i64, TaskCounts> = HashMap::new();
    for r in rows {
        let n: i64 = r.get(2);
        let status: String = r.get(1);
        out.entry(r.get(0))
            .or_default()
            .add(task_status(&status)?, u32::try_from(n).unwrap_or(u32::MAX));
    }
    Ok(out)
}

/// The columns [`decode_task`] reads, from `tasks t`.
pub(crate) const TASK_COLUMNS: &str = "t.idx, t.name, t.status, t.attempt, t.remaining, t.priority, t.worker, t.lease_until, t.result, t.note, t.started_at, t.finished_at";

pub(crate) fn decode_task(run: RunId, row: &Row) -> Result<TaskRecord> {
    let idx: i32 = row.get(0);
    let status: String = row.get(2);
    let result: Option<String> = row.get(8);
    let result = result
        .map(|t| serde_json::from_str::<TaskResult>(&t))
        .transpose()
        .map_err(|e| {
            store_err(
                &format!("read task {idx} of run {run}"),
                format!("bad result JSON: {e}"),
            )
        })?;
    let worker: Option<String> = row.get(6);
    let until: Option<DateTime<Utc>> = row.get(7);
    Ok(TaskRecord {
        run,
        index: idx as u32,
        name: row.get(1),
        status: task_status(&status)?,
        attempt: row.get::<_, i32>(3) as u32,
        remaining: row.get::<_, i32>(4) as u32,
        priority: priority_from(row.get(5)),
        lease: worker
            .zip(until)
            .map(|(worker, until)| Lease { worker, until }),
        result,
        note: row.get(9),
        started_at: row.get(10),
        finished_at: row.get(11),
    })
}
