//! `TaskOrchestrator`: the seed's task API over the same attempt logic as the workflow scheduler.
//!
//! Tasks are added one by one (before or after `start_execution`), each with
//! dependencies on tasks added earlier, so the graph can never have a cycle.
//! A background driver starts ready tasks by priority within the mode's
//! limits; `${NAME.result}` references in parameters are resolved from
//! finished tasks when a task is released.

mod options;

pub use options::{ExecutionStats, OrchestratorConfig, TaskOptions};

use crate::action::ActionContext;
use crate::executor::{Attempt, AttemptPolicy, Executor, Outcome, OutcomeSink};
use crate::release::{Gate, ReadyQueue, Release, decide, slot_limit};
use crate::resolve::{Scope, resolve_parameters};
use chrono::Utc;
use orch_model::definition::{NameKind, check_name};
use orch_model::duration::check_timeout;
use orch_model::reference::check_source_parameters;
use orch_model::{
    AllocationId, CompactString, EntityKind, ExecutionMode, Limits, OrchestrationError, Result,
    RunId, Task, TaskId, TaskResult, TaskStatus,
};
use orch_resources::ResourceManager;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Default)]
struct State {
    tasks: Vec<Task>,
    by_id: HashMap<TaskId, usize>,
    by_name: HashMap<String, usize>,
    tokens: Vec<CancellationToken>,
    allocations: Vec<Option<AllocationId>>,
    running: usize,
    started: bool,
    stopped: bool,
    /// The last release left a ready task that did not fit the resources.
    blocked: bool,
    /// Per task: dependencies that have not ended yet.
    remaining: Vec<u32>,
    /// Per task: the tasks that wait for it (added after it).
    dependents: Vec<Vec<u32>>,
    /// Pending tasks whose dependencies have all ended: released next.
    released: Vec<u32>,
    /// Ready tasks, by priority then release order (as in workflow runs).
    ready: ReadyQueue,
    /// Parameters of ready tasks, resolved when they were released.
    resolved: Vec<Option<Value>>,
}

impl State {
    /// Task `i` reached a final state: the tasks waiting for it may be released.
    fn ended(&mut self, i: usize) {
        for k in std::mem::take(&mut self.dependents[i]) {
            let r = &mut self.remaining[k as usize];
            *r = r.saturating_sub(1);
            if *r == 0 {
                self.released.push(k);
            }
        }
    }

    /// Moves task `i` to a final `status` at `now` (if the move is allowed).
    fn end(&mut self, i: usize, status: TaskStatus, now: chrono::DateTime<Utc>) {
        if self.tasks[i].status.transition(status).is_ok() {
            self.tasks[i].completed_at = Some(now);
            self.ended(i);
        }
    }
}

impl Scope for State {
    fn param(&self, _name: &str) -> Option<&Value> {
        None
    }
    fn result(&self, step: &str) -> Option<&Value> {
        let t = &self.tasks[*self.by_name.get(step)?];
        t.result.as_ref().filter(|r| r.success).map(|r| &r.data)
    }
    fn status(&self, step: &str) -> Option<TaskStatus> {
        self.by_name.get(step).map(|&i| self.tasks[i].status)
    }
    fn run_id(&self) -> String {
        String::new()
    }
    fn project_path(&self) -> Option<String> {
        None
    }
}

#[derive(Debug)]
struct Shared {
    cfg: OrchestratorConfig,
    run_id: RunId,
    state: Mutex<State>,
    /// Wakes the driver: a task was added, finished or cancelled.
    wake: Notify,
    /// Wakes `wait_for_completion`: some task changed state.
    progress: Notify,
    cancel: CancellationToken,
    resources: Option<Arc<ResourceManager>>,
}

/// Creates tasks, runs them by priority within limits, and reports on them
/// (seed: `TaskOrchestrator`).
///
/// ```
/// use orch_tasks::orchestrator::{TaskOptions, TaskOrchestrator};
/// use serde_json::json;
///
/// let rt = tokio::runtime::Runtime::new().unwrap();
/// rt.block_on(async {
///     let o = TaskOrchestrator::default();
///     o.start_execution().unwrap();
///     let a = o.create_task("analyze_code", "core", "set", TaskOptions {
///         parameters: json!({"value": {"score": 8}}).as_object().cloned().unwrap(),
///         ..TaskOptions::default()
///     }).unwrap();
///     let b = o.create_task("create_chart", "core", "noop", TaskOptions {
///         parameters: json!({"data": "${analyze_code.result}"}).as_object().cloned().unwrap(),
///         dependencies: vec![a.id],
///         ..TaskOptions::default()
///     }).unwrap();
///     assert!(o.wait_for_completion(Some(std::time::Duration::from_secs(10))).await);
///     assert_eq!(o.get_task_result(b.id).unwrap().data, json!({"data": {"score": 8}}));
///     assert_eq!(o.get_execution_stats().completed, 2);
/// });
/// ```
#[derive(Debug, Clone)]
pub struct TaskOrchestrator {
    shared: Arc<Shared>,
}

impl Default for TaskOrchestrator {
    fn default() -> Self {
        Self::new(OrchestratorConfig::default())
    }
}

impl TaskOrchestrator {
    /// An orchestrator with this configuration; nothing runs before `start_execution`.
    pub fn new(cfg: OrchestratorConfig) -> Self {
        let resources = match (cfg.mode, &cfg.resources) {
            (ExecutionMode::ResourceAware, Some(r)) => Some(r.clone()),
            (ExecutionMode::ResourceAware, None) => Some(Arc::new(ResourceManager::detect())),
            _ => None,
        };
        Self {
            shared: Arc::new(Shared {
                cfg,
                run_id: RunId::new(),
                state: Mutex::new(State::default()),
                wake: Notify::new(),
                progress: Notify::new(),
                cancel: CancellationToken::new(),
                resources,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.shared
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Creates a task and queues it (seed: `create_task`).
    ///
    /// # Errors
    /// `Validation`-class errors before anything is added: an unknown action
    /// (`MODULE_NOT_FOUND`), an invalid or duplicate name, an unknown
    /// dependency, or a resource request that can never fit.
    pub fn create_task(
        &self,
        name: &str,
        module: &str,
        action: &str,
        opts: TaskOptions,
    ) -> Result<Task> {
        let mut task = Task::new(name, module, action);
        task.parameters = opts.parameters;
        task.dependencies = opts.dependencies;
        task.priority = opts.priority;
        task.timeout = opts.timeout;
        task.max_retries = opts.max_retries;
        task.retry = opts.retry;
        task.resources = opts.resources;
        task.tags = opts.tags;
        task.metadata = opts.metadata;
        self.insert(task)
    }

    /// Adds a prepared task (seed: `add_task`).
    ///
    /// A task without a name of its own (empty, or the seed's default
    /// `module.action`, which is no valid task name because of the dot) is
    /// named `module_action`, or `module_action_N` with the first free N
    /// from 2 up; [`TaskOrchestrator::get_task`] shows the name given.
    ///
    /// # Errors
    /// As [`TaskOrchestrator::create_task`].
    pub fn add_task(&self, task: Task) -> Result<TaskId> {
        self.insert(task).map(|t| t.id)
    }

    /// The name of a task that has none of its own: `module_action`, then
    /// `module_action_2`, `module_action_3`, ...
    fn default_name(st: &State, module: &str, action: &str) -> String {
        let base = format!("{module}_{action}");
        if !st.by_name.contains_key(&base) {
            return base;
        }
        (2u64..)
            .map(|n| format!("{base}_{n}"))
            .find(|n| !st.by_name.contains_key(n))
            .unwrap_or(base)
    }

    /// Adds a task; returns it as stored.
    fn insert(&self, mut task: Task) -> Result<Task> {
        if self.lock().stopped {
            return Err(Self::stopped_error(&task.name));
        }
        if !self
            .shared
            .cfg
            .registry
            .contains(&task.module, &task.action)
        {
            return Err(OrchestrationError::NotFound {
                kind: EntityKind::Module,
                name: format!("{}.{}", task.module, task.action),
                hint: Some(format!(
                    "registered actions: {}",
                    self.shared
                        .cfg
                        .registry
                        .names()
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
            });
        }
        let unnamed =
            task.name.is_empty() || task.name == format!("{}.{}", task.module, task.action);
        if unnamed {
            // Checked with a placeholder: the real name is picked under the lock.
            task.name = format!("{}_{}", task.module, task.action);
        }
        let name_ok = check_name(NameKind::Step, &task.name, &Limits::default());
        if let Err(m) = name_ok {
            return Err(OrchestrationError::invalid_parameters(m));
        }
        // As workflow validation: no `${...}` in a shell.script's source, and
        // a timeout, when given, is positive.
        check_source_parameters(&task.module, &task.action, &task.parameters)
            .map_err(OrchestrationError::invalid_parameters)?;
        if let Some(t) = task.timeout {
            check_timeout(t).map_err(OrchestrationError::invalid_parameters)?;
        }
        if let Some(rm) = &self.shared.resources {
            rm.check_request(&task.resources)?;
        }
        let stored = {
            let mut st = self.lock();
            // Checked again under the lock: `stop_execution` may have come in between.
            if st.stopped {
                return Err(Self::stopped_error(&task.name));
            }
            if unnamed {
                task.name = Self::default_name(&st, &task.module, &task.action);
            }
            if st.by_name.contains_key(&task.name) {
                return Err(OrchestrationError::AlreadyExists {
                    kind: EntityKind::Task,
                    name: task.name,
                    hint: None,
                });
            }
            if let Some(d) = task.dependencies.iter().find(|d| !st.by_id.contains_key(d)) {
                return Err(OrchestrationError::NotFound {
                    kind: EntityKind::Task,
                    name: d.to_string(),
                    hint: Some(
                        "a dependency must be created before the tasks that depend on it".into(),
                    ),
                });
            }
            task.status = TaskStatus::Pending;
            task.created_at = Utc::now();
            let i = st.tasks.len();
            st.by_id.insert(task.id, i);
            st.by_name.insert(task.name.clone(), i);
            st.tokens.push(self.shared.cancel.child_token());
            st.allocations.push(None);
            st.resolved.push(None);
            st.dependents.push(Vec::new());
            let mut waiting = 0;
            for d in &task.dependencies {
                let j = st.by_id[d];
                if !st.tasks[j].status.is_terminal() {
                    st.dependents[j].push(i as u32);
                    waiting += 1;
                }
            }
            st.remaining.push(waiting);
            if waiting == 0 {
                st.released.push(i as u32);
            }
            st.tasks.push(task.clone());
            task
        };
        self.shared.wake.notify_one();
        Ok(stored)
    }

    fn stopped_error(name: &str) -> OrchestrationError {
        OrchestrationError::InvalidState {
            message: format!(
                "task `{name}` was not added: this orchestrator was stopped (stop_execution) and would never run it; create a new TaskOrchestrator for more work"
            ),
        }
    }

    /// Starts the background driver on the current tokio runtime (seed: `start_execution`).
    ///
    /// # Errors
    /// `InvalidState` outside a tokio runtime. Starting twice is harmless.
    pub fn start_execution(&self) -> Result<()> {
        let handle = tokio::runtime::Handle::try_current().map_err(|_| {
            OrchestrationError::InvalidState {
                message: "start_execution needs a tokio runtime; call it from async code".into(),
            }
        })?;
        {
            let mut st = self.lock();
            if st.started {
                return Ok(());
            }
            st.started = true;
        }
        let me = self.clone();
        handle.spawn(async move { me.drive().await });
        Ok(())
    }

    /// Stops starting tasks and cancels the running ones (seed:
    /// `stop_execution`). Tasks that never started end `cancelled` (at once
    /// when the driver never started), and tasks added afterwards are
    /// refused, so `wait_for_completion` always returns.
    pub fn stop_execution(&self) {
        let mut st = self.lock();
        st.stopped = true;
        if !st.started {
            // No driver will ever look at these: cancel them here.
            let now = Utc::now();
            for i in 0..st.tasks.len() {
                st.end(i, TaskStatus::Cancelled, now);
            }
        }
        drop(st);
        self.shared.cancel.cancel();
        self.shared.wake.notify_one();
        self.shared.progress.notify_waiters();
    }

    /// Cancels one task: a pending one never runs, a running one is stopped
    /// (its processes killed). Returns false when it had already finished or is unknown.
    pub fn cancel_task(&self, id: TaskId) -> bool {
        let mut st = self.lock();
        let Some(&i) = st.by_id.get(&id) else {
            return false;
        };
        let status = st.tasks[i].status;
        if status.is_terminal() {
            return false;
        }
        st.tokens[i].cancel();
        if status != TaskStatus::Running {
            st.end(i, TaskStatus::Cancelled, Utc::now());
        }
        drop(st);
        self.shared.wake.notify_one();
        self.shared.progress.notify_waiters();
        true
    }

    /// A copy of a task.
    pub fn get_task(&self, id: TaskId) -> Option<Task> {
        let st = self.lock();
        st.by_id.get(&id).map(|&i| st.tasks[i].clone())
    }

    /// Copies of every task, optionally only those in `status`.
    pub fn list_tasks(&self, status: Option<TaskStatus>) -> Vec<Task> {
        self.lock()
            .tasks
            .iter()
            .filter(|t| status.is_none_or(|s| t.status == s))
            .cloned()
            .collect()
    }

    /// A finished task's result (seed: `get_task_result`).
    pub fn get_task_result(&self, id: TaskId) -> Option<TaskResult> {
        self.get_task(id).and_then(|t| t.result)
    }

    /// Counts by state and time spent (seed: `get_execution_stats`).
    pub fn get_execution_stats(&self) -> ExecutionStats {
        let st = self.lock();
        let count = |s: TaskStatus| st.tasks.iter().filter(|t| t.status == s).count();
        let times: Vec<f64> = st
            .tasks
            .iter()
            .filter_map(|t| t.result.as_ref().map(|r| r.execution_time))
            .collect();
        let total: f64 = times.iter().sum();
        ExecutionStats {
            total_tasks: st.tasks.len(),
            pending: count(TaskStatus::Pending),
            ready: count(TaskStatus::Ready),
            running: count(TaskStatus::Running),
            completed: count(TaskStatus::Completed),
            failed: count(TaskStatus::Failed),
            cancelled: count(TaskStatus::Cancelled),
            skipped: count(TaskStatus::Skipped),
            total_execution_time: total,
            average_execution_time: if times.is_empty() {
                0.0
            } else {
                total / times.len() as f64
            },
        }
    }

    /// Waits until every task has finished; false when the timeout passes
    /// first (seed: `wait_for_completion`).
    pub async fn wait_for_completion(&self, timeout: Option<Duration>) -> bool {
        let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
        loop {
            let notified = self.shared.progress.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.lock().tasks.iter().all(|t| t.status.is_terminal()) {
                return true;
            }
            match deadline {
                Some(d) => {
                    if tokio::time::timeout_at(d, &mut notified).await.is_err() {
                        return self.lock().tasks.iter().all(|t| t.status.is_terminal());
                    }
                }
                None => notified.await,
            }
        }
    }

    /// Runs one task now, on its own, and returns its result (seed:
    /// `execute_task`). References resolve against tasks already finished here.
    pub async fn execute_task(&self, task: &Task) -> TaskResult {
        let Some(action) = self.shared.cfg.registry.get(&task.module, &task.action) else {
            return TaskResult::failed(
                "ModuleNotFound",
                format!("no action `{}.{}` is registered", task.module, task.action),
            );
        };
        let params = {
            let st = self.lock();
            resolve_parameters(&task.module, &task.action, &task.parameters, &*st)
                .map(Value::Object)
        };
        let params = match params {
            Ok(p) => p,
            Err(e) => return TaskResult::failed("ReferenceError", e),
        };
        let attempt = self.attempt(
            u32::MAX,
            task,
            action,
            params,
            self.shared.cancel.child_token(),
        );
        let (tx, rx) = tokio::sync::oneshot::channel();
        let sink: Arc<dyn OutcomeSink> = Arc::new(Once(Mutex::new(Some(tx))));
        let mut done = Vec::new();
        self.executor().submit(vec![attempt], &mut done, &sink);
        let out = match done.pop() {
            Some(out) => Some(out),
            None => rx.await.ok(),
        };
        out.map_or_else(
            || TaskResult::failed("InternalError", "the attempt ended without an outcome"),
            |o| o.result,
        )
    }

    /// Where this orchestrator's attempts run.
    fn executor(&self) -> Arc<dyn Executor> {
        self.shared
            .cfg
            .executor
            .clone()
            .unwrap_or_else(crate::executor::default_executor)
    }

    fn attempt(
        &self,
        index: u32,
        task: &Task,
        action: Arc<dyn crate::action::Action>,
        params: Value,
        cancel: CancellationToken,
    ) -> Attempt {
        Attempt {
            task: index,
            action,
            params,
            policy: AttemptPolicy {
                timeout: task.timeout,
                max_retries: task.max_retries,
                retry: task.retry.clone(),
            },
            ctx: ActionContext {
                run_id: self.shared.run_id,
                step: CompactString::from(task.name.as_str()),
                action: CompactString::from(task.action.as_str()),
                attempt: 1,
                work_dir: Arc::from(self.shared.cfg.work_dir.as_path()),
                cancel,
                kill_grace: Duration::from_secs(2),
                output_limit: 1024 * 1024,
                output: None,
                secrets: None,
            },
            run_cancel: None,
            events: None,
            epoch: (Utc::now(), std::time::Instant::now()),
        }
    }

    /// Releases pending tasks whose dependencies have all ended (by the
    /// rule of workflow runs, `crate::release`), then returns the ready ones
    /// to start, by priority, within the mode's limits.
    fn release(&self, st: &mut State) -> Vec<Attempt> {
        let now = Utc::now();
        while let Some(i) = st.released.pop() {
            let i = i as usize;
            if st.tasks[i].status != TaskStatus::Pending {
                continue;
            }
            let t = &st.tasks[i];
            let gate = Gate {
                run_if: orch_model::RunIf::Success,
                upstream: crate::release::Upstream::ALL_COMPLETED,
                when: None,
                params: Some((&t.module, &t.action, &t.parameters)),
            };
            let deps = t.dependencies.iter().filter_map(|d| {
                let &j = st.by_id.get(d)?;
                Some((st.tasks[j].status, st.tasks[j].name.as_str()))
            });
            match decide(gate, deps, &*st) {
                Release::Run(params) => {
                    st.resolved[i] = Some(Value::Object(params.unwrap_or_default()));
                    let t = &mut st.tasks[i];
                    let _ = t.status.transition(TaskStatus::Ready);
                    t.ready_at = Some(now);
                    let p = t.priority;
                    st.ready.push(p, i as u32);
                }
                Release::Skip(_) => st.end(i, TaskStatus::Skipped, now),
                Release::Fail(e) => {
                    let _ = st.tasks[i].status.transition(TaskStatus::Ready);
                    st.tasks[i].result = Some(TaskResult::failed("ReferenceError", e));
                    st.end(i, TaskStatus::Failed, now);
                }
            }
        }
        let limit = slot_limit(self.shared.cfg.mode, self.shared.cfg.max_parallel_tasks);
        let mut jobs = Vec::new();
        let mut blocked = Vec::new();
        while st.running < limit && !st.stopped {
            let Some(k) = st.ready.pop() else {
                break;
            };
            let i = k as usize;
            // Cancelled while it waited for a slot.
            if st.tasks[i].status != TaskStatus::Ready {
                continue;
            }
            if let Some(rm) = &self.shared.resources {
                let req = &st.tasks[i].resources;
                if !req.is_empty() {
                    match rm.try_allocate(&st.tasks[i].id.to_string(), req) {
                        Ok(Some(a)) => st.allocations[i] = Some(a.id),
                        _ => {
                            blocked.push(k);
                            continue;
                        }
                    }
                }
            }
            let Some(action) = self
                .shared
                .cfg
                .registry
                .get(&st.tasks[i].module, &st.tasks[i].action)
            else {
                // `insert` checked the action: unreachable, but never a panic.
                st.end(i, TaskStatus::Failed, now);
                continue;
            };
            let params = st.resolved[i]
                .take()
                .unwrap_or_else(|| Value::Object(Map::new()));
            let t = &mut st.tasks[i];
            let _ = t.status.transition(TaskStatus::Running);
            t.started_at = Some(now);
            t.attempts = 0;
            st.running += 1;
            let task = st.tasks[i].clone();
            let token = st.tokens[i].clone();
            jobs.push(self.attempt(k, &task, action, params, token));
        }
        st.blocked = !blocked.is_empty();
        let tasks = &st.tasks;
        st.ready.put_back(&blocked, |k| tasks[k as usize].priority);
        jobs
    }

    fn finish(&self, i: usize, out: Outcome) {
        let mut st = self.lock();
        st.running = st.running.saturating_sub(1);
        let alloc = st.allocations[i].take();
        let ended = st.tasks[i].status.transition(out.status).is_ok();
        let t = &mut st.tasks[i];
        t.attempts = out.attempts;
        t.started_at = out.started_at.or(t.started_at);
        t.completed_at = Some(out.finished_at);
        t.result = Some(out.result);
        let user = t.id.to_string();
        if ended {
            st.ended(i);
        }
        drop(st);
        if let (Some(rm), Some(a)) = (&self.shared.resources, alloc) {
            rm.deallocate_resources(&user, Some(&[a]));
        }
        self.shared.progress.notify_waiters();
        self.shared.wake.notify_one();
    }

    async fn drive(self) {
        loop {
            let jobs = {
                let mut st = self.lock();
                if st.stopped && st.running == 0 {
                    // Whatever never started is cancelled.
                    let now = Utc::now();
                    for i in 0..st.tasks.len() {
                        st.end(i, TaskStatus::Cancelled, now);
                    }
                    drop(st);
                    self.shared.progress.notify_waiters();
                    return;
                }
                self.release(&mut st)
            };
            let released_any = !jobs.is_empty();
            if released_any {
                // The same executor as workflow runs: outcomes known at once
                // here, the others through the sink as they come.
                let sink: Arc<dyn OutcomeSink> = Arc::new(Finisher(self.clone()));
                let mut done = Vec::new();
                self.executor().submit(jobs, &mut done, &sink);
                for out in done {
                    self.finish(out.task as usize, out);
                }
            }
            // Skips and failures at release change state too: tell the waiters.
            self.shared.progress.notify_waiters();
            if !released_any {
                // `notify_one` keeps a permit when nobody waits, so no wake-up is lost.
                if self.lock().blocked {
                    // What a ready task waits for may be held outside this
                    // orchestrator, whose release tells nobody here: look again shortly.
                    let _ = tokio::time::timeout(
                        Duration::from_millis(50),
                        self.shared.wake.notified(),
                    )
                    .await;
                } else {
                    self.shared.wake.notified().await;
                }
            }
        }
    }
}

/// Records the outcomes an executor delivers later.
struct Finisher(TaskOrchestrator);

impl OutcomeSink for Finisher {
    fn deliver(&self, outcome: Outcome) {
        self.0.finish(outcome.task as usize, outcome);
    }
}

/// Hands the one outcome of `execute_task` to its caller.
struct Once(Mutex<Option<tokio::sync::oneshot::Sender<Outcome>>>);

impl OutcomeSink for Once {
    fn deliver(&self, outcome: Outcome) {
        let tx = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(tx) = tx {
            let _ = tx.send(outcome);
        }
    }
}
