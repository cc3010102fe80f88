//! Runs: creating (a batch of `UNNEST` inserts), reading and listing with
//! counts, cancelling, owners and taking over, requeueing; events.

use crate::Inner;
use crate::error::{db, db_err, not_found, store_err};
use crate::journal::{finish_run_if_done, notify_in};
use crate::rows::{RUN_COLUMNS, TASK_COLUMNS, count_tasks, decode_run, decode_task, require_run};
use chrono::{DateTime, Utc};
use orch_model::store::{RunRecord, StoredEvent, TakeOver, TaskRecord};
use orch_model::{EntityKind, NewRun, OrchestrationError, Result, RunId, WorkflowStatus};
use serde_json::Value;
use std::sync::Arc;
use tokio_postgres::error::SqlState;

/// Tasks inserted by one statement when creating a run.
const INSERT_CHUNK: usize = 10_000;

/// Stores a new run and its tasks in one transaction: ready without
/// dependencies, pending with `remaining` set otherwise; wakes workers.
pub(crate) async fn create(inner: Arc<Inner>, run: NewRun, now: DateTime<Utc>) -> Result<()> {
    let n = run.tasks.len();
    for (i, t) in run.tasks.iter().enumerate() {
        if let Some(d) = t.deps.iter().find(|&&d| d as usize >= n || d as usize == i) {
            return Err(OrchestrationError::invalid_parameters(format!(
                "task {i} (`{}`) depends on {d}, which is not another task of the run",
                t.name
            )));
        }
    }
    // Each task's dependents, and its count of distinct dependencies.
    let mut dependents: Vec<Vec<u32>> = vec![Vec::new(); n];
    let mut remaining = Vec::with_capacity(n);
    for (i, t) in run.tasks.iter().enumerate() {
        let mut deps = t.deps.clone();
        deps.sort_unstable();
        deps.dedup();
        for &d in &deps {
            dependents[d as usize].push(i as u32);
        }
        remaining.push(deps.len() as i32);
    }
    let params = serde_json::to_string(&run.params)
        .map_err(|e| store_err("create_run: encode params", e))?;
    let mut client = inner.client("create_run").await?;
    let tx = client
        .transaction()
        .await
        .map_err(db("create_run: BEGIN"))?;
    let id = run.id;
    let ord: i64 = tx
        .query_one(
            "INSERT INTO runs (id, workflow, status, created_at, params, parent, open_tasks, owner, max_parallel)
             VALUES ($1, $2, 'running', $3, $4, $5, $6, $7, $8) RETURNING ord",
            &[
                &id.0,
                &run.workflow,
                &now,
                &params,
                &run.parent.map(|p| p.0),
                &(n as i64),
                &run.owner,
                &run.max_parallel.map(|m| i32::try_from(m).unwrap_or(i32::MAX)),
            ],
        )
        .await
        .map_err(|e| {
            if e.code() == Some(&SqlState::UNIQUE_VIOLATION) {
                OrchestrationError::AlreadyExists {
                    kind: EntityKind::Run,
                    name: id.to_string(),
                    hint: None,
                }
            } else {
                db_err("create_run: INSERT INTO runs", &e)
            }
        })?
        .get(0);
    tx.execute(
        "INSERT INTO definitions (run_ord, text) VALUES ($1, $2)",
        &[&ord, &run.definition],
    )
    .await
    .map_err(db("create_run: INSERT INTO definitions"))?;
    let insert = tx
        .prepare_cached(
            "INSERT INTO tasks (run_ord, idx, name, status, priority, remaining, dependents, needs)
             SELECT $1, u.idx, u.name, u.status, u.priority, u.remaining, u.deps::int[], u.needs::float8[]
             FROM unnest($2::int[], $3::text[], $4::text[], $5::smallint[], $6::int[], $7::text[], $8::text[])
                 AS u(idx, name, status, priority, remaining, deps, needs)",
        )
        .await
        .map_err(db("create_run: prepare INSERT INTO tasks"))?;
    let mut any_ready = false;
    for start in (0..n).step_by(INSERT_CHUNK) {
        let end = (start + INSERT_CHUNK).min(n);
        let tasks = &run.tasks[start..end];
        let idx: Vec<i32> = (start..end).map(|i| i as i32).collect();
        let names: Vec<&str> = tasks.iter().map(|t| t.name.as_str()).collect();
        let status: Vec<&str> = (start..end)
            .map(|i| {
                if remaining[i] == 0 {
                    "ready"
                } else {
                    "pending"
                }
            })
            .collect();
        any_ready |= status.contains(&"ready");
        let priority: Vec<i16> = tasks.iter().map(|t| t.priority as i16).collect();
        let deps: Vec<Option<String>> = dependents[start..end]
            .iter()
            .map(|ds| {
                (!ds.is_empty()).then(|| {
                    let list: Vec<String> = ds.iter().map(u32::to_string).collect();
                    format!("{{{}}}", list.join(","))
                })
            })
            .collect();
        // Each task's needs as an array literal (NULL: nothing).
        let needs: Vec<Option<String>> = tasks
            .iter()
            .map(|t| {
                t.needs.to_dense().map(|row| {
                    let list: Vec<String> = row.iter().map(f64::to_string).collect();
                    format!("{{{}}}", list.join(","))
                })
            })
            .collect();
        tx.execute(
            &insert,
            &[
                &ord,
                &idx,
                &names,
                &status,
                &priority,
                &&remaining[start..end],
                &deps,
                &needs,
            ],
        )
        .await
        .map_err(db("create_run: INSERT INTO tasks SELECT FROM unnest(...)"))?;
        // The steps of a submitted run's tasks, beside them.
        let (spec_idx, specs): (Vec<i32>, Vec<&str>) = tasks
            .iter()
            .enumerate()
            .filter_map(|(k, t)| t.spec.as_deref().map(|s| ((start + k) as i32, s)))
            .unzip();
        if !specs.is_empty() {
            let insert_specs = tx
                .prepare_cached(
                    "INSERT INTO task_specs (run_ord, idx, spec)
                     SELECT $1, u.idx, u.spec FROM unnest($2::int[], $3::text[]) AS u(idx, spec)",
                )
                .await
                .map_err(db("create_run: prepare INSERT INTO task_specs"))?;
            tx.execute(&insert_specs, &[&ord, &spec_idx, &specs])
                .await
                .map_err(db(
                    "create_run: INSERT INTO task_specs SELECT FROM unnest(...)",
                ))?;
        }
    }
    if any_ready {
        notify_in(&tx, &inner.tag).await?;
    }
    tx.commit().await.map_err(db("create_run: COMMIT"))
}

pub(crate) async fn get(inner: Arc<Inner>, id: RunId) -> Result<Option<RunRecord>> {
    let client = inner.client("get_run").await?;
    let row = client
        .query_opt(
            &format!(
                "SELECT {RUN_COLUMNS}, COALESCE(d.text, '') FROM runs r
                 LEFT JOIN definitions d ON d.run_ord = r.ord WHERE r.id = $1"
            ),
            &[&id.0],
        )
        .await
        .map_err(db("get_run: SELECT FROM runs"))?;
    let Some(row) = row else { return Ok(None) };
    let (ord, mut run) = decode_run(&row, row.get(10))?;
    run.tasks = count_tasks(&client, &[ord])
        .await?
        .remove(&ord)
        .unwrap_or_default();
    Ok(Some(run))
}

/// One run without its definition, counted (`get_run_brief`).
pub(crate) async fn get_brief(inner: Arc<Inner>, id: RunId) -> Result<Option<RunRecord>> {
    let client = inner.client("get_run_brief").await?;
    let row = client
        .query_opt(
            &format!("SELECT {RUN_COLUMNS} FROM runs r WHERE r.id = $1"),
            &[&id.0],
        )
        .await
        .map_err(db("get_run_brief: SELECT FROM runs"))?;
    let Some(row) = row else { return Ok(None) };
    let (ord, mut run) = decode_run(&row, String::new())?;
    run.tasks = count_tasks(&client, &[ord])
        .await?
        .remove(&ord)
        .unwrap_or_default();
    Ok(Some(run))
}

/// Runs, newest first (at most `limit`), without definitions, counted.
pub(crate) async fn list(inner: Arc<Inner>, limit: Option<usize>) -> Result<Vec<RunRecord>> {
    let client = inner.client("list_runs").await?;
    let limit = limit.map(|n| i64::try_from(n).unwrap_or(i64::MAX));
    let rows = client
        .query(
            &format!("SELECT {RUN_COLUMNS} FROM runs r ORDER BY r.ord DESC LIMIT $1"),
            &[&limit],
        )
        .await
        .map_err(db("list_runs: SELECT FROM runs"))?;
    let mut runs = Vec::with_capacity(rows.len());
    for row in &rows {
        runs.push(decode_run(row, String::new())?);
    }
    let ords: Vec<i64> = runs.iter().map(|(o, _)| *o).collect();
    let mut counts = count_tasks(&client, &ords).await?;
    Ok(runs
        .into_iter()
        .map(|(ord, r)| RunRecord {
            tasks: counts.remove(&ord).unwrap_or_default(),
            ..r
        })
        .collect())
}

pub(crate) async fn tasks(inner: Arc<Inner>, run: RunId) -> Result<Vec<TaskRecord>> {
    let client = inner.client("tasks").await?;
    let rows = client
        .query(
            &format!(
                "SELECT {TASK_COLUMNS} FROM tasks t JOIN runs r ON r.ord = t.run_ord
                 WHERE r.id = $1 ORDER BY t.idx"
            ),
            &[&run.0],
        )
        .await
        .map_err(db("tasks: SELECT FROM tasks"))?;
    rows.iter().map(|r| decode_task(run, r)).collect()
}

pub(crate) async fn cancel(inner: Arc<Inner>, run: RunId, now: DateTime<Utc>) -> Result<()> {
    let mut client = inner.client("cancel_run").await?;
    let tx = client
        .transaction()
        .await
        .map_err(db("cancel_run: BEGIN"))?;
    let ord = require_run(&tx, run).await?;
    let n = tx
        .execute(
            "UPDATE tasks SET status = 'cancelled', worker = NULL, lease_until = NULL, finished_at = $2
             WHERE run_ord = $1 AND status IN ('pending', 'ready', 'running')",
            &[&ord, &now],
        )
        .await
        .map_err(db("cancel_run: UPDATE tasks SET status = 'cancelled'"))?;
    finish_run_if_done(&tx, ord, n as i64, now).await?;
    tx.commit().await.map_err(db("cancel_run: COMMIT"))
}

pub(crate) async fn finish_run(
    inner: Arc<Inner>,
    run: RunId,
    status: WorkflowStatus,
    now: DateTime<Utc>,
) -> Result<()> {
    let client = inner.client("finish_run").await?;
    let n = client
        .execute(
            "UPDATE runs SET status = $2, finished_at = $3 WHERE id = $1",
            &[&run.0, &status.as_str(), &now],
        )
        .await
        .map_err(db("finish_run: UPDATE runs SET status"))?;
    if n == 0 { Err(not_found(run)) } else { Ok(()) }
}

pub(crate) async fn set_owner(inner: Arc<Inner>, run: RunId, owner: Option<String>) -> Result<()> {
    let client = inner.client("set_owner").await?;
    let n = client
        .execute(
            "UPDATE runs SET owner = $2 WHERE id = $1",
            &[&run.0, &owner],
        )
        .await
        .map_err(db("set_owner: UPDATE runs SET owner"))?;
    if n == 0 { Err(not_found(run)) } else { Ok(()) }
}

/// Compare-and-set of the owner: one `UPDATE .. WHERE owner IS NOT
/// DISTINCT FROM $expected`; a concurrent one waits for the row lock, then
/// finds the owner changed and sets nothing.
pub(crate) async fn take_over(
    inner: Arc<Inner>,
    run: RunId,
    expected: Option<String>,
    owner: String,
) -> Result<TakeOver> {
    let client = inner.client("take_over").await?;
    let n = client
        .execute(
            "UPDATE runs SET owner = $3
             WHERE id = $1 AND status = 'running' AND owner IS NOT DISTINCT FROM $2",
            &[&run.0, &expected, &owner],
        )
        .await
        .map_err(db("take_over: UPDATE runs SET owner"))?;
    if n == 1 {
        return Ok(TakeOver::Taken);
    }
    let row = client
        .query_opt("SELECT status, owner FROM runs WHERE id = $1", &[&run.0])
        .await
        .map_err(db("take_over: SELECT status, owner FROM runs"))?
        .ok_or_else(|| not_found(run))?;
    let status: String = row.get(0);
    let status = status
        .parse::<WorkflowStatus>()
        .map_err(|e| store_err(&format!("take_over: read run {run}"), e))?;
    Ok(if status == WorkflowStatus::Running {
        TakeOver::Held { owner: row.get(1) }
    } else {
        TakeOver::Ended { status }
    })
}

pub(crate) async fn request_cancel(inner: Arc<Inner>, run: RunId) -> Result<bool> {
    let client = inner.client("request_cancel").await?;
    let n = client
        .execute(
            "UPDATE runs SET cancel_requested = true WHERE id = $1 AND status = 'running'",
            &[&run.0],
        )
        .await
        .map_err(db("request_cancel: UPDATE runs SET cancel_requested"))?;
    if n == 0 {
        require_run(&client, run).await?;
    }
    Ok(n > 0)
}

pub(crate) async fn cancel_requested(inner: Arc<Inner>, run: RunId) -> Result<bool> {
    let client = inner.client("cancel_requested").await?;
    let row = client
        .query_opt("SELECT cancel_requested FROM runs WHERE id = $1", &[&run.0])
        .await
        .map_err(db("cancel_requested: SELECT FROM runs"))?;
    Ok(row.is_some_and(|r| r.get(0)))
}

/// Makes the run's running tasks ready again, keeping their attempts.
pub(crate) async fn requeue(inner: Arc<Inner>, run: RunId) -> Result<usize> {
    let mut client = inner.client("requeue_running").await?;
    let tx = client
        .transaction()
        .await
        .map_err(db("requeue_running: BEGIN"))?;
    let ord = require_run(&tx, run).await?;
    let n = tx
        .execute(
            "UPDATE tasks SET status = 'ready', worker = NULL, lease_until = NULL
             WHERE run_ord = $1 AND status = 'running'",
            &[&ord],
        )
        .await
        .map_err(db("requeue_running: UPDATE tasks SET status = 'ready'"))?;
    if n > 0 {
        tx.execute(
            "UPDATE runs SET status = 'running', finished_at = NULL WHERE ord = $1",
            &[&ord],
        )
        .await
        .map_err(db("requeue_running: UPDATE runs SET status = 'running'"))?;
        notify_in(&tx, &inner.tag).await?;
    }
    tx.commit().await.map_err(db("requeue_running: COMMIT"))?;
    Ok(n as usize)
}

pub(crate) async fn events(inner: Arc<Inner>, run: RunId, after: u64) -> Result<Vec<StoredEvent>> {
    let client = inner.client("events").await?;
    let after = i64::try_from(after).unwrap_or(i64::MAX);
    let rows = client
        .query(
            "SELECT e.seq, e.at, e.kind, e.task, e.data FROM events e JOIN runs r ON r.ord = e.run_ord
             WHERE r.id = $1 AND e.seq > $2 ORDER BY e.seq",
            &[&run.0, &after],
        )
        .await
        .map_err(db("events: SELECT FROM events"))?;
    Ok(rows
        .iter()
        .map(|r| {
            let data: String = r.get(4);
            StoredEvent {
                seq: r.get::<_, i64>(0) as u64,
                at: r.get(1),
                kind: r.get(2),
                task: r.get::<_, Option<i32>>(3).map(|t| t as u32),
                data: serde_json::from_str(&data).unwrap_or(Value::String(data)),
            }
        })
        .collect())
}
