//! Submitting a run for workers: the run recorded in the store as a
//! journaled run records itself (`NewRun` with its `SavedRun` definition),
//! owned by no process but by the workers ([`SUBMITTED_OWNER`]).

use crate::action::ActionRegistry;
use chrono::Utc;
use orch_model::store::ResourceAmounts;
use orch_model::{
    NewRun, NewTask, OrchestrationError, RunId, RunSettings, SavedRun, Store, ValidWorkflow,
};
use serde_json::{Map, Value};

/// The owner recorded for a submitted run: no one process drives it; the
/// workers of the store do. (A process owner is `PID:START@HOST`; this has
/// no `@`.)
pub const SUBMITTED_OWNER: &str = "workers";

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
            needs: ResourceAmounts::of(&s.resources),
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
    if !store.capabilities().claims {
        return Err(OrchestrationError::Unsupported {
            message: format!(
                "the {} store hands out no claims, so no worker can run a submitted run; run it here (without --detach) or use sqlite://PATH or postgres://...",
                store.backend()
            ),
        });
    }
    let params = crate::run::prepare(wf, registry, params)?;
    store
        .create_run(new_run(id, wf, params, settings, None)?, Utc::now())
        .await?;
    store
        .set_owner(id, Some(SUBMITTED_OWNER.to_owned()))
        .await?;
    Ok(id)
}
