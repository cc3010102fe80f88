//! The definitions of the runs a worker serves: read from the store once
//! per run (`get_run`, then `SavedRun`), kept for the next claims of the
//! same run in a bounded cache, and the scope a claimed step's references
//! are resolved in.

use crate::resolve::Scope;
use orch_model::store::TaskRecord;
use orch_model::{
    OrchestrationError, RunId, RunSettings, SavedRun, Store, TaskStatus, ValidWorkflow,
};
use rustc_hash::FxHashMap;
use serde_json::{Map, Value};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use tokio::sync::OnceCell;

/// A run's definition, as a worker needs it.
#[derive(Debug)]
pub(crate) struct RunDef {
    pub(crate) workflow: ValidWorkflow,
    pub(crate) settings: RunSettings,
    /// The run's parameter values (the workflow's defaults merged with the
    /// run's, as stored).
    pub(crate) params: Map<String, Value>,
    /// Step names to indices.
    pub(crate) index: FxHashMap<String, u32>,
}

type Slot = Arc<OnceCell<Arc<RunDef>>>;

/// Parsed definitions by run, at most `bound` of them (the oldest loaded
/// leaves first). Concurrent claims of one run load it once.
#[derive(Debug)]
pub(crate) struct Definitions {
    bound: usize,
    inner: Mutex<(FxHashMap<RunId, Slot>, VecDeque<RunId>)>,
}

impl Definitions {
    pub(crate) fn new(bound: usize) -> Self {
        Self {
            bound: bound.max(1),
            inner: Mutex::new((FxHashMap::default(), VecDeque::new())),
        }
    }

    fn slot(&self, run: RunId) -> Slot {
        let mut g = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (map, order) = &mut *g;
        if let Some(s) = map.get(&run) {
            return s.clone();
        }
        while map.len() >= self.bound {
            match order.pop_front() {
                Some(old) => {
                    map.remove(&old);
                }
                None => break,
            }
        }
        let s: Slot = Arc::default();
        map.insert(run, s.clone());
        order.push_back(run);
        s
    }

    /// Forgets a run (its definition could not be read, so that a later
    /// claim tries again).
    pub(crate) fn forget(&self, run: RunId) {
        let mut g = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        g.0.remove(&run);
        g.1.retain(|r| *r != run);
    }

    /// The definition of `run`, read from `store` on first use.
    ///
    /// # Errors
    /// The store's; `NotFound` for a run the store does not have;
    /// `InvalidState`/`Validation` when its saved definition does not read.
    pub(crate) async fn get(
        &self,
        store: &dyn Store,
        run: RunId,
    ) -> Result<Arc<RunDef>, OrchestrationError> {
        let slot = self.slot(run);
        let got = slot
            .get_or_try_init(|| async {
                let r = store.get_run(run).await?.ok_or_else(|| {
                    OrchestrationError::not_found(orch_model::EntityKind::Run, run.to_string())
                })?;
                let saved = SavedRun::from_json(&r.definition)?;
                let index = saved
                    .workflow
                    .workflow()
                    .steps
                    .iter()
                    .enumerate()
                    .map(|(i, s)| (s.name.to_string(), i as u32))
                    .collect();
                Ok::<_, OrchestrationError>(Arc::new(RunDef {
                    workflow: saved.workflow,
                    settings: saved.settings,
                    params: r.params,
                    index,
                }))
            })
            .await
            .cloned();
        if got.is_err() {
            self.forget(run);
        }
        got
    }
}

/// What a claimed step's references see: the run's parameters and the
/// records of its dependencies (every step it references is one).
pub(crate) struct ClaimScope<'a> {
    pub(crate) def: &'a RunDef,
    pub(crate) run: RunId,
    pub(crate) deps: &'a [TaskRecord],
}

impl ClaimScope<'_> {
    fn record(&self, step: &str) -> Option<&TaskRecord> {
        let i = *self.def.index.get(step)?;
        self.deps.iter().find(|t| t.index == i)
    }
}

impl Scope for ClaimScope<'_> {
    fn param(&self, name: &str) -> Option<&Value> {
        self.def.params.get(name)
    }
    fn result(&self, step: &str) -> Option<&Value> {
        self.record(step)
            .filter(|t| t.status == TaskStatus::Completed)
            .and_then(|t| t.result.as_ref())
            .filter(|r| r.success)
            .map(|r| &r.data)
    }
    fn status(&self, step: &str) -> Option<TaskStatus> {
        self.record(step).map(|t| t.status)
    }
    fn run_id(&self) -> String {
        self.run.to_string()
    }
    fn project_path(&self) -> Option<String> {
        self.def.settings.project_path.clone()
    }
}
