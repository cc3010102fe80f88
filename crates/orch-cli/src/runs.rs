//! `orch runs list|show`, `orch resume`, `orch cancel`, `orch cache`: runs in the store (`orch logs` is `logs.rs`).

use crate::exit;
use crate::manage::{Failure, engine_read_only, engine_with};
use crate::reporter;
use crate::run::{RunArgs, execute};
use crate::term::Table;
use orch_engine::OrchestrationEngine;
use orch_engine::{CancelOutcome, RunRequest, RunTarget};
use orch_model::store::{RunRecord, TaskRecord};
use orch_model::{RunId, Store};
use serde_json::{Value, json};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

fn runtime() -> Result<tokio::runtime::Runtime, u8> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("orch: cannot start the runtime: {e}");
            exit::INTERNAL
        })
}

fn open(config: Option<&Path>) -> Result<(OrchestrationEngine, tokio::runtime::Runtime), u8> {
    let engine = engine_with(config, None).map_err(|f| f.report())?;
    Ok((engine, runtime()?))
}

/// [`open`] for a command that only reads: the engine is built on a
/// read-only opening of the store (no migration, no write, no write lock),
/// so a database in a read-only file or directory can be read, and a run
/// writing to it is not held up; a store nothing was written to yet is empty.
pub(crate) fn open_read_only(
    config: Option<&Path>,
) -> Result<(OrchestrationEngine, Arc<dyn Store>, tokio::runtime::Runtime), u8> {
    let engine = engine_read_only(config).map_err(|f| f.report())?;
    let store = engine.store().clone();
    Ok((engine, store, runtime()?))
}

/// A run id as tables show it: its first 13 characters, the millisecond
/// the run was made (a UUIDv7 begins with its time), which every command
/// taking a run accepts as a prefix. The first 8 alone are the same for
/// runs made within about a minute.
pub(crate) fn short_id(id: &str) -> &str {
    id.get(..13).unwrap_or(id)
}

/// The state to show: a run still marked running whose process is gone was
/// interrupted; a submitted run that waits for a slot of its concurrency
/// key is queued.
pub fn shown_status(r: &RunRecord) -> &'static str {
    orch_engine::shown_state(r)
}

/// A run by id, unique id prefix, or `last`, with its definition.
pub(crate) async fn find_run(store: &Arc<dyn Store>, id: &str) -> Result<RunRecord, Failure> {
    let listed = find_listed(store, id).await?;
    if !listed.definition.is_empty() {
        return Ok(listed);
    }
    // Listed runs come without their definition: read the whole record.
    store
        .get_run(listed.id)
        .await
        .map_err(|e| Failure::of(&e))?
        .ok_or_else(|| not_found(id))
}

/// A run by id, unique id prefix, or `last` (from the list when not by id).
async fn find_listed(store: &Arc<dyn Store>, id: &str) -> Result<RunRecord, Failure> {
    if id == "last" || id == "latest" {
        let runs = store.list_runs().await.map_err(|e| Failure::of(&e))?;
        return newest_top_level(runs).ok_or_else(|| {
            Failure::invalid("orch: there are no runs yet; start one with `orch run FILE`")
        });
    }
    if let Ok(rid) = id.parse::<RunId>() {
        return store
            .get_run(rid)
            .await
            .map_err(|e| Failure::of(&e))?
            .ok_or_else(|| not_found(id));
    }
    let mut matches = store
        .list_runs()
        .await
        .map_err(|e| Failure::of(&e))?
        .into_iter()
        .filter(|r| !id.is_empty() && r.id.to_string().starts_with(id));
    match (matches.next(), matches.next()) {
        (Some(r), None) => Ok(r),
        (None, _) => Err(not_found(id)),
        (Some(_), Some(_)) => Err(Failure::invalid(format!(
            "orch: `{id}` matches more than one run; give more of the id"
        ))),
    }
}

fn not_found(id: &str) -> Failure {
    Failure::invalid(format!(
        "orch: run `{id}` not found; `orch runs list` shows the runs"
    ))
}

/// The newest top-level run (not a sub-workflow's child run, which the
/// store records with its parent), from runs listed newest first.
fn newest_top_level(runs: Vec<RunRecord>) -> Option<RunRecord> {
    runs.into_iter().find(|r| r.parent.is_none())
}

fn fmt_secs(d: chrono::TimeDelta) -> String {
    let ms = d.num_milliseconds().max(0);
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else {
        format!("{}m{:02}s", ms / 60_000, (ms % 60_000) / 1000)
    }
}

/// `orch runs list`.
pub fn list(config: Option<&Path>, json_out: bool, limit: usize) -> u8 {
    let (engine, store, rt) = match open_read_only(config) {
        Ok(x) => x,
        Err(c) => return c,
    };
    let result = rt.block_on(async {
        // Each run with its task counts, counted by the store: no task's
        // result is read (they can be many MiB each).
        let rows = store.recent_runs(limit).await?;
        Ok::<_, orch_model::OrchestrationError>((rows, store.problems().await.unwrap_or_default()))
    });
    let (rows, problems) = match result {
        Ok(x) => x,
        Err(e) => {
            eprintln!("orch: {e}");
            return exit::FAILED;
        }
    };
    for p in &problems {
        eprintln!("orch: note: {p}");
    }
    if json_out {
        let v: Vec<Value> = rows
            .iter()
            .map(|r| {
                json!({
                    "run_id": r.id.to_string(),
                    "workflow": r.workflow,
                    "status": shown_status(r),
                    "created_at": r.created_at,
                    "finished_at": r.finished_at,
                    "parent": r.parent.map(|p| p.to_string()),
                    "tasks": r.tasks.total(),
                    "done": r.tasks.done(),
                    "counts": r.tasks,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        return exit::OK;
    }
    let mut table =
        Table::new(&["RUN", "WORKFLOW", "STATUS", "CREATED", "DURATION", "TASKS"]).right(&[4]);
    for r in &rows {
        let duration = r
            .finished_at
            .map_or_else(|| "-".to_owned(), |f| fmt_secs(f - r.created_at));
        table.row([
            r.id.to_string(),
            r.workflow.clone(),
            shown_status(r).to_owned(),
            r.created_at.format("%Y-%m-%d %H:%M:%S").to_string(),
            duration,
            format!("{}/{}", r.tasks.done(), r.tasks.total()),
        ]);
    }
    table.print();
    if rows.is_empty() {
        println!("(no runs in {})", engine.store_url());
    }
    exit::OK
}

fn task_line(t: &TaskRecord) -> (String, String, String) {
    let started = t
        .started_at
        .map_or_else(|| "-".to_owned(), |s| s.format("%H:%M:%S%.3f").to_string());
    let duration = match (t.started_at, t.finished_at) {
        (Some(s), Some(f)) if t.attempt > 0 => fmt_secs(f - s),
        _ => "-".to_owned(),
    };
    let note = match (&t.result, &t.note) {
        (Some(r), _) if !r.success => format!(
            "{}: {}",
            r.error_type.clone().unwrap_or_default(),
            r.error_message
                .clone()
                .unwrap_or_default()
                .replace('\n', " ")
        ),
        (Some(r), _) if r.flaky().is_some() => reporter::flaky_note(t.attempt, r),
        (_, Some(n)) => n.clone(),
        _ => String::new(),
    };
    (started, duration, note)
}

/// `orch runs show`: with `all`, or for a run of at most
/// [`reporter::SMALL_RUN`] steps, every step; else the steps that did not
/// simply complete (as `orch run`'s table lists them) and a summary.
pub fn show(config: Option<&Path>, id: &str, json_out: bool, all: bool) -> u8 {
    let (_engine, store, rt) = match open_read_only(config) {
        Ok(x) => x,
        Err(c) => return c,
    };
    let found = rt.block_on(async {
        let r = find_run(&store, id).await?;
        let tasks = store.tasks(r.id).await.map_err(|e| Failure::of(&e))?;
        // The items of fan-outs over lists known at run time, under their step.
        let items = orch_engine::fan_out_items(store.as_ref(), r.id, &tasks).await;
        Ok::<_, Failure>((r, tasks, items))
    });
    let (r, mut tasks, mut items) = match found {
        Ok(x) => x,
        Err(f) => return f.report(),
    };
    // As a run one process drives records them: no attempt for a step that
    // was skipped or gathered its items (on workers, their claim counted one).
    let shown = orch_engine::Shown::of_saved(&r.definition);
    tasks.iter_mut().for_each(|t| shown.task(t));
    for it in &mut items {
        it.items
            .iter_mut()
            .for_each(|t| orch_engine::Shown::default().task(t));
    }
    // A retry names the run it retries in its saved settings.
    let retry_of = orch_model::RunSettings::of_saved(&r.definition)
        .ok()
        .and_then(|s| s.retry_of);
    let phases = crate::phases::of_saved(&r.definition, tasks.len());
    if json_out {
        let v = json!({
            "run_id": r.id.to_string(),
            "workflow": r.workflow,
            "status": shown_status(&r),
            "created_at": r.created_at,
            "finished_at": r.finished_at,
            "params": r.params,
            "owner": r.owner,
            "parent": r.parent.map(|p| p.to_string()),
            "retry_of": retry_of.map(|p| p.to_string()),
            "tasks": tasks.iter().map(|t| {
                let mut v = json!({
                    "name": t.name,
                    "status": t.status,
                    "attempts": t.attempt,
                    "started_at": t.started_at,
                    "finished_at": t.finished_at,
                    "cached": t.result.as_ref().is_some_and(|x| x.cached),
                    "result": t.result,
                    "note": t.note,
                });
                crate::phases::annotate(&mut v, t, &phases);
                if let Some(it) = items.iter().find(|it| it.step == t.index) {
                    v["items_run"] = json!(it.run.to_string());
                    v["items"] = it.items.iter().map(|i| json!({
                        "name": i.name,
                        "status": i.status,
                        "attempts": i.attempt,
                        "started_at": i.started_at,
                        "finished_at": i.finished_at,
                        "result": i.result,
                        "note": i.note,
                    })).collect();
                }
                v
            }).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        return exit::OK;
    }
    println!(
        "run {}  workflow `{}`  {}",
        r.id,
        r.workflow,
        shown_status(&r)
    );
    println!(
        "created {}{}",
        r.created_at.format("%Y-%m-%d %H:%M:%S UTC"),
        r.finished_at
            .map(|f| format!(", finished after {}", fmt_secs(f - r.created_at)))
            .unwrap_or_default()
    );
    if let Some(p) = r.parent {
        println!("parent: {p} (this run is a sub-workflow of it)");
    }
    if let Some(p) = retry_of {
        println!("retry of: {p} (its completed steps were kept)");
    }
    let row = |t: &TaskRecord| {
        let (started, duration, note) = task_line(t);
        let cached = if t.result.as_ref().is_some_and(|x| x.cached) {
            "yes"
        } else {
            "-"
        };
        [
            crate::phases::label(t, &phases),
            t.status.as_str().to_owned(),
            t.attempt.to_string(),
            started,
            duration,
            cached.to_owned(),
            note,
        ]
    };
    let table = Table::new(&[
        "STEP", "STATE", "ATTEMPTS", "STARTED", "DURATION", "CACHED", "NOTE",
    ])
    .right(&[2, 4]);
    // A step's items (of a list known at run time) follow it, indented.
    let with_items = |t: &TaskRecord| {
        let mut rows = vec![row(t)];
        if let Some(it) = items.iter().find(|it| it.step == t.index) {
            rows.extend(it.items.iter().map(|i| {
                let mut r = row(i);
                r[0] = format!("  {}", i.name);
                r
            }));
        }
        rows
    };
    if all || tasks.len() <= reporter::SMALL_RUN {
        table.print_rows(tasks.iter().flat_map(with_items));
        return exit::OK;
    }
    let kind = |t: &TaskRecord| {
        let ran = match (t.started_at, t.finished_at) {
            (Some(s), Some(f)) => (f - s).to_std().ok(),
            _ => None,
        };
        reporter::Listed::of(t.status, t.attempt, ran)
    };
    let digest = reporter::Digest::new(tasks.iter().map(kind));
    if digest.listed() > 0 {
        table.print_rows(digest.select(&tasks, kind).flat_map(with_items));
    }
    let mut counts = std::collections::BTreeMap::new();
    for t in &tasks {
        *counts.entry(t.status.as_str()).or_insert(0usize) += 1;
    }
    let counts: Vec<String> = counts.iter().map(|(s, n)| format!("{n} {s}")).collect();
    println!("{} steps: {}", tasks.len(), counts.join(", "));
    println!("{}", digest.hint(tasks.len(), &r.id.to_string()));
    exit::OK
}

/// `orch resume RUN`: finishes an interrupted run.
pub fn resume(id: &str, args: &RunArgs) -> u8 {
    let (engine, rt) = match open(args.config.as_deref()) {
        Ok(x) => x,
        Err(c) => return c,
    };
    let store = engine.store().clone();
    let r = match rt.block_on(find_run(&store, id)) {
        Ok(x) => x,
        Err(f) => return f.report(),
    };
    drop(rt);
    // The engine takes the run over (one compare-and-set in the store: of
    // two resumes of one run, one goes on), stops what its dead owner left
    // running, and runs the rest.
    execute(&engine, RunRequest::new(RunTarget::Resume(r.id)), args)
}

/// `orch cancel RUN`: stops a run from another terminal.
pub fn cancel(config: Option<&Path>, id: &str, wait: Duration) -> u8 {
    let (engine, rt) = match open(config) {
        Ok(x) => x,
        Err(c) => return c,
    };
    let store = engine.store().clone();
    let outcome = rt.block_on(async {
        let r = find_run(&store, id).await?;
        engine
            .cancel_run(r.id, wait)
            .await
            .map(|o| (r.id, o))
            .map_err(|e| match e {
                orch_model::OrchestrationError::InvalidState { message } => {
                    Failure::invalid(format!("orch: {message}"))
                }
                other => Failure::of(&other),
            })
    });
    match outcome {
        Ok((rid, o)) => {
            let (what, code) = match o {
                CancelOutcome::Stopped => (
                    "cancelled; its running steps were stopped".to_owned(),
                    exit::OK,
                ),
                CancelOutcome::Asked => (
                    format!(
                        "asked to cancel; it has not stopped after {wait:?} (it will, at its next check)"
                    ),
                    exit::FAILED,
                ),
                CancelOutcome::MarkedCancelled => {
                    ("was interrupted; marked cancelled".to_owned(), exit::OK)
                }
            };
            println!("run {rid} {what}");
            code
        }
        Err(f) => f.report(),
    }
}

/// `orch cache list`.
pub fn cache_list(config: Option<&Path>, json_out: bool) -> u8 {
    let (engine, store, rt) = match open_read_only(config) {
        Ok(x) => x,
        Err(c) => return c,
    };
    let entries = match rt.block_on(store.cache_list()) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("orch: {e}");
            return exit::FAILED;
        }
    };
    let sized: Vec<(String, usize, chrono::DateTime<chrono::Utc>)> = entries
        .iter()
        .map(|e| (e.key.clone(), e.value.to_string().len(), e.created_at))
        .collect();
    if json_out {
        let v: Vec<Value> = sized
            .iter()
            .map(|(k, n, at)| json!({"key": k, "bytes": n, "created_at": at}))
            .collect();
        println!("{}", Value::Array(v));
    } else {
        for (k, n, at) in &sized {
            println!("{k}  {n} bytes  {}", at.format("%Y-%m-%d %H:%M:%S"));
        }
        println!(
            "{} cached result{} in {}",
            sized.len(),
            if sized.len() == 1 { "" } else { "s" },
            engine.store_url()
        );
    }
    exit::OK
}

/// `orch cache clear`.
pub fn cache_clear(config: Option<&Path>) -> u8 {
    let (engine, rt) = match open(config) {
        Ok(x) => x,
        Err(c) => return c,
    };
    match rt.block_on(engine.store().cache_clear()) {
        Ok(n) => {
            println!("removed {n} cached result{}", if n == 1 { "" } else { "s" });
            exit::OK
        }
        Err(e) => {
            eprintln!("orch: {e}");
            exit::FAILED
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use orch_model::WorkflowStatus;

    fn record(id: RunId, secs: i64, parent: Option<RunId>, finished: bool) -> RunRecord {
        let at = |s| chrono::Utc.timestamp_opt(s, 0).single().unwrap_or_default();
        RunRecord {
            id,
            workflow: format!("w{secs}"),
            status: if finished {
                WorkflowStatus::Completed
            } else {
                WorkflowStatus::Running
            },
            created_at: at(secs),
            finished_at: finished.then(|| at(secs + 100)),
            params: serde_json::Map::new(),
            definition: String::new(),
            owner: Some("7:7@host".to_owned()),
            cancel_requested: false,
            parent,
            tasks: orch_model::store::TaskCounts::default(),
        }
    }

    /// A library process running two top-level runs at once (one owner,
    /// overlapping): the newer is `last`, though it started while the older
    /// ran under the same owner (what the former inference took for a child).
    #[test]
    fn last_is_the_newest_run_without_a_parent() {
        let (older, newer, child) = (RunId::new(), RunId::new(), RunId::new());
        let runs = vec![
            record(child, 3, Some(newer), true),
            record(newer, 2, None, true),
            record(older, 1, None, true),
        ];
        assert_eq!(newest_top_level(runs).map(|r| r.id), Some(newer));
        assert_eq!(newest_top_level(Vec::new()).map(|r| r.id), None);
    }
}
