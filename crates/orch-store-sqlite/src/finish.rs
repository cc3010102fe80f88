//! Finishing and starting tasks inside the caller's transaction: the
//! fencing checks, releasing dependents (each run's dependents kept in
//! memory by the store thread), the run's final status, events.

use crate::error::{invalid, sql_err, store_err};
use crate::rows::{count_tasks, micros, parse_status, require_run, task_state};
use chrono::{DateTime, Utc};
use orch_model::store::StoredEvent;
use orch_model::store::{check_finish, check_start, final_status};
use orch_model::{Finished, Result, RunId, TaskOutcome, TaskStatus};
use rusqlite::{Connection, OptionalExtension, params};

/// Finishes one task, checked, and releases its dependents (inside the
/// caller's transaction).
pub(crate) fn finish_one(
    conn: &Connection,
    run: &str,
    ord: i64,
    idx: u32,
    attempt: u32,
    outcome: TaskOutcome,
    now: DateTime<Utc>,
) -> Result<()> {
    finish_state(conn, ord, idx, attempt, 0, outcome, now)?;
    release_dependents(conn, run, ord, &[idx])
}

/// The dependents of each task of one run, by task index.
type Dependents = std::sync::Arc<Vec<Vec<u32>>>;

/// The dependents of each task of the runs worked on last, so that finishing
/// a task needs no read to find them. They never change once a run is
/// created; a run missing here is loaded from the `dependents` column of its
/// tasks. Keyed by the run's id, not its `ord`: an `ord` taken by a create
/// that rolled back can be taken again by another process's run. Shared by
/// every thread that runs requests (the store's and its callers').
static DEPENDENTS: std::sync::Mutex<Vec<(String, Dependents)>> = std::sync::Mutex::new(Vec::new());

/// How many runs' dependents are kept.
const DEPENDENTS_KEPT: usize = 4;

fn kept() -> std::sync::MutexGuard<'static, Vec<(String, Dependents)>> {
    DEPENDENTS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

pub(crate) fn remember_dependents(run: &str, dependents: Dependents) {
    let mut c = kept();
    c.retain(|(r, _)| r != run);
    if c.len() >= DEPENDENTS_KEPT {
        c.remove(0);
    }
    c.push((run.to_owned(), dependents));
}

/// The dependents of every task of `run`, from memory or from the database.
fn dependents_of(conn: &Connection, run: &str, ord: i64) -> Result<Dependents> {
    if let Some(d) = kept()
        .iter()
        .find(|(r, _)| r == run)
        .map(|(_, d)| d.clone())
    {
        return Ok(d);
    }
    let n: u32 = conn
        .query_row(
            "SELECT COALESCE(MAX(idx) + 1, 0) FROM tasks WHERE key BETWEEN ?1 * 4294967296 AND ?1 * 4294967296 + 4294967295",
            params![ord],
            |r| r.get(0),
        )
        .map_err(sql_err)?;
    let mut all = vec![Vec::new(); n as usize];
    let mut stmt = conn
        .prepare_cached(
            "SELECT idx, dependents FROM tasks WHERE key BETWEEN ?1 * 4294967296 AND ?1 * 4294967296 + 4294967295 AND dependents IS NOT NULL",
        )
        .map_err(sql_err)?;
    let rows = stmt
        .query_map(params![ord], |r| {
            Ok((r.get::<_, u32>(0)?, r.get::<_, String>(1)?))
        })
        .map_err(sql_err)?;
    for row in rows {
        let (i, list) = row.map_err(sql_err)?;
        let ds: Vec<u32> =
            serde_json::from_str(&list).map_err(|e| store_err("task dependents", e))?;
        if let Some(slot) = all.get_mut(i as usize) {
            *slot = ds;
        }
    }
    let all = std::sync::Arc::new(all);
    remember_dependents(run, all.clone());
    Ok(all)
}

/// Lowers the counters of the dependents of the finished tasks `done` and
/// makes those reaching zero ready: each dependent is updated once, by
/// primary key, however many of its dependencies finished.
fn release_dependents(conn: &Connection, run: &str, ord: i64, done: &[u32]) -> Result<()> {
    if done.is_empty() {
        return Ok(());
    }
    let all = dependents_of(conn, run, ord)?;
    let mut counts: Vec<(u32, i64)> = Vec::new();
    for &i in done {
        if let Some(ds) = all.get(i as usize) {
            counts.extend(ds.iter().map(|&d| (d, 1)));
        }
    }
    if counts.is_empty() {
        return Ok(());
    }
    counts.sort_unstable_by_key(|&(d, _)| d);
    counts.dedup_by(|next, kept| {
        if next.0 == kept.0 {
            kept.1 += next.1;
            true
        } else {
            false
        }
    });
    let mut lower = conn
        .prepare_cached(
            "UPDATE tasks SET remaining = MAX(remaining - ?3, 0),
                 status = CASE WHEN remaining <= ?3 AND status = 'pending' THEN 'ready' ELSE status END
             WHERE key = ?1 * 4294967296 + ?2 AND remaining > 0",
        )
        .map_err(sql_err)?;
    for (d, n) in counts {
        lower.execute(params![ord, d, n]).map_err(sql_err)?;
    }
    Ok(())
}

/// Finishes tasks of a run and releases their dependents (`Store::finish_tasks`).
pub(crate) fn finish_in(
    conn: &Connection,
    run: RunId,
    done: Vec<Finished>,
    now: DateTime<Utc>,
) -> Result<()> {
    finish_in_with(conn, run, done, &[], now)
}

/// [`finish_in`], where the tasks `ended` were already finished in this
/// transaction (by [`start_and_finish_one`]): their dependents are
/// released and they are counted with the others.
pub(crate) fn finish_in_with(
    conn: &Connection,
    run: RunId,
    done: Vec<Finished>,
    ended: &[u32],
    now: DateTime<Utc>,
) -> Result<()> {
    let key = run.to_string();
    let ord = require_run(conn, &key)?;
    let n = (done.len() + ended.len()) as u64;
    let mut indices: Vec<u32> = done.iter().map(|f| f.index).collect();
    indices.extend_from_slice(ended);
    indices.sort_unstable();
    if indices.windows(2).any(|w| w[0] == w[1]) {
        return Err(invalid("finish: a task appears twice in one batch".into()));
    }
    // One prepared single-row statement per task (a batched
    // `UPDATE .. FROM json_each(..)` made SQLite re-parse the JSON
    // once per row it scanned: quadratic in the batch).
    for f in done {
        finish_state(conn, ord, f.index, f.attempt, f.retries, f.outcome, now)?;
    }
    release_dependents(conn, &key, ord, &indices)?;
    finish_run_if_done(conn, &key, ord, n, now)
}

/// Starts and finishes a task in one write, when it is ready and its
/// attempt number is the one before `f.attempt` (the attempt the caller
/// expects its start to give): a step that ran to its end within one turn
/// of a journaled run. Its dependents are not released here
/// ([`finish_in_with`] does). Gives `f` back, untouched, when the task is
/// in any other state, or the outcome is not one a started task can have:
/// the caller then starts and finishes it the checked way.
pub(crate) fn start_and_finish_one(
    conn: &Connection,
    ord: i64,
    f: Finished,
    now: DateTime<Utc>,
) -> Result<Option<Finished>> {
    let next = f.outcome.status();
    if f.attempt == 0
        || !matches!(
            next,
            TaskStatus::Completed | TaskStatus::Failed | TaskStatus::Cancelled
        )
    {
        return Ok(Some(f));
    }
    let (result, note) = match &f.outcome {
        TaskOutcome::Succeeded { result } | TaskOutcome::Failed { result } => {
            (Some(result_json(result)?), None)
        }
        TaskOutcome::Skipped { reason } => (None, Some(reason.clone())),
        TaskOutcome::Cancelled => (None, None),
    };
    let at = micros(now);
    let changed = conn
        .prepare_cached(
            "UPDATE tasks SET status = ?3, result = ?4, note = COALESCE(?5, note),
                 started_at = ?6, finished_at = ?6, lease_worker = NULL, lease_until = NULL,
                 attempt = ?7 + ?8
             WHERE key = ?1 * 4294967296 + ?2 AND status = 'ready' AND attempt = ?7 - 1",
        )
        .and_then(|mut s| {
            s.execute(params![
                ord,
                f.index,
                next.as_str(),
                result,
                note,
                at,
                f.attempt,
                f.retries
            ])
        })
        .map_err(sql_err)?;
    Ok(if changed == 1 { None } else { Some(f) })
}

/// Starts ready tasks of the run with `ord` (`Store::start_tasks`): each
/// is read, then written, by its key (a single `UPDATE .. RETURNING` over
/// the batch made SQLite build a temporary table for the returned rows).
pub(crate) fn start_in(
    conn: &Connection,
    ord: i64,
    tasks: &[u32],
    worker: &str,
    until: i64,
    now: DateTime<Utc>,
) -> Result<Vec<u32>> {
    let mut read = conn
        .prepare_cached("SELECT name, status, attempt FROM tasks WHERE key = ?1 * 4294967296 + ?2")
        .map_err(sql_err)?;
    let mut write = conn
        .prepare_cached(
            "UPDATE tasks SET status = 'running', attempt = ?3, lease_worker = ?4,
                 lease_until = ?5, started_at = ?6
             WHERE key = ?1 * 4294967296 + ?2",
        )
        .map_err(sql_err)?;
    let at = micros(now);
    let mut out = Vec::with_capacity(tasks.len());
    for &i in tasks {
        let row = read
            .query_row(params![ord, i], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, u32>(2)?,
                ))
            })
            .optional()
            .map_err(sql_err)?;
        let Some((name, status, attempt)) = row else {
            return Err(invalid(format!("start: the run has no task {i}")));
        };
        // A task named twice is running by its second mention.
        let status = parse_status(&status).map_err(|e| store_err("task status", e))?;
        check_start(&name, status)?;
        let next = attempt + 1;
        write
            .execute(params![ord, i, next, worker, until, at])
            .map_err(sql_err)?;
        out.push(next);
    }
    Ok(out)
}

/// Appends events to a run's log, numbering them (`Store::append_events`).
pub(crate) fn append_in(conn: &Connection, run: RunId, events: Vec<StoredEvent>) -> Result<()> {
    let key = run.to_string();
    require_run(conn, &key)?;
    let next: u64 = conn
        .prepare_cached("SELECT COALESCE(MAX(seq), 0) + 1 FROM events WHERE run = ?1")
        .and_then(|mut s| s.query_row(params![key], |r| r.get::<_, i64>(0)))
        .map_err(sql_err)? as u64;
    let mut stmt = conn
        .prepare_cached(
            "INSERT INTO events (run, seq, at, kind, task, data) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )
        .map_err(sql_err)?;
    for (i, e) in events.into_iter().enumerate() {
        stmt.execute(params![
            key,
            (next + i as u64) as i64,
            micros(e.at),
            e.kind,
            e.task,
            serde_json::to_string(&e.data).map_err(|x| store_err("event data", x))?
        ])
        .map_err(sql_err)?;
    }
    Ok(())
}

/// Finishes one task, checked, without touching its dependents; `retries`
/// more attempts are added to its count (attempts made within this start).
fn finish_state(
    conn: &Connection,
    ord: i64,
    idx: u32,
    attempt: u32,
    retries: u32,
    outcome: TaskOutcome,
    now: DateTime<Utc>,
) -> Result<()> {
    let next = outcome.status();
    let (result, note) = match outcome {
        TaskOutcome::Succeeded { result } | TaskOutcome::Failed { result } => {
            (Some(result_json(&result)?), None)
        }
        TaskOutcome::Skipped { reason } => (None, Some(reason)),
        TaskOutcome::Cancelled => (None, None),
    };
    // The common case, a running attempt ending, in one statement; anything
    // else (and every refusal) takes the checked path.
    // (Not `RETURNING`: SQLite builds a temporary table for each statement
    // that returns rows, which costs more than the lookup below.)
    let fast = attempt > 0
        && matches!(next, TaskStatus::Completed | TaskStatus::Failed | TaskStatus::Cancelled)
        && conn
            .prepare_cached(
                "UPDATE tasks SET status = ?3, result = ?4, note = COALESCE(?5, note), finished_at = ?6,
                     lease_worker = NULL, lease_until = NULL, attempt = attempt + ?8
                 WHERE key = ?1 * 4294967296 + ?2 AND status = 'running' AND attempt = ?7",
            )
            .and_then(|mut s| {
                s.execute(params![
                    ord,
                    idx,
                    next.as_str(),
                    result,
                    note,
                    micros(now),
                    attempt,
                    retries
                ])
            })
            .map_err(sql_err)?
            == 1;
    if !fast {
        let Some((name, status, current)) = task_state(conn, ord, idx)? else {
            return Err(invalid(format!("finish: the run has no task {idx}")));
        };
        check_finish(&name, status, current, attempt, next)?;
        conn.prepare_cached(
            "UPDATE tasks SET status = ?3, result = ?4, note = COALESCE(?5, note), finished_at = ?6,
                 lease_worker = NULL, lease_until = NULL,
                 attempt = attempt + CASE WHEN ?7 > 0 THEN ?8 ELSE 0 END
             WHERE key = ?1 * 4294967296 + ?2",
        )
        .and_then(|mut s| {
            s.execute(params![
                ord,
                idx,
                next.as_str(),
                result,
                note,
                micros(now),
                attempt,
                retries
            ])
        })
        .map_err(sql_err)?;
    }
    Ok(())
}

/// A task's result as stored: its JSON without the fields that hold their
/// default (no error, no memory figure, no metadata), which reading fills
/// back in. A no-op's result is a third of its full JSON, and a million of
/// them are written in a large run.
fn result_json(r: &orch_model::TaskResult) -> Result<String> {
    serde_json::to_string(&StoredResult(r)).map_err(|e| store_err("result", e))
}

/// [`result_json`]'s shape (borrowed: a large result is not copied).
struct StoredResult<'a>(&'a orch_model::TaskResult);

impl serde::Serialize for StoredResult<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let r = self.0;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("success", &r.success)?;
        if !r.data.is_null() {
            m.serialize_entry("data", &r.data)?;
        }
        if let Some(e) = &r.error_message {
            m.serialize_entry("error_message", e)?;
        }
        if let Some(e) = &r.error_type {
            m.serialize_entry("error_type", e)?;
        }
        m.serialize_entry("execution_time", &r.execution_time)?;
        if r.memory_usage != 0.0 {
            m.serialize_entry("memory_usage", &r.memory_usage)?;
        }
        if r.cached {
            m.serialize_entry("cached", &true)?;
        }
        if !r.metadata.is_empty() {
            m.serialize_entry("metadata", &r.metadata)?;
        }
        m.end()
    }
}

/// Counts `done` more tasks of the run as final, and sets the run's final
/// status when none is left.
pub(crate) fn finish_run_if_done(
    conn: &Connection,
    run: &str,
    ord: i64,
    done: u64,
    now: DateTime<Utc>,
) -> Result<()> {
    let open: Option<i64> = conn
        .prepare_cached(
            "UPDATE run_open SET open = MAX(open - ?2, 0) WHERE run = ?1 RETURNING open",
        )
        .and_then(|mut s| {
            s.query_row(params![run, done as i64], |r| r.get(0))
                .optional()
        })
        .map_err(sql_err)?;
    let open = match open {
        Some(n) => n,
        None => {
            // A run from before the counter: count once, and keep the count.
            let n: i64 = conn
                .query_row(
                    "SELECT COUNT(*) FROM tasks WHERE key BETWEEN ?1 * 4294967296 AND ?1 * 4294967296 + 4294967295
                       AND status NOT IN ('completed', 'failed', 'cancelled', 'skipped')",
                    params![ord],
                    |r| r.get(0),
                )
                .map_err(sql_err)?;
            conn.execute(
                "INSERT OR REPLACE INTO run_open (run, open) VALUES (?1, ?2)",
                params![run, n],
            )
            .map_err(sql_err)?;
            n
        }
    };
    if open > 0 {
        return Ok(());
    }
    // Every task is final: the run's status follows from their states.
    let Some(status) = final_status(&count_tasks(conn, ord)?) else {
        return Ok(());
    };
    conn.prepare_cached(
        "UPDATE runs SET status = ?2, finished_at = ?3 WHERE id = ?1 AND status = 'running'",
    )
    .and_then(|mut s| s.execute(params![run, status.as_str(), micros(now)]))
    .map_err(sql_err)?;
    Ok(())
}
