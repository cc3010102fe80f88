//! The items of fan-out steps over lists known at run time, shown with the
//! run they belong to.
//!
//! A step with `for_each: "${STEP.result...}"` runs its items as a run of
//! their own (recorded with the step's run as its parent, named
//! `WORKFLOW.STEP`; its first task is the step again, which gathers them,
//! and the items `STEP[0]`, `STEP[1]`, ... follow). The step's result names
//! that run (`items_run` in its metadata) once it has ended; while it runs,
//! the run is found under the id derived from the parent's and the step's
//! index (`orch_tasks::run::items_run_id`). What shows a run (`orch runs
//! show`, `orch run`'s report, the server's steps) lists the items under
//! their step from here.

use crate::{RunReport, StepReport};
use orch_model::store::TaskRecord;
use orch_model::{RunId, Store, TaskStatus};

/// Most running steps looked up as possible fan-outs: beyond it, only the
/// steps that have ended (whose result names their items' run) show items.
const LOOKED_UP_RUNNING: usize = 64;

/// The items of one fan-out step over a list known at run time.
#[derive(Debug, Clone)]
pub struct StepItems {
    /// The step's index in its run.
    pub step: u32,
    /// The run that holds the items.
    pub run: RunId,
    /// The items, in item order (`STEP[0]`, `STEP[1]`, ...).
    pub items: Vec<TaskRecord>,
}

/// The run named by a step's result as holding its items.
fn named_items_run(result: Option<&orch_model::TaskResult>) -> Option<RunId> {
    result?.metadata.get("items_run")?.as_str()?.parse().ok()
}

/// The items of the steps of run `run` (its tasks `tasks`) that fan out
/// over a list known at run time, by step index order. A step whose items'
/// run cannot be read is left out (the store's errors are not the show's).
pub async fn fan_out_items<'a>(
    store: &dyn Store,
    run: RunId,
    tasks: impl IntoIterator<Item = &'a TaskRecord>,
) -> Vec<StepItems> {
    let mut wanted: Vec<(u32, RunId, bool)> = Vec::new();
    let mut running = 0usize;
    for t in tasks {
        if let Some(child) = named_items_run(t.result.as_ref()) {
            wanted.push((t.index, child, true));
        } else if t.status == TaskStatus::Running && running < LOOKED_UP_RUNNING {
            running += 1;
            wanted.push((t.index, orch_tasks::run::items_run_id(run, t.index), false));
        }
    }
    let mut out = Vec::new();
    for (step, child, named) in wanted {
        let Ok(mut items) = store.tasks(child).await else {
            continue;
        };
        if items.is_empty() && !named {
            // Not a fan-out step, or its items' run is not there yet.
            continue;
        }
        // Its first task is the step itself, which gathers the items.
        if !items.is_empty() {
            items.remove(0);
        }
        out.push(StepItems {
            step,
            run: child,
            items,
        });
    }
    out
}

/// `report` with the items of its fan-out steps over lists known at run
/// time (read from `store`) as steps of their own, each right after the
/// steps before it that it belongs to, in item order.
pub async fn report_with_items(store: &dyn Store, mut report: RunReport) -> RunReport {
    let named: Vec<(usize, RunId)> = report
        .steps
        .iter()
        .enumerate()
        .filter_map(|(i, s)| named_items_run(s.result.as_ref()).map(|r| (i, r)))
        .collect();
    if named.is_empty() {
        return report;
    }
    let mut extra: Vec<(usize, Vec<StepReport>)> = Vec::with_capacity(named.len());
    for (i, child) in named {
        let Ok(tasks) = store.tasks(child).await else {
            continue;
        };
        let created_at = report.steps[i].created_at;
        let items = tasks
            .into_iter()
            .skip(1)
            .map(|t| crate::submit::step_report(t, created_at, &orch_tasks::run::Shown::default()))
            .collect();
        extra.push((i, items));
    }
    let mut steps =
        Vec::with_capacity(report.steps.len() + extra.iter().map(|(_, v)| v.len()).sum::<usize>());
    let mut extra = extra.into_iter().peekable();
    for (i, s) in std::mem::take(&mut report.steps).into_iter().enumerate() {
        steps.push(s);
        if extra.peek().is_some_and(|(at, _)| *at == i) {
            if let Some((_, items)) = extra.next() {
                steps.extend(items);
            }
        }
    }
    report.steps = steps;
    report
}
