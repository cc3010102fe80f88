//! Running a validated workflow: the dependency-counting scheduler with a priority ready queue.
//!
//! One coordinator owns all state (flat arrays indexed by step). Each step
//! that starts runs as its own tokio task, which performs the attempts
//! (timeouts, retries with backoff) and reports one outcome back. Finishing a
//! step costs O(its dependents): their counters drop, and a step whose counter
//! reaches zero is released (trigger rule, `when`, `${...}` resolution) into
//! the ready queue, which starts steps by priority, FIFO within a priority.

use crate::action::{Action, ActionContext, ActionError, ActionRegistry};
use crate::cache::{CacheKey, ResultCache, cache_key};
use crate::event::Event;
use crate::resolve::{Scope, evaluate, resolve_parameters};
use chrono::{DateTime, Utc};
use orch_model::CompactString;
use orch_model::store::{StoredEvent, TaskRecord};
use orch_model::{
    AllocationId, DiagnosticKind, Diagnostics, ExecutionMode, Finished, NewRun, NewTask,
    OrchestrationError, Pos, RetryPolicy, RunId, RunIf, Store, TaskOutcome, TaskPriority,
    TaskResult, TaskStatus, ValidWorkflow, WorkflowStatus,
};
use orch_resources::ResourceManager;
use serde_json::{Map, Value};
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedSender;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// How to run a workflow.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The run's id.
    pub run_id: RunId,
    /// Sequential, parallel or resource-aware.
    pub mode: ExecutionMode,
    /// Most steps running at once in `parallel` mode.
    pub max_parallel: usize,
    /// Parameter values; they override the workflow's declared defaults.
    pub params: Map<String, Value>,
    /// Where actions run.
    pub work_dir: PathBuf,
    /// Limit on the whole run; when it passes, everything running is stopped.
    pub run_timeout: Option<Duration>,
    /// Time between SIGTERM and SIGKILL when a process is stopped.
    pub kill_grace: Duration,
    /// Most bytes of stdout and of stderr kept per process.
    pub output_limit: usize,
    /// Cancels the run: running steps are stopped, nothing new starts.
    pub cancel: CancellationToken,
    /// `${project.path}`, when the run belongs to a project.
    pub project_path: Option<String>,
    /// The resources `resource_aware` mode allocates from (the machine's,
    /// detected, when absent).
    pub resources: Option<Arc<ResourceManager>>,
    /// Where `cache: true` steps look up and store results (no caching when absent).
    pub cache: Option<Arc<dyn ResultCache>>,
    /// Where the run is recorded (none when absent). With a durable store,
    /// every completion is committed before its dependents start, and the
    /// run can be resumed after a crash.
    pub store: Option<Arc<dyn Store>>,
    /// Resume the run `run_id` of `store` from these records of its tasks
    /// (`Store::tasks`): finished steps keep their outcome and do not run
    /// again; steps that were running run once more.
    pub resume: Option<Vec<TaskRecord>>,
    /// The run that started this one through a `workflow.run` step
    /// (recorded as the store run's parent); `None` for a top-level run.
    pub parent: Option<RunId>,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            run_id: RunId::new(),
            mode: ExecutionMode::Parallel,
            max_parallel: 4,
            params: Map::new(),
            work_dir: PathBuf::from("."),
            run_timeout: None,
            kill_grace: Duration::from_secs(2),
            output_limit: 1024 * 1024,
            cancel: CancellationToken::new(),
            project_path: None,
            resources: None,
            cache: None,
            store: None,
            resume: None,
            parent: None,
        }
    }
}

/// What happened to one step.
#[derive(Debug, Clone, PartialEq)]
pub struct StepReport {
    /// The step's name.
    pub name: CompactString,
    /// Its final state.
    pub status: TaskStatus,
    /// Attempts started.
    pub attempts: u32,
    /// When the run created it.
    pub created_at: DateTime<Utc>,
    /// When it became ready.
    pub ready_at: Option<DateTime<Utc>>,
    /// When its last attempt started.
    pub started_at: Option<DateTime<Utc>>,
    /// When it reached its final state.
    pub finished_at: Option<DateTime<Utc>>,
    /// Its outcome (absent for skipped and never-started steps).
    pub result: Option<TaskResult>,
    /// Why it was skipped or cancelled, if it was.
    pub note: Option<String>,
}

/// What happened in a run.
#[derive(Debug, Clone, PartialEq)]
pub struct RunReport {
    /// The run.
    pub run_id: RunId,
    /// The workflow's name.
    pub workflow: String,
    /// Completed, failed or cancelled.
    pub status: WorkflowStatus,
    /// Wall time.
    pub duration: Duration,
    /// Every step, in definition order.
    pub steps: Vec<StepReport>,
    /// Why the run failed as a whole (a run timeout), if it did.
    pub error: Option<String>,
}

impl RunReport {
    /// Whether every step completed or was skipped and none failed.
    pub fn succeeded(&self) -> bool {
        self.status == WorkflowStatus::Completed
    }
}

/// Checks what the registry and the parameters must provide before anything
/// runs, and merges parameter values over the declared defaults.
///
/// # Errors
/// `Validation` with `UnknownModule` problems, or `InvalidParameters` for an
/// undeclared or missing parameter.
pub fn prepare(
    wf: &ValidWorkflow,
    registry: &ActionRegistry,
    overrides: &Map<String, Value>,
) -> Result<Map<String, Value>, OrchestrationError> {
    lookup_actions(wf, registry)?;
    merge_params(wf, overrides)
}

/// The distinct actions of a run: each one's implementation and action
/// name, and for every step the index of its action.
struct ActionTable {
    impls: Vec<Arc<dyn Action>>,
    names: Vec<CompactString>,
    /// Whether each action finishes without waiting (`Action::immediate`).
    immediate: Vec<bool>,
    of: Vec<u32>,
}

/// The distinct actions the workflow's steps run, and for every step the
/// index of its action in that table. Each distinct `module.action` is looked
/// up in the registry once.
fn lookup_actions(
    wf: &ValidWorkflow,
    registry: &ActionRegistry,
) -> Result<ActionTable, OrchestrationError> {
    let w = wf.workflow();
    let mut d = Diagnostics::new(None);
    let mut impls: Vec<Arc<dyn Action>> = Vec::new();
    let mut names: Vec<CompactString> = Vec::new();
    let mut immediate: Vec<bool> = Vec::new();
    let mut of: Vec<u32> = Vec::with_capacity(w.steps.len());
    let mut seen: rustc_hash::FxHashMap<(&str, &str), u32> = rustc_hash::FxHashMap::default();
    // Steps of one action often come in runs: the last lookup is kept aside.
    let mut last: Option<(&str, &str, u32)> = None;
    for (i, s) in w.steps.iter().enumerate() {
        if let Some((m, a, k)) = last {
            if m == s.module && a == s.action {
                of.push(k);
                continue;
            }
        }
        let key = (s.module.as_str(), s.action.as_str());
        if let Some(&k) = seen.get(&key) {
            of.push(k);
            last = Some((key.0, key.1, k));
            continue;
        }
        match registry.get(&s.module, &s.action) {
            Some(imp) => {
                let k = u32::try_from(impls.len()).unwrap_or(u32::MAX);
                immediate.push(imp.immediate().is_some());
                impls.push(imp.clone());
                names.push(s.action.clone());
                seen.insert(key, k);
                of.push(k);
                last = Some((key.0, key.1, k));
            }
            None => {
                let known: Vec<String> = registry.names().collect();
                d.push(
                    DiagnosticKind::UnknownModule,
                    format!("steps[{i}]"),
                    Pos::UNKNOWN,
                    format!(
                        "step `{}` uses `{}.{}`, which no module provides; registered actions: {}",
                        s.name,
                        s.module,
                        s.action,
                        known.join(", ")
                    ),
                );
            }
        }
    }
    if d.is_empty() {
        Ok(ActionTable {
            impls,
            names,
            immediate,
            of,
        })
    } else {
        Err(OrchestrationError::Validation(d))
    }
}

/// Parameter values over the declared defaults; every parameter needs a value.
fn merge_params(
    wf: &ValidWorkflow,
    overrides: &Map<String, Value>,
) -> Result<Map<String, Value>, OrchestrationError> {
    let w = wf.workflow();
    let mut params = w.parameters.clone();
    for (k, v) in overrides {
        if !params.contains_key(k) {
            let declared: Vec<&str> = w.parameters.keys().map(String::as_str).collect();
            return Err(OrchestrationError::invalid_parameters(format!(
                "workflow `{}` has no parameter `{k}`; declared: {}",
                w.name,
                if declared.is_empty() {
                    "none".to_owned()
                } else {
                    declared.join(", ")
                }
            )));
        }
        params.insert(k.clone(), v.clone());
    }
    if let Some((k, _)) = params.iter().find(|(_, v)| v.is_null()) {
        return Err(OrchestrationError::invalid_parameters(format!(
            "parameter `{k}` of workflow `{}` has no default and needs a value (-p {k}=VALUE)",
            w.name
        )));
    }
    Ok(params)
}

/// What one step's attempts came to.
pub(crate) struct Outcome {
    pub(crate) task: u32,
    pub(crate) status: TaskStatus,
    pub(crate) attempts: u32,
    pub(crate) started_at: Option<DateTime<Utc>>,
    pub(crate) finished_at: DateTime<Utc>,
    pub(crate) result: TaskResult,
}

/// The store side of a journaled run: outcomes waiting to be committed, and
/// the completions whose dependents wait for that commit.
struct Journal {
    store: Arc<dyn Store>,
    run_id: RunId,
    /// Final states to commit, in order.
    finished: Vec<Finished>,
    /// Steps whose dependents are released once `finished` is committed.
    deferred: Vec<(u32, DateTime<Utc>, bool)>,
    /// The store's attempt number of each step's current attempt.
    attempts: Vec<u32>,
    /// Attempts made before this process took the run over (resume).
    prior: Vec<u32>,
    /// Events to append with the next commit.
    events: Vec<StoredEvent>,
    /// When the store was last asked whether someone wants the run cancelled.
    last_poll: Instant,
}

/// Commits what the journal holds (the steps `started` in this turn, which
/// are recorded as started first, and every final state), then releases the
/// dependents of the committed steps; repeats while releasing produces more
/// final states (skips). Every completion is committed before its
/// dependents start.
async fn flush(
    st: &mut State<'_>,
    dependents: &orch_model::graph::DepGraph,
    started: &[u32],
) -> Result<(), OrchestrationError> {
    let mut started = started;
    loop {
        let Some(j) = st.journal.as_mut() else {
            return Ok(());
        };
        if started.is_empty()
            && j.finished.is_empty()
            && j.deferred.is_empty()
            && j.events.is_empty()
        {
            return Ok(());
        }
        let now = Utc::now();
        let starting = std::mem::take(&mut started);
        if !starting.is_empty() {
            // The store gives a started task its next attempt number: the
            // one after the attempt it holds (checked below).
            let mut list = Vec::with_capacity(starting.len());
            for &i in starting {
                let a = &mut j.attempts[i as usize];
                *a += 1;
                list.push(serde_json::json!([i, *a]));
            }
            // One event per turn: which steps started, with their attempt numbers.
            j.events.push(StoredEvent {
                seq: 0,
                at: now,
                kind: "tasks_started".into(),
                task: (starting.len() == 1).then(|| starting[0]),
                data: serde_json::json!({ "tasks": list }),
            });
        }
        let mut done = std::mem::take(&mut j.finished);
        for f in &mut done {
            if f.attempt == STARTED {
                f.attempt = j.attempts[f.index as usize];
            }
        }
        let deferred = std::mem::take(&mut j.deferred);
        let mut events = std::mem::take(&mut j.events);
        if !done.is_empty() {
            // One event per commit: which steps ended how.
            let ended: Vec<Value> = done
                .iter()
                .map(|f| serde_json::json!([f.index, f.outcome.status().as_str(), f.attempt]))
                .collect();
            events.push(StoredEvent {
                seq: 0,
                at: now,
                kind: "tasks_finished".into(),
                task: (done.len() == 1).then(|| done[0].index),
                data: serde_json::json!({"tasks": ended}),
            });
        }
        let (store, run) = (j.store.clone(), j.run_id);
        if starting.is_empty() {
            // One request: a durable store commits the finish and its events together.
            store.finish_and_append(run, done, events, now).await?;
        } else if done.len() + starting.len() <= PIPELINE {
            // A small turn (a chain's): the start and the finish are sent
            // together, and a store that commits in groups commits them
            // once. A store that ran the finish first rejected it and
            // changed nothing (each request is one transaction): it is sent
            // again once the start is in.
            let retry = (done.clone(), events.clone());
            let (begun, ended) = tokio::join!(
                store.start_tasks(run, starting, "local", LEASE, now),
                store.finish_and_append(run, done, events, now)
            );
            let given = begun?;
            let same = fix_attempts(st, starting, &given);
            if ended.is_err() || !same {
                let (mut done, events) = retry;
                if let Some(j) = st.journal.as_ref() {
                    for f in &mut done {
                        if f.attempt != 0 {
                            f.attempt = j.attempts[f.index as usize];
                        }
                    }
                }
                store.finish_and_append(run, done, events, now).await?;
            }
        } else {
            let given = store
                .start_tasks(run, starting, "local", LEASE, now)
                .await?;
            if !fix_attempts(st, starting, &given) {
                if let Some(j) = st.journal.as_ref() {
                    for f in &mut done {
                        if f.attempt != 0 {
                            f.attempt = j.attempts[f.index as usize];
                        }
                    }
                }
            }
            store.finish_and_append(run, done, events, now).await?;
        }
        for (i, at, cancelled) in deferred {
            st.finish(i, dependents, cancelled, at);
        }
    }
}

/// Records the attempt numbers the store gave `started`; false when one
/// differs from the number expected.
fn fix_attempts(st: &mut State<'_>, started: &[u32], given: &[u32]) -> bool {
    let Some(j) = st.journal.as_mut() else {
        return true;
    };
    let mut same = given.len() == started.len();
    for (&i, &a) in started.iter().zip(given) {
        let mine = &mut j.attempts[i as usize];
        if *mine != a {
            *mine = a;
            same = false;
        }
    }
    same
}

/// Most starts and finishes of a turn sent to the store together (see `flush`).
const PIPELINE: usize = 256;

/// The lease a local start takes (the run's owner, not the lease, says
/// whether it is still driven).
const LEASE: Duration = Duration::from_secs(3600);

/// What the scheduler reads of a step each time it releases or starts it,
/// packed into 3 bytes: a plain step's definition (248 bytes, in a million-
/// step run far out of the cache) is then not touched during the run.
#[derive(Debug, Clone, Copy)]
struct Hot {
    priority: TaskPriority,
    run_if: RunIf,
    flags: u8,
}

impl Hot {
    /// The step has a `when` condition.
    const WHEN: u8 = 1;
    /// The step has parameters (to resolve on release).
    const PARAMS: u8 = 2;
    /// `cache: true`.
    const CACHE: u8 = 4;
    /// No timeout and no retries: the default attempt policy.
    const PLAIN: u8 = 8;

    fn of(s: &orch_model::WorkflowStep) -> Self {
        let mut flags = 0;
        if s.conditions.when.is_some() {
            flags |= Self::WHEN;
        }
        if !s.parameters.is_empty() {
            flags |= Self::PARAMS;
        }
        if s.cache {
            flags |= Self::CACHE;
        }
        if s.timeout.is_none() && s.max_retries == 0 {
            flags |= Self::PLAIN;
        }
        Self {
            priority: s.priority,
            run_if: s.conditions.run_if,
            flags,
        }
    }

    fn is(self, flag: u8) -> bool {
        self.flags & flag != 0
    }
}

/// Ready steps: one FIFO per priority, highest priority first. Push and pop
/// are O(1), and the order is exactly "by priority, then by release order".
#[derive(Default)]
struct ReadyQueue {
    queues: [std::collections::VecDeque<u32>; TaskPriority::ALL.len()],
}

impl ReadyQueue {
    fn slot(p: TaskPriority) -> usize {
        p as usize - TaskPriority::Low as usize
    }

    fn push(&mut self, p: TaskPriority, i: u32) {
        self.queues[Self::slot(p)].push_back(i);
    }

    fn pop(&mut self) -> Option<u32> {
        self.queues.iter_mut().rev().find_map(|q| q.pop_front())
    }

    /// Returns steps taken by `pop` (in the order popped) to the front of their queues.
    fn put_back(&mut self, popped: &[u32], hot: &[Hot]) {
        for &i in popped.iter().rev() {
            self.queues[Self::slot(hot[i as usize].priority)].push_front(i);
        }
    }

    fn is_empty(&self) -> bool {
        self.queues.iter().all(std::collections::VecDeque::is_empty)
    }
}

struct State<'w> {
    wf: &'w ValidWorkflow,
    run_id: RunId,
    project_path: Option<String>,
    params: Map<String, Value>,
    /// Step names to indices, built on the first reference that needs it.
    index: std::cell::OnceCell<rustc_hash::FxHashMap<&'w str, u32>>,
    /// The distinct actions of the run, and which one each step runs.
    actions: ActionTable,
    /// What releasing and starting a step read of its definition, packed.
    hot: Vec<Hot>,
    /// The context immediate actions run with (`Action::immediate`): made
    /// once per run, its step, action and attempt set for each step.
    ctx: ActionContext,
    work_dir: Arc<std::path::Path>,
    status: Vec<TaskStatus>,
    reports: Vec<StepReport>,
    remaining: Vec<u32>,
    ready: ReadyQueue,
    /// Resolved parameters of released steps; `None` stands for `{}` (most
    /// steps of large workflows), so a pending step costs 8 bytes here.
    resolved: Vec<Option<Box<Value>>>,
    allocations: Vec<Option<AllocationId>>,
    cache_keys: Vec<Option<CacheKey>>,
    work: Vec<u32>,
    /// Where the run is recorded, when it is (`RunOptions::store`).
    journal: Option<Journal>,
    epoch: (DateTime<Utc>, Instant),
    events: Option<UnboundedSender<Event>>,
}

impl Scope for State<'_> {
    fn param(&self, name: &str) -> Option<&Value> {
        self.params.get(name)
    }
    fn result(&self, step: &str) -> Option<&Value> {
        self.index().get(step).and_then(|&i| self.data(i))
    }
    fn status(&self, step: &str) -> Option<TaskStatus> {
        self.index().get(step).map(|&i| self.status[i as usize])
    }
    fn run_id(&self) -> String {
        self.run_id.to_string()
    }
    fn project_path(&self) -> Option<String> {
        self.project_path.clone()
    }
}

impl State<'_> {
    /// A step's name, for an event (inline up to 24 bytes: a copy, no allocation).
    fn name(&self, i: u32) -> CompactString {
        self.reports[i as usize].name.clone()
    }

    /// Whether step `i` finishes when started, without waiting: a plain
    /// step (no timeout, no retries) of an immediate action.
    fn is_inline(&self, i: u32) -> bool {
        self.hot[i as usize].is(Hot::PLAIN)
            && self.actions.immediate[self.actions.of[i as usize] as usize]
    }

    /// A step's name.
    fn name_str(&self, i: u32) -> &str {
        &self.wf.workflow().steps[i as usize].name
    }

    fn index(&self) -> &rustc_hash::FxHashMap<&str, u32> {
        self.index.get_or_init(|| {
            self.wf
                .workflow()
                .steps
                .iter()
                .enumerate()
                .map(|(i, s)| (s.name.as_str(), i as u32))
                .collect()
        })
    }

    /// The result of a step that succeeded (kept once, in its report).
    fn data(&self, i: u32) -> Option<&Value> {
        let r = &self.reports[i as usize];
        if r.status != TaskStatus::Completed {
            return None;
        }
        r.result.as_ref().filter(|r| r.success).map(|r| &r.data)
    }

    /// Sends an event, building it only when someone listens.
    fn emit(&self, e: impl FnOnce() -> Event) {
        if let Some(tx) = &self.events {
            let _ = tx.send(e());
        }
    }

    fn set_status(&mut self, i: u32, next: TaskStatus) {
        let cur = &mut self.status[i as usize];
        // The table decides; a forbidden move would be a scheduler bug, and
        // keeping the old state is the safe reaction. (The check, not
        // `transition`: no error value is built and dropped per move.)
        if cur.can_transition_to(next) {
            *cur = next;
            self.reports[i as usize].status = next;
        }
    }

    /// Looks step `i` up in the cache; on a hit, completes it with the cached
    /// result (marked `cached`) and returns true. On a miss, remembers the key
    /// so that a success is stored.
    fn serve_from_cache(&mut self, i: u32, cache: &dyn ResultCache) -> bool {
        let step = &self.wf.workflow().steps[i as usize];
        let empty = Value::Object(Map::new());
        let params = self.resolved[i as usize].as_deref().unwrap_or(&empty);
        let upstream: Vec<&Value> = self
            .wf
            .graph()
            .deps(i)
            .iter()
            .map(|&d| self.data(d).unwrap_or(&Value::Null))
            .collect();
        let key = cache_key(&step.module, &step.action, params, &upstream);
        match cache.get(&key) {
            Some(data) => {
                let now = Utc::now();
                self.set_status(i, TaskStatus::Completed);
                let r = &mut self.reports[i as usize];
                r.finished_at = Some(now);
                r.note = Some(format!(
                    "cached result {}",
                    key.to_string().get(..12).unwrap_or_default()
                ));
                let result = TaskResult {
                    success: true,
                    data,
                    cached: true,
                    ..TaskResult::default()
                };
                if let Some(j) = &mut self.journal {
                    j.finished.push(Finished {
                        index: i,
                        attempt: 0,
                        retries: 0,
                        outcome: TaskOutcome::Succeeded {
                            result: result.clone(),
                        },
                    });
                }
                let r = &mut self.reports[i as usize];
                r.result = Some(result);
                self.emit(|| Event::TaskCached {
                    task: i,
                    name: self.name(i),
                });
                true
            }
            None => {
                self.cache_keys[i as usize] = Some(key);
                false
            }
        }
    }

    /// Gives back what step `i` was allocated, if anything.
    fn release_resources(&mut self, i: u32, rm: Option<&ResourceManager>, run_id: RunId) {
        if let (Some(rm), Some(id)) = (
            rm,
            self.allocations.get_mut(i as usize).and_then(Option::take),
        ) {
            rm.deallocate_resources(&format!("{run_id}:{}", self.name_str(i)), Some(&[id]));
        }
    }

    /// Records a step's outcome and releases what waited for it.
    fn complete(
        &mut self,
        out: Outcome,
        dependents: &orch_model::graph::DepGraph,
        cancelled: bool,
        cache: Option<&dyn ResultCache>,
    ) {
        let st = self;
        if let (Some(cache), Some(key), TaskStatus::Completed) = (
            cache,
            st.cache_keys
                .get_mut(out.task as usize)
                .and_then(Option::take),
            out.status,
        ) {
            cache.put(&key, &out.result.data);
        }
        let i = out.task;
        st.set_status(i, out.status);
        match out.status {
            TaskStatus::Completed => {
                st.emit(|| Event::TaskSucceeded {
                    task: i,
                    name: st.name(i),
                    attempts: out.attempts,
                    duration: Duration::from_secs_f64(out.result.execution_time),
                });
            }
            TaskStatus::Cancelled => st.emit(|| Event::TaskCancelled {
                task: i,
                name: st.name(i),
            }),
            _ => st.emit(|| Event::TaskFailed {
                task: i,
                name: st.name(i),
                attempts: out.attempts,
                error_type: out.result.error_type.clone().unwrap_or_default(),
                message: out.result.error_message.clone().unwrap_or_default(),
            }),
        }
        let out_finished = out.finished_at;
        if let Some(j) = &mut st.journal {
            let outcome = match out.status {
                TaskStatus::Completed => TaskOutcome::Succeeded {
                    result: out.result.clone(),
                },
                TaskStatus::Cancelled => TaskOutcome::Cancelled,
                _ => TaskOutcome::Failed {
                    result: out.result.clone(),
                },
            };
            j.finished.push(Finished {
                index: i,
                // Any non-zero value: `flush` writes the attempt the store
                // gave the step's start (recorded later in the same turn
                // for a step that finished inline).
                attempt: STARTED,
                retries: out.attempts.saturating_sub(1),
                outcome,
            });
        }
        let prior = st.journal.as_ref().map_or(0, |j| j.prior[i as usize]);
        let r = &mut st.reports[i as usize];
        r.attempts = prior + out.attempts;
        r.started_at = out.started_at;
        r.finished_at = Some(out.finished_at);
        r.result = Some(out.result);
        st.done(i, dependents, cancelled, out_finished);
    }

    /// Step `i` is final: release its dependents now, or, when the run is
    /// journaled, once its outcome is committed (see `flush`).
    fn done(
        &mut self,
        i: u32,
        dependents: &orch_model::graph::DepGraph,
        cancelled: bool,
        now: DateTime<Utc>,
    ) {
        match &mut self.journal {
            Some(j) => j.deferred.push((i, now, cancelled)),
            None => self.finish(i, dependents, cancelled, now),
        }
    }

    /// A step reached a final state at `now`: release what waited for it
    /// (they became ready at that moment).
    fn finish(
        &mut self,
        first: u32,
        dependents: &orch_model::graph::DepGraph,
        cancelled: bool,
        now: DateTime<Utc>,
    ) {
        // The work list is kept between calls: no allocation per finished step.
        let mut work = std::mem::take(&mut self.work);
        work.push(first);
        while let Some(i) = work.pop() {
            for &j in dependents.deps(i) {
                let r = &mut self.remaining[j as usize];
                *r -= 1;
                if *r == 0 && !cancelled && self.release(j, now) {
                    work.push(j);
                }
            }
        }
        self.work = work;
    }

    /// Decides whether step `j` runs; returns true when it ended at once
    /// (skipped, or failed to resolve) so its dependents must be released too.
    fn release(&mut self, j: u32, now: DateTime<Utc>) -> bool {
        let hot = self.hot[j as usize];
        let deps = self.wf.graph().deps(j);
        let all_ok = deps
            .iter()
            .all(|&d| self.status[d as usize] == TaskStatus::Completed);
        let failed: Vec<&str> = deps
            .iter()
            .filter(|&&d| self.status[d as usize] == TaskStatus::Failed)
            .map(|&d| self.wf.workflow().steps[d as usize].name.as_str())
            .collect();
        let skip = match hot.run_if {
            RunIf::Success if !all_ok => {
                let not_ok: Vec<&str> = deps
                    .iter()
                    .filter(|&&d| self.status[d as usize] != TaskStatus::Completed)
                    .map(|&d| self.wf.workflow().steps[d as usize].name.as_str())
                    .collect();
                Some(format!(
                    "upstream step(s) {} did not succeed",
                    not_ok.join(", ")
                ))
            }
            RunIf::Failure if failed.is_empty() => {
                Some("no upstream step failed (run_if: failure)".to_owned())
            }
            _ => None,
        };
        if let Some(reason) = skip {
            return self.skip(j, reason, now);
        }
        let step = &self.wf.workflow().steps[j as usize];
        // The flag first: a step without one is not read at all.
        let when = if hot.is(Hot::WHEN) {
            step.conditions.when.as_deref()
        } else {
            None
        };
        if let Some(when) = when {
            match evaluate(when, self) {
                Ok(true) => {}
                Ok(false) => {
                    let reason = crate::resolve::skip_reason(when, self);
                    return self.skip(j, reason, now);
                }
                Err(e) => return self.fail_at_release(j, e, now),
            }
        }
        // `None` stands for `{}`: a step without parameters builds no map.
        let resolved = if hot.is(Hot::PARAMS) {
            match resolve_parameters(&step.module, &step.action, &step.parameters, self) {
                Ok(params) => (!params.is_empty()).then(|| Box::new(Value::Object(params))),
                Err(e) => return self.fail_at_release(j, e, now),
            }
        } else {
            None
        };
        self.resolved[j as usize] = resolved;
        self.set_status(j, TaskStatus::Ready);
        self.reports[j as usize].ready_at = Some(now);
        self.ready.push(hot.priority, j);
        self.emit(|| Event::TaskReady {
            task: j,
            name: self.name(j),
        });
        false
    }

    fn skip(&mut self, j: u32, reason: String, now: DateTime<Utc>) -> bool {
        self.set_status(j, TaskStatus::Skipped);
        let r = &mut self.reports[j as usize];
        r.finished_at = Some(now);
        r.note = Some(reason.clone());
        if let Some(jn) = &mut self.journal {
            jn.finished.push(Finished {
                index: j,
                attempt: 0,
                retries: 0,
                outcome: TaskOutcome::Skipped {
                    reason: reason.clone(),
                },
            });
        }
        self.emit(|| Event::TaskSkipped {
            task: j,
            name: self.name(j),
            reason,
        });
        true
    }

    fn fail_at_release(&mut self, j: u32, message: String, now: DateTime<Utc>) -> bool {
        self.set_status(j, TaskStatus::Ready);
        self.set_status(j, TaskStatus::Failed);
        let r = &mut self.reports[j as usize];
        r.ready_at = Some(now);
        r.finished_at = Some(now);
        r.result = Some(TaskResult::failed("ReferenceError", message.clone()));
        if let Some(jn) = &mut self.journal {
            jn.finished.push(Finished {
                index: j,
                attempt: 0,
                retries: 0,
                outcome: TaskOutcome::Failed {
                    result: TaskResult::failed("ReferenceError", message.clone()),
                },
            });
        }
        self.emit(|| Event::TaskFailed {
            task: j,
            name: self.name(j),
            attempts: 0,
            error_type: "ReferenceError".into(),
            message,
        });
        true
    }
}

/// Drives `run` (typically a `run_workflow` future that owns its inputs)
/// as a task of the current tokio runtime, and waits for it. Dropping the
/// returned future aborts the task, as dropping `run` itself would.
///
/// Why: a future polled by `Runtime::block_on` runs on the caller's thread,
/// so every step that finishes on a worker must wake that thread (about
/// 35 µs on a 2-core VM, measured by `scheduler-report`). Driven from a task,
/// the coordinator is woken on the worker that finished the step (tokio's
/// LIFO slot), and dependency-to-dependent latency drops to about 1 µs.
///
/// # Errors
/// `run`'s own error, or `TaskExecution` when the task panicked.
///
/// # Panics
/// Outside a tokio runtime, as `tokio::spawn` does.
pub async fn drive<T, F>(run: F) -> Result<T, OrchestrationError>
where
    T: Send + 'static,
    F: std::future::Future<Output = Result<T, OrchestrationError>> + Send + 'static,
{
    struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);
    impl<T> Drop for AbortOnDrop<T> {
        fn drop(&mut self) {
            self.0.abort();
        }
    }
    let mut task = AbortOnDrop(tokio::spawn(run));
    match (&mut task.0).await {
        Ok(r) => r,
        Err(e) => Err(OrchestrationError::TaskExecution {
            message: format!("the run's task ended abnormally: {e}"),
        }),
    }
}

/// Runs a validated workflow to the end and reports every step.
///
/// # Errors
/// Only for problems found before anything runs: unknown modules, bad
/// parameters, or a mode that is not supported yet. A step that runs and
/// fails is part of the report, not an error.
pub async fn run_workflow(
    wf: &ValidWorkflow,
    registry: &ActionRegistry,
    opts: RunOptions,
    events: Option<UnboundedSender<Event>>,
) -> Result<RunReport, OrchestrationError> {
    let resources = match (opts.mode, &opts.resources) {
        (ExecutionMode::ResourceAware, Some(rm)) => Some(rm.clone()),
        (ExecutionMode::ResourceAware, None) => Some(Arc::new(ResourceManager::detect())),
        _ => None,
    };
    if let Some(rm) = &resources {
        // A request that can never fit is an error now, not a hang later.
        for (i, s) in wf.workflow().steps.iter().enumerate() {
            if let Err(e) = rm.check_request(&s.resources) {
                let mut d = Diagnostics::new(None);
                d.push(
                    DiagnosticKind::Resource,
                    format!("steps[{i}].resources"),
                    Pos::UNKNOWN,
                    format!("step `{}`: {e}", s.name),
                );
                return Err(OrchestrationError::Validation(d));
            }
        }
    }
    let actions = lookup_actions(wf, registry)?;
    let params = merge_params(wf, &opts.params)?;
    if let Some(Err(m)) = opts.run_timeout.map(orch_model::duration::check_timeout) {
        // As a step's: 0 would stop the run before anything ran.
        return Err(OrchestrationError::invalid_parameters(format!(
            "run timeout: {m}"
        )));
    }
    let w = wf.workflow();
    let n = w.steps.len();
    let created = Utc::now();
    let start = Instant::now();
    let dependents = wf.graph().dependents();
    // One pass over the definition: the reports, and what the scheduler
    // reads of each step (so that the run itself leaves the definition alone).
    let mut reports = Vec::with_capacity(n);
    let mut hot = Vec::with_capacity(n);
    for s in &w.steps {
        reports.push(StepReport {
            name: s.name.clone(),
            status: TaskStatus::Pending,
            attempts: 0,
            created_at: created,
            ready_at: None,
            started_at: None,
            finished_at: None,
            result: None,
            note: None,
        });
        hot.push(Hot::of(s));
    }
    let mut st = State {
        wf,
        run_id: opts.run_id,
        project_path: opts.project_path.clone(),
        params,
        index: std::cell::OnceCell::new(),
        actions,
        hot,
        ctx: ActionContext {
            run_id: opts.run_id,
            step: CompactString::default(),
            action: CompactString::default(),
            attempt: 1,
            work_dir: Arc::from(opts.work_dir.as_path()),
            cancel: opts.cancel.clone(),
            kill_grace: opts.kill_grace,
            output_limit: opts.output_limit,
        },
        work_dir: Arc::from(opts.work_dir.as_path()),
        status: vec![TaskStatus::Pending; n],
        reports,
        remaining: (0..n as u32)
            .map(|i| wf.graph().deps(i).len() as u32)
            .collect(),
        ready: ReadyQueue::default(),
        resolved: vec![None; n],
        allocations: if resources.is_some() {
            vec![None; n]
        } else {
            Vec::new()
        },
        cache_keys: if opts.cache.is_some() {
            vec![None; n]
        } else {
            Vec::new()
        },
        work: Vec::new(),
        journal: None,
        epoch: (created, start),
        events,
    };
    if let Some(store) = &opts.store {
        st.journal = Some(open_journal(&mut st, store.clone(), &opts, created).await?);
    }
    st.emit(|| Event::RunStarted {
        run_id: opts.run_id,
        total: n,
    });
    let limit = match opts.mode {
        ExecutionMode::Sequential => 1,
        _ => opts.max_parallel.max(1),
    };
    let cancel = opts.cancel.clone();
    for i in 0..n as u32 {
        if st.remaining[i as usize] == 0
            && st.status[i as usize] == TaskStatus::Pending
            && st.release(i, created)
        {
            st.finish(i, &dependents, false, created);
        }
    }
    let deadline = opts.run_timeout.map(|t| tokio::time::Instant::now() + t);
    let mut timed_out = false;
    let mut set: JoinSet<Outcome> = JoinSet::new();
    // Journaled: the steps started in this turn, recorded in one commit.
    let mut started: Vec<u32> = Vec::new();
    let sequential = opts.mode == ExecutionMode::Sequential;
    loop {
        if st.journal.is_some() {
            if let Err(e) = journal_turn(&mut st, &dependents, &cancel).await {
                return Err(abandon(&cancel, &mut set, e).await);
            }
        }
        let stopping = cancel.is_cancelled();
        let mut blocked = Vec::new();
        // Checked before every step that follows a spawned one, and every 64
        // steps during a run of inline completions (reading the token takes a
        // lock): nothing is spawned after a cancellation has been seen.
        let mut since_check = 0u32;
        // Steps taken in this turn; a journaled turn ends in one commit.
        let mut taken = 0usize;
        while taken < TURN {
            if since_check == 0 {
                if cancel.is_cancelled() {
                    break;
                }
                if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
                    timed_out = true;
                    cancel.cancel();
                    break;
                }
            }
            since_check = (since_check + 1) % 64;
            let Some(i) = st.ready.pop() else {
                break;
            };
            if let Some(cache) = opts
                .cache
                .as_deref()
                .filter(|_| st.hot[i as usize].is(Hot::CACHE))
            {
                if st.serve_from_cache(i, cache) {
                    let now = st.reports[i as usize].finished_at.unwrap_or(created);
                    st.done(i, &dependents, cancel.is_cancelled(), now);
                    continue;
                }
            }
            // `max_parallel` bounds the steps that wait (spawned); a step that
            // finishes at once (an immediate action of a plain step) is never
            // running beside another, so it needs no slot, except in
            // sequential mode, where nothing starts beside a running step.
            let needs_slot = sequential || !st.is_inline(i);
            if needs_slot && set.len() >= limit {
                st.ready.put_back(&[i], &st.hot);
                break;
            }
            if let Some(rm) = &resources {
                let req = &wf.workflow().steps[i as usize].resources;
                if !req.is_empty() {
                    match rm.try_allocate(&format!("{}:{}", opts.run_id, st.name_str(i)), req) {
                        Ok(Some(a)) => st.allocations[i as usize] = Some(a.id),
                        // Does not fit now: let smaller ready steps go first, retry after a release.
                        Ok(None) | Err(_) => {
                            blocked.push(i);
                            continue;
                        }
                    }
                }
            }
            taken += 1;
            if st.journal.is_some() {
                // Recorded as started with the rest of the turn, below.
                started.push(i);
            }
            if let Some(out) = start_step(&mut st, i, &opts, &mut set) {
                st.release_resources(i, resources.as_deref(), opts.run_id);
                // Not cancelled as of the last check: cancellation cannot be
                // observed between starting and completing an inline step.
                let cancelled = out.status == TaskStatus::Cancelled;
                st.complete(out, &dependents, cancelled, opts.cache.as_deref());
            } else {
                since_check = 0;
            }
        }
        let all_blocked = !blocked.is_empty();
        st.ready.put_back(&blocked, &st.hot);
        if !started.is_empty() {
            // One turn, two requests: the steps it started, then what of them
            // (and of earlier ones) finished, after which their dependents
            // are released. A crash before the commit re-runs the turn's
            // steps: none of them counts as done until it is committed.
            let flushed = flush(&mut st, &dependents, &started).await;
            started.clear();
            if let Err(e) = flushed {
                return Err(abandon(&cancel, &mut set, e).await);
            }
            continue;
        }
        if taken == TURN {
            // The turn ended at its bound, not for want of work.
            continue;
        }
        if st
            .journal
            .as_ref()
            .is_some_and(|j| !j.deferred.is_empty() || !j.finished.is_empty())
        {
            continue;
        }
        if set.is_empty() && (stopping || st.ready.is_empty()) {
            break;
        }
        if set.is_empty() && all_blocked {
            // Everything ready waits for capacity held outside this run: look again shortly.
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(50)) => {}
                () = cancel.cancelled(), if !stopping => {}
            }
            continue;
        }
        tokio::select! {
            joined = set.join_next() => {
                let Some(joined) = joined else { continue };
                let out = match joined {
                    Ok(out) => out,
                    Err(e) => {
                        // Panics inside actions are caught per attempt (`CatchPanic`); a
                        // failure here is the runtime's own, and the run cannot go on.
                        return Err(OrchestrationError::TaskExecution { message: format!("a step's task failed: {e}") });
                    }
                };
                st.release_resources(out.task, resources.as_deref(), opts.run_id);
                st.complete(out, &dependents, cancel.is_cancelled(), opts.cache.as_deref());
                // Collect every other step that finished meanwhile: one commit for all.
                while let Some(Ok(out)) = set.try_join_next() {
                    st.release_resources(out.task, resources.as_deref(), opts.run_id);
                    st.complete(out, &dependents, cancel.is_cancelled(), opts.cache.as_deref());
                }
            }
            () = tokio::time::sleep(CANCEL_POLL), if st.journal.is_some() => {}
            () = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            }, if !timed_out && deadline.is_some() => {
                timed_out = true;
                cancel.cancel();
            }
            () = cancel.cancelled(), if !stopping => {}
        }
    }
    // Whatever never started was cancelled (or could not run).
    let now = Utc::now();
    for i in 0..n as u32 {
        if !st.status[i as usize].is_terminal() {
            st.set_status(i, TaskStatus::Cancelled);
            st.reports[i as usize].finished_at = Some(now);
            if let Some(j) = &mut st.journal {
                j.finished.push(Finished {
                    index: i,
                    attempt: 0,
                    retries: 0,
                    outcome: TaskOutcome::Cancelled,
                });
            }
            let name = st.name(i);
            st.emit(|| Event::TaskCancelled { task: i, name });
        }
    }
    let any_failed = st.status.contains(&TaskStatus::Failed);
    let any_cancelled = st.status.contains(&TaskStatus::Cancelled);
    let status = if timed_out || any_failed {
        WorkflowStatus::Failed
    } else if any_cancelled {
        WorkflowStatus::Cancelled
    } else {
        WorkflowStatus::Completed
    };
    if let Some(j) = &mut st.journal {
        // Nothing is deferred any more: every step is final.
        j.deferred.clear();
        let store = j.store.clone();
        flush(&mut st, &dependents, &[]).await?;
        store.finish_run(opts.run_id, status, Utc::now()).await?;
    }
    let duration = start.elapsed();
    st.emit(|| Event::RunFinished {
        run_id: opts.run_id,
        status,
        duration,
    });
    let error = timed_out.then(|| {
        format!(
            "the run exceeded its timeout of {:?}",
            opts.run_timeout.unwrap_or_default()
        )
    });
    Ok(RunReport {
        run_id: opts.run_id,
        workflow: w.name.clone(),
        status,
        duration,
        steps: st.reports,
        error,
    })
}

/// How often a journaled run asks its store whether someone wants it cancelled.
const CANCEL_POLL: Duration = Duration::from_millis(250);

/// `Finished::attempt` of a step that started: replaced by its attempt
/// number when the journal is committed.
const STARTED: u32 = u32::MAX;

/// Most steps started in one turn of the coordinator: a journaled run
/// commits each turn's starts and finishes together.
const TURN: usize = 65_536;

/// A name for this process that says whether it still runs: `PID:START@HOST`
/// (START is the process's start time in clock ticks since boot, so a reused
/// PID does not pass for the original).
pub fn process_identity() -> String {
    let pid = std::process::id();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default();
    format!("{pid}:{}@{host}", process_start(pid).unwrap_or(0))
}

fn process_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Field 22, counted after the parenthesized command name (which may hold spaces).
    let after = &stat[stat.rfind(')')? + 2..];
    after.split_whitespace().nth(19)?.parse().ok()
}

/// Whether the process an owner string names still runs (on this host; an
/// owner on another host is assumed alive).
pub fn owner_alive(owner: &str) -> bool {
    let Some((id, host)) = owner.split_once('@') else {
        return false;
    };
    let here = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default();
    if host != here {
        return true;
    }
    let Some((pid, start)) = id.split_once(':') else {
        return false;
    };
    match (pid.parse::<u32>(), start.parse::<u64>()) {
        (Ok(pid), Ok(start)) => process_start(pid) == Some(start),
        _ => false,
    }
}

/// Records a new run in the store (or takes over a run being resumed) and
/// returns its journal. For a resumed run, the steps' recorded outcomes are
/// applied to `st` first.
async fn open_journal(
    st: &mut State<'_>,
    store: Arc<dyn Store>,
    opts: &RunOptions,
    now: DateTime<Utc>,
) -> Result<Journal, OrchestrationError> {
    let wf = st.wf;
    let n = wf.workflow().steps.len();
    let mut prior = vec![0u32; n];
    match &opts.resume {
        None => {
            let tasks = wf
                .workflow()
                .steps
                .iter()
                .enumerate()
                .map(|(i, s)| NewTask {
                    name: s.name.to_string(),
                    deps: wf.graph().deps(i as u32).to_vec(),
                    priority: s.priority,
                })
                .collect();
            /// What a resumed run needs, written straight to JSON text.
            #[derive(serde::Serialize)]
            struct Saved<'a> {
                workflow: &'a orch_model::Workflow,
                work_dir: &'a std::path::Path,
                project_path: Option<&'a str>,
            }
            let definition = serde_json::to_string(&Saved {
                workflow: wf.workflow(),
                work_dir: &opts.work_dir,
                project_path: opts.project_path.as_deref(),
            })
            .map_err(|e| OrchestrationError::Store {
                message: format!("the definition does not serialize: {e}"),
                retryable: false,
            })?;
            store
                .create_run(
                    NewRun {
                        id: opts.run_id,
                        workflow: wf.workflow().name.clone(),
                        definition,
                        params: st.params.clone(),
                        tasks,
                        parent: opts.parent,
                    },
                    now,
                )
                .await?;
        }
        Some(records) => {
            if records.len() != n {
                return Err(OrchestrationError::InvalidState {
                    message: format!(
                        "run {} has {} tasks in the store but its workflow has {n} steps",
                        opts.run_id,
                        records.len()
                    ),
                });
            }
            store.requeue_running(opts.run_id).await?;
            for r in records {
                let i = r.index as usize;
                prior[i] = r.attempt;
                if r.status.is_terminal() {
                    st.status[i] = r.status;
                    let rep = &mut st.reports[i];
                    rep.status = r.status;
                    rep.attempts = r.attempt;
                    rep.started_at = r.started_at;
                    rep.finished_at = r.finished_at;
                    rep.result.clone_from(&r.result);
                    rep.note.clone_from(&r.note);
                }
            }
            // Dependencies that already ended no longer hold anything back.
            for i in 0..n {
                st.remaining[i] = wf
                    .graph()
                    .deps(i as u32)
                    .iter()
                    .filter(|&&d| !st.status[d as usize].is_terminal())
                    .count() as u32;
            }
        }
    }
    store
        .set_owner(opts.run_id, Some(process_identity()))
        .await?;
    Ok(Journal {
        store,
        run_id: opts.run_id,
        finished: Vec::new(),
        deferred: Vec::new(),
        attempts: prior.clone(),
        prior,
        events: Vec::new(),
        last_poll: Instant::now(),
    })
}

/// Between turns of a journaled run: commit what completed, and ask the
/// store (at most every `CANCEL_POLL`) whether someone cancelled the run.
async fn journal_turn(
    st: &mut State<'_>,
    dependents: &orch_model::graph::DepGraph,
    cancel: &CancellationToken,
) -> Result<(), OrchestrationError> {
    flush(st, dependents, &[]).await?;
    let Some(j) = st.journal.as_mut() else {
        return Ok(());
    };
    if j.last_poll.elapsed() >= CANCEL_POLL && !cancel.is_cancelled() {
        j.last_poll = Instant::now();
        if j.store.cancel_requested(j.run_id).await? {
            cancel.cancel();
        }
    }
    Ok(())
}

/// The store failed mid-run: stop every running step (their processes are
/// killed) and give the error back. The run stays `running` in the store and
/// can be resumed.
async fn abandon(
    cancel: &CancellationToken,
    set: &mut JoinSet<Outcome>,
    e: OrchestrationError,
) -> OrchestrationError {
    cancel.cancel();
    while set.join_next().await.is_some() {}
    e
}

/// Starts step `i`. An action that finishes without waiting (an in-process
/// action such as `core.set`) completes right here and its outcome is
/// returned; one that waits is spawned onto the runtime.
fn start_step(
    st: &mut State<'_>,
    i: u32,
    opts: &RunOptions,
    set: &mut JoinSet<Outcome>,
) -> Option<Outcome> {
    let params = st.resolved[i as usize]
        .take()
        .map_or_else(|| Value::Object(Map::new()), |b| *b);
    st.set_status(i, TaskStatus::Running);
    let k = st.actions.of[i as usize] as usize;
    if st.is_inline(i) {
        return Some(run_immediate(st, i, k, params));
    }
    let action = st.actions.impls[k].clone();
    let name = st.name(i);
    // A plain step (no timeout, no retries) needs nothing more of its definition.
    let (timeout, max_retries, retry) = if st.hot[i as usize].is(Hot::PLAIN) {
        (None, 0, RetryPolicy::default())
    } else {
        let step = &st.wf.workflow().steps[i as usize];
        (step.timeout, step.max_retries, step.retry.clone())
    };
    let job = Job {
        task: i,
        action,
        params,
        timeout,
        max_retries,
        retry,
        ctx: ActionContext {
            run_id: opts.run_id,
            step: name,
            action: st.actions.names[k].clone(),
            attempt: 1,
            work_dir: st.work_dir.clone(),
            cancel: opts.cancel.clone(),
            kill_grace: opts.kill_grace,
            output_limit: opts.output_limit,
        },
        events: st.events.clone(),
        epoch: st.epoch,
    };
    let mut fut = Box::pin(job.run());
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match fut.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(out) => Some(out),
        std::task::Poll::Pending => {
            // Polled again on the runtime with a real waker; futures re-register on every poll.
            set.spawn(fut);
            None
        }
    }
}

/// Runs step `i`'s single attempt with its immediate action (`Action::immediate`;
/// a plain step: no timeout, no retries) on the coordinator, as `Job::run`
/// would: the same events, times, result and panic handling.
fn run_immediate(st: &mut State<'_>, i: u32, k: usize, params: Value) -> Outcome {
    let name = st.name(i);
    let ctx = &mut st.ctx;
    ctx.step.clone_from(&name);
    ctx.action.clone_from(&st.actions.names[k]);
    ctx.attempt = 1;
    if let Some(tx) = &st.events {
        let _ = tx.send(Event::TaskStarted {
            task: i,
            name,
            attempt: 1,
        });
    }
    let t0 = Instant::now();
    let started_at = wall_clock(st.epoch, t0);
    let r = match st.actions.impls[k].immediate() {
        Some(a) => {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| a.run_now(params, &st.ctx)))
                .unwrap_or_else(|payload| Err(panic_error(payload.as_ref())))
        }
        None => Err(ActionError::permanent(
            "InternalError",
            "the action stopped offering to run at once",
        )),
    };
    let took = t0.elapsed();
    let finished_at = later(started_at, took);
    let status = match &r {
        Ok(_) => TaskStatus::Completed,
        Err(_) if st.ctx.cancel.is_cancelled() => TaskStatus::Cancelled,
        Err(_) => TaskStatus::Failed,
    };
    Outcome {
        task: i,
        status,
        attempts: 1,
        started_at: Some(started_at),
        finished_at,
        result: attempt_result(r, took.as_secs_f64()),
    }
}

/// Where monotonic instant `at` falls on the wall clock, given the same moment
/// on both (`epoch`): attempt times are read once, monotonically.
fn wall_clock(epoch: (DateTime<Utc>, Instant), at: Instant) -> DateTime<Utc> {
    later(epoch.0, at.duration_since(epoch.1))
}

/// `t` plus a monotonic duration (the end of an attempt is its start plus the
/// time it took: no second wall-clock read).
fn later(t: DateTime<Utc>, took: Duration) -> DateTime<Utc> {
    t + chrono::Duration::from_std(took).unwrap_or_default()
}

/// The result of an attempt that took `elapsed` seconds.
fn attempt_result(r: Result<Value, ActionError>, elapsed: f64) -> TaskResult {
    match r {
        Ok(data) => TaskResult {
            success: true,
            data,
            execution_time: elapsed,
            ..TaskResult::default()
        },
        Err(e) => TaskResult {
            success: false,
            data: e.data.map_or(Value::Null, |d| *d),
            error_message: Some(e.message),
            error_type: Some(e.error_type),
            execution_time: elapsed,
            ..TaskResult::default()
        },
    }
}

/// A panic inside an action as a failed attempt (`ActionPanic`, not retried).
fn panic_error(payload: &(dyn std::any::Any + Send)) -> ActionError {
    let msg = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_owned());
    ActionError::permanent("ActionPanic", format!("the action panicked: {msg}"))
}

/// Turns a panic inside an action into a failed attempt (`ActionPanic`, not
/// retried), so that one broken action cannot take the run down with it.
struct CatchPanic<F>(F);

impl<F: Future<Output = Result<Value, ActionError>> + Unpin> Future for CatchPanic<F> {
    type Output = Result<Value, ActionError>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let inner = &mut self.0;
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            std::pin::Pin::new(inner).poll(cx)
        })) {
            Ok(p) => p,
            Err(payload) => std::task::Poll::Ready(Err(panic_error(payload.as_ref()))),
        }
    }
}

/// One step's attempts: timeouts, retries with backoff, cancellation. Shared
/// by the workflow scheduler and the `TaskOrchestrator`.
pub(crate) struct Job {
    pub(crate) task: u32,
    pub(crate) action: Arc<dyn Action>,
    pub(crate) params: Value,
    pub(crate) timeout: Option<Duration>,
    pub(crate) max_retries: u32,
    pub(crate) retry: RetryPolicy,
    /// The step's name is `ctx.step`; `ctx.cancel` is the run's token.
    pub(crate) ctx: ActionContext,
    pub(crate) events: Option<UnboundedSender<Event>>,
    /// The same moment on the wall clock and the monotonic clock: attempt
    /// times are read once, monotonically, and placed on the wall clock from it.
    pub(crate) epoch: (DateTime<Utc>, Instant),
}

impl Job {
    /// Sends an event, building it only when someone listens.
    fn emit(&self, e: impl FnOnce() -> Event) {
        if let Some(tx) = &self.events {
            let _ = tx.send(e());
        }
    }

    async fn attempt(&self, params: Value) -> Result<Value, ActionError> {
        let fut = CatchPanic(self.action.run(params, &self.ctx));
        let Some(limit) = self.timeout else {
            return fut.await;
        };
        // Boxed so that steps without a timeout (most) carry a small future.
        Box::pin(async move {
            tokio::pin!(fut);
            tokio::select! {
                r = &mut fut => r,
                () = tokio::time::sleep(limit) => {
                    // Ask the action to stop (it kills its processes), and wait for it to do so.
                    self.ctx.cancel.cancel();
                    let _ = fut.await;
                    Err(ActionError::retryable("TimeoutError", format!("the step took longer than its timeout of {}", orch_model::duration::format_duration(limit))))
                }
            }
        })
        .await
    }

    pub(crate) async fn run(mut self) -> Outcome {
        // A step with a timeout gets a token of its own per attempt, so that
        // stopping one attempt does not cancel the run; others use the run's.
        // The run's token is kept aside only then; otherwise it stays in the
        // context (one clone less per step: each clone of a token takes a lock).
        let run_cancel = self.timeout.map(|_| self.ctx.cancel.clone());
        let mut rng = self.ctx.run_id.0.as_u128() as u64
            ^ (u64::from(self.task) << 32)
            ^ 0x9E37_79B9_7F4A_7C15;
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            self.ctx.attempt = attempt;
            if let Some(run) = &run_cancel {
                self.ctx.cancel = run.child_token();
            }
            let t0 = Instant::now();
            let started_at = wall_clock(self.epoch, t0);
            self.emit(|| Event::TaskStarted {
                task: self.task,
                name: self.ctx.step.clone(),
                attempt,
            });
            // The last attempt allowed takes the parameters; earlier ones get a copy.
            let params = if attempt > self.max_retries {
                std::mem::take(&mut self.params)
            } else {
                self.params.clone()
            };
            let r = self.attempt(params).await;
            let took = t0.elapsed();
            let elapsed = took.as_secs_f64();
            let finished_at = later(started_at, took);
            match r {
                Ok(data) => {
                    return Outcome {
                        task: self.task,
                        status: TaskStatus::Completed,
                        attempts: attempt,
                        started_at: Some(started_at),
                        finished_at,
                        result: attempt_result(Ok(data), elapsed),
                    };
                }
                Err(e) => {
                    let run = run_cancel.as_ref().unwrap_or(&self.ctx.cancel).clone();
                    let status = if run.is_cancelled() {
                        Some(TaskStatus::Cancelled)
                    } else if !e.retryable || attempt > self.max_retries {
                        Some(TaskStatus::Failed)
                    } else {
                        let mut delay = self.retry.delay(attempt);
                        if self.retry.jitter {
                            // "Equal jitter": between half and all of the delay.
                            rng ^= rng << 13;
                            rng ^= rng >> 7;
                            rng ^= rng << 17;
                            let frac = 0.5 + (rng % 1000) as f64 / 2000.0;
                            delay = delay.mul_f64(frac);
                        }
                        self.emit(|| Event::TaskRetrying {
                            task: self.task,
                            name: self.ctx.step.clone(),
                            attempt,
                            delay,
                            message: e.to_string(),
                        });
                        // Boxed: only retried steps carry the timer in their future.
                        let cancelled = Box::pin(async {
                            tokio::select! {
                                () = tokio::time::sleep(delay) => false,
                                () = run.cancelled() => true,
                            }
                        })
                        .await;
                        cancelled.then_some(TaskStatus::Cancelled)
                    };
                    if let Some(status) = status {
                        return Outcome {
                            task: self.task,
                            status,
                            attempts: attempt,
                            started_at: Some(started_at),
                            finished_at,
                            result: attempt_result(Err(e), elapsed),
                        };
                    }
                }
            }
        }
    }
}
