//! Finishing and starting tasks inside the caller's transaction, a batch
//! in a few statements (`UNNEST` arrays): the fencing checks, releasing
//! dependents, the run's final status, events, and the wake-up.

use crate::error::{db, db_err, invalid, store_err};
use crate::rows::{count_tasks, task_status};
use chrono::{DateTime, Utc};
use deadpool_postgres::Transaction;
use orch_model::store::{StoredEvent, check_finish, check_start, final_status};
use orch_model::{Finished, Result, TaskOutcome};
use std::collections::{HashMap, HashSet};

/// Finishes the tasks `done` of the run `ord` (checked: all or nothing, as
/// the caller's transaction rolls back on an error), releases their
/// dependents and counts them as final. Returns how many dependents became
/// ready.
pub(crate) async fn finish_in(
    tx: &Transaction<'_>,
    ord: i64,
    done: Vec<Finished>,
    now: DateTime<Utc>,
) -> Result<u64> {
    if done.is_empty() {
        return Ok(0);
    }
    let n = done.len();
    let mut seen = HashSet::with_capacity(n);
    if !done.iter().all(|f| seen.insert(f.index)) {
        return Err(invalid("finish: a task appears twice in one batch".into()));
    }
    let mut idx = Vec::with_capacity(n);
    let mut attempt = Vec::with_capacity(n);
    let mut retries = Vec::with_capacity(n);
    let mut status = Vec::with_capacity(n);
    let mut result = Vec::with_capacity(n);
    let mut note = Vec::with_capacity(n);
    for f in &done {
        idx.push(f.index as i32);
        attempt.push(f.attempt as i32);
        retries.push(f.retries as i32);
        status.push(f.outcome.status().as_str());
        let (r, t) = match &f.outcome {
            TaskOutcome::Succeeded { result } | TaskOutcome::Failed { result } => (
                Some(
                    serde_json::to_string(result)
                        .map_err(|e| store_err("finish: encode a result", e))?,
                ),
                None,
            ),
            TaskOutcome::Skipped { reason } => (None, Some(reason.clone())),
            TaskOutcome::Cancelled => (None, None),
        };
        result.push(r);
        note.push(t);
    }
    // The common case, running attempts ending, in one statement; whatever
    // it leaves (a stale attempt, a task that never started) is checked.
    let fast = tx
        .prepare_cached(
            "UPDATE tasks t SET status = u.status, result = u.result, note = COALESCE(u.note, t.note),
                 finished_at = $2, worker = NULL, lease_until = NULL, attempt = t.attempt + u.retries
             FROM unnest($3::int[], $4::int[], $5::int[], $6::text[], $7::text[], $8::text[])
                 AS u(idx, attempt, retries, status, result, note)
             WHERE t.run_ord = $1 AND t.idx = u.idx AND t.status = 'running' AND t.attempt = u.attempt
               AND u.attempt > 0 AND u.status IN ('completed', 'failed', 'cancelled')
             RETURNING t.idx",
        )
        .await
        .map_err(db("finish: prepare UPDATE tasks (running attempts)"))?;
    let finished: HashSet<i32> = tx
        .query(
            &fast,
            &[
                &ord, &now, &idx, &attempt, &retries, &status, &result, &note,
            ],
        )
        .await
        .map_err(db("finish: UPDATE tasks (running attempts)"))?
        .iter()
        .map(|r| r.get(0))
        .collect();
    if finished.len() < n {
        finish_checked(
            tx,
            ord,
            &done,
            &finished,
            now,
            (&idx, &attempt, &retries, &status, &result, &note),
        )
        .await?;
    }
    let released = release_dependents(tx, ord, &idx).await?;
    finish_run_if_done(tx, ord, n as i64, now).await?;
    Ok(released)
}

type Columns<'a> = (
    &'a [i32],
    &'a [i32],
    &'a [i32],
    &'a [&'static str],
    &'a [Option<String>],
    &'a [Option<String>],
);

/// The entries the fast path left: each checked by the shared rule, then
/// written in one statement.
async fn finish_checked(
    tx: &Transaction<'_>,
    ord: i64,
    done: &[Finished],
    finished: &HashSet<i32>,
    now: DateTime<Utc>,
    cols: Columns<'_>,
) -> Result<()> {
    let rest: Vec<usize> = (0..done.len())
        .filter(|&i| !finished.contains(&cols.0[i]))
        .collect();
    let pick = |v: &[i32]| rest.iter().map(|&i| v[i]).collect::<Vec<i32>>();
    let rest_idx = pick(cols.0);
    let states: HashMap<i32, (String, String, i32)> = tx
        .query(
            "SELECT idx, name, status, attempt FROM tasks WHERE run_ord = $1 AND idx = ANY($2) FOR UPDATE",
            &[&ord, &rest_idx],
        )
        .await
        .map_err(db("finish: SELECT the tasks to check"))?
        .iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2), r.get(3))))
        .collect();
    for &i in &rest {
        let f = &done[i];
        let Some((name, status, current)) = states.get(&(f.index as i32)) else {
            return Err(invalid(format!("finish: the run has no task {}", f.index)));
        };
        check_finish(
            name,
            task_status(status)?,
            *current as u32,
            f.attempt,
            f.outcome.status(),
        )?;
    }
    let status: Vec<&str> = rest.iter().map(|&i| cols.3[i]).collect();
    let result: Vec<Option<String>> = rest.iter().map(|&i| cols.4[i].clone()).collect();
    let note: Vec<Option<String>> = rest.iter().map(|&i| cols.5[i].clone()).collect();
    tx.execute(
        "UPDATE tasks t SET status = u.status, result = u.result, note = COALESCE(u.note, t.note),
             finished_at = $2, worker = NULL, lease_until = NULL,
             attempt = t.attempt + CASE WHEN u.attempt > 0 THEN u.retries ELSE 0 END
         FROM unnest($3::int[], $4::int[], $5::int[], $6::text[], $7::text[], $8::text[])
             AS u(idx, attempt, retries, status, result, note)
         WHERE t.run_ord = $1 AND t.idx = u.idx",
        &[
            &ord,
            &now,
            &rest_idx,
            &pick(cols.1),
            &pick(cols.2),
            &status,
            &result,
            &note,
        ],
    )
    .await
    .map_err(db("finish: UPDATE tasks (checked)"))?;
    Ok(())
}

/// Lowers the counters of the dependents of the finished tasks `done`; those
/// reaching zero become ready. Returns how many did.
pub(crate) async fn release_dependents(
    tx: &Transaction<'_>,
    ord: i64,
    done: &[i32],
) -> Result<u64> {
    let stmt = tx
        .prepare_cached(
            "WITH d AS (
                 SELECT dep, count(*)::int AS n
                 FROM tasks f CROSS JOIN LATERAL unnest(f.dependents) AS dep
                 WHERE f.run_ord = $1 AND f.idx = ANY($2) AND f.dependents IS NOT NULL
                 GROUP BY dep
             ), locked AS MATERIALIZED (
                 -- The dependents locked in index order: two transactions
                 -- releasing overlapping dependents never deadlock.
                 SELECT d.dep, d.n FROM d JOIN tasks x ON x.run_ord = $1 AND x.idx = d.dep
                 ORDER BY d.dep
                 FOR UPDATE OF x
             ), lowered AS (
                 UPDATE tasks t SET remaining = GREATEST(t.remaining - d.n, 0),
                     status = CASE WHEN t.status = 'pending' AND t.remaining <= d.n THEN 'ready' ELSE t.status END
                 FROM locked d WHERE t.run_ord = $1 AND t.idx = d.dep AND t.remaining > 0
                 RETURNING t.status
             )
             SELECT count(*) FILTER (WHERE status = 'ready') FROM lowered",
        )
        .await
        .map_err(db("release dependents: prepare"))?;
    let n: i64 = tx
        .query_one(&stmt, &[&ord, &done])
        .await
        .map_err(db(
            "release dependents: UPDATE tasks SET remaining = remaining - n",
        ))?
        .get(0);
    Ok(n as u64)
}

/// Counts `done` more tasks of the run as final; when none is left, sets
/// the run's final status from its tasks' states.
pub(crate) async fn finish_run_if_done(
    tx: &Transaction<'_>,
    ord: i64,
    done: i64,
    now: DateTime<Utc>,
) -> Result<()> {
    let stmt = tx
        .prepare_cached(
            "UPDATE runs SET open_tasks = GREATEST(open_tasks - $2, 0) WHERE ord = $1 RETURNING open_tasks",
        )
        .await
        .map_err(db("count finished tasks: prepare"))?;
    let open: i64 = tx
        .query_one(&stmt, &[&ord, &done])
        .await
        .map_err(db("count finished tasks: UPDATE runs SET open_tasks"))?
        .get(0);
    if open > 0 {
        return Ok(());
    }
    let counts = count_tasks(tx, &[ord])
        .await?
        .remove(&ord)
        .unwrap_or_default();
    let Some(status) = final_status(&counts) else {
        return Ok(());
    };
    tx.execute(
        "UPDATE runs SET status = $2, finished_at = $3 WHERE ord = $1 AND status = 'running'",
        &[&ord, &status.as_str(), &now],
    )
    .await
    .map_err(db("set the run's final status: UPDATE runs"))?;
    Ok(())
}

/// Starts ready tasks of the run `ord` (`Store::start_tasks`), all or
/// nothing; returns their new attempt numbers in order.
pub(crate) async fn start_in(
    tx: &Transaction<'_>,
    ord: i64,
    tasks: &[u32],
    worker: &str,
    until: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<Vec<u32>> {
    if tasks.is_empty() {
        return Ok(Vec::new());
    }
    let idx: Vec<i32> = tasks.iter().map(|&i| i as i32).collect();
    let stmt = tx
        .prepare_cached(
            "UPDATE tasks SET status = 'running', attempt = attempt + 1, worker = $3,
                 lease_until = $4, started_at = $5
             WHERE run_ord = $1 AND idx = ANY($2) AND status = 'ready'
             RETURNING idx, attempt",
        )
        .await
        .map_err(db("start: prepare UPDATE tasks"))?;
    let mut started: HashMap<i32, i32> = tx
        .query(&stmt, &[&ord, &idx, &worker, &until, &now])
        .await
        .map_err(db("start: UPDATE tasks SET status = 'running'"))?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let mut out = Vec::with_capacity(idx.len());
    for &i in &idx {
        match started.remove(&i) {
            Some(attempt) => out.push(attempt as u32),
            // Not ready, or named twice (running by its second mention).
            None => {
                let row = tx
                    .query_opt(
                        "SELECT name, status FROM tasks WHERE run_ord = $1 AND idx = $2",
                        &[&ord, &i],
                    )
                    .await
                    .map_err(db("start: SELECT the task that did not start"))?;
                let Some(row) = row else {
                    return Err(invalid(format!("start: the run has no task {i}")));
                };
                let (name, status): (String, String) = (row.get(0), row.get(1));
                let status = task_status(&status)?;
                check_start(&name, status)?;
                // Ready now yet not started: cannot be; refuse all the same.
                return Err(invalid(format!(
                    "start: task `{name}` could not be started"
                )));
            }
        }
    }
    Ok(out)
}

/// Appends events to the run's log, numbering them after its last.
pub(crate) async fn append_in(
    tx: &Transaction<'_>,
    run: orch_model::RunId,
    events: Vec<StoredEvent>,
) -> Result<()> {
    if events.is_empty() {
        return crate::rows::require_run(tx, run).await.map(|_| ());
    }
    let n = events.len() as i64;
    let row = tx
        .query_opt(
            "UPDATE runs SET last_seq = last_seq + $2 WHERE id = $1 RETURNING ord, last_seq",
            &[&run.0, &n],
        )
        .await
        .map_err(db("append events: UPDATE runs SET last_seq"))?
        .ok_or_else(|| crate::error::not_found(run))?;
    let (ord, last): (i64, i64) = (row.get(0), row.get(1));
    let mut at = Vec::with_capacity(events.len());
    let mut kind = Vec::with_capacity(events.len());
    let mut task = Vec::with_capacity(events.len());
    let mut data = Vec::with_capacity(events.len());
    for e in events {
        at.push(e.at);
        kind.push(e.kind);
        task.push(e.task.map(|t| t as i32));
        data.push(
            serde_json::to_string(&e.data)
                .map_err(|x| store_err("append events: encode data", x))?,
        );
    }
    tx.execute(
        "INSERT INTO events (run_ord, seq, at, kind, task, data)
         SELECT $1, $2 + u.i, u.at, u.kind, u.task, u.data
         FROM unnest($3::timestamptz[], $4::text[], $5::int[], $6::text[]) WITH ORDINALITY
             AS u(at, kind, task, data, i)",
        &[&ord, &(last - n), &at, &kind, &task, &data],
    )
    .await
    .map_err(|e| db_err("append events: INSERT INTO events", &e))?;
    Ok(())
}

/// `NOTIFY orch_ready, '<schema>'`, delivered when the transaction commits.
pub(crate) async fn notify_in(tx: &Transaction<'_>, tag: &str) -> Result<()> {
    tx.execute("SELECT pg_notify($1, $2)", &[&crate::notify::CHANNEL, &tag])
        .await
        .map_err(db("wake workers: pg_notify"))?;
    Ok(())
}
