//! Fan-out in the scheduler: the gathering rule of a fan-out step (its result is the list of its items' results, in order).
//!
//! A literal `for_each:` or `matrix:` was expanded when the definition was
//! validated (`orch_model::definition::FanOut`): the items are plain steps,
//! and the fan-out step depends on all of them. When the last item ends,
//! the step is released and, instead of running an action, gathers
//! ([`State::gather`]):
//! - every item completed (or was skipped, when not all were): `completed`,
//!   its result the list of the items' results in item order (`null` for a
//!   skipped item);
//! - an item failed or was cancelled: `failed` (`FanOutError`, naming the
//!   first such items); its stored result still holds the list (with `null`
//!   for those items), but, as for any failed step, `${STEP.result}` is not
//!   available to dependents, which follow their trigger rules;
//! - every item was skipped (for instance, the step's own dependency
//!   failed): `skipped`, as the step itself would have been.
//!
//! An empty list has no item: the step gathers `[]` as soon as its own
//! dependencies allow, and its dependents run.
//!
//! A list known only at run time (`for_each: "${STEP.result...}"`) is
//! resolved when the step starts: its items run as a run of their own
//! ([`start_items`]), recorded with this run as its parent, whose fan-out
//! step gathers them by the same rule; that outcome is the step's.

use super::coordinator::Running;
use super::options::RunOptions;
use super::queue::Hot;
use super::state::State;
use crate::action::ActionRegistry;
use crate::event::Event;
use crate::executor::{Outcome, OutcomeSink};
use crate::resolve::resolve_string;
use chrono::{DateTime, Utc};
use orch_model::definition::{FanOut, resolve_outside_items, validate};
use orch_model::{
    Conditions, Limits, RunId, TaskResult, TaskStatus, ValidWorkflow, Workflow, WorkflowStep,
};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

/// How many items a failure message names.
const NAMED: usize = 5;

/// What a fan-out step comes to once its items have all ended (the rule of
/// the module docs), for the scheduler and for workers alike.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Gathered {
    /// Completed with the items' results, in order.
    Completed(Value),
    /// An item failed or was cancelled: why, and the results (with `null`).
    Failed(String, Value),
    /// Every item was skipped: why.
    Skipped(String),
}

/// Gathers the items (each one's final state, name, result if it
/// completed, and note), in item order.
pub(crate) fn gathered<'a>(
    items: impl ExactSizeIterator<Item = (TaskStatus, &'a str, Option<&'a Value>, Option<&'a str>)>,
) -> Gathered {
    let total = items.len();
    let mut data = Vec::with_capacity(total);
    let mut bad: Vec<String> = Vec::new();
    let mut bad_count = 0usize;
    let mut skipped = 0usize;
    let mut first_note = None;
    for (status, name, result, note) in items {
        match status {
            TaskStatus::Completed => data.push(result.cloned().unwrap_or(Value::Null)),
            TaskStatus::Skipped => {
                skipped += 1;
                if first_note.is_none() {
                    first_note = note;
                }
                data.push(Value::Null);
            }
            _ => {
                bad_count += 1;
                if bad.len() < NAMED {
                    bad.push(format!("{name} ({status})"));
                }
                data.push(Value::Null);
            }
        }
    }
    if bad_count > 0 {
        if bad_count > NAMED {
            bad.push(format!("and {} more", bad_count - NAMED));
        }
        let message = format!(
            "{bad_count} of {total} items did not succeed: {}",
            bad.join(", ")
        );
        return Gathered::Failed(message, Value::Array(data));
    }
    if skipped > 0 && skipped == total {
        return Gathered::Skipped(format!(
            "every item was skipped ({})",
            first_note.unwrap_or_default()
        ));
    }
    Gathered::Completed(Value::Array(data))
}

impl State<'_> {
    /// Ends fan-out step `j` once its items have all ended: see the module
    /// docs. Returns true (the step is final, release its dependents).
    pub(super) fn gather(&mut self, j: u32, now: DateTime<Utc>) -> bool {
        let wf = self.wf;
        let items = wf.graph().deps(j);
        let g = gathered(items.iter().map(|&k| {
            let r = &self.reports[k as usize];
            (
                self.status[k as usize],
                r.name.as_str(),
                self.data(k),
                r.note.as_deref(),
            )
        }));
        let reason = match g {
            Gathered::Skipped(reason) => return self.skip(j, reason, now),
            Gathered::Completed(data) => Ok(data),
            Gathered::Failed(message, data) => Err((message, data)),
        };
        self.set_status(j, TaskStatus::Ready);
        let r = &mut self.reports[j as usize];
        r.ready_at = Some(now);
        r.finished_at = Some(now);
        r.note = Some(super::gathered_note(items.len()));
        let name = self.name(j);
        match reason {
            Ok(data) => {
                self.set_status(j, TaskStatus::Completed);
                self.reports[j as usize].result = Some(TaskResult::ok(data));
                self.record(Event::TaskSucceeded {
                    task: j,
                    name,
                    attempts: 0,
                    duration: Duration::ZERO,
                });
            }
            Err((message, data)) => {
                let mut result = TaskResult::failed("FanOutError", message.clone());
                result.data = data;
                self.set_status(j, TaskStatus::Failed);
                self.reports[j as usize].result = Some(result);
                self.record(Event::TaskFailed {
                    task: j,
                    name,
                    attempts: 0,
                    error_type: "FanOutError".into(),
                    message,
                    duration: Duration::ZERO,
                });
            }
        }
        true
    }
}

/// What a run with `for_each: "${...}"` steps keeps to start their items:
/// a step over a list known only at run time runs its items as a run of
/// their own (recorded with this run as its parent, as `workflow.run` does),
/// through the same registry, store, executor and settings.
pub(super) struct Dynamic {
    registry: ActionRegistry,
    opts: RunOptions,
}

impl Dynamic {
    /// `Some` when a step of the run has a list known at run time.
    pub(super) fn of(
        hot: &[Hot],
        registry: &ActionRegistry,
        opts: &RunOptions,
    ) -> Option<Box<Self>> {
        hot.iter().any(|h| h.is(Hot::DYNAMIC)).then(|| {
            Box::new(Dynamic {
                registry: registry.clone(),
                opts: RunOptions {
                    resume: None,
                    sink: None,
                    params: serde_json::Map::new(),
                    ..opts.clone()
                },
            })
        })
    }
}

/// Starts fan-out step `i` over a list known at run time: resolves the list
/// (and every other reference of the step's parameters, in this run), and
/// runs the items as a run of their own, whose fan-out step gathers them;
/// its outcome is step `i`'s. A list that does not resolve, is not a list or
/// is too long fails the step at once.
pub(super) fn start_items(
    st: &mut State<'_>,
    i: u32,
    sink: &Arc<dyn OutcomeSink>,
    set: &mut Running<'_>,
) -> Option<Outcome> {
    let started = Utc::now();
    let fail = |message: String| {
        Some(Outcome {
            task: i,
            status: TaskStatus::Failed,
            attempts: 1,
            started_at: Some(started),
            finished_at: Utc::now(),
            result: TaskResult::failed("FanOutError", message),
            retryable: false,
        })
    };
    let (child, dynamic) = match child_workflow(st, i) {
        Ok(c) => c,
        Err(message) => return fail(message),
    };
    let mut opts = RunOptions {
        run_id: items_run_id(st.run_id, i),
        parent: Some(st.run_id),
        cancel: st.ctx.cancel.child_token(),
        run_timeout: None,
        ..dynamic.opts.clone()
    };
    let registry = dynamic.registry.clone();
    let sink = sink.clone();
    let step_cancel = st.ctx.cancel.clone();
    tokio::spawn(async move {
        // The derived id, unless a resumed run's step finds its first
        // items' run there already.
        if let Some(store) = &opts.store {
            if !matches!(store.get_run(opts.run_id).await, Ok(None)) {
                opts.run_id = RunId::new();
            }
        }
        let child_id = opts.run_id;
        let run: std::pin::Pin<Box<dyn std::future::Future<Output = _> + Send>> =
            Box::pin(async move { super::run_workflow(&child, &registry, opts, None).await });
        let report = run.await;
        let finished_at = Utc::now();
        let (status, mut result) = match report {
            Ok(r) => match r.steps.into_iter().next() {
                Some(s) => (
                    s.status,
                    s.result.unwrap_or_else(|| {
                        TaskResult::failed("FanOutError", "the items' run ended before its items")
                    }),
                ),
                None => (
                    TaskStatus::Failed,
                    TaskResult::failed("FanOutError", "the items' run has no step"),
                ),
            },
            Err(e) => (
                TaskStatus::Failed,
                TaskResult::failed("FanOutError", format!("the items' run did not start: {e}")),
            ),
        };
        let status = match status {
            TaskStatus::Completed | TaskStatus::Failed => status,
            TaskStatus::Cancelled => TaskStatus::Cancelled,
            _ if step_cancel.is_cancelled() => TaskStatus::Cancelled,
            _ => TaskStatus::Failed,
        };
        result
            .metadata
            .insert("items_run".into(), Value::String(child_id.to_string()));
        sink.deliver(Outcome {
            task: i,
            status,
            attempts: 1,
            started_at: Some(started),
            finished_at,
            result,
            retryable: false,
        });
    });
    set.count += 1;
    None
}

/// The workflow of step `i`'s items: the step, its list resolved and its
/// other references resolved in this run, as a literal fan-out (which
/// validation expands into `STEP[0]`, `STEP[1]`, ...).
fn child_workflow<'s>(st: &'s State<'_>, i: u32) -> Result<(ValidWorkflow, &'s Dynamic), String> {
    let dynamic = st
        .dynamic
        .as_deref()
        .ok_or_else(|| "the run was not prepared for lists known at run time".to_owned())?;
    let w = st.wf.workflow();
    let child = items_workflow(&w.name, &w.steps[i as usize], &mut |s| {
        resolve_string(s, st)
    })?;
    Ok((child, dynamic))
}

/// The workflow of the items of `step` (of workflow `workflow`), a step
/// with `for_each: "${...}"`: its list resolved through `resolve` (which
/// also resolves the step's other references, outside `${item}`), as a
/// literal fan-out, which validation expands into `STEP[0]`, `STEP[1]`, ...
/// after the step itself (index 0, which gathers them). The workflow is
/// named `WORKFLOW.STEP`. A list that does not resolve, is not a list or
/// has more items than `max_fanout_items` is an error saying so.
pub(crate) fn items_workflow(
    workflow: &str,
    step: &WorkflowStep,
    resolve: &mut dyn FnMut(&str) -> Result<Value, String>,
) -> Result<ValidWorkflow, String> {
    let Some(FanOut::Ref(r)) = step.fan_out.as_deref() else {
        return Err("the step has no `for_each` reference".to_owned());
    };
    let list = match resolve(r)? {
        Value::Array(list) => list,
        other => {
            return Err(format!(
                "`for_each: {r}` is {}, not a list",
                match other {
                    Value::Null => "null",
                    Value::Bool(_) => "a boolean",
                    Value::Number(_) => "a number",
                    Value::String(_) => "a string",
                    Value::Object(_) => "a map",
                    Value::Array(_) => "a list",
                }
            ));
        }
    };
    let limit = Limits::default().max_fanout_items;
    if list.len() > limit {
        return Err(format!(
            "`for_each: {r}` has {} items; the limit is {limit} (limit max_fanout_items)",
            list.len()
        ));
    }
    let mut t = step.clone();
    t.parameters = resolve_outside_items(step, resolve)?;
    t.fan_out = Some(Box::new(FanOut::List(list)));
    t.dependencies.clear();
    t.conditions = Conditions::default();
    let mut child = Workflow::new(format!("{workflow}.{}", step.name), String::new());
    child.steps.push(t);
    let limits = Limits {
        max_fanout_items: limit,
        ..Limits::default()
    };
    validate(child, &limits).map_err(|d| d.lines().collect::<Vec<_>>().join("; "))
}

/// The id of the run that holds the items of step `index` of run `parent`
/// when that step's list is known only at run time: derived from the two
/// (the parent's time, so that it sorts next to it, and a hash of both), so
/// that whoever takes the step over (a worker after another one died) and
/// whoever shows the parent run (`orch runs show`) find the same run. A
/// local run that resumes such a step, whose first items' run exists
/// already, starts the new one under a fresh id (the step's result names it
/// as `items_run`).
pub fn items_run_id(parent: RunId, index: u32) -> RunId {
    let mut h = blake3::Hasher::new();
    h.update(b"orch fan-out items run");
    h.update(parent.as_uuid().as_bytes());
    h.update(&index.to_le_bytes());
    let hash = h.finalize();
    let mut b = [0u8; 16];
    b[..6].copy_from_slice(&parent.as_uuid().as_bytes()[..6]);
    b[6..].copy_from_slice(&hash.as_bytes()[..10]);
    // Version 7 (time-ordered) and the RFC 4122 variant, as `RunId::new`.
    b[6] = (b[6] & 0x0f) | 0x70;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    let text = format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    );
    text.parse().unwrap_or(parent)
}
