//! `complete_many`: a worker's completions in one transaction, whatever
//! their runs, each claim on its own account (a stale one is refused, the
//! others complete), with the events when all did.

use crate::Inner;
use crate::error::{db, invalid, not_found, store_err};
use crate::journal::{append_in, finish_run_if_done, notify_in, release_dependents};
use chrono::{DateTime, Utc};
use orch_model::store::StoredEvent;
use orch_model::{Claim, Result, RunId, TaskOutcome};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

/// The claims still current (running at their attempt) become final in
/// one statement; their dependents are released and their runs counted,
/// run by run; the events follow when every claim completed.
const FINISH: &str = "UPDATE tasks t SET status = u.status, result = u.result,
        note = COALESCE(u.note, t.note), finished_at = $1, worker = NULL, lease_until = NULL
    FROM unnest($2::bigint[], $3::int[], $4::int[], $5::text[], $6::text[], $7::text[])
        AS u(run_ord, idx, attempt, status, result, note)
    WHERE t.run_ord = u.run_ord AND t.idx = u.idx AND t.status = 'running' AND t.attempt = u.attempt
    RETURNING t.run_ord, t.idx";

pub(crate) async fn complete_many(
    inner: Arc<Inner>,
    done: Vec<(Claim, TaskOutcome)>,
    events: Vec<(RunId, StoredEvent)>,
    now: DateTime<Utc>,
) -> Result<Vec<Result<()>>> {
    if done.is_empty() && events.is_empty() {
        return Ok(Vec::new());
    }
    let mut client = inner.client("complete_many").await?;
    let tx = client
        .transaction()
        .await
        .map_err(db("complete_many: BEGIN"))?;
    let ids: Vec<uuid::Uuid> = done.iter().map(|(c, _)| c.run.0).collect();
    let ords: HashMap<uuid::Uuid, i64> = tx
        .query("SELECT id, ord FROM runs WHERE id = ANY($1)", &[&ids])
        .await
        .map_err(db("complete_many: SELECT the runs"))?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let n = done.len();
    let (mut ord, mut idx, mut attempt) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let (mut status, mut result, mut note) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let mut seen = HashSet::with_capacity(n);
    let mut answers: Vec<Option<Result<()>>> = Vec::with_capacity(n);
    for (c, outcome) in &done {
        let Some(&o) = ords.get(&c.run.0) else {
            answers.push(Some(Err(not_found(c.run))));
            continue;
        };
        if c.attempt == 0 || !seen.insert((o, c.index)) {
            answers.push(Some(Err(invalid(format!(
                "complete: attempt {} of task `{}` is no longer current",
                c.attempt, c.name
            )))));
            continue;
        }
        answers.push(None);
        ord.push(o);
        idx.push(c.index as i32);
        attempt.push(c.attempt as i32);
        status.push(outcome.status().as_str());
        let (r, t) = match outcome {
            TaskOutcome::Succeeded { result } | TaskOutcome::Failed { result } => (
                Some(
                    serde_json::to_string(result)
                        .map_err(|e| store_err("complete_many: encode a result", e))?,
                ),
                None,
            ),
            TaskOutcome::Skipped { reason } => (None, Some(reason.clone())),
            TaskOutcome::Cancelled => (None, None),
        };
        result.push(r);
        note.push(t);
    }
    let stmt = tx
        .prepare_cached(FINISH)
        .await
        .map_err(db("complete_many: prepare UPDATE tasks"))?;
    let finished: HashSet<(i64, i32)> = tx
        .query(
            &stmt,
            &[&now, &ord, &idx, &attempt, &status, &result, &note],
        )
        .await
        .map_err(db("complete_many: UPDATE tasks (claims still current)"))?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    // Per run: the dependents of what finished, and the run's count.
    let mut by_run: BTreeMap<i64, Vec<i32>> = BTreeMap::new();
    for &(o, i) in &finished {
        by_run.entry(o).or_default().push(i);
    }
    let mut released = 0;
    for (o, list) in &by_run {
        released += release_dependents(&tx, *o, list).await?;
        finish_run_if_done(&tx, *o, list.len() as i64, now).await?;
    }
    let mut out = Vec::with_capacity(n);
    for ((c, _), answer) in done.iter().zip(answers) {
        out.push(match answer {
            Some(a) => a,
            None => {
                let o = ords.get(&c.run.0).copied().unwrap_or_default();
                if finished.contains(&(o, c.index as i32)) {
                    Ok(())
                } else {
                    Err(invalid(format!(
                        "complete: attempt {} of task `{}` is no longer current",
                        c.attempt, c.name
                    )))
                }
            }
        });
    }
    if out.iter().all(Result::is_ok) {
        let mut per_run: BTreeMap<RunId, Vec<StoredEvent>> = BTreeMap::new();
        for (run, e) in events {
            per_run.entry(run).or_default().push(e);
        }
        for (run, list) in per_run {
            append_in(&tx, run, list).await?;
        }
    }
    if released > 0 {
        notify_in(&tx, &inner.tag).await?;
    }
    tx.commit().await.map_err(db("complete_many: COMMIT"))?;
    Ok(out)
}
