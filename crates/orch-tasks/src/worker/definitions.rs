//! The definitions of the runs a worker serves, and the step of a claim.
//!
//! A run submitted for workers is cut ([`orch_model::cut`]): its header
//! (the workflow without its steps, with the run's settings and
//! parameters) is a [`RecordKind::RunContext`] record read once per run,
//! and each task's step comes with its claim ([`Claim::spec`]), so that a
//! worker's memory does not grow with the size of the runs it serves. A
//! run without that cut (recorded by a process that drove it, then left to
//! workers, or by an earlier version) is read whole once (`get_run`, then
//! `SavedRun`). Either is kept for the next claims of the same run in a
//! bounded cache, and is the scope a claimed step's references are
//! resolved in.

use crate::resolve::Scope;
use chrono::{DateTime, Utc};
use orch_model::store::TaskRecord;
use orch_model::{
    Claim, OrchestrationError, RecordKind, RunId, RunSettings, SavedRun, Store, TaskStatus,
    ValidWorkflow, Workflow, WorkflowStep, cut,
};
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use tokio::sync::OnceCell;

/// The cancel grace of a workflow whose steps include some that run after
/// a stop (its `cancel_grace`, else the default); `None` when it has none.
pub(crate) fn grace_of(wf: &Workflow) -> Option<std::time::Duration> {
    wf.steps
        .iter()
        .any(|s| s.conditions.run_if.runs_after_stop())
        .then(|| wf.cancel_grace.unwrap_or(crate::run::DEFAULT_CANCEL_GRACE))
}

/// When a run created at `created` ends by its timeout (`settings.run_timeout_ms`).
pub(crate) fn deadline(created: DateTime<Utc>, settings: &RunSettings) -> Option<DateTime<Utc>> {
    let ms = settings.run_timeout_ms?;
    Some(super::stop::after(
        created,
        std::time::Duration::from_millis(ms),
    ))
}

/// A run's definition, as a worker needs it.
#[derive(Debug)]
pub(crate) struct RunDef {
    pub(crate) settings: RunSettings,
    /// The run's parameter values (the workflow's defaults merged with the
    /// run's, as stored).
    pub(crate) params: Map<String, Value>,
    /// When the run's timeout ends it (`None`: no timeout).
    pub(crate) deadline: Option<DateTime<Utc>>,
    /// The grace of the steps that run after a stop (`None`: the workflow
    /// has none; the run stops at once).
    pub(crate) grace: Option<std::time::Duration>,
    body: Body,
}

#[derive(Debug)]
enum Body {
    /// The whole workflow (boxed: a cut run's header is far smaller).
    Whole(Box<ValidWorkflow>),
    /// The workflow's header; each step comes with its claim.
    Cut(Map<String, Value>),
}

/// What a worker reads once of a submitted run (its [`RecordKind::RunContext`]
/// record's document).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct RunContext {
    /// The workflow without its steps ([`cut::header`]).
    pub(crate) workflow: Map<String, Value>,
    /// How the run was started.
    pub(crate) settings: RunSettings,
    /// Its parameter values, merged.
    pub(crate) params: Map<String, Value>,
    /// When its timeout ends it: the time it was submitted plus its
    /// `run_timeout_ms` (`None`: no timeout).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) deadline: Option<DateTime<Utc>>,
    /// The cancel grace in milliseconds, when the workflow has steps that
    /// run after a stop ([`grace_of`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) grace_ms: Option<u64>,
    /// Whether a step of it fans out over a list known at run time (whose
    /// items run as runs of their own, which a cancel must reach).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub(crate) items_runs: bool,
    /// Whether it holds a slot of a concurrency key (set when it got it).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub(crate) holds_slot: bool,
}

/// What a worker needs of one task of a submitted run ([`Claim::spec`]).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct TaskSpec {
    /// The step ([`cut::step`]).
    pub(crate) step: Value,
    /// The indices of its dependencies.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) deps: Vec<u32>,
    /// Every upstream step's index, for a trigger rule over all of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) upstream: Option<Vec<u32>>,
}

/// The step of a claim, with what its release and attempt need.
pub(crate) struct ClaimStep<'a> {
    /// The workflow the step is in: the run's whole workflow, or its header
    /// with this one step.
    wf: Cow<'a, Workflow>,
    /// The step's position in `wf.steps`.
    pos: usize,
    /// The indices of its dependencies.
    pub(crate) deps: Cow<'a, [u32]>,
    upstream: Upstream<'a>,
}

enum Upstream<'a> {
    Graph(&'a ValidWorkflow, u32),
    Listed(Vec<u32>),
}

impl ClaimStep<'_> {
    pub(crate) fn step(&self) -> &WorkflowStep {
        &self.wf.steps[self.pos]
    }

    /// The workflow (its secrets section is what the attempt reads).
    pub(crate) fn workflow(&self) -> &Workflow {
        &self.wf
    }

    /// Every step upstream of this one.
    pub(crate) fn upstream(&self) -> Vec<u32> {
        match &self.upstream {
            Upstream::Graph(wf, i) => crate::upstream::ancestors(wf.graph(), *i),
            Upstream::Listed(v) => v.clone(),
        }
    }
}

impl RunDef {
    /// The step `claim` holds.
    ///
    /// # Errors
    /// `InvalidState` when the claim's step is not in the definition, or its
    /// spec does not read.
    pub(crate) fn step_of(&self, claim: &Claim) -> Result<ClaimStep<'_>, OrchestrationError> {
        let bad = |why: String| OrchestrationError::InvalidState { message: why };
        match (&self.body, &claim.spec) {
            (Body::Cut(header), Some(text)) => {
                let spec: TaskSpec = serde_json::from_str(text).map_err(|e| {
                    bad(format!(
                        "the spec of step `{}` (index {}) does not read: {e}",
                        claim.name, claim.index
                    ))
                })?;
                let wf = cut::one_step(header, spec.step)?;
                if wf
                    .steps
                    .first()
                    .is_none_or(|s| s.name != claim.name.as_str())
                {
                    return Err(bad(format!(
                        "the spec of index {} is not step `{}`",
                        claim.index, claim.name
                    )));
                }
                Ok(ClaimStep {
                    wf: Cow::Owned(wf),
                    pos: 0,
                    deps: Cow::Owned(spec.deps),
                    upstream: Upstream::Listed(spec.upstream.unwrap_or_default()),
                })
            }
            (Body::Whole(wf), _) => {
                let pos = claim.index as usize;
                if wf
                    .workflow()
                    .steps
                    .get(pos)
                    .is_none_or(|s| s.name != claim.name.as_str())
                {
                    return Err(bad(format!(
                        "the run's saved definition has no step `{}` at index {}",
                        claim.name, claim.index
                    )));
                }
                Ok(ClaimStep {
                    wf: Cow::Borrowed(wf.workflow()),
                    pos,
                    deps: Cow::Borrowed(wf.graph().deps(claim.index)),
                    upstream: Upstream::Graph(wf, claim.index),
                })
            }
            (Body::Cut(_), None) => Err(bad(format!(
                "step `{}` (index {}) of a submitted run came without its spec",
                claim.name, claim.index
            ))),
        }
    }
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

    /// The definition of `claim`'s run, read from `store` on first use: its
    /// [`RunContext`] when the claim carries its step, else the whole
    /// definition.
    ///
    /// # Errors
    /// The store's; `NotFound` for a run the store does not have;
    /// `InvalidState`/`Validation` when its saved definition does not read.
    pub(crate) async fn get(
        &self,
        store: &dyn Store,
        claim: &Claim,
    ) -> Result<Arc<RunDef>, OrchestrationError> {
        let run = claim.run;
        let slot = self.slot(run);
        let got = slot
            .get_or_try_init(|| async {
                let missing =
                    || OrchestrationError::not_found(orch_model::EntityKind::Run, run.to_string());
                if claim.spec.is_some() {
                    let rec = store
                        .record(RecordKind::RunContext, &run.to_string())
                        .await?
                        .ok_or_else(missing)?;
                    let ctx: RunContext = serde_json::from_value(rec.data).map_err(|e| {
                        OrchestrationError::InvalidState {
                            message: format!("the run's context record does not read: {e}"),
                        }
                    })?;
                    return Ok::<_, OrchestrationError>(Arc::new(RunDef {
                        settings: ctx.settings,
                        params: ctx.params,
                        deadline: ctx.deadline,
                        grace: ctx.grace_ms.map(std::time::Duration::from_millis),
                        body: Body::Cut(ctx.workflow),
                    }));
                }
                let r = store.get_run(run).await?.ok_or_else(missing)?;
                let saved = SavedRun::from_json(&r.definition)?;
                Ok(Arc::new(RunDef {
                    deadline: deadline(r.created_at, &saved.settings),
                    grace: grace_of(saved.workflow.workflow()),
                    settings: saved.settings,
                    params: r.params,
                    body: Body::Whole(Box::new(saved.workflow)),
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
        self.deps.iter().find(|t| t.name == step)
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

/// The records of the dependencies of the claims of one batch that carry
/// their step (the others read theirs when they are served), read with one
/// `task_records` per run instead of one per claim: by claim. A claim
/// missing from the answer (a spec that does not read, a store error)
/// reads its own when it is served.
pub(crate) async fn prefetch_deps(
    store: &dyn Store,
    claims: &[Claim],
) -> FxHashMap<(RunId, u32), Vec<TaskRecord>> {
    /// Only the dependencies of a [`TaskSpec`]: its step is skipped unread.
    #[derive(Deserialize)]
    struct Deps {
        #[serde(default)]
        deps: Vec<u32>,
    }
    let mut by_run: FxHashMap<RunId, Vec<(u32, Vec<u32>)>> = FxHashMap::default();
    for c in claims {
        let Some(spec) = &c.spec else { continue };
        let Ok(d) = serde_json::from_str::<Deps>(spec) else {
            continue;
        };
        by_run.entry(c.run).or_default().push((c.index, d.deps));
    }
    let mut out = FxHashMap::default();
    for (run, wanted) in by_run {
        let mut all: Vec<u32> = wanted.iter().flat_map(|(_, d)| d.iter().copied()).collect();
        all.sort_unstable();
        all.dedup();
        let records = if all.is_empty() {
            Vec::new()
        } else {
            match store.task_records(run, &all).await {
                Ok(r) => r,
                Err(_) => continue,
            }
        };
        let by_index: FxHashMap<u32, &TaskRecord> = records.iter().map(|t| (t.index, t)).collect();
        for (index, deps) in wanted {
            let mine: Vec<TaskRecord> = deps
                .iter()
                .filter_map(|d| by_index.get(d).map(|t| (*t).clone()))
                .collect();
            if mine.len() == deps.len() {
                out.insert((run, index), mine);
            }
        }
    }
    out
}
