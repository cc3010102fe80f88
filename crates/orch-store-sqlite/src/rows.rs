//! Rows and records: reading runs and tasks (a row that cannot be read sets
//! its run aside), times as microseconds, and finding a run's `ord`.

use crate::error::{sql_err, store_err};
use chrono::{DateTime, TimeZone, Utc};
use orch_model::store::{Lease, RunRecord, TaskCounts, TaskRecord};
use orch_model::{
    EntityKind, OrchestrationError, Result, RunId, TaskPriority, TaskResult, TaskStatus,
    WorkflowStatus,
};
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::{Map, Value};
use std::time::Duration;

pub(crate) fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

pub(crate) fn time(us: i64) -> DateTime<Utc> {
    Utc.timestamp_micros(us).single().unwrap_or_default()
}

pub(crate) fn lease_until(now: DateTime<Utc>, lease: Duration) -> i64 {
    micros(now).saturating_add(i64::try_from(lease.as_micros()).unwrap_or(i64::MAX))
}

pub(crate) fn parse_status(s: &str) -> std::result::Result<TaskStatus, String> {
    s.parse::<TaskStatus>()
}

pub(crate) fn priority_from(n: i64) -> TaskPriority {
    match n {
        1 => TaskPriority::Low,
        3 => TaskPriority::High,
        4 => TaskPriority::Critical,
        _ => TaskPriority::Normal,
    }
}

/// Sets a run aside: it is reported by `problems` and skipped by listings.
pub(crate) fn quarantine(conn: &Connection, run: &str, reason: &str) -> Result<()> {
    if conn.is_readonly(rusqlite::MAIN_DB).unwrap_or(true) {
        // A read-only store reports the row (the caller's error) and writes nothing.
        return Ok(());
    }
    conn.execute(
        "UPDATE runs SET quarantined = ?2 WHERE id = ?1",
        params![run, reason],
    )
    .map_err(sql_err)?;
    conn.execute(
        "INSERT INTO quarantine (tbl, key, reason, at) VALUES ('runs', ?1, ?2, ?3)",
        params![run, reason, micros(Utc::now())],
    )
    .map_err(sql_err)?;
    Ok(())
}

const RUN_COLUMNS: &str = "id, workflow, status, created_at, finished_at, params, \
    COALESCE((SELECT text FROM definitions d WHERE d.ord = runs.ord), '') AS definition, owner, cancel_requested, parent";
/// As `RUN_COLUMNS`, without reading the definition (listing runs).
const LIST_COLUMNS: &str = "id, workflow, status, created_at, finished_at, params, '' AS definition, owner, cancel_requested, parent";
/// How many columns `RUN_COLUMNS` and `LIST_COLUMNS` name (the next one read is at this index).
const RUN_COLUMN_COUNT: usize = 10;

type RawRun = (
    String,
    String,
    String,
    i64,
    Option<i64>,
    String,
    String,
    Option<String>,
    bool,
    Option<String>,
);

fn raw_run(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawRun> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
        r.get(7)?,
        r.get(8)?,
        r.get(9)?,
    ))
}

fn decode_run(raw: RawRun) -> std::result::Result<RunRecord, String> {
    let (id, workflow, status, created, finished, params, definition, owner, cancel, parent) = raw;
    let id: RunId = id.parse().map_err(|e| format!("bad run id `{id}`: {e}"))?;
    let parent = parent
        .map(|p| {
            p.parse::<RunId>()
                .map_err(|e| format!("bad parent run id `{p}`: {e}"))
        })
        .transpose()?;
    let status = status
        .parse::<WorkflowStatus>()
        .map_err(|e| format!("bad status: {e}"))?;
    let params: Map<String, Value> =
        serde_json::from_str(&params).map_err(|e| format!("bad params JSON: {e}"))?;
    Ok(RunRecord {
        id,
        workflow,
        status,
        created_at: time(created),
        finished_at: finished.map(time),
        params,
        definition,
        owner,
        cancel_requested: cancel,
        parent,
        tasks: TaskCounts::default(),
    })
}

/// How many tasks of the run with `ord` are in each state: an aggregate
/// over the run's key range that reads each row's `status` column only
/// (a task's result lies further on in its row, mostly in overflow pages,
/// and is never read).
pub(crate) fn count_tasks(conn: &Connection, ord: i64) -> Result<TaskCounts> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT status, COUNT(*) FROM tasks
             WHERE key BETWEEN ?1 * 4294967296 AND ?1 * 4294967296 + 4294967295 GROUP BY status",
        )
        .map_err(sql_err)?;
    let rows = stmt
        .query_map(params![ord], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, u32>(1)?))
        })
        .map_err(sql_err)?;
    let mut counts = TaskCounts::default();
    for row in rows {
        let (status, n) = row.map_err(sql_err)?;
        // A task with an unknown state is set aside when its run is read.
        if let Ok(s) = parse_status(&status) {
            counts.add(s, n);
        }
    }
    Ok(counts)
}

/// Reads one run, quarantining it when it cannot be read.
pub(crate) fn read_run(conn: &Connection, run: RunId) -> Result<Option<RunRecord>> {
    // The statement's text is made once (it is the statement cache's key).
    static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!("SELECT {RUN_COLUMNS}, quarantined, ord FROM runs WHERE id = ?1")
    });
    read_one(
        conn,
        run,
        &SQL,
        |r| r.get::<_, i64>(RUN_COLUMN_COUNT + 1),
        count_tasks,
    )
}

/// Reads one run without its definition (as [`list_in`] gives runs), with
/// its task counts, in one statement (so one read transaction of its own,
/// with no `BEGIN` and `COMMIT` around it). A run that cannot be read is
/// quarantined, as [`read_run`] does.
pub(crate) fn read_run_brief(conn: &Connection, run: RunId) -> Result<Option<RunRecord>> {
    static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!(
            "SELECT {LIST_COLUMNS}, quarantined,
               (SELECT group_concat(status || ' ' || n, ',') FROM
                  (SELECT status, COUNT(*) AS n FROM tasks
                    WHERE key BETWEEN runs.ord * 4294967296 AND runs.ord * 4294967296 + 4294967295
                    GROUP BY status))
             FROM runs WHERE id = ?1"
        )
    });
    read_one(
        conn,
        run,
        &SQL,
        |r| r.get::<_, Option<String>>(RUN_COLUMN_COUNT + 1),
        |_, counts| {
            let mut tasks = TaskCounts::default();
            for pair in counts.as_deref().unwrap_or("").split(',') {
                // A task with an unknown state is set aside when its run is read.
                if let Some((status, n)) = pair.split_once(' ') {
                    if let (Ok(s), Ok(n)) = (parse_status(status), n.parse::<u32>()) {
                        tasks.add(s, n);
                    }
                }
            }
            Ok(tasks)
        },
    )
}

/// One run read by `sql` (the run's columns, `quarantined`, then one more
/// column that `extra` reads and `counts` turns into its task counts),
/// quarantined when it cannot be decoded.
fn read_one<X>(
    conn: &Connection,
    run: RunId,
    sql: &str,
    extra: impl Fn(&rusqlite::Row<'_>) -> rusqlite::Result<X>,
    counts: impl FnOnce(&Connection, X) -> Result<TaskCounts>,
) -> Result<Option<RunRecord>> {
    let key = run.to_string();
    let raw = conn
        .prepare_cached(sql)
        .and_then(|mut s| {
            s.query_row(params![key], |r| {
                Ok((
                    raw_run(r)?,
                    r.get::<_, Option<String>>(RUN_COLUMN_COUNT)?,
                    extra(r)?,
                ))
            })
            .optional()
        })
        .map_err(sql_err)?;
    match raw {
        None => Ok(None),
        Some((_, Some(why), _)) => Err(store_err(
            &format!("run {key} is quarantined"),
            format!("it could not be read: {why}"),
        )),
        Some((raw, None, x)) => match decode_run(raw) {
            Ok(r) => Ok(Some(RunRecord {
                tasks: counts(conn, x)?,
                ..r
            })),
            Err(why) => {
                quarantine(conn, &key, &why)?;
                Err(store_err(&format!("run {key} is quarantined"), why))
            }
        },
    }
}

pub(crate) fn decode_task(
    run: RunId,
    r: &rusqlite::Row<'_>,
) -> rusqlite::Result<std::result::Result<TaskRecord, String>> {
    let idx: u32 = r.get(0)?;
    let name: String = r.get(1)?;
    let status: String = r.get(2)?;
    let attempt: u32 = r.get(3)?;
    let remaining: u32 = r.get(4)?;
    let priority: i64 = r.get(5)?;
    let worker: Option<String> = r.get(6)?;
    let until: Option<i64> = r.get(7)?;
    let result: Option<String> = r.get(8)?;
    let note: Option<String> = r.get(9)?;
    let started: Option<i64> = r.get(10)?;
    let finished: Option<i64> = r.get(11)?;
    Ok((|| {
        let status = parse_status(&status).map_err(|e| format!("task {idx}: bad status: {e}"))?;
        let result = result
            .map(|t| serde_json::from_str::<TaskResult>(&t))
            .transpose()
            .map_err(|e| format!("task {idx}: bad result JSON: {e}"))?;
        Ok(TaskRecord {
            run,
            index: idx,
            name,
            status,
            attempt,
            remaining,
            priority: priority_from(priority),
            lease: worker.zip(until).map(|(worker, until)| Lease {
                worker,
                until: time(until),
            }),
            result,
            note,
            started_at: started.map(time),
            finished_at: finished.map(time),
        })
    })())
}

pub(crate) fn read_tasks(conn: &Connection, run: RunId) -> Result<Vec<TaskRecord>> {
    let key = run.to_string();
    let Some(ord) = run_ord(conn, &key)? else {
        return Ok(Vec::new());
    };
    let mut stmt = conn
        .prepare_cached(
            "SELECT idx, name, status, attempt, remaining, priority, lease_worker, lease_until, result, note, started_at, finished_at
             FROM tasks WHERE key BETWEEN ?1 * 4294967296 AND ?1 * 4294967296 + 4294967295 ORDER BY key",
        )
        .map_err(sql_err)?;
    let rows = stmt
        .query_map(params![ord], |r| decode_task(run, r))
        .map_err(sql_err)?;
    let mut out = Vec::new();
    for row in rows {
        match row.map_err(sql_err)? {
            Ok(t) => out.push(t),
            Err(why) => {
                quarantine(conn, &key, &why)?;
                return Err(store_err(&format!("run {key} is quarantined"), why));
            }
        }
    }
    Ok(out)
}

pub(crate) fn task_state(
    conn: &Connection,
    ord: i64,
    idx: u32,
) -> Result<Option<(String, TaskStatus, u32)>> {
    let row = conn
        .prepare_cached("SELECT name, status, attempt FROM tasks WHERE key = ?1 * 4294967296 + ?2")
        .and_then(|mut s| {
            s.query_row(params![ord, idx], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, u32>(2)?,
                ))
            })
            .optional()
        })
        .map_err(sql_err)?;
    match row {
        None => Ok(None),
        Some((name, status, attempt)) => {
            let status = parse_status(&status).map_err(|e| store_err("task status", e))?;
            Ok(Some((name, status, attempt)))
        }
    }
}

/// Runs, newest first (at most `limit`), without their definitions, with
/// their task counts: no task's result is read.
pub(crate) fn list_in(conn: &Connection, limit: Option<usize>) -> Result<Vec<RunRecord>> {
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {LIST_COLUMNS}, ord FROM runs WHERE quarantined IS NULL ORDER BY ord DESC LIMIT ?1"
        ))
        .map_err(sql_err)?;
    let limit = limit.map_or(-1, |n| i64::try_from(n).unwrap_or(i64::MAX));
    let rows: Vec<(RawRun, i64)> = stmt
        .query_map(params![limit], |r| {
            Ok((raw_run(r)?, r.get(RUN_COLUMN_COUNT)?))
        })
        .map_err(sql_err)?
        .collect::<rusqlite::Result<_>>()
        .map_err(sql_err)?;
    let mut out = Vec::with_capacity(rows.len());
    for (raw, ord) in rows {
        let key = raw.0.clone();
        match decode_run(raw) {
            Ok(r) => out.push(RunRecord {
                tasks: count_tasks(conn, ord)?,
                ..r
            }),
            Err(why) => quarantine(conn, &key, &why)?,
        }
    }
    Ok(out)
}

/// The run's `ord` (the key of its tasks), if there is such a run.
pub(crate) fn run_ord(conn: &Connection, run: &str) -> Result<Option<i64>> {
    conn.prepare_cached("SELECT ord FROM runs WHERE id = ?1")
        .and_then(|mut s| s.query_row(params![run], |r| r.get(0)).optional())
        .map_err(sql_err)
}

/// The run's `ord`, or `NotFound`.
pub(crate) fn require_run(conn: &Connection, run: &str) -> Result<i64> {
    run_ord(conn, run)?.ok_or_else(|| OrchestrationError::not_found(EntityKind::Run, run))
}
