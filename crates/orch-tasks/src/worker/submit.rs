//! Submitting a run for workers: the run recorded in the store as a
//! journaled run records itself (`NewRun` with its `SavedRun` definition),
//! owned by no process but by the workers ([`SUBMITTED_OWNER`]).

use super::definitions::{RunContext, TaskSpec};
use crate::action::ActionRegistry;
use chrono::Utc;
use orch_model::store::{Record, RecordKind, ResourceAmounts};
use orch_model::{
    ExecutionMode, NewRun, NewTask, OrchestrationError, RunId, RunSettings, SavedRun, Store,
    ValidWorkflow, cut,
};
use serde_json::{Map, Value};

/// The owner recorded for a submitted run: no one process drives it; the
/// workers of the store do. (A process owner is `PID:START@HOST`; this has
/// no `@`.)
pub use orch_model::store::SUBMITTED_OWNER;

/// The `NewRun` of `wf` with these (already merged) parameter values and
/// settings: what `create_run` stores, the same as a journaled run writes.
///
/// # Errors
/// `Store` when the definition does not serialize.
pub fn new_run(
    id: RunId,
    wf: &ValidWorkflow,
    params: Map<String, Value>,
    settings: &RunSettings,
    parent: Option<RunId>,
) -> Result<NewRun, OrchestrationError> {
    let tasks = wf
        .workflow()
        .steps
        .iter()
        .enumerate()
        .map(|(i, s)| NewTask {
            name: s.name.to_string(),
            deps: wf.graph().deps(i as u32).to_vec(),
            priority: s.priority,
            // A fan-out step runs no action: its items take the resources.
            needs: match s.fan_out.as_deref() {
                Some(f) if !f.is_item() => ResourceAmounts::default(),
                _ => ResourceAmounts::of(&s.resources),
            },
            spec: None,
        })
        .collect();
    Ok(NewRun {
        id,
        workflow: wf.workflow().name.clone(),
        definition: SavedRun::write_json(wf.workflow(), settings)?,
        params,
        tasks,
        parent,
        owner: None,
        max_parallel: None,
    })
}

/// Records `wf` as a run for the workers of `store` and returns at once:
/// the parameters are checked and merged over the declared defaults, the
/// actions checked against `registry` (the workers must offer the same),
/// and the run created with [`SUBMITTED_OWNER`] as its owner.
///
/// # Errors
/// `Unsupported` when the store hands out no claims (no worker could run
/// it); `Validation`/`InvalidParameters` as `prepare` gives them; the
/// store's.
pub async fn submit(
    store: &dyn Store,
    wf: &ValidWorkflow,
    registry: &ActionRegistry,
    params: &Map<String, Value>,
    settings: &RunSettings,
    id: RunId,
) -> Result<RunId, OrchestrationError> {
    submit_owned(store, wf, registry, params, settings, id, None).await
}

/// [`submit`]; with `queued` (a run's [`RecordKind::RunQueued`] record),
/// that record is written first and the run is created owned by
/// [`orch_model::store::QUEUED_OWNER`], for `super::queue` to hand over.
pub(crate) async fn submit_owned(
    store: &dyn Store,
    wf: &ValidWorkflow,
    registry: &ActionRegistry,
    params: &Map<String, Value>,
    settings: &RunSettings,
    id: RunId,
    queued: Option<Record>,
) -> Result<RunId, OrchestrationError> {
    if !store.capabilities().claims {
        return Err(OrchestrationError::Unsupported {
            message: format!(
                "the {} store hands out no claims, so no worker can run a submitted run; run it here (without --detach) or use sqlite://PATH or postgres://...",
                store.backend()
            ),
        });
    }
    let params = crate::run::prepare(wf, registry, params)?;
    let (mut run, context) = for_workers(id, wf, params, settings)?;
    // The context first: a worker that claims a task reads it.
    store.put_record(context).await?;
    let queued = match queued {
        Some(q) => {
            // No claim may see it before it holds a slot.
            run.owner = Some(orch_model::store::QUEUED_OWNER.to_owned());
            store.put_record(q).await?;
            true
        }
        None => false,
    };
    if let Err(e) = store.create_run(run, Utc::now()).await {
        let _ = store
            .remove_record(RecordKind::RunContext, &id.to_string())
            .await;
        if queued {
            let _ = store
                .remove_record(RecordKind::RunQueued, &id.to_string())
                .await;
        }
        return Err(e);
    }
    if queued {
        return Ok(id);
    }
    store
        .set_owner(id, Some(SUBMITTED_OWNER.to_owned()))
        .await?;
    Ok(id)
}

/// What [`submit`] writes for a run of `wf` with these (already merged)
/// parameter values and settings: the run, each task with its step on its
/// own ([`NewTask::spec`]), and the [`RecordKind::RunContext`] record its
/// workers read once (the workflow without its steps, the settings and the
/// parameters), so that no worker reads the whole definition.
///
/// # Errors
/// `Store` when the definition does not serialize.
pub fn for_workers(
    id: RunId,
    wf: &ValidWorkflow,
    params: Map<String, Value>,
    settings: &RunSettings,
) -> Result<(NewRun, Record), OrchestrationError> {
    let context = RunContext {
        workflow: cut::header(wf.workflow())?,
        settings: settings.clone(),
        params: params.clone(),
        deadline: super::definitions::deadline(Utc::now(), settings),
        grace_ms: super::definitions::grace_of(wf.workflow())
            .map(|g| u64::try_from(g.as_millis()).unwrap_or(u64::MAX)),
        items_runs: wf.workflow().steps.iter().any(|s| {
            matches!(
                s.fan_out.as_deref(),
                Some(orch_model::definition::FanOut::Ref(_))
            )
        }),
        holds_slot: false,
    };
    let data = serde_json::to_value(&context).map_err(|e| OrchestrationError::Store {
        message: format!("the run's context does not serialize: {e}"),
        retryable: false,
    })?;
    let mut run = new_run(id, wf, params, settings, None)?;
    cut_steps(&mut run, wf)?;
    // The store hands out no more of its tasks at once, to all workers.
    run.max_parallel = match (settings.mode, settings.max_parallel) {
        (Some(ExecutionMode::Sequential), _) => Some(1),
        (_, Some(n)) => Some(u32::try_from(n.max(1)).unwrap_or(u32::MAX)),
        (_, None) => None,
    };
    let record = Record {
        kind: RecordKind::RunContext,
        key: id.to_string(),
        data,
        updated_at: Utc::now(),
    };
    Ok((run, record))
}

/// Gives each task of `run` its step on its own ([`TaskSpec`]), so that a
/// worker reads only the steps it claims.
///
/// # Errors
/// `Store` when a step does not serialize.
fn cut_steps(run: &mut NewRun, wf: &ValidWorkflow) -> Result<(), OrchestrationError> {
    let steps = &wf.workflow().steps;
    for (i, (task, step)) in run.tasks.iter_mut().zip(steps).enumerate() {
        let i = i as u32;
        let spec = TaskSpec {
            step: cut::step(step)?,
            deps: wf.graph().deps(i).to_vec(),
            upstream: step
                .conditions
                .run_if
                .over_upstream()
                .then(|| crate::upstream::ancestors(wf.graph(), i)),
        };
        task.spec = Some(
            serde_json::to_string(&spec).map_err(|e| OrchestrationError::Store {
                message: format!("step `{}` does not serialize: {e}", step.name),
                retryable: false,
            })?,
        );
    }
    Ok(())
}
